//! `zgrid k8s up`: a whole cluster in one command. Everything that can be refused is checked
//! before anything is made (name, size, range, image, keys, files, nodes); then the network with
//! this machine's access, the master, the workers at once, and this machine's kubeconfig once
//! every VM is a Ready node.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use ipnet::Ipv4Net;
use serde::Serialize;
use zgrid_client::network::{Member, Network, free_subnet};
use zgrid_types::NodeId;
use zgrid_types::directory::Node;

use super::cluster::{self, Cluster, Mark, Role};
use super::credentials::cluster_secret;
use super::network as k8s_network;
use super::reach::{self, Reached};
use super::vms::{self, Template};
use super::{kubeconfig, placement};
use crate::args::K8sUpArgs;
use crate::cmd::network::Session;
use crate::cmd::network::access::{absolute, print_wg_quick};
use crate::cmd::{deploy, submit};
use crate::config::Ctx;
use crate::output;

/// Most bytes of a GitHub key list read.
const MAX_GITHUB_KEYS: usize = 64 * 1024;

/// What `up` prints at the end (`--json`).
#[derive(Serialize)]
struct Report {
    /// The cluster, as the explorer has it now.
    cluster: Cluster,
    /// The network's range.
    cidr: Ipv4Net,
    /// This machine's WireGuard config for the network.
    wg_config: PathBuf,
    /// The API server's URL.
    api: String,
    /// Whether this machine reached the API server (else connect it, then `zgrid k8s kubeconfig`).
    reachable: bool,
    /// The kubeconfig written (when reachable).
    kubeconfig: Option<PathBuf>,
    /// The nodes as the API server has them (when reachable).
    nodes: Option<Vec<super::api::NodeStatus>>,
}

pub async fn run(ctx: &Ctx, s: &Session, a: K8sUpArgs) -> Result<()> {
    let name = a.name.as_str();
    zgrid_types::validate::check_name(name, "--name")?;
    let size = super::size(a.size)?;
    let count = a.nodes.unwrap_or(a.node.len());
    if count == 0 {
        bail!("--nodes 0: a cluster needs at least its master");
    }
    if !a.node.is_empty() && count < a.node.len() {
        bail!("--nodes {count} is fewer than the {} --node given: every --node gets a VM", a.node.len());
    }
    let flist = ctx.k8s_flist(a.flist)?;
    let ssh_keys = ssh_keys(ctx, &a.ssh_keys).await?;
    let expires_at = submit::expiry(&a.duration)?;
    let kubeconfig_path = match a.kubeconfig {
        Some(path) => path,
        None => kubeconfig::default_path(name)?,
    };
    kubeconfig::check_path(&kubeconfig_path, "--kubeconfig")?;
    let wg_config = match a.wg_config {
        Some(path) => path,
        None => {
            let path = k8s_network::default_wg_config(&ctx.home, name);
            let dir = path.parent().expect("a file in a directory");
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            path
        }
    };

    if cluster::load(s, name).await?.is_some() {
        bail!(
            "you already have a cluster {name}: add workers with `zgrid k8s add-worker {name}`, or remove it with \
             `zgrid k8s down {name}`"
        );
    }
    let existing = s.load(name).await?;
    let cidr = match (&existing, a.cidr) {
        (Some(network), Some(given)) if network.cidr() != given => bail!(
            "--cidr {given}: your network {name} exists with range {}; leave --cidr out to use it, or choose \
             another --name",
            network.cidr()
        ),
        (Some(network), _) => network.cidr(),
        (None, Some(given)) => given,
        (None, None) => k8s_network::default_cidr(&k8s_network::used_ranges(s).await?)?,
    };
    let what = match (&existing, a.cidr) {
        (Some(_), _) => format!("network {name}'s range {cidr}"),
        (None, _) => format!("--cidr {cidr}"),
    };
    k8s_network::check_cidr(cidr, &what)?;
    let access = k8s_network::plan_access(&wg_config, existing.as_ref(), "--wg-config")?;
    let nodes = choose_nodes(s, &a.node, count, size).await?;
    let reachable = existing.as_ref().is_some_and(|n| n.members().iter().any(Member::is_public))
        || nodes.iter().any(|n| n.public_endpoint.is_some());
    if !reachable {
        bail!(
            "none of the cluster's nodes has a public address, so this machine could not reach the cluster: \
             include one that has (`zgrid nodes`) with --node"
        );
    }
    let chosen: Vec<NodeId> = nodes.iter().map(|n| n.node_id).collect();
    let template = Template {
        flist_hash: deploy::served_hash(ctx, &flist).await?,
        flist,
        hub_url: String::new(),
        size: a.size,
        ssh_keys,
        registries: a.registries,
    };
    let created = zgrid_types::unix_now();
    let mark = Mark { cluster: name.to_owned(), role: Role::Network, created, network_created: false };
    let secret = cluster_secret(&s.identity.keypair, name, created);
    // The master as it will be, checked on a draft of the network before anything is made.
    let mut draft = Network::new(name, cidr)?;
    draft.add_member(Member::generate(chosen[0], None, free_subnet(cidr, &[])?))?;
    vms::check(&vms::plan(s, &mut draft, chosen[0], &template, (&secret, &mark), None, expires_at)?)?;

    let distinct: Vec<NodeId> = chosen.iter().fold(Vec::new(), |mut d, n| {
        if !d.contains(n) {
            d.push(*n);
        }
        d
    });
    let network = (name, cidr, a.egress);
    let prepared = k8s_network::prepare(s, network, &distinct, expires_at, &mark, (&access, &wg_config)).await?;
    let mark = Mark { network_created: prepared.created, ..mark };
    let mut network = prepared.network;
    let cleanup = || format!("remove what was made with `zgrid k8s down {name}`");

    s.progress(format!("provisioning the master of cluster {name} on node {}", chosen[0]));
    let master = vms::plan(s, &mut network, chosen[0], &template, (&secret, &mark), None, expires_at)?;
    let master_ip = master.ip;
    vms::provision(s, vec![master]).await.with_context(cleanup)?;
    if chosen.len() > 1 {
        s.progress(format!("provisioning {} worker(s) joining the master at {master_ip}", chosen.len() - 1));
        let workers = chosen[1..]
            .iter()
            .map(|node| vms::plan(s, &mut network, *node, &template, (&secret, &mark), Some(master_ip), expires_at))
            .collect::<Result<Vec<_>>>()?;
        vms::provision(s, workers).await.with_context(cleanup)?;
    }

    let cluster = cluster::existing(s, name).await?;
    let (reached, why) = match reach::reach(s, &cluster, &cluster.vms(), &kubeconfig_path).await {
        Ok(reached) => (Some(reached), None),
        Err(e) if reach::unreachable(&e) => (None, Some(format!("{e:#}"))),
        Err(e) => {
            return Err(e.context(format!("the VMs of cluster {name} run, but their nodes did not all become Ready")));
        }
    };
    let wg_config = absolute(&wg_config);
    let api = format!("https://{master_ip}:{}", super::api::API_PORT);
    let hint = reach::hint(name, &cluster.network, Some(&wg_config));
    if let Some(why) = &why {
        eprintln!("warning: {why}\nthe cluster is up; to use it, {hint}");
    }
    let (kubeconfig, nodes) = match reached {
        Some(Reached { kubeconfig, nodes, .. }) => (Some(kubeconfig), Some(nodes)),
        None => (None, None),
    };
    let report = Report { cluster, cidr, wg_config, api, reachable: why.is_none(), kubeconfig, nodes };
    output::report(s.json, &report, || print(&report, &hint))
}

fn print(report: &Report, hint: &str) {
    let c = &report.cluster;
    println!("cluster {} on network {} ({}), API {}", c.name, c.network, report.cidr, report.api);
    super::ls::print_vms(c);
    println!();
    println!("this machine's WireGuard config for network {}: {}", c.network, report.wg_config.display());
    print_wg_quick(&report.wg_config);
    match &report.kubeconfig {
        Some(path) => reach::print_kubectl(path),
        None => println!("to use the cluster, {hint}"),
    }
}

/// The nodes for `count` VMs of `size`: those of `given` (`--node`), round the list, checked;
/// else chosen among the directory's.
async fn choose_nodes(
    s: &Session,
    given: &[String],
    count: usize,
    size: zgrid_types::workload::KubernetesSize,
) -> Result<Vec<Node>> {
    if given.is_empty() {
        let all = placement::alive_nodes(s).await?;
        let chosen = placement::spread(&all, count, size, &HashMap::new())?;
        return Ok(chosen
            .iter()
            .map(|id| all.iter().find(|n| n.node_id == *id).expect("chosen from all").clone())
            .collect());
    }
    let mut nodes = Vec::new();
    for text in given {
        let id = submit::node_id(text)?;
        if nodes.iter().any(|n: &Node| n.node_id == id) {
            bail!("--node {id} is given twice; ask for more VMs with --nodes");
        }
        let node = s.client.node(&id).await.with_context(|| format!("--node {id}: no such node; see `zgrid nodes`"))?;
        let vms_there = (0..count).filter(|i| i % given.len() == nodes.len()).count();
        placement::check_given(&node, vms_there, size)?;
        nodes.push(node);
    }
    Ok((0..count).map(|i| nodes[i % nodes.len()].clone()).collect())
}

/// The OpenSSH public keys `--ssh-key` names: files, and `github:USER` for the keys GitHub
/// lists for USER.
async fn ssh_keys(ctx: &Ctx, items: &[String]) -> Result<Vec<String>> {
    let mut keys = Vec::new();
    for item in items {
        let Some(user) = item.strip_prefix("github:") else {
            keys.extend(deploy::ssh_keys(std::slice::from_ref(&PathBuf::from(item)))?);
            continue;
        };
        if user.is_empty() || !user.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            bail!("--ssh-key {item}: {user:?} is not a GitHub user name");
        }
        let url = format!("https://github.com/{user}.keys");
        let answer = ctx
            .http()?
            .fetch("GitHub", reqwest::Method::GET, &url)
            .await
            .with_context(|| format!("--ssh-key {item}"))?;
        let text = answer.bytes_at_most(MAX_GITHUB_KEYS).await.with_context(|| format!("--ssh-key {item}"))?;
        match deploy::key_lines(&String::from_utf8_lossy(&text)) {
            Some(lines) => keys.extend(lines),
            None => bail!("--ssh-key {item}: GitHub lists no SSH key for {user} ({url})"),
        }
    }
    Ok(keys)
}
