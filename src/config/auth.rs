//! The `auth` section (session lifetimes, password rule; the secrets themselves are resolved
//! in `Settings::resolve_secrets`) and the `limits` section (rate limits, account caps and the
//! login / signup / refresh throttles).

use std::time::Duration;

use facilitator_actors::auth::accounts::AccountCaps;
use facilitator_actors::auth::Throttles;
use facilitator_actors::throttle::Policy;
use secrecy::SecretString;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct AuthSettings {
    pub jwt_secret: Option<SecretString>,
    pub admin_token: Option<SecretString>,
    pub client_token_key: Option<SecretString>,
    pub access_token_ttl_secs: u64,
    pub refresh_token_ttl_secs: u64,
    pub min_password_length: usize,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            jwt_secret: None,
            admin_token: None,
            client_token_key: None,
            access_token_ttl_secs: 900,
            refresh_token_ttl_secs: 30 * 24 * 3600,
            min_password_length: 10,
        }
    }
}

/// Throttling: client-key rate limits (shared by the instances on PostgreSQL, in memory on
/// SQLite) and the login / signup / refresh limits (in the database, shared by instances).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct LimitSettings {
    /// Requests per second per client key on `/verify`, `/settle`, `/supported`
    /// (`0` = unlimited); the operator overrides one key with `PATCH /admin/clients/{id}`.
    pub client_rate_limit_per_second: u32,
    /// Requests per second of all the keys of an account together on the same endpoints
    /// (`0` = unlimited); the operator overrides one account with `PATCH /admin/users/{id}`.
    pub account_rate_limit_per_second: u32,
    /// Live (neither revoked nor expired) client keys an account may have.
    pub max_keys_per_account: u64,
    /// Resources an account may register.
    pub max_resources_per_account: u64,
    /// Failed logins allowed per account, and per client IP, in a window before a lock.
    pub login_failures_per_account: u32,
    pub login_failures_per_ip: u32,
    pub login_window_secs: u64,
    /// The first lock; each further lock in the window lasts twice as long (capped at the
    /// window).
    pub login_lockout_secs: u64,
    /// Signups allowed per client IP in a window.
    pub signups_per_ip: u32,
    pub signup_window_secs: u64,
    /// Token refreshes allowed per client IP in a window.
    pub refreshes_per_ip: u32,
    pub refresh_window_secs: u64,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            client_rate_limit_per_second: 0,
            account_rate_limit_per_second: 0,
            max_keys_per_account: 20,
            max_resources_per_account: 100,
            login_failures_per_account: 5,
            login_failures_per_ip: 20,
            login_window_secs: 900,
            login_lockout_secs: 30,
            signups_per_ip: 20,
            signup_window_secs: 3600,
            refreshes_per_ip: 120,
            refresh_window_secs: 60,
        }
    }
}

impl LimitSettings {
    pub fn throttles(&self) -> Throttles {
        let login = |limit| Policy {
            limit,
            window: Duration::from_secs(self.login_window_secs),
            lockout: Duration::from_secs(self.login_lockout_secs),
        };
        // Signups and refreshes: past the limit, wait out the rest of a window.
        let per_window = |limit, secs| Policy {
            limit,
            window: Duration::from_secs(secs),
            lockout: Duration::from_secs(secs),
        };
        Throttles {
            login_per_account: login(self.login_failures_per_account),
            login_per_ip: login(self.login_failures_per_ip),
            signup_per_ip: per_window(self.signups_per_ip, self.signup_window_secs),
            refresh_per_ip: per_window(self.refreshes_per_ip, self.refresh_window_secs),
        }
    }

    pub fn account_caps(&self) -> AccountCaps {
        AccountCaps {
            max_keys: self.max_keys_per_account,
            max_resources: self.max_resources_per_account,
        }
    }
}
