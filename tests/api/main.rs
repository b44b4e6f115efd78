//! Integration tests: the real application over HTTP, on a real database (a SQLite file and a
//! fresh PostgreSQL database per test).

mod chain_helpers;
mod chromium;
mod helpers;
mod tcp_proxy;
mod workspace_bin;

mod accounts;
mod admin;
mod auth;
mod batch;
mod body_bounds;
mod chains;
mod clients;
mod credits;
mod dev;
mod docs;
mod docs_schemas;
mod errors;
mod fleet;
mod floor;
mod gas;
mod health;
mod key_changes;
mod key_controls;
mod ledger_group;
mod logs;
mod metrics;
mod mirror;
mod mirror_helpers;
mod ownership;
mod permit2;
mod permit2_helpers;
mod persistence;
mod process;
mod recovery;
mod reorg;
mod replay;
mod resources;
mod rpc_faults;
mod settle_faults;
mod smart_wallet;
mod throttle;
mod toy_method;
mod verify_fast;
mod x402;
