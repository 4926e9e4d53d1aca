//! The kubernetes workload (seed `001`): a k3s node in a VM on the owner's private network,
//! joining the masters listed in `master_ips`, or a master itself when that list is empty.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::validate::{Valid, check_name, ensure};

/// A Kubernetes VM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Kubernetes {
    /// VM size, 1 to 18 (see [`KubernetesSize`]).
    pub size: u8,
    /// Name of the owner's network.
    pub network_id: String,
    /// Static address inside the node's /24 of that network.
    #[schema(value_type = String)]
    pub ipaddress: Ipv4Addr,
    /// Cluster join secret, encrypted to the node's key.
    pub cluster_secret: String,
    /// Masters to join; empty makes this VM a master.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub master_ips: Vec<Ipv4Addr>,
    /// SSH public keys allowed to log in.
    #[serde(default)]
    pub ssh_keys: Vec<String>,
    /// External datastore for the control plane (k3s `--datastore-endpoint`).
    #[serde(default)]
    pub datastore_endpoint: String,
    /// Do not install the default ingress controller.
    #[serde(default)]
    pub disable_default_ingress: bool,
}

/// The resources of a VM size: virtual CPUs, memory in GiB, disk in GB (the seed node's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KubernetesSize {
    /// Virtual CPUs.
    pub cpu: u32,
    /// Memory in GiB.
    pub memory_gib: u64,
    /// Disk in GB.
    pub disk_gb: u64,
}

const SIZES: [(u32, u64, u64); 18] = [
    (1, 2, 50),
    (2, 4, 100),
    (2, 8, 25),
    (2, 8, 50),
    (2, 8, 200),
    (4, 16, 50),
    (4, 16, 100),
    (4, 16, 400),
    (8, 32, 100),
    (8, 32, 200),
    (8, 32, 800),
    (1, 64, 200),
    (1, 64, 400),
    (1, 64, 800),
    (1, 2, 25),
    (2, 4, 50),
    (4, 8, 50),
    (1, 1, 25),
];

impl KubernetesSize {
    /// The resources of size `n`, if it exists.
    pub fn of(n: u8) -> Option<Self> {
        let (cpu, memory_gib, disk_gb) = *SIZES.get(usize::from(n).checked_sub(1)?)?;
        Some(Self { cpu, memory_gib, disk_gb })
    }
}

impl Kubernetes {
    pub(super) fn validate(&self) -> Valid {
        ensure(KubernetesSize::of(self.size).is_some(), "size", || {
            format!("{} is not a VM size: use 1 to {}", self.size, SIZES.len())
        })?;
        check_name(&self.network_id, "network_id")?;
        ensure(!self.cluster_secret.is_empty(), "cluster_secret", || "is empty".into())?;
        for (i, ip) in self.master_ips.iter().enumerate() {
            ensure(*ip != self.ipaddress, &format!("master_ips[{i}]"), || {
                "is this VM's own address; leave master_ips empty to make it a master".into()
            })?;
        }
        super::vm::check_ssh_keys(&self.ssh_keys)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_the_node_table() {
        assert_eq!(KubernetesSize::of(1), Some(KubernetesSize { cpu: 1, memory_gib: 2, disk_gb: 50 }));
        assert_eq!(KubernetesSize::of(4).unwrap().memory_gib, 8);
        assert!(KubernetesSize::of(0).is_none());
        assert!(KubernetesSize::of(19).is_none());
    }
}
