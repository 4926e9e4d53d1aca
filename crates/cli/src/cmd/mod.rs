//! One module per command; each loads what it needs, calls the libraries and prints.

mod bench;
mod config;
mod delete;
mod deploy;
mod explorer;
mod farm;
mod id;
mod live;
mod logs;
mod network;
mod node;
mod nodes;
mod stats;
mod submit;

use anyhow::Result;

use crate::args::{Cli, Command};
use crate::config::Ctx;

/// Run the parsed command line.
pub async fn run(cli: Cli) -> Result<()> {
    let ctx = Ctx::new(&cli.global)?;
    match cli.command {
        Command::Id(c) => id::run(&ctx, c).await,
        Command::Farm(c) => farm::run(&ctx, c).await,
        Command::Nodes(a) => nodes::run(&ctx, a).await,
        Command::Deploy(c) => deploy::run(&ctx, c).await,
        Command::Network(c) => network::run(&ctx, c).await,
        Command::Live(a) => live::run(&ctx, a).await,
        Command::Delete(a) => delete::run(&ctx, a).await,
        Command::Logs(a) => logs::run(&ctx, a).await,
        Command::Stats(a) => stats::run(&ctx, a).await,
        Command::Config(c) => config::run(&ctx, c),
        Command::Explorer(a) => explorer::run(a).await,
        Command::Node(a) => node::run(&ctx, a).await,
        Command::Bench(c) => bench::run(&ctx, c).await,
    }
}
