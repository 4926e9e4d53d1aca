//! Which grid node a Pod runs on: one that is up, allowed by the provider's flags and the Pod's
//! annotations, on the provider's network, with the Pod's memory and disk free (counting what
//! the provider placed since the node last reported); Pods spread over nodes, then go where
//! most memory is free.

use std::collections::HashMap;

use anyhow::{Result, bail};
use zgrid_types::NodeId;
use zgrid_types::api::WorkloadRecord;
use zgrid_types::directory::{Capacity, Node};

use super::pod::Plan;
use crate::args::KubeletArgs;
use crate::cmd::network::Session;

/// The provider's own limits on nodes.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only these nodes, when any are named.
    nodes: Vec<NodeId>,
    farm: Option<u64>,
    country: Option<String>,
}

impl Filter {
    /// The limits `zgrid kubelet`'s flags set.
    pub fn from_args(a: &KubeletArgs) -> Result<Self> {
        let nodes = a.node.iter().map(|n| crate::cmd::submit::node_id(n)).collect::<Result<_>>()?;
        Ok(Self { nodes, farm: a.farm, country: a.country.clone() })
    }

    fn allows(&self, node: &Node) -> bool {
        (self.nodes.is_empty() || self.nodes.contains(&node.node_id))
            && self.farm.is_none_or(|f| f == node.farm_id)
            && self.country.as_ref().is_none_or(|c| c.eq_ignore_ascii_case(&node.location.country))
    }
}

/// The nodes that are up and that `filter` allows, members of `network` when given.
pub async fn candidates(s: &Session, filter: &Filter, network: Option<&str>) -> Result<Vec<Node>> {
    let mut nodes: Vec<Node> =
        crate::cmd::k8s::placement::alive_nodes(s).await?.into_iter().filter(|n| filter.allows(n)).collect();
    if let Some(name) = network {
        let Some(network) = s.load(name).await? else {
            bail!("--network {name}: you have no network of that name; create it with `zgrid network create`")
        };
        nodes.retain(|n| network.member(&n.node_id).is_ok());
    }
    Ok(nodes)
}

/// The free capacity of `nodes` together: what the virtual node offers Kubernetes.
pub fn total_free(nodes: &[Node]) -> Capacity {
    nodes.iter().fold(Capacity::default(), |sum, n| {
        let free = n.free();
        Capacity { cru: sum.cru + free.cru, mru: sum.mru + free.mru, sru: sum.sru + free.sru, hru: sum.hru + free.hru }
    })
}

/// What the provider holds on one node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Held {
    /// Containers of Pods there.
    pub pods: usize,
    /// Memory and disk of containers made after the node last reported its use (MiB).
    pub unreported: Capacity,
}

/// What `records` (the owner's active workloads) hold on each node of `grid`; `is_pod` tells
/// the provider's own.
pub fn held(
    grid: &[Node],
    records: &[WorkloadRecord],
    is_pod: impl Fn(&WorkloadRecord) -> bool,
) -> HashMap<NodeId, Held> {
    let mut out: HashMap<NodeId, Held> = HashMap::new();
    for record in records {
        let spec = &record.workload.payload;
        let Some(node) = grid.iter().find(|n| n.node_id == spec.node_id) else { continue };
        let held = out.entry(node.node_id).or_default();
        if is_pod(record) {
            held.pods += 1;
        }
        if record.created_at >= node.last_seen {
            let c = zgrid_node::capacity::of(&spec.data);
            held.unreported.mru += c.mru;
            held.unreported.sru += c.sru;
        }
    }
    out
}

/// The node for `plan` among `grid`, given what the provider `held` there.
pub fn choose(grid: &[Node], plan: &Plan, held: &HashMap<NodeId, Held>) -> Result<NodeId> {
    let p = &plan.placement;
    let allowed: Vec<&Node> = grid
        .iter()
        .filter(|n| p.node.as_ref().is_none_or(|id| n.node_id.to_string() == *id))
        .filter(|n| p.farm.is_none_or(|f| f == n.farm_id))
        .filter(|n| p.country.as_ref().is_none_or(|c| c.eq_ignore_ascii_case(&n.location.country)))
        .collect();
    let free = |n: &Node| {
        let unreported = held.get(&n.node_id).map(|h| h.unreported).unwrap_or_default();
        let free = n.free();
        (free.mru.saturating_sub(unreported.mru), free.sru.saturating_sub(unreported.sru))
    };
    let disk = plan.disk_needed();
    let fitting: Vec<&&Node> = allowed.iter().filter(|n| free(n).0 >= plan.memory && free(n).1 >= disk).collect();
    let best = fitting.iter().min_by_key(|n| {
        let pods = held.get(&n.node_id).map_or(0, |h| h.pods);
        (pods, std::cmp::Reverse(free(n).0), n.node_id.to_string())
    });
    if let Some(node) = best {
        return Ok(node.node_id);
    }
    let most = allowed.iter().map(|n| free(n).0).max().unwrap_or(0);
    let limits = [p.node.as_ref().map(|n| format!("node {n}")), p.farm.map(|f| format!("farm {f}")), p.country.clone()];
    let limits: Vec<String> = limits.into_iter().flatten().collect();
    let scope = if limits.is_empty() { String::new() } else { format!(" (annotations ask for {})", limits.join(", ")) };
    bail!(
        "no grid node has {} MiB memory and {} MiB disk free for this Pod: {} node(s) are up and allowed{scope}, \
         the most free memory on one is {most} MiB; lower the Pod's resources or add nodes",
        plan.memory,
        disk,
        allowed.len(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::kubelet::pod::Placement;

    fn node(seed: u8, mru: u64, farm: u64) -> Node {
        Node {
            node_id: crate::cmd::k8s::testing::node(seed),
            farm_id: farm,
            hostname: format!("n{seed}"),
            total: Capacity { cru: 4, mru, sru: 100_000, hru: 0 },
            used: Capacity::default(),
            location: Default::default(),
            public_endpoint: None,
            api_url: None,
            version: "test".into(),
            hypervisor: None,
            wireguard: None,
            public_ipv6: None,
            yggdrasil: None,
            created_at: 0,
            last_seen: 0,
            alive: true,
        }
    }

    fn plan(memory: u64) -> Plan {
        Plan {
            name: "c".into(),
            image: "x".into(),
            entrypoint: String::new(),
            environment: Default::default(),
            references: vec![],
            cpu: 1,
            memory,
            disk: 256,
            placement: Placement::default(),
            probes: Default::default(),
            volumes: vec![],
        }
    }

    #[test]
    fn pods_spread_over_nodes_then_go_where_memory_is_free() {
        let grid = [node(1, 4096, 1), node(2, 8192, 1)];
        let none = HashMap::new();
        assert_eq!(choose(&grid, &plan(256), &none).unwrap(), grid[1].node_id);
        let held = HashMap::from([(grid[1].node_id, Held { pods: 1, unreported: Capacity::default() })]);
        assert_eq!(choose(&grid, &plan(256), &held).unwrap(), grid[0].node_id);
    }

    #[test]
    fn memory_placed_since_the_last_report_counts_and_a_pod_that_fits_nowhere_says_why() {
        let grid = [node(1, 4096, 1), node(2, 1024, 2)];
        let unreported = Capacity { mru: 3900, ..Capacity::default() };
        let held = HashMap::from([(grid[0].node_id, Held { pods: 1, unreported })]);
        assert_eq!(choose(&grid, &plan(512), &held).unwrap(), grid[1].node_id);
        let why = choose(&grid, &plan(64 * 1024), &held).unwrap_err().to_string();
        assert!(why.contains("65536 MiB memory") && why.contains("2 node(s)") && why.contains("1024 MiB"), "{why}");
        let mut in_farm_1 = plan(512);
        in_farm_1.placement.farm = Some(1);
        let why = choose(&grid, &in_farm_1, &held).unwrap_err().to_string();
        assert!(why.contains("farm 1"), "{why}");
    }
}
