//! `zgrid k8s ls`: the owner's clusters, read from the explorer.

use std::collections::BTreeMap;

use anyhow::Result;

use super::cluster::{self, Cluster};
use crate::cmd::network::Session;
use crate::output;

pub async fn run(s: &Session) -> Result<()> {
    let clusters = cluster::load_all(s).await?;
    output::report(s.json, &clusters, || {
        let rows: Vec<Vec<String>> = clusters
            .iter()
            .map(|c| {
                vec![
                    c.name.clone(),
                    c.network.clone(),
                    c.master.as_ref().map_or_else(|| "-".into(), |m| m.ip.to_string()),
                    per_node(c),
                    c.expires_at.map_or_else(|| "-".into(), output::time),
                ]
            })
            .collect();
        output::table(&["CLUSTER", "NETWORK", "MASTER", "VMS PER NODE", "EXPIRES"], &rows);
    })
}

/// How many of the cluster's VMs each node runs: `7HZd49ug:2 9ah1Kc3p:1` (node ids shortened).
fn per_node(c: &Cluster) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for vm in c.vms() {
        *counts.entry(vm.node_id.to_string().chars().take(8).collect()).or_default() += 1;
    }
    let counted: Vec<String> = counts.into_iter().map(|(node, n)| format!("{node}:{n}")).collect();
    if counted.is_empty() { "-".into() } else { counted.join(" ") }
}

/// Print the cluster's VMs as a table.
pub fn print_vms(c: &Cluster) {
    let rows: Vec<Vec<String>> = c
        .vms()
        .iter()
        .map(|vm| {
            vec![
                vm.role.as_str().into(),
                vm.ip.to_string(),
                vm.node_id.to_string(),
                vm.workload_id.to_string(),
                vm.size.to_string(),
                vm.result.clone(),
                output::time(vm.expires_at),
            ]
        })
        .collect();
    output::table(&["ROLE", "ADDRESS", "NODE", "WORKLOAD", "SIZE", "RESULT", "EXPIRES"], &rows);
}

#[cfg(test)]
mod tests {
    use super::super::cluster::{Mark, Role, clusters};
    use super::super::testing::{kubernetes, node, record};
    use super::*;

    #[test]
    fn vms_are_counted_per_node() {
        let mark = |role| Mark { cluster: "kube".into(), role, created: 1, network_created: true };
        let records = [
            record(1, kubernetes("10.20.1.2", &[]), Some(&mark(Role::Master))),
            record(1, kubernetes("10.20.1.3", &["10.20.1.2"]), Some(&mark(Role::Worker))),
            record(2, kubernetes("10.20.2.2", &["10.20.1.2"]), Some(&mark(Role::Worker))),
        ];
        let summary = per_node(&clusters(&records)[0]);
        let short = |seed| node(seed).to_string().chars().take(8).collect::<String>();
        let mut expected = [format!("{}:2", short(1)), format!("{}:1", short(2))];
        expected.sort();
        assert_eq!(summary, expected.join(" "));
    }
}
