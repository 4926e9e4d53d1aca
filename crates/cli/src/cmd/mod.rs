//! One module per command; each loads what it needs, calls the libraries and prints.

mod bench;
mod config;
mod console;
mod delete;
mod deploy;
mod exec;
mod explorer;
mod farm;
mod flist;
mod hub;
mod id;
mod k8s;
mod kubelet;
mod live;
mod logs;
mod network;
mod node;
mod nodes;
mod stats;
mod submit;
mod up;

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
        Command::K8s(c) => k8s::run(&ctx, c).await,
        Command::Kubelet(a) => kubelet::run(&ctx, a).await,
        Command::Live(a) => live::run(&ctx, a).await,
        Command::Delete(a) => delete::run(&ctx, a).await,
        Command::Logs(a) => logs::run(&ctx, a).await,
        Command::Stats(a) => stats::run(&ctx, a).await,
        Command::Console(a) => console::run(&ctx, a).await,
        Command::Exec(a) => exec::run(&ctx, a).await,
        Command::Config(c) => config::run(&ctx, c),
        Command::Explorer(a) => explorer::run(a).await,
        Command::Node(a) => node::run(&ctx, a).await,
        Command::Flist(c) => flist::run(&ctx, c).await,
        Command::Hub(c) => hub::run(&ctx, c).await,
        Command::Up(a) => up::up(&ctx, a).await,
        Command::Down(a) => up::down(&ctx, a),
        Command::Status(a) => up::status(&ctx, a),
        Command::FlistMounts(a) => node::mount_service(&ctx, a),
        Command::Bench(c) => bench::run(&ctx, c).await,
    }
}

/// The workload id `text` is, or what is wrong with it (said once) and where ids are listed.
fn workload_id(text: &str) -> Result<zgrid_types::WorkloadId> {
    text.parse().map_err(|e: zgrid_types::ids::BadWorkloadId| anyhow::anyhow!("{e}; list yours with `zgrid live`"))
}

/// The container workload `text` names, as the explorer has it.
async fn container(ctx: &Ctx, text: &str) -> Result<(zgrid_types::WorkloadId, zgrid_types::workload::Container)> {
    let id = workload_id(text)?;
    let record = ctx.anonymous_client()?.workload(&id).await?;
    match record.workload.payload.data {
        zgrid_types::WorkloadData::Container(container) => Ok((id, container)),
        _ => anyhow::bail!("workload {id} is not a container"),
    }
}

/// A client of the node that runs workload `text`, signing as the current identity; and the id.
async fn node_client(ctx: &Ctx, text: &str) -> Result<(zgrid_client::NodeClient, zgrid_types::WorkloadId)> {
    let (client, identity) = ctx.signed_client()?;
    let id = workload_id(text)?;
    let record = client.workload(&id).await?;
    let node_id = &record.workload.payload.node_id;
    let node = client.node(node_id).await?;
    let Some(api) = node.api_url else {
        anyhow::bail!("node {node_id} does not publish an API address, so it cannot be reached for workload {id}");
    };
    Ok((zgrid_client::NodeClient::with_http(&api, identity.keypair.clone(), &ctx.http()?)?, id))
}
