//! `AppState`: what every handler and middleware can reach (the actors' handles, the
//! database, the tokens and the limits). Start-up builds it; routes and middleware read it
//! from here, so nothing that serves a request depends on start-up.

use std::time::{Duration, Instant};

use facilitator_actors::auth::AuthHandle;
use facilitator_actors::facilitator::Facilitator;
use facilitator_actors::metrics::MetricsHandle;
use facilitator_actors::registry::RegistryHandle;
use facilitator_actors::webhooks::subscriptions::UrlRules;
use sea_orm::DatabaseConnection;
use secrecy::SecretString;

use crate::config::ReadyNetworks;
use crate::rate_limit::ClientRateLimits;

/// What every handler can reach.
pub struct AppState {
    pub db: DatabaseConnection,
    pub auth: AuthHandle,
    pub registry: RegistryHandle,
    pub facilitator: Facilitator,
    pub admin_token: SecretString,
    pub metrics: MetricsHandle,
    /// Bearer token for `GET /metrics`; `None` = loopback clients only.
    pub prometheus_token: Option<SecretString>,
    /// The networks `GET /ready` requires up (v1 names when `Only`).
    pub ready_networks: ReadyNetworks,
    /// Block explorers' base URLs by v1 name (`networks.<id>.explorer_url`).
    pub explorers: std::collections::BTreeMap<String, String>,
    pub started: Instant,
    /// Token buckets of client keys on `/verify`, `/settle`, `/supported`.
    pub rate_limits: ClientRateLimits,
    /// How long an idempotency key of `/settle` is remembered.
    pub idempotency_ttl: Duration,
    /// Client IPs come from `X-Forwarded-For` (behind a trusted proxy) or the socket.
    pub trust_forwarded_for: bool,
    /// What a webhook URL must be (https in production, the address rule's allow-list).
    pub webhook_urls: UrlRules,
}
