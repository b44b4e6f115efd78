//! The facilitator's actors and the services behind them.
//!
//! A request flows: actix-web handler -> a `*Handle` (async methods that hide the actor
//! plumbing) -> the owning actor when the actor's state is involved (`AuthActor`: the key cache;
//! `RegistryActor`: network/asset/resource caches; `SettlementActor`: a signer's nonce;
//! `MetricsActor`: the rollups), or a plain function over the database connection -> the
//! database / the chain. A payment goes `facilitator` (shared: claim, send path, outcome) ->
//! `methods` (its method: checks, judgement, call) -> `settlement` (signers) -> `chain`. Chain calls go through `chain::ChainAccess`:
//! a network's RPC endpoints behind one transport, each call bounded, failing over, health
//! tracked per endpoint. Each actor is the only writer of its state;
//! hot-path reads (client-key lookups, asset lookups) are served from shared concurrent maps the
//! actor keeps warm, without a mailbox round trip.

pub mod auth;
pub mod authorizations;
pub mod chain;
pub mod error;
pub mod facilitator;
pub mod fleet;
pub mod idempotency;
pub mod key_changes;
pub mod ledger;
pub mod methods;
pub mod metrics;
pub mod mirror;
pub mod registry;
pub mod settlement;
pub mod svm;
pub mod throttle;
pub mod webhooks;

pub use error::{ServiceError, ServiceResult};
