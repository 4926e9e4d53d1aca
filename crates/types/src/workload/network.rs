//! The network resource workload: one node's share of an owner's private network (a /24 inside
//! the network's /16), with its WireGuard key, port and peers.

use std::net::{Ipv4Addr, SocketAddr};

use base64::Engine;
use ipnet::{IpNet, Ipv4Net};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::validate::{Valid, ValidationError, check_name, ensure};

/// One node's part of a private network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkResource {
    /// Network name, shared by all its resources.
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]{0,63}$")]
    pub name: String,
    /// The whole network: a private /16.
    #[schema(value_type = String, format = "ipv4-network", example = "10.20.0.0/16")]
    pub network_iprange: Ipv4Net,
    /// This node's /24 inside it.
    #[schema(value_type = String, format = "ipv4-network", example = "10.20.1.0/24")]
    pub iprange: Ipv4Net,
    /// WireGuard private key, encrypted to the node's key (hex).
    pub wireguard_private_key_encrypted: String,
    /// WireGuard public key (base64).
    pub wireguard_public_key: String,
    /// UDP port; 0 lets the node allocate a free one.
    #[serde(default)]
    #[schema(maximum = 65535)]
    pub wireguard_listen_port: u16,
    /// The other members of the network.
    #[serde(default)]
    pub peers: Vec<Peer>,
    /// Let workloads on this node's part of the network reach outside it through the node's
    /// own uplink (source addresses translated, no inbound connections).
    #[serde(default)]
    pub egress: bool,
}

/// Another member of the network as this node sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    /// The peer's WireGuard public key (base64).
    pub public_key: String,
    /// `ip:port` or `[ip6]:port`; empty when the peer has no public endpoint.
    #[serde(default)]
    pub endpoint: String,
    /// The peer's /24.
    #[schema(value_type = String, format = "ipv4-network")]
    pub iprange: Ipv4Net,
    /// Prefixes routed through this peer.
    #[serde(default)]
    #[schema(value_type = Vec<String>, format = "ip-network")]
    pub allowed_iprange: Vec<IpNet>,
}

fn is_private(net: &Ipv4Net) -> bool {
    ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]
        .iter()
        .any(|p| p.parse::<Ipv4Net>().is_ok_and(|p| p.contains(net)))
}

fn check_wireguard_key(value: &str, field: &str) -> Valid {
    let ok = base64::engine::general_purpose::STANDARD.decode(value).is_ok_and(|b| b.len() == 32);
    ensure(ok, field, || "must be a base64 WireGuard key of 32 bytes".into())
}

/// Check that `ip` may be given to a workload in `subnet` (a node's /24): inside it, and not its
/// network address, its gateway (`.1`) or its broadcast address.
pub fn check_host_ip(ip: Ipv4Addr, subnet: Ipv4Net) -> Result<(), String> {
    if !subnet.contains(&ip) {
        return Err(format!("{ip} is outside the node's subnet {subnet}"));
    }
    let gateway = Ipv4Addr::from(u32::from(subnet.network()) + 1);
    if ip == subnet.network() {
        return Err(format!("{ip} is the network address of {subnet}"));
    }
    if ip == gateway {
        return Err(format!("{ip} is the gateway of {subnet}"));
    }
    if ip == subnet.broadcast() {
        return Err(format!("{ip} is the broadcast address of {subnet}"));
    }
    Ok(())
}

impl NetworkResource {
    pub(super) fn validate(&self) -> Valid {
        check_name(&self.name, "name")?;
        let net = self.network_iprange;
        ensure(net.prefix_len() == 16 && net.network() == net.addr(), "network_iprange", || {
            format!("{net} must be a /16 network such as 10.20.0.0/16")
        })?;
        ensure(is_private(&net), "network_iprange", || {
            format!("{net} is not private: use a range inside 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16")
        })?;
        check_subnet(self.iprange, net, "iprange")?;
        crate::sealed::sealed_key_bytes(&self.wireguard_private_key_encrypted)
            .map_err(|e| ValidationError::new("wireguard_private_key_encrypted", e.to_string()))?;
        check_wireguard_key(&self.wireguard_public_key, "wireguard_public_key")?;
        let mut seen = vec![self.iprange];
        for (i, p) in self.peers.iter().enumerate() {
            let at = |f: &str| format!("peers[{i}].{f}");
            check_wireguard_key(&p.public_key, &at("public_key"))?;
            ensure(p.public_key != self.wireguard_public_key, &at("public_key"), || {
                "is this resource's own key".into()
            })?;
            if !p.endpoint.is_empty() {
                ensure(p.endpoint.parse::<SocketAddr>().is_ok(), &at("endpoint"), || {
                    format!("{:?} is not ip:port or [ip6]:port", p.endpoint)
                })?;
            }
            check_subnet(p.iprange, net, &at("iprange"))?;
            ensure(!seen.contains(&p.iprange), &at("iprange"), || {
                format!("{} is already used by this resource or another peer", p.iprange)
            })?;
            seen.push(p.iprange);
        }
        Ok(())
    }
}

fn check_subnet(subnet: Ipv4Net, network: Ipv4Net, field: &str) -> Valid {
    ensure(subnet.prefix_len() == 24 && subnet.network() == subnet.addr(), field, || {
        format!("{subnet} must be a /24 such as {}/24", Ipv4Addr::from(u32::from(network.network()) | 0x100))
    })?;
    ensure(network.contains(&subnet), field, || format!("{subnet} is not inside the network {network}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ips_exclude_network_gateway_and_broadcast() {
        let subnet: Ipv4Net = "10.1.2.0/24".parse().unwrap();
        assert!(check_host_ip("10.1.2.10".parse().unwrap(), subnet).is_ok());
        for (ip, why) in [
            ("10.1.3.10", "outside"),
            ("10.1.2.0", "network address"),
            ("10.1.2.1", "gateway"),
            ("10.1.2.255", "broadcast"),
        ] {
            let err = check_host_ip(ip.parse().unwrap(), subnet).unwrap_err();
            assert!(err.contains(why), "{ip}: {err}");
        }
    }
}
