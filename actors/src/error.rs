//! The error type of the actors' services. Its variants are the distinct outcomes a caller
//! must tell apart; the HTTP layer maps each to a wire code exhaustively.

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Input that parsed but is not acceptable (details are safe to show).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// Login failed: unknown email or wrong password (indistinguishable on purpose).
    #[error("invalid email or password")]
    InvalidCredentials,
    /// A refresh token that is expired, unknown, reused or revoked.
    #[error("invalid session token: {0}")]
    InvalidSession(String),
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("conflict: {0}")]
    Conflict(String),
    /// An account is at one of its caps (keys, resources); the message says which.
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// No signer can send a settlement now (none can pay for gas, or no instance holds a
    /// lease of the network). The message is ours and safe to show.
    #[error("no signer available: {0}")]
    NoSigner(String),
    /// Throttled: too many attempts; the caller may try again after `retry_after`.
    #[error("too many requests: {message}")]
    TooManyRequests {
        message: String,
        retry_after: std::time::Duration,
    },
    /// The database failed; the cause is logged, never shown.
    #[error("database: {0}")]
    Database(#[from] sea_orm::DbErr),
    /// An actor did not answer (stopped, or its mailbox closed); logged, never shown.
    #[error("actor mailbox: {0}")]
    Mailbox(#[from] actix::MailboxError),
    /// A value this service stored cannot be read back (`what` names the column); logged,
    /// never shown.
    #[error("bad {what} in the database: {value}")]
    Corrupt { what: &'static str, value: String },
    /// A task we spawned panicked or was cancelled (a settle's leader, the blocking pool);
    /// logged, never shown.
    #[error("task: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// A token could not be signed; logged, never shown.
    #[error("jwt: {0}")]
    Jwt(#[from] jsonwebtoken::errors::Error),
    /// A token lifetime out of range for a timestamp; logged, never shown.
    #[error("token lifetime: {0}")]
    TokenLifetime(#[from] chrono::OutOfRangeError),
    /// argon2 could not hash, or a stored hash cannot be parsed; logged, never shown.
    #[error("argon2: {0}")]
    PasswordHash(argon2::password_hash::Error),
    /// A ledger row this settle claimed is gone (deleted under it); logged, never shown.
    #[error("ledger row {0} disappeared")]
    LedgerRowGone(String),
}

pub type ServiceResult<T> = Result<T, ServiceError>;

/// Map a unique-constraint violation to `Conflict(message)`; other database errors stay internal.
pub fn conflict_on_unique<T>(res: Result<T, sea_orm::DbErr>, message: &str) -> ServiceResult<T> {
    match res {
        Ok(v) => Ok(v),
        Err(e)
            if matches!(
                e.sql_err(),
                Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
            ) =>
        {
            Err(ServiceError::Conflict(message.to_owned()))
        }
        Err(e) => Err(e.into()),
    }
}
