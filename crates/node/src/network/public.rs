//! Public IPv6 addresses for containers. A node started with a public IPv6 prefix gives a
//! container that asks for one an address in it, derived from the workload id (so it needs no
//! record and is the same after restarts and reboots). A veth pair joins the container's
//! namespace (`pub0`, the address as a /128, its IPv6 default route through `fe80::1`) to the
//! agent's namespace (`zp…`, `fe80::1`, a route to the address). Where the prefix is on the
//! node's uplink rather than routed to it, the node answers neighbour solicitations for the
//! address there (proxy NDP).
//!
//! One nftables table per container (`ip6 zgp_<id>`) keeps it in its place: from outside only
//! ICMPv6, answers and the ports its owner opened reach it; it sends from its own address only;
//! it cannot reach the node itself. Other tenants' public addresses are the internet to it.

use std::net::Ipv6Addr;
use std::path::Path;

use ipnet::Ipv6Net;
use zgrid_types::WorkloadId;
use zgrid_types::workload::{OpenPort, Protocol};

use super::netns::Netns;
use super::{NFT_TIMEOUT, load_rules, sysctl};
use crate::runtime::RuntimeError;
use crate::runtime::command::Cmd;

/// The container's end of its public link.
const PUBLIC: &str = "pub0";
/// The node's address on every public link: the containers' IPv6 gateway.
const GATEWAY: &str = "fe80::1";

/// The node's public IPv6 prefix and the interface it is on, if it is on one.
#[derive(Debug, Clone)]
pub struct PublicIpv6 {
    prefix: Ipv6Net,
    uplink: Option<String>,
}

impl PublicIpv6 {
    /// `prefix` (a /64 or larger, so addresses derived from ids do not collide), on interface
    /// `uplink` of the agent's namespace when the prefix is on a link rather than routed to the
    /// node: there the node answers for its containers' addresses.
    pub fn new(prefix: Ipv6Net, uplink: Option<String>) -> Result<Self, String> {
        if prefix.prefix_len() > 64 {
            return Err(format!("{prefix}: give a /64 or a larger prefix, so every container gets its own address"));
        }
        if let Some(dev) = &uplink
            && !Path::new("/sys/class/net").join(dev).exists()
        {
            return Err(format!("--public-ipv6-dev {dev}: no such interface on this node"));
        }
        Ok(Self { prefix: prefix.trunc(), uplink })
    }

    /// The prefix.
    pub fn prefix(&self) -> Ipv6Net {
        self.prefix
    }

    /// The address of container `id`: the prefix with the id's hash as host part (never the
    /// prefix's first two addresses, which routers and nodes take).
    pub fn address(&self, id: &WorkloadId) -> Ipv6Addr {
        let hash = blake3::hash(id.as_str().as_bytes());
        let bits = u128::from_be_bytes(hash.as_bytes()[..16].try_into().expect("16 bytes"));
        let host_mask = u128::MAX >> self.prefix.prefix_len();
        let mut host = bits & host_mask;
        if host < 2 {
            host += 2;
        }
        Ipv6Addr::from(u128::from(self.prefix.network()) | host)
    }

    /// Give container `id` (namespace `inside`) its public address, reachable on `open` only.
    /// Idempotent.
    pub(super) async fn attach(
        &self,
        id: &WorkloadId,
        inside: &Netns,
        open: &[OpenPort],
        nft: &Path,
        dir: &Path,
    ) -> Result<(), RuntimeError> {
        let address = self.address(id);
        let outside = link_name(id);
        if !inside.has_link(PUBLIC).await? {
            if inside.host_has_link(&outside).await? {
                inside.host(&["link", "delete", &outside]).await?;
            }
            inside
                .host(&["link", "add", &outside, "type", "veth", "peer", "name", PUBLIC, "netns", inside.name()])
                .await?;
        }
        let own = format!("{address}/128");
        inside.ip(&["-6", "addr", "replace", &own, "dev", PUBLIC, "nodad"]).await?;
        inside.ip(&["link", "set", PUBLIC, "up"]).await?;
        inside.host(&["-6", "addr", "replace", &format!("{GATEWAY}/64"), "dev", &outside, "nodad"]).await?;
        inside.host(&["link", "set", &outside, "up"]).await?;
        inside.ip(&["-6", "route", "replace", "default", "via", GATEWAY, "dev", PUBLIC]).await?;
        inside.host(&["-6", "route", "replace", &own, "dev", &outside]).await?;
        sysctl("/proc/sys/net/ipv6/conf/all/forwarding", "1")?;
        if let Some(uplink) = &self.uplink {
            // Forwarding turns off router advertisements on the uplink unless asked for.
            let accept_ra = format!("/proc/sys/net/ipv6/conf/{uplink}/accept_ra");
            if std::fs::read_to_string(&accept_ra).is_ok_and(|v| v.trim() == "1") {
                sysctl(&accept_ra, "2")?;
            }
            sysctl(&format!("/proc/sys/net/ipv6/conf/{uplink}/proxy_ndp"), "1")?;
            inside.host(&["-6", "neigh", "replace", "proxy", &address.to_string(), "dev", uplink]).await?;
        }
        let file = dir.join(format!("{}.nft", table_name(id)));
        load_rules(id.as_str(), nft, &file, &rules(id, address, open)).await
    }

    /// Take container `id`'s public address away: its rules and the node's answers for it (its
    /// link went with its namespace). Whatever is already gone is skipped.
    pub(super) async fn detach(&self, id: &WorkloadId, ip: &Path, nft: &Path) {
        if let Some(uplink) = &self.uplink {
            let address = self.address(id).to_string();
            let args = ["-6", "neigh", "del", "proxy", address.as_str(), "dev", uplink.as_str()];
            let _ = Cmd::new(id.as_str(), ip, args, NFT_TIMEOUT).output().await;
        }
        let table = table_name(id);
        let args = ["delete", "table", "ip6", table.as_str()];
        let _ = Cmd::new(id.as_str(), nft, args, NFT_TIMEOUT).output().await;
    }
}

/// The node's end of container `id`'s public link.
fn link_name(id: &WorkloadId) -> String {
    format!("zp{}", &id.as_str()[..13])
}

/// Container `id`'s nftables table.
fn table_name(id: &WorkloadId) -> String {
    format!("zgp_{id}")
}

/// Container `id`'s rules: ICMPv6, answers and `open` in, its own source address out, nothing
/// to the node.
fn rules(id: &WorkloadId, address: Ipv6Addr, open: &[OpenPort]) -> String {
    let (table, link) = (table_name(id), link_name(id));
    let ports = |protocol: Protocol| {
        let ports: Vec<String> = open.iter().filter(|p| p.protocol == protocol).map(|p| p.port.to_string()).collect();
        if ports.is_empty() {
            String::new()
        } else {
            format!("        oifname \"{link}\" {} dport {{ {} }} accept\n", protocol.as_str(), ports.join(", "))
        }
    };
    format!(
        "table ip6 {table}
delete table ip6 {table}
table ip6 {table} {{
    chain forward {{
        type filter hook forward priority filter;
        iifname \"{link}\" ip6 saddr != {address} drop
        oifname \"{link}\" ct state established,related accept
        oifname \"{link}\" meta l4proto ipv6-icmp accept
{}{}        oifname \"{link}\" drop
    }}
    chain input {{
        type filter hook input priority filter;
        iifname \"{link}\" icmpv6 type {{ nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit }} accept
        iifname \"{link}\" drop
    }}
}}
",
        ports(Protocol::Tcp),
        ports(Protocol::Udp)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_in_the_prefix_differ_by_id_and_skip_the_first_two() {
        let public = PublicIpv6::new("2001:db8:1::/64".parse().unwrap(), None).unwrap();
        let ids: Vec<WorkloadId> = (1..=1000).map(WorkloadId::from_u64).collect();
        let addresses: std::collections::BTreeSet<Ipv6Addr> = ids.iter().map(|id| public.address(id)).collect();
        assert_eq!(addresses.len(), ids.len());
        for a in &addresses {
            assert!(public.prefix().contains(a), "{a}");
            assert!(u128::from(*a) & (u128::MAX >> 64) >= 2, "{a}");
        }
        assert_eq!(public.address(&ids[0]), public.address(&ids[0]));
        assert!(PublicIpv6::new("2001:db8:1::/80".parse().unwrap(), None).is_err());
    }

    #[test]
    fn rules_open_only_the_listed_ports_by_protocol() {
        let id = WorkloadId::from_u64(9);
        let open: Vec<OpenPort> = ["80", "443/tcp", "53/udp"].iter().map(|p| p.parse().unwrap()).collect();
        let text = rules(&id, "2001:db8::5".parse().unwrap(), &open);
        assert!(text.contains("tcp dport { 80, 443 } accept"), "{text}");
        assert!(text.contains("udp dport { 53 } accept"), "{text}");
        let closed = rules(&id, "2001:db8::5".parse().unwrap(), &[]);
        assert!(!closed.contains("dport"), "{closed}");
    }
}
