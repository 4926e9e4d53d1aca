//! `zgrid bench`: measurements recorded in `docs/benchmarks.md`.

mod cockpit;
mod explorer;
mod flist;
mod k8s;
mod kubelet;
mod network;
mod node;
mod vm;

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

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
