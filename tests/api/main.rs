//! Integration tests: the real application over HTTP, on a real database (a SQLite file and a
//! fresh PostgreSQL database per test).

mod chain_helpers;
mod helpers;

mod admin;
mod auth;
mod clients;
mod dev;
mod errors;
mod health;
mod persistence;
mod recovery;
mod resources;
mod x402;
