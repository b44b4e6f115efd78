//! The `database` section: which database, and how commits and SQLite's page cache behave.
//! The pool itself is sized and opened in `crate::db`.

use secrecy::SecretString;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct DatabaseSettings {
    /// `sqlite://path?mode=rwc` or `postgres://user@host/db`. May hold a password, so it is a
    /// secret for logging purposes.
    pub url: SecretString,
    /// Pool size; unset: sized by the backend (`crate::db::pool_size`).
    pub max_connections: Option<u32>,
    /// A commit returns only once it is on disk (SQLite `synchronous=FULL`, PostgreSQL
    /// `synchronous_commit=on`). Off trades the last commits before a power cut or OS crash
    /// (never a process crash) for commits that do not wait on the disk: for throwaway
    /// databases such as tests and benchmarks, not for a ledger of real money.
    pub durable_commits: bool,
    /// SQLite's page cache per pooled connection, KiB (each of `max_connections` has its own;
    /// SQLite's default is 2000). Misses are reads from the operating system's file cache.
    pub sqlite_cache_kib: u32,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: SecretString::from("sqlite://x402-facilitator.sqlite?mode=rwc"),
            max_connections: None,
            durable_commits: true,
            sqlite_cache_kib: 512,
        }
    }
}
