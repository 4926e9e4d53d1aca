//! `zgrid nodes`: find nodes, with their free capacity, the hypervisor their VMs use, the
//! WireGuard their networks use and their public IPv6 prefix; every match, oldest registration
//! first, read from the explorer page after page.

use anyhow::Result;
use zgrid_types::api::NodeFilter;

use crate::args::NodesArgs;
use crate::config::Ctx;
use crate::output;

pub async fn run(ctx: &Ctx, a: NodesArgs) -> Result<()> {
    let filter = NodeFilter {
        farm: a.farm,
        country: a.country,
        city: a.city,
        free_cru: a.free_cru,
        free_mru: a.free_mru,
        free_sru: a.free_sru,
        free_hru: a.free_hru,
        alive: if a.alive {
            Some(true)
        } else if a.dead {
            Some(false)
        } else {
            None
        },
        public_ipv6: a.public_ipv6.then_some(true),
        yggdrasil: a.yggdrasil.then_some(true),
        after: None,
        size: Some(a.list.size),
    };
    let nodes = ctx.anonymous_client()?.all_nodes(&filter, a.list.limit).await?;
    if ctx.json {
        return output::json(&serde_json::json!({ "items": nodes, "total": nodes.len() }));
    }
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            let free = n.free();
            vec![
                n.node_id.to_string(),
                n.farm_id.to_string(),
                format!("{}/{}", n.location.country, n.location.city),
                format!("{}/{}", free.cru, n.total.cru),
                format!("{}/{}", free.mru, n.total.mru),
                format!("{}/{}", free.sru, n.total.sru),
                format!("{}/{}", free.hru, n.total.hru),
                if n.alive { "up" } else { "down" }.into(),
                output::time(n.last_seen),
                // `kvm`, `tcg` or `none`; why not KVM, or why no VMs, is in --json.
                n.hypervisor.as_deref().and_then(|h| h.split(':').next()).unwrap_or("-").to_owned(),
                // `kernel` or `userspace`; why not the kernel's is in --json.
                n.wireguard.as_deref().and_then(|w| w.split(':').next()).unwrap_or("-").to_owned(),
                n.public_ipv6.map_or_else(|| "-".to_owned(), |p| p.to_string()),
            ]
        })
        .collect();
    let header = [
        "NODE",
        "FARM",
        "LOCATION",
        "CPU",
        "MEM MiB",
        "SSD MiB",
        "HDD MiB",
        "STATE",
        "LAST SEEN",
        "VMS",
        "WIREGUARD",
        "PUBLIC IPV6",
    ];
    output::table(&header, &rows);
    println!(
        "free/total shown; VMS: the hypervisor VMs use, WIREGUARD: the networks' backend (why, with --json); {} nodes",
        nodes.len()
    );
    Ok(())
}
