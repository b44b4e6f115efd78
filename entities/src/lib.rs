//! sea-orm entities of the facilitator: the shape of each table, no logic.
//!
//! Queries and mutations live with their owners in `facilitator-actors`; migrations in the
//! `migration` crate define the schema these mirror.

pub mod asset;
pub mod channel;
pub mod client;
pub mod http_metrics_daily;
pub mod idempotency_key;
pub mod instance;
pub mod refresh_token;
pub mod resource;
pub mod settlement;
pub mod signer_lease;
pub mod throttle;
pub mod user;
pub mod webhook;
pub mod webhook_delivery;
pub mod webhook_event;
pub mod x402_metrics_daily;
