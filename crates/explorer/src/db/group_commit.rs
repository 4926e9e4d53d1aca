//! Group commit: every write of the explorer runs on one writer task, which takes the writes
//! waiting at that moment, runs each inside its own savepoint of one transaction, and commits
//! them together, so concurrent writes share one durable commit (one fsync on SQLite, one WAL
//! flush on PostgreSQL). A write is answered only after that commit; a write that fails rolls
//! back to its savepoint and leaves the others in.
//!
//! A signed request's nonce is claimed inside the same transaction as its action. A request
//! that is refused still spends its nonce, so no signed request is ever carried out later.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::BoxFuture;
use sqlx::Executor;
use tokio::sync::{mpsc, oneshot};

use super::nonces::{self, Nonce};
use super::{Backend, DbError, DbResult, Tx};

/// Most writes committed together.
const MAX_BATCH: usize = 512;

/// The request was seen before (its nonce is spent).
#[derive(Debug)]
pub struct Replayed;

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

/// One queued write.
pub(super) struct Job {
    nonce: Option<Nonce>,
    work: Work,
    fail: Box<dyn FnOnce(Failure) + Send>,
}

impl Job {
    /// A write that runs `f` in the batch transaction after claiming `nonce`; its outcome goes
    /// to the returned receiver once the batch has committed.
    pub(super) fn new<T, E, F>(nonce: Option<Nonce>, f: F) -> (Self, oneshot::Receiver<Result<T, E>>)
    where
        F: for<'c> FnOnce(&'c mut Tx) -> BoxFuture<'c, Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + From<Replayed> + Send + 'static,
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
                let out = f(conn).await;
                let kept = out.is_ok();
                let answer: Answer = Box::new(move |committed| {
                    send(&for_work, committed.map_err(|e| E::from(DbError::Commit(e))).and(out));
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
        (Self { nonce, work, fail }, rx)
    }
}

/// Run batches until every sender is gone.
pub(super) async fn run(pool: sqlx::AnyPool, backend: Backend, mut jobs: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (writes, started) = (batch.len(), std::time::Instant::now());
        let mut answers = Vec::with_capacity(batch.len());
        let mut waiting = batch.drain(..);
        let outcome = commit(&pool, backend, &mut waiting, &mut answers).await.map_err(|e| e.to_string());
        tracing::trace!(writes, elapsed = ?started.elapsed(), "group commit");
        if let Err(e) = &outcome {
            tracing::error!(error = %e, writes, "a group commit failed; its writes are refused");
            // Those that did not run yet (the commit broke off before them).
            for job in waiting {
                (job.fail)(Failure::Commit(e.clone()));
            }
        }
        for answer in answers {
            answer(outcome.clone());
        }
    }
}

/// One transaction over the jobs; those that ran leave their answers in `answers`, those that
/// did not stay in `jobs`.
async fn commit(
    pool: &sqlx::AnyPool,
    backend: Backend,
    jobs: &mut impl Iterator<Item = Job>,
    answers: &mut Vec<Answer>,
) -> DbResult<()> {
    let mut tx = match backend {
        Backend::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await?,
        Backend::Postgres => pool.begin().await?,
    };
    if backend == Backend::Postgres {
        // The feed counter's row lock: explorers sharing the database run their batches one at
        // a time, so ledger checks cannot race and feed positions become visible in order.
        sqlx::query("SELECT value FROM counters WHERE name = 'feed' FOR UPDATE").execute(&mut *tx).await?;
    }
    for job in jobs {
        run_one(&mut tx, job, answers).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// One write inside its savepoint.
async fn run_one(tx: &mut Tx, job: Job, answers: &mut Vec<Answer>) -> DbResult<()> {
    let Job { nonce, work, fail } = job;
    tx.execute("SAVEPOINT job").await?;
    if let Some(nonce) = &nonce
        && !nonces::claim(tx, nonce).await?
    {
        tx.execute("RELEASE SAVEPOINT job").await?;
        fail(Failure::Replayed);
        return Ok(());
    }
    let done = AssertUnwindSafe(work(tx)).catch_unwind().await;
    let kept = done.as_ref().is_ok_and(|d| d.kept);
    if !kept {
        tx.execute("ROLLBACK TO SAVEPOINT job").await?;
        if let Some(nonce) = &nonce {
            nonces::claim(tx, nonce).await?;
        }
    }
    tx.execute("RELEASE SAVEPOINT job").await?;
    match done {
        Ok(done) => answers.push(done.answer),
        Err(_) => tracing::error!("a write panicked; rolled back"),
    }
    Ok(())
}
