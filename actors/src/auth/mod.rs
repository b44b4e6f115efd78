//! Authentication and what binds a caller: users and their sessions, client API keys, the
//! hot-path key cache, settle credits and account limits.
//!
//! `AuthHandle` is what handlers hold. Behind it, `AuthActor` owns the one piece of mutable
//! state: the key cache that `/verify` and `/settle` read (`key_cache`). Everything else is a
//! plain function over the database connection in the module of its concern, called directly:
//!
//! - `users`: signup (argon2id on the blocking pool), listing, `UserView`;
//! - `sessions`: login (timing-safe), JWT access and rotating refresh tokens;
//! - `client_keys`: key create / list / change / rotate / revoke, and how a key is shown;
//! - `key_cache`: the actor's cache of keys, filled on first use, evicted on every change;
//! - `credits`: settle-credit balances and how the operator changes them;
//! - `accounts`: account limits (credits, rate, gas budget), caps, settle admission.
//!
//! A change to a key or an account is made in the database first, then evicted from the cache
//! before it is acknowledged; on PostgreSQL it is also told to the fleet (`key_changes`),
//! whose instances evict it at once.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use base64::Engine;
use dashmap::DashMap;
use jsonwebtoken::{DecodingKey, EncodingKey};
use rand::RngCore;
use sea_orm::{ConnectionTrait, DatabaseConnection};
use secrecy::{ExposeSecret, SecretString};

use crate::error::{ServiceError, ServiceResult};
use crate::throttle::{Policy, Verdict};

pub mod accounts;
mod client_keys;
mod credits;
mod key_cache;
mod sessions;
mod users;

use accounts::AccountCaps;
pub use client_keys::{
    parse_networks, parse_scope, ClientChange, ClientStatus, ClientView, NewClient, NewClientToken,
    OperatorChange, DEFAULT_SCOPE, MAX_RATE_LIMIT, MAX_TTL_HOURS, SCOPES,
};
pub use credits::{refund_settle_credit, use_settle_credit, CreditChange};
pub use key_cache::{AuthenticatedClient, CLIENT_CACHE_TTL};
pub use sessions::{AuthUser, Claims, TokenPair};
pub use users::{parse_email, UserView};

pub struct AuthConfig {
    pub throttles: Throttles,
    pub jwt_secret: SecretString,
    pub client_token_key: SecretString,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    pub min_password_length: usize,
    pub caps: AccountCaps,
}

/// The limits on logins, signups and refreshes (see `throttle`).
#[derive(Debug, Clone, Copy)]
pub struct Throttles {
    pub login_per_account: Policy,
    pub login_per_ip: Policy,
    pub signup_per_ip: Policy,
    pub refresh_per_ip: Policy,
}

/// Key material derived once at start.
struct Keys {
    jwt_encoding: EncodingKey,
    jwt_decoding: DecodingKey,
    client_token_key: SecretString,
    access_ttl: Duration,
    refresh_ttl: Duration,
    min_password_length: usize,
    /// A real argon2id hash of a random password: unknown emails are verified against it so
    /// that they take as long as wrong passwords.
    dummy_hash: String,
}

impl Keys {
    fn new(
        jwt_secret: SecretString,
        client_token_key: SecretString,
        access_ttl: Duration,
        refresh_ttl: Duration,
        min_password_length: usize,
        dummy_hash: String,
    ) -> Self {
        let secret = jwt_secret.expose_secret().as_bytes();
        Self {
            jwt_encoding: EncodingKey::from_secret(secret),
            jwt_decoding: DecodingKey::from_secret(secret),
            client_token_key,
            access_ttl,
            refresh_ttl,
            min_password_length,
            dummy_hash,
        }
    }
}

/// The owner of the key cache: the only writer of its entries (`key_cache`).
pub struct AuthActor {
    db: DatabaseConnection,
    cache: key_cache::KeyCache,
}

impl Actor for AuthActor {
    type Context = Context<Self>;
}

#[derive(Clone)]
pub struct AuthHandle {
    addr: Addr<AuthActor>,
    keys: Arc<Keys>,
    /// The key cache's entries, read here without a round trip to the actor.
    clients: key_cache::Entries,
    db: DatabaseConnection,
    throttles: Throttles,
    caps: AccountCaps,
}

impl AuthHandle {
    /// Start the actor on the current arbiter.
    pub async fn start(db: DatabaseConnection, config: AuthConfig) -> ServiceResult<Self> {
        let dummy_hash = users::hash_password(random_token(24)).await?;
        let keys = Arc::new(Keys::new(
            config.jwt_secret,
            config.client_token_key,
            config.access_ttl,
            config.refresh_ttl,
            config.min_password_length,
            dummy_hash,
        ));
        let clients: key_cache::Entries = Arc::new(DashMap::new());
        // On PostgreSQL keys are cached only once this instance hears the fleet's changes
        // (`key_changes` turns the cache on).
        let trusted = db.get_database_backend() != sea_orm::DatabaseBackend::Postgres;
        let actor = AuthActor {
            db: db.clone(),
            cache: key_cache::KeyCache::new(clients.clone(), trusted),
        };
        Ok(Self {
            addr: actor.start(),
            keys,
            clients,
            db,
            throttles: config.throttles,
            caps: config.caps,
        })
    }
}

fn too_many(message: &str, verdict: Verdict) -> ServiceResult<()> {
    match verdict {
        Verdict::Allowed => Ok(()),
        Verdict::Locked { retry_after } => Err(ServiceError::TooManyRequests {
            message: message.to_owned(),
            retry_after,
        }),
    }
}

/// `bytes` random bytes from the OS, base64url: token ids, session families, secrets.
fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}
