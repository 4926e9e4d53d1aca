//! In-process change notification for node feeds and the cockpit.
//!
//! After a transaction that changes a node's desired set commits, the handler calls
//! [`Feed::notify`] with the node id; every open feed stream of that node then reads the new rows
//! from the database. The database stays the source of truth: a stream that misses notices
//! (lagging) simply re-reads, so no change is lost. Any other accepted change (a result, a
//! heartbeat, a registration) calls [`Feed::touch`]; open cockpit pages then load again.

use tokio::sync::{broadcast, watch};
use zgrid_types::NodeId;

/// Fan-out of "node N's desired set changed".
#[derive(Clone)]
pub struct Feed {
    tx: broadcast::Sender<NodeId>,
    /// How many changes were accepted (any kind).
    changes: watch::Sender<u64>,
    closing: watch::Sender<bool>,
}

impl Default for Feed {
    fn default() -> Self {
        Self { tx: broadcast::channel(4096).0, changes: watch::channel(0).0, closing: watch::channel(false).0 }
    }
}

impl Feed {
    /// Tell the streams of `node` to look for changes.
    pub fn notify(&self, node: NodeId) {
        // No receivers is fine: nobody is streaming right now.
        let _ = self.tx.send(node);
        self.touch();
    }

    /// Say that something the cockpit shows changed.
    pub fn touch(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Follow [`Feed::touch`]: the receiver sees the latest count.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Start listening; subscribe *before* reading the database so no change falls in between.
    pub fn subscribe(&self) -> broadcast::Receiver<NodeId> {
        self.tx.subscribe()
    }

    /// End every open stream (the explorer is shutting down).
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Resolves once [`Feed::close`] has been called.
    pub fn closed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.closing.subscribe();
        async move {
            let _ = rx.wait_for(|closing| *closing).await;
        }
    }
}
