//! `zgrid deploy`: build a workload from flags, sign it, submit it, and optionally wait for the
//! node's verdict while showing progress.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use zgrid_client::ExplorerClient;
use zgrid_types::api::WorkloadRecord;
use zgrid_types::result::IMAGE_READY;
use zgrid_types::workload::{Container, ContainerCapacity, DiskType, Volume, VolumeMount};
use zgrid_types::{ResultState, Signed, WorkloadData, WorkloadId, WorkloadSpec};

use crate::args::{DeployCommand, DeployCommon};
use crate::config::Ctx;
use crate::output;

/// How long `--wait` waits for the node.
const WAIT_LIMIT: Duration = Duration::from_secs(600);

fn disk_type(text: &str) -> Result<DiskType> {
    match text.to_ascii_lowercase().as_str() {
        "ssd" => Ok(DiskType::Ssd),
        "hdd" => Ok(DiskType::Hdd),
        _ => bail!("disk type {text:?}: use ssd or hdd"),
    }
}

fn env_pairs(items: &[String]) -> Result<BTreeMap<String, String>> {
    items
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .with_context(|| format!("--env {kv:?}: write KEY=VALUE"))
        })
        .collect()
}

fn volume_mount(text: &str) -> Result<VolumeMount> {
    let (id, path) = text.split_once(':').with_context(|| format!("--volume {text:?}: write VOLUME_ID:/path"))?;
    let volume_id = id.parse().with_context(|| format!("--volume {text:?}: {id:?} is not a workload id"))?;
    Ok(VolumeMount { volume_id, mountpoint: path.to_string() })
}

pub async fn run(ctx: &Ctx, cmd: DeployCommand) -> Result<()> {
    let (node, data, common, wait) = match cmd {
        DeployCommand::Volume { node, size, disk_type: t, common } => {
            (node, WorkloadData::Volume(Volume { size, disk_type: disk_type(&t)? }), common, false)
        }
        DeployCommand::Container {
            node,
            flist,
            entrypoint,
            env,
            volumes,
            cpu,
            memory,
            disk,
            disk_type: t,
            wait,
            common,
        } => {
            let container = Container {
                flist,
                hub_url: String::new(),
                environment: env_pairs(&env)?,
                secret_environment: BTreeMap::new(),
                entrypoint,
                interactive: false,
                volumes: volumes.iter().map(|v| volume_mount(v)).collect::<Result<_>>()?,
                capacity: ContainerCapacity { cpu, memory, disk_size: disk, disk_type: disk_type(&t)? },
                network_connection: vec![],
                logs: vec![],
                stats: vec![],
            };
            (node, WorkloadData::Container(container), common, wait)
        }
    };
    let (client, record) = submit(ctx, &node, data, &common).await?;
    let id = record.workload.payload.id.clone();
    if !wait {
        let spec = &record.workload.payload;
        return output::report(ctx.json, &record, || {
            let when = output::time(spec.expires_at);
            println!("workload {} ({}) accepted for node {}; expires {when}", spec.id, spec.data.kind(), spec.node_id)
        });
    }
    if !ctx.json {
        eprintln!("workload {id}");
    }
    let record = wait_for_node(&client, &id, ctx.json).await?;
    let result = record.result.as_ref().map(|r| &r.payload);
    match result.map(|r| r.state) {
        Some(ResultState::Ok) => output::report(ctx.json, &record, || println!("workload {id} is running")),
        _ => {
            if ctx.json {
                output::json(&record)?;
            }
            let why = result.map_or("no result".into(), |r| r.message.clone());
            bail!("workload {id} failed on its node: {why}")
        }
    }
}

async fn submit(
    ctx: &Ctx,
    node: &str,
    data: WorkloadData,
    common: &DeployCommon,
) -> Result<(ExplorerClient, WorkloadRecord)> {
    let node_id =
        node.parse().with_context(|| format!("--node {node:?} is not a node id; find one with `zgrid nodes`"))?;
    let duration = humantime::parse_duration(&common.duration)
        .with_context(|| format!("--duration {:?}: write it like 30m, 2h or 7d", common.duration))?;
    let (client, identity) = ctx.signed_client()?;
    let spec = WorkloadSpec {
        id: zgrid_client::new_workload_id(),
        version: 1,
        owner: Ctx::user_id(&identity)?,
        owner_key: identity.keypair.public(),
        node_id,
        expires_at: zgrid_types::unix_now() + i64::try_from(duration.as_secs()).unwrap_or(i64::MAX / 2),
        description: common.description.clone(),
        metadata: String::new(),
        data,
    };
    spec.validate(zgrid_types::unix_now()).map_err(|e| anyhow::anyhow!("invalid workload: {e}"))?;
    let record = client.create_workload(&Signed::sign(spec, &identity.keypair)).await?;
    Ok((client, record))
}

/// The stages `--wait` shows, in order.
const STAGES: [&str; 4] = ["accepted by the explorer", "picked up by the node", IMAGE_READY, "running"];

/// How far a result shows the workload got (an index into [`STAGES`]).
fn stage(result: Option<&zgrid_types::WorkloadResult>) -> usize {
    match result {
        None => 0,
        Some(r) if r.state == ResultState::Ok => 3,
        Some(r) if r.message == IMAGE_READY => 2,
        Some(_) => 1,
    }
}

/// Poll the explorer until the node reports a final result, printing each stage reached (also
/// those passed between two polls) once.
async fn wait_for_node(client: &ExplorerClient, id: &WorkloadId, quiet: bool) -> Result<WorkloadRecord> {
    let deadline = tokio::time::Instant::now() + WAIT_LIMIT;
    let mut shown = None;
    loop {
        let record = client.workload(id).await?;
        let result = record.result.as_ref().map(|r| &r.payload);
        let reached = stage(result);
        for (n, name) in STAGES.iter().enumerate().take(reached + 1).skip(shown.map_or(0, |s| s + 1)) {
            if !quiet {
                let detail = if n == 1 { format!(" {}", record.workload.payload.node_id) } else { String::new() };
                eprintln!("[{}/{}] {name}{detail}", n + 1, STAGES.len());
            }
            shown = Some(n);
        }
        if result.is_some_and(|r| r.state != ResultState::Provisioning) {
            return Ok(record);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("no verdict from the node within {} s; check `zgrid live` later", WAIT_LIMIT.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
