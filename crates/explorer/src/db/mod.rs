//! Storage: one code path over SQLite (the default, a file) and PostgreSQL (`postgres://`).
//!
//! Queries are plain SQL with `$n` parameters, which both engines accept, run through sqlx's
//! `Any` driver. Only the schema differs (see `migrations/`). SQLite runs in WAL mode with
//! `synchronous=FULL`, so a write the explorer acknowledged survives a crash of the process or
//! the machine; writing transactions take the write lock up front (`BEGIN IMMEDIATE`) so
//! concurrent writers queue instead of failing.

pub mod farms;
pub mod nodes;
pub mod nonces;
pub mod users;
pub mod workloads;

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyPool, Executor, Transaction};

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database refused or failed a statement.
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
    /// The schema could not be brought up to date.
    #[error("failed to migrate the database schema: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value could not be decoded.
    #[error("corrupt stored value in {0}")]
    Corrupt(String),
}

impl DbError {
    /// Whether this is a uniqueness violation (a duplicate key).
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, DbError::Sql(sqlx::Error::Database(e)) if e.is_unique_violation())
    }
}

/// Result alias for storage calls.
pub type DbResult<T> = Result<T, DbError>;

/// Which engine a [`Db`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// The explorer's database.
#[derive(Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
}

/// A write transaction.
pub type Tx = Transaction<'static, Any>;

/// Turn what the user gave (`postgres://...`, `sqlite:...` or a plain file path) into a URL.
pub fn database_url(spec: &str) -> String {
    if spec.starts_with("postgres://") || spec.starts_with("postgresql://") || spec.starts_with("sqlite:") {
        spec.to_string()
    } else {
        format!("sqlite://{spec}?mode=rwc")
    }
}

impl Db {
    /// Connect and bring the schema up to date.
    pub async fn open(spec: &str) -> DbResult<Self> {
        sqlx::any::install_default_drivers();
        let url = database_url(spec);
        let backend = if url.starts_with("sqlite:") { Backend::Sqlite } else { Backend::Postgres };
        let options = AnyConnectOptions::from_str(&url)?;
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 8 } else { 16 })
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = FULL").await?;
                        conn.execute("PRAGMA busy_timeout = 30000").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        match backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&pool).await?,
            Backend::Postgres => sqlx::migrate!("./migrations/postgres").run(&pool).await?,
        }
        Ok(Self { pool, backend })
    }

    /// The engine in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The connection pool, for reads.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Start a write transaction that holds the write lock from its first statement.
    pub async fn write(&self) -> DbResult<Tx> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    /// Start a write transaction that changes the workload ledger. It takes the feed counter's
    /// row lock first, so on PostgreSQL (as on SQLite) ledger transactions run one at a time:
    /// checks such as "this address is free" cannot race, and feed positions become visible in
    /// the order they were taken.
    pub async fn write_ledger(&self) -> DbResult<Tx> {
        let mut tx = self.write().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT value FROM counters WHERE name = 'feed' FOR UPDATE").execute(&mut *tx).await?;
        }
        Ok(tx)
    }

    /// Close every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Take the next feed position (inside a [`Db::write_ledger`] transaction). The counter row stays
/// locked until the transaction ends, so positions become visible in the order they were taken
/// and a node never skips one.
pub async fn next_feed_seq(tx: &mut Tx) -> DbResult<i64> {
    let seq: i64 = sqlx::query_scalar("UPDATE counters SET value = value + 1 WHERE name = 'feed' RETURNING value")
        .fetch_one(&mut **tx)
        .await?;
    Ok(seq)
}

/// Read a JSON column into a type, naming the table on failure.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(text: &str, table: &str) -> DbResult<T> {
    serde_json::from_str(text).map_err(|e| DbError::Corrupt(format!("{table}: {e}")))
}

/// Write a value as a JSON column.
pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("zgrid types always serialise")
}
