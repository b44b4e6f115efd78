//! The database: the connection pools (their options and sizes), migrations, and the
//! one-instance lock of a SQLite file. Every pool of the process is opened here.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use migration::MigratorTrait;
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseBackend, DatabaseConnection};

use crate::config::Settings;

/// How long a SQLite writer waits for the write lock before failing.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Connect to the configured database and bring its schema up to date.
pub async fn connect_and_migrate(settings: &Settings) -> anyhow::Result<DatabaseConnection> {
    let db = connect(settings, pool_size(settings)).await?;
    migration::Migrator::up(&db, None)
        .await
        .context("database migration failed")?;
    Ok(db)
}

/// The metrics actor's own small pool. It is opened on the main runtime: PostgreSQL
/// connections a worker opened die with the worker's runtime at shutdown, and the final
/// metrics flush comes after the workers have stopped.
pub async fn connect_for_metrics(settings: &Settings) -> anyhow::Result<DatabaseConnection> {
    connect(settings, if is_sqlite(settings) { 1 } else { 2 }).await
}

/// Several instances may share this database (PostgreSQL); SQLite serves one.
pub fn is_shared(db: &DatabaseConnection) -> bool {
    db.get_database_backend() == DatabaseBackend::Postgres
}

/// The main pool's size: `database.max_connections` when set, else 16 on PostgreSQL and 2 on
/// SQLite (SQLite writes one at a time, so a larger pool only costs memory: a page cache and a
/// worker thread per connection).
fn pool_size(settings: &Settings) -> u32 {
    let by_backend = if is_sqlite(settings) { 2 } else { 16 };
    settings
        .database
        .max_connections
        .unwrap_or(by_backend)
        .max(1)
}

/// A connection pool to the configured database.
async fn connect(settings: &Settings, max_connections: u32) -> anyhow::Result<DatabaseConnection> {
    let url = settings.database_url();
    if let Some(path) = sqlite_file(url) {
        create_parent_dir(path)?;
    }
    let durable = settings.database.durable_commits;
    let cache_size = format!("-{}", settings.database.sqlite_cache_kib.max(64));
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(max_connections)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(10))
        .sqlx_logging(false)
        // On every pooled connection (a PRAGMA run once would set only one): WAL lets readers
        // run beside the writer; the busy timeout queues writers behind each other instead of
        // failing them with "database is locked" under load. (synchronous is FULL, unless
        // `database.durable_commits` is off: the ledger row naming a transaction must survive a
        // power cut before it is broadcast.)
        .map_sqlx_sqlite_opts(move |o| {
            o.journal_mode(SqliteJournalMode::Wal)
                .busy_timeout(SQLITE_BUSY_TIMEOUT)
                .foreign_keys(true)
                // Each connection's page cache (negative: KiB), bounded for memory.
                .pragma("cache_size", cache_size.clone())
                .synchronous(if durable {
                    SqliteSynchronous::Full
                } else {
                    SqliteSynchronous::Normal
                })
        })
        // `database.durable_commits: false` (tests, benchmarks): commits do not wait for the
        // WAL to reach the disk.
        .map_sqlx_postgres_opts(move |o| {
            if durable {
                o
            } else {
                o.options([("synchronous_commit", "off")])
            }
        });
    Database::connect(options)
        .await
        .context("cannot connect to the database (check APP__DATABASE__URL)")
}

fn is_sqlite(settings: &Settings) -> bool {
    settings.database_url().starts_with("sqlite:")
}

fn sqlite_file(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then_some(path)
}

fn create_parent_dir(path: &str) -> anyhow::Result<()> {
    if let Some(dir) = Path::new(path).parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create the directory of {path}"))?;
        }
    }
    Ok(())
}

/// An exclusive lock on `<file>.lock` beside a SQLite database: one instance per file. The
/// lock goes with the process (even a killed one); `None` on PostgreSQL. A lock found held is
/// tried again for up to `LOCK_PATIENCE` before refusing: a previous instance may still be
/// exiting, and a child process some thread was starting holds a copy of every open
/// descriptor (the lock's too) between its fork and its exec.
pub async fn lock_sqlite(settings: &Settings) -> anyhow::Result<Option<std::fs::File>> {
    let Some(path) = sqlite_file(settings.database_url()) else {
        return Ok(None);
    };
    create_parent_dir(path)?;
    let lock_path = format!("{path}.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot open {lock_path}"))?;
    let deadline = tokio::time::Instant::now() + LOCK_PATIENCE;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(Some(file)),
            Err(std::fs::TryLockError::WouldBlock) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
                "another instance is running on the SQLite database {path}: SQLite serves one \
                 instance only; run a fleet on PostgreSQL (APP__DATABASE__URL=postgres://…)"
            ),
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {lock_path}"))
            }
        }
    }
}

/// How long a held SQLite lock is waited for before a second instance is refused.
const LOCK_PATIENCE: Duration = Duration::from_secs(3);

/// Expire every signer lease (SQLite: this is the only instance, so whatever leases a previous
/// run left are ours).
pub async fn release_all_leases(db: &DatabaseConnection) -> anyhow::Result<()> {
    use sea_orm::{EntityTrait, QueryFilter};
    entities::signer_lease::Entity::update_many()
        .col_expr(
            entities::signer_lease::Column::ExpiresAt,
            sea_orm::sea_query::Expr::value(chrono::Utc::now()),
        )
        .filter(sea_orm::sea_query::Expr::val(1).eq(1))
        .exec(db)
        .await?;
    Ok(())
}
