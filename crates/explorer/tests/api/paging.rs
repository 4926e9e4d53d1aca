//! Listings paged by key (`after` = the previous page's `next`): every item exactly once and in
//! the listing's order, ties included, also when items are added between pages; a key that is
//! not one is a 400 that says what to send; the owner's listing reads an index range.

use std::collections::HashSet;

use zgrid_explorer::db::nodes::{self, NodeKey, NodeOrder};
use zgrid_explorer::db::workloads::{self as ledger, WorkloadKey};
use zgrid_types::api::{KeyPage, NodeFilter, WorkloadFilter, WorkloadRecord, WorkloadState};
use zgrid_types::directory::{Capacity, Node};
use zgrid_types::{NodeId, WorkloadId};

use crate::common::*;

/// Every page of a listing: `fetch(after)` gives the page after `after`; `between` runs after
/// the first page (to change the listing while it is being read).
async fn pages<T, F, Fut>(fetch: F, between: impl AsyncFnOnce()) -> Vec<T>
where
    F: Fn(Option<String>) -> Fut,
    Fut: Future<Output = KeyPage<T>>,
{
    let (mut all, mut after, mut between) = (Vec::new(), None, Some(between));
    for _ in 0..1000 {
        let page = fetch(after.clone()).await;
        assert!(!page.items.is_empty(), "an empty page before the last");
        all.extend(page.items);
        if let Some(between) = between.take() {
            between().await;
        }
        match page.next {
            Some(next) => after = Some(next),
            None => return all,
        }
    }
    panic!("more than 1000 pages")
}

fn node_ids(nodes: &[Node]) -> Vec<NodeId> {
    nodes.iter().map(|n| n.node_id).collect()
}

fn workload_ids(records: &[WorkloadRecord]) -> Vec<WorkloadId> {
    records.iter().map(|r| r.workload.payload.id.clone()).collect()
}

fn once<T: std::hash::Hash + Eq + std::fmt::Debug>(items: &[T]) {
    let mut seen = HashSet::new();
    assert!(items.iter().all(|i| seen.insert(i)), "an item is listed twice: {items:?}");
}

/// Nine nodes besides the world's two, registered within a second or two (ties in the
/// registration order), in places and with capacity that tie too.
async fn many_nodes(w: &World) {
    let places = [["BE", "Ghent"], ["NL", "Delft"], ["be", "ghent"]];
    for i in 0..9 {
        let total = Capacity { cru: 4 + (i % 2), mru: 4096 * (1 + i % 2), sru: 10_000, hru: 0 };
        register_invited(&w.ex, &w.alice.key, w.farm, &key(), places[i as usize % 3], total).await;
    }
}

async fn nodes_page_by_key_in_every_order_with_ties_and_arrivals(backend: Backend) {
    let w = World::new(backend).await;
    many_nodes(&w).await;
    let c = w.ex.client();
    let list = |size: u32, filter: NodeFilter| {
        let c = c.clone();
        move |after: Option<String>| {
            let (c, filter) = (c.clone(), NodeFilter { after, size: Some(size), ..filter.clone() });
            async move { c.nodes(&filter).await.unwrap() }
        }
    };
    let whole = c.nodes(&NodeFilter { size: Some(500), ..Default::default() }).await.unwrap();
    assert_eq!((whole.items.len(), whole.next.as_deref()), (11, None));
    assert!(whole.items.windows(2).all(|p| p[0].created_at <= p[1].created_at), "oldest registration first");
    for size in [1, 2, 3, 11] {
        let paged = pages(list(size, NodeFilter::default()), async || {}).await;
        assert_eq!(node_ids(&paged), node_ids(&whole.items), "pages of {size}");
    }
    let be = NodeFilter { country: Some("be".into()), ..Default::default() };
    let whole_be = c.nodes(&NodeFilter { size: Some(500), ..be.clone() }).await.unwrap();
    assert_eq!(whole_be.items.len(), 7, "BE, be and the world's Ghent node");
    assert_eq!(node_ids(&pages(list(2, be), async || {}).await), node_ids(&whole_be.items));

    // Nodes registering while the list is read: every older one still comes exactly once.
    let mut arrived = Vec::new();
    let paged = pages(list(2, NodeFilter::default()), async || {
        for _ in 0..3 {
            let node = key();
            let total = Capacity { cru: 1, mru: 1, sru: 1, hru: 0 };
            register_invited(&w.ex, &w.alice.key, w.farm, &node, ["BE", "Ghent"], total).await;
            arrived.push(node.public());
        }
    })
    .await;
    once(&node_ids(&paged));
    let older: Vec<NodeId> = node_ids(&paged).into_iter().filter(|id| !arrived.contains(id)).collect();
    assert_eq!(older, node_ids(&whole.items));

    // Every order of the directory (the cockpit's), in the database layer: pages of two are
    // the whole list, and a key is only good for the order that made it.
    let db = &w.ex.state.db;
    let alive_since = zgrid_types::unix_now() - 180;
    for &order in NodeOrder::ALL {
        for filter in [NodeFilter::default(), NodeFilter { city: Some("GHENT".into()), ..Default::default() }] {
            let whole = nodes::search(db, &filter, order, None, 500, alive_since).await.unwrap();
            let fetch = |after: Option<String>| {
                let filter = filter.clone();
                async move {
                    let key = after.map(|a| NodeKey::decode(&a, order).expect("its own key"));
                    nodes::search(db, &filter, order, key.as_ref(), 2, alive_since).await.unwrap()
                }
            };
            let paged = pages(fetch, async || {}).await;
            assert_eq!(node_ids(&paged), node_ids(&whole.items), "{order:?} {filter:?}");
            once(&node_ids(&paged));
        }
        let first = nodes::search(db, &NodeFilter::default(), order, None, 2, alive_since).await.unwrap();
        let key = first.next.expect("more than one page");
        for &other in NodeOrder::ALL.iter().filter(|&&o| o != order) {
            assert_eq!(NodeKey::decode(&key, other), None, "a key of {order:?} read as {other:?}");
        }
    }
    let free: Vec<u64> = nodes::search(db, &NodeFilter::default(), NodeOrder::FreeMemory, None, 500, alive_since)
        .await
        .unwrap()
        .items
        .iter()
        .map(|n| n.free().mru)
        .collect();
    assert!(free.windows(2).all(|p| p[0] >= p[1]), "most free memory first: {free:?}");
    w.ex.stop().await;
}

async fn workloads_page_by_key_newest_first_with_ties_and_arrivals(backend: Backend) {
    let w = World::new(backend).await;
    let node = w.node.public();
    let mut alices = Vec::new();
    for _ in 0..9 {
        alices.push(w.alice.client.create_workload(&w.signed(&w.alice, &node, volume())).await.unwrap());
    }
    for _ in 0..2 {
        w.bob.client.create_workload(&w.signed(&w.bob, &node, volume())).await.unwrap();
    }
    for gone in &alices[..3] {
        w.alice.client.delete_workload(&gone.workload.payload.id, w.alice.id).await.unwrap();
    }
    let c = w.ex.client();
    let list = |size: u32, filter: WorkloadFilter| {
        let c = c.clone();
        move |after: Option<String>| {
            let (c, filter) = (c.clone(), WorkloadFilter { after, size: Some(size), ..filter.clone() });
            async move { c.workloads(&filter).await.unwrap() }
        }
    };
    let alice = WorkloadFilter { owner: Some(w.alice.id), ..Default::default() };
    let active = WorkloadFilter { state: Some("active".into()), ..alice.clone() };
    for (filter, count) in [(alice.clone(), 9), (active.clone(), 6), (WorkloadFilter::default(), 11)] {
        let whole = c.workloads(&WorkloadFilter { size: Some(500), ..filter.clone() }).await.unwrap();
        assert_eq!((whole.items.len(), whole.next.as_deref()), (count, None), "{filter:?}");
        assert!(whole.items.windows(2).all(|p| p[0].created_at >= p[1].created_at), "newest first");
        for size in [1, 2, 4] {
            let paged = pages(list(size, filter.clone()), async || {}).await;
            assert_eq!(workload_ids(&paged), workload_ids(&whole.items), "pages of {size} of {filter:?}");
        }
        if filter.state.is_some() {
            assert!(whole.items.iter().all(|r| r.state == WorkloadState::Active));
        }
    }

    // Workloads made and deleted while the list is read: every older one comes exactly once.
    let whole = c.workloads(&WorkloadFilter { size: Some(500), ..alice.clone() }).await.unwrap();
    let mut arrived = Vec::new();
    let paged = pages(list(2, alice.clone()), async || {
        for _ in 0..3 {
            let made = w.alice.client.create_workload(&w.signed(&w.alice, &node, volume())).await.unwrap();
            arrived.push(made.workload.payload.id);
        }
    })
    .await;
    once(&workload_ids(&paged));
    let older: Vec<WorkloadId> = workload_ids(&paged).into_iter().filter(|id| !arrived.contains(id)).collect();
    assert_eq!(older, workload_ids(&whole.items));

    // A key that is not one, or one of the node list, says what to send instead.
    let nodes_key = c.nodes(&NodeFilter { size: Some(1), ..Default::default() }).await.unwrap().next.unwrap();
    for bad in ["3", "not a key", nodes_key.as_str()] {
        let err = c
            .workloads(&WorkloadFilter { after: Some(bad.into()), ..alice.clone() })
            .await
            .expect_err("a bad key is refused");
        assert_eq!(err.status(), Some(400), "{err}");
        assert!(err.to_string().contains("after") && err.to_string().contains("`next`"), "{err}");
    }
    let workloads_key = c.workloads(&WorkloadFilter { size: Some(1), ..alice }).await.unwrap().next.unwrap();
    let err = c.nodes(&NodeFilter { after: Some(workloads_key), ..Default::default() }).await.unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    w.ex.stop().await;
}

/// SQLite's plan for an owner's workloads, newest first: a range of an index, in its order
/// (no full scan of `workloads`, no sorting afterwards), on the first page and a later one.
#[tokio::test]
async fn an_owners_workloads_are_read_from_an_index_range() {
    let w = World::new(Backend::Sqlite).await;
    let node = w.node.public();
    for _ in 0..3 {
        w.alice.client.create_workload(&w.signed(&w.alice, &node, volume())).await.unwrap();
    }
    let db = &w.ex.state.db;
    let alice = WorkloadFilter { owner: Some(w.alice.id), ..Default::default() };
    let later = ledger::list(db, &alice, None, 1).await.unwrap().next.unwrap();
    let later = WorkloadKey::decode(&later);
    for filter in [alice.clone(), WorkloadFilter { state: Some("active".into()), ..alice }] {
        for after in [None, later.as_ref()] {
            let plan = ledger::explain_list(db, &filter, after, 50).await.unwrap();
            assert!(
                plan.iter()
                    .all(|step| step.starts_with("SEARCH workloads USING INDEX") && !step.contains("TEMP B-TREE")),
                "{filter:?} after {after:?}: {plan:?}"
            );
        }
    }
    w.ex.stop().await;
}

crate::on_both_backends!(
    nodes_page_by_key_in_every_order_with_ties_and_arrivals,
    workloads_page_by_key_newest_first_with_ties_and_arrivals,
);
