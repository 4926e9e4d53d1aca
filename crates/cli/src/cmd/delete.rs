//! `zgrid delete`: signed delete requests.

use anyhow::{Context, Result};
use zgrid_types::WorkloadId;

use crate::args::DeleteArgs;
use crate::config::Ctx;
use crate::output;

pub async fn run(ctx: &Ctx, a: DeleteArgs) -> Result<()> {
    let ids = a.ids.iter().map(|i| i.parse::<WorkloadId>()).collect::<Result<Vec<_>, _>>()?;
    let (client, identity) = ctx.signed_client()?;
    let owner = Ctx::user_id(&identity)?;
    let mut deleted = Vec::new();
    for id in &ids {
        let record = client.delete_workload(id, owner).await.with_context(|| format!("cannot delete {id}"))?;
        if !ctx.json {
            println!("workload {id} deleted; its node removes it now");
        }
        deleted.push(record);
    }
    if ctx.json { output::json(&deleted) } else { Ok(()) }
}
