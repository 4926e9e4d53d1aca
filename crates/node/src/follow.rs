//! Following the explorer: list the node's whole desired set, then stream changes from the
//! cursor that came with it; after any break, list again (so nothing missed in the gap is lost)
//! and resume. Waits between attempts grow to 30 s while the explorer is unreachable.

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use zgrid_client::ExplorerClient;

use crate::backoff::Backoff;
use crate::engine::Input;

/// First wait before reconnecting.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Feed the engine until it stops listening.
pub async fn follow(explorer: ExplorerClient, engine: mpsc::Sender<Input>) {
    let mut backoff = Backoff::new(FIRST_BACKOFF, MAX_BACKOFF);
    loop {
        let started = tokio::time::Instant::now();
        let Err(e) = once(&explorer, &engine).await else { return };
        // A connection that lasted was healthy: start over with short waits.
        if started.elapsed() > MAX_BACKOFF {
            backoff.reset();
        }
        let wait = backoff.next();
        tracing::warn!(error = %e, "lost the explorer feed; reconnecting in {wait:?}");
        tokio::time::sleep(wait).await;
    }
}

/// One connection: snapshot, then stream. `Ok` means the engine went away.
async fn once(explorer: &ExplorerClient, engine: &mpsc::Sender<Input>) -> Result<(), zgrid_client::ClientError> {
    let me = explorer.signer()?;
    let set = explorer.desired_set(&me).await?;
    let mut cursor = set.cursor;
    if engine.send(Input::Snapshot(set.workloads)).await.is_err() {
        return Ok(());
    }
    let mut events = Box::pin(explorer.feed(cursor).await?);
    tracing::info!(cursor, "following the explorer feed");
    while let Some(event) = events.next().await {
        let event = event?;
        cursor = event.cursor;
        if engine.send(Input::Change(Box::new(event.record))).await.is_err() {
            return Ok(());
        }
    }
    Err(zgrid_client::ClientError::Decode(format!("the feed ended after cursor {cursor}")))
}
