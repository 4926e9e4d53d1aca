//! `zgrid bench explorer`: how many signed workloads an explorer accepts per second, and how
//! fast an accepted workload reaches a connected node's feed. Runs an in-process explorer on
//! loopback with a temporary SQLite file (or the given database), and real HTTP clients.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::StreamExt;
use serde_json::json;
use zgrid_client::{ExplorerClient, Identity};
use zgrid_types::directory::FarmRegistration;
use zgrid_types::{Keypair, WorkloadId};

use super::{LocalExplorer, ms, node_registration, percentile, volume};
use crate::config::Ctx;
use crate::output;

/// Sequential creates used to measure feed latency.
const LATENCY_SAMPLES: usize = 200;

pub async fn run(ctx: &Ctx, workloads: usize, concurrency: usize, db: Option<String>) -> Result<()> {
    let explorer = LocalExplorer::start(db).await?;
    let url = explorer.url.clone();

    let user = Identity::generate("bench");
    let client = ExplorerClient::new(&url)?.with_key(user.keypair.clone());
    let owner = client.register_user(&format!("bench{}", rand::random::<u32>()), "").await?.id;
    let farm = client
        .create_farm(&FarmRegistration { name: format!("farm{}", rand::random::<u32>()), public_ips: vec![] })
        .await?;
    let node_key = Keypair::from_seed(&rand::random());
    let node = ExplorerClient::new(&url)?.with_key(node_key.clone());
    let reg = node_registration(&user.keypair, farm.id, &node_key, "bench-node".into());
    node.register_node(&reg).await?;

    // The node listens on its feed and notes when each workload arrives.
    let arrivals: Arc<Mutex<HashMap<WorkloadId, Instant>>> = Arc::default();
    let mut feed = Box::pin(node.feed(0).await?);
    let seen = arrivals.clone();
    let listener_task = tokio::spawn(async move {
        while let Some(Ok(ev)) = feed.next().await {
            seen.lock().expect("lock").insert(ev.record.workload.payload.id, Instant::now());
        }
    });

    let make = |key: &Keypair| volume(owner, key, node_key.public());

    // Throughput: many submitters at once.
    let signed: Vec<_> = (0..workloads).map(|_| make(&user.keypair)).collect();
    let started = Instant::now();
    let results: Vec<_> = futures::stream::iter(signed.iter().map(|w| client.create_workload(w)))
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let elapsed = started.elapsed();
    let failures = results.iter().filter(|r| r.is_err()).count();
    if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
        eprintln!("warning: {failures} submissions failed, first: {e}");
    }
    let rate = (workloads - failures) as f64 / elapsed.as_secs_f64();

    // Latency: one at a time, submit-to-node and acceptance-to-node.
    let mut submit_to_node = Vec::with_capacity(LATENCY_SAMPLES);
    let mut accept_to_node = Vec::with_capacity(LATENCY_SAMPLES);
    for _ in 0..LATENCY_SAMPLES {
        let w = make(&user.keypair);
        let sent = Instant::now();
        client.create_workload(&w).await?;
        let acked = Instant::now();
        let arrived = wait_for(&arrivals, &w.payload.id).await.context("a workload never reached the node's feed")?;
        submit_to_node.push(arrived - sent);
        accept_to_node.push(arrived.saturating_duration_since(acked));
    }
    listener_task.abort();
    let engine = explorer.engine;
    explorer.stop().await?;

    let report = json!({
        "database": engine,
        "workloads": workloads,
        "concurrency": concurrency,
        "failures": failures,
        "accepted_per_second": (rate * 10.0).round() / 10.0,
        "submit_to_node_ms": { "p50": ms(percentile(&mut submit_to_node, 50.0)), "p99": ms(percentile(&mut submit_to_node, 99.0)) },
        "acceptance_to_node_ms": { "p50": ms(percentile(&mut accept_to_node, 50.0)), "p99": ms(percentile(&mut accept_to_node, 99.0)) },
    });
    if ctx.json {
        output::json(&report)
    } else {
        println!("{} signed workloads, {concurrency} at a time: {:.1} accepted/s ({failures} failed)", workloads, rate);
        println!(
            "feed latency over {LATENCY_SAMPLES} sequential creates: submit->node p50 {:.2} ms p99 {:.2} ms; acceptance->node p50 {:.2} ms p99 {:.2} ms",
            report["submit_to_node_ms"]["p50"].as_f64().unwrap_or_default(),
            report["submit_to_node_ms"]["p99"].as_f64().unwrap_or_default(),
            report["acceptance_to_node_ms"]["p50"].as_f64().unwrap_or_default(),
            report["acceptance_to_node_ms"]["p99"].as_f64().unwrap_or_default(),
        );
        Ok(())
    }
}

async fn wait_for(arrivals: &Mutex<HashMap<WorkloadId, Instant>>, id: &WorkloadId) -> Option<Instant> {
    for _ in 0..10_000 {
        if let Some(t) = arrivals.lock().expect("lock").get(id) {
            return Some(*t);
        }
        tokio::time::sleep(Duration::from_micros(100)).await;
    }
    None
}
