//! `zgrid bench`: measurements recorded in `docs/benchmarks.md`.

mod explorer;
mod network;
mod node;

use std::time::Duration;

use anyhow::Result;

use crate::args::BenchCommand;
use crate::config::Ctx;

pub async fn run(ctx: &Ctx, cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Explorer { workloads, concurrency, db } => explorer::run(ctx, workloads, concurrency, db).await,
        BenchCommand::Node { containers } => node::run(ctx, containers).await,
        BenchCommand::Network { seconds } => network::run_bench(ctx, seconds).await,
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
