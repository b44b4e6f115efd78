//! Changes to client keys and accounts, told to every instance of a fleet at once.
//!
//! Each instance serves client keys from its own cache (`auth`). On PostgreSQL, a change to a
//! key (revocation, pause, rotation, credits, limits) or to an account's limits sends a
//! `NOTIFY` inside the transaction that makes it, so it is delivered when (and only if) the
//! change commits; every instance `LISTEN`s on a dedicated connection and drops what it cached
//! of that key or account. A notification is lost while the connection is down, so the cache is
//! flushed on every (re)connection and not used while disconnected. A connection that dies
//! without a word is noticed by silence: each instance pings the channel every
//! [`PING_EVERY`], and a listener that has heard nothing for [`SILENCE_LIMIT`] is replaced.
//! SQLite serves one instance: nothing to tell, the local eviction is enough.

use std::time::{Duration, Instant};

use sea_orm::sqlx::postgres::PgListener;
use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr, Statement};
use tokio::sync::mpsc;

use crate::auth::AuthHandle;

/// The channel of the notifications.
pub const CHANNEL: &str = "x402_client_changes";
/// How often an instance pings the channel (its own listener and every other one hears it).
pub const PING_EVERY: Duration = Duration::from_secs(1);
/// A listener that has heard nothing (not even a ping) for this long is taken for dead.
pub const SILENCE_LIMIT: Duration = Duration::from_secs(5);
/// The longest wait between two connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What a notification says.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Change {
    /// A client key changed (by `clientId`).
    Key(String),
    /// An account's limits changed (by user id): all its keys.
    Account(i64),
    /// Nothing changed: the channel is alive.
    Ping,
}

impl Change {
    fn payload(&self) -> String {
        match self {
            Change::Key(id) => format!("key:{id}"),
            Change::Account(id) => format!("account:{id}"),
            Change::Ping => "ping".to_owned(),
        }
    }

    fn parse(payload: &str) -> Option<Self> {
        match payload.split_once(':') {
            Some(("key", id)) => Some(Change::Key(id.to_owned())),
            Some(("account", id)) => id.parse().ok().map(Change::Account),
            None if payload == "ping" => Some(Change::Ping),
            _ => None,
        }
    }
}

/// Tell the fleet that client key `client_id` changed. Call it on the connection (or inside
/// the transaction) that makes the change: PostgreSQL delivers it on commit, never for a
/// change rolled back. A no-op on SQLite.
pub async fn notify_key_changed<C: ConnectionTrait>(
    conn: &C,
    client_id: &str,
) -> Result<(), DbErr> {
    notify(conn, Change::Key(client_id.to_owned())).await
}

/// Tell the fleet that the limits of account `user_id` changed (every instance drops what it
/// cached of that account's keys). As [`notify_key_changed`].
pub async fn notify_account_changed<C: ConnectionTrait>(
    conn: &C,
    user_id: i64,
) -> Result<(), DbErr> {
    notify(conn, Change::Account(user_id)).await
}

async fn notify<C: ConnectionTrait>(conn: &C, change: Change) -> Result<(), DbErr> {
    if conn.get_database_backend() != DatabaseBackend::Postgres {
        return Ok(());
    }
    conn.execute(Statement::from_sql_and_values(
        DatabaseBackend::Postgres,
        "SELECT pg_notify($1, $2)",
        [CHANNEL.into(), change.payload().into()],
    ))
    .await?;
    Ok(())
}

/// Keep `auth`'s key cache in step with the fleet's changes, for as long as the runtime runs:
/// listen on a connection of its own to `url`, reconnecting with backoff. The first connection
/// is tried before this returns, so that an instance caches keys from its first request; until
/// a connection is up, and whenever it is lost, the cache is not used (every key is read from
/// the database).
pub async fn listen(url: String, db: DatabaseConnection, auth: AuthHandle) {
    let mut first = match connect(&url).await {
        Ok(listener) => {
            auth.trust_cache(true).await;
            Some(listener)
        }
        Err(e) => {
            tracing::warn!(error = %e, "client-key change listener cannot connect; retrying");
            None
        }
    };
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            let listener = match first.take() {
                Some(listener) => listener,
                None => match connect(&url).await {
                    Ok(listener) => {
                        backoff = Duration::from_millis(100);
                        // Changes committed before the LISTEN were never heard: start empty.
                        auth.trust_cache(true).await;
                        listener
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64,
                            "client-key change listener cannot connect");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        continue;
                    }
                },
            };
            let why = follow(listener, &db, &auth).await;
            auth.trust_cache(false).await;
            tracing::warn!(reason = %why, "client-key change listener lost; reconnecting");
        }
    });
}

async fn connect(url: &str) -> Result<PgListener, sea_orm::sqlx::Error> {
    let mut listener = PgListener::connect(url).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Apply what `listener` hears until it fails or falls silent; answers why it stopped.
async fn follow(mut listener: PgListener, db: &DatabaseConnection, auth: &AuthHandle) -> String {
    // `try_recv` is not cancel-safe: it runs in a task of its own, read here through a channel
    // (`None`: the connection dropped and was re-established, notifications may be lost).
    let (tx, mut rx) = mpsc::channel::<Option<String>>(256);
    let reader = tokio::spawn(async move {
        loop {
            let heard = match listener.try_recv().await {
                Ok(n) => n.map(|n| n.payload().to_owned()),
                Err(e) => return e.to_string(),
            };
            if tx.send(heard).await.is_err() {
                return "stopped".to_owned();
            }
        }
    });
    let mut ping = tokio::time::interval(PING_EVERY);
    let mut last_heard = Instant::now();
    let why = loop {
        tokio::select! {
            heard = rx.recv() => match heard {
                Some(Some(payload)) => {
                    last_heard = Instant::now();
                    match Change::parse(&payload) {
                        Some(Change::Key(id)) => auth.client_changed(&id).await,
                        Some(Change::Account(id)) => auth.account_changed(id).await,
                        Some(Change::Ping) => {}
                        None => tracing::warn!(%payload, "unknown client-key change notification"),
                    }
                }
                Some(None) => {
                    last_heard = Instant::now();
                    auth.trust_cache(true).await;
                }
                None => break "connection failed".to_owned(),
            },
            _ = ping.tick() => {
                if last_heard.elapsed() > SILENCE_LIMIT {
                    break format!("nothing heard for {} s", SILENCE_LIMIT.as_secs());
                }
                if let Err(e) = notify(db, Change::Ping).await {
                    tracing::debug!(error = %e, "client-key change ping not sent");
                }
            }
        }
    };
    reader.abort();
    match reader.await {
        Ok(reason) => reason,
        Err(_) => why,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_read_back_as_written() {
        for change in [
            Change::Key("cl_0123abcd".into()),
            Change::Account(42),
            Change::Ping,
        ] {
            assert_eq!(Change::parse(&change.payload()), Some(change));
        }
        assert_eq!(Change::parse("account:x"), None);
        assert_eq!(Change::parse("other"), None);
    }
}
