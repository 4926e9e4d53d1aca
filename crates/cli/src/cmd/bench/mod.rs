//! `zgrid bench`: measurements recorded in `docs/benchmarks.md`.

mod explorer;
mod flist;
mod k8s;
mod network;
mod node;
mod vm;

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::args::BenchCommand;
use crate::config::Ctx;

pub async fn run(ctx: &Ctx, cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Explorer { workloads, concurrency, db } => explorer::run(ctx, workloads, concurrency, db).await,
        BenchCommand::Node { containers } => node::run(ctx, containers).await,
        BenchCommand::Network { seconds } => network::run_bench(ctx, seconds).await,
        BenchCommand::Flist { runs, extra_mib, image, versions } => {
            flist::run(ctx, flist::Options { runs, extra_mib, image, versions }).await
        }
        BenchCommand::Vm { runs, image } => vm::run(ctx, runs, image).await,
        BenchCommand::K8s { vms, size, image } => k8s::run(ctx, vms, size, image).await,
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

/// Output of `command`, which must succeed; `what` names it in errors, and `package` is the
/// Debian package to install when it cannot be run.
fn run_tool(command: &mut Command, what: &str, package: &str) -> Result<String> {
    let out = command.output().with_context(|| format!("cannot run {what} (apt-get install {package})"))?;
    if !out.status.success() {
        bail!("{what} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
