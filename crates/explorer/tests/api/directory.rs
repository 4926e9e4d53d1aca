//! Users, farms and nodes: registration, look-up and search.

use zgrid_types::Signed;
use zgrid_types::api::NodeFilter;
use zgrid_types::directory::{Capacity, FarmRegistration, NodeHeartbeat, NodeRegistration};
use zgrid_types::invitation::{FarmInvitation, invite};

use crate::common::*;

async fn users_register_once_per_name_and_key(backend: Backend) {
    let w = World::new(backend).await;
    let again = w.alice.client.register_user("alice2", "").await.unwrap_err();
    assert_eq!(again.status(), Some(409), "{again}");
    assert!(again.to_string().contains("already registered as user"), "{again}");
    let taken = w.ex.signed(&key()).register_user("alice", "").await.unwrap_err();
    assert_eq!(taken.status(), Some(409));
    assert!(taken.to_string().contains("name"), "{taken}");
    assert_eq!(w.alice.client.whoami().await.unwrap().unwrap().id, w.alice.id);
    assert_eq!(w.ex.client().user(w.bob.id).await.unwrap().name, "bob");
    w.ex.stop().await;
}

async fn a_registration_must_be_signed_by_its_key(backend: Backend) {
    let ex = TestExplorer::start(backend).await;
    let (signer, other) = (key(), key());
    let body = serde_json::json!({"name": "mallory", "email": "", "public_key": other.public().to_string()});
    let (status, err) = ex.raw(&signer, "POST", "/v1/users", serde_json::to_vec(&body).unwrap()).await;
    assert_eq!(status, 403, "{err}");
    ex.stop().await;
}

async fn farms_need_a_registered_owner(backend: Backend) {
    let w = World::new(backend).await;
    let stranger =
        w.ex.signed(&key()).create_farm(&FarmRegistration { name: "x".into(), public_ips: vec![] }).await.unwrap_err();
    assert_eq!(stranger.status(), Some(403), "{stranger}");
    let dup =
        w.bob.client.create_farm(&FarmRegistration { name: "farm1".into(), public_ips: vec![] }).await.unwrap_err();
    assert_eq!(dup.status(), Some(409));
    let farms = w.ex.client().farms(1, 10).await.unwrap();
    assert_eq!(farms.total, 1);
    assert_eq!(farms.items[0].owner, w.alice.id);
    w.ex.stop().await;
}

async fn nodes_are_found_by_farm_location_capacity_and_liveness(backend: Backend) {
    let w = World::new(backend).await;
    let farm2 =
        w.bob.client.create_farm(&FarmRegistration { name: "farm2".into(), public_ips: vec![] }).await.unwrap().id;
    let small = key();
    let total = Capacity { cru: 2, mru: 2048, sru: 10_000, hru: 1_000_000 };
    register_invited(&w.ex, &w.bob.key, farm2, &small, ["BE", "Ghent"], total).await;
    let c = w.ex.client();
    let find = |f: NodeFilter| {
        let c = c.clone();
        async move { c.nodes(&f).await.unwrap() }
    };
    let count = |f: NodeFilter| {
        let c = c.clone();
        async move { c.all_nodes(&f, None).await.unwrap().len() }
    };

    assert_eq!(count(NodeFilter::default()).await, 3);
    assert_eq!(find(NodeFilter { farm: Some(farm2), ..Default::default() }).await.items[0].node_id, small.public());
    assert_eq!(count(NodeFilter { country: Some("be".into()), ..Default::default() }).await, 2);
    assert_eq!(
        find(NodeFilter { city: Some("CAIRO".into()), ..Default::default() }).await.items[0].node_id,
        w.node2.public()
    );
    assert_eq!(count(NodeFilter { free_hru: Some(1), ..Default::default() }).await, 1);
    assert_eq!(count(NodeFilter { free_cru: Some(4), ..Default::default() }).await, 2);

    // Using capacity shows up as less free capacity.
    let used = Capacity { cru: 7, mru: 0, sru: 0, hru: 0 };
    w.ex.signed(&w.node).heartbeat(&NodeHeartbeat { used, ..Default::default() }).await.unwrap();
    assert_eq!(find(NodeFilter { free_cru: Some(4), ..Default::default() }).await.items[0].node_id, w.node2.public());
    assert_eq!(c.node(&w.node.public()).await.unwrap().free().cru, 1);

    // Everyone just reported, so all are alive.
    assert_eq!(count(NodeFilter { alive: Some(true), ..Default::default() }).await, 3);
    assert_eq!(count(NodeFilter { alive: Some(false), ..Default::default() }).await, 0);

    // Pages, by key.
    let p1 = find(NodeFilter { size: Some(2), ..Default::default() }).await;
    let p2 = find(NodeFilter { size: Some(2), after: p1.next.clone(), ..Default::default() }).await;
    assert_eq!((p1.items.len(), p2.items.len(), p2.next.as_deref()), (2, 1, None));
    assert!(p1.items.iter().all(|n| n.node_id != p2.items[0].node_id));
    w.ex.stop().await;
}

async fn nodes_report_only_for_themselves(backend: Backend) {
    let w = World::new(backend).await;
    // A heartbeat signed by another key for this node is refused.
    let body = serde_json::to_vec(&NodeHeartbeat::default()).unwrap();
    let (status, _) = w.ex.raw(&w.node2, "POST", &format!("/v1/nodes/{}/heartbeat", w.node.public()), body).await;
    assert_eq!(status, 403);
    // A node cannot join a farm that does not exist.
    let err =
        w.ex.signed(&key())
            .register_node(&node_registration(999, "BE", "Ghent", Capacity::default()))
            .await
            .unwrap_err();
    assert_eq!(err.status(), Some(422));
    assert!(err.to_string().contains("farm_id"), "{err}");
    w.ex.stop().await;
}

async fn a_node_joins_or_moves_to_a_farm_only_with_its_owners_signed_consent(backend: Backend) {
    let w = World::new(backend).await;
    let farm2 =
        w.bob.client.create_farm(&FarmRegistration { name: "farm2".into(), public_ips: vec![] }).await.unwrap().id;
    let node = key();
    let total = Capacity { cru: 2, mru: 2048, sru: 10_000, hru: 0 };
    let register = |invitation: Option<Signed<FarmInvitation>>, farm: u64| {
        let reg = NodeRegistration { farm_invitation: invitation, ..node_registration(farm, "BE", "Ghent", total) };
        let client = w.ex.signed(&node);
        async move { client.register_node(&reg).await }
    };
    let refused = |result: Result<_, zgrid_client::ClientError>, why: &str| {
        let err = result.unwrap_err();
        assert_eq!(err.status(), Some(403), "{err}");
        assert!(err.to_string().contains("farm_invitation: ") && err.to_string().contains(why), "{why}: {err}");
    };
    let now = zgrid_types::unix_now();
    let alice = &w.alice.key;

    // No consent, someone else's, an expired one, one for another farm, one for another node.
    refused(register(None, w.farm).await, "zgrid farm invite --farm");
    refused(register(Some(invitation(&w.bob.key, w.farm, &node)), w.farm).await, "not signed by the owner of farm");
    refused(register(Some(invite(alice, w.farm, Some(node.public()), now - 1)), w.farm).await, "expired");
    refused(register(Some(invitation(alice, farm2, &node)), w.farm).await, &format!("is for farm {farm2}"));
    refused(register(Some(invitation(alice, w.farm, &w.node)), w.farm).await, "is for node");
    assert_eq!(w.ex.client().node(&node.public()).await.unwrap_err().status(), Some(404), "nothing registered");

    // The owner's invitation admits it; afterwards it refreshes without one (an expired one
    // it still presents is not looked at).
    register(Some(invitation(alice, w.farm, &node)), w.farm).await.unwrap();
    register(None, w.farm).await.unwrap();
    register(Some(invite(alice, w.farm, Some(node.public()), now - 1)), w.farm).await.unwrap();
    assert_eq!(w.ex.client().node(&node.public()).await.unwrap().farm_id, w.farm);

    // Moving to another farm takes that farm's consent, not the old one's.
    refused(register(None, farm2).await, "is not in farm");
    refused(register(Some(invitation(alice, farm2, &node)), farm2).await, "not signed by the owner of farm");
    register(Some(invitation(&w.bob.key, farm2, &node)), farm2).await.unwrap();
    assert_eq!(w.ex.client().node(&node.public()).await.unwrap().farm_id, farm2);

    // An invitation for no node in particular admits any node until it expires.
    let anyone = invite(alice, w.farm, None, now + 600);
    let other = key();
    let reg = NodeRegistration { farm_invitation: Some(anyone), ..node_registration(w.farm, "BE", "Ghent", total) };
    w.ex.signed(&other).register_node(&reg).await.unwrap();
    w.ex.stop().await;
}

/// The directory says which hypervisor a node's VMs use, which WireGuard its networks use and
/// which public IPv6 prefix it gives containers, as its latest heartbeat said; nodes are found
/// by whether they have one.
async fn a_nodes_entry_says_its_hypervisor_wireguard_public_ipv6_prefix_and_yggdrasil_subnet(backend: Backend) {
    let w = World::new(backend).await;
    let c = w.ex.client();
    let beat = |hypervisor: Option<&str>| NodeHeartbeat {
        used: Capacity::default(),
        hypervisor: hypervisor.map(Into::into),
        ..Default::default()
    };
    let listed = || async {
        let page = c.nodes(&NodeFilter::default()).await.unwrap();
        let node = page.items.into_iter().find(|n| n.node_id == w.node.public()).unwrap();
        (node.hypervisor, c.node(&w.node.public()).await.unwrap().hypervisor)
    };
    assert_eq!(listed().await, (None, None), "no heartbeat said it yet");

    let tcg = "tcg: no usable KVM on this node, expect it to be slow";
    w.ex.signed(&w.node).heartbeat(&beat(Some(tcg))).await.unwrap();
    assert_eq!(listed().await, (Some(tcg.to_string()), Some(tcg.to_string())));
    let raw: serde_json::Value =
        reqwest::get(format!("{}/v1/nodes/{}", w.ex.url, w.node.public())).await.unwrap().json().await.unwrap();
    assert_eq!(raw["hypervisor"], tcg);

    w.ex.signed(&w.node).heartbeat(&beat(Some("kvm"))).await.unwrap();
    assert_eq!(listed().await.0.as_deref(), Some("kvm"), "the latest heartbeat counts");
    w.ex.signed(&w.node).heartbeat(&beat(None)).await.unwrap();
    assert_eq!(listed().await, (None, None), "a node that no longer says is not listed with an old value");

    let long = "x".repeat(zgrid_types::directory::MAX_HYPERVISOR + 1);
    let err = w.ex.signed(&w.node).heartbeat(&beat(Some(&long))).await.unwrap_err();
    assert_eq!(err.status(), Some(422));
    assert!(err.to_string().contains("hypervisor"), "{err}");

    // And which WireGuard its networks use.
    let userspace = "userspace: no WireGuard kernel module (Error: Unknown device type.)";
    let with = |wireguard: &str| NodeHeartbeat { wireguard: Some(wireguard.into()), ..beat(Some("kvm")) };
    w.ex.signed(&w.node).heartbeat(&with(userspace)).await.unwrap();
    assert_eq!(c.node(&w.node.public()).await.unwrap().wireguard.as_deref(), Some(userspace));
    let raw: serde_json::Value =
        reqwest::get(format!("{}/v1/nodes/{}", w.ex.url, w.node.public())).await.unwrap().json().await.unwrap();
    assert_eq!(raw["wireguard"], userspace);
    w.ex.signed(&w.node).heartbeat(&with("kernel")).await.unwrap();
    assert_eq!(c.node(&w.node.public()).await.unwrap().wireguard.as_deref(), Some("kernel"), "the latest counts");
    let err = w.ex.signed(&w.node).heartbeat(&with(&long)).await.unwrap_err();
    assert_eq!(err.status(), Some(422));
    assert!(err.to_string().contains("wireguard"), "{err}");
    assert_eq!(
        c.node(&w.node.public()).await.unwrap().wireguard.as_deref(),
        Some("kernel"),
        "a refused one changes nothing"
    );

    // And its public IPv6 prefix, by which nodes are found.
    let prefix: ipnet::Ipv6Net = "2001:db8:7::/64".parse().unwrap();
    let public = NodeHeartbeat { public_ipv6: Some(prefix), ..beat(None) };
    w.ex.signed(&w.node).heartbeat(&public).await.unwrap();
    assert_eq!(c.node(&w.node.public()).await.unwrap().public_ipv6, Some(prefix));
    let raw: serde_json::Value =
        reqwest::get(format!("{}/v1/nodes/{}", w.ex.url, w.node.public())).await.unwrap().json().await.unwrap();
    assert_eq!(raw["public_ipv6"], "2001:db8:7::/64");
    let ids = |public_ipv6| {
        let c = &c;
        async move {
            let page = c.nodes(&NodeFilter { public_ipv6: Some(public_ipv6), ..Default::default() }).await.unwrap();
            page.items.into_iter().map(|n| n.node_id).collect::<Vec<_>>()
        }
    };
    assert_eq!(ids(true).await, [w.node.public()]);
    let without = ids(false).await;
    assert!(!without.contains(&w.node.public()) && without.contains(&w.node2.public()), "{without:?}");
    let body = serde_json::to_vec(&serde_json::json!({ "used": Capacity::default(), "public_ipv6": "2001:db8::/129" }))
        .unwrap();
    let (status, _) = w.ex.raw(&w.node, "POST", &format!("/v1/nodes/{}/heartbeat", w.node.public()), body).await;
    assert!((400..500).contains(&status), "a malformed prefix got {status}");
    assert_eq!(c.node(&w.node.public()).await.unwrap().public_ipv6, Some(prefix), "a refused one changes nothing");

    // And its Yggdrasil subnet, by which nodes are found too.
    let subnet: ipnet::Ipv6Net = "300:224b:7b9c:93fb::/64".parse().unwrap();
    w.ex.signed(&w.node2).heartbeat(&NodeHeartbeat { yggdrasil: Some(subnet), ..beat(None) }).await.unwrap();
    assert_eq!(c.node(&w.node2.public()).await.unwrap().yggdrasil, Some(subnet));
    let page = c.nodes(&NodeFilter { yggdrasil: Some(true), ..Default::default() }).await.unwrap();
    assert_eq!(page.items.into_iter().map(|n| n.node_id).collect::<Vec<_>>(), [w.node2.public()]);
    w.ex.stop().await;
}

async fn the_openapi_document_lists_every_route(backend: Backend) {
    let ex = TestExplorer::start(backend).await;
    let doc: serde_json::Value = reqwest::get(format!("{}/openapi.json", ex.url)).await.unwrap().json().await.unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for p in
        ["/v1/users", "/v1/farms", "/v1/nodes", "/v1/nodes/{id}/feed", "/v1/workloads", "/v1/workloads/{id}/delete"]
    {
        assert!(paths.contains_key(p), "missing {p} in {:?}", paths.keys().collect::<Vec<_>>());
    }
    let schemas = &doc["components"]["schemas"];
    assert!(schemas.get("WorkloadSpec").is_some());
    assert!(schemas["Vm"]["properties"].get("kernel_args").is_some(), "{}", schemas["Vm"]);
    assert!(schemas["Node"]["properties"].get("hypervisor").is_some());
    assert!(schemas["NodeHeartbeat"]["properties"].get("hypervisor").is_some());
    ex.stop().await;
}

crate::on_both_backends!(
    users_register_once_per_name_and_key,
    a_registration_must_be_signed_by_its_key,
    farms_need_a_registered_owner,
    nodes_are_found_by_farm_location_capacity_and_liveness,
    nodes_report_only_for_themselves,
    a_node_joins_or_moves_to_a_farm_only_with_its_owners_signed_consent,
    a_nodes_entry_says_its_hypervisor_wireguard_public_ipv6_prefix_and_yggdrasil_subnet,
    the_openapi_document_lists_every_route,
);
