//! Integration tests: the real application over HTTP, on a real database (a SQLite file and a
//! fresh PostgreSQL database per test).

mod chain_helpers;
mod helpers;

mod admin;
mod auth;
mod bench;
mod clients;
mod credits;
mod dev;
mod docs;
mod errors;
mod health;
mod logs;
mod metrics;
mod persistence;
mod process;
mod recovery;
mod resources;
mod settle_faults;
mod x402;
