//! `zgrid deploy`: build a workload from flags, sign it and submit it.

use anyhow::{Context, Result};
use zgrid_types::workload::{DiskType, Volume};
use zgrid_types::{Signed, WorkloadData, WorkloadSpec};

use crate::args::{DeployCommand, DeployCommon};
use crate::config::Ctx;
use crate::output;

fn disk_type(text: &str) -> Result<DiskType> {
    match text.to_ascii_lowercase().as_str() {
        "ssd" => Ok(DiskType::Ssd),
        "hdd" => Ok(DiskType::Hdd),
        _ => anyhow::bail!("--type {text:?}: use ssd or hdd"),
    }
}

pub async fn run(ctx: &Ctx, cmd: DeployCommand) -> Result<()> {
    let (node, data, common) = match cmd {
        DeployCommand::Volume { node, size, disk_type: t, common } => {
            (node, WorkloadData::Volume(Volume { size, disk_type: disk_type(&t)? }), common)
        }
    };
    submit(ctx, &node, data, &common).await
}

async fn submit(ctx: &Ctx, node: &str, data: WorkloadData, common: &DeployCommon) -> Result<()> {
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
    let spec = &record.workload.payload;
    output::report(ctx.json, &record, || {
        let when = output::time(spec.expires_at);
        println!("workload {} ({}) accepted for node {}; expires {when}", spec.id, spec.data.kind(), spec.node_id)
    })
}
