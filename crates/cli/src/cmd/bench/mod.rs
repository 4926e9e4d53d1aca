//! `zgrid bench`: measurements recorded in `docs/benchmarks.md`.

mod cockpit;
mod explorer;
mod flist;
mod k8s;
mod kubelet;
mod lists;
mod network;
mod node;
mod scale;
mod vm;

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use zgrid_client::new_workload_id;
use zgrid_types::directory::{Capacity, NodeRegistration};
use zgrid_types::workload::{DiskType, Volume};
use zgrid_types::{FarmId, Keypair, NodeId, Signed, UserId, WorkloadData, WorkloadSpec};

use crate::args::BenchCommand;
use crate::config::Ctx;

pub async fn run(ctx: &Ctx, cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Explorer { workloads, concurrency, db } => explorer::run(ctx, workloads, concurrency, db).await,
        BenchCommand::Cockpit { nodes, workloads, users, db } => cockpit::run(ctx, nodes, workloads, users, db).await,
        BenchCommand::Node { containers } => node::run(ctx, containers).await,
        BenchCommand::Network { seconds } => network::run_bench(ctx, seconds).await,
        BenchCommand::Flist { runs, extra_mib, image, versions } => {
            flist::run(ctx, flist::Options { runs, extra_mib, image, versions }).await
        }
        BenchCommand::Vm { runs, image } => vm::run(ctx, runs, image).await,
        BenchCommand::K8s { vms, size, image } => k8s::run(ctx, vms, size, image).await,
        BenchCommand::Kubelet { pods, nodes } => kubelet::run(ctx, pods, nodes).await,
        BenchCommand::Lists { nodes, workloads, loads, db } => {
            let fill = zgrid_explorer::db::bulk::Fill {
                nodes,
                workloads,
                first_owner_workloads: workloads / 20,
                ..Default::default()
            };
            let report = lists::at_scale(db, &fill, loads).await?;
            if ctx.json {
                crate::output::json(&report)
            } else {
                println!("{}", serde_json::to_string_pretty(&report)?);
                Ok(())
            }
        }
        BenchCommand::Scale { nodes, workloads, explorers, db, concurrency, samples, idle_seconds, query_loads } => {
            let idle = Duration::from_secs(idle_seconds);
            let options = scale::Options { nodes, workloads, explorers, db, concurrency, samples, idle, query_loads };
            scale::run(ctx, options).await
        }
    }
}

/// The `p`th percentile (nearest rank) of `samples`, which are sorted in place.
fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

/// Milliseconds, as a float.
fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `x` to one decimal.
fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// `count`, `p50_ms`, `p99_ms` and `max_ms` of `samples` (sorted in place); null when empty.
fn summary(samples: &mut [Duration]) -> Value {
    if samples.is_empty() {
        return Value::Null;
    }
    let p50 = ms(percentile(samples, 50.0));
    let p99 = ms(percentile(samples, 99.0));
    let max = ms(*samples.last().expect("non-empty"));
    json!({ "count": samples.len(), "p50_ms": round(p50), "p99_ms": round(p99), "max_ms": round(max) })
}

/// A new volume workload of `owner` (signed with `key`) on `node`, expiring in an hour: the
/// cheapest kind for the explorer, as it has no network or volume checks.
fn volume(owner: UserId, key: &Keypair, node: NodeId) -> Signed<WorkloadSpec> {
    let spec = WorkloadSpec {
        id: new_workload_id(),
        version: 1,
        owner,
        owner_key: key.public(),
        node_id: node,
        expires_at: zgrid_types::unix_now() + 3600,
        description: String::new(),
        metadata: String::new(),
        data: WorkloadData::Volume(Volume { size: 64, disk_type: DiskType::Ssd }),
    };
    Signed::sign(spec, key)
}

/// The registration of node `key`, named `hostname`, in `farm`, with the farm owner's
/// (`farmer`'s) invitation for that key, valid for an hour.
fn node_registration(farmer: &Keypair, farm: FarmId, key: &Keypair, hostname: String) -> NodeRegistration {
    NodeRegistration {
        farm_id: farm,
        hostname,
        total: Capacity { cru: 64, mru: 1 << 20, sru: 1 << 30, hru: 1 << 30 },
        location: Default::default(),
        public_endpoint: None,
        api_url: None,
        version: env!("CARGO_PKG_VERSION").into(),
        farm_invitation: Some(zgrid_types::invitation::invite(
            farmer,
            farm,
            Some(key.public()),
            zgrid_types::unix_now() + 3600,
        )),
    }
}

/// Remove a benchmark's working directory, unless a failed cleanup left a mount under it:
/// never delete through a mount; keep the directory for inspection instead.
fn remove_unless_mounted(work: tempfile::TempDir) -> Result<()> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").context("cannot read /proc/self/mountinfo")?;
    let prefix = work.path().to_string_lossy().into_owned();
    if mountinfo.lines().filter_map(|l| l.split(' ').nth(4)).any(|m| m.starts_with(&prefix)) {
        eprintln!("mounts remain under {prefix}; kept for inspection");
        let _ = work.keep();
    }
    Ok(())
}

/// Output of `command`, which must succeed; `what` names it in errors, and `package` is the
/// Debian package to install when it cannot be run.
fn run_tool(command: &mut Command, what: &str, package: &str) -> Result<String> {
    let out = command.output().with_context(|| format!("cannot run {what} (apt-get install {package})"))?;
    if !out.status.success() {
        bail!("{what} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// An explorer in this process, on loopback, over the given database or a temporary SQLite file.
struct LocalExplorer {
    /// Its base URL.
    url: String,
    /// `sqlite` or `postgresql`, for reports.
    engine: &'static str,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

impl LocalExplorer {
    /// Open `db` (or a new SQLite file) and serve it on a free loopback port.
    async fn start(db: Option<String>) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let database = db.unwrap_or_else(|| dir.path().join("bench.sqlite").display().to_string());
        let engine = if database.starts_with("postgres") { "postgresql" } else { "sqlite" };
        let state = zgrid_explorer::AppState::open(zgrid_explorer::Config::new(&database)).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(zgrid_explorer::run(listener, state, async { stopped.await.unwrap_or(()) }));
        Ok(Self { url, engine, stop, server, _dir: dir })
    }

    /// Shut it down and wait until it has.
    async fn stop(self) -> Result<()> {
        let _ = self.stop.send(());
        Ok(self.server.await??)
    }
}
