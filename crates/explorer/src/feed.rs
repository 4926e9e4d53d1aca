//! Change notification for node feeds and the cockpit.
//!
//! After a transaction that changes a node's desired set commits, the handler calls
//! [`Feed::notify`] with the node id; every open feed stream of that node then reads the new rows
//! from the database. The database stays the source of truth: a stream that misses notices
//! (lagging) simply re-reads, so no change is lost. Any other accepted change (a result, a
//! heartbeat, a registration) calls [`Feed::touch`]; open cockpit pages then load again.
//!
//! Several explorer processes may share one PostgreSQL database. Their transactions also send a
//! PostgreSQL notification on [`CHANNEL`] (the node id, or an empty payload for other changes),
//! and each process listens there ([`Feed::listen_postgres`]) and passes what it hears to its own
//! streams, so a change accepted by one explorer wakes the streams every explorer holds. When
//! the listening connection is lost, notices sent meanwhile are lost with it: once it is back,
//! every stream re-reads from its cursor ([`Feed::notify_all`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::watch;
use zgrid_types::NodeId;

/// The PostgreSQL notification channel explorers sharing a database tell each other about
/// changes on: the payload is a node id (base58) whose desired set changed, or empty for any
/// other change.
pub(crate) const CHANNEL: &str = "zgrid_feed";

/// First wait before connecting the listener again.
const FIRST_RETRY: Duration = Duration::from_millis(250);

/// Longest wait between attempts to connect the listener.
const MAX_RETRY: Duration = Duration::from_secs(5);

/// Wakes the open streams of a node when its desired set changes. Only that node's streams
/// wake (a grid has thousands of nodes, each with its feed open); [`Feed::notify_all`] wakes
/// every stream.
#[derive(Clone)]
pub struct Feed {
    inner: Arc<Inner>,
}

struct Inner {
    /// A change count per node with open streams; the entry goes with its last stream.
    nodes: Mutex<HashMap<NodeId, watch::Sender<u64>>>,
    /// Bumped when every stream must re-read.
    all: watch::Sender<u64>,
    /// How many changes were accepted (any kind).
    changes: watch::Sender<u64>,
    closing: watch::Sender<bool>,
}

impl Default for Feed {
    fn default() -> Self {
        Self {
            inner: Arc::new(Inner {
                nodes: Mutex::default(),
                all: watch::channel(0).0,
                changes: watch::channel(0).0,
                closing: watch::channel(false).0,
            }),
        }
    }
}

/// One open stream's wake-ups: changes of its node, and "everyone re-read".
pub struct Subscription {
    inner: Arc<Inner>,
    node: NodeId,
    mine: watch::Receiver<u64>,
    all: watch::Receiver<u64>,
}

impl Subscription {
    /// Wait until the node's desired set may have changed since the last call (or since the
    /// subscription, for the first).
    pub async fn changed(&mut self) {
        // The senders live as long as `inner`, which this subscription holds: neither fails.
        tokio::select! {
            _ = self.mine.changed() => {}
            _ = self.all.changed() => {}
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut nodes = self.inner.nodes.lock().expect("feed lock");
        // This subscription's receiver is the last one: nobody streams this node any more.
        if nodes.get(&self.node).is_some_and(|tx| tx.receiver_count() <= 1) {
            nodes.remove(&self.node);
        }
    }
}

impl Feed {
    /// Tell the streams of `node` to look for changes.
    pub fn notify(&self, node: NodeId) {
        if let Some(tx) = self.inner.nodes.lock().expect("feed lock").get(&node) {
            tx.send_modify(|n| *n = n.wrapping_add(1));
        }
        self.touch();
    }

    /// Tell every stream to look for changes (notices may have been lost).
    pub fn notify_all(&self) {
        self.inner.all.send_modify(|n| *n = n.wrapping_add(1));
        self.touch();
    }

    /// Say that something the cockpit shows changed.
    pub fn touch(&self) {
        self.inner.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Follow [`Feed::touch`]: the receiver sees the latest count.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    /// Start listening for changes of `node`; subscribe *before* reading the database so no
    /// change falls in between.
    pub fn subscribe(&self, node: NodeId) -> Subscription {
        let mine = {
            let mut nodes = self.inner.nodes.lock().expect("feed lock");
            nodes.entry(node).or_insert_with(|| watch::channel(0).0).subscribe()
        };
        Subscription { inner: self.inner.clone(), node, mine, all: self.inner.all.subscribe() }
    }

    /// End every open stream and the PostgreSQL listener (the explorer is shutting down).
    pub fn close(&self) {
        self.inner.closing.send_replace(true);
    }

    /// Resolves once [`Feed::close`] has been called.
    pub fn closed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.inner.closing.subscribe();
        async move {
            let _ = rx.wait_for(|closing| *closing).await;
        }
    }

    /// Listen on [`CHANNEL`] of the PostgreSQL database at `url` in a task of its own, passing
    /// what other explorer processes (and this one) announce to this process's streams, until
    /// [`Feed::close`]. The connection is made again whenever it is lost, and every stream is
    /// woken once it is back.
    pub fn listen_postgres(&self, url: String) -> tokio::task::JoinHandle<()> {
        let feed = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = feed.closed() => {}
                () = feed.receive(&url) => {}
            }
        })
    }

    /// Hold a listening connection forever, reconnecting after failures.
    async fn receive(&self, url: &str) {
        let mut wait = FIRST_RETRY;
        let mut had_one = false;
        loop {
            let mut listener = match listen(url).await {
                Ok(listener) => listener,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for other explorers' changes on PostgreSQL; retrying in {wait:?}");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(MAX_RETRY);
                    continue;
                }
            };
            wait = FIRST_RETRY;
            if had_one {
                tracing::info!(channel = CHANNEL, "listening for other explorers' changes again; every feed re-reads");
            } else {
                tracing::info!(channel = CHANNEL, "listening for other explorers' changes on PostgreSQL");
            }
            had_one = true;
            // Notices sent while nobody listened are lost (and a stream may have opened before
            // the first connection): every stream re-reads from its cursor.
            self.notify_all();
            let why = loop {
                match listener.try_recv().await {
                    Ok(Some(notice)) => self.deliver(notice.payload()),
                    Ok(None) => break "the connection was lost".to_owned(),
                    Err(e) => break e.to_string(),
                }
            };
            tracing::warn!(reason = %why, "stopped hearing other explorers' changes; reconnecting");
        }
    }

    /// Pass on one notification's payload.
    fn deliver(&self, payload: &str) {
        if payload.is_empty() {
            self.touch();
            return;
        }
        match payload.parse::<NodeId>() {
            Ok(node) => self.notify(node),
            Err(_) => {
                tracing::warn!(payload, "a notification on {CHANNEL} names no node; every feed re-reads");
                self.notify_all();
            }
        }
    }
}

/// A connection listening on [`CHANNEL`], which never reconnects by itself (so the caller knows
/// when notices may have been lost).
async fn listen(url: &str) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect(url).await?;
    listener.eager_reconnect(false);
    listener.listen(CHANNEL).await?;
    Ok(listener)
}
