//! The cockpit's pages over both databases: totals, sorting, a node's history, a user's results
//! and their history, no sealed value on any page, and the change count that keeps pages live.
//! (The browser test in crates/cli/tests/cli/cockpit.rs drives them in Chromium on a devnet.)

use zgrid_types::directory::{Capacity, NodeHeartbeat};
use zgrid_types::result::{ResultState, WorkloadResult};
use zgrid_types::{Keypair, Signed, WorkloadId};

use crate::common::*;

/// The status, the body and the Content-Security-Policy of `GET path`.
async fn get(ex: &TestExplorer, path: &str) -> (u16, String, String) {
    let response = reqwest::get(format!("{}{path}", ex.url)).await.unwrap();
    let policy = response.headers().get("content-security-policy").map(|v| v.to_str().unwrap().to_owned());
    (response.status().as_u16(), response.text().await.unwrap(), policy.unwrap_or_default())
}

async fn report(ex: &TestExplorer, node: &Keypair, id: &WorkloadId, state: ResultState, message: &str) {
    let result = WorkloadResult {
        workload_id: id.clone(),
        version: 1,
        node_id: node.public(),
        state,
        message: message.into(),
        data: serde_json::json!({}),
        timestamp: zgrid_types::unix_now(),
    };
    ex.signed(node).post_result(&Signed::sign(result, node)).await.unwrap();
}

async fn pages_show_the_grid_its_nodes_and_a_users_results(backend: Backend) {
    let w = World::new(backend).await;
    let used = Capacity { cru: 3, mru: 12_288, sru: 0, hru: 0 };
    w.ex.signed(&w.node)
        .heartbeat(&NodeHeartbeat { used, hypervisor: Some("kvm".into()), ..Default::default() })
        .await
        .unwrap();
    w.ex.signed(&w.node2).heartbeat(&NodeHeartbeat::default()).await.unwrap();
    let volume = w.signed(&w.alice, &w.node.public(), volume());
    w.alice.client.create_workload(&volume).await.unwrap();
    let net = w.signed(&w.alice, &w.node2.public(), network_resource("office", "10.20.1.0/24"));
    w.alice.client.create_workload(&net).await.unwrap();
    let id = volume.payload.id.clone();
    report(&w.ex, &w.node, &id, ResultState::Provisioning, "making the file system").await;
    report(&w.ex, &w.node, &id, ResultState::Error, "not enough disk: <100> MiB asked").await;

    // The grid at a glance: sums over alive nodes, workloads by kind.
    let (status, home, policy) = get(&w.ex, "/").await;
    assert_eq!(status, 200);
    assert!(policy.contains("script-src 'self'") && policy.contains("frame-ancestors 'none'"), "{policy}");
    assert!(home.contains("13 of 16") && home.contains("20.0 GiB of 32.0 GiB"), "free CPUs and memory: {home}");
    assert!(home.contains("volume") && home.contains("network_resource"));
    // Sorted by free memory, the busier node comes last.
    let (_, sorted, _) = get(&w.ex, "/?sort=free_mru").await;
    let (first, second) = (w.node2.public().to_string(), w.node.public().to_string());
    let at = |html: &str, id: &str| html.find(&format!("data-node=\"{id}\"")).unwrap();
    assert!(at(&sorted, &first) < at(&sorted, &second), "not sorted by free memory");
    let (_, belgium, _) = get(&w.ex, "/?country=be").await;
    assert!(belgium.contains(&second) && !belgium.contains(&format!("data-node=\"{first}\"")));
    let (status, bad, _) = get(&w.ex, "/?free_mru=-1").await;
    assert!(status == 400 && bad.contains("free_mru must be a whole number"), "{status} {bad}");

    // A node: its capacity, its use over time (one heartbeat), its workloads.
    let (status, node, _) = get(&w.ex, &format!("/nodes/{second}")).await;
    assert_eq!(status, 200);
    assert!(node.contains(r#"data-used="12288""#) && node.contains(r#"data-free="4096""#), "{node}");
    assert!(node.contains("1 five-minute samples") && node.contains("kvm") && node.contains(id.as_str()));
    assert_eq!(get(&w.ex, "/nodes/nonsense").await.0, 404);
    assert_eq!(get(&w.ex, &format!("/nodes/{}", key().public())).await.0, 404);

    // A user: the latest result with its reason, and the history before it; never a sealed value.
    let (status, user, _) = get(&w.ex, &format!("/users/{}", w.alice.id)).await;
    assert_eq!(status, 200);
    assert!(user.contains("not enough disk: &lt;100&gt; MiB asked"), "the reason, escaped: {user}");
    assert!(user.contains("history (2)") && user.contains("making the file system"));
    let zgrid_types::WorkloadData::NetworkResource(resource) = &net.payload.data else { unreachable!() };
    assert!(!user.contains(&resource.wireguard_private_key_encrypted), "a sealed key is on the page");
    assert!(user.contains("Network <strong>office</strong>"), "no network graph");
    let by_name = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let found = by_name.get(format!("{}/users?name=alice", w.ex.url)).send().await.unwrap();
    assert_eq!(found.headers()["location"], format!("/users/{}", w.alice.id).as_str());
    assert_eq!(get(&w.ex, &format!("/users/{}", w.bob.key.public())).await.0, 200);
    assert_eq!(get(&w.ex, "/users/nobody").await.0, 404);
    let (status, bad, _) = get(&w.ex, &format!("/users/{}?state=running", w.alice.id)).await;
    assert!(status == 400 && bad.contains("state must be active, deleted or expired"), "{status} {bad}");
    w.ex.stop().await;
}

async fn open_pages_hear_of_every_accepted_change(backend: Backend) {
    let w = World::new(backend).await;
    let count = |ex: &TestExplorer| {
        let url = format!("{}/cockpit/changes", ex.url);
        async move { reqwest::get(url).await.unwrap().text().await.unwrap().parse::<u64>().unwrap() }
    };
    let before = count(&w.ex).await;
    // A new workload is a change; so is a result.
    let volume = w.signed(&w.alice, &w.node.public(), volume());
    w.alice.client.create_workload(&volume).await.unwrap();
    let created = count(&w.ex).await;
    assert!(created > before, "{before} -> {created}");
    report(&w.ex, &w.node, &volume.payload.id, ResultState::Ok, "").await;
    let reported = count(&w.ex).await;
    assert!(reported > created, "{created} -> {reported}");
    // A read is not; nor is a refused request.
    get(&w.ex, "/").await;
    w.alice.client.workload(&volume.payload.id).await.unwrap();
    assert!(w.bob.client.create_workload(&volume).await.is_err());
    assert_eq!(count(&w.ex).await, reported);
    w.ex.stop().await;
}

crate::on_both_backends!(pages_show_the_grid_its_nodes_and_a_users_results, open_pages_hear_of_every_accepted_change);
