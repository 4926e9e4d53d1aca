//! The background sweep that takes expired workloads out of their nodes' desired sets and
//! forgets nonces that can no longer be replayed and node usage history older than a day.

use crate::AppState;
use crate::db::{nodes, nonces, workloads};
use crate::error::ApiErr;

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
        let prune_usage = now - usage_pruned >= USAGE_PRUNE_SECS;
        let swept = state
            .db
            .transact(None, move |tx| {
                Box::pin(async move {
                    let expired = workloads::expire_due(tx, now).await?;
                    nonces::prune(tx, now).await?;
                    if prune_usage {
                        nodes::prune_usage(tx, now).await?;
                    }
                    Ok::<_, ApiErr>(expired)
                })
            })
            .await;
        match swept {
            Ok(expired) => {
                expired.into_iter().for_each(|n| state.feed.notify(n));
                if prune_usage {
                    usage_pruned = now;
                }
            }
            Err(e) => tracing::warn!(error = e.message(), "expiry sweep failed; retrying next tick"),
        }
    }
}
