//! The hot-path key cache, owned by `AuthActor`: what `/verify` and `/settle` need to know
//! about a client key, kept warm so that a known key costs no database read.
//!
//! Readers (`AuthHandle::authenticate_client`) look entries up in a shared map directly; only
//! the actor writes it. A miss asks the actor to fill the entry (`LoadClient`); every change to
//! a key or an account evicts (`CacheChange`) before the change is acknowledged, and bumps an
//! epoch so that a fill that read the row before the change stores nothing. On PostgreSQL keys
//! are cached only while this instance hears the fleet's changes (`key_changes`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use dashmap::DashMap;
use entities::{client, user};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use subtle::ConstantTimeEq;

use super::accounts::AccountLimits;
use super::client_keys::{split_networks, stored_token_hash, token_hash};
use super::{AuthActor, AuthHandle};
use crate::error::{ServiceError, ServiceResult};

/// How long a cached client key is trusted without re-reading it. Changes made through other
/// instances arrive at once (`key_changes`); this bounds what a lost notification could keep.
pub const CLIENT_CACHE_TTL: Duration = Duration::from_secs(30);

/// The entries readers share with the actor (the only writer).
pub(super) type Entries = Arc<DashMap<String, CachedClient>>;

/// What the hot path needs to know about a client key.
#[derive(Clone)]
pub(super) struct CachedClient {
    /// When this entry was read from the database: entries older than `CLIENT_CACHE_TTL` are
    /// re-read.
    loaded_at: Instant,
    token_hash: [u8; 32],
    user_id: i64,
    scope: Vec<String>,
    networks: Option<Vec<String>>,
    credits_limited: bool,
    rate_limit_per_second: Option<u32>,
    paused: bool,
    expires_at: Option<DateTime<Utc>>,
    /// The limits of the key's account, read with the key.
    account: AccountLimits,
}

impl CachedClient {
    fn of(c: &client::Model, owner: &user::Model) -> Option<Self> {
        if c.revoked_at.is_some() {
            return None;
        }
        Some(Self {
            loaded_at: Instant::now(),
            token_hash: stored_token_hash(c)?,
            user_id: c.user_id,
            scope: c.scope.split(',').map(str::to_owned).collect(),
            networks: split_networks(&c.networks),
            credits_limited: c.settle_credits.is_some(),
            rate_limit_per_second: c.rate_limit_per_second.map(|n| n.max(0) as u32),
            paused: c.paused_at.is_some(),
            expires_at: c.expires_at,
            account: AccountLimits::of(owner),
        })
    }
}

/// The cache as its owner holds it.
pub(super) struct KeyCache {
    entries: Entries,
    /// Bumped by every change to a client key (revocation, pause, rotation, limits): a cache
    /// fill that started before a change must not store what it read.
    epoch: u64,
    /// Whether keys may be cached: always on SQLite; on PostgreSQL only while this instance
    /// hears the fleet's changes (`key_changes`).
    trusted: bool,
}

impl KeyCache {
    pub(super) fn new(entries: Entries, trusted: bool) -> Self {
        Self {
            entries,
            epoch: 0,
            trusted,
        }
    }

    /// A key changed: drop it, and make any fill in flight store nothing (it may have read the
    /// row before the change).
    fn forget_key(&mut self, client_id: &str) {
        self.entries.remove(client_id);
        self.epoch += 1;
    }

    /// An account's limits changed: drop its keys (its limits are cached with each of them).
    fn forget_account(&mut self, user_id: i64) {
        self.entries.retain(|_, c| c.account.user_id != user_id);
        self.epoch += 1;
    }

    fn trust(&mut self, trusted: bool) {
        self.entries.clear();
        self.epoch += 1;
        self.trusted = trusted;
    }
}

/// An authenticated client key, as handlers see it.
#[derive(Debug, Clone)]
pub struct AuthenticatedClient {
    pub client_id: String,
    pub user_id: i64,
    pub scope: Vec<String>,
    /// v1 network names this key may use; `None` = all.
    pub networks: Option<Vec<String>>,
    /// The key has a settle-credit balance (each new settlement uses one).
    pub credits_limited: bool,
    /// The operator's rate limit for this key (requests per second, `0` = unlimited);
    /// `None` = the configured default.
    pub rate_limit_per_second: Option<u32>,
    /// The limits of the key's account, which bind all its keys together.
    pub account: AccountLimits,
}

impl AuthenticatedClient {
    pub fn allows(&self, operation: &str) -> bool {
        self.scope.iter().any(|s| s == operation)
    }

    /// May this key pay on `network` (a v1 name or CAIP-2 id)?
    pub fn allows_network(&self, network: &str) -> bool {
        let v1 = x402::network::parse_network(network)
            .map(|n| n.v1_name)
            .or_else(|| x402::svm::parse_svm_network(network).map(|n| n.v1_name))
            .unwrap_or(network);
        self.networks
            .as_ref()
            .is_none_or(|n| n.iter().any(|x| x == v1))
    }
}

/// Client credentials of a plausible size (anything else is refused unread).
pub(super) fn plausible(client_id: &str, token: &str) -> bool {
    !(client_id.is_empty() || client_id.len() > 64 || token.is_empty() || token.len() > 256)
}

impl AuthHandle {
    /// The hot path: check `X-Client-ID` + `X-Client-Token`. Served from the cache when warm;
    /// the token is compared as a keyed hash, in constant time.
    pub async fn authenticate_client(
        &self,
        client_id: &str,
        token: &str,
    ) -> ServiceResult<AuthenticatedClient> {
        let invalid = || ServiceError::Unauthorized("invalid client credentials".into());
        if !plausible(client_id, token) {
            return Err(invalid());
        }
        let warm = self
            .clients
            .get(client_id)
            .filter(|e| e.loaded_at.elapsed() < CLIENT_CACHE_TTL)
            .map(|e| e.clone());
        let cached = match warm {
            Some(entry) => entry,
            None => self
                .addr
                .send(LoadClient {
                    client_id: client_id.to_owned(),
                })
                .await??
                .ok_or_else(invalid)?,
        };
        let presented = token_hash(&self.keys.client_token_key, client_id, token);
        if !bool::from(presented.ct_eq(&cached.token_hash)) {
            return Err(invalid());
        }
        if cached.expires_at.is_some_and(|at| at <= Utc::now()) {
            return Err(ServiceError::Unauthorized("client key expired".into()));
        }
        if cached.paused {
            return Err(ServiceError::Unauthorized("client key paused".into()));
        }
        Ok(AuthenticatedClient {
            client_id: client_id.to_owned(),
            user_id: cached.user_id,
            scope: cached.scope,
            networks: cached.networks,
            credits_limited: cached.credits_limited,
            rate_limit_per_second: cached.rate_limit_per_second,
            account: cached.account,
        })
    }

    /// Client key `client_id` changed (here or on another instance): re-read it on next use.
    pub async fn client_changed(&self, client_id: &str) {
        let _ = self.addr.send(CacheChange::Key(client_id.to_owned())).await;
    }

    /// The account `user_id` changed: re-read each of its keys on next use.
    pub async fn account_changed(&self, user_id: i64) {
        let _ = self.addr.send(CacheChange::Account(user_id)).await;
    }

    /// Empty the key cache, and from now on cache keys (`true`) or read every key from the
    /// database (`false`: this instance may be missing the fleet's changes).
    pub async fn trust_cache(&self, trusted: bool) {
        let _ = self.addr.send(CacheChange::Trust(trusted)).await;
    }
}

/// The key (with its account) as the database has it now; `None` when unknown or revoked.
async fn read_client(
    db: &DatabaseConnection,
    client_id: &str,
) -> ServiceResult<Option<CachedClient>> {
    let Some(row) = client::Entity::find()
        .filter(client::Column::ClientId.eq(client_id))
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let owner = user::Entity::find_by_id(row.user_id).one(db).await?;
    Ok(owner.and_then(|owner| CachedClient::of(&row, &owner)))
}

/// Read a key the cache misses, and keep it unless a change came meanwhile.
#[derive(Message)]
#[rtype(result = "ServiceResult<Option<CachedClient>>")]
struct LoadClient {
    client_id: String,
}

impl Handler<LoadClient> for AuthActor {
    type Result = ResponseActFuture<Self, ServiceResult<Option<CachedClient>>>;

    fn handle(&mut self, msg: LoadClient, _: &mut Self::Context) -> Self::Result {
        let db = self.db.clone();
        let id = msg.client_id.clone();
        let epoch = self.cache.epoch;
        let work = async move { read_client(&db, &id).await };
        Box::pin(work.into_actor(self).map(
            move |res: ServiceResult<Option<CachedClient>>, act, _| {
                match &res {
                    // A key changed while this read was in flight (or changes may be missed):
                    // answer, but cache nothing.
                    Ok(Some(_)) if act.cache.epoch != epoch || !act.cache.trusted => {}
                    Ok(Some(entry)) => {
                        act.cache.entries.insert(msg.client_id, entry.clone());
                    }
                    _ => {}
                }
                res
            },
        ))
    }
}

/// A change the cache must forget, from this instance or the fleet (`key_changes`).
#[derive(Message)]
#[rtype(result = "()")]
enum CacheChange {
    Key(String),
    Account(i64),
    /// Empty the cache, then cache keys (`true`) or not (`false`).
    Trust(bool),
}

impl Handler<CacheChange> for AuthActor {
    type Result = ();

    fn handle(&mut self, msg: CacheChange, _: &mut Self::Context) {
        match msg {
            CacheChange::Key(id) => self.cache.forget_key(&id),
            CacheChange::Account(user_id) => self.cache.forget_account(user_id),
            CacheChange::Trust(trusted) => self.cache.trust(trusted),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(user_id: i64) -> CachedClient {
        CachedClient {
            loaded_at: Instant::now(),
            token_hash: [0; 32],
            user_id,
            scope: vec![],
            networks: None,
            credits_limited: false,
            rate_limit_per_second: None,
            paused: false,
            expires_at: None,
            account: AccountLimits {
                user_id,
                ..AccountLimits::default()
            },
        }
    }

    #[test]
    fn every_change_evicts_and_moves_the_epoch() {
        let entries: Entries = Arc::new(DashMap::new());
        let mut cache = KeyCache::new(entries.clone(), true);
        entries.insert("a".into(), entry(1));
        entries.insert("b".into(), entry(1));
        entries.insert("c".into(), entry(2));
        cache.forget_key("a");
        assert!(!entries.contains_key("a"));
        assert_eq!(cache.epoch, 1);
        cache.forget_account(1);
        assert!(!entries.contains_key("b") && entries.contains_key("c"));
        assert_eq!(cache.epoch, 2);
        cache.trust(false);
        assert!(entries.is_empty() && !cache.trusted);
        assert_eq!(cache.epoch, 3);
    }

    #[test]
    fn credentials_of_implausible_size_are_refused_unread() {
        assert!(plausible("cl_1", "x402sk_1"));
        assert!(!plausible("", "t"));
        assert!(!plausible("c", ""));
        assert!(!plausible(&"c".repeat(65), "t"));
        assert!(!plausible("c", &"t".repeat(257)));
    }
}
