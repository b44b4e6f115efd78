//! x402-facilitator: verifies and settles x402 payments (EIP-3009 stablecoin authorizations)
//! on many EVM networks, and runs the control plane around that (users, client API keys,
//! a registry of paid resources, metrics, admin).
//!
//! A request flows: `startup` builds the actors and the actix-web server; a handler in
//! `routes` parses the request into domain types (extractors in `auth` check credentials), sends
//! a message to an actor through its handle (`facilitator_actors`), and maps the reply to the
//! wire: `{"data": ...}` on success, `error::ApiError` otherwise.
//!
//! The modules depend on each other in one direction only (`tests/module_graph.rs` checks it):
//! `startup` on the parts it assembles (`db`, `networks`, `housekeeping`, `state`, `routes`,
//! ...); `routes` and `middleware` on `state`, `auth`, `error`; `state` on `config` and
//! `rate_limit`; `config` and `error` on no other module of this crate.

pub mod auth;
pub mod chains;
pub mod config;
pub mod db;
pub mod error;
pub mod housekeeping;
pub mod memory;
pub mod middleware;
pub mod networks;
pub mod rate_limit;
pub mod routes;
pub mod startup;
pub mod state;
pub mod telemetry;
