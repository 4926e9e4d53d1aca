//! `GET /v1/nodes/{id}/feed`: a node's desired-set changes as Server-Sent Events.
//!
//! Each event carries the workload as it now is and a cursor; reconnecting with `?cursor=` (or
//! the standard `Last-Event-ID` header) resumes after it. The stream is opened only by the node
//! itself (a signed request).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use zgrid_types::api::{FEED_KEEPALIVE_SECS, FeedEvent, FeedQuery, WorkloadRecord};
use zgrid_types::{NodeId, PublicKey};

use super::errors::SignedErrors;
use super::nodes::node_id;
use crate::AppState;
use crate::auth::Authed;
use crate::db::{Db, workloads};
use crate::error::{ApiErr, ApiResult};
use crate::extract::{ApiPath, ApiQuery};
use crate::feed::Subscription;

/// Rows read per database query.
const BATCH: i64 = 256;

struct Cursor {
    db: Db,
    node: NodeId,
    cursor: i64,
    changes: Subscription,
    pending: VecDeque<(i64, WorkloadRecord)>,
    closed: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
}

impl Cursor {
    /// The next event, waiting for a change when there is none.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some((seq, record)) = self.pending.pop_front() {
                self.cursor = seq;
                let event = FeedEvent { cursor: seq, record };
                return Event::default().id(seq.to_string()).event("workload").json_data(&event).ok();
            }
            match workloads::changes(&self.db, &self.node, self.cursor, BATCH).await {
                Ok(rows) if !rows.is_empty() => {
                    self.pending.extend(rows);
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(node = %self.node, error = %e, "feed read failed; closing the stream");
                    return None;
                }
            }
            tokio::select! {
                () = self.changes.changed() => {}
                () = &mut self.closed => return None,
            }
        }
    }
}

/// Stream a node's desired-set changes.
#[utoipa::path(get, path = "/v1/nodes/{id}/feed", operation_id = "node_feed", tag = "feed",
    params(("id" = PublicKey, Path, description = "node id (base58 ed25519 key)"), FeedQuery,
        ("Last-Event-ID" = Option<i64>, Header, description = "resume after this cursor (wins over `cursor`)")),
    security(("zgrid_signature" = [])),
    responses((status = 200, description = "Server-Sent Events named `workload`, each with `id:` its cursor and a `FeedEvent` as JSON data; a keep-alive comment every 15 s", content_type = "text/event-stream", body = String),
        SignedErrors))]
pub async fn stream(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<FeedQuery>,
    headers: HeaderMap,
    req: Authed<()>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let Authed { key, nonce, .. } = req;
    let checked = node_id(&id).and_then(|node| {
        if key != node {
            return Err(ApiErr::forbidden("a node's feed is opened only by that node"));
        }
        let resume = headers
            .get("last-event-id")
            .map(|v| v.to_str().ok().and_then(|s| s.parse::<i64>().ok()))
            .map(|v| {
                v.ok_or_else(|| ApiErr::field(StatusCode::BAD_REQUEST, "Last-Event-ID", "must be a cursor number"))
            })
            .transpose()?;
        Ok((node, resume.or(query.cursor).unwrap_or(0).max(0)))
    });
    // The request is spent (a captured one cannot open the feed again), whatever the answer.
    let (node, cursor) = state.db.transact(Some(nonce), move |_| Box::pin(async move { checked })).await?;
    let state = Cursor {
        db: state.db.clone(),
        node,
        cursor,
        changes: state.feed.subscribe(node),
        pending: VecDeque::new(),
        closed: Box::pin(state.feed.closed()),
    };
    let events = futures::stream::unfold(state, |mut c| async move { c.next().await.map(|e| (Ok(e), c)) });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(FEED_KEEPALIVE_SECS))))
}
