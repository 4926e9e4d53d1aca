//! Bad input: malformed JSON, unknown fields, oversized bodies and invalid values get a 4xx whose
//! message names the field, and change nothing.

use zgrid_types::api::{WorkloadFilter, WorkloadState};
use zgrid_types::workload::{Container, MAX_ENV_ENTRY, Vm};
use zgrid_types::{DeleteRequest, Signed, WorkloadData};

use crate::common::*;

async fn bad_input_is_refused_with_the_field_named_and_changes_nothing(backend: Backend) {
    let w = World::new(backend).await;
    let node = w.node.public();
    w.alice.client.create_workload(&w.signed(&w.alice, &node, network_resource("net", "10.20.1.0/24"))).await.unwrap();
    let before = w.ex.client().workloads(&WorkloadFilter::default()).await.unwrap();

    let post = |body: Vec<u8>| w.ex.raw(&w.alice.key, "POST", "/v1/workloads", body);

    // Not JSON at all.
    let (status, err) = post(b"{\"payload\": ".to_vec()).await;
    assert_eq!(status, 400, "{err}");
    assert!(err["error"].as_str().unwrap().contains("JSON"), "{err}");

    // An unknown field, top level and nested.
    let good = serde_json::to_value(w.signed(&w.alice, &node, volume())).unwrap();
    let mut doc = good.clone();
    doc["extra"] = serde_json::json!(1);
    let (status, err) = post(serde_json::to_vec(&doc).unwrap()).await;
    assert_eq!(status, 400, "{err}");
    assert!(err["error"].as_str().unwrap().contains("extra"), "{err}");
    let mut doc = good.clone();
    doc["payload"]["data"]["colour"] = serde_json::json!("red");
    let (status, err) = post(serde_json::to_vec(&doc).unwrap()).await;
    assert_eq!(status, 400, "{err}");
    assert!(err["error"].as_str().unwrap().contains("colour"), "{err}");

    // A wrong type and an unknown enum value.
    let mut doc = good.clone();
    doc["payload"]["expires_at"] = serde_json::json!("tomorrow");
    let (status, err) = post(serde_json::to_vec(&doc).unwrap()).await;
    assert_eq!((status, err["field"].as_str()), (400, Some("payload.expires_at")), "{err}");
    let mut doc = good.clone();
    doc["payload"]["data"]["disk_type"] = serde_json::json!("NVME");
    let (status, err) = post(serde_json::to_vec(&doc).unwrap()).await;
    assert_eq!(status, 400, "{err}");
    assert!(err["error"].as_str().unwrap().contains("NVME"), "{err}");

    // Oversized body.
    let mut doc = good.clone();
    doc["payload"]["description"] = serde_json::json!("x".repeat(2 << 20));
    let (status, err) = post(serde_json::to_vec(&doc).unwrap()).await;
    assert_eq!(status, 413, "{err}");
    assert!(err["error"].as_str().unwrap().contains("larger than"), "{err}");

    // Well-formed, correctly signed, but invalid values.
    let cases: Vec<(WorkloadData, &str)> = vec![
        (zero_cpu(), "payload.data.capacity.cpu"),
        (tiny_memory(), "payload.data.capacity.memory"),
        (network_resource("net", "10.30.1.0/24"), "payload.data.iprange"),
        (network_resource("net", "10.20.1.0/23"), "payload.data.iprange"),
        (network_resource("Bad Name", "10.20.2.0/24"), "payload.data.name"),
        (container("net", "10.20.1.1"), "payload.data.network_connection[0].ipaddress"),
    ];
    for (data, field) in cases {
        let signed = w.signed(&w.alice, &node, data);
        let (status, err) = post(serde_json::to_vec(&signed).unwrap()).await;
        assert_eq!(status, 422, "{field}: {err}");
        assert_eq!(err["field"], field, "{err}");
        assert!(!err["error"].as_str().unwrap().is_empty());
    }
    let mut expired = w.spec(&w.alice, &node, volume());
    expired.expires_at = zgrid_types::unix_now() - 1;
    let (status, err) = post(serde_json::to_vec(&Signed::sign(expired, &w.alice.key)).unwrap()).await;
    assert_eq!((status, err["field"].as_str()), (422, Some("payload.expires_at")), "{err}");

    // Bad query parameters and paths.
    let resp = reqwest::get(format!("{}/v1/nodes?size=0", w.ex.url)).await.unwrap();
    assert_eq!(resp.status(), 400);
    for (query, field) in [("/v1/nodes?page=2", "page"), ("/v1/workloads?after=3", "after")] {
        let resp = reqwest::get(format!("{}{query}", w.ex.url)).await.unwrap();
        assert_eq!(resp.status(), 400, "{query}");
        assert!(resp.text().await.unwrap().contains(field), "{query}");
    }
    let resp = reqwest::get(format!("{}/v1/nodes?colour=red", w.ex.url)).await.unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("colour"));
    let resp = reqwest::get(format!("{}/v1/workloads/not-an-id", w.ex.url)).await.unwrap();
    assert_eq!(resp.status(), 400);

    let after = w.ex.client().workloads(&WorkloadFilter::default()).await.unwrap();
    assert_eq!(after, before, "refused requests changed the ledger");
    w.ex.stop().await;
}

/// A container without a network whose fields `change` alters.
fn container_with(change: impl FnOnce(&mut Container)) -> WorkloadData {
    let mut data = container("net", "10.20.1.5");
    if let WorkloadData::Container(c) = &mut data {
        c.network_connection.clear();
        change(c);
    }
    data
}

/// What every node refuses, posted through the SDK (no client-side checks): each refused with
/// the field named, and nothing reaches the node's desired set.
async fn workloads_every_node_would_refuse_are_refused_naming_the_field(backend: Backend) {
    let w = World::new(backend).await;
    let node = w.node.public();
    let ok = w.alice.client.create_workload(&w.signed(&w.alice, &node, container_with(|_| {}))).await.unwrap();
    let desired = w.ex.client().desired_set(&node).await.unwrap();
    let big = "x".repeat(MAX_ENV_ENTRY);
    let sealed = |text: &str| zgrid_types::sealed::seal_secret(&node, text);
    let env = |k: &str, v: &str| {
        let (k, v) = (k.to_owned(), v.to_owned());
        container_with(move |c| _ = c.environment.insert(k, v))
    };
    let raw_key = hex::encode(rand::random::<[u8; 32]>());
    let mut cases: Vec<(WorkloadData, String)> = vec![
        (container_with(|c| c.entrypoint = "/bin/sh -c 'echo hi".into()), "payload.data.entrypoint".into()),
        (container_with(|c| c.entrypoint = "echo \"hi".into()), "payload.data.entrypoint".into()),
        (container_with(|c| c.flist = "ftp://hub.example/busybox.flist".into()), "payload.data.flist".into()),
        (container_with(|c| c.flist = "busybox.tar".into()), "payload.data.flist".into()),
        (env("BIG", &big), "payload.data.environment.BIG".into()),
        (
            container_with(|c| {
                for i in 0..5 {
                    c.environment.insert(format!("V{i}"), "x".repeat(120 * 1024));
                }
            }),
            "payload.data.environment".into(),
        ),
        (
            container_with(|c| _ = c.secret_environment.insert("S".into(), "v1:aHVudGVyMg==".into())),
            "payload.data.secret_environment.S".into(),
        ),
        (
            container_with(|c| _ = c.secret_environment.insert("S".into(), sealed(&big))),
            "payload.data.secret_environment.S".into(),
        ),
    ];
    let vm_with = |change: fn(&mut Vm)| {
        let mut data = vm("net", "10.20.1.5", vec![]);
        if let WorkloadData::Vm(v) = &mut data {
            change(v);
        }
        data
    };
    cases.extend([
        (vm_with(|v| v.kernel_args = "quiet root=/dev/sda1".into()), "payload.data.kernel_args".into()),
        (vm_with(|v| v.capacity.memory = 128), "payload.data.capacity.memory".into()),
        (vm_with(|v| v.ssh_keys = vec!["not a key".into()]), "payload.data.ssh_keys[0]".into()),
        (vm_with(|v| v.flist = "busybox.tar".into()), "payload.data.flist".into()),
        (vm_with(|v| v.network_id = "Bad Name".into()), "payload.data.network_id".into()),
    ]);
    for name in ["MY VAR", "A=B", "A\0B"] {
        cases.push((env(name, "1"), format!("payload.data.environment.{name}")));
    }
    for sealed_key in ["00ff".to_owned(), "00".to_owned(), raw_key] {
        let mut data = network_resource("net", "10.20.1.0/24");
        if let WorkloadData::NetworkResource(nr) = &mut data {
            nr.wireguard_private_key_encrypted = sealed_key;
        }
        cases.push((data, "payload.data.wireguard_private_key_encrypted".into()));
    }
    for (data, field) in cases {
        let err = w.alice.client.create_workload(&w.signed(&w.alice, &node, data)).await.unwrap_err();
        assert_eq!(err.status(), Some(422), "{field}: {err}");
        let zgrid_client::ClientError::Api { field: Some(named), .. } = &err else { panic!("{field}: {err}") };
        assert_eq!(named, &field, "{err}");
    }
    // A reservation centuries away.
    let mut forever = w.spec(&w.alice, &node, volume());
    forever.expires_at = zgrid_types::unix_now() + 300 * 365 * 86_400;
    let err = w.alice.client.create_workload(&Signed::sign(forever, &w.alice.key)).await.unwrap_err();
    assert!(err.to_string().contains("payload.expires_at: ") && err.to_string().contains("days"), "{err}");

    // A delete request signed long ago (or post-dated) is refused like an old request.
    let id = ok.workload.payload.id.clone();
    for requested_at in [zgrid_types::unix_now() - 3600, zgrid_types::unix_now() + 3600] {
        let request = DeleteRequest { workload_id: id.clone(), owner: w.alice.id, requested_at };
        let body = serde_json::to_vec(&Signed::sign(request, &w.alice.key)).unwrap();
        let (status, err) = w.ex.raw(&w.alice.key, "POST", &format!("/v1/workloads/{id}/delete"), body).await;
        assert_eq!((status, err["field"].as_str()), (422, Some("payload.requested_at")), "{err}");
    }
    assert_eq!(w.ex.client().workload(&id).await.unwrap().state, WorkloadState::Active);
    assert_eq!(w.ex.client().desired_set(&node).await.unwrap(), desired, "a refused workload reached the node");
    w.ex.stop().await;
}

fn zero_cpu() -> WorkloadData {
    let mut data = container("net", "10.20.1.5");
    if let WorkloadData::Container(c) = &mut data {
        c.capacity.cpu = 0;
    }
    data
}

fn tiny_memory() -> WorkloadData {
    let mut data = container("net", "10.20.1.5");
    if let WorkloadData::Container(c) = &mut data {
        c.capacity.memory = 1;
    }
    data
}

/// What schemathesis found (issue: "the OpenAPI document is invalid"): numbers past what the
/// database holds, page numbers past the document's `int32`, and a user look-up without a key.
async fn numbers_past_the_database_and_lookups_without_a_key_get_a_4xx(backend: Backend) {
    let w = World::new(backend).await;
    let big = u64::MAX;
    for (query, field) in [
        (format!("/v1/nodes?free_sru={big}"), "free_sru"),
        (format!("/v1/nodes?farm={big}"), "farm"),
        (format!("/v1/workloads?owner={big}"), "owner"),
        ("/v1/farms?page=2147483648".to_string(), "page"),
    ] {
        let (status, err) = w.ex.raw(&w.alice.key, "GET", &query, vec![]).await;
        assert_eq!((status, err["field"].as_str()), (400, Some(field)), "{query}: {err}");
    }
    let beat = serde_json::json!({"used": {"cru": big, "mru": 0, "sru": 0, "hru": 0}});
    let path = format!("/v1/nodes/{}/heartbeat", w.node.public());
    let (status, err) = w.ex.raw(&w.node, "POST", &path, serde_json::to_vec(&beat).unwrap()).await;
    assert_eq!((status, err["field"].as_str()), (422, Some("used.cru")), "{err}");

    let (status, err) = w.ex.raw(&w.alice.key, "GET", "/v1/users", vec![]).await;
    assert_eq!(status, 422, "{err}");
    let both = format!("/v1/users?name=alice&public_key={}", w.alice.key.public());
    let (status, user) = w.ex.raw(&w.alice.key, "GET", &both, vec![]).await;
    assert_eq!((status, user["id"].as_u64()), (200, Some(w.alice.id)), "{user}");
    let mismatched = format!("/v1/users?name=alice&public_key={}", w.bob.key.public());
    let (status, err) = w.ex.raw(&w.alice.key, "GET", &mismatched, vec![]).await;
    assert_eq!(status, 404, "{err}");
    w.ex.stop().await;
}

crate::on_both_backends!(
    bad_input_is_refused_with_the_field_named_and_changes_nothing,
    workloads_every_node_would_refuse_are_refused_naming_the_field,
    numbers_past_the_database_and_lookups_without_a_key_get_a_4xx,
);
