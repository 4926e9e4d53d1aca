//! Reaching a cluster from this machine over its private network: the master's CA (discovered
//! with the cluster secret), the kubeconfig written for kubectl, and the wait until every VM is a
//! Ready node; and `zgrid k8s kubeconfig`, which does this for a running cluster.

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Serialize;

use super::api::{Api, NodeStatus, Unreachable};
use super::cluster::{self, Cluster, ClusterVm};
use super::credentials::{Tokens, cluster_secret};
use super::{discovery, kubeconfig};
use crate::cmd::network::Session;
use crate::cmd::network::access::absolute;
use crate::output;

/// What reaching the cluster gave.
#[derive(Debug, Serialize)]
pub struct Reached {
    /// The kubeconfig written.
    pub kubeconfig: PathBuf,
    /// The API server's URL.
    pub api: String,
    /// The nodes as the API server has them, every VM Ready among them.
    pub nodes: Vec<NodeStatus>,
}

/// The API server of `cluster`'s master as its admin, once its CA is discovered with the
/// cluster secret; and the CA (PEM). Fails with [`Unreachable`] inside when this machine cannot
/// reach the master.
pub async fn connect(s: &Session, cluster: &Cluster) -> Result<(Api, Vec<u8>)> {
    let master = cluster.master()?.ip;
    let tokens = Tokens::of(&cluster_secret(&s.identity.keypair, &cluster.name, cluster.created));
    let ca = discovery::ca(master, &tokens).await?;
    Ok((Api::new(master, &ca, &tokens.admin)?, ca))
}

/// Wait until every one of `vms` is a Ready node, saying so as each becomes one.
pub async fn wait_ready(s: &Session, api: &Api, vms: &[ClusterVm]) -> Result<Vec<NodeStatus>> {
    api.wait_ready(vms, |vm, node| s.progress(format!("  {} is node {}: Ready", vm.label(), node.name))).await
}

/// Discover `cluster`'s CA from its master, write the admin's kubeconfig at `path`, and wait
/// until every one of `vms` is a Ready node. Fails with [`Unreachable`] inside when this
/// machine cannot reach the master.
pub async fn reach(s: &Session, cluster: &Cluster, vms: &[ClusterVm], path: &Path) -> Result<Reached> {
    let (api, ca) = connect(s, cluster).await?;
    let path = absolute(path);
    kubeconfig::write(&path, &kubeconfig::admin(&cluster.name, &api.server(), &ca, api.token())?)?;
    s.progress(format!("wrote the kubeconfig {}; waiting until every node is Ready", path.display()));
    let nodes = wait_ready(s, &api, vms).await?;
    Ok(Reached { kubeconfig: path, api: api.server(), nodes })
}

/// Whether `error` says this machine cannot reach the master.
pub fn unreachable(error: &anyhow::Error) -> bool {
    error.chain().any(|e| e.is::<Unreachable>())
}

/// How to reach cluster `name` from here and try again: bring up the WireGuard config (`wg`,
/// when known), then `zgrid k8s kubeconfig`.
pub fn hint(name: &str, network: &str, wg: Option<&Path>) -> String {
    let connect = match wg {
        Some(path) => format!("`sudo wg-quick up {}`", absolute(path).display()),
        None => format!(
            "`sudo wg-quick up` the config `zgrid k8s up` wrote, or make one with \
             `zgrid network add-access --name {network} --node NODE`"
        ),
    };
    format!("connect this machine to network {network} ({connect}), then run `zgrid k8s kubeconfig {name}`")
}

/// Print how to use the kubeconfig at `path`.
pub fn print_kubectl(path: &Path) {
    println!("kubeconfig {} (mode 0600: it holds the cluster's admin token)", path.display());
    println!("use it with:  KUBECONFIG={} kubectl get nodes", path.display());
}

/// `zgrid k8s kubeconfig NAME`: write the cluster's kubeconfig at `output` (default:
/// `~/.kube/zgrid-NAME.yaml`) and show its nodes.
pub async fn kubeconfig(s: &Session, name: &str, output: Option<PathBuf>) -> Result<()> {
    let path = match output {
        Some(path) => path,
        None => kubeconfig::default_path(name)?,
    };
    kubeconfig::check_path(&path, "--output")?;
    let cluster = cluster::existing(s, name).await?;
    let reached = reach(s, &cluster, &cluster.vms(), &path).await.map_err(|e| {
        if unreachable(&e) { anyhow::anyhow!("{e:#}; {}", hint(name, &cluster.network, None)) } else { e }
    })?;
    output::report(s.json, &reached, || {
        print_nodes(&reached.nodes);
        print_kubectl(&reached.kubeconfig);
    })
}

/// Print the nodes as a table.
pub fn print_nodes(nodes: &[NodeStatus]) {
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            let ready = if n.ready { "Ready".to_owned() } else { format!("NotReady ({})", n.why) };
            vec![n.name.clone(), n.ip.map_or_else(|| "-".into(), |ip| ip.to_string()), ready]
        })
        .collect();
    output::table(&["NODE", "ADDRESS", "STATUS"], &rows);
}
