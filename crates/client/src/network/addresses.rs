//! Handing out addresses: a /24 of the network for a new member or access point, and a host
//! address in a member's /24 for a container.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use zgrid_types::NodeId;
use zgrid_types::workload::check_host_ip;

use super::{Network, NetworkError};

/// The /24 of `network` (a /16) whose third octet is `third`.
fn subnet_at(network: Ipv4Net, third: u8) -> Ipv4Net {
    let [a, b, ..] = network.network().octets();
    Ipv4Net::new(Ipv4Addr::new(a, b, third, 0), 24).expect("24 is a valid IPv4 prefix length")
}

/// The lowest /24 of `network` whose third octet is at least `from` and that `used` does not hold.
fn lowest_free(network: Ipv4Net, used: &[Ipv4Net], from: u8) -> Result<Ipv4Net, NetworkError> {
    (from..=u8::MAX)
        .map(|third| subnet_at(network, third))
        .find(|s| !used.contains(s))
        .ok_or(NetworkError::Full(network))
}

/// The lowest /24 of `network` (a /16) that `used` does not hold, from `x.y.1.0/24` on
/// (`x.y.0.0/24` is left out).
pub fn free_subnet(network: Ipv4Net, used: &[Ipv4Net]) -> Result<Ipv4Net, NetworkError> {
    lowest_free(network, used, 1)
}

/// Check a /24 chosen by the user: a /24 network address inside `network` that `used` does not hold.
pub fn check_subnet(network: Ipv4Net, subnet: Ipv4Net, used: &[Ipv4Net]) -> Result<(), NetworkError> {
    if subnet.prefix_len() != 24 || subnet.addr() != subnet.network() {
        let third = if network.contains(&subnet.addr()) { subnet.addr().octets()[2] } else { 1 };
        return Err(NetworkError::NotSlash24 { subnet, example: subnet_at(network, third) });
    }
    if !network.contains(&subnet) {
        return Err(NetworkError::OutsideNetwork { subnet, network });
    }
    if used.contains(&subnet) {
        return Err(NetworkError::SubnetTaken { subnet });
    }
    Ok(())
}

impl Network {
    /// Every /24 in use: the members' and the access points'.
    pub fn used_subnets(&self) -> Vec<Ipv4Net> {
        self.members.iter().map(|m| m.subnet).chain(self.access_points.iter().map(|a| a.subnet)).collect()
    }

    /// The /24 for a new member: `chosen` after checking it, else the lowest free one. While
    /// hidden members use the relay, a public newcomer must sort after it, or it would become
    /// the relay and change routes in use.
    pub fn member_subnet(&self, public: bool, chosen: Option<Ipv4Net>) -> Result<Ipv4Net, NetworkError> {
        let used = self.used_subnets();
        let has_hidden = self.members.iter().any(|m| !m.is_public());
        let relay = self.relay().filter(|_| public && has_hidden).map(|r| r.subnet);
        match (chosen, relay) {
            (Some(subnet), _) => {
                check_subnet(self.cidr, subnet, &used)?;
                match relay {
                    Some(relay) if subnet < relay => Err(NetworkError::BelowRelay { subnet, relay }),
                    _ => Ok(subnet),
                }
            }
            (None, Some(relay)) => lowest_free(self.cidr, &used, relay.network().octets()[2].saturating_add(1)),
            (None, None) => free_subnet(self.cidr, &used),
        }
    }

    /// The /24 for a new access point: `chosen` after checking it, else the lowest free one.
    pub fn access_subnet(&self, chosen: Option<Ipv4Net>) -> Result<Ipv4Net, NetworkError> {
        let used = self.used_subnets();
        match chosen {
            Some(subnet) => check_subnet(self.cidr, subnet, &used).map(|()| subnet),
            None => free_subnet(self.cidr, &used),
        }
    }

    /// The lowest address from `.2` in `node`'s /24 that no workload joining the network there has.
    pub fn free_ip(&self, node: &NodeId) -> Result<Ipv4Addr, NetworkError> {
        let subnet = self.member(node)?.subnet;
        let [a, b, c, _] = subnet.network().octets();
        (2..u8::MAX)
            .map(|host| Ipv4Addr::new(a, b, c, host))
            .find(|ip| !self.attachments_on(node).any(|w| w.ip == *ip))
            .ok_or(NetworkError::NoFreeIp { subnet, node: node.to_string() })
    }

    /// Check an address chosen by the user for a workload on `node`: a host address of the
    /// node's /24 that no workload joining the network there has.
    pub fn check_ip(&self, node: &NodeId, ip: Ipv4Addr) -> Result<(), NetworkError> {
        check_host_ip(ip, self.member(node)?.subnet).map_err(NetworkError::BadIp)?;
        match self.attachments_on(node).find(|w| w.ip == ip) {
            Some(w) => Err(NetworkError::IpTaken { ip, by: w.workload_id.clone() }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::{AccessPoint, Attachment};
    use super::*;
    use zgrid_types::WorkloadKind;

    #[test]
    fn free_subnets_start_at_one_and_fill_holes() {
        let network = net("10.20.0.0/16");
        assert_eq!(free_subnet(network, &[]).unwrap(), net("10.20.1.0/24"));
        let used = [net("10.20.1.0/24"), net("10.20.3.0/24")];
        assert_eq!(free_subnet(network, &used).unwrap(), net("10.20.2.0/24"));
        let all: Vec<_> = (1..=255).map(|t| subnet_at(network, t)).collect();
        assert!(matches!(free_subnet(network, &all), Err(NetworkError::Full(_))));
    }

    #[test]
    fn chosen_subnets_are_checked() {
        let network = net("10.20.0.0/16");
        let used = [net("10.20.1.0/24")];
        assert!(check_subnet(network, net("10.20.7.0/24"), &used).is_ok());
        let err = check_subnet(network, net("10.20.7.5/24"), &used).unwrap_err();
        assert_eq!(err.to_string(), "10.20.7.5/24 is not a /24 network address such as 10.20.7.0/24");
        assert!(matches!(check_subnet(network, net("10.20.0.0/23"), &used), Err(NetworkError::NotSlash24 { .. })));
        assert!(matches!(check_subnet(network, net("10.21.1.0/24"), &used), Err(NetworkError::OutsideNetwork { .. })));
        assert!(matches!(check_subnet(network, net("10.20.1.0/24"), &used), Err(NetworkError::SubnetTaken { .. })));
    }

    #[test]
    fn public_newcomers_stay_above_the_relay_while_hidden_members_use_it() {
        let network = planned(&[(3, Some("1.1.1.3"), None), (4, None, None)]);
        assert_eq!(network.member_subnet(true, None).unwrap(), net("10.20.5.0/24"));
        assert_eq!(network.member_subnet(false, None).unwrap(), net("10.20.1.0/24"));
        let err = network.member_subnet(true, Some(net("10.20.1.0/24"))).unwrap_err();
        assert!(matches!(err, NetworkError::BelowRelay { .. }), "{err}");
        assert_eq!(network.member_subnet(true, Some(net("10.20.9.0/24"))).unwrap(), net("10.20.9.0/24"));
        let public_only = planned(&[(3, Some("1.1.1.3"), None)]);
        assert_eq!(public_only.member_subnet(true, None).unwrap(), net("10.20.1.0/24"));
    }

    #[test]
    fn access_subnets_avoid_members_and_other_access_points() {
        let mut network = planned(&[(1, Some("1.1.1.1"), None)]);
        network.access_points.push(AccessPoint { node_id: node(1), subnet: net("10.20.2.0/24"), public_key: key(9) });
        assert_eq!(network.access_subnet(None).unwrap(), net("10.20.3.0/24"));
        assert!(network.access_subnet(Some(net("10.20.2.0/24"))).is_err());
    }

    #[test]
    fn free_ips_skip_used_ones_per_node() {
        let mut network = planned(&[(1, Some("1.1.1.1"), None), (2, None, None)]);
        let (a, b) = (node(1), node(2));
        assert_eq!(network.free_ip(&a).unwrap(), ip4("10.20.1.2"));
        for (node_id, host) in [(a, "10.20.1.2"), (a, "10.20.1.3"), (b, "10.20.1.4")] {
            let workload_id = zgrid_types::WorkloadId::from_u64(u64::from(ip4(host).octets()[3]));
            network.attach(Attachment { workload_id, kind: WorkloadKind::Container, node_id, ip: ip4(host) });
        }
        assert_eq!(network.free_ip(&a).unwrap(), ip4("10.20.1.4"), "planned workloads count too");
        assert_eq!(network.free_ip(&b).unwrap(), ip4("10.20.2.2"));
        assert!(network.check_ip(&a, ip4("10.20.1.9")).is_ok());
        assert!(matches!(network.check_ip(&a, ip4("10.20.1.3")), Err(NetworkError::IpTaken { .. })));
        let err = network.check_ip(&a, ip4("10.20.1.1")).unwrap_err();
        assert!(err.to_string().contains("gateway"), "{err}");
        assert!(matches!(network.free_ip(&node(7)), Err(NetworkError::NotMember { .. })));
        for host in 4..u8::MAX {
            let ip = Ipv4Addr::new(10, 20, 1, host);
            let workload_id = zgrid_types::WorkloadId::from_u64(u64::from(host));
            network.attachments.push(Attachment { workload_id, kind: WorkloadKind::Container, node_id: a, ip });
        }
        assert!(matches!(network.free_ip(&a), Err(NetworkError::NoFreeIp { .. })));
    }
}
