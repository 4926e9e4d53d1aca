//! Addresses outside the private networks: public IPv6 and Yggdrasil. A node with a public
//! IPv6 prefix, or with Yggdrasil and so its /64 of the Yggdrasil network, gives a container
//! that asks for one an address in it, derived from the workload id (so it needs no record and
//! is the same after restarts and reboots). A veth pair joins the container's namespace (`pub0`
//! or `ygg0`, the address as a /128, a route through `fe80::1`: the default one for the
//! internet, `200::/7` for Yggdrasil) to the agent's namespace (`zp…` or `zy…`, `fe80::1`, a
//! route to the address). Where the public prefix is on the node's uplink rather than routed to
//! it, the node answers neighbour solicitations for the address there (proxy NDP); Yggdrasil
//! delivers its subnet to the node's `zgy0` itself.
//!
//! One nftables table per container and kind (`ip6 zgp_<id>`, `ip6 zgy_<id>`) keeps it in its
//! place: from outside only ICMPv6, answers and the ports its owner opened reach it; it sends
//! from its own address only; it cannot reach the node itself. Other tenants' addresses are the
//! outside to it.

use std::net::Ipv6Addr;
use std::path::Path;

use ipnet::Ipv6Net;
use zgrid_types::WorkloadId;
use zgrid_types::workload::{OpenPort, Protocol};

use super::netns::Netns;
use super::{NFT_TIMEOUT, load_rules, sysctl};
use crate::runtime::RuntimeError;
use crate::runtime::command::Cmd;

/// The node's address on every outside link: the containers' IPv6 gateway.
const GATEWAY: &str = "fe80::1";

/// Which outside network addresses are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// The internet, through the node's public IPv6 prefix.
    PublicIpv6,
    /// The Yggdrasil network, through the node's Yggdrasil subnet.
    Yggdrasil,
}

impl Reach {
    /// The container's end of its link of this kind.
    fn inside_link(self) -> &'static str {
        match self {
            Self::PublicIpv6 => "pub0",
            Self::Yggdrasil => "ygg0",
        }
    }

    /// What the container routes through its link: everything, or the Yggdrasil network.
    fn routes(self) -> &'static str {
        match self {
            Self::PublicIpv6 => "default",
            Self::Yggdrasil => "200::/7",
        }
    }

    /// The letter naming the node's end of the link (`zp…`, `zy…`) and the table (`zgp_…`).
    fn letter(self) -> char {
        match self {
            Self::PublicIpv6 => 'p',
            Self::Yggdrasil => 'y',
        }
    }
}

/// Where a node's outside addresses of one kind come from: a prefix, and for a public prefix on
/// a link, the interface it is on.
#[derive(Debug, Clone)]
pub struct OutsideIpv6 {
    reach: Reach,
    prefix: Ipv6Net,
    uplink: Option<String>,
}

impl OutsideIpv6 {
    /// Public addresses from `prefix` (a /64 or larger, so addresses derived from ids do not
    /// collide), on interface `uplink` of the agent's namespace when the prefix is on a link
    /// rather than routed to the node: there the node answers for its containers' addresses.
    pub fn public(prefix: Ipv6Net, uplink: Option<String>) -> Result<Self, String> {
        if prefix.prefix_len() > 64 {
            return Err(format!("{prefix}: give a /64 or a larger prefix, so every container gets its own address"));
        }
        if let Some(dev) = &uplink
            && !Path::new("/sys/class/net").join(dev).exists()
        {
            return Err(format!("--public-ipv6-dev {dev}: no such interface on this node"));
        }
        Ok(Self { reach: Reach::PublicIpv6, prefix: prefix.trunc(), uplink })
    }

    /// Yggdrasil addresses from the node's Yggdrasil `subnet` (routed to the node by its daemon).
    pub fn yggdrasil(subnet: Ipv6Net) -> Self {
        Self { reach: Reach::Yggdrasil, prefix: subnet.trunc(), uplink: None }
    }

    /// Which network the addresses reach.
    pub fn reach(&self) -> Reach {
        self.reach
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

    /// Give container `id` (namespace `inside`) its address, reachable on `open` only.
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
        let (outside, link) = (self.link_name(id), self.reach.inside_link());
        if !inside.has_link(link).await? {
            if inside.host_has_link(&outside).await? {
                inside.host(&["link", "delete", &outside]).await?;
            }
            inside
                .host(&["link", "add", &outside, "type", "veth", "peer", "name", link, "netns", inside.name()])
                .await?;
        }
        let own = format!("{address}/128");
        inside.ip(&["-6", "addr", "replace", &own, "dev", link, "nodad"]).await?;
        inside.ip(&["link", "set", link, "up"]).await?;
        inside.host(&["-6", "addr", "replace", &format!("{GATEWAY}/64"), "dev", &outside, "nodad"]).await?;
        inside.host(&["link", "set", &outside, "up"]).await?;
        inside.ip(&["-6", "route", "replace", self.reach.routes(), "via", GATEWAY, "dev", link]).await?;
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
        let table = self.table_name(id);
        let file = dir.join(format!("{table}.nft"));
        load_rules(id.as_str(), nft, &file, &rules(&table, &outside, address, open)).await
    }

    /// Take container `id`'s address away: its rules and the node's answers for it (its link
    /// went with its namespace). Whatever is already gone is skipped.
    pub(super) async fn detach(&self, id: &WorkloadId, ip: &Path, nft: &Path) {
        if let Some(uplink) = &self.uplink {
            let address = self.address(id).to_string();
            let args = ["-6", "neigh", "del", "proxy", address.as_str(), "dev", uplink.as_str()];
            let _ = Cmd::new(id.as_str(), ip, args, NFT_TIMEOUT).output().await;
        }
        let table = self.table_name(id);
        let args = ["delete", "table", "ip6", table.as_str()];
        let _ = Cmd::new(id.as_str(), nft, args, NFT_TIMEOUT).output().await;
    }

    /// The node's end of container `id`'s link.
    fn link_name(&self, id: &WorkloadId) -> String {
        format!("z{}{}", self.reach.letter(), &id.as_str()[..13])
    }

    /// Container `id`'s nftables table.
    fn table_name(&self, id: &WorkloadId) -> String {
        format!("zg{}_{id}", self.reach.letter())
    }
}

/// The rules of `table` for the container behind `link` at `address`: ICMPv6, answers and
/// `open` in, its own source address out, nothing to the node.
fn rules(table: &str, link: &str, address: Ipv6Addr, open: &[OpenPort]) -> String {
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
        let public = OutsideIpv6::public("2001:db8:1::/64".parse().unwrap(), None).unwrap();
        let ids: Vec<WorkloadId> = (1..=1000).map(WorkloadId::from_u64).collect();
        let addresses: std::collections::BTreeSet<Ipv6Addr> = ids.iter().map(|id| public.address(id)).collect();
        assert_eq!(addresses.len(), ids.len());
        for a in &addresses {
            assert!(public.prefix().contains(a), "{a}");
            assert!(u128::from(*a) & (u128::MAX >> 64) >= 2, "{a}");
        }
        assert_eq!(public.address(&ids[0]), public.address(&ids[0]));
        assert!(OutsideIpv6::public("2001:db8:1::/80".parse().unwrap(), None).is_err());
        let yggdrasil = OutsideIpv6::yggdrasil("300:224b:7b9c:93fb::/64".parse().unwrap());
        assert!(yggdrasil.prefix().contains(&yggdrasil.address(&ids[0])));
        let names = |o: &OutsideIpv6| (o.link_name(&ids[0]), o.table_name(&ids[0]));
        assert_ne!(names(&public), names(&yggdrasil), "a container with both gets two links and tables");
        assert!(names(&yggdrasil).0.len() <= 15);
    }

    #[test]
    fn rules_open_only_the_listed_ports_by_protocol() {
        let open: Vec<OpenPort> = ["80", "443/tcp", "53/udp"].iter().map(|p| p.parse().unwrap()).collect();
        let text = rules("zgp_9", "zp9", "2001:db8::5".parse().unwrap(), &open);
        assert!(text.contains("tcp dport { 80, 443 } accept"), "{text}");
        assert!(text.contains("udp dport { 53 } accept"), "{text}");
        let closed = rules("zgp_9", "zp9", "2001:db8::5".parse().unwrap(), &[]);
        assert!(!closed.contains("dport"), "{closed}");
    }
}
