//! Client API keys: their life (create, list, change, pause, rotate, revoke), what the operator
//! sets on them (credits, rate limit), and how a key is shown.
//!
//! A key's token exists only in the answer that creates or rotates it: the database keeps a
//! keyed hash (HMAC-SHA256 under `auth.client_token_key`), compared in constant time. The
//! reads and writes are plain functions over the connection; `AuthHandle` validates the input,
//! calls them, and has the key cache (`key_cache`) forget a key once a change to it is made
//! (a refused change — someone else's key — touches neither the database nor the cache).

use chrono::{DateTime, Utc};
use entities::client;
use hmac::{Hmac, Mac};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set, TransactionTrait,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::credits::{apply_credit_change, check_credit_change, credit_change_refused};
use super::key_cache::plausible;
use super::{accounts, random_token, AuthHandle, AuthUser, CreditChange};
use crate::error::{ServiceError, ServiceResult};
use crate::key_changes;

type HmacSha256 = Hmac<Sha256>;

/// Operations a client key may be granted.
pub const SCOPES: [&str; 2] = ["verify", "settle"];
pub const DEFAULT_SCOPE: &str = "verify,settle";
/// Longest key lifetime accepted: ten years.
pub const MAX_TTL_HOURS: u64 = 87_600;
/// The largest per-key rate limit an operator may set (requests per second).
pub const MAX_RATE_LIMIT: u32 = 1_000_000;

/// The life of a client key (seed 001's key status): only an `active` key authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ClientStatus {
    Active,
    /// Paused by its owner; `active` again when resumed.
    Paused,
    /// Deleted (soft): final.
    Revoked,
    /// Past `expiresAt`: final.
    Expired,
}

impl ClientStatus {
    pub fn of(c: &client::Model, now: DateTime<Utc>) -> Self {
        if c.revoked_at.is_some() {
            ClientStatus::Revoked
        } else if c.expires_at.is_some_and(|at| at <= now) {
            ClientStatus::Expired
        } else if c.paused_at.is_some() {
            ClientStatus::Paused
        } else {
            ClientStatus::Active
        }
    }
}

/// A client key as the API shows it (its token is never shown again).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ClientKey)]
pub struct ClientView {
    #[schema(example = "abc123")]
    pub client_id: String,
    pub title: String,
    pub status: ClientStatus,
    /// Comma-separated operations allowed (`verify`, `settle`).
    #[schema(example = "verify,settle")]
    pub scope: String,
    /// v1 network names the key is limited to; `null` = every served network.
    #[schema(required = true)]
    pub networks: Option<Vec<String>>,
    /// Settlements the key may still make (each new authorization uses one; one that sends
    /// nothing gives it back); `null` = unlimited. Set by the operator.
    #[schema(required = true)]
    pub settle_credits: Option<i64>,
    /// This key's own rate limit (requests per second, `0` = unlimited); `null` = the
    /// server's default.
    pub rate_limit_per_second: Option<u32>,
    pub created_at: DateTime<Utc>,
    #[schema(required = true)]
    pub expires_at: Option<DateTime<Utc>>,
}

pub(super) fn split_networks(networks: &Option<String>) -> Option<Vec<String>> {
    networks
        .as_ref()
        .map(|n| n.split(',').map(str::to_owned).collect())
}

impl From<client::Model> for ClientView {
    fn from(c: client::Model) -> Self {
        Self {
            status: ClientStatus::of(&c, Utc::now()),
            client_id: c.client_id,
            title: c.title,
            scope: c.scope,
            networks: split_networks(&c.networks),
            settle_credits: c.settle_credits,
            rate_limit_per_second: c.rate_limit_per_second.map(|n| n.max(0) as u32),
            created_at: c.created_at,
            expires_at: c.expires_at,
        }
    }
}

/// A freshly created key: the token exists only in this value.
pub struct NewClient {
    pub view: ClientView,
    pub token: SecretString,
}

/// What an owner may change on a key (`PATCH /clients/{id}`); `None` = unchanged.
#[derive(Debug, Clone, Default)]
pub struct ClientChange {
    pub title: Option<String>,
    pub scope: Option<String>,
    /// `Some(None)`: no network limit any more.
    pub networks: Option<Option<Vec<String>>>,
    /// `active` (resume) or `paused`.
    pub status: Option<ClientStatus>,
    /// Issue a new token; the old one stops working.
    pub rotate: bool,
}

/// A key after a change, with its new token when it was rotated (shown once).
pub struct NewClientToken {
    pub view: ClientView,
    pub token: Option<SecretString>,
}

/// What the operator may change on a key (`PATCH /admin/clients/{id}`); `None` = unchanged.
#[derive(Debug, Clone, Copy, Default)]
pub struct OperatorChange {
    pub credits: Option<CreditChange>,
    /// `Some(None)`: back to the server's default.
    pub rate_limit_per_second: Option<Option<u32>>,
}

/// A key to create, validated.
struct NewKey {
    user_id: i64,
    title: String,
    scope: String,
    networks: Option<String>,
    ttl_hours: Option<u64>,
}

/// An owner's change, validated (`ClientChange` with its fields parsed).
struct KeyChange {
    title: Option<String>,
    scope: Option<String>,
    /// `Some(None)`: lift the network limit.
    networks: Option<Option<String>>,
    status: Option<ClientStatus>,
    rotate: bool,
}

fn parse_title(title: &str) -> ServiceResult<String> {
    let title = title.trim();
    if title.is_empty() || title.chars().count() > 200 {
        return Err(ServiceError::InvalidInput(
            "title must be 1 to 200 characters".into(),
        ));
    }
    Ok(title.to_owned())
}

impl AuthHandle {
    pub async fn create_client(
        &self,
        user: &AuthUser,
        title: &str,
        scope: Option<&str>,
        ttl_hours: Option<u64>,
        networks: Option<&[String]>,
    ) -> ServiceResult<NewClient> {
        let title = parse_title(title)?;
        let scope = parse_scope(scope.unwrap_or(DEFAULT_SCOPE))?;
        let networks = networks.map(parse_networks).transpose()?;
        if let Some(ttl) = ttl_hours {
            if ttl == 0 || ttl > MAX_TTL_HOURS {
                return Err(ServiceError::InvalidInput(format!(
                    "ttl_hours must be between 1 and {MAX_TTL_HOURS}"
                )));
            }
        }
        let key = NewKey {
            user_id: user.id,
            title,
            scope,
            networks,
            ttl_hours,
        };
        create(
            &self.db,
            &self.keys.client_token_key,
            self.caps.max_keys,
            key,
        )
        .await
    }

    pub async fn list_clients(
        &self,
        user: &AuthUser,
        offset: u64,
        limit: u64,
    ) -> ServiceResult<Vec<ClientView>> {
        list(&self.db, user, offset, limit).await
    }

    pub async fn revoke_client(&self, user: &AuthUser, client_id: &str) -> ServiceResult<()> {
        let res = revoke(&self.db, user, client_id).await;
        // Evicted before the revoke is acknowledged.
        self.forget_if_changed(&res, client_id).await;
        res
    }

    /// `GET /clients/status`: a key's own view of itself, whatever its status (a paused,
    /// revoked or expired key may still ask what it is), and its account (user id). Not the hot
    /// path: one database read, the token compared as a keyed hash in constant time.
    pub async fn client_status(
        &self,
        client_id: &str,
        token: &str,
    ) -> ServiceResult<(ClientView, i64)> {
        if !plausible(client_id, token) {
            return Err(ServiceError::Unauthorized(
                "invalid client credentials".into(),
            ));
        }
        let presented = token_hash(&self.keys.client_token_key, client_id, token);
        status_of(&self.db, client_id, &presented).await
    }

    /// `PATCH /clients/{id}` by the key's owner (or an admin user): title, scope, networks,
    /// pause/resume, token rotation. Returns the key and, after a rotation, its new token.
    pub async fn update_client(
        &self,
        user: &AuthUser,
        client_id: &str,
        change: ClientChange,
    ) -> ServiceResult<NewClientToken> {
        let title = change.title.as_deref().map(parse_title).transpose()?;
        let scope = change.scope.as_deref().map(parse_scope).transpose()?;
        let networks = match &change.networks {
            None => None,
            Some(None) => Some(None),
            Some(Some(n)) => Some(Some(parse_networks(n)?)),
        };
        if let Some(status) = change.status {
            if !matches!(status, ClientStatus::Active | ClientStatus::Paused) {
                return Err(ServiceError::InvalidInput(
                    "status can be set to active or paused (DELETE revokes a key)".into(),
                ));
            }
        }
        if title.is_none()
            && scope.is_none()
            && networks.is_none()
            && change.status.is_none()
            && !change.rotate
        {
            return Err(ServiceError::InvalidInput(
                "nothing to change: give title, scope, networks, status or rotate".into(),
            ));
        }
        let change = KeyChange {
            title,
            scope,
            networks,
            status: change.status,
            rotate: change.rotate,
        };
        let res = update(
            &self.db,
            &self.keys.client_token_key,
            user,
            client_id,
            change,
        )
        .await;
        // From here on this instance re-reads the key, so a pause or a rotation takes effect at
        // once (the others hear of it through `key_changes`).
        self.forget_if_changed(&res, client_id).await;
        res
    }

    /// The operator sets or adjusts a key's settle credits and/or its rate limit
    /// (`PATCH /admin/clients/{id}`).
    pub async fn operate_client(
        &self,
        client_id: &str,
        change: OperatorChange,
    ) -> ServiceResult<ClientView> {
        if let Some(credits) = change.credits {
            check_credit_change(credits)?;
        }
        if let Some(Some(n)) = change.rate_limit_per_second {
            if n > MAX_RATE_LIMIT {
                return Err(ServiceError::InvalidInput(format!(
                    "rateLimitPerSecond must be between 0 (unlimited) and {MAX_RATE_LIMIT}, or null for the default"
                )));
            }
        }
        if change.credits.is_none() && change.rate_limit_per_second.is_none() {
            return Err(ServiceError::InvalidInput(
                "nothing to change: give settleCredits, addSettleCredits or rateLimitPerSecond"
                    .into(),
            ));
        }
        let res = operate(&self.db, client_id, change).await;
        // The hot path re-reads the key (whether it is limited, its rate) on its next use.
        self.forget_if_changed(&res, client_id).await;
        res
    }

    /// After a change to `client_id` was tried: forget the key if it was made. A refused
    /// change (someone else's key, an invalid one) leaves the cache as it was.
    async fn forget_if_changed<T>(&self, res: &ServiceResult<T>, client_id: &str) {
        if res.is_ok() {
            self.client_changed(client_id).await;
        }
    }
}

/// Insert a key, within the account's cap of live keys.
async fn create(
    db: &DatabaseConnection,
    token_key: &SecretString,
    max_keys: u64,
    key: NewKey,
) -> ServiceResult<NewClient> {
    let txn = accounts::begin_within_cap(
        db,
        key.user_id,
        accounts::live_keys(key.user_id),
        max_keys,
        "live client keys (revoke one to make room)",
    )
    .await?;
    let client_id = format!("cl_{}", hex::encode(rand::random::<[u8; 12]>()));
    let (token, hash) = new_client_token(token_key, &client_id);
    let now = Utc::now();
    let expires_at = key
        .ttl_hours
        .map(|h| now + chrono::Duration::hours(h as i64));
    let row = client::ActiveModel {
        client_id: Set(client_id),
        user_id: Set(key.user_id),
        title: Set(key.title),
        scope: Set(key.scope),
        networks: Set(key.networks),
        token_hash: Set(hash),
        created_at: Set(now),
        expires_at: Set(expires_at),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    txn.commit().await?;
    Ok(NewClient {
        view: row.into(),
        token,
    })
}

/// The live keys `user` may see: theirs (an admin's: everyone's).
async fn list(
    db: &DatabaseConnection,
    user: &AuthUser,
    offset: u64,
    limit: u64,
) -> ServiceResult<Vec<ClientView>> {
    let mut query = client::Entity::find().filter(client::Column::RevokedAt.is_null());
    if !user.is_admin {
        query = query.filter(client::Column::UserId.eq(user.id));
    }
    let rows = query
        .order_by_asc(client::Column::Id)
        .offset(offset)
        .limit(limit)
        .all(db)
        .await?;
    Ok(rows.into_iter().map(ClientView::from).collect())
}

/// A key and its owner's id, if `presented` is the keyed hash of its token.
async fn status_of(
    db: &DatabaseConnection,
    client_id: &str,
    presented: &[u8; 32],
) -> ServiceResult<(ClientView, i64)> {
    let invalid = || ServiceError::Unauthorized("invalid client credentials".into());
    let row = client::Entity::find()
        .filter(client::Column::ClientId.eq(client_id))
        .one(db)
        .await?
        .ok_or_else(invalid)?;
    let stored = stored_token_hash(&row).ok_or_else(invalid)?;
    if !bool::from(presented.ct_eq(&stored)) {
        return Err(invalid());
    }
    let user_id = row.user_id;
    Ok((row.into(), user_id))
}

async fn operate(
    db: &DatabaseConnection,
    client_id: &str,
    change: OperatorChange,
) -> ServiceResult<ClientView> {
    let row = live_client(client_id, None)
        .one(db)
        .await?
        .ok_or(ServiceError::NotFound("client"))?;
    let mut update = client::Entity::update_many().filter(client::Column::Id.eq(row.id));
    if let Some(credits) = change.credits {
        update = apply_credit_change(
            update,
            client::Column::SettleCredits,
            row.settle_credits,
            credits,
            "key",
        )?;
    }
    if let Some(rate) = change.rate_limit_per_second {
        update = update.col_expr(
            client::Column::RateLimitPerSecond,
            Expr::value(rate.map(|n| n as i32)),
        );
    }
    if change_key(db, &row.client_id, update).await? != 1 {
        return Err(credit_change_refused(change.credits, "key"));
    }
    let row = client::Entity::find_by_id(row.id)
        .one(db)
        .await?
        .ok_or(ServiceError::NotFound("client"))?;
    Ok(row.into())
}

async fn update(
    db: &DatabaseConnection,
    token_key: &SecretString,
    user: &AuthUser,
    client_id: &str,
    change: KeyChange,
) -> ServiceResult<NewClientToken> {
    let row = live_client(client_id, Some(user))
        .one(db)
        .await?
        .ok_or(ServiceError::NotFound("client"))?;
    if ClientStatus::of(&row, Utc::now()) == ClientStatus::Expired
        && (change.status.is_some() || change.rotate)
    {
        return Err(ServiceError::Conflict(
            "this key has expired; create a new one".into(),
        ));
    }
    let mut update = client::Entity::update_many()
        .filter(client::Column::Id.eq(row.id))
        .filter(client::Column::RevokedAt.is_null());
    if let Some(title) = change.title {
        update = update.col_expr(client::Column::Title, Expr::value(title));
    }
    if let Some(scope) = change.scope {
        update = update.col_expr(client::Column::Scope, Expr::value(scope));
    }
    if let Some(networks) = change.networks {
        update = update.col_expr(client::Column::Networks, Expr::value(networks));
    }
    match change.status {
        Some(ClientStatus::Paused) if row.paused_at.is_none() => {
            update = update.col_expr(client::Column::PausedAt, Expr::value(Utc::now()));
        }
        Some(ClientStatus::Active) => {
            update = update.col_expr(
                client::Column::PausedAt,
                Expr::value(Option::<DateTime<Utc>>::None),
            );
        }
        _ => {}
    }
    let token = if change.rotate {
        let (token, hash) = new_client_token(token_key, &row.client_id);
        update = update.col_expr(client::Column::TokenHash, Expr::value(hash));
        Some(token)
    } else {
        None
    };
    if change_key(db, &row.client_id, update).await? != 1 {
        // Revoked in the meantime.
        return Err(ServiceError::NotFound("client"));
    }
    let row = client::Entity::find_by_id(row.id)
        .one(db)
        .await?
        .ok_or(ServiceError::NotFound("client"))?;
    Ok(NewClientToken {
        view: row.into(),
        token,
    })
}

async fn revoke(db: &DatabaseConnection, user: &AuthUser, client_id: &str) -> ServiceResult<()> {
    let row = live_client(client_id, Some(user))
        .one(db)
        .await?
        .ok_or(ServiceError::NotFound("client"))?;
    let revoke = client::Entity::update_many()
        .col_expr(client::Column::RevokedAt, Expr::value(Utc::now()))
        .filter(client::Column::Id.eq(row.id))
        .filter(client::Column::RevokedAt.is_null());
    if change_key(db, &row.client_id, revoke).await? != 1 {
        // Revoked in the meantime.
        return Err(ServiceError::NotFound("client"));
    }
    Ok(())
}

/// A key that is not revoked; with `owner`, only if it is theirs (an admin's: any). Someone
/// else's key is indistinguishable from a missing one.
fn live_client(client_id: &str, owner: Option<&AuthUser>) -> sea_orm::Select<client::Entity> {
    let mut query = client::Entity::find()
        .filter(client::Column::ClientId.eq(client_id))
        .filter(client::Column::RevokedAt.is_null());
    if let Some(user) = owner.filter(|u| !u.is_admin) {
        query = query.filter(client::Column::UserId.eq(user.id));
    }
    query
}

/// Apply `update` (to the key `client_id`) and tell the fleet, in one transaction: the
/// notification goes out when the change commits, and not for a change that made nothing.
/// Answers the number of rows changed.
async fn change_key(
    db: &DatabaseConnection,
    client_id: &str,
    update: sea_orm::UpdateMany<client::Entity>,
) -> ServiceResult<u64> {
    let txn = db.begin().await?;
    let changed = update.exec(&txn).await?.rows_affected;
    if changed > 0 {
        key_changes::notify_key_changed(&txn, client_id).await?;
        txn.commit().await?;
    }
    Ok(changed)
}

/// Validate a key's network limit: known networks (v1 names or CAIP-2), stored as v1 names,
/// no repeats, at least one.
pub fn parse_networks(raw: &[String]) -> ServiceResult<String> {
    if raw.is_empty() {
        return Err(ServiceError::InvalidInput(
            "networks must name at least one network (omit it to allow all)".into(),
        ));
    }
    let mut out: Vec<&str> = Vec::new();
    for n in raw {
        let info = x402::network::parse_network(n.trim()).ok_or_else(|| {
            ServiceError::InvalidInput(format!("unsupported network: {}", n.trim()))
        })?;
        if !out.contains(&info.v1_name) {
            out.push(info.v1_name);
        }
    }
    Ok(out.join(","))
}

/// Validate and normalise a comma-separated scope: known operations, no repeats, sorted as in
/// `SCOPES`.
pub fn parse_scope(raw: &str) -> ServiceResult<String> {
    let mut wanted: Vec<&str> = Vec::new();
    for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if !SCOPES.contains(&part) {
            return Err(ServiceError::InvalidInput(format!(
                "unknown scope `{part}` (allowed: {})",
                SCOPES.join(", ")
            )));
        }
        if !wanted.contains(&part) {
            wanted.push(part);
        }
    }
    if wanted.is_empty() {
        return Err(ServiceError::InvalidInput(
            "scope must name at least one operation".into(),
        ));
    }
    Ok(SCOPES
        .iter()
        .filter(|s| wanted.contains(s))
        .copied()
        .collect::<Vec<_>>()
        .join(","))
}

/// The keyed hash of a presented token: bound to its key id, so a token is worth nothing
/// under another id.
pub(super) fn token_hash(key: &SecretString, client_id: &str, token: &str) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key.expose_secret().as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(client_id.as_bytes());
    mac.update(b":");
    mac.update(token.as_bytes());
    mac.finalize().into_bytes().into()
}

pub(super) fn stored_token_hash(c: &client::Model) -> Option<[u8; 32]> {
    hex::decode(&c.token_hash).ok()?.try_into().ok()
}

/// A new client token and its stored keyed hash.
fn new_client_token(token_key: &SecretString, client_id: &str) -> (SecretString, String) {
    let token = format!("x402sk_{}", random_token(32));
    let hash = token_hash(token_key, client_id, &token);
    (SecretString::from(token), hex::encode(hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scope_is_known_operations_in_order_without_repeats() {
        assert_eq!(
            parse_scope("settle, verify,settle").unwrap(),
            "verify,settle"
        );
        assert_eq!(parse_scope("verify").unwrap(), "verify");
        assert!(parse_scope(" , ").is_err());
        assert!(parse_scope("verify,admin").is_err());
    }

    #[test]
    fn a_token_hash_is_bound_to_its_key_id() {
        let key = SecretString::from("k".to_owned());
        let (token, stored) = new_client_token(&key, "cl_a");
        let token = token.expose_secret();
        assert_eq!(hex::encode(token_hash(&key, "cl_a", token)), stored);
        assert_ne!(hex::encode(token_hash(&key, "cl_b", token)), stored);
        assert!(token.starts_with("x402sk_"));
    }
}
