//! `zgrid logs`: a container's output, read from the node that runs it (the request is signed
//! by the owner; the node checks the key against the workload): what it wrote on stdout to
//! stdout, on stderr to stderr.

use std::io::Write;

use anyhow::Result;
use futures::StreamExt;
use zgrid_types::logs::LogStream;

use crate::args::LogsArgs;
use crate::config::Ctx;

pub async fn run(ctx: &Ctx, a: LogsArgs) -> Result<()> {
    let (node_client, id) = super::node_client(ctx, &a.id).await?;
    let mut pieces = Box::pin(node_client.log_streams(&id, a.follow).await?);
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
    while let Some(piece) = pieces.next().await {
        let (stream, bytes) = piece?;
        let to: &mut dyn Write = match stream {
            LogStream::Stdout => &mut out,
            LogStream::Stderr => &mut err,
        };
        to.write_all(&bytes)?;
        to.flush()?;
    }
    Ok(())
}
