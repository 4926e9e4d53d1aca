//! Private networks as the explorer holds them: one `network_resource` workload per member node
//! (its own /24 of the network's /16, its WireGuard key and its peers), plus the access points
//! (a deployer's own machines) that members list as extra peers.
//!
//! [`Network::load`] reads an owner's network from the explorer; the rest is pure and tested:
//! [`Network::peers_for`] decides who peers with whom (hidden nodes meet through a relay),
//! [`free_subnet`] and [`Network::free_ip`] hand out addresses, [`Network::wg_quick_config`]
//! writes an access point's configuration and [`Network::dot`] draws the network.

mod access;
mod addresses;
mod error;
mod graph;
mod load;
mod peers;
#[cfg(test)]
mod testing;

pub use access::{AccessKey, check_wg_quick_file};
pub use addresses::{check_subnet, free_subnet};
pub use error::NetworkError;
pub use load::reported_port;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use base64::Engine;
use ipnet::Ipv4Net;
use serde::Serialize;
use zgrid_types::api::WorkloadRecord;
use zgrid_types::workload::NetworkResource;
use zgrid_types::{NodeId, WorkloadData, WorkloadId, WorkloadKind};

/// One node's share of the network. Its JSON form adds `endpoint` and `workload_id`.
#[derive(Debug, Clone)]
pub struct Member {
    /// The node.
    pub node_id: NodeId,
    /// Its /24.
    pub subnet: Ipv4Net,
    /// Its WireGuard public key (base64).
    pub public_key: String,
    /// The node's public address, `None` for a hidden node (behind NAT).
    pub public_ip: Option<IpAddr>,
    /// The WireGuard port the node reported, once it did.
    pub listen_port: Option<u16>,
    /// The network resource workload; `None` for a member planned but not submitted yet.
    pub record: Option<WorkloadRecord>,
    /// The WireGuard private key sealed to the node (hex).
    sealed_private_key: String,
}

impl Serialize for Member {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct View<'a> {
            node_id: &'a NodeId,
            subnet: Ipv4Net,
            public_key: &'a str,
            public_ip: Option<IpAddr>,
            listen_port: Option<u16>,
            endpoint: Option<SocketAddr>,
            workload_id: Option<&'a WorkloadId>,
            record: Option<&'a WorkloadRecord>,
        }
        View {
            node_id: &self.node_id,
            subnet: self.subnet,
            public_key: &self.public_key,
            public_ip: self.public_ip,
            listen_port: self.listen_port,
            endpoint: self.endpoint(),
            workload_id: self.record.as_ref().map(|r| &r.workload.payload.id),
            record: self.record.as_ref(),
        }
        .serialize(serializer)
    }
}

impl Member {
    /// A new member on `node_id` with a fresh WireGuard key pair whose private half is sealed to
    /// the node, so only the node can read it.
    pub fn generate(node_id: NodeId, public_ip: Option<IpAddr>, subnet: Ipv4Net) -> Self {
        let (private, public) = zgrid_types::sealed::wireguard_keypair();
        Self {
            node_id,
            subnet,
            public_key: base64::engine::general_purpose::STANDARD.encode(public),
            public_ip,
            listen_port: None,
            record: None,
            sealed_private_key: hex::encode(zgrid_types::sealed::seal(&node_id, &private)),
        }
    }

    /// Whether other nodes can reach it (it has a public address).
    pub fn is_public(&self) -> bool {
        self.public_ip.is_some()
    }

    /// `ip:port` peers connect to, once both are known.
    pub fn endpoint(&self) -> Option<SocketAddr> {
        Some(SocketAddr::new(self.public_ip?, self.listen_port?))
    }

    /// How peers reach it, for people: `ip:port`, `ip (port not reported)` or `hidden`.
    pub fn reachability(&self) -> String {
        match (self.endpoint(), self.public_ip) {
            (Some(endpoint), _) => endpoint.to_string(),
            (None, Some(ip)) => format!("{ip} (port not reported)"),
            (None, None) => "hidden".into(),
        }
    }

    /// The network resource as submitted, for a member that has been.
    pub fn resource(&self) -> Option<&NetworkResource> {
        match &self.record.as_ref()?.workload.payload.data {
            WorkloadData::NetworkResource(nr) => Some(nr),
            _ => None,
        }
    }
}

/// A machine outside the grid (a deployer's laptop) that reaches the network through one
/// member, the access node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccessPoint {
    /// The access node.
    pub node_id: NodeId,
    /// The access point's own /24.
    pub subnet: Ipv4Net,
    /// Its WireGuard public key (base64).
    pub public_key: String,
}

/// A container or VM of the owner that joins the network.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attachment {
    /// The workload.
    pub workload_id: WorkloadId,
    /// Its kind.
    pub kind: WorkloadKind,
    /// Its node.
    pub node_id: NodeId,
    /// Its address in the node's /24.
    pub ip: Ipv4Addr,
}

/// One owner's network: its members sorted by subnet, its access points and what joins it.
#[derive(Debug, Clone, Serialize)]
pub struct Network {
    name: String,
    cidr: Ipv4Net,
    members: Vec<Member>,
    access_points: Vec<AccessPoint>,
    attachments: Vec<Attachment>,
    /// Whether members let their workloads reach outside through the node's uplink.
    egress: bool,
}

impl Network {
    /// An empty network `name` over `cidr`, which must be a /16 network address.
    pub fn new(name: &str, cidr: Ipv4Net) -> Result<Self, NetworkError> {
        if cidr.prefix_len() != 16 || cidr.addr() != cidr.network() {
            return Err(NetworkError::NotSlash16(cidr));
        }
        let (members, access_points, attachments) = (vec![], vec![], vec![]);
        Ok(Self { name: name.to_string(), cidr, members, access_points, attachments, egress: false })
    }

    /// The same network, with new members letting their workloads reach outside through
    /// their node's uplink (`egress`) or not.
    pub fn with_egress(mut self, egress: bool) -> Self {
        self.egress = egress;
        self
    }

    /// Whether new members get egress through their node's uplink.
    pub fn egress(&self) -> bool {
        self.egress
    }

    /// The network's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The network's /16.
    pub fn cidr(&self) -> Ipv4Net {
        self.cidr
    }

    /// The members, sorted by subnet.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The access points, sorted by subnet.
    pub fn access_points(&self) -> &[AccessPoint] {
        &self.access_points
    }

    /// The owner's active workloads that join the network.
    pub fn attachments(&self) -> &[Attachment] {
        &self.attachments
    }

    /// Those of them on `node`.
    pub fn attachments_on<'a>(&'a self, node: &'a NodeId) -> impl Iterator<Item = &'a Attachment> + 'a {
        self.attachments.iter().filter(move |a| a.node_id == *node)
    }

    /// Count a workload about to join the network (signed but not submitted yet), so that
    /// [`Network::free_ip`] skips its address.
    pub fn attach(&mut self, attachment: Attachment) {
        self.attachments.push(attachment);
    }

    /// The member on `node`.
    pub fn member(&self, node: &NodeId) -> Result<&Member, NetworkError> {
        self.members.iter().find(|m| m.node_id == *node).ok_or_else(|| self.not_member(node))
    }

    fn not_member(&self, node: &NodeId) -> NetworkError {
        NetworkError::NotMember { network: self.name.clone(), node: node.to_string() }
    }

    /// The latest expiry among the members' workloads.
    pub fn latest_expiry(&self) -> Option<i64> {
        self.members.iter().filter_map(|m| Some(m.record.as_ref()?.workload.payload.expires_at)).max()
    }

    /// Add a planned member; its node must not be a member yet and its subnet must be free.
    pub fn add_member(&mut self, member: Member) -> Result<(), NetworkError> {
        if self.member(&member.node_id).is_ok() {
            return Err(NetworkError::AlreadyMember { network: self.name.clone(), node: member.node_id.to_string() });
        }
        check_subnet(self.cidr, member.subnet, &self.used_subnets())?;
        self.members.push(member);
        self.members.sort_by_key(|m| m.subnet);
        Ok(())
    }

    /// Take the member on `node` out, with the access points that reach the network through it.
    pub fn remove_member(&mut self, node: &NodeId) -> Result<(Member, Vec<AccessPoint>), NetworkError> {
        let index = self.members.iter().position(|m| m.node_id == *node).ok_or_else(|| self.not_member(node))?;
        let member = self.members.remove(index);
        let (lost, kept) = std::mem::take(&mut self.access_points).into_iter().partition(|a| a.node_id == *node);
        self.access_points = kept;
        Ok((member, lost))
    }

    /// The member's network resource as it should be now: as submitted with the peer list of
    /// [`Network::peers_for`], or, for a planned member, a new one (port 0: the node picks it).
    pub fn resource(&self, node: &NodeId) -> Result<NetworkResource, NetworkError> {
        let member = self.member(node)?;
        let peers = self.peers_for(node)?;
        Ok(match member.resource() {
            Some(current) => NetworkResource { peers, ..current.clone() },
            None => NetworkResource {
                name: self.name.clone(),
                network_iprange: self.cidr,
                iprange: member.subnet,
                wireguard_private_key_encrypted: member.sealed_private_key.clone(),
                wireguard_public_key: member.public_key.clone(),
                wireguard_listen_port: 0,
                peers,
                egress: self.egress,
            },
        })
    }

    /// Check that every member's resource can be built: fails when hidden members would have
    /// no relay.
    pub fn check(&self) -> Result<(), NetworkError> {
        self.members.iter().try_for_each(|m| self.peers_for(&m.node_id).map(drop))
    }

    /// The new version of a submitted member's resource when its peer list must change.
    pub fn pending_update(&self, node: &NodeId) -> Result<Option<NetworkResource>, NetworkError> {
        let Some(current) = self.member(node)?.resource() else { return Ok(None) };
        let wanted = self.resource(node)?;
        Ok((wanted.peers != current.peers).then_some(wanted))
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    #[test]
    fn members_are_added_and_removed_with_their_access_points() {
        let (a, b) = (node(1), node(2));
        let mut network = Network::new("web", net("10.20.0.0/16")).unwrap();
        network.add_member(Member::generate(b, None, net("10.20.2.0/24"))).unwrap();
        network.add_member(Member::generate(a, Some(ip("1.1.1.1")), net("10.20.1.0/24"))).unwrap();
        assert_eq!(network.members()[0].node_id, a, "sorted by subnet");
        assert!(matches!(
            network.add_member(Member::generate(a, None, net("10.20.3.0/24"))),
            Err(NetworkError::AlreadyMember { .. })
        ));
        assert!(matches!(
            network.add_member(Member::generate(node(3), None, net("10.20.2.0/24"))),
            Err(NetworkError::SubnetTaken { .. })
        ));
        network.access_points.push(AccessPoint { node_id: a, subnet: net("10.20.3.0/24"), public_key: key(9) });
        let (gone, lost) = network.remove_member(&a).unwrap();
        assert_eq!((gone.node_id, lost.len()), (a, 1));
        assert!(network.access_points().is_empty());
        assert!(matches!(network.remove_member(&a), Err(NetworkError::NotMember { .. })));
        assert!(matches!(Network::new("web", net("10.20.1.0/24")), Err(NetworkError::NotSlash16(_))));
    }

    #[test]
    fn new_members_get_a_sealed_key_and_port_zero() {
        let a = node(1);
        let mut network = Network::new("web", net("10.20.0.0/16")).unwrap();
        network.add_member(Member::generate(a, None, net("10.20.1.0/24"))).unwrap();
        let nr = network.resource(&a).unwrap();
        assert_eq!((nr.wireguard_listen_port, nr.iprange), (0, net("10.20.1.0/24")));
        let sealed = hex::decode(&nr.wireguard_private_key_encrypted).unwrap();
        let private: [u8; 32] = keypair(1).unseal(&sealed).unwrap().try_into().unwrap();
        let public = base64::engine::general_purpose::STANDARD.encode(zgrid_types::sealed::wireguard_public(&private));
        assert_eq!(nr.wireguard_public_key, public);
        assert_eq!(network.pending_update(&a).unwrap(), None, "not submitted yet");
    }
}
