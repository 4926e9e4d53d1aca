//! `zgrid live`: my workloads, their state and the nodes' latest results.

use anyhow::Result;
use zgrid_types::WorkloadData;
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
            let network = match (&w.data, w.data.network_attachment()) {
                (_, Some((name, ip))) => format!("{name} {ip}"),
                (WorkloadData::NetworkResource(n), None) => format!("{} {}", n.name, n.iprange),
                _ => "-".into(),
            };
            vec![
                w.id.to_string(),
                w.data.kind().to_string(),
                w.version.to_string(),
                w.node_id.to_string(),
                network,
                r.state.as_str().into(),
                output::time(w.expires_at),
                output::result(r),
            ]
        })
        .collect();
    output::table(&["ID", "TYPE", "VER", "NODE", "NETWORK", "STATE", "EXPIRES", "RESULT"], &rows);
    println!("page {}, {} workloads", page.page, page.total);
    Ok(())
}
