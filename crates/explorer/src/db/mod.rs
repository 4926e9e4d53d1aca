//! Storage: one code path over SQLite (the default, a file) and PostgreSQL (`postgres://`).
//!
//! Queries are plain SQL with `$n` parameters, which both engines accept, run through sqlx's
//! `Any` driver. Only the schema differs (see `migrations/`). SQLite runs in WAL mode with
//! `synchronous=FULL`, so a write the explorer acknowledged survives a crash of the process or
//! the machine; writing transactions take the write lock up front (`BEGIN IMMEDIATE`) so
//! concurrent writers queue instead of failing.

pub mod bulk;
pub mod farms;
mod group_commit;
pub(crate) mod keyset;
pub mod nodes;
pub mod nonces;
pub mod users;
pub mod workloads;

use std::str::FromStr;
use std::time::Duration;

use futures::future::BoxFuture;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};
use tokio::sync::mpsc;
use zgrid_types::remembered::Remembered;

use group_commit::Guard;
pub(crate) use group_commit::InsertInto;
pub use group_commit::{Replayed, Taken, Tx, WriteError};
pub use nonces::Nonce;

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
    /// The transaction a write shared with others could not be committed; the write is lost.
    #[error("the write could not be committed: {0}")]
    Commit(String),
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
    writer: mpsc::Sender<group_commit::Job>,
    /// Tells the writer to stop (see [`Db::close`]).
    stop_writer: std::sync::Arc<tokio::sync::Notify>,
    known: std::sync::Arc<Known>,
}

/// Most entries of each kind [`Known`] keeps; past that it starts over.
const KNOWN_MAX: usize = 100_000;

/// What never changes once stored (a user's key; that a node is registered: users are not
/// removed nor their keys changed, nodes are not removed), remembered so that signed writes do
/// not read it again for every request.
pub(crate) struct Known {
    /// Users' keys.
    pub(crate) keys: Remembered<zgrid_types::UserId, zgrid_types::PublicKey>,
    /// Nodes known to be registered.
    pub(crate) nodes: Remembered<zgrid_types::NodeId, ()>,
}

impl Default for Known {
    fn default() -> Self {
        Self { keys: Remembered::new(KNOWN_MAX), nodes: Remembered::new(KNOWN_MAX) }
    }
}

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
        let pool = pool_options(backend, if backend == Backend::Sqlite { 8 } else { 16 })
            .connect_with(options.clone())
            .await?;
        match backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&pool).await?,
            Backend::Postgres => sqlx::migrate!("./migrations/postgres").run(&pool).await?,
        }
        let (writer, jobs) = mpsc::channel(4096);
        let stop_writer = std::sync::Arc::new(tokio::sync::Notify::new());
        group_commit::start(pool_options(backend, 1), options, backend, jobs, stop_writer.clone()).await?;
        Ok(Self { pool, backend, writer, stop_writer, known: Default::default() })
    }

    /// The engine in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Facts remembered for the write path.
    pub(crate) fn known(&self) -> &Known {
        &self.known
    }

    /// The connection pool, for reads.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Run `f` as one write: inside a transaction it may share with other writes (on
    /// PostgreSQL, one that holds the ledger lock, so checks such as "this address is free"
    /// cannot race with another explorer and feed positions become visible in the order they
    /// were taken). `nonce`, the signed request's, is claimed in the same transaction; a
    /// replayed one is refused without running `f`, and it is spent even if `f` fails. `f`'s
    /// error undoes its changes. The outcome returns once the transaction is durable.
    pub async fn transact<T, E, F>(&self, nonce: Option<Nonce>, f: F) -> Result<T, E>
    where
        F: for<'c> FnOnce(&'c mut Tx) -> BoxFuture<'c, Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: WriteError,
    {
        self.queue(nonce, Guard::Savepoint, f).await
    }

    /// [`Db::transact`] for a write whose only change is its last statement: one that applies
    /// whole or not at all and that nothing a request can send makes fail (such as
    /// `Tx::insert_later`, where a duplicate key is met with `ON CONFLICT DO NOTHING` and
    /// answered with [`Taken`], not with an error). It runs without a savepoint of its own,
    /// which saves a round trip to the database per write. If that statement failed after
    /// all, the whole batch would be refused (on PostgreSQL the error aborts the
    /// transaction), never half kept.
    pub async fn transact_single<T, E, F>(&self, nonce: Option<Nonce>, f: F) -> Result<T, E>
    where
        F: for<'c> FnOnce(&'c mut Tx) -> BoxFuture<'c, Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: WriteError,
    {
        self.queue(nonce, Guard::SingleChange, f).await
    }

    /// Hand a write to the writer and wait for its outcome.
    async fn queue<T, E, F>(&self, nonce: Option<Nonce>, guard: Guard, f: F) -> Result<T, E>
    where
        F: for<'c> FnOnce(&'c mut Tx) -> BoxFuture<'c, Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: WriteError,
    {
        let (job, outcome) = group_commit::Job::new(nonce, guard, f);
        let gone = || E::from(DbError::Commit("the explorer's writer stopped".into()));
        self.writer.send(job).await.map_err(|_| gone())?;
        outcome.await.map_err(|_| gone())?
    }

    /// Close every connection, the writer's last: writes still queued are refused.
    pub async fn close(&self) {
        self.pool.close().await;
        self.stop_writer.notify_one();
        self.writer.closed().await;
    }
}

/// How connections to `backend` are made: at most `max` of them, each set up for durable,
/// queued writes.
fn pool_options(backend: Backend, max: u32) -> AnyPoolOptions {
    AnyPoolOptions::new().max_connections(max).acquire_timeout(Duration::from_secs(30)).after_connect(move |conn, _| {
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
}

/// Read a JSON column into a type, naming the table on failure.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(text: &str, table: &str) -> DbResult<T> {
    serde_json::from_str(text).map_err(|e| DbError::Corrupt(format!("{table}: {e}")))
}

/// Write a value as a JSON column.
pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("zgrid types always serialise")
}
