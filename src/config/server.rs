//! The process's own sections: the HTTP server (`server`), logging (`log`), the metrics writer
//! and Prometheus access (`metrics`), and glibc's allocator (`memory`).

use secrecy::SecretString;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    /// 0 = one worker per core.
    pub workers: usize,
    pub body_limit_bytes: usize,
    /// Take the client IP (for login, signup and refresh limits) from `X-Forwarded-For` /
    /// `Forwarded`. Only behind a proxy that sets them: anyone can send these headers.
    pub trust_forwarded_for: bool,
    /// A request body must arrive whole within this many seconds of its headers (else 408).
    pub body_timeout_secs: u64,
    /// A request's headers must arrive within this many seconds of its connection (else 408).
    pub header_timeout_secs: u64,
    /// Every request is answered within this many seconds (else 503, its work going on): a
    /// frozen database or actor holds no caller longer. Above the longest settle wait
    /// (`receipt_timeout_secs`, RPC bounds).
    pub answer_timeout_secs: u64,
    /// Open connections at most, all workers together; past it new ones wait in the backlog.
    pub max_connections: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8080,
            workers: 0,
            body_limit_bytes: 64 * 1024,
            trust_forwarded_for: false,
            body_timeout_secs: 10,
            header_timeout_secs: 5,
            answer_timeout_secs: 60,
            max_connections: 4096,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct LogSettings {
    /// `pretty` (default) or `json`.
    pub format: LogFormat,
    /// An `EnvFilter` directive; `RUST_LOG` wins when set.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Pretty,
            level: "info".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct MetricsSettings {
    /// How often in-memory rollups are written to the database.
    pub flush_interval_secs: u64,
    /// `GET /metrics` access: with a token, `Authorization: Bearer <token>` is required (from
    /// anywhere); without one, only loopback clients may scrape. Secret: set it with
    /// `APP__METRICS__PROMETHEUS_TOKEN`.
    pub prometheus_token: Option<SecretString>,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        Self {
            flush_interval_secs: 5,
            prometheus_token: None,
        }
    }
}

/// glibc's allocator (`crate::memory`): no effect on other C libraries.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct MemorySettings {
    /// At most this many malloc arenas (0 = glibc's default, 8 per core).
    pub arena_max: u32,
    /// Give the allocator's free pages back to the system this often (0 = never).
    pub trim_interval_secs: u64,
}

impl Default for MemorySettings {
    fn default() -> Self {
        Self {
            arena_max: 2,
            trim_interval_secs: 5,
        }
    }
}
