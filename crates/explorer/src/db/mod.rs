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
use sqlx::{Any, AnyPool, Executor, Transaction};
use tokio::sync::mpsc;

pub use group_commit::Replayed;
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
    known: std::sync::Arc<Known>,
}

/// Most entries of each kind [`Known`] keeps; past that it starts over.
const KNOWN_MAX: usize = 100_000;

/// What never changes once stored (a user's key; that a node is registered: users are not
/// removed nor their keys changed, nodes are not removed), remembered so that signed writes do
/// not read it again for every request.
#[derive(Default)]
pub(crate) struct Known {
    keys: std::sync::Mutex<std::collections::HashMap<zgrid_types::UserId, zgrid_types::PublicKey>>,
    nodes: std::sync::Mutex<std::collections::HashSet<zgrid_types::NodeId>>,
}

impl Known {
    /// User `id`'s key, if remembered.
    pub(crate) fn key(&self, id: zgrid_types::UserId) -> Option<zgrid_types::PublicKey> {
        self.keys.lock().expect("known lock").get(&id).copied()
    }

    /// Remember user `id`'s key.
    pub(crate) fn remember_key(&self, id: zgrid_types::UserId, key: zgrid_types::PublicKey) {
        let mut keys = self.keys.lock().expect("known lock");
        if keys.len() >= KNOWN_MAX {
            keys.clear();
        }
        keys.insert(id, key);
    }

    /// Whether `node` is known to be registered.
    pub(crate) fn node(&self, node: &zgrid_types::NodeId) -> bool {
        self.nodes.lock().expect("known lock").contains(node)
    }

    /// Remember that `node` is registered.
    pub(crate) fn remember_node(&self, node: zgrid_types::NodeId) {
        let mut nodes = self.nodes.lock().expect("known lock");
        if nodes.len() >= KNOWN_MAX {
            nodes.clear();
        }
        nodes.insert(node);
    }
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
        let (writer, jobs) = mpsc::channel(4096);
        tokio::spawn(group_commit::run(pool.clone(), backend, jobs));
        Ok(Self { pool, backend, writer, known: Default::default() })
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
        E: From<DbError> + From<Replayed> + Send + 'static,
    {
        let (job, outcome) = group_commit::Job::new(nonce, f);
        let gone = || E::from(DbError::Commit("the explorer's writer stopped".into()));
        self.writer.send(job).await.map_err(|_| gone())?;
        outcome.await.map_err(|_| gone())?
    }

    /// Close every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Take the next feed position (inside a [`Db::transact`] write). The counter row stays
/// locked until the transaction ends, so positions become visible in the order they were taken
/// and a node never skips one.
pub async fn next_feed_seq(tx: &mut Tx) -> DbResult<i64> {
    let seq: i64 = sqlx::query_scalar("UPDATE counters SET value = value + 1 WHERE name = 'feed' RETURNING value")
        .fetch_one(&mut **tx)
        .await?;
    Ok(seq)
}

/// Tell every explorer on this database, when the write commits, that `node`'s desired set
/// changed (`None`: that something the cockpit shows changed). On PostgreSQL this is a
/// `NOTIFY` sent with the commit; an SQLite file has a single explorer, which wakes its own
/// streams after the commit.
pub async fn announce(tx: &mut Tx, node: Option<&zgrid_types::NodeId>) -> DbResult<()> {
    if tx.backend_name() == "PostgreSQL" {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(crate::feed::CHANNEL)
            .bind(node.map(ToString::to_string).unwrap_or_default())
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Read a JSON column into a type, naming the table on failure.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(text: &str, table: &str) -> DbResult<T> {
    serde_json::from_str(text).map_err(|e| DbError::Corrupt(format!("{table}: {e}")))
}

/// Write a value as a JSON column.
pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("zgrid types always serialise")
}
