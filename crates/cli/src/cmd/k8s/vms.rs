//! A cluster's VMs as kubernetes workloads: built from the cluster's image and settings with the
//! cluster secret sealed to each node, signed, submitted, and awaited with each VM's progress
//! shown, shared by `up` and `add-worker`.

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{Result, bail};
use zgrid_client::network::{Attachment, Network};
use zgrid_types::workload::Kubernetes;
use zgrid_types::{NodeId, ResultState, WorkloadData, WorkloadKind, WorkloadSpec};

use super::cluster::{ClusterVm, Mark, Role};
use super::credentials::ClusterSecret;
use crate::cmd::deploy;
use crate::cmd::network::Session;
use crate::cmd::submit;

/// How long a VM may take from submission until its node reports it a Ready node of the cluster:
/// the node allows the guest 40 minutes (minutes under TCG), plus fetching the image.
const VM_LIMIT: Duration = Duration::from_secs(50 * 60);

/// What every VM of a cluster shares: the image, the size, the keys that log in and the
/// registries its container runtime pulls from.
#[derive(Debug, Clone)]
pub struct Template {
    /// The Kubernetes image's flist.
    pub flist: String,
    /// Its hub, when not the flist's own.
    pub hub_url: String,
    /// Its hash, pinned.
    pub flist_hash: String,
    /// The VM size.
    pub size: u8,
    /// SSH public keys.
    pub ssh_keys: Vec<String>,
    /// Registries on the private network (`host:port`, plain HTTP).
    pub registries: Vec<String>,
}

impl Template {
    /// The template of the cluster whose master is `master` (workers copy it), with `size`.
    pub fn of_master(master: &Kubernetes, size: u8) -> Self {
        Self {
            flist: master.flist.clone(),
            hub_url: master.hub_url.clone(),
            flist_hash: master.flist_hash.clone(),
            size,
            ssh_keys: master.ssh_keys.clone(),
            registries: master.registries.clone(),
        }
    }
}

/// A VM to make: where, at which address, as what.
pub struct Planned {
    /// Master or worker.
    pub role: Role,
    /// The node.
    pub node: NodeId,
    /// Its address there.
    pub ip: Ipv4Addr,
    /// The signed-to-be workload.
    pub spec: WorkloadSpec,
}

/// Plan a VM of `template` on `node` at the lowest free address of `network` there (which then
/// counts it), joining `master` (none: it is the master), with `secret` sealed to the node.
pub fn plan(
    s: &Session,
    network: &mut Network,
    node: NodeId,
    template: &Template,
    (secret, mark): (&ClusterSecret, &Mark),
    master: Option<Ipv4Addr>,
    expires_at: i64,
) -> Result<Planned> {
    let role = if master.is_some() { Role::Worker } else { Role::Master };
    let ip = network.free_ip(&node)?;
    let kubernetes = Kubernetes {
        size: template.size,
        flist: template.flist.clone(),
        hub_url: template.hub_url.clone(),
        flist_hash: template.flist_hash.clone(),
        network_id: network.name().to_owned(),
        ipaddress: ip,
        cluster_secret: zgrid_types::sealed::seal_secret(&node, secret.expose()),
        master_ips: master.into_iter().collect(),
        ssh_keys: template.ssh_keys.clone(),
        datastore_endpoint: String::new(),
        disable_default_ingress: true,
        registries: template.registries.clone(),
    };
    let notes = mark.as_role(role).notes();
    let spec = submit::new_spec(&s.identity, node, expires_at, &notes, WorkloadData::Kubernetes(kubernetes))?;
    let (workload_id, kind) = (spec.id.clone(), WorkloadKind::Kubernetes);
    network.attach(Attachment { workload_id, kind, node_id: node, ip });
    Ok(Planned { role, node, ip, spec })
}

/// Check `planned` as the explorer and node will, before anything is made.
pub fn check(planned: &Planned) -> Result<()> {
    planned.spec.validate(zgrid_types::unix_now()).map_err(|e| anyhow::anyhow!("invalid kubernetes workload: {e}"))
}

/// Submit the `planned` VMs, then wait for every node's verdict at once, showing each VM's
/// progress. The VMs when all run; else an error naming each VM that failed and why.
pub async fn provision(s: &Session, planned: Vec<Planned>) -> Result<Vec<ClusterVm>> {
    let mut submitted = Vec::new();
    for p in planned {
        let label = format!("{} {}", p.role.as_str(), p.ip);
        let record = submit::submit_new(&s.client, &s.identity, p.spec)
            .await
            .map_err(|e| anyhow::anyhow!("cannot submit the {label} on node {}: {e:#}", p.node))?;
        s.progress(format!("{label}: workload {} on node {}", record.workload.payload.id, p.node));
        submitted.push((p.role, label, record));
    }
    let waits = submitted.iter().map(|(role, label, record)| async move {
        let done = deploy::wait_for_node(&s.client, record, s.json, &format!("{label}: "), VM_LIMIT).await;
        let vm = ClusterVm::of(record, *role).expect("a kubernetes workload");
        match done {
            Ok(done) => match done.result.as_ref().map(|r| &r.payload) {
                Some(r) if r.state == ResultState::Ok => {
                    Ok(ClusterVm::of(&done, *role).expect("a kubernetes workload"))
                }
                r => Err(format!("{} failed: {}", vm.describe(), r.map_or("no result", |r| r.message.as_str()))),
            },
            Err(e) => Err(format!("{}: {e:#}", vm.describe())),
        }
    });
    let (mut vms, mut failures) = (Vec::new(), Vec::new());
    for outcome in futures::future::join_all(waits).await {
        match outcome {
            Ok(vm) => vms.push(vm),
            Err(why) => failures.push(why),
        }
    }
    if !failures.is_empty() {
        bail!("{}", failures.join("; "));
    }
    Ok(vms)
}
