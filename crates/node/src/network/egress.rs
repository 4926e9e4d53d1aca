//! Egress: a network resource's way out through the node's own uplink. A veth pair joins the
//! network's namespace (`up0`, `100.127.x.y+2/30`, its default route) to the agent's namespace
//! (`zu…`, `+1/30`). Two address translations keep owners apart even when their networks use
//! the same CIDR: the network's namespace rewrites its workloads' sources to its own `up0`
//! address, and the agent's namespace rewrites those to the node's address on its uplink. No
//! connection can be opened from outside into a network, and networks cannot reach each other's
//! uplinks. The node's rules live in one nftables table, `zgrid_egress`, removed with the last
//! network that uses it.

use std::net::Ipv4Addr;
use std::path::Path;

use super::netns::Netns;
use crate::runtime::RuntimeError;
use crate::runtime::command::Cmd;

/// Uplink link networks are /30s of this range (100.127.0.0/16, shared address space).
const UPLINKS: u32 = u32::from_be_bytes([100, 127, 0, 0]);
/// The most uplinks a node can have: /30s in the /16, the first one unused.
pub(super) const MAX_UPLINKS: u16 = 16383;
/// The uplink inside a network's namespace.
const UPLINK: &str = "up0";

/// The network side's rules: translate outgoing sources to `up0`'s address, and let nothing
/// new in through it.
const NETWORK_RULES: &str = r#"table ip zgrid
delete table ip zgrid
table ip zgrid {
    chain postrouting { type nat hook postrouting priority srcnat; oifname "up0" masquerade; }
    chain forward {
        type filter hook forward priority filter;
        iifname "up0" ct state established,related accept
        iifname "up0" drop
    }
}
"#;

/// The node side's rules: translate uplink traffic to the node's address, keep networks from
/// each other, and let only answers back in.
const NODE_RULES: &str = r#"table ip zgrid_egress
delete table ip zgrid_egress
table ip zgrid_egress {
    chain postrouting {
        type nat hook postrouting priority srcnat;
        ip saddr 100.127.0.0/16 oifname != "zu*" masquerade
    }
    chain forward {
        type filter hook forward priority filter;
        iifname "zu*" oifname "zu*" drop
        iifname "zu*" accept
        oifname "zu*" ct state established,related accept
        oifname "zu*" drop
    }
}
"#;

/// Addresses of uplink `index`: the node's side and the network's side.
fn addresses(index: u16) -> (Ipv4Addr, Ipv4Addr) {
    let base = UPLINKS + 4 * u32::from(index);
    (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2))
}

/// Give network `ns` uplink number `index`, its end in the agent's namespace named `outside`.
/// Idempotent.
pub(super) async fn enable(ns: &Netns, outside: &str, index: u16, nft: &Path, dir: &Path) -> Result<(), RuntimeError> {
    let (node_side, network_side) = addresses(index);
    if !ns.host_has_link(outside).await? {
        ns.host(&["link", "add", outside, "type", "veth", "peer", "name", UPLINK, "netns", ns.name()]).await?;
    }
    ns.host(&["addr", "replace", &format!("{node_side}/30"), "dev", outside]).await?;
    ns.host(&["link", "set", outside, "up"]).await?;
    ns.ip(&["addr", "replace", &format!("{network_side}/30"), "dev", UPLINK]).await?;
    ns.ip(&["link", "set", UPLINK, "up"]).await?;
    ns.ip(&["route", "replace", "default", "via", &node_side.to_string()]).await?;
    super::sysctl("/proc/sys/net/ipv4/ip_forward", "1")?;
    let rules = dir.join(format!("{}.nft", ns.name()));
    super::load_rules(ns.name(), nft, &rules, NODE_RULES).await?;
    std::fs::write(&rules, NETWORK_RULES).map_err(|e| RuntimeError::host_io("write", &rules, e))?;
    let loaded = ns.exec(nft, &["-f", &rules.to_string_lossy()]).await;
    let _ = std::fs::remove_file(&rules);
    loaded.map(drop)
}

/// Take network `ns`'s uplink away, if it has one.
pub(super) async fn disable(ns: &Netns, outside: &str) -> Result<(), RuntimeError> {
    if ns.host_has_link(outside).await? {
        ns.host(&["link", "delete", outside]).await?;
    }
    Ok(())
}

/// Remove the node's rules (no network uses an uplink any more).
pub(super) async fn forget_node_rules(nft: &Path) {
    let _ = Cmd::new("egress", nft, ["delete", "table", "ip", "zgrid_egress"], super::NFT_TIMEOUT).output().await;
}
