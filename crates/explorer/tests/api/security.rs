//! Signatures end to end: replayed requests, deletes by non-owners, stale timestamps, and
//! workloads changed after signing.

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config as PropConfig, TestRunner};
use zgrid_types::api::{WorkloadFilter, WorkloadState};
use zgrid_types::auth::RequestAuth;
use zgrid_types::directory::Capacity;
use zgrid_types::testing::{mutations, workload_spec};
use zgrid_types::{DeleteRequest, Signed};

use crate::common::*;

fn auth(key: &zgrid_types::Keypair, method: &str, path: &str, body: &[u8], ts: i64) -> String {
    RequestAuth::sign(key, method, path, ts, hex::encode(rand::random::<[u8; 16]>()), body).to_string()
}

async fn a_captured_create_or_delete_cannot_be_replayed(backend: Backend) {
    let w = World::new(backend).await;
    let signed = w.signed(&w.alice, &w.node.public(), volume());
    let body = serde_json::to_vec(&signed).unwrap();
    let header = auth(&w.alice.key, "POST", "/v1/workloads", &body, zgrid_types::unix_now());
    let (status, _) = w.ex.send_with_auth(&header, "POST", "/v1/workloads", body.clone()).await;
    assert_eq!(status, 201);
    let (status, err) = w.ex.send_with_auth(&header, "POST", "/v1/workloads", body).await;
    assert_eq!(status, 401, "{err}");
    assert!(err["error"].as_str().unwrap().contains("already used"), "{err}");

    let id = &signed.payload.id;
    let path = format!("/v1/workloads/{id}/delete");
    let req = Signed::sign(
        DeleteRequest { workload_id: id.clone(), owner: w.alice.id, requested_at: zgrid_types::unix_now() },
        &w.alice.key,
    );
    let body = serde_json::to_vec(&req).unwrap();
    let header = auth(&w.alice.key, "POST", &path, &body, zgrid_types::unix_now());
    let (status, _) = w.ex.send_with_auth(&header, "POST", &path, body.clone()).await;
    assert_eq!(status, 200);
    let (status, err) = w.ex.send_with_auth(&header, "POST", &path, body).await;
    assert_eq!(status, 401, "{err}");
    w.ex.stop().await;
}

async fn requests_outside_the_time_window_are_refused(backend: Backend) {
    let w = World::new(backend).await;
    let signed = w.signed(&w.alice, &w.node.public(), volume());
    let body = serde_json::to_vec(&signed).unwrap();
    for skew in [-3600, 3600] {
        let header = auth(&w.alice.key, "POST", "/v1/workloads", &body, zgrid_types::unix_now() + skew);
        let (status, err) = w.ex.send_with_auth(&header, "POST", "/v1/workloads", body.clone()).await;
        assert_eq!(status, 401, "{err}");
        assert!(err["error"].as_str().unwrap().contains("clock"), "{err}");
    }
    // Signed for another path, or with the body changed in flight.
    let header = auth(&w.alice.key, "POST", "/v1/farms", &body, zgrid_types::unix_now());
    assert_eq!(w.ex.send_with_auth(&header, "POST", "/v1/workloads", body.clone()).await.0, 401);
    let header = auth(&w.alice.key, "POST", "/v1/workloads", &body, zgrid_types::unix_now());
    let mut changed = body.clone();
    changed.push(b' ');
    assert_eq!(w.ex.send_with_auth(&header, "POST", "/v1/workloads", changed).await.0, 401);
    assert_eq!(w.ex.send_with_auth("", "POST", "/v1/workloads", body).await.0, 401);
    let all = w.ex.client().workloads(&WorkloadFilter::default()).await.unwrap();
    assert!(all.items.is_empty() && all.next.is_none());
    w.ex.stop().await;
}

async fn only_the_owner_can_delete(backend: Backend) {
    let w = World::new(backend).await;
    let signed = w.signed(&w.alice, &w.node.public(), volume());
    let id = signed.payload.id.clone();
    w.alice.client.create_workload(&signed).await.unwrap();
    let path = format!("/v1/workloads/{id}/delete");

    // Bob signs a delete as himself.
    let err = w.bob.client.delete_workload(&id, w.bob.id).await.unwrap_err();
    assert_eq!(err.status(), Some(403), "{err}");
    // Bob claims alice's user id in a request he signs.
    let err = w.bob.client.delete_workload(&id, w.alice.id).await.unwrap_err();
    assert_eq!(err.status(), Some(403), "{err}");
    // Alice's request auth with a delete request Bob signed for her id.
    let forged =
        Signed::sign(DeleteRequest { workload_id: id.clone(), owner: w.alice.id, requested_at: 0 }, &w.bob.key);
    let (status, _) = w.ex.raw(&w.alice.key, "POST", &path, serde_json::to_vec(&forged).unwrap()).await;
    assert_eq!(status, 403);
    // The node cannot delete it either.
    let (status, _) = w.ex.raw(&w.node, "POST", &path, serde_json::to_vec(&forged).unwrap()).await;
    assert_eq!(status, 403);
    assert_eq!(w.ex.client().workload(&id).await.unwrap().state, WorkloadState::Active);

    let rec = w.alice.client.delete_workload(&id, w.alice.id).await.unwrap();
    assert_eq!(rec.state, WorkloadState::Deleted);
    let deletion = rec.deletion.unwrap();
    assert_eq!(deletion.by, Some(w.alice.id));
    assert!(deletion.request.unwrap().verify(&w.alice.key.public()).is_ok());
    w.ex.stop().await;
}

/// Property: the explorer refuses every single-field change of a signed workload of every kind.
async fn the_explorer_refuses_workloads_changed_after_signing(backend: Backend) {
    let w = World::new(backend).await;
    let mut runner = TestRunner::new(PropConfig { cases: 6, ..PropConfig::default() });
    let strategy = workload_spec(w.alice.id, w.alice.key.public(), w.node.public(), zgrid_types::unix_now() + 60);
    let mut cases = Vec::new();
    for _ in 0..6 {
        cases.push(strategy.new_tree(&mut runner).unwrap().current());
    }
    for spec in cases {
        let signed = Signed::sign(spec, &w.alice.key);
        // The original gets past the signature check (it may still fail ledger checks, such as
        // a network that was never deployed).
        let (status, body) =
            w.ex.raw(&w.alice.key, "POST", "/v1/workloads", serde_json::to_vec(&signed).unwrap()).await;
        assert!(status == 201 || body["field"] != "signature", "original refused: {body}");
        let doc = serde_json::to_value(&signed).unwrap();
        for (path, mutated) in mutations(&doc) {
            if serde_json::from_value::<Signed<zgrid_types::WorkloadSpec>>(mutated.clone()).is_ok_and(|m| m == signed) {
                continue; // removed a field that held its default: the same workload
            }
            let (status, body) =
                w.ex.raw(&w.alice.key, "POST", "/v1/workloads", serde_json::to_vec(&mutated).unwrap()).await;
            assert!((400..500).contains(&status), "changing {path} was accepted: {status} {body}");
            if status == 422 && path.starts_with("payload.") && !path.starts_with("payload.owner") {
                // Every other change of the payload is caught by the owner's signature.
                assert_eq!(body["field"], "signature", "changing {path}: {body}");
            }
        }
    }
    let stored = w.ex.client().workloads(&WorkloadFilter::default()).await.unwrap();
    assert!(stored.items.iter().all(|r| r.workload.verify(&w.alice.key.public()).is_ok()));
    w.ex.stop().await;
}

crate::on_both_backends!(
    a_captured_create_or_delete_cannot_be_replayed,
    requests_outside_the_time_window_are_refused,
    only_the_owner_can_delete,
    the_explorer_refuses_workloads_changed_after_signing,
    a_refused_request_cannot_be_carried_out_later,
);

/// A signed request that was refused is spent as well: it cannot be carried out later, when
/// what refused it has changed.
async fn a_refused_request_cannot_be_carried_out_later(backend: Backend) {
    let w = World::new(backend).await;
    // Refused before the ledger is consulted: the node is not registered yet.
    let stranger = key();
    let early = w.signed(&w.alice, &stranger.public(), volume());
    let body = serde_json::to_vec(&early).unwrap();
    let header = auth(&w.alice.key, "POST", "/v1/workloads", &body, zgrid_types::unix_now());
    let (status, err) = w.ex.send_with_auth(&header, "POST", "/v1/workloads", body.clone()).await;
    assert_eq!(status, 422, "{err}");
    let total = Capacity { cru: 8, mru: 16384, sru: 512_000, hru: 0 };
    register_invited(&w.ex, &w.alice.key, w.farm, &stranger, ["BE", "Ghent"], total).await;
    let (status, err) = w.ex.send_with_auth(&header, "POST", "/v1/workloads", body).await;
    assert_eq!(status, 401, "{err}");
    assert!(err["error"].as_str().unwrap().contains("already used"), "{err}");

    // Refused inside the write: the workload exists. Deleted, it would be free again.
    let node = w.node.public();
    let first = w.signed(&w.alice, &node, volume());
    w.alice.client.create_workload(&first).await.unwrap();
    let body = serde_json::to_vec(&first).unwrap();
    let header = auth(&w.alice.key, "POST", "/v1/workloads", &body, zgrid_types::unix_now());
    let (status, err) = w.ex.send_with_auth(&header, "POST", "/v1/workloads", body.clone()).await;
    assert_eq!(status, 409, "{err}");
    let (status, err) = w.ex.send_with_auth(&header, "POST", "/v1/workloads", body).await;
    assert_eq!(status, 401, "{err}");
    assert!(w.ex.client().workload(&early.payload.id).await.unwrap_err().status() == Some(404));
    w.ex.stop().await;
}
