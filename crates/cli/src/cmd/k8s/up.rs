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
use super::credentials::{ClusterSecret, cluster_secret};
use super::network::{self as k8s_network, Access};
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

/// Everything `up` decided before making anything.
struct Plan {
    name: String,
    cidr: Ipv4Net,
    egress: bool,
    expires_at: i64,
    /// A node per VM, the master's first.
    nodes: Vec<NodeId>,
    template: Template,
    access: Access,
    wg_config: PathBuf,
    kubeconfig: PathBuf,
    /// The mark of the cluster's workloads (as network resources; VMs take their role).
    mark: Mark,
    secret: ClusterSecret,
}

pub async fn run(ctx: &Ctx, s: &Session, a: K8sUpArgs) -> Result<()> {
    let plan = plan(ctx, s, a).await?;
    let master_ip = make(s, &plan).await?;
    let name = plan.name.as_str();
    let cluster = cluster::existing(s, name).await?;
    let (reached, why) = match reach::reach(s, &cluster, &cluster.vms(), &plan.kubeconfig).await {
        Ok(reached) => (Some(reached), None),
        Err(e) if reach::unreachable(&e) => (None, Some(format!("{e:#}"))),
        Err(e) => {
            return Err(e.context(format!("the VMs of cluster {name} run, but their nodes did not all become Ready")));
        }
    };
    let wg_config = absolute(&plan.wg_config);
    let hint = reach::hint(name, &cluster.network, Some(&wg_config));
    if let Some(why) = &why {
        eprintln!("warning: {why}\nthe cluster is up; to use it, {hint}");
    }
    let (kubeconfig, nodes) = match reached {
        Some(Reached { kubeconfig, nodes, .. }) => (Some(kubeconfig), Some(nodes)),
        None => (None, None),
    };
    let api = format!("https://{master_ip}:{}", super::api::API_PORT);
    let report = Report { cluster, cidr: plan.cidr, wg_config, api, reachable: why.is_none(), kubeconfig, nodes };
    output::report(s.json, &report, || print(&report, &hint))
}

/// Check everything that can be refused, and decide the rest, before anything is made.
async fn plan(ctx: &Ctx, s: &Session, a: K8sUpArgs) -> Result<Plan> {
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
    let expires_at = submit::expiry(a.duration);
    let kubeconfig = match a.kubeconfig {
        Some(path) => path,
        None => kubeconfig::default_path(name)?,
    };
    kubeconfig::check_path(&kubeconfig, "--kubeconfig")?;
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
    let cidr = k8s_network::choose_cidr(s, name, existing.as_ref(), a.cidr).await?;
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
    let template = Template {
        flist_hash: deploy::served_hash(ctx, &flist).await?,
        flist,
        hub_url: String::new(),
        size: a.size,
        ssh_keys,
        registries: a.registries,
    };
    let created = zgrid_types::unix_now();
    let plan = Plan {
        name: name.to_owned(),
        cidr,
        egress: a.egress,
        expires_at,
        nodes: nodes.iter().map(|n| n.node_id).collect(),
        template,
        access,
        wg_config,
        kubeconfig,
        mark: Mark { cluster: name.to_owned(), role: Role::Network, created, network_created: false },
        secret: cluster_secret(&s.identity.keypair, name, created),
    };
    // The master as it will be, checked on a draft of the network.
    let master = plan.nodes[0];
    let mut draft = Network::new(name, cidr)?;
    draft.add_member(Member::generate(master, None, free_subnet(cidr, &[])?))?;
    vms::check(&vms::plan(s, &mut draft, master, &plan.template, (&plan.secret, &plan.mark), None, expires_at)?)?;
    Ok(plan)
}

/// Make the network (or complete it) with this machine's access, then the master, then the
/// workers; the master's address.
async fn make(s: &Session, plan: &Plan) -> Result<std::net::Ipv4Addr> {
    let name = plan.name.as_str();
    let mut distinct: Vec<NodeId> = Vec::new();
    for node in &plan.nodes {
        if !distinct.contains(node) {
            distinct.push(*node);
        }
    }
    let network = (name, plan.cidr, plan.egress);
    let access = (&plan.access, plan.wg_config.as_path());
    let prepared = k8s_network::prepare(s, network, &distinct, plan.expires_at, &plan.mark, access).await?;
    let mark = Mark { network_created: prepared.created, ..plan.mark.clone() };
    let mut network = prepared.network;
    let cleanup = || format!("remove what was made with `zgrid k8s down {name}`");
    let vm = |network: &mut Network, node: NodeId, master: Option<std::net::Ipv4Addr>| {
        vms::plan(s, network, node, &plan.template, (&plan.secret, &mark), master, plan.expires_at)
    };

    s.progress(format!("provisioning the master of cluster {name} on node {}", plan.nodes[0]));
    let master = vm(&mut network, plan.nodes[0], None)?;
    let master_ip = master.ip;
    vms::provision(s, vec![master]).await.with_context(cleanup)?;
    if plan.nodes.len() > 1 {
        s.progress(format!("provisioning {} worker(s) joining the master at {master_ip}", plan.nodes.len() - 1));
        let workers =
            plan.nodes[1..].iter().map(|node| vm(&mut network, *node, Some(master_ip))).collect::<Result<Vec<_>>>()?;
        vms::provision(s, workers).await.with_context(cleanup)?;
    }
    Ok(master_ip)
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
