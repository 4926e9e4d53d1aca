//! Signs results with the node key and delivers them to the explorer, all that are waiting in
//! one request, retrying with backoff until it takes them. Only the newest result of each
//! workload is kept waiting.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::mpsc;
use zgrid_client::ExplorerClient;
use zgrid_types::api::MAX_RESULTS;
use zgrid_types::{Keypair, ResultState, Signed, WorkloadId, WorkloadResult, WorkloadSpec};

use crate::backoff::Backoff;

/// Longest wait between delivery attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A handle to queue results.
#[derive(Clone)]
pub struct Reporter {
    me: Keypair,
    tx: mpsc::UnboundedSender<Signed<WorkloadResult>>,
}

impl Reporter {
    /// Start delivering results through `explorer` (which signs requests with the node key).
    pub fn start(me: Keypair, explorer: ExplorerClient) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(deliver(explorer, rx));
        Self { me, tx }
    }

    /// A reporter that hands the signed results to the returned receiver instead of delivering
    /// them (for tests of the engine).
    pub fn recording(me: Keypair) -> (Self, mpsc::UnboundedReceiver<Signed<WorkloadResult>>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self { me, tx }, rx)
    }

    /// Sign and queue a result about `workload`.
    pub fn report(
        &self,
        workload: &WorkloadSpec,
        state: ResultState,
        message: impl Into<String>,
        data: serde_json::Value,
    ) {
        let message = message.into();
        match state {
            ResultState::Error => tracing::warn!(workload = %workload.id, %message, "reporting an error"),
            _ => tracing::info!(workload = %workload.id, state = state.as_str(), %message, "reporting"),
        }
        let result = WorkloadResult {
            workload_id: workload.id.clone(),
            version: workload.version,
            node_id: self.me.public(),
            state,
            message,
            data,
            timestamp: zgrid_types::unix_now(),
        };
        // The receiver lives as long as the runtime; a send can only fail during shutdown.
        let _ = self.tx.send(Signed::sign(result, &self.me));
    }
}

async fn deliver(explorer: ExplorerClient, mut rx: mpsc::UnboundedReceiver<Signed<WorkloadResult>>) {
    let mut waiting: HashMap<WorkloadId, Signed<WorkloadResult>> = HashMap::new();
    let mut backoff = Backoff::new(Duration::from_millis(200), MAX_BACKOFF);
    loop {
        if waiting.is_empty() {
            match rx.recv().await {
                Some(r) => {
                    waiting.insert(r.payload.workload_id.clone(), r);
                }
                None => return,
            }
        }
        while let Ok(r) = rx.try_recv() {
            waiting.insert(r.payload.workload_id.clone(), r);
        }
        let mut failed = false;
        let all: Vec<_> = std::mem::take(&mut waiting).into_values().collect();
        for batch in all.chunks(MAX_RESULTS) {
            match explorer.post_results(batch).await {
                Ok(receipt) => {
                    for refused in receipt.refused {
                        tracing::warn!(workload = %refused.workload_id, error = refused.error, "the explorer refused a result; dropped");
                    }
                }
                // The explorer refuses these results for good.
                Err(e) if e.status().is_some_and(|s| (400..500).contains(&s) && s != 401 && s != 429) => {
                    tracing::warn!(results = batch.len(), error = %e, "the explorer refused results; dropped");
                }
                Err(e) => {
                    tracing::debug!(results = batch.len(), error = %e, "results not delivered yet; will retry");
                    for result in batch {
                        // A newer result queued meanwhile wins.
                        waiting.entry(result.payload.workload_id.clone()).or_insert_with(|| result.clone());
                    }
                    failed = true;
                }
            }
        }
        if failed {
            tokio::time::sleep(backoff.next()).await;
        } else {
            backoff.reset();
        }
    }
}
