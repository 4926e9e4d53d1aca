//! Reading a network from the explorer: the owner's active workloads, the network resources of
//! the network among them, their nodes' public addresses and the ports the nodes reported.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};

use zgrid_types::api::{WorkloadRecord, WorkloadState};
use zgrid_types::workload::NetworkResource;
use zgrid_types::{NodeId, ResultState, UserId, WorkloadData};

use super::{AccessPoint, Attachment, Member, Network, NetworkError};
use crate::ExplorerClient;

/// The WireGuard port a node reported in the `ok` result of its network resource, if any.
pub fn reported_port(record: &WorkloadRecord) -> Option<u16> {
    let result = &record.result.as_ref()?.payload;
    if result.state != ResultState::Ok {
        return None;
    }
    let port = u16::try_from(result.data.get("listen_port")?.as_u64()?).ok()?;
    (port != 0).then_some(port)
}

impl Network {
    /// Read network `name` of `owner` from the explorer: its active network resources, their
    /// nodes' public addresses and the owner's active workloads that join it. `None` when the
    /// owner has no active network resource of that name.
    pub async fn load(client: &ExplorerClient, owner: UserId, name: &str) -> Result<Option<Self>, NetworkError> {
        let records = client.all_workloads(owner, Some(WorkloadState::Active.as_str())).await?;
        let mut public_ips = HashMap::new();
        let mut asked = HashSet::new();
        for record in records.iter().filter(|r| resource_named(r, name).is_some()) {
            let node_id = record.workload.payload.node_id;
            if asked.insert(node_id)
                && let Some(ip) = client.node(&node_id).await?.public_endpoint
            {
                public_ips.insert(node_id, ip);
            }
        }
        Self::from_records(name, &records, &public_ips)
    }

    /// The network `name` as `records` (an owner's workloads) describe it, with the public
    /// addresses of its nodes (a node missing from `public_ips` is hidden). Ports the nodes have
    /// not reported are taken from what the other members already use.
    pub fn from_records(
        name: &str,
        records: &[WorkloadRecord],
        public_ips: &HashMap<NodeId, IpAddr>,
    ) -> Result<Option<Self>, NetworkError> {
        let resources: Vec<_> = records.iter().filter_map(|r| Some((r, resource_named(r, name)?))).collect();
        let Some((_, first)) = resources.first() else { return Ok(None) };
        let egress = resources.iter().any(|(_, nr)| nr.egress);
        let mut network = Self::new(name, first.network_iprange)?.with_egress(egress);
        let mut known_ports = HashMap::new();
        for (_, nr) in &resources {
            if nr.network_iprange != network.cidr {
                let (first, second) = (network.cidr, nr.network_iprange);
                return Err(NetworkError::MixedRanges { network: name.into(), first, second });
            }
            for peer in &nr.peers {
                if let Ok(endpoint) = peer.endpoint.parse::<SocketAddr>() {
                    known_ports.insert(peer.public_key.clone(), endpoint.port());
                }
            }
        }
        for (record, nr) in &resources {
            let node_id = record.workload.payload.node_id;
            network.members.push(Member {
                node_id,
                subnet: nr.iprange,
                public_key: nr.wireguard_public_key.clone(),
                public_ip: public_ips.get(&node_id).copied(),
                listen_port: reported_port(record).or_else(|| known_ports.get(&nr.wireguard_public_key).copied()),
                record: Some((*record).clone()),
                sealed_private_key: nr.wireguard_private_key_encrypted.clone(),
            });
        }
        network.members.sort_by_key(|m| m.subnet);
        let member_keys: HashSet<&str> = resources.iter().map(|(_, nr)| nr.wireguard_public_key.as_str()).collect();
        for (record, nr) in &resources {
            for peer in nr.peers.iter().filter(|p| !member_keys.contains(p.public_key.as_str())) {
                let (node_id, subnet, public_key) =
                    (record.workload.payload.node_id, peer.iprange, peer.public_key.clone());
                network.access_points.push(AccessPoint { node_id, subnet, public_key });
            }
        }
        network.access_points.sort_by_key(|a| a.subnet);
        for record in records.iter().filter(|r| r.state == WorkloadState::Active) {
            let spec = &record.workload.payload;
            if let Some((network_id, ip)) = spec.data.network_attachment()
                && network_id == name
            {
                let (workload_id, kind, node_id) = (spec.id.clone(), spec.data.kind(), spec.node_id);
                network.attachments.push(Attachment { workload_id, kind, node_id, ip });
            }
        }
        Ok(Some(network))
    }
}

fn resource_named<'a>(record: &'a WorkloadRecord, name: &str) -> Option<&'a NetworkResource> {
    match &record.workload.payload.data {
        WorkloadData::NetworkResource(nr) if nr.name == name && record.state == WorkloadState::Active => Some(nr),
        _ => None,
    }
}

/// Every active workload of `owner`, all pages.
#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn members_ports_and_access_points_come_from_the_records() {
        let (a, b) = (node(1), node(2));
        // a lists b with the port b used before, and an access point
        let a_peers = vec![peer(2, "1.1.1.2:4000", "10.20.2.0/24"), peer(9, "", "10.20.9.0/24")];
        let mut records = vec![
            resource_record(a, "10.20.1.0/24", 1, Some(51820), a_peers),
            resource_record(b, "10.20.2.0/24", 2, None, vec![]),
        ];
        records.push(container_record(b, "web", "10.20.2.5"));
        records.push(container_record(b, "other", "10.20.2.6"));
        let ips = HashMap::from([(a, ip("1.1.1.1")), (b, ip("1.1.1.2"))]);
        let network = Network::from_records("web", &records, &ips).unwrap().unwrap();
        assert_eq!(network.cidr().to_string(), "10.20.0.0/16");
        let ports: Vec<_> = network.members().iter().map(|m| m.listen_port).collect();
        assert_eq!(ports, [Some(51820), Some(4000)], "b's port comes from a's peer entry");
        assert_eq!(network.members()[0].endpoint().unwrap().to_string(), "1.1.1.1:51820");
        assert_eq!(
            network.access_points(),
            [AccessPoint { node_id: a, subnet: net("10.20.9.0/24"), public_key: key(9) }]
        );
        assert_eq!(network.attachments().len(), 1, "only workloads of this network");
        assert!(Network::from_records("nope", &records, &ips).unwrap().is_none());
    }

    #[test]
    fn members_in_json_carry_their_endpoint_and_workload_id() {
        let record = resource_record(node(1), "10.20.1.0/24", 1, Some(7000), vec![]);
        let ips = HashMap::from([(node(1), ip("1.1.1.1"))]);
        let network = Network::from_records("web", std::slice::from_ref(&record), &ips).unwrap().unwrap();
        let json = serde_json::to_value(&network).unwrap();
        let member = &json["members"][0];
        assert_eq!(member["endpoint"], "1.1.1.1:7000");
        assert_eq!(member["subnet"], "10.20.1.0/24");
        assert_eq!(member["workload_id"], record.workload.payload.id.as_str());
        assert!(member.get("sealed_private_key").is_none());
    }

    #[test]
    fn reported_ports_need_an_ok_result() {
        let mut record = resource_record(node(1), "10.20.1.0/24", 1, Some(7000), vec![]);
        assert_eq!(reported_port(&record), Some(7000));
        if let Some(r) = record.result.as_mut() {
            r.payload.state = ResultState::Error;
        }
        assert_eq!(reported_port(&record), None);
    }
}
