//! Sessions: logging in, JWT access tokens (HS256, checked without the database) and refresh
//! tokens (single use, rotated; a reused one revokes its whole session).
//!
//! Login is timing-safe: an unknown email is checked against a real argon2id hash of a random
//! password, so it takes as long as a wrong password; past the throttle's limit the answer is
//! 429 at once for right and wrong passwords alike.

use std::time::Duration;

use chrono::{DateTime, Utc};
use entities::{refresh_token, user};
use jsonwebtoken::{Algorithm, Header, Validation};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, Set};
use serde::{Deserialize, Serialize};

use super::users::{verify_password, MAX_PASSWORD_LEN};
use super::{random_token, too_many, AuthHandle, Keys};
use crate::error::{ServiceError, ServiceResult};
use crate::throttle::{self, Scope};

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

pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub user_id: i64,
}

impl AuthHandle {
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
            login(&self.db, &self.keys, email, password.to_owned()).await
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
        let claims = decode(&self.keys, refresh_token, "refresh")
            .map_err(|e| ServiceError::InvalidSession(e.to_string()))?;
        refresh(&self.db, &self.keys, &claims).await
    }

    /// Check an access token. Pure: no actor, no database.
    pub fn verify_access(&self, token: &str) -> ServiceResult<AuthUser> {
        let claims = decode(&self.keys, token, "access")
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
}

/// A token's claims, if it is ours, unexpired (no leeway) and of type `typ`.
fn decode(keys: &Keys, token: &str, typ: &str) -> Result<Claims, jsonwebtoken::errors::Error> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 0;
    validation.set_required_spec_claims(&["exp", "sub"]);
    let claims = jsonwebtoken::decode::<Claims>(token, &keys.jwt_decoding, &validation)?.claims;
    if claims.typ != typ {
        return Err(jsonwebtoken::errors::ErrorKind::InvalidToken.into());
    }
    Ok(claims)
}

/// Check a password and open a new session.
async fn login(
    db: &DatabaseConnection,
    keys: &Keys,
    email: String,
    password: String,
) -> ServiceResult<TokenPair> {
    let found = user::Entity::find()
        .filter(user::Column::Email.eq(email))
        .one(db)
        .await?;
    // Same work whether or not the email exists.
    let hash = found
        .as_ref()
        .map_or_else(|| keys.dummy_hash.clone(), |u| u.password_hash.clone());
    let ok = verify_password(hash, password).await?;
    let user = match (found, ok) {
        (Some(u), true) => u,
        _ => return Err(ServiceError::InvalidCredentials),
    };
    issue_pair(db, keys, &user, &random_token(16)).await
}

/// Use a refresh token once, for a new pair of the same session.
async fn refresh(
    db: &DatabaseConnection,
    keys: &Keys,
    claims: &Claims,
) -> ServiceResult<TokenPair> {
    let invalid = |why: &str| ServiceError::InvalidSession(why.to_owned());
    let row = refresh_token::Entity::find()
        .filter(refresh_token::Column::Jti.eq(&claims.jti))
        .one(db)
        .await?
        .ok_or_else(|| invalid("unknown refresh token"))?;
    if row.revoked_at.is_some() {
        return Err(invalid("refresh token revoked"));
    }
    // Single use: the conditional update is the race-free point. A token that was used already
    // is being replayed: revoke its whole session.
    let now = Utc::now();
    let claimed = refresh_token::Entity::update_many()
        .col_expr(refresh_token::Column::UsedAt, Expr::value(now))
        .filter(refresh_token::Column::Id.eq(row.id))
        .filter(refresh_token::Column::UsedAt.is_null())
        .filter(refresh_token::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    if claimed.rows_affected != 1 {
        refresh_token::Entity::update_many()
            .col_expr(refresh_token::Column::RevokedAt, Expr::value(now))
            .filter(refresh_token::Column::FamilyId.eq(&row.family_id))
            .filter(refresh_token::Column::RevokedAt.is_null())
            .exec(db)
            .await?;
        tracing::warn!(
            user_id = row.user_id,
            "refresh token reuse: session revoked"
        );
        return Err(invalid("refresh token already used; session revoked"));
    }
    let user = user::Entity::find_by_id(row.user_id)
        .one(db)
        .await?
        .ok_or_else(|| invalid("user no longer exists"))?;
    issue_pair(db, keys, &user, &row.family_id).await
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
    let exp = now + chrono::Duration::from_std(ttl)?;
    let claims = Claims {
        sub: user_id.to_string(),
        adm: is_admin,
        typ: typ.to_owned(),
        jti: jti.to_owned(),
        iat: now.timestamp(),
        exp: exp.timestamp(),
    };
    let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &keys.jwt_encoding)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        Keys::new(
            "secret".to_owned().into(),
            "key".to_owned().into(),
            Duration::from_secs(60),
            Duration::from_secs(600),
            8,
            String::new(),
        )
    }

    #[test]
    fn a_token_is_accepted_only_as_its_own_type() {
        let keys = keys();
        let (access, _) =
            issue_token(&keys, 7, true, "access", "j", keys.access_ttl).expect("signed");
        let claims = decode(&keys, &access, "access").expect("valid");
        assert_eq!((claims.sub.as_str(), claims.adm), ("7", true));
        assert!(decode(&keys, &access, "refresh").is_err());
    }

    #[test]
    fn a_token_of_another_secret_or_expired_is_refused() {
        let keys = keys();
        let other = Keys::new(
            "other".to_owned().into(),
            "key".to_owned().into(),
            Duration::from_secs(60),
            Duration::from_secs(600),
            8,
            String::new(),
        );
        let (token, _) = issue_token(&other, 1, false, "access", "j", other.access_ttl).unwrap();
        assert!(decode(&keys, &token, "access").is_err());
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: "1".into(),
            adm: false,
            typ: "access".into(),
            jti: "j".into(),
            iat: now - 20,
            exp: now - 10,
        };
        let expired =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &keys.jwt_encoding)
                .unwrap();
        assert!(decode(&keys, &expired, "access").is_err());
    }
}
