//! `zgrid bench node`: on a devnet of this machine (an explorer process and one `zgrid node`
//! process in its own network namespace), how long a container takes from the deployer's
//! submission to the node's signed `ok` result, with the image already on the node; how long
//! the node's container start itself takes; and the agent's memory, idle and with every
//! container running.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;
use zgrid_client::{ExplorerClient, Identity, new_workload_id};
use zgrid_devnet::{Devnet, DevnetConfig, Node, NodeOptions, busybox_rootfs};
use zgrid_types::workload::{Container, ContainerCapacity, DiskType};
use zgrid_types::{ResultState, Signed, WorkloadData, WorkloadId, WorkloadSpec};

use super::{round, summary};
use crate::config::Ctx;
use crate::output;

/// How often the explorer is asked for results.
const POLL: Duration = Duration::from_millis(2);

/// How long one container may take before the benchmark gives up.
const LIMIT: Duration = Duration::from_secs(120);

pub async fn run(ctx: &Ctx, containers: usize) -> Result<()> {
    if containers == 0 {
        bail!("--containers must be at least 1");
    }
    let dir = tempfile::tempdir()?;
    let zgrid = std::env::current_exe().context("cannot find the zgrid binary")?;
    let mut config = DevnetConfig::new(zgrid, dir.path());
    config.log_level = "warn".into();
    let image = busybox_rootfs(dir.path())?;
    let (devnet, node) = tokio::task::spawn_blocking(move || -> Result<(Devnet, Node)> {
        let devnet = Devnet::start(config)?;
        let node = devnet.add_node(NodeOptions::default())?;
        Ok((devnet, node))
    })
    .await??;
    let pid = node.pid().context("the node agent is not running")?;

    let deployer = Identity::generate("bench");
    let client = ExplorerClient::new(devnet.explorer_url())?.with_key(deployer.keypair.clone());
    let owner = client.register_user(&format!("bench{}", rand::random::<u32>()), "").await?.id;
    let make = || {
        let spec = WorkloadSpec {
            id: new_workload_id(),
            version: 1,
            owner,
            owner_key: deployer.keypair.public(),
            node_id: node.id().parse().expect("the node id parses"),
            expires_at: zgrid_types::unix_now() + 3600,
            description: String::new(),
            metadata: String::new(),
            data: WorkloadData::Container(Container {
                flist: image.display().to_string(),
                hub_url: String::new(),
                flist_hash: String::new(),
                environment: Default::default(),
                secret_environment: Default::default(),
                entrypoint: "sleep 100000".into(),
                interactive: false,
                volumes: vec![],
                capacity: ContainerCapacity { cpu: 1, memory: 32, disk_size: 64, disk_type: DiskType::Ssd },
                network_connection: vec![],
                logs: vec![],
                stats: vec![],
                probes: Default::default(),
                open_ports: vec![],
            }),
        };
        Signed::sign(spec, &deployer.keypair)
    };

    // One container first, so the node's first-use costs (cgroup parents, caches) are not timed.
    let warm = make();
    client.create_workload(&warm).await?;
    wait_running(&client, &warm.payload.id).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_rss = rss_kib(pid)?;

    let half = containers / 2;
    let (mut one_by_one, mut starts) = (Vec::new(), Vec::new());
    for _ in 0..half.max(1) {
        let w = make();
        let sent = Instant::now();
        client.create_workload(&w).await?;
        let start_ms = wait_running(&client, &w.payload.id).await?;
        one_by_one.push(sent.elapsed());
        starts.push(Duration::from_secs_f64(start_ms / 1000.0));
    }
    let burst_size = containers - half.max(1);
    let mut burst = Vec::new();
    if burst_size > 0 {
        let batch: Vec<_> = (0..burst_size).map(|_| make()).collect();
        let sent = Instant::now();
        futures::future::try_join_all(batch.iter().map(|w| client.create_workload(w))).await?;
        burst = wait_all_running(&client, owner, &batch, sent).await?;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let busy_rss = rss_kib(pid)?;
    tokio::task::spawn_blocking(move || drop((node, devnet))).await?;

    let report = json!({
        "containers": containers + 1,
        "submit_to_running_one_at_a_time": summary(&mut one_by_one),
        "submit_to_running_all_at_once": summary(&mut burst),
        "container_start_on_node": summary(&mut starts),
        "agent_rss_mib": { "idle": round(idle_rss as f64 / 1024.0), "with_containers": round(busy_rss as f64 / 1024.0) },
    });
    if ctx.json {
        return output::json(&report);
    }
    let line = |name: &str, v: &serde_json::Value| {
        if !v.is_null() {
            println!(
                "{name}: {} containers, p50 {} ms, p99 {} ms, max {} ms",
                v["count"], v["p50_ms"], v["p99_ms"], v["max_ms"]
            );
        }
    };
    line("submit-to-running, one at a time", &report["submit_to_running_one_at_a_time"]);
    line("submit-to-running, all at once", &report["submit_to_running_all_at_once"]);
    line("container start on the node (rootfs, runc run), one at a time", &report["container_start_on_node"]);
    println!(
        "agent memory (RSS): {} MiB idle with 1 container, {} MiB with {} containers",
        report["agent_rss_mib"]["idle"],
        report["agent_rss_mib"]["with_containers"],
        containers + 1
    );
    Ok(())
}

/// Wait for the node's `ok` result on `id`; returns the node's own start time for it, ms.
async fn wait_running(client: &ExplorerClient, id: &WorkloadId) -> Result<f64> {
    let deadline = Instant::now() + LIMIT;
    loop {
        let record = client.workload(id).await?;
        if let Some(result) = record.result.map(|r| r.payload) {
            match result.state {
                ResultState::Ok => return Ok(result.data["start_ms"].as_f64().unwrap_or_default()),
                ResultState::Error => bail!("container {id} failed: {}", result.message),
                _ => {}
            }
        }
        if Instant::now() > deadline {
            bail!("container {id} was not running after {LIMIT:?}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Wait until every workload of `batch` has the node's `ok` result, listing the owner's
/// workloads (one request per poll, so polling does not load the explorer more as the batch
/// grows); returns each one's latency from `sent`.
async fn wait_all_running(
    client: &ExplorerClient,
    owner: u64,
    batch: &[Signed<WorkloadSpec>],
    sent: Instant,
) -> Result<Vec<Duration>> {
    let wanted: std::collections::HashSet<&WorkloadId> = batch.iter().map(|w| &w.payload.id).collect();
    let mut done: std::collections::HashMap<WorkloadId, Duration> = Default::default();
    let deadline = Instant::now() + LIMIT;
    while done.len() < batch.len() {
        for record in client.all_workloads(owner, None).await? {
            let Some(result) = record.result.as_ref().map(|r| &r.payload) else { continue };
            if !wanted.contains(&result.workload_id) {
                continue;
            }
            match result.state {
                ResultState::Ok => {
                    done.entry(result.workload_id.clone()).or_insert_with(|| sent.elapsed());
                }
                ResultState::Error => bail!("container {} failed: {}", result.workload_id, result.message),
                _ => {}
            }
        }
        if Instant::now() > deadline {
            bail!("{} of {} containers were not running after {LIMIT:?}", batch.len() - done.len(), batch.len());
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(batch.iter().filter_map(|w| done.get(&w.payload.id).copied()).collect())
}

/// Resident memory of process `pid`, KiB.
fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no VmRSS for process {pid}"))
}
