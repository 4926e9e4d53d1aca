//! `zgrid live`: my workloads, their state and the nodes' latest results.

use anyhow::Result;
use zgrid_types::api::WorkloadFilter;

use crate::args::LiveArgs;
use crate::config::Ctx;
use crate::output;

pub async fn run(ctx: &Ctx, a: LiveArgs) -> Result<()> {
    let (client, identity) = ctx.signed_client()?;
    let filter = WorkloadFilter {
        owner: Some(Ctx::user_id(&identity)?),
        state: (a.state != "all").then_some(a.state),
        page: Some(a.page.page),
        size: Some(a.page.size),
    };
    let page = client.workloads(&filter).await?;
    if ctx.json {
        return output::json(&page);
    }
    let rows: Vec<Vec<String>> = page
        .items
        .iter()
        .map(|r| {
            let w = &r.workload.payload;
            vec![
                w.id.to_string(),
                w.data.kind().to_string(),
                w.version.to_string(),
                w.node_id.to_string(),
                r.state.as_str().into(),
                output::result(r),
                output::time(w.expires_at),
            ]
        })
        .collect();
    output::table(&["ID", "TYPE", "VER", "NODE", "STATE", "RESULT", "EXPIRES"], &rows);
    println!("page {}, {} workloads", page.page, page.total);
    Ok(())
}
