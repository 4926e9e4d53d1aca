//! `zgrid k8s add-worker`: one more worker for a running cluster, made like the others (the
//! master's image, keys and registries; the cluster secret derived again from the identity),
//! on a node with room, joined to the network first if need be.

use std::collections::HashMap;

use anyhow::{Context, Result, bail};
use serde::Serialize;
use zgrid_types::WorkloadData;

use super::api::NodeStatus;
use super::cluster::{self, Cluster, ClusterVm, Mark, Role};
use super::credentials::cluster_secret;
use super::placement;
use super::reach;
use super::vms::{self, Template};
use crate::cmd::network::{Session, members};
use crate::cmd::submit;
use crate::output;

/// What `add-worker` prints at the end (`--json`).
#[derive(Serialize)]
struct Report {
    /// The cluster, as the explorer has it now.
    cluster: Cluster,
    /// The new worker.
    worker: ClusterVm,
    /// Whether this machine reached the API server to see the worker Ready.
    reachable: bool,
    /// The nodes as the API server has them (when reachable).
    nodes: Option<Vec<NodeStatus>>,
}

pub async fn add(s: &Session, name: &str, node: Option<&str>, size: Option<u8>) -> Result<()> {
    let cluster = cluster::existing(s, name).await?;
    let master = cluster.master()?.clone();
    let record = cluster.master_record().context("the master's workload")?;
    let (WorkloadData::Kubernetes(k), Some(mark)) = (&record.workload.payload.data, Mark::of(record)) else {
        bail!("the master of cluster {name} is not a kubernetes workload zgrid k8s made");
    };
    let size_number = size.unwrap_or(master.size);
    let size = super::size(size_number)?;
    let node = match node {
        Some(text) => {
            let id = submit::node_id(text)?;
            let entry =
                s.client.node(&id).await.with_context(|| format!("--node {id}: no such node; see `zgrid nodes`"))?;
            placement::check_given(&entry, 1, size)?;
            id
        }
        None => {
            let mut hosting = HashMap::new();
            for vm in cluster.vms() {
                *hosting.entry(vm.node_id).or_default() += 1;
            }
            placement::spread(&placement::alive_nodes(s).await?, 1, size, &hosting)?[0]
        }
    };
    let expires_at = record.workload.payload.expires_at;
    let secret = cluster_secret(&s.identity.keypair, name, cluster.created);
    let mut network = s.existing(&cluster.network).await?;
    if network.member(&node).is_err() {
        members::join(s, network, node, None, expires_at, &mark.as_role(Role::Network).notes()).await?;
        network = s.existing(&cluster.network).await?;
    }
    let template = Template::of_master(k, size_number);
    let planned = vms::plan(s, &mut network, node, &template, (&secret, &mark), Some(master.ip), expires_at)?;
    vms::check(&planned)?;
    s.progress(format!("adding a worker to cluster {name} on node {node}"));
    let worker = vms::provision(s, vec![planned]).await?.remove(0);

    let cluster = cluster::existing(s, name).await?;
    let waited = async {
        let (api, _) = reach::connect(s, &cluster).await?;
        reach::wait_ready(s, &api, &cluster.vms()).await
    };
    let nodes = match waited.await {
        Ok(nodes) => Some(nodes),
        Err(e) if reach::unreachable(&e) => {
            eprintln!(
                "warning: {e:#}\nthe worker runs; to see it in the cluster, {}",
                reach::hint(name, &cluster.network, None)
            );
            None
        }
        Err(e) => {
            return Err(e.context(format!("the worker {} runs, but did not become a Ready node", worker.describe())));
        }
    };
    let report = Report { reachable: nodes.is_some(), cluster, worker, nodes };
    output::report(s.json, &report, || {
        println!("{} joined cluster {name}", report.worker.describe());
        match &report.nodes {
            Some(nodes) => reach::print_nodes(nodes),
            None => super::ls::print_vms(&report.cluster),
        }
    })
}
