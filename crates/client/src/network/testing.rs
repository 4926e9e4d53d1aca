//! Fixtures for the network tests: keys and nodes from small seeds, planned networks and
//! explorer records.

use std::net::{IpAddr, Ipv4Addr};

use base64::Engine;
use ipnet::Ipv4Net;
use zgrid_types::api::{WorkloadRecord, WorkloadState};
use zgrid_types::workload::{Container, ContainerCapacity, DiskType, NetworkConnection, NetworkResource, Peer};
use zgrid_types::{Keypair, NodeId, ResultState, Signed, WorkloadData, WorkloadId, WorkloadResult, WorkloadSpec};

use super::{Member, Network};

pub fn keypair(seed: u8) -> Keypair {
    Keypair::from_seed(&[seed; 32])
}

pub fn node(seed: u8) -> NodeId {
    keypair(seed).public()
}

/// A WireGuard public key (base64) made of `seed`.
pub fn key(seed: u8) -> String {
    base64::engine::general_purpose::STANDARD.encode([seed; 32])
}

pub fn net(text: &str) -> Ipv4Net {
    text.parse().unwrap()
}

pub fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

pub fn ip4(text: &str) -> Ipv4Addr {
    text.parse().unwrap()
}

/// Network `web` (10.20.0.0/16) with a planned member per `(seed, public ip, port)`, on node
/// `seed` with subnet 10.20.`seed`.0/24.
pub fn planned(members: &[(u8, Option<&str>, Option<u16>)]) -> Network {
    let mut network = Network::new("web", net("10.20.0.0/16")).unwrap();
    for &(seed, public_ip, port) in members {
        let mut member = Member::generate(node(seed), public_ip.map(ip), net(&format!("10.20.{seed}.0/24")));
        member.listen_port = port;
        network.add_member(member).unwrap();
    }
    network
}

pub fn peer(seed: u8, endpoint: &str, iprange: &str) -> Peer {
    Peer { public_key: key(seed), endpoint: endpoint.into(), iprange: net(iprange), allowed_iprange: vec![] }
}

fn record(node_id: NodeId, data: WorkloadData, result: Option<(ResultState, serde_json::Value)>) -> WorkloadRecord {
    let owner = keypair(100);
    let spec = WorkloadSpec {
        id: WorkloadId::from_u64(rand::random()),
        version: 1,
        owner: 1,
        owner_key: owner.public(),
        node_id,
        expires_at: 2_000_000_000,
        description: String::new(),
        metadata: String::new(),
        data,
    };
    let result = result.map(|(state, data)| {
        let payload = WorkloadResult {
            workload_id: spec.id.clone(),
            version: 1,
            node_id,
            state,
            message: String::new(),
            data,
            timestamp: 1,
        };
        Signed::sign(payload, &owner)
    });
    let workload = Signed::sign(spec, &owner);
    WorkloadRecord { workload, state: WorkloadState::Active, created_at: 1, updated_at: 1, deletion: None, result }
}

/// An active network resource of `web` on `node_id` with key `key(seed)`; with an `ok` result
/// reporting `port` when there is one.
pub fn resource_record(node_id: NodeId, subnet: &str, seed: u8, port: Option<u16>, peers: Vec<Peer>) -> WorkloadRecord {
    let nr = NetworkResource {
        name: "web".into(),
        network_iprange: net("10.20.0.0/16"),
        iprange: net(subnet),
        wireguard_private_key_encrypted: hex::encode(zgrid_types::sealed::seal(&node_id, &[seed; 32])),
        wireguard_public_key: key(seed),
        wireguard_listen_port: 0,
        peers,
        egress: false,
    };
    let result = port.map(|p| (ResultState::Ok, serde_json::json!({ "listen_port": p, "public_key": key(seed) })));
    record(node_id, WorkloadData::NetworkResource(nr), result)
}

/// An active container on `node_id` joining `network` at `ip`.
pub fn container_record(node_id: NodeId, network: &str, ip: &str) -> WorkloadRecord {
    let container = Container {
        flist: "/images/busybox".into(),
        hub_url: String::new(),
        flist_hash: String::new(),
        environment: Default::default(),
        secret_environment: Default::default(),
        entrypoint: String::new(),
        interactive: false,
        volumes: vec![],
        capacity: ContainerCapacity { cpu: 1, memory: 64, disk_size: 64, disk_type: DiskType::Ssd },
        network_connection: vec![NetworkConnection {
            network_id: network.into(),
            ipaddress: ip4(ip),
            public_ipv6: false,
            yggdrasil_ip: false,
        }],
        logs: vec![],
        stats: vec![],
        probes: Default::default(),
        open_ports: vec![],
    };
    record(node_id, WorkloadData::Container(container), None)
}
