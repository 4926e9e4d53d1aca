//! `zgrid bench cockpit`: how fast the explorer's cockpit pages load on a big grid. Runs an
//! in-process explorer on loopback with a temporary SQLite file (or the given database), fills
//! it through the signed API (users, a farm, nodes in several countries with a heartbeat each,
//! workloads spread over nodes and users, a node-signed result for each), then loads each kind
//! of page many times over HTTP, as a browser would, body included.

use std::time::Instant;

use anyhow::{Context, Result};
use futures::StreamExt;
use serde_json::json;
use zgrid_client::{ExplorerClient, Identity, new_workload_id};
use zgrid_types::directory::{Capacity, FarmRegistration, Location, NodeHeartbeat, NodeRegistration};
use zgrid_types::result::{ResultState, WorkloadResult};
use zgrid_types::workload::{DiskType, Volume};
use zgrid_types::{Keypair, Signed, UserId, WorkloadData, WorkloadSpec};

use super::{LocalExplorer, summary};
use crate::config::Ctx;
use crate::output;

/// Requests in flight while the explorer is filled.
const CONCURRENCY: usize = 16;
/// Loads of each page.
const LOADS: usize = 50;
/// Countries the nodes are spread over.
const COUNTRIES: [&str; 5] = ["BE", "NL", "DE", "EG", "US"];

pub async fn run(ctx: &Ctx, nodes: usize, workloads: usize, users: usize, db: Option<String>) -> Result<()> {
    anyhow::ensure!(nodes > 0 && users > 0, "--nodes and --users must be at least 1");
    let explorer = LocalExplorer::start(db).await?;
    let url = explorer.url.clone();
    let base = ExplorerClient::new(&url)?;
    let started = Instant::now();

    // A farmer and their farm; nodes in several countries, each with a heartbeat.
    let farmer = Identity::generate("farmer");
    let farmer_client = base.clone().with_key(farmer.keypair.clone());
    farmer_client.register_user(&format!("farmer{}", rand::random::<u32>()), "").await?;
    let farm = farmer_client
        .create_farm(&FarmRegistration { name: format!("farm{}", rand::random::<u32>()), public_ips: vec![] })
        .await?;
    progress(ctx, &format!("registering {nodes} nodes"));
    let keys: Vec<Keypair> = (0..nodes).map(|_| Keypair::from_seed(&rand::random())).collect();
    let registered = futures::stream::iter(keys.iter().enumerate().map(|(n, key)| {
        let client = base.clone().with_key(key.clone());
        let invitation = zgrid_types::invitation::invite(
            &farmer.keypair,
            farm.id,
            Some(key.public()),
            zgrid_types::unix_now() + 3600,
        );
        let reg = NodeRegistration {
            farm_id: farm.id,
            hostname: format!("node{n}"),
            total: Capacity { cru: 8 + (n % 4) as u64 * 8, mru: 16_384 << (n % 3), sru: 1 << 20, hru: 4 << 20 },
            location: Location {
                country: COUNTRIES[n % COUNTRIES.len()].into(),
                city: format!("city{}", n % 50),
                latitude: None,
                longitude: None,
            },
            public_endpoint: None,
            api_url: None,
            version: env!("CARGO_PKG_VERSION").into(),
            farm_invitation: Some(invitation),
        };
        async move {
            client.register_node(&reg).await?;
            let used = Capacity { cru: (n % 5) as u64, mru: (n % 7) as u64 * 1024, sru: 0, hru: 0 };
            client.heartbeat(&NodeHeartbeat { used, hypervisor: Some("kvm".into()), ..Default::default() }).await
        }
    }))
    .buffer_unordered(CONCURRENCY)
    .collect::<Vec<_>>()
    .await;
    registered.into_iter().collect::<Result<Vec<()>, _>>().context("registering the nodes")?;

    // Deployers, and workloads spread over them and over the nodes, each with a node's result.
    progress(ctx, &format!("submitting {workloads} workloads of {users} users, with a result each"));
    let mut deployers: Vec<(UserId, Identity)> = Vec::with_capacity(users);
    for n in 0..users {
        let identity = Identity::generate(&format!("deployer{n}"));
        let user = base.clone().with_key(identity.keypair.clone()).register_user(&format!("deployer{n}"), "").await?;
        deployers.push((user.id, identity));
    }
    let submitted = futures::stream::iter((0..workloads).map(|n| {
        let (owner, identity) = &deployers[n % users];
        let node = &keys[n % nodes];
        let spec = WorkloadSpec {
            id: new_workload_id(),
            version: 1,
            owner: *owner,
            owner_key: identity.keypair.public(),
            node_id: node.public(),
            expires_at: zgrid_types::unix_now() + 86_400,
            description: format!("bench volume {n}"),
            metadata: String::new(),
            data: WorkloadData::Volume(Volume { size: 64, disk_type: DiskType::Ssd }),
        };
        let workload = Signed::sign(spec, &identity.keypair);
        let (deployer, reporter) =
            (base.clone().with_key(identity.keypair.clone()), base.clone().with_key(node.clone()));
        async move {
            deployer.create_workload(&workload).await?;
            let failed = n % 10 == 0;
            let result = WorkloadResult {
                workload_id: workload.payload.id.clone(),
                version: 1,
                node_id: node.public(),
                state: if failed { ResultState::Error } else { ResultState::Ok },
                message: if failed { "not enough disk: 64 MiB asked, 0 MiB free".into() } else { String::new() },
                data: json!({}),
                timestamp: zgrid_types::unix_now(),
            };
            reporter.post_result(&Signed::sign(result, node)).await
        }
    }))
    .buffer_unordered(CONCURRENCY)
    .collect::<Vec<_>>()
    .await;
    submitted.into_iter().collect::<Result<Vec<()>, _>>().context("submitting the workloads")?;
    let filled = started.elapsed();

    // Each kind of page, loaded again and again.
    let node = keys[0].public();
    let pages = [
        ("overview", "/".to_owned()),
        ("nodes filtered and sorted", "/?country=NL&free_mru=16384&sort=free_mru".to_owned()),
        ("node", format!("/nodes/{node}")),
        ("farm", format!("/farms/{}", farm.id)),
        ("user", format!("/users/{}", deployers[0].0)),
    ];
    let http = reqwest::Client::new();
    let mut rows = Vec::new();
    for (name, path) in &pages {
        let mut samples = Vec::with_capacity(LOADS);
        let mut bytes = 0;
        for _ in 0..LOADS {
            let sent = Instant::now();
            let response = http.get(format!("{url}{path}")).send().await?;
            anyhow::ensure!(response.status().is_success(), "{path} answered {}", response.status());
            bytes = response.bytes().await?.len();
            samples.push(sent.elapsed());
        }
        rows.push(json!({ "page": name, "path": path, "bytes": bytes, "load": summary(&mut samples) }));
    }
    let engine = explorer.engine;
    explorer.stop().await?;

    let report = json!({
        "database": engine,
        "nodes": nodes,
        "workloads": workloads,
        "users": users,
        "fill_seconds": (filled.as_secs_f64() * 10.0).round() / 10.0,
        "loads_per_page": LOADS,
        "pages": rows,
    });
    if ctx.json {
        return output::json(&report);
    }
    println!(
        "{nodes} nodes, {workloads} workloads of {users} users (filled in {:.1} s); {LOADS} loads of each page:",
        filled.as_secs_f64()
    );
    println!("{:<28} {:>9} {:>9} {:>9} {:>9}", "PAGE", "P50 MS", "P99 MS", "MAX MS", "KIB");
    for row in &rows {
        let load = |key: &str| row["load"][key].as_f64().unwrap_or_default();
        println!(
            "{:<28} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
            row["page"].as_str().unwrap_or_default(),
            load("p50_ms"),
            load("p99_ms"),
            load("max_ms"),
            row["bytes"].as_u64().unwrap_or_default() as f64 / 1024.0
        );
    }
    Ok(())
}

/// Say what is being done, on stderr, unless the output is JSON for a script.
fn progress(ctx: &Ctx, what: &str) {
    if !ctx.json {
        eprintln!("{what}…");
    }
}
