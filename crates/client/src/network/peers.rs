//! Who peers with whom. A member with a public address is reachable; a hidden one (behind NAT)
//! is not, so it connects out:
//!
//! - public and public: each lists the other with its endpoint;
//! - public and hidden: the public member lists the hidden one without an endpoint (the hidden
//!   one connects in), the hidden one lists the public one with its endpoint;
//! - hidden and hidden: no tunnel; both go through the relay, the first public member by subnet
//!   order, whose entry on each hidden member also routes the other hidden members' subnets.
//!
//! Every entry routes the peer's own subnet and those of the access points it serves; on the
//! access node itself each access point is a peer of its own. An endpoint not known yet (the
//! node has not reported its port) is left empty until the next update.

use ipnet::IpNet;
use zgrid_types::NodeId;
use zgrid_types::workload::Peer;

use super::{Member, Network, NetworkError};

/// Whether two members have a tunnel of their own: at least one of them is reachable.
pub(super) fn direct(a: &Member, b: &Member) -> bool {
    a.is_public() || b.is_public()
}

impl Network {
    /// The member hidden members reach each other through: the first public member by subnet.
    pub fn relay(&self) -> Option<&Member> {
        self.members.iter().find(|m| m.is_public())
    }

    /// The prefixes routed to `member`: its subnet, then the subnets of its access points.
    fn routes_of(&self, member: &Member) -> Vec<IpNet> {
        let access = self.access_points.iter().filter(|a| a.node_id == member.node_id).map(|a| a.subnet.into());
        std::iter::once(member.subnet.into()).chain(access).collect()
    }

    /// The peer list of the member on `node`, by the rules of this module: other members by
    /// subnet order, then its access points. Fails when the member is hidden and no member is
    /// public, since it could then reach no one.
    pub fn peers_for(&self, node: &NodeId) -> Result<Vec<Peer>, NetworkError> {
        let me = self.member(node)?;
        let relay = self.relay();
        if !me.is_public() && relay.is_none() && self.members.len() > 1 {
            let hidden = self.members.iter().map(|m| m.node_id).collect();
            return Err(NetworkError::NoPublicMember { network: self.name.clone(), hidden });
        }
        let mut peers = Vec::new();
        for other in self.members.iter().filter(|o| o.node_id != me.node_id && direct(me, o)) {
            let mut allowed_iprange = self.routes_of(other);
            if !me.is_public() && relay.is_some_and(|r| r.node_id == other.node_id) {
                for hidden in self.members.iter().filter(|h| !h.is_public() && h.node_id != me.node_id) {
                    allowed_iprange.extend(self.routes_of(hidden));
                }
            }
            peers.push(Peer {
                public_key: other.public_key.clone(),
                endpoint: other.endpoint().map(|e| e.to_string()).unwrap_or_default(),
                iprange: other.subnet,
                allowed_iprange,
            });
        }
        for access in self.access_points.iter().filter(|a| a.node_id == me.node_id) {
            peers.push(Peer {
                public_key: access.public_key.clone(),
                endpoint: String::new(),
                iprange: access.subnet,
                allowed_iprange: vec![access.subnet.into()],
            });
        }
        Ok(peers)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::{AccessPoint, Member};
    use super::*;

    /// `(peer key seed, endpoint, iprange, allowed)` of each peer, for short assertions.
    fn summary(network: &Network, n: u8) -> Vec<(String, String, String, Vec<String>)> {
        let peers = network.peers_for(&node(n)).unwrap();
        peers
            .into_iter()
            .map(|p| {
                let allowed = p.allowed_iprange.iter().map(ToString::to_string).collect();
                (p.public_key, p.endpoint, p.iprange.to_string(), allowed)
            })
            .collect()
    }

    fn key_of(network: &Network, n: u8) -> String {
        network.member(&node(n)).unwrap().public_key.clone()
    }

    #[test]
    fn public_members_peer_with_endpoints() {
        let network = planned(&[(1, Some("1.1.1.1"), Some(7001)), (2, Some("1.1.1.2"), Some(7002))]);
        let on_1 = summary(&network, 1);
        assert_eq!(
            on_1,
            [(key_of(&network, 2), "1.1.1.2:7002".into(), "10.20.2.0/24".into(), vec!["10.20.2.0/24".into()])]
        );
        assert_eq!(summary(&network, 2)[0].1, "1.1.1.1:7001");
    }

    #[test]
    fn unknown_ports_leave_the_endpoint_empty() {
        let network = planned(&[(1, Some("1.1.1.1"), None), (2, Some("1.1.1.2"), Some(7002))]);
        assert_eq!(summary(&network, 2)[0].1, "");
        assert_eq!(summary(&network, 1)[0].1, "1.1.1.2:7002");
    }

    #[test]
    fn hidden_members_connect_out_to_public_ones_and_meet_through_the_relay() {
        // 1 and 3 public (1 is the relay: lowest subnet), 2 and 4 hidden
        let network = planned(&[
            (1, Some("1.1.1.1"), Some(7001)),
            (2, None, Some(7002)),
            (3, Some("1.1.1.3"), Some(7003)),
            (4, None, None),
        ]);
        assert_eq!(network.relay().unwrap().node_id, node(1));
        let on_1 = summary(&network, 1);
        assert_eq!(on_1.len(), 3, "a public member peers with everyone");
        assert_eq!((on_1[0].1.as_str(), on_1[0].2.as_str()), ("", "10.20.2.0/24"), "hidden: no endpoint");
        assert_eq!(on_1[1].1, "1.1.1.3:7003");
        let on_2 = summary(&network, 2);
        let ranges: Vec<_> = on_2.iter().map(|p| (p.1.as_str(), p.2.as_str())).collect();
        assert_eq!(ranges, [("1.1.1.1:7001", "10.20.1.0/24"), ("1.1.1.3:7003", "10.20.3.0/24")], "no hidden peer");
        assert_eq!(on_2[0].3, ["10.20.1.0/24", "10.20.4.0/24"], "the relay carries the other hidden member");
        assert_eq!(on_2[1].3, ["10.20.3.0/24"]);
        assert_eq!(summary(&network, 4)[0].3, ["10.20.1.0/24", "10.20.2.0/24"]);
    }

    #[test]
    fn access_points_are_peers_of_their_node_and_routed_through_it_elsewhere() {
        let mut network = planned(&[(1, Some("1.1.1.1"), Some(7001)), (2, None, None), (3, None, None)]);
        network.access_points.push(AccessPoint { node_id: node(3), subnet: net("10.20.9.0/24"), public_key: key(9) });
        network.access_points.push(AccessPoint { node_id: node(1), subnet: net("10.20.8.0/24"), public_key: key(8) });
        let on_1 = summary(&network, 1);
        assert_eq!(on_1[1].3, ["10.20.3.0/24", "10.20.9.0/24"], "3's access point is routed to 3");
        assert_eq!(on_1[2], (key(8), String::new(), "10.20.8.0/24".into(), vec!["10.20.8.0/24".into()]));
        assert_eq!(summary(&network, 2)[0].3, ["10.20.1.0/24", "10.20.8.0/24", "10.20.3.0/24", "10.20.9.0/24"]);
        for n in 1..=3 {
            let nr = network.resource(&node(n)).unwrap();
            let mut ranges: Vec<_> = nr.peers.iter().map(|p| p.iprange).chain([nr.iprange]).collect();
            ranges.sort();
            ranges.dedup();
            assert_eq!(ranges.len(), nr.peers.len() + 1, "peer ranges are unique on node {n}");
        }
    }

    #[test]
    fn hidden_members_without_a_public_one_are_refused() {
        let network = planned(&[(1, None, None), (2, None, None)]);
        let err = network.peers_for(&node(1)).unwrap_err();
        assert!(err.to_string().contains("add a node that has a public endpoint"), "{err}");
        assert!(network.check().is_err());
        let alone = planned(&[(1, None, None)]);
        assert_eq!(alone.peers_for(&node(1)).unwrap(), []);
        assert!(alone.check().is_ok());
    }

    #[test]
    fn adding_members_and_access_points_only_adds_to_existing_peers() {
        let mut network = planned(&[(2, Some("1.1.1.2"), Some(7002)), (3, None, None), (4, None, None)]);
        let before: Vec<Vec<Peer>> = (2..=4).map(|n| network.peers_for(&node(n)).unwrap()).collect();
        // a public node, given the lowest free subnet above the relay, and a hidden one
        let subnet = network.member_subnet(true, None).unwrap();
        assert_eq!(subnet, net("10.20.5.0/24"), "10.20.1.0/24 would make it the relay");
        network.add_member(Member::generate(node(5), Some(ip("1.1.1.5")), subnet)).unwrap();
        let subnet = network.member_subnet(false, None).unwrap();
        network.add_member(Member::generate(node(6), None, subnet)).unwrap();
        network.access_points.push(AccessPoint { node_id: node(2), subnet: net("10.20.7.0/24"), public_key: key(7) });
        for (n, old) in (2..=4).zip(before) {
            let new = network.peers_for(&node(n)).unwrap();
            for peer in old {
                let now = new.iter().find(|p| p.public_key == peer.public_key).expect("peer kept");
                assert_eq!((&now.endpoint, now.iprange), (&peer.endpoint, peer.iprange), "node {n}");
                assert!(peer.allowed_iprange.iter().all(|r| now.allowed_iprange.contains(r)), "node {n}");
            }
        }
    }
}
