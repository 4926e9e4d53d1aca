//! The background sweep that takes expired workloads out of their nodes' desired sets and
//! forgets nonces that can no longer be replayed.

use crate::AppState;
use crate::db::{nonces, workloads};

/// Sweep every `expiry_interval` until the task is aborted.
pub async fn run(state: AppState) {
    let mut tick = tokio::time::interval(state.config.expiry_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = zgrid_types::unix_now();
        match workloads::expire_due(&state.db, now).await {
            Ok(nodes) => nodes.into_iter().for_each(|n| state.feed.notify(n)),
            Err(e) => tracing::warn!(error = %e, "expiry sweep failed; retrying next tick"),
        }
        if let Err(e) = nonces::prune(&state.db, now).await {
            tracing::warn!(error = %e, "nonce pruning failed; retrying next tick");
        }
    }
}
