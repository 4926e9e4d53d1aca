//! The node feed: changes reach a connected node, the cursor resumes after a gap, the desired
//! set lists what to run, and expiry and deletion take workloads out of it.

use std::time::Duration;

use futures::StreamExt;
use zgrid_types::api::{FeedEvent, WorkloadState};

use crate::common::*;

/// Waiting bound for events that arrive in milliseconds; generous so a loaded CI machine does
/// not fail the test. Latency itself is measured by `zgrid bench explorer`.
const WAIT: Duration = Duration::from_secs(20);

async fn next_event(
    feed: &mut (impl futures::Stream<Item = zgrid_client::ClientResult<FeedEvent>> + Unpin),
) -> FeedEvent {
    tokio::time::timeout(WAIT, feed.next())
        .await
        .expect("no feed event in time")
        .expect("feed ended")
        .expect("feed event")
}

async fn a_connected_node_receives_changes_and_resumes_from_its_cursor(backend: Backend) {
    let w = World::new(backend).await;
    let node = w.ex.signed(&w.node);
    let mut feed = Box::pin(node.feed(0).await.unwrap());

    let a = w.signed(&w.alice, &w.node.public(), volume());
    w.alice.client.create_workload(&a).await.unwrap();
    let ev = next_event(&mut feed).await;
    assert_eq!(ev.record.workload, a);
    assert!(ev.record.workload.verify(&w.alice.key.public()).is_ok());

    // Another node's workloads do not show up on this feed.
    w.alice.client.create_workload(&w.signed(&w.alice, &w.node2.public(), volume())).await.unwrap();

    w.alice.client.delete_workload(&a.payload.id, w.alice.id).await.unwrap();
    let ev = next_event(&mut feed).await;
    assert_eq!(ev.record.workload.payload.id, a.payload.id);
    assert_eq!(ev.record.state, WorkloadState::Deleted);
    let cursor = ev.cursor;
    drop(feed);

    // While the node is away, a workload is added; reconnecting from the cursor brings only it.
    let b = w.signed(&w.alice, &w.node.public(), volume());
    w.alice.client.create_workload(&b).await.unwrap();
    let mut feed = Box::pin(node.feed(cursor).await.unwrap());
    let ev = next_event(&mut feed).await;
    assert_eq!(ev.record.workload, b);
    assert!(ev.cursor > cursor);

    // The desired set lists only active workloads, with a cursor to stream from.
    let set = w.ex.client().desired_set(&w.node.public()).await.unwrap();
    assert_eq!(set.workloads.len(), 1);
    assert_eq!(set.workloads[0].workload, b);
    assert!(set.cursor >= ev.cursor);
    w.ex.stop().await;
}

async fn only_the_node_itself_opens_its_feed(backend: Backend) {
    let w = World::new(backend).await;
    let path = format!("/v1/nodes/{}/feed", w.node.public());
    let (status, _) = w.ex.raw(&w.node2, "GET", &path, vec![]).await;
    assert_eq!(status, 403);
    let (status, _) = w.ex.raw(&w.alice.key, "GET", &path, vec![]).await;
    assert_eq!(status, 403);
    w.ex.stop().await;
}

async fn expired_workloads_leave_the_desired_set(backend: Backend) {
    let w = World::new(backend).await;
    let node = w.ex.signed(&w.node);
    let mut feed = Box::pin(node.feed(0).await.unwrap());
    let mut spec = w.spec(&w.alice, &w.node.public(), volume());
    spec.expires_at = zgrid_types::unix_now() + 5;
    let signed = zgrid_types::Signed::sign(spec, &w.alice.key);
    w.alice.client.create_workload(&signed).await.unwrap();
    assert_eq!(next_event(&mut feed).await.record.state, WorkloadState::Active);
    let ev = next_event(&mut feed).await;
    assert_eq!(ev.record.state, WorkloadState::Expired);
    let deletion = ev.record.deletion.expect("deletion recorded");
    assert_eq!(deletion.by, None);
    assert!(deletion.at >= signed.payload.expires_at);
    assert!(w.ex.client().desired_set(&w.node.public()).await.unwrap().workloads.is_empty());
    w.ex.stop().await;
}

crate::on_both_backends!(
    a_connected_node_receives_changes_and_resumes_from_its_cursor,
    only_the_node_itself_opens_its_feed,
    expired_workloads_leave_the_desired_set,
);
