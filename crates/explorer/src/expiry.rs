//! The background sweep that takes expired workloads out of their nodes' desired sets and
//! forgets nonces that can no longer be replayed and node usage history older than a day.

use crate::AppState;
use crate::db::{nodes, nonces, workloads};

/// How often old usage history is pruned, seconds.
const USAGE_PRUNE_SECS: i64 = 60;

/// Sweep every `expiry_interval` until the task is aborted.
pub async fn run(state: AppState) {
    let mut tick = tokio::time::interval(state.config.expiry_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut usage_pruned = 0;
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
        if now - usage_pruned >= USAGE_PRUNE_SECS {
            match nodes::prune_usage(&state.db, now).await {
                Ok(_) => usage_pruned = now,
                Err(e) => tracing::warn!(error = %e, "usage history pruning failed; retrying next tick"),
            }
        }
    }
}
