//! Group commit: every write of the explorer runs on one writer, on a thread of its own, which
//! takes the writes waiting at that moment, runs each inside its own savepoint of one
//! transaction, and commits them together, so concurrent writes share one durable commit (one
//! fsync on SQLite, one WAL flush on PostgreSQL). A write is answered only after that commit;
//! a write that fails rolls back to its savepoint and leaves the others in.
//!
//! A signed request's nonce is claimed inside the same transaction as its action (all of a
//! batch's in one statement). A request that is refused still spends its nonce, so no signed
//! request is ever carried out later.
//!
//! A write's new row can be kept back ([`Tx::insert_later`]) and inserted with the rows of the
//! writes after it in one multi-row statement, before any statement that could read it: a burst
//! of creates costs a few statements, not one round trip to the database each.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, OnceLock};

use futures::FutureExt;
use futures::future::BoxFuture;
use sqlx::Row;
use tokio::sync::{Notify, mpsc, oneshot};

use super::keyset::{Bind, insert_rows};
use super::nonces::{self, Nonce};
use super::{Backend, DbError, DbResult};

/// Most writes committed together.
const MAX_BATCH: usize = 512;

/// The request was seen before (its nonce is spent).
#[derive(Debug)]
pub struct Replayed;

/// A row kept back by [`Tx::insert_later`] was not inserted: its key was taken, by a row
/// stored before or one kept back earlier in the batch. The write is refused with this.
#[derive(Debug, Clone)]
pub struct Taken {
    /// The request field that gave the key.
    pub field: &'static str,
    /// What to tell the caller.
    pub message: String,
}

/// What [`Tx::insert_later`] inserts into: a table, its columns in the order of each row's
/// values, and the column of its key (which the rows must not repeat).
#[derive(Debug)]
pub(crate) struct InsertInto {
    /// The table.
    pub(crate) table: &'static str,
    /// The columns each row gives.
    pub(crate) columns: &'static [&'static str],
    /// The unique text column that tells a row inserted from one refused as taken.
    pub(crate) key: &'static str,
}

/// Sizes of the multi-row statements kept-back rows go in, largest first: few shapes, so each
/// stays a prepared statement, and a run of n rows needs at most `n / 64 + 9` of them. (SQLite
/// finds a parameter by name in a list, so a statement's cost grows with its square.)
const ROWS_PER_INSERT: [usize; 4] = [64, 16, 4, 1];

/// A row waiting to be inserted.
struct Later {
    into: &'static InsertInto,
    /// Its place among the rows the transaction was given, to undo a failed write's.
    n: usize,
    key: String,
    values: Vec<Bind>,
    landed: Arc<OnceLock<bool>>,
}

/// Why a write was not carried out by the writer.
enum Failure {
    Replayed,
    Commit(String),
}

/// Sends a write's outcome once the batch is durable (or failed).
type Answer = Box<dyn FnOnce(Result<(), String>) + Send>;

/// What a write did: whether its changes stay, and how to answer it.
struct Done {
    kept: bool,
    answer: Answer,
}

type Work = Box<dyn for<'c> FnOnce(&'c mut Tx) -> BoxFuture<'c, Done> + Send>;

/// How a write is kept apart from the others in its batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Guard {
    /// In a savepoint of its own: a failure anywhere in it undoes all it did.
    Savepoint,
    /// None: its only change is its last statement, which applies whole or not at all and
    /// fails for nothing a request can cause (see [`super::Db::transact_single`]).
    SingleChange,
}

/// One queued write.
pub(super) struct Job {
    nonce: Option<Nonce>,
    guard: Guard,
    work: Work,
    fail: Box<dyn FnOnce(Failure) + Send>,
}

impl Job {
    /// A write that runs `f` in the batch transaction after claiming `nonce`, kept apart by
    /// `guard`; its outcome goes to the returned receiver once the batch has committed.
    pub(super) fn new<T, E, F>(nonce: Option<Nonce>, guard: Guard, f: F) -> (Self, oneshot::Receiver<Result<T, E>>)
    where
        F: for<'c> FnOnce(&'c mut Tx) -> BoxFuture<'c, Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: WriteError,
    {
        let (tx, rx) = oneshot::channel();
        let slot = Arc::new(Mutex::new(Some(tx)));
        let send = |slot: &Mutex<Option<oneshot::Sender<Result<T, E>>>>, reply| {
            if let Some(tx) = slot.lock().expect("reply slot").take() {
                // The caller may have gone (its request was cancelled); the write stands.
                let _ = tx.send(reply);
            }
        };
        let for_work = slot.clone();
        let work: Work = Box::new(move |conn| {
            Box::pin(async move {
                let first = conn.landings.len();
                let out = f(conn).await;
                let landings = conn.landings.split_off(first);
                let kept = out.is_ok();
                let answer: Answer = Box::new(move |committed| {
                    let landed = || match landings.into_iter().find(|(landed, _)| landed.get() != Some(&true)) {
                        Some((_, taken)) => Err(E::from(taken)),
                        None => Ok(()),
                    };
                    let reply = committed.map_err(|e| E::from(DbError::Commit(e))).and(out);
                    send(&for_work, reply.and_then(|value| landed().map(|()| value)));
                });
                Done { kept, answer }
            })
        });
        let fail = Box::new(move |why| {
            let reply = match why {
                Failure::Replayed => Err(E::from(Replayed)),
                Failure::Commit(e) => Err(E::from(DbError::Commit(e))),
            };
            send(&slot, reply);
        });
        (Self { nonce, guard, work, fail }, rx)
    }
}

/// What a write's error must be made from: a storage failure, a replayed request and a key
/// already taken.
pub trait WriteError: From<DbError> + From<Replayed> + From<Taken> + Send + 'static {}

impl<E: From<DbError> + From<Replayed> + From<Taken> + Send + 'static> WriteError for E {}

/// Start the writer on a thread of its own, with its own connection, and return once it is
/// connected. Its own thread keeps each write's turn from waiting behind the requests the
/// runtime is serving: every write in a batch is one after the other, so the writer's latency
/// between statements is the explorer's write throughput.
pub(super) async fn start(
    options: sqlx::any::AnyPoolOptions,
    connect: sqlx::any::AnyConnectOptions,
    backend: Backend,
    mut jobs: mpsc::Receiver<Job>,
    stop: Arc<Notify>,
) -> DbResult<()> {
    let (ready_tx, ready) = oneshot::channel();
    std::thread::Builder::new()
        .name("zgrid-writer".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = ready_tx.send(Err(DbError::Commit(format!("cannot start the writer: {e}"))));
                    return;
                }
            };
            runtime.block_on(async move {
                let pool = match options.connect_with(connect).await {
                    Ok(pool) => pool,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.into()));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                run(&pool, backend, &mut jobs, &stop).await;
                pool.close().await;
                // Dropping `jobs` last tells `Db::close` the writer is done.
                drop(jobs);
            });
        })
        .map_err(|e| DbError::Commit(format!("cannot start the writer: {e}")))?;
    ready.await.map_err(|_| DbError::Commit("the writer stopped while connecting".into()))?
}

/// Run batches until every sender is gone or `stop` is notified.
async fn run(pool: &sqlx::AnyPool, backend: Backend, jobs: &mut mpsc::Receiver<Job>, stop: &Notify) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        tokio::select! {
            biased;
            () = stop.notified() => break,
            taken = jobs.recv_many(&mut batch, MAX_BATCH) => if taken == 0 { break },
        }
        let (writes, started) = (batch.len(), std::time::Instant::now());
        let mut answers = Vec::with_capacity(batch.len());
        let outcome = commit(pool, backend, &mut batch, &mut answers).await.map_err(|e| e.to_string());
        tracing::trace!(writes, elapsed = ?started.elapsed(), "group commit");
        if let Err(e) = &outcome {
            tracing::error!(error = %e, writes, "a group commit failed; its writes are refused");
            // Those that did not run yet (the commit broke off before them).
            for job in batch.drain(..) {
                (job.fail)(Failure::Commit(e.clone()));
            }
        }
        for answer in answers {
            answer(outcome.clone());
        }
    }
}

/// One transaction over `batch`: every nonce claimed in one statement, then each write in its
/// savepoint, then one commit. The writes that ran leave their answers in `answers`; those that
/// did not run stay in `batch`.
async fn commit(
    pool: &sqlx::AnyPool,
    backend: Backend,
    batch: &mut Vec<Job>,
    answers: &mut Vec<Answer>,
) -> DbResult<()> {
    let mut tx = Tx::begin(pool, backend).await?;
    let mut fresh = nonces::claim_all(&mut tx, batch.iter().map(|job| job.nonce.as_ref())).await?;
    // Taken from the back, so in the order they arrived; what is left stays in `batch`.
    batch.reverse();
    fresh.reverse();
    let mut open = false;
    while let Some(job) = batch.pop() {
        let Job { guard, work, fail, .. } = job;
        if !fresh.pop().expect("one claim per job") {
            fail(Failure::Replayed);
            continue;
        }
        if guard == Guard::Savepoint {
            // Rows kept back go in before the savepoint, which only this write's may undo.
            tx.flush().await?;
            // One round trip ends the last write's savepoint and opens this one's. (A write
            // without one runs inside the last write's, which no longer rolls back.)
            let boundary = if open { "RELEASE SAVEPOINT job; SAVEPOINT job" } else { "SAVEPOINT job" };
            sqlx::raw_sql(boundary).execute(&mut *tx.conn).await?;
            open = true;
        }
        let mark = tx.mark();
        let done = AssertUnwindSafe(work(&mut tx)).catch_unwind().await;
        if !done.as_ref().is_ok_and(|d| d.kept) {
            if guard == Guard::Savepoint {
                sqlx::raw_sql("ROLLBACK TO SAVEPOINT job").execute(&mut *tx.conn).await?;
            }
            tx.undo(mark);
        }
        match done {
            Ok(done) => answers.push(done.answer),
            Err(_) if guard == Guard::SingleChange => {
                // Its change may have been made: refuse the whole batch rather than keep it
                // unanswered.
                return Err(DbError::Commit("a write panicked; the batch is rolled back".into()));
            }
            Err(_) => tracing::error!("a write panicked; rolled back"),
        }
    }
    tx.commit().await
}

/// The transaction a group commit's writes share, which every write gets. It holds the write
/// lock (SQLite's `BEGIN IMMEDIATE`; on PostgreSQL, the feed counter's row lock, so explorers
/// sharing the database run their batches one at a time, ledger checks cannot race and feed
/// positions become visible in order). Feed positions are taken from memory and the counter
/// row is written once, at commit; the batch's `NOTIFY`s go with it in one statement.
pub struct Tx {
    conn: sqlx::Transaction<'static, sqlx::Any>,
    backend: Backend,
    /// The last feed position taken.
    feed: i64,
    /// The feed position when the transaction began.
    feed_start: i64,
    /// Nodes whose desired sets changed ("" for other changes), announced on PostgreSQL.
    announced: Vec<String>,
    /// Rows kept back, in the order they were given.
    later: Vec<Later>,
    /// How many rows were given to [`Tx::insert_later`].
    later_given: usize,
    /// Whether each kept-back row of the running write went in, and what to answer if not.
    landings: Vec<(Arc<OnceLock<bool>>, Taken)>,
}

/// What a write's savepoint undoes besides its statements.
struct Mark {
    feed: i64,
    announced: usize,
    later_given: usize,
}

impl Tx {
    async fn begin(pool: &sqlx::AnyPool, backend: Backend) -> DbResult<Self> {
        let (mut conn, lock) = match backend {
            Backend::Sqlite => {
                (pool.begin_with("BEGIN IMMEDIATE").await?, "SELECT value FROM counters WHERE name = 'feed'")
            }
            Backend::Postgres => (pool.begin().await?, "SELECT value FROM counters WHERE name = 'feed' FOR UPDATE"),
        };
        let feed: i64 = sqlx::query_scalar(lock).fetch_one(&mut *conn).await?;
        Ok(Self {
            conn,
            backend,
            feed,
            feed_start: feed,
            announced: Vec::new(),
            later: Vec::new(),
            later_given: 0,
            landings: Vec::new(),
        })
    }

    /// The connection, for a write's statements. Rows kept back are inserted first, so every
    /// statement sees them.
    pub async fn conn(&mut self) -> DbResult<&mut sqlx::AnyConnection> {
        self.flush().await?;
        Ok(&mut self.conn)
    }

    /// Insert `values` (of `into`'s columns, `key` being the value of its key column) with the
    /// rows of later writes, in one statement before the next statement of any write. It
    /// must be the write's last change: if the row's key is taken, the write is answered with
    /// `taken` (the rest of it stays done), and the feed position it took stays unused.
    pub(crate) fn insert_later(&mut self, into: &'static InsertInto, key: String, values: Vec<Bind>, taken: Taken) {
        debug_assert_eq!(values.len(), into.columns.len(), "one value per column of {}", into.table);
        let landed = Arc::new(OnceLock::new());
        if self.later.iter().any(|row| std::ptr::eq(row.into, into) && row.key == key) {
            landed.set(false).expect("a new cell");
        } else {
            self.later.push(Later { into, n: self.later_given, key, values, landed: landed.clone() });
        }
        self.later_given += 1;
        self.landings.push((landed, taken));
    }

    /// Insert the rows kept back, a run of rows of the same table in a few multi-row
    /// statements, and note which went in.
    async fn flush(&mut self) -> DbResult<()> {
        while let Some(first) = self.later.first() {
            let into = first.into;
            let run = self.later.iter().take_while(|row| std::ptr::eq(row.into, into)).count();
            let size = ROWS_PER_INSERT.into_iter().find(|&size| size <= run).unwrap_or(1);
            let rows: Vec<Later> = self.later.drain(..size).collect();
            let tail = format!("ON CONFLICT DO NOTHING RETURNING {}", into.key);
            let insert = insert_rows(into.table, into.columns, rows.iter().map(|row| &row.values[..]), &tail);
            let returned = insert.fetch_all(&mut *self.conn).await?;
            let inserted = returned.iter().map(|r| r.try_get(0)).collect::<Result<Vec<String>, _>>()?;
            for row in rows {
                // Keys are not repeated among the rows kept back, so a returned key is this row's.
                let _ = row.landed.set(inserted.contains(&row.key));
            }
        }
        Ok(())
    }

    /// Take the next feed position. Positions become visible in the order they were taken
    /// (the transaction holds the write lock), so a node never skips one.
    pub fn next_feed_seq(&mut self) -> i64 {
        self.feed += 1;
        self.feed
    }

    /// Tell every explorer on this database, when the write commits, that `node`'s desired set
    /// changed (`None`: that something the cockpit shows changed). On PostgreSQL this is a
    /// `NOTIFY` sent with the commit; an SQLite file has a single explorer, which wakes its own
    /// streams after the commit.
    pub fn announce(&mut self, node: Option<&zgrid_types::NodeId>) {
        if self.backend == Backend::Postgres {
            self.announced.push(node.map(ToString::to_string).unwrap_or_default());
        }
    }

    fn mark(&self) -> Mark {
        Mark { feed: self.feed, announced: self.announced.len(), later_given: self.later_given }
    }

    /// Forget what a rolled-back write took.
    fn undo(&mut self, mark: Mark) {
        self.feed = mark.feed;
        self.announced.truncate(mark.announced);
        self.later.retain(|row| row.n < mark.later_given);
    }

    async fn commit(mut self) -> DbResult<()> {
        self.flush().await?;
        if self.feed != self.feed_start {
            sqlx::query("UPDATE counters SET value = $1 WHERE name = 'feed'")
                .bind(self.feed)
                .execute(&mut *self.conn)
                .await?;
        }
        self.announced.sort_unstable();
        self.announced.dedup();
        if !self.announced.is_empty() {
            let calls: Vec<String> = (0..self.announced.len()).map(|i| format!("pg_notify($1, ${})", i + 2)).collect();
            let sql = format!("SELECT {}", calls.join(", "));
            // Only placeholders are formatted in; the node ids are bound.
            let mut notify = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(crate::feed::CHANNEL);
            for node in &self.announced {
                notify = notify.bind(node);
            }
            notify.execute(&mut *self.conn).await?;
        }
        self.conn.commit().await?;
        Ok(())
    }
}
