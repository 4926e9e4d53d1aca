//! Following the explorer: list the node's whole desired set, then stream changes from the
//! cursor that came with it. After a break the stream resumes from the last cursor, on the next
//! explorer when the node was given several sharing one database (cursors are positions in that
//! database, and the explorer replays every change after the cursor, so nothing is missed);
//! only when an explorer refuses to resume is the whole set listed again. Waits between
//! attempts grow to 30 s while no explorer is reachable.

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use zgrid_client::{ClientError, ExplorerClient};

use crate::backoff::Backoff;
use crate::engine::Input;

/// First wait before reconnecting.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Feed the engine until it stops listening.
pub async fn follow(explorer: ExplorerClient, engine: mpsc::Sender<Input>) {
    let mut backoff = Backoff::new(FIRST_BACKOFF, MAX_BACKOFF);
    // Where the engine's view stands: the cursor of the last change it was given.
    let mut cursor = None;
    loop {
        let started = tokio::time::Instant::now();
        let Err(e) = once(&explorer, &engine, &mut cursor).await else { return };
        // A connection that lasted was healthy: start over with short waits.
        if started.elapsed() > MAX_BACKOFF {
            backoff.reset();
        }
        let wait = backoff.next();
        match cursor {
            Some(at) => tracing::warn!(error = %e, "lost the explorer feed; resuming from cursor {at} in {wait:?}"),
            None => tracing::warn!(error = %e, "lost the explorer feed; reconnecting in {wait:?}"),
        }
        tokio::time::sleep(wait).await;
    }
}

/// One connection: resume the feed after `cursor` when there is one, else (or when an explorer
/// refuses that) list the whole set and stream from its cursor. `cursor` follows the changes
/// passed on. `Ok` means the engine went away.
async fn once(
    explorer: &ExplorerClient,
    engine: &mpsc::Sender<Input>,
    cursor: &mut Option<i64>,
) -> Result<(), ClientError> {
    let resumed = match *cursor {
        Some(at) => match explorer.feed(at).await {
            Ok(events) => {
                tracing::info!(cursor = at, explorer = explorer.base_url(), "resumed the explorer feed");
                Some(events)
            }
            // No explorer answered: try to resume again later.
            Err(e) if e.is_unreachable() => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, cursor = at, "cannot resume the explorer feed; listing the whole desired set");
                *cursor = None;
                None
            }
        },
        None => None,
    };
    let mut events = match resumed {
        Some(events) => Box::pin(events),
        None => {
            let me = explorer.signer()?;
            let set = explorer.desired_set(&me).await?;
            if engine.send(Input::Snapshot(set.workloads)).await.is_err() {
                return Ok(());
            }
            *cursor = Some(set.cursor);
            let events = Box::pin(explorer.feed(set.cursor).await?);
            tracing::info!(cursor = set.cursor, explorer = explorer.base_url(), "following the explorer feed");
            events
        }
    };
    while let Some(event) = events.next().await {
        let event = event?;
        let at = event.cursor;
        if engine.send(Input::Change(Box::new(event.record))).await.is_err() {
            return Ok(());
        }
        *cursor = Some(at);
    }
    Err(ClientError::Decode(format!("the feed ended after cursor {}", cursor.unwrap_or_default())))
}
