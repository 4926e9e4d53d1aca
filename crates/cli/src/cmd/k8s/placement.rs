//! Choosing nodes for a cluster's VMs: alive, able to run VMs (the directory's `hypervisor`
//! says `kvm` or `tcg`, not `none: why`), with the free memory and disk of the size; spread over
//! distinct nodes while there are some, KVM before TCG, public nodes (which can carry the
//! laptop's access) first.

use std::cmp::Reverse;
use std::collections::HashMap;

use anyhow::{Result, bail};
use zgrid_types::NodeId;
use zgrid_types::api::NodeFilter;
use zgrid_types::directory::{Capacity, Node};
use zgrid_types::workload::KubernetesSize;

use crate::cmd::network::Session;

/// What a VM of `size` reserves on its node, counted as the node counts it (GB of disk as
/// 1000 MiB).
pub fn need(size: KubernetesSize) -> Capacity {
    Capacity { cru: u64::from(size.cpu), mru: size.memory_gib * 1024, sru: size.disk_gb * 1000, hru: 0 }
}

/// `size` for people: `1 CPU, 2 GiB memory, 50 GB disk`.
pub fn describe(size: KubernetesSize) -> String {
    format!("{} CPU, {} GiB memory, {} GB disk", size.cpu, size.memory_gib, size.disk_gb)
}

/// How a node runs VMs, as its directory entry says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hypervisor {
    /// With KVM.
    Kvm,
    /// Emulated (several times slower).
    Tcg,
    /// Not at all, for this reason.
    None(String),
    /// The node has not said (it is starting, or too old to run VMs).
    Unknown,
}

impl Hypervisor {
    /// What `node` says.
    pub fn of(node: &Node) -> Self {
        match node.hypervisor.as_deref() {
            None => Self::Unknown,
            Some(h) => match h.split(':').next().unwrap_or_default().trim() {
                "kvm" => Self::Kvm,
                "tcg" => Self::Tcg,
                _ => Self::None(h.split_once(':').map_or(h, |(_, why)| why).trim().to_owned()),
            },
        }
    }

    fn runs_vms(&self) -> bool {
        matches!(self, Self::Kvm | Self::Tcg)
    }
}

/// Whether `free` holds `count` VMs of `need` (the node checks memory and disk; CPUs are shared).
fn fits(free: &Capacity, need: &Capacity, count: u64) -> bool {
    free.mru >= need.mru * count && free.sru >= need.sru * count
}

/// Choose nodes for `count` VMs of `size` among `nodes`: at most one a node while there are
/// enough of them, the nodes hosting fewest of `hosting` (VMs already in the cluster) first.
pub fn spread(
    nodes: &[Node],
    count: usize,
    size: KubernetesSize,
    hosting: &HashMap<NodeId, usize>,
) -> Result<Vec<NodeId>> {
    let need = need(size);
    let usable: Vec<&Node> = nodes.iter().filter(|n| n.alive && Hypervisor::of(n).runs_vms()).collect();
    let mut placed: HashMap<NodeId, u64> = HashMap::new();
    let mut chosen = Vec::with_capacity(count);
    for _ in 0..count {
        let best = usable
            .iter()
            .filter(|n| fits(&n.free(), &need, placed.get(&n.node_id).copied().unwrap_or(0) + 1))
            .min_by_key(|n| {
                let mine = placed.get(&n.node_id).copied().unwrap_or(0);
                let before = hosting.get(&n.node_id).copied().unwrap_or(0) as u64;
                let left = n.free().mru.saturating_sub(need.mru * mine);
                (
                    mine + before,
                    Hypervisor::of(n) != Hypervisor::Kvm,
                    n.public_endpoint.is_none(),
                    Reverse(left),
                    n.node_id.to_string(),
                )
            });
        let Some(node) = best else {
            let alive = nodes.iter().filter(|n| n.alive).count();
            bail!(
                "only {} of {count} VM(s) of size {} fit: of {} node(s), {alive} are up, {} of those run VMs (kvm or \
                 tcg), and they lack the memory or disk for more; ask for fewer --nodes or a smaller --size, or name \
                 nodes with --node (`zgrid nodes` shows free capacity and the VMS column)",
                chosen.len(),
                describe(size),
                nodes.len(),
                usable.len(),
            );
        };
        *placed.entry(node.node_id).or_default() += 1;
        chosen.push(node.node_id);
    }
    Ok(chosen)
}

/// Check that `node`, named with `--node`, can take `count` VMs of `size`.
pub fn check_given(node: &Node, count: usize, size: KubernetesSize) -> Result<()> {
    let id = node.node_id;
    if !node.alive {
        bail!(
            "--node {id} is down (not seen since {}): pick another with `zgrid nodes --alive`",
            crate::output::time(node.last_seen)
        );
    }
    match Hypervisor::of(node) {
        Hypervisor::None(why) => bail!("--node {id} cannot run VMs: {why}"),
        Hypervisor::Unknown => eprintln!("warning: node {id} has not said whether it runs VMs (starting, or too old)"),
        Hypervisor::Kvm | Hypervisor::Tcg => {}
    }
    let (free, need) = (node.free(), need(size));
    if !fits(&free, &need, count as u64) {
        bail!(
            "--node {id} has {} MiB memory and {} MiB disk free, not enough for {count} VM(s) of size {}: pick a \
             smaller --size or other nodes",
            free.mru,
            free.sru,
            describe(size)
        );
    }
    Ok(())
}

/// Every node that is up, from the directory.
pub async fn alive_nodes(s: &Session) -> Result<Vec<Node>> {
    Ok(s.client.all_nodes(&NodeFilter { alive: Some(true), ..NodeFilter::default() }, None).await?)
}

#[cfg(test)]
mod tests {
    use super::super::testing::node as node_id;
    use super::*;

    fn node(seed: u8, mru: u64, hypervisor: Option<&str>, public: bool) -> Node {
        Node {
            node_id: node_id(seed),
            farm_id: 1,
            hostname: format!("n{seed}"),
            total: Capacity { cru: 4, mru, sru: 500_000, hru: 0 },
            used: Capacity::default(),
            location: Default::default(),
            public_endpoint: public.then(|| "192.0.2.1".parse().unwrap()),
            api_url: None,
            version: "test".into(),
            hypervisor: hypervisor.map(str::to_owned),
            wireguard: None,
            public_ipv6: None,
            yggdrasil: None,
            created_at: 0,
            last_seen: 0,
            alive: true,
        }
    }

    const SIZE_1: KubernetesSize = KubernetesSize { cpu: 1, memory_gib: 2, disk_gb: 50 };

    #[test]
    fn vms_spread_over_distinct_nodes_that_run_vms_kvm_and_public_first() {
        let nodes = [
            node(1, 8192, Some("tcg: no usable KVM on this node, expect it to be slow"), true),
            node(2, 8192, Some("kvm"), false),
            node(3, 8192, Some("kvm"), true),
            node(4, 65536, Some("none: no kernel for VMs"), true),
            node(5, 65536, None, true),
        ];
        let chosen = spread(&nodes, 3, SIZE_1, &HashMap::new()).unwrap();
        assert_eq!(chosen, [node_id(3), node_id(2), node_id(1)]);
        // More VMs than nodes: the nodes with room take a second one.
        let chosen = spread(&nodes, 5, SIZE_1, &HashMap::new()).unwrap();
        assert_eq!(chosen.iter().filter(|n| **n == node_id(3)).count(), 2);
        assert!(!chosen.contains(&node_id(4)) && !chosen.contains(&node_id(5)));
    }

    #[test]
    fn a_new_worker_goes_where_the_cluster_has_fewest_vms() {
        let nodes = [node(1, 8192, Some("kvm"), true), node(2, 8192, Some("tcg"), true)];
        let hosting = HashMap::from([(node_id(1), 2)]);
        assert_eq!(spread(&nodes, 1, SIZE_1, &hosting).unwrap(), [node_id(2)]);
    }

    #[test]
    fn what_does_not_fit_is_refused_saying_what_to_change() {
        let nodes = [node(1, 3000, Some("kvm"), true), node(2, 65536, Some("none: /dev/kvm missing"), true)];
        assert_eq!(spread(&nodes, 1, SIZE_1, &HashMap::new()).unwrap(), [node_id(1)]);
        let err = spread(&nodes, 2, SIZE_1, &HashMap::new()).unwrap_err().to_string();
        assert!(err.contains("only 1 of 2") && err.contains("--size"), "{err}");
        let err = check_given(&nodes[1], 1, SIZE_1).unwrap_err().to_string();
        assert!(err.contains("cannot run VMs: /dev/kvm missing"), "{err}");
        let err = check_given(&nodes[0], 2, SIZE_1).unwrap_err().to_string();
        assert!(err.contains("3000 MiB memory"), "{err}");
        assert!(check_given(&nodes[0], 1, SIZE_1).is_ok());
    }
}
