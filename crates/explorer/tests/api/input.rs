//! Bad input: malformed JSON, unknown fields, oversized bodies and invalid values get a 4xx whose
//! message names the field, and change nothing.

use zgrid_types::api::WorkloadFilter;
use zgrid_types::{Signed, WorkloadData};

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
    let resp = reqwest::get(format!("{}/v1/nodes?colour=red", w.ex.url)).await.unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("colour"));
    let resp = reqwest::get(format!("{}/v1/workloads/not-an-id", w.ex.url)).await.unwrap();
    assert_eq!(resp.status(), 400);

    let after = w.ex.client().workloads(&WorkloadFilter::default()).await.unwrap();
    assert_eq!(after, before, "refused requests changed the ledger");
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

crate::on_both_backends!(bad_input_is_refused_with_the_field_named_and_changes_nothing);
