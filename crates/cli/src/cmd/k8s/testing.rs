//! Workload records for the tests of `zgrid k8s`.

use std::net::Ipv4Addr;

use zgrid_types::api::{WorkloadRecord, WorkloadState};
use zgrid_types::workload::{Kubernetes, NetworkResource};
use zgrid_types::{Keypair, NodeId, Signed, WorkloadData, WorkloadSpec};

use super::cluster::Mark;

/// The node whose key is made of `seed`.
pub fn node(seed: u8) -> NodeId {
    Keypair::from_seed(&[seed; 32]).public()
}

/// A kubernetes workload at `ip` joining `masters`.
pub fn kubernetes(ip: &str, masters: &[&str]) -> WorkloadData {
    WorkloadData::Kubernetes(Kubernetes {
        size: 1,
        flist: "https://hub.example/me/zgrid-kubernetes.flist".into(),
        hub_url: String::new(),
        flist_hash: String::new(),
        network_id: "kube".into(),
        ipaddress: ip.parse().unwrap(),
        cluster_secret: "v1:sealed".into(),
        master_ips: masters.iter().map(|m| m.parse::<Ipv4Addr>().unwrap()).collect(),
        ssh_keys: vec![],
        datastore_endpoint: String::new(),
        disable_default_ingress: true,
        registries: vec![],
    })
}

/// A network resource of network `name`.
pub fn resource(name: &str) -> WorkloadData {
    WorkloadData::NetworkResource(NetworkResource {
        name: name.into(),
        network_iprange: "10.20.0.0/16".parse().unwrap(),
        iprange: "10.20.1.0/24".parse().unwrap(),
        wireguard_private_key_encrypted: String::new(),
        wireguard_public_key: String::new(),
        wireguard_listen_port: 0,
        peers: vec![],
        egress: false,
    })
}

/// An active record of `data` on node `seed`, marked with `mark`.
pub fn record(seed: u8, data: WorkloadData, mark: Option<&Mark>) -> WorkloadRecord {
    let owner = Keypair::from_seed(&[99; 32]);
    let notes = mark.map(Mark::notes).unwrap_or_default();
    let spec = WorkloadSpec {
        id: zgrid_client::new_workload_id(),
        version: 1,
        owner: 1,
        owner_key: owner.public(),
        node_id: node(seed),
        expires_at: 1_800_000_000,
        description: notes.description,
        metadata: notes.metadata,
        data,
    };
    WorkloadRecord {
        workload: Signed::sign(spec, &owner),
        state: WorkloadState::Active,
        created_at: 1_700_000_000,
        updated_at: 1_700_000_000,
        deletion: None,
        result: None,
    }
}
