//! Creating, updating and reporting on workloads, and the checks against the rest of the ledger.

use zgrid_types::api::{WorkloadFilter, WorkloadState};
use zgrid_types::workload::VolumeMount;
use zgrid_types::{ResultState, Signed, WorkloadData, WorkloadResult};

use crate::common::*;

async fn a_signed_workload_is_stored_intact(backend: Backend) {
    let w = World::new(backend).await;
    let signed = w.signed(&w.alice, &w.node.public(), volume());
    let rec = w.alice.client.create_workload(&signed).await.unwrap();
    assert_eq!(rec.workload, signed);
    assert_eq!(rec.state, WorkloadState::Active);
    let back = w.ex.client().workload(&signed.payload.id).await.unwrap();
    assert_eq!(back.workload, signed);
    assert!(back.workload.verify(&w.alice.key.public()).is_ok());
    let dup = w.alice.client.create_workload(&signed).await.unwrap_err();
    assert_eq!(dup.status(), Some(409), "{dup}");
    w.ex.stop().await;
}

async fn containers_need_their_network_on_the_node_and_a_valid_address(backend: Backend) {
    let w = World::new(backend).await;
    let node = w.node.public();
    let err =
        w.alice.client.create_workload(&w.signed(&w.alice, &node, container("net", "10.20.1.5"))).await.unwrap_err();
    assert_eq!(err.status(), Some(422));
    assert!(err.to_string().contains("network_connection[0].network_id"), "{err}");

    w.alice.client.create_workload(&w.signed(&w.alice, &node, network_resource("net", "10.20.1.0/24"))).await.unwrap();
    for (ip, why) in [
        ("10.20.2.5", "outside"),
        ("10.20.1.1", "gateway"),
        ("10.20.1.255", "broadcast"),
        ("10.20.1.0", "network address"),
    ] {
        let err = w.alice.client.create_workload(&w.signed(&w.alice, &node, container("net", ip))).await.unwrap_err();
        assert_eq!(err.status(), Some(422), "{ip}: {err}");
        let text = err.to_string();
        assert!(text.contains("network_connection[0].ipaddress") && text.contains(why), "{ip}: {text}");
    }
    w.alice.client.create_workload(&w.signed(&w.alice, &node, container("net", "10.20.1.5"))).await.unwrap();
    let taken =
        w.alice.client.create_workload(&w.signed(&w.alice, &node, container("net", "10.20.1.5"))).await.unwrap_err();
    assert_eq!(taken.status(), Some(409), "{taken}");
    // Bob's network of the same name is his own: alice's resource does not serve him.
    let bobs = w.bob.client.create_workload(&w.signed(&w.bob, &node, container("net", "10.20.1.6"))).await.unwrap_err();
    assert_eq!(bobs.status(), Some(422), "{bobs}");
    w.ex.stop().await;
}

async fn a_network_has_one_resource_per_node_and_distinct_subnets(backend: Backend) {
    let w = World::new(backend).await;
    let c = &w.alice.client;
    c.create_workload(&w.signed(&w.alice, &w.node.public(), network_resource("net", "10.20.1.0/24"))).await.unwrap();
    let second = c
        .create_workload(&w.signed(&w.alice, &w.node.public(), network_resource("net", "10.20.2.0/24")))
        .await
        .unwrap_err();
    assert_eq!(second.status(), Some(409), "{second}");
    let clash = c
        .create_workload(&w.signed(&w.alice, &w.node2.public(), network_resource("net", "10.20.1.0/24")))
        .await
        .unwrap_err();
    assert_eq!(clash.status(), Some(409), "{clash}");
    assert!(clash.to_string().contains("payload.data.iprange"), "{clash}");
    c.create_workload(&w.signed(&w.alice, &w.node2.public(), network_resource("net", "10.20.2.0/24"))).await.unwrap();
    w.ex.stop().await;
}

async fn containers_mount_only_their_owners_volumes_on_the_same_node(backend: Backend) {
    let w = World::new(backend).await;
    let node = w.node.public();
    let alices = w.signed(&w.alice, &node, volume());
    w.alice.client.create_workload(&alices).await.unwrap();
    w.bob.client.create_workload(&w.signed(&w.bob, &node, network_resource("net", "10.20.1.0/24"))).await.unwrap();
    let mut data = container("net", "10.20.1.5");
    if let WorkloadData::Container(c) = &mut data {
        c.volumes.push(VolumeMount { volume_id: alices.payload.id.clone(), mountpoint: "/data".into() });
    }
    let err = w.bob.client.create_workload(&w.signed(&w.bob, &node, data)).await.unwrap_err();
    assert_eq!(err.status(), Some(403), "{err}");
    assert!(err.to_string().contains("volumes[0].volume_id"), "{err}");
    w.ex.stop().await;
}

/// A Kubernetes VM goes through a container's ledger checks: its network must have a resource on the
/// node, and its address must be free.
async fn kubernetes_vms_need_their_network_on_the_node_and_a_free_address(backend: Backend) {
    let w = World::new(backend).await;
    let node = w.node.public();
    let create = async |data: WorkloadData| w.alice.client.create_workload(&w.signed(&w.alice, &node, data)).await;
    // The owner's network exists, but on another node only.
    let elsewhere = w.signed(&w.alice, &w.node2.public(), network_resource("kube", "10.20.2.0/24"));
    w.alice.client.create_workload(&elsewhere).await.unwrap();
    let err = create(kubernetes("kube", "10.20.2.5")).await.unwrap_err();
    assert_eq!(err.status(), Some(422), "{err}");
    let zgrid_client::ClientError::Api { field: Some(field), .. } = &err else { panic!("{err}") };
    assert_eq!(field, "payload.data.network_id", "{err}");
    assert!(err.to_string().contains("has no resource on node"), "{err}");

    create(network_resource("kube", "10.20.1.0/24")).await.unwrap();
    create(kubernetes("kube", "10.20.1.2")).await.unwrap();
    let taken = create(kubernetes("kube", "10.20.1.2")).await.unwrap_err();
    assert_eq!(taken.status(), Some(409), "{taken}");
    w.ex.stop().await;
}

/// A VM goes through a container's ledger checks: its network must have a resource on the node,
/// its address must be free (among containers and VMs alike), and it mounts only its owner's
/// volumes.
async fn vms_need_their_network_a_free_address_and_their_owners_volumes(backend: Backend) {
    let w = World::new(backend).await;
    let node = w.node.public();
    let create = async |owner: &str, data: WorkloadData| {
        let party = if owner == "alice" { &w.alice } else { &w.bob };
        party.client.create_workload(&w.signed(party, &node, data)).await
    };
    let err = create("alice", vm("net", "10.20.1.5", vec![])).await.unwrap_err();
    assert_eq!(err.status(), Some(422), "{err}");
    let zgrid_client::ClientError::Api { field: Some(field), .. } = &err else { panic!("{err}") };
    assert_eq!(field, "payload.data.network_id", "{err}");
    // A resource of that network on another node does not serve this one.
    let other_node = w.signed(&w.alice, &w.node2.public(), network_resource("net", "10.20.2.0/24"));
    w.alice.client.create_workload(&other_node).await.unwrap();
    assert_eq!(create("alice", vm("net", "10.20.2.5", vec![])).await.unwrap_err().status(), Some(422));

    create("alice", network_resource("net", "10.20.1.0/24")).await.unwrap();
    let outside = create("alice", vm("net", "10.20.2.5", vec![])).await.unwrap_err();
    assert_eq!(outside.status(), Some(422), "{outside}");
    assert!(outside.to_string().contains("payload.data.ipaddress"), "{outside}");

    let alices = w.signed(&w.alice, &node, volume());
    w.alice.client.create_workload(&alices).await.unwrap();
    let data =
        vm("net", "10.20.1.5", vec![VolumeMount { volume_id: alices.payload.id.clone(), mountpoint: "/data".into() }]);
    let accepted = create("alice", data.clone()).await.unwrap();
    assert_eq!(accepted.workload.payload.data, data);
    assert_eq!(accepted.state, WorkloadState::Active);
    let desired = w.ex.client().desired_set(&node).await.unwrap();
    assert!(desired.workloads.iter().any(|r| r.workload == accepted.workload), "the node is not asked to run the VM");

    for taken in [vm("net", "10.20.1.5", vec![]), container("net", "10.20.1.5")] {
        let err = create("alice", taken).await.unwrap_err();
        assert_eq!(err.status(), Some(409), "{err}");
        assert!(err.to_string().contains("10.20.1.5 is already used by workload"), "{err}");
    }
    let vm_at_a_containers_address = {
        create("alice", container("net", "10.20.1.6")).await.unwrap();
        create("alice", vm("net", "10.20.1.6", vec![])).await.unwrap_err()
    };
    assert_eq!(vm_at_a_containers_address.status(), Some(409), "{vm_at_a_containers_address}");

    create("bob", network_resource("net", "10.20.1.0/24")).await.unwrap();
    let mount = |id: &zgrid_types::WorkloadId| vec![VolumeMount { volume_id: id.clone(), mountpoint: "/data".into() }];
    let err = create("bob", vm("net", "10.20.1.7", mount(&alices.payload.id))).await.unwrap_err();
    assert_eq!(err.status(), Some(403), "{err}");
    assert!(err.to_string().contains("payload.data.volumes[0].volume_id"), "{err}");
    let not_a_volume = create("bob", vm("net", "10.20.1.7", mount(&accepted.workload.payload.id))).await.unwrap_err();
    assert_eq!(not_a_volume.status(), Some(403), "another owner's VM is no volume of bob's: {not_a_volume}");
    w.ex.stop().await;
}

async fn updates_need_a_higher_version_from_the_owner(backend: Backend) {
    let w = World::new(backend).await;
    let v1 = w.signed(&w.alice, &w.node.public(), volume());
    w.alice.client.create_workload(&v1).await.unwrap();
    let mut spec = v1.payload.clone();
    spec.version = 2;
    spec.description = "bigger".into();
    if let WorkloadData::Volume(v) = &mut spec.data {
        v.size = 200;
    }
    let v2 = Signed::sign(spec.clone(), &w.alice.key);
    let rec = w.alice.client.update_workload(&v2).await.unwrap();
    assert_eq!(rec.workload.payload.version, 2);
    let stale = w.alice.client.update_workload(&v1).await.unwrap_err();
    assert_eq!(stale.status(), Some(409), "{stale}");
    let mut moved = spec.clone();
    moved.version = 3;
    moved.node_id = w.node2.public();
    let err = w.alice.client.update_workload(&Signed::sign(moved, &w.alice.key)).await.unwrap_err();
    assert_eq!(err.status(), Some(422), "{err}");
    // Bob cannot update alice's workload, even re-signed by himself.
    let mut bobs = spec;
    bobs.version = 4;
    bobs.owner = w.bob.id;
    bobs.owner_key = w.bob.key.public();
    let err = w.bob.client.update_workload(&Signed::sign(bobs, &w.bob.key)).await.unwrap_err();
    assert_eq!(err.status(), Some(403), "{err}");
    assert_eq!(w.ex.client().workload(&v1.payload.id).await.unwrap().workload, v2);
    // The ledger keeps every version accepted, and only those.
    let kept: Vec<(i64, String)> =
        sqlx::query_as("SELECT version, signed FROM workload_versions WHERE id = $1 ORDER BY version")
            .bind(v1.payload.id.as_str())
            .fetch_all(w.ex.state.db.pool())
            .await
            .unwrap();
    let kept: Vec<(i64, Signed<zgrid_types::WorkloadSpec>)> =
        kept.into_iter().map(|(v, signed)| (v, serde_json::from_str(&signed).unwrap())).collect();
    assert_eq!(kept, vec![(1, v1), (2, v2)]);
    w.ex.stop().await;
}

async fn results_are_accepted_only_from_the_workloads_node(backend: Backend) {
    let w = World::new(backend).await;
    let signed = w.signed(&w.alice, &w.node.public(), volume());
    w.alice.client.create_workload(&signed).await.unwrap();
    let result = WorkloadResult {
        workload_id: signed.payload.id.clone(),
        version: 1,
        node_id: w.node.public(),
        state: ResultState::Ok,
        message: String::new(),
        data: serde_json::json!({"volume_id": signed.payload.id}),
        timestamp: zgrid_types::unix_now(),
    };
    // Another node cannot report, whether it signs as itself or claims to be the right node.
    let from_other = w.ex.signed(&w.node2).post_result(&Signed::sign(result.clone(), &w.node2)).await.unwrap_err();
    assert_eq!(from_other.status(), Some(403));
    let mut forged = Signed::sign(result.clone(), &w.node2);
    forged.payload.node_id = w.node.public();
    let err = w.ex.signed(&w.node).post_result(&forged).await.unwrap_err();
    assert_eq!(err.status(), Some(403), "{err}");
    let genuine = Signed::sign(result, &w.node);
    w.ex.signed(&w.node).post_result(&genuine).await.unwrap();
    let rec = w.ex.client().workload(&signed.payload.id).await.unwrap();
    assert_eq!(rec.result, Some(genuine));
    let live =
        w.ex.client().workloads(&WorkloadFilter { owner: Some(w.alice.id), ..Default::default() }).await.unwrap();
    assert_eq!(live.items[0].result.as_ref().unwrap().payload.state, ResultState::Ok);
    w.ex.stop().await;
}

crate::on_both_backends!(
    a_signed_workload_is_stored_intact,
    containers_need_their_network_on_the_node_and_a_valid_address,
    a_network_has_one_resource_per_node_and_distinct_subnets,
    containers_mount_only_their_owners_volumes_on_the_same_node,
    vms_need_their_network_a_free_address_and_their_owners_volumes,
    kubernetes_vms_need_their_network_on_the_node_and_a_free_address,
    updates_need_a_higher_version_from_the_owner,
    results_are_accepted_only_from_the_workloads_node,
    concurrent_writes_are_kept_apart,
    creates_kept_back_in_a_batch_are_seen_kept_apart_and_refused_when_taken,
    a_node_reports_many_results_at_once,
);

/// Many writes at once share commits; one that fails (here, the same workload sent nine extra
/// times) is refused alone and every other one is kept, each with its own feed position.
async fn concurrent_writes_are_kept_apart(backend: Backend) {
    let w = World::new(backend).await;
    let node = w.node.public();
    let volumes: Vec<_> = (0..50).map(|_| w.signed(&w.alice, &node, volume())).collect();
    let contested = w.signed(&w.alice, &node, volume());
    let sends = volumes.iter().chain(std::iter::repeat_n(&contested, 10)).map(|s| w.alice.client.create_workload(s));
    let outcomes = futures::future::join_all(sends).await;
    let (kept, refused): (Vec<_>, Vec<_>) = outcomes.into_iter().partition(Result::is_ok);
    assert_eq!(kept.len(), 51, "{refused:?}");
    assert!(refused.iter().all(|r| r.as_ref().unwrap_err().status() == Some(409)), "{refused:?}");
    let set = w.ex.signed(&w.node).desired_set(&node).await.unwrap();
    assert_eq!(set.workloads.len(), 51);
    let positions: Vec<i64> = sqlx::query_scalar("SELECT feed_seq FROM workloads ORDER BY feed_seq")
        .fetch_all(w.ex.state.db.pool())
        .await
        .unwrap();
    let mut distinct = positions.clone();
    distinct.dedup();
    assert_eq!(distinct, positions, "two writes took one feed position");
    assert_eq!(positions.len(), 51);
    w.ex.stop().await;
}

/// Why a write in [`creates_kept_back_in_a_batch_are_seen_kept_apart_and_refused_when_taken`]
/// was refused.
#[derive(Debug)]
enum Refusal {
    Db(#[expect(dead_code, reason = "shown by Debug")] zgrid_explorer::db::DbError),
    Replayed,
    Taken(zgrid_explorer::db::Taken),
    /// The write gave up on purpose, after its insert.
    GaveUp,
}

impl From<zgrid_explorer::db::DbError> for Refusal {
    fn from(e: zgrid_explorer::db::DbError) -> Self {
        Self::Db(e)
    }
}

impl From<zgrid_explorer::db::Replayed> for Refusal {
    fn from(_: zgrid_explorer::db::Replayed) -> Self {
        Self::Replayed
    }
}

impl From<zgrid_explorer::db::Taken> for Refusal {
    fn from(taken: zgrid_explorer::db::Taken) -> Self {
        Self::Taken(taken)
    }
}

/// Creates in one batch wait to be inserted together; each is still refused alone when its id
/// is taken (stored before, or earlier in the batch), a later write in the batch sees them
/// (and its failure does not undo them), and one that fails after its insert leaves nothing. The writer is held in a first batch
/// while the writes queue in order, so they are all in the next one.
async fn creates_kept_back_in_a_batch_are_seen_kept_apart_and_refused_when_taken(backend: Backend) {
    use futures::future::BoxFuture;
    use zgrid_explorer::db::{Db, Tx, workloads};
    use zgrid_types::WorkloadSpec;

    let w = World::new(backend).await;
    let db = w.ex.state.db.clone();
    let node = w.node.public();
    let [a, c, d, e, f] = std::array::from_fn(|_| w.signed(&w.alice, &node, volume()));
    w.alice.client.create_workload(&c).await.unwrap();

    let (running, gate) = (tokio::sync::oneshot::channel::<()>(), tokio::sync::oneshot::channel::<()>());
    let (running_tx, running_rx) = running;
    let (open, closed) = gate;
    let first = tokio::spawn({
        let db = db.clone();
        async move {
            db.transact(None, move |_| {
                Box::pin(async move {
                    running_tx.send(()).unwrap();
                    closed.await.unwrap();
                    Ok::<_, Refusal>(())
                })
            })
            .await
        }
    });
    running_rx.await.unwrap();

    // Queue a write without waiting for it: poll it once (it is in the writer's queue then),
    // and leave the rest to a task.
    type Write = Box<dyn for<'c> FnOnce(&'c mut Tx) -> BoxFuture<'c, Result<bool, Refusal>> + Send>;
    async fn queue(db: &Db, single: bool, write: Write) -> tokio::task::JoinHandle<Result<bool, Refusal>> {
        let db = db.clone();
        let mut outcome = Box::pin(async move {
            if single { db.transact_single(None, write).await } else { db.transact(None, write).await }
        });
        assert!(futures::poll!(&mut outcome).is_pending(), "the writer is held");
        tokio::spawn(outcome)
    }
    fn create(signed: &Signed<WorkloadSpec>, then: Result<bool, Refusal>) -> Write {
        let signed = signed.clone();
        Box::new(move |tx| {
            Box::pin(async move {
                let taken =
                    zgrid_explorer::db::Taken { field: "payload.id", message: format!("{} taken", signed.payload.id) };
                workloads::insert(tx, &signed, zgrid_types::unix_now(), taken);
                then
            })
        })
    }
    // Reads the create before it, then fails: its savepoint's undo must not undo that create.
    let read_a: Write = {
        let id = a.payload.id.clone();
        Box::new(move |tx| {
            Box::pin(async move {
                let seen = workloads::get_for_update(tx, &id).await?.is_some();
                if seen { Err(Refusal::GaveUp) } else { Ok(false) }
            })
        })
    };
    let writes = vec![
        queue(&db, true, create(&a, Ok(true))).await,
        queue(&db, true, create(&a, Ok(true))).await,
        queue(&db, true, create(&c, Ok(true))).await,
        queue(&db, false, read_a).await,
        queue(&db, false, create(&d, Err(Refusal::GaveUp))).await,
        queue(&db, true, create(&e, Err(Refusal::GaveUp))).await,
        queue(&db, true, create(&f, Ok(true))).await,
    ];
    open.send(()).unwrap();
    first.await.unwrap().unwrap();
    let mut outcomes = Vec::new();
    for write in writes {
        outcomes.push(write.await.unwrap());
    }

    assert!(matches!(outcomes[0], Ok(true)), "{outcomes:?}");
    for (i, id) in [(1, &a.payload.id), (2, &c.payload.id)] {
        match &outcomes[i] {
            Err(Refusal::Taken(taken)) => assert_eq!(taken.message, format!("{id} taken"), "{outcomes:?}"),
            other => panic!("write {i}: expected its id to be taken, got {other:?}"),
        }
    }
    assert!(matches!(outcomes[3], Err(Refusal::GaveUp)), "the read did not see the create before it: {outcomes:?}");
    assert!(matches!(outcomes[4], Err(Refusal::GaveUp)) && matches!(outcomes[5], Err(Refusal::GaveUp)), "{outcomes:?}");
    assert!(matches!(outcomes[6], Ok(true)), "{outcomes:?}");

    let stored: Vec<(String, i64)> =
        sqlx::query_as("SELECT id, feed_seq FROM workloads ORDER BY feed_seq").fetch_all(db.pool()).await.unwrap();
    let ids: Vec<&str> = stored.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, [c.payload.id.as_str(), a.payload.id.as_str(), f.payload.id.as_str()], "stored, in feed order");
    let versions: Vec<String> = sqlx::query_scalar("SELECT id FROM workload_versions ORDER BY accepted_at, id")
        .fetch_all(db.pool())
        .await
        .unwrap();
    let mut expected = vec![a.payload.id.to_string(), c.payload.id.to_string(), f.payload.id.to_string()];
    expected.sort();
    let mut versions_sorted = versions.clone();
    versions_sorted.sort();
    assert_eq!(versions_sorted, expected, "one version kept for each stored workload");
    w.ex.stop().await;
}

/// A node sends every result it has in one request: each is kept or refused on its own.
async fn a_node_reports_many_results_at_once(backend: Backend) {
    let w = World::new(backend).await;
    let mine: Vec<_> = (0..3).map(|_| w.signed(&w.alice, &w.node.public(), volume())).collect();
    let theirs = w.signed(&w.alice, &w.node2.public(), volume());
    for s in mine.iter().chain([&theirs]) {
        w.alice.client.create_workload(s).await.unwrap();
    }
    let result = |id: &zgrid_types::WorkloadId| WorkloadResult {
        workload_id: id.clone(),
        version: 1,
        node_id: w.node.public(),
        state: ResultState::Ok,
        message: String::new(),
        data: serde_json::json!({"volume_id": id}),
        timestamp: zgrid_types::unix_now(),
    };
    let node = w.ex.signed(&w.node);
    // One forged result refuses the whole request, and nothing of it is kept.
    let mut batch: Vec<_> = mine.iter().map(|s| Signed::sign(result(&s.payload.id), &w.node)).collect();
    let mut forged = Signed::sign(result(&mine[0].payload.id), &w.node2);
    forged.payload.node_id = w.node.public();
    let err = node.post_results(&[batch.clone(), vec![forged]].concat()).await.unwrap_err();
    assert_eq!(err.status(), Some(403), "{err}");
    assert_eq!(w.ex.client().workload(&mine[0].payload.id).await.unwrap().result, None);

    let unknown = zgrid_client::new_workload_id();
    batch.push(Signed::sign(result(&theirs.payload.id), &w.node));
    batch.push(Signed::sign(result(&unknown), &w.node));
    let receipt = node.post_results(&batch).await.unwrap();
    assert_eq!(receipt.accepted, 3, "{receipt:?}");
    let refused: Vec<_> = receipt.refused.iter().map(|r| r.workload_id.clone()).collect();
    assert_eq!(refused, vec![theirs.payload.id.clone(), unknown], "{receipt:?}");
    assert!(receipt.refused[0].error.contains("only node"), "{receipt:?}");
    for (s, r) in mine.iter().zip(&batch) {
        assert_eq!(w.ex.client().workload(&s.payload.id).await.unwrap().result.as_ref(), Some(r));
    }
    assert_eq!(w.ex.client().workload(&theirs.payload.id).await.unwrap().result, None);
    // Only the node itself sends its results.
    let err = w.ex.signed(&w.node2).post_results(&batch).await.unwrap_err();
    assert_eq!(err.status(), Some(403), "{err}");
    w.ex.stop().await;
}
