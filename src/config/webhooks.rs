//! The `webhooks` section: how events are delivered to merchants' endpoints, and which hosts
//! they may reach besides public addresses.

use std::time::Duration;

use facilitator_actors::webhooks::delivery::DeliveryConfig;
use facilitator_actors::webhooks::ssrf::AllowList;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct WebhookSettings {
    /// This instance delivers webhooks (the outbox is written either way).
    pub deliver: bool,
    /// Hosts a webhook may reach whatever they resolve to (loopback, private networks): names
    /// or IP literals as written in URLs (`127.0.0.1`, `[::1]`, `hooks.internal`). Empty: only
    /// public addresses.
    #[serde(deserialize_with = "super::list_items")]
    pub allow_hosts: Vec<String>,
    /// One request's bound: connect, send, answer.
    pub timeout_secs: u64,
    /// A claimed delivery is this instance's this long (then another may take it).
    pub lease_secs: u64,
    /// How often an idle worker looks for events and due deliveries.
    pub poll_interval_ms: u64,
    /// The first retry's delay; each next one doubles (with jitter), up to `backoff_max_secs`.
    pub backoff_base_ms: u64,
    pub backoff_max_secs: u64,
    /// A delivery is retried this long, then `failed`.
    pub retry_for_secs: u64,
    /// Requests in flight at once per instance.
    pub concurrency: usize,
    /// `key.credits_low` when a limited key's settle credits fall to this many.
    pub credits_low_at: i64,
    /// Events and their delivery logs are kept this many days.
    pub keep_days: u64,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            deliver: true,
            allow_hosts: Vec::new(),
            timeout_secs: 10,
            lease_secs: 60,
            poll_interval_ms: 1000,
            backoff_base_ms: 10_000,
            backoff_max_secs: 3600,
            retry_for_secs: 24 * 3600,
            concurrency: 16,
            credits_low_at: 10,
            keep_days: 30,
        }
    }
}

impl WebhookSettings {
    /// The delivery worker's configuration; `production`: https only.
    pub fn delivery_config(&self, production: bool) -> DeliveryConfig {
        let timeout = Duration::from_secs(self.timeout_secs.max(1));
        DeliveryConfig {
            poll_interval: Duration::from_millis(self.poll_interval_ms.max(10)),
            timeout,
            // Never shorter than a request: a slow answer must not let another instance send
            // the same delivery meanwhile.
            lease: Duration::from_secs(self.lease_secs).max(timeout * 2),
            backoff_base: Duration::from_millis(self.backoff_base_ms.max(1)),
            backoff_max: Duration::from_secs(self.backoff_max_secs.max(1)),
            retry_for: Duration::from_secs(self.retry_for_secs),
            concurrency: self.concurrency.max(1),
            batch: 100,
            allow: AllowList::new(&self.allow_hosts),
            require_https: production,
        }
    }
}
