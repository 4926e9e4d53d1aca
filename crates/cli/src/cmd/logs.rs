//! `zgrid logs`: a container's output, read from the node that runs it (the request is signed
//! by the owner; the node checks the key against the workload).

use std::io::Write;

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use zgrid_client::NodeClient;

use crate::args::LogsArgs;
use crate::config::Ctx;

pub async fn run(ctx: &Ctx, a: LogsArgs) -> Result<()> {
    let (client, identity) = ctx.signed_client()?;
    let id = a.id.parse().with_context(|| format!("{:?} is not a workload id; list yours with `zgrid live`", a.id))?;
    let record = client.workload(&id).await?;
    let node_id = &record.workload.payload.node_id;
    let node = client.node(node_id).await?;
    let Some(api) = node.api_url else {
        bail!("node {node_id} does not publish an API address, so its logs cannot be read remotely");
    };
    let node_client = NodeClient::with_http(&api, identity.keypair.clone(), &ctx.http()?)?;
    let mut chunks = Box::pin(node_client.logs(&id, a.follow).await?);
    let mut out = std::io::stdout().lock();
    while let Some(chunk) = chunks.next().await {
        out.write_all(&chunk?)?;
        out.flush()?;
    }
    Ok(())
}
