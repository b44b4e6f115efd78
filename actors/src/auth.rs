//! `AuthActor`: users (argon2id), JWT access/refresh tokens with rotation and reuse detection,
//! and client API keys.
//!
//! Client keys are the hot path of `/verify` and `/settle`: `AuthHandle::authenticate_client`
//! answers from a `DashMap` the actor keeps warm (one DB read on the first use of a key, none
//! after). The actor is the only writer of that map; a change to a key evicts it before the
//! change is acknowledged, and only once the change is made: a refused change (someone else's
//! key) touches neither the database nor the cache. On PostgreSQL every change is also told to
//! the fleet (`key_changes`), whose instances evict the key at once.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine;
use chrono::{DateTime, Utc};
use dashmap::DashMap;
use entities::{client, refresh_token, user};
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Set, TransactionTrait,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::error::{conflict_on_unique, ServiceError, ServiceResult};
use crate::key_changes;
use crate::throttle::{self, Policy, Scope, Verdict};

pub mod accounts;

use accounts::{AccountCaps, AccountLimits};

type HmacSha256 = Hmac<Sha256>;

/// Operations a client key may be granted.
pub const SCOPES: [&str; 2] = ["verify", "settle"];
pub const DEFAULT_SCOPE: &str = "verify,settle";
/// Longest key lifetime accepted: ten years.
pub const MAX_TTL_HOURS: u64 = 87_600;
const MAX_PASSWORD_LEN: usize = 256;
/// How long a cached client key is trusted without re-reading it. Changes made through other
/// instances arrive at once (`key_changes`); this bounds what a lost notification could keep.
pub const CLIENT_CACHE_TTL: Duration = Duration::from_secs(30);

pub struct AuthConfig {
    pub throttles: Throttles,
    pub jwt_secret: SecretString,
    pub client_token_key: SecretString,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    pub min_password_length: usize,
    pub caps: AccountCaps,
}

/// Key material derived once at start.
struct Keys {
    jwt_encoding: EncodingKey,
    jwt_decoding: DecodingKey,
    client_token_key: SecretString,
    access_ttl: Duration,
    refresh_ttl: Duration,
    min_password_length: usize,
}

/// What the hot path needs to know about a client key.
#[derive(Clone)]
struct CachedClient {
    /// When this entry was read from the database: entries older than `CLIENT_CACHE_TTL` are
    /// re-read.
    loaded_at: std::time::Instant,
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
            .unwrap_or(network);
        self.networks
            .as_ref()
            .is_none_or(|n| n.iter().any(|x| x == v1))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// User id.
    pub sub: String,
    pub adm: bool,
    /// `access` or `refresh`.
    pub typ: String,
    pub jti: String,
    pub iat: i64,
    pub exp: i64,
}

/// An authenticated user, from a valid access token.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub id: i64,
    pub is_admin: bool,
}

/// A user account as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = User)]
pub struct UserView {
    #[schema(example = 1)]
    pub id: i64,
    #[schema(example = "user@example.com")]
    pub email: String,
    pub is_admin: bool,
    pub created_at: DateTime<Utc>,
}

impl From<user::Model> for UserView {
    fn from(u: user::Model) -> Self {
        Self {
            id: u.id,
            email: u.email,
            is_admin: u.is_admin,
            created_at: u.created_at,
        }
    }
}

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

fn split_networks(networks: &Option<String>) -> Option<Vec<String>> {
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

pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub user_id: i64,
}

pub struct AuthActor {
    db: DatabaseConnection,
    keys: Arc<Keys>,
    clients: Arc<DashMap<String, CachedClient>>,
    /// Bumped by every change to a client key (revocation, pause, rotation, limits): a cache
    /// fill that started before a change must not store what it read.
    client_epoch: u64,
    /// Whether keys may be cached: always on SQLite; on PostgreSQL only while this instance
    /// hears the fleet's changes (`key_changes`).
    cache_trusted: bool,
    /// A real argon2id hash of a random password: unknown emails are verified against it so
    /// that they take as long as wrong passwords.
    dummy_hash: Arc<String>,
    caps: AccountCaps,
}

impl Actor for AuthActor {
    type Context = Context<Self>;
}

/// The limits on logins, signups and refreshes (see `throttle`).
#[derive(Debug, Clone, Copy)]
pub struct Throttles {
    pub login_per_account: Policy,
    pub login_per_ip: Policy,
    pub signup_per_ip: Policy,
    pub refresh_per_ip: Policy,
}

#[derive(Clone)]
pub struct AuthHandle {
    addr: Addr<AuthActor>,
    keys: Arc<Keys>,
    clients: Arc<DashMap<String, CachedClient>>,
    db: DatabaseConnection,
    throttles: Throttles,
    caps: AccountCaps,
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

impl AuthHandle {
    /// Start the actor on the current arbiter.
    pub async fn start(db: DatabaseConnection, config: AuthConfig) -> ServiceResult<Self> {
        let keys = Arc::new(Keys {
            jwt_encoding: EncodingKey::from_secret(config.jwt_secret.expose_secret().as_bytes()),
            jwt_decoding: DecodingKey::from_secret(config.jwt_secret.expose_secret().as_bytes()),
            client_token_key: config.client_token_key,
            access_ttl: config.access_ttl,
            refresh_ttl: config.refresh_ttl,
            min_password_length: config.min_password_length,
        });
        let random = random_token(24);
        let dummy_hash = hash_password(random).await?;
        let clients = Arc::new(DashMap::new());
        let actor = AuthActor {
            db: db.clone(),
            keys: keys.clone(),
            clients: clients.clone(),
            client_epoch: 0,
            cache_trusted: db.get_database_backend() != sea_orm::DatabaseBackend::Postgres,
            dummy_hash: Arc::new(dummy_hash),
            caps: config.caps,
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

    /// A signup by someone at `ip` (limited per IP); `None` for the operator's own.
    pub async fn signup(
        &self,
        email: &str,
        password: &str,
        is_admin: bool,
        ip: Option<&str>,
    ) -> ServiceResult<UserView> {
        if let Some(ip) = ip {
            let verdict =
                throttle::attempt(&self.db, Scope::SignupIp, ip, &self.throttles.signup_per_ip)
                    .await?;
            too_many(
                "Too many signups from this address; try again later",
                verdict,
            )?;
        }
        let email = parse_email(email)?;
        let password = self.parse_password(password)?;
        self.addr
            .send(Signup {
                email,
                password,
                is_admin,
            })
            .await?
    }

    /// A login from `ip`. Failures are limited per account and per IP (`throttle`): past the
    /// limit the answer is 429 for right and wrong passwords alike, and it comes at once
    /// either way (no password is checked), so it tells nothing about the password.
    pub async fn login(&self, email: &str, password: &str, ip: &str) -> ServiceResult<TokenPair> {
        let email = email.trim().to_lowercase();
        // The account is named by what was typed, known or not: unknown emails are limited
        // like real ones, so the limit does not reveal which exist. Bounded in size.
        let account: String = email.chars().take(254).collect();
        let t = &self.throttles;
        let message = "Too many failed logins; try again later";
        too_many(
            message,
            throttle::attempt(&self.db, Scope::LoginIp, ip, &t.login_per_ip).await?,
        )?;
        let verdict = throttle::attempt(
            &self.db,
            Scope::LoginAccount,
            &account,
            &t.login_per_account,
        )
        .await?;
        if !verdict.is_allowed() {
            // Refused for the account's sake: not this address's failure.
            throttle::refund(&self.db, Scope::LoginIp, ip).await?;
            too_many(message, verdict)?;
        }
        let result = if password.len() > MAX_PASSWORD_LEN {
            Err(ServiceError::InvalidCredentials)
        } else {
            self.addr
                .send(Login {
                    email,
                    password: password.to_owned(),
                })
                .await?
        };
        if result.is_ok() {
            // A success starts the account over, and was no failure of the address.
            throttle::reset(&self.db, Scope::LoginAccount, &account).await?;
            throttle::refund(&self.db, Scope::LoginIp, ip).await?;
        }
        result
    }

    /// A refresh from `ip` (limited per IP).
    pub async fn refresh(&self, refresh_token: &str, ip: &str) -> ServiceResult<TokenPair> {
        let verdict = throttle::attempt(
            &self.db,
            Scope::RefreshIp,
            ip,
            &self.throttles.refresh_per_ip,
        )
        .await?;
        too_many(
            "Too many token refreshes from this address; try again later",
            verdict,
        )?;
        let claims = self
            .decode(refresh_token, "refresh")
            .map_err(|e| ServiceError::InvalidSession(e.to_string()))?;
        self.addr.send(Refresh { claims }).await?
    }

    /// Check an access token. Pure: no actor, no database.
    pub fn verify_access(&self, token: &str) -> ServiceResult<AuthUser> {
        let claims = self
            .decode(token, "access")
            .map_err(|_| ServiceError::Unauthorized("invalid or expired access token".into()))?;
        let id = claims
            .sub
            .parse()
            .map_err(|_| ServiceError::Unauthorized("invalid access token".into()))?;
        Ok(AuthUser {
            id,
            is_admin: claims.adm,
        })
    }

    fn decode(&self, token: &str, typ: &str) -> Result<Claims, jsonwebtoken::errors::Error> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let claims =
            jsonwebtoken::decode::<Claims>(token, &self.keys.jwt_decoding, &validation)?.claims;
        if claims.typ != typ {
            return Err(jsonwebtoken::errors::ErrorKind::InvalidToken.into());
        }
        Ok(claims)
    }

    fn parse_password(&self, password: &str) -> ServiceResult<String> {
        let len = password.chars().count();
        if len < self.keys.min_password_length {
            return Err(ServiceError::InvalidInput(format!(
                "password must be at least {} characters",
                self.keys.min_password_length
            )));
        }
        if password.len() > MAX_PASSWORD_LEN {
            return Err(ServiceError::InvalidInput(format!(
                "password must be at most {MAX_PASSWORD_LEN} bytes"
            )));
        }
        Ok(password.to_owned())
    }

    pub async fn create_client(
        &self,
        user: &AuthUser,
        title: &str,
        scope: Option<&str>,
        ttl_hours: Option<u64>,
        networks: Option<&[String]>,
    ) -> ServiceResult<NewClient> {
        let title = title.trim();
        if title.is_empty() || title.chars().count() > 200 {
            return Err(ServiceError::InvalidInput(
                "title must be 1 to 200 characters".into(),
            ));
        }
        let scope = parse_scope(scope.unwrap_or(DEFAULT_SCOPE))?;
        let networks = networks.map(parse_networks).transpose()?;
        if let Some(ttl) = ttl_hours {
            if ttl == 0 || ttl > MAX_TTL_HOURS {
                return Err(ServiceError::InvalidInput(format!(
                    "ttl_hours must be between 1 and {MAX_TTL_HOURS}"
                )));
            }
        }
        self.addr
            .send(CreateClient {
                user_id: user.id,
                title: title.to_owned(),
                scope,
                networks,
                ttl_hours,
            })
            .await?
    }

    pub async fn list_clients(
        &self,
        user: &AuthUser,
        offset: u64,
        limit: u64,
    ) -> ServiceResult<Vec<ClientView>> {
        self.addr
            .send(ListClients {
                user: user.clone(),
                offset,
                limit,
            })
            .await?
    }

    pub async fn revoke_client(&self, user: &AuthUser, client_id: &str) -> ServiceResult<()> {
        self.addr
            .send(RevokeClient {
                user: user.clone(),
                client_id: client_id.to_owned(),
            })
            .await?
    }

    /// The hot path: check `X-Client-ID` + `X-Client-Token`. Served from the cache when warm;
    /// the token is compared as a keyed hash, in constant time.
    pub async fn authenticate_client(
        &self,
        client_id: &str,
        token: &str,
    ) -> ServiceResult<AuthenticatedClient> {
        let invalid = || ServiceError::Unauthorized("invalid client credentials".into());
        if client_id.is_empty() || client_id.len() > 64 || token.is_empty() || token.len() > 256 {
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

    /// `GET /clients/status`: a key's own view of itself, whatever its status (a paused,
    /// revoked or expired key may still ask what it is), and its account (user id). Not the hot
    /// path: one database read, the token compared as a keyed hash in constant time.
    pub async fn client_status(
        &self,
        client_id: &str,
        token: &str,
    ) -> ServiceResult<(ClientView, i64)> {
        let invalid = || ServiceError::Unauthorized("invalid client credentials".into());
        if client_id.is_empty() || client_id.len() > 64 || token.is_empty() || token.len() > 256 {
            return Err(invalid());
        }
        self.addr
            .send(ClientStatusOf {
                client_id: client_id.to_owned(),
                presented: token_hash(&self.keys.client_token_key, client_id, token),
            })
            .await?
    }

    /// `PATCH /clients/{id}` by the key's owner (or an admin user): title, scope, networks,
    /// pause/resume, token rotation. Returns the key and, after a rotation, its new token.
    pub async fn update_client(
        &self,
        user: &AuthUser,
        client_id: &str,
        change: ClientChange,
    ) -> ServiceResult<NewClientToken> {
        let title = match change.title.as_deref().map(str::trim) {
            Some(t) if t.is_empty() || t.chars().count() > 200 => {
                return Err(ServiceError::InvalidInput(
                    "title must be 1 to 200 characters".into(),
                ))
            }
            t => t.map(str::to_owned),
        };
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
        self.addr
            .send(UpdateClient {
                user: user.clone(),
                client_id: client_id.to_owned(),
                title,
                scope,
                networks,
                status: change.status,
                rotate: change.rotate,
            })
            .await?
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
        self.addr
            .send(OperateClient {
                client_id: client_id.to_owned(),
                change,
            })
            .await?
    }

    pub async fn list_users(&self, offset: u64, limit: u64) -> ServiceResult<Vec<UserView>> {
        self.addr.send(ListUsers { offset, limit }).await?
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

/// The largest per-key rate limit an operator may set (requests per second).
pub const MAX_RATE_LIMIT: u32 = 1_000_000;

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

/// How an operator changes a key's settle credits.
#[derive(Debug, Clone, Copy)]
pub enum CreditChange {
    /// Exactly this many (`None`: unlimited).
    Set(Option<i64>),
    /// Add (or, negative, remove) credits of a limited key.
    Add(i64),
}

/// Refuse a credit change that is wrong whatever the balance.
fn check_credit_change(change: CreditChange) -> ServiceResult<()> {
    match change {
        CreditChange::Set(Some(n)) if n < 0 => Err(ServiceError::InvalidInput(
            "settleCredits must be 0 or more (null for unlimited)".into(),
        )),
        CreditChange::Add(0) => Err(ServiceError::InvalidInput(
            "addSettleCredits must not be 0".into(),
        )),
        _ => Ok(()),
    }
}

/// Add a change of the credit balance in `column` (now `current`) to `update`. An addition is
/// atomic against concurrent settles, and the update then matches no row (see
/// `credit_change_refused`) rather than go below zero or past i64::MAX (SQLite would store an
/// overflowing sum as a REAL, which no read of the row could decode). `holder` ("key",
/// "account") names the balance in refusals.
fn apply_credit_change<E: EntityTrait>(
    update: sea_orm::UpdateMany<E>,
    column: E::Column,
    current: Option<i64>,
    change: CreditChange,
    holder: &str,
) -> ServiceResult<sea_orm::UpdateMany<E>> {
    match change {
        CreditChange::Set(n) => Ok(update.col_expr(column, Expr::value(n))),
        CreditChange::Add(n) => {
            if current.is_none() {
                return Err(ServiceError::InvalidInput(format!(
                    "this {holder} has no credit limit; set settleCredits first"
                )));
            }
            let within = match n.checked_neg() {
                _ if n > 0 => column.lte(i64::MAX - n),
                Some(least) => column.gte(least),
                // -i64::MIN overflows: nothing holds that many credits to remove.
                None => {
                    return Err(ServiceError::InvalidInput(format!(
                        "cannot remove more credits than the {holder} has"
                    )))
                }
            };
            Ok(update
                .col_expr(column, Expr::col(column).add(n))
                .filter(within))
        }
    }
}

/// Why an update made by `apply_credit_change` matched no row.
fn credit_change_refused(change: Option<CreditChange>, holder: &str) -> ServiceError {
    ServiceError::InvalidInput(match change {
        Some(CreditChange::Add(n)) if n > 0 => {
            let article = if holder.starts_with(['a', 'e', 'i', 'o', 'u']) {
                "an"
            } else {
                "a"
            };
            format!("{article} {holder} holds at most {} credits", i64::MAX)
        }
        _ => format!("cannot remove more credits than the {holder} has"),
    })
}

/// Use one settle credit of a limited key, atomically; `false` when none is left.
pub async fn use_settle_credit(db: &DatabaseConnection, client_id: &str) -> ServiceResult<bool> {
    use sea_orm::sea_query::Expr;
    let used = client::Entity::update_many()
        .col_expr(
            client::Column::SettleCredits,
            Expr::col(client::Column::SettleCredits).sub(1),
        )
        .filter(client::Column::ClientId.eq(client_id))
        .filter(client::Column::SettleCredits.gt(0))
        .exec(db)
        .await?;
    Ok(used.rows_affected == 1)
}

/// Give back a credit used by a settle that sent nothing (limited keys only).
pub async fn refund_settle_credit(db: &DatabaseConnection, client_id: &str) -> ServiceResult<()> {
    use sea_orm::sea_query::Expr;
    client::Entity::update_many()
        .col_expr(
            client::Column::SettleCredits,
            Expr::col(client::Column::SettleCredits).add(1),
        )
        .filter(client::Column::ClientId.eq(client_id))
        .filter(client::Column::SettleCredits.is_not_null())
        .exec(db)
        .await?;
    Ok(())
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

/// Lower-cased, trimmed, plausibly deliverable email.
pub fn parse_email(raw: &str) -> ServiceResult<String> {
    let email = raw.trim().to_lowercase();
    let bad = || ServiceError::InvalidInput("email is not a valid address".into());
    if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    let (local, domain) = email.split_once('@').ok_or_else(bad)?;
    if local.is_empty()
        || local.len() > 64
        || domain.contains('@')
        || !domain.contains('.')
        || domain.starts_with('.')
        || domain.ends_with('.')
        || domain.contains("..")
    {
        return Err(bad());
    }
    Ok(email)
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

fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

fn token_hash(key: &SecretString, client_id: &str, token: &str) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key.expose_secret().as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(client_id.as_bytes());
    mac.update(b":");
    mac.update(token.as_bytes());
    mac.finalize().into_bytes().into()
}

async fn hash_password(password: String) -> ServiceResult<String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| ServiceError::Internal(format!("argon2: {e}")))
    })
    .await
    .map_err(|e| ServiceError::Internal(format!("blocking pool: {e}")))?
}

async fn verify_password(hash: String, password: String) -> ServiceResult<bool> {
    tokio::task::spawn_blocking(move || {
        let parsed =
            PasswordHash::new(&hash).map_err(|e| ServiceError::Internal(format!("argon2: {e}")))?;
        Ok(Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    })
    .await
    .map_err(|e| ServiceError::Internal(format!("blocking pool: {e}")))?
}

fn issue_token(
    keys: &Keys,
    user_id: i64,
    is_admin: bool,
    typ: &str,
    jti: &str,
    ttl: Duration,
) -> ServiceResult<(String, DateTime<Utc>)> {
    let now = Utc::now();
    let exp =
        now + chrono::Duration::from_std(ttl).map_err(|e| ServiceError::Internal(e.to_string()))?;
    let claims = Claims {
        sub: user_id.to_string(),
        adm: is_admin,
        typ: typ.to_owned(),
        jti: jti.to_owned(),
        iat: now.timestamp(),
        exp: exp.timestamp(),
    };
    let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &keys.jwt_encoding)
        .map_err(|e| ServiceError::Internal(format!("jwt: {e}")))?;
    Ok((token, exp))
}

/// Issue an access token and a refresh token of `family`, recording the refresh token.
async fn issue_pair(
    db: &DatabaseConnection,
    keys: &Keys,
    user: &user::Model,
    family: &str,
) -> ServiceResult<TokenPair> {
    let (access_token, _) = issue_token(
        keys,
        user.id,
        user.is_admin,
        "access",
        &random_token(16),
        keys.access_ttl,
    )?;
    let jti = random_token(24);
    let (refresh_token, expires_at) = issue_token(
        keys,
        user.id,
        user.is_admin,
        "refresh",
        &jti,
        keys.refresh_ttl,
    )?;
    refresh_token::ActiveModel {
        jti: Set(jti),
        family_id: Set(family.to_owned()),
        user_id: Set(user.id),
        expires_at: Set(expires_at),
        created_at: Set(Utc::now()),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(TokenPair {
        access_token,
        refresh_token,
        user_id: user.id,
    })
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

impl AuthActor {
    /// A key changed: drop it from the hot-path cache and make any cache fill in flight store
    /// nothing (it may have read the row before the change).
    fn forget_client(&mut self, client_id: &str) {
        self.clients.remove(client_id);
        self.client_epoch += 1;
    }

    /// After a change to `client_id` was tried: forget the key if it was made. A refused
    /// change (someone else's key, an invalid one) leaves the cache as it was.
    fn forget_if_changed<T>(&mut self, res: &ServiceResult<T>, client_id: &str) {
        if res.is_ok() {
            self.forget_client(client_id);
        }
    }
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

/// The key cache, as the fleet's changes reach it (`key_changes`).
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
            CacheChange::Key(id) => self.forget_client(&id),
            CacheChange::Account(user_id) => self.forget_account(user_id),
            CacheChange::Trust(trusted) => {
                self.clients.clear();
                self.client_epoch += 1;
                self.cache_trusted = trusted;
            }
        }
    }
}

fn stored_token_hash(c: &client::Model) -> Option<[u8; 32]> {
    hex::decode(&c.token_hash).ok()?.try_into().ok()
}

fn cached(c: &client::Model, owner: &user::Model) -> Option<CachedClient> {
    if c.revoked_at.is_some() {
        return None;
    }
    Some(CachedClient {
        loaded_at: std::time::Instant::now(),
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

/// A new client token and its stored keyed hash.
fn new_client_token(keys: &Keys, client_id: &str) -> (SecretString, String) {
    let token = format!("x402sk_{}", random_token(32));
    let hash = token_hash(&keys.client_token_key, client_id, &token);
    (SecretString::from(token), hex::encode(hash))
}

// ---- messages ----

#[derive(Message)]
#[rtype(result = "ServiceResult<UserView>")]
struct Signup {
    email: String,
    password: String,
    is_admin: bool,
}

impl Handler<Signup> for AuthActor {
    type Result = ResponseFuture<ServiceResult<UserView>>;

    fn handle(&mut self, msg: Signup, _: &mut Self::Context) -> Self::Result {
        let db = self.db.clone();
        Box::pin(async move {
            let hash = hash_password(msg.password).await?;
            let now = Utc::now();
            let inserted = user::ActiveModel {
                email: Set(msg.email),
                password_hash: Set(hash),
                is_admin: Set(msg.is_admin),
                created_at: Set(now),
                updated_at: Set(now),
                ..Default::default()
            }
            .insert(&db)
            .await;
            conflict_on_unique(inserted, "an account with this email already exists")
                .map(Into::into)
        })
    }
}

#[derive(Message)]
#[rtype(result = "ServiceResult<TokenPair>")]
struct Login {
    email: String,
    password: String,
}

impl Handler<Login> for AuthActor {
    type Result = ResponseFuture<ServiceResult<TokenPair>>;

    fn handle(&mut self, msg: Login, _: &mut Self::Context) -> Self::Result {
        let db = self.db.clone();
        let keys = self.keys.clone();
        let dummy = self.dummy_hash.clone();
        Box::pin(async move {
            let found = user::Entity::find()
                .filter(user::Column::Email.eq(msg.email))
                .one(&db)
                .await?;
            // Same work whether or not the email exists.
            let hash = found
                .as_ref()
                .map_or_else(|| dummy.as_str().to_owned(), |u| u.password_hash.clone());
            let ok = verify_password(hash, msg.password).await?;
            let user = match (found, ok) {
                (Some(u), true) => u,
                _ => return Err(ServiceError::InvalidCredentials),
            };
            issue_pair(&db, &keys, &user, &random_token(16)).await
        })
    }
}

#[derive(Message)]
#[rtype(result = "ServiceResult<TokenPair>")]
struct Refresh {
    claims: Claims,
}

impl Handler<Refresh> for AuthActor {
    type Result = ResponseFuture<ServiceResult<TokenPair>>;

    fn handle(&mut self, msg: Refresh, _: &mut Self::Context) -> Self::Result {
        let db = self.db.clone();
        let keys = self.keys.clone();
        Box::pin(async move {
            let invalid = |why: &str| ServiceError::InvalidSession(why.to_owned());
            let row = refresh_token::Entity::find()
                .filter(refresh_token::Column::Jti.eq(&msg.claims.jti))
                .one(&db)
                .await?
                .ok_or_else(|| invalid("unknown refresh token"))?;
            if row.revoked_at.is_some() {
                return Err(invalid("refresh token revoked"));
            }
            // Single use: the conditional update is the race-free point. A token that was used
            // already is being replayed: revoke its whole session.
            let now = Utc::now();
            let claimed = refresh_token::Entity::update_many()
                .col_expr(refresh_token::Column::UsedAt, Expr::value(now))
                .filter(refresh_token::Column::Id.eq(row.id))
                .filter(refresh_token::Column::UsedAt.is_null())
                .filter(refresh_token::Column::RevokedAt.is_null())
                .exec(&db)
                .await?;
            if claimed.rows_affected != 1 {
                refresh_token::Entity::update_many()
                    .col_expr(refresh_token::Column::RevokedAt, Expr::value(now))
                    .filter(refresh_token::Column::FamilyId.eq(&row.family_id))
                    .filter(refresh_token::Column::RevokedAt.is_null())
                    .exec(&db)
                    .await?;
                tracing::warn!(
                    user_id = row.user_id,
                    "refresh token reuse: session revoked"
                );
                return Err(invalid("refresh token already used; session revoked"));
            }
            let user = user::Entity::find_by_id(row.user_id)
                .one(&db)
                .await?
                .ok_or_else(|| invalid("user no longer exists"))?;
            issue_pair(&db, &keys, &user, &row.family_id).await
        })
    }
}

#[derive(Message)]
#[rtype(result = "ServiceResult<NewClient>")]
struct CreateClient {
    user_id: i64,
    title: String,
    scope: String,
    networks: Option<String>,
    ttl_hours: Option<u64>,
}

impl Handler<CreateClient> for AuthActor {
    type Result = ResponseFuture<ServiceResult<NewClient>>;

    fn handle(&mut self, msg: CreateClient, _: &mut Self::Context) -> Self::Result {
        let db = self.db.clone();
        let keys = self.keys.clone();
        let max_keys = self.caps.max_keys;
        Box::pin(async move {
            let txn = accounts::begin_within_cap(
                &db,
                msg.user_id,
                accounts::live_keys(msg.user_id),
                max_keys,
                "live client keys (revoke one to make room)",
            )
            .await?;
            let client_id = format!("cl_{}", hex::encode(rand::random::<[u8; 12]>()));
            let (token, hash) = new_client_token(&keys, &client_id);
            let now = Utc::now();
            let expires_at = msg
                .ttl_hours
                .map(|h| now + chrono::Duration::hours(h as i64));
            let row = client::ActiveModel {
                client_id: Set(client_id),
                user_id: Set(msg.user_id),
                title: Set(msg.title),
                scope: Set(msg.scope),
                networks: Set(msg.networks),
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
        })
    }
}

#[derive(Message)]
#[rtype(result = "ServiceResult<Vec<ClientView>>")]
struct ListClients {
    user: AuthUser,
    offset: u64,
    limit: u64,
}

impl Handler<ListClients> for AuthActor {
    type Result = ResponseFuture<ServiceResult<Vec<ClientView>>>;

    fn handle(&mut self, msg: ListClients, _: &mut Self::Context) -> Self::Result {
        let db = self.db.clone();
        Box::pin(async move {
            let mut query = client::Entity::find().filter(client::Column::RevokedAt.is_null());
            if !msg.user.is_admin {
                query = query.filter(client::Column::UserId.eq(msg.user.id));
            }
            let rows = query
                .order_by_asc(client::Column::Id)
                .offset(msg.offset)
                .limit(msg.limit)
                .all(&db)
                .await?;
            Ok(rows.into_iter().map(ClientView::from).collect())
        })
    }
}

#[derive(Message)]
#[rtype(result = "ServiceResult<ClientView>")]
struct OperateClient {
    client_id: String,
    change: OperatorChange,
}

impl Handler<OperateClient> for AuthActor {
    type Result = ResponseActFuture<Self, ServiceResult<ClientView>>;

    fn handle(&mut self, msg: OperateClient, _: &mut Self::Context) -> Self::Result {
        let db = self.db.clone();
        let id = msg.client_id.clone();
        let work = async move {
            let row = live_client(&msg.client_id, None)
                .one(&db)
                .await?
                .ok_or(ServiceError::NotFound("client"))?;
            let mut update = client::Entity::update_many().filter(client::Column::Id.eq(row.id));
            if let Some(change) = msg.change.credits {
                update = apply_credit_change(
                    update,
                    client::Column::SettleCredits,
                    row.settle_credits,
                    change,
                    "key",
                )?;
            }
            if let Some(rate) = msg.change.rate_limit_per_second {
                update = update.col_expr(
                    client::Column::RateLimitPerSecond,
                    Expr::value(rate.map(|n| n as i32)),
                );
            }
            if change_key(&db, &row.client_id, update).await? != 1 {
                return Err(credit_change_refused(msg.change.credits, "key"));
            }
            let row = client::Entity::find_by_id(row.id)
                .one(&db)
                .await?
                .ok_or(ServiceError::NotFound("client"))?;
            Ok(row.into())
        };
        Box::pin(work.into_actor(self).map(move |res, act, _| {
            // The hot path re-reads the key (whether it is limited, its rate) on its next use.
            act.forget_if_changed(&res, &id);
            res
        }))
    }
}

#[derive(Message)]
#[rtype(result = "ServiceResult<(ClientView, i64)>")]
struct ClientStatusOf {
    client_id: String,
    presented: [u8; 32],
}

impl Handler<ClientStatusOf> for AuthActor {
    type Result = ResponseFuture<ServiceResult<(ClientView, i64)>>;

    fn handle(&mut self, msg: ClientStatusOf, _: &mut Self::Context) -> Self::Result {
        let db = self.db.clone();
        Box::pin(async move {
            let invalid = || ServiceError::Unauthorized("invalid client credentials".into());
            let row = client::Entity::find()
                .filter(client::Column::ClientId.eq(&msg.client_id))
                .one(&db)
                .await?
                .ok_or_else(invalid)?;
            let stored = stored_token_hash(&row).ok_or_else(invalid)?;
            if !bool::from(msg.presented.ct_eq(&stored)) {
                return Err(invalid());
            }
            let user_id = row.user_id;
            Ok((row.into(), user_id))
        })
    }
}

#[derive(Message)]
#[rtype(result = "ServiceResult<NewClientToken>")]
struct UpdateClient {
    user: AuthUser,
    client_id: String,
    title: Option<String>,
    scope: Option<String>,
    /// `Some(None)`: lift the network limit.
    networks: Option<Option<String>>,
    status: Option<ClientStatus>,
    rotate: bool,
}

impl Handler<UpdateClient> for AuthActor {
    type Result = ResponseActFuture<Self, ServiceResult<NewClientToken>>;

    fn handle(&mut self, msg: UpdateClient, _: &mut Self::Context) -> Self::Result {
        let db = self.db.clone();
        let keys = self.keys.clone();
        let id = msg.client_id.clone();
        let work = async move {
            let row = live_client(&msg.client_id, Some(&msg.user))
                .one(&db)
                .await?
                .ok_or(ServiceError::NotFound("client"))?;
            if ClientStatus::of(&row, Utc::now()) == ClientStatus::Expired
                && (msg.status.is_some() || msg.rotate)
            {
                return Err(ServiceError::Conflict(
                    "this key has expired; create a new one".into(),
                ));
            }
            let mut update = client::Entity::update_many()
                .filter(client::Column::Id.eq(row.id))
                .filter(client::Column::RevokedAt.is_null());
            if let Some(title) = msg.title {
                update = update.col_expr(client::Column::Title, Expr::value(title));
            }
            if let Some(scope) = msg.scope {
                update = update.col_expr(client::Column::Scope, Expr::value(scope));
            }
            if let Some(networks) = msg.networks {
                update = update.col_expr(client::Column::Networks, Expr::value(networks));
            }
            match msg.status {
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
            let token = if msg.rotate {
                let (token, hash) = new_client_token(&keys, &row.client_id);
                update = update.col_expr(client::Column::TokenHash, Expr::value(hash));
                Some(token)
            } else {
                None
            };
            if change_key(&db, &row.client_id, update).await? != 1 {
                // Revoked in the meantime.
                return Err(ServiceError::NotFound("client"));
            }
            let row = client::Entity::find_by_id(row.id)
                .one(&db)
                .await?
                .ok_or(ServiceError::NotFound("client"))?;
            Ok(NewClientToken {
                view: row.into(),
                token,
            })
        };
        Box::pin(work.into_actor(self).map(move |res, act, _| {
            // From here on this instance re-reads the key, so a pause or a rotation takes
            // effect at once (the others hear of it through `key_changes`).
            act.forget_if_changed(&res, &id);
            res
        }))
    }
}

#[derive(Message)]
#[rtype(result = "ServiceResult<()>")]
struct RevokeClient {
    user: AuthUser,
    client_id: String,
}

impl Handler<RevokeClient> for AuthActor {
    type Result = ResponseActFuture<Self, ServiceResult<()>>;

    fn handle(&mut self, msg: RevokeClient, _: &mut Self::Context) -> Self::Result {
        let db = self.db.clone();
        let id = msg.client_id.clone();
        let work = async move {
            let row = live_client(&msg.client_id, Some(&msg.user))
                .one(&db)
                .await?
                .ok_or(ServiceError::NotFound("client"))?;
            let revoke = client::Entity::update_many()
                .col_expr(client::Column::RevokedAt, Expr::value(Utc::now()))
                .filter(client::Column::Id.eq(row.id))
                .filter(client::Column::RevokedAt.is_null());
            if change_key(&db, &row.client_id, revoke).await? != 1 {
                // Revoked in the meantime.
                return Err(ServiceError::NotFound("client"));
            }
            Ok(())
        };
        Box::pin(work.into_actor(self).map(move |res, act, _| {
            // Evicted before the revoke is acknowledged.
            act.forget_if_changed(&res, &id);
            res
        }))
    }
}

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
        let epoch = self.client_epoch;
        let work = async move {
            let Some(row) = client::Entity::find()
                .filter(client::Column::ClientId.eq(&id))
                .one(&db)
                .await?
            else {
                return Ok(None);
            };
            let owner = user::Entity::find_by_id(row.user_id).one(&db).await?;
            Ok(owner.and_then(|owner| cached(&row, &owner)))
        };
        Box::pin(work.into_actor(self).map(
            move |res: ServiceResult<Option<CachedClient>>, act, _| {
                match &res {
                    // A key changed while this read was in flight (or changes may be missed):
                    // answer, but cache nothing.
                    Ok(Some(_)) if act.client_epoch != epoch || !act.cache_trusted => {}
                    Ok(Some(entry)) => {
                        act.clients.insert(msg.client_id, entry.clone());
                    }
                    _ => {}
                }
                res
            },
        ))
    }
}

#[derive(Message)]
#[rtype(result = "ServiceResult<Vec<UserView>>")]
struct ListUsers {
    offset: u64,
    limit: u64,
}

impl Handler<ListUsers> for AuthActor {
    type Result = ResponseFuture<ServiceResult<Vec<UserView>>>;

    fn handle(&mut self, msg: ListUsers, _: &mut Self::Context) -> Self::Result {
        let db = self.db.clone();
        Box::pin(async move {
            let rows = user::Entity::find()
                .order_by_asc(user::Column::Id)
                .offset(msg.offset)
                .limit(msg.limit)
                .all(&db)
                .await?;
            Ok(rows.into_iter().map(UserView::from).collect())
        })
    }
}
