//! Users: signing up (email and an argon2id password hash), listing them, and how a user is
//! shown. Password hashing and checking run on the blocking pool: argon2id is built to be slow.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use chrono::{DateTime, Utc};
use entities::user;
use sea_orm::{ActiveModelTrait, DatabaseConnection, EntityTrait, QueryOrder, QuerySelect, Set};
use serde::Serialize;

use super::{too_many, AuthHandle};
use crate::error::{conflict_on_unique, ServiceError, ServiceResult};
use crate::throttle::{self, Scope};

/// Longest password accepted, in bytes: argon2 hashes whatever it is given, so this bounds the
/// work one request can ask for.
pub(super) const MAX_PASSWORD_LEN: usize = 256;

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

impl AuthHandle {
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
        insert(&self.db, email, password, is_admin).await
    }

    pub async fn list_users(&self, offset: u64, limit: u64) -> ServiceResult<Vec<UserView>> {
        list(&self.db, offset, limit).await
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
}

async fn insert(
    db: &DatabaseConnection,
    email: String,
    password: String,
    is_admin: bool,
) -> ServiceResult<UserView> {
    let hash = hash_password(password).await?;
    let now = Utc::now();
    let inserted = user::ActiveModel {
        email: Set(email),
        password_hash: Set(hash),
        is_admin: Set(is_admin),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(db)
    .await;
    conflict_on_unique(inserted, "an account with this email already exists").map(Into::into)
}

async fn list(db: &DatabaseConnection, offset: u64, limit: u64) -> ServiceResult<Vec<UserView>> {
    let rows = user::Entity::find()
        .order_by_asc(user::Column::Id)
        .offset(offset)
        .limit(limit)
        .all(db)
        .await?;
    Ok(rows.into_iter().map(UserView::from).collect())
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

pub(super) async fn hash_password(password: String) -> ServiceResult<String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(ServiceError::PasswordHash)
    })
    .await?
}

pub(super) async fn verify_password(hash: String, password: String) -> ServiceResult<bool> {
    tokio::task::spawn_blocking(move || {
        let parsed = PasswordHash::new(&hash).map_err(ServiceError::PasswordHash)?;
        Ok(Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    })
    .await?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_email_is_trimmed_lower_cased_and_plausible() {
        assert_eq!(parse_email("  A@Example.COM ").unwrap(), "a@example.com");
        for bad in [
            "a", "a@b", "@b.c", "a@.b", "a@b.", "a@b..c", "a b@c.d", "a@b@c.d",
        ] {
            assert!(parse_email(bad).is_err(), "{bad}");
        }
    }
}
