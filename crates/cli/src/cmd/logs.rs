//! `zgrid logs`: a container's output, read from the node that runs it (the request is signed
//! by the owner; the node checks the key against the workload).

use std::io::Write;

use anyhow::Result;
use futures::StreamExt;

use crate::args::LogsArgs;
use crate::config::Ctx;

pub async fn run(ctx: &Ctx, a: LogsArgs) -> Result<()> {
    let (node_client, id) = super::node_client(ctx, &a.id).await?;
    let mut chunks = Box::pin(node_client.logs(&id, a.follow).await?);
    let mut out = std::io::stdout().lock();
    while let Some(chunk) = chunks.next().await {
        out.write_all(&chunk?)?;
        out.flush()?;
    }
    Ok(())
}
