//! The node's provisioner: makes each kind of workload real on this machine. Containers run
//! with runc ([`container`]), probed by the agent ([`probes`]); volumes are size-limited filesystems ([`volume`]); network
//! resources are namespaces joined by WireGuard ([`crate::network`]); VMs run with qemu
//! ([`vm`]), Kubernetes VMs among them ([`kubernetes`]).

mod container;
mod kubernetes;
mod logs;
mod probes;
mod redis;
mod stats;
mod tasks;
mod vm;
mod volume;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use zgrid_types::{Keypair, Signed, WorkloadData, WorkloadId, WorkloadSpec};

use crate::network::Networks;
use crate::provision::{Health, Progress, ProvisionError, Provisioner};
use crate::runtime::Runtime;
use crate::vm::Vms;

/// Provisions containers and volumes through one [`Runtime`], and networks.
pub struct Workloads {
    runtime: Runtime,
    networks: Networks,
    /// Opens secrets sealed to this node.
    key: Keypair,
    /// Agent-side tasks of running containers: statistics, output forwarding, consoles, probes.
    tasks: tasks::Tasks,
    /// What the containers' readiness and liveness probes found.
    prober: probes::Prober,
    /// Redis outages of the publishers, reported to the owners.
    problems: redis::Problems,
    /// Where the consoles' browser terminal is, if installed.
    console_assets: Option<PathBuf>,
    images: PathBuf,
    /// Images mounted from hubs, when this node can.
    flists: Option<crate::flist::FlistImages>,
    /// OOM kills and refused processes already reported, per container.
    seen: Mutex<HashMap<String, container::Seen>>,
    /// The VM runtime, when this node runs VMs.
    vms: Option<Vms>,
    /// Why this node does not run VMs, when it does not.
    vms_missing: String,
}

impl Workloads {
    /// Workloads made with `runtime` and `networks`, opening secrets with the node's `key`;
    /// images unpacked from archives are kept under `images`.
    pub fn new(runtime: Runtime, networks: Networks, key: Keypair, images: impl Into<PathBuf>) -> Self {
        Self {
            runtime,
            networks,
            key,
            tasks: tasks::Tasks::default(),
            prober: probes::Prober::default(),
            problems: redis::Problems::default(),
            console_assets: None,
            images: images.into(),
            flists: None,
            seen: Mutex::default(),
            vms: None,
            vms_missing: "the node was started without a VM runtime".to_owned(),
        }
    }

    /// The same, running VMs with `vms`, or refusing them for the reason given.
    pub fn with_vms(mut self, vms: Result<Vms, String>) -> Self {
        match vms {
            Ok(vms) => self.vms = Some(vms),
            Err(why) => self.vms_missing = why,
        }
        self
    }

    /// The VM runtime, when this node runs VMs.
    pub fn vms(&self) -> Option<&Vms> {
        self.vms.as_ref()
    }

    /// What the node's directory entry says of its networks' WireGuard ([`Networks::wireguard`]).
    pub fn wireguard(&self) -> String {
        self.networks.wireguard()
    }

    /// The prefix containers get addresses reaching `reach` from, for the node's directory entry.
    pub fn outside_prefix(&self, reach: crate::network::Reach) -> Option<ipnet::Ipv6Net> {
        self.networks.outside(reach).map(|p| p.prefix())
    }

    /// What the node's directory entry says of its VMs, once known: the accelerator they run
    /// with (found by trying it), or `none: <why>`.
    pub fn hypervisor(&self) -> impl std::future::Future<Output = String> + Send + 'static {
        let (vms, missing) = (self.vms.clone(), self.vms_missing.clone());
        async move {
            let mut description = match vms {
                Some(vms) => match vms.accelerator().await {
                    Ok(accelerator) => accelerator.describe(),
                    Err(e) => format!("none: {e}"),
                },
                None => format!("none: {missing}"),
            };
            // The explorer takes one line of at most MAX_HYPERVISOR bytes.
            description = description.replace(char::is_control, " ");
            let mut end = description.len().min(zgrid_types::directory::MAX_HYPERVISOR);
            while !description.is_char_boundary(end) {
                end -= 1;
            }
            description.truncate(end);
            description
        }
    }

    /// The same, serving the consoles' browser terminal (xterm.js, xterm.css) from `dir`.
    pub fn with_console_assets(mut self, dir: impl Into<PathBuf>) -> Self {
        self.console_assets = Some(dir.into());
        self
    }

    /// The same, mounting flists from hubs through `flists`.
    pub fn with_flists(mut self, flists: crate::flist::FlistImages) -> Self {
        self.flists = Some(flists);
        self
    }

    /// The runtime, for logs and inspection.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }
}

impl Provisioner for Workloads {
    async fn provision(
        &self,
        workload: &Signed<WorkloadSpec>,
        progress: Progress<'_>,
    ) -> Result<serde_json::Value, ProvisionError> {
        let spec = &workload.payload;
        match &spec.data {
            WorkloadData::Container(c) => self.provision_container(spec, c, progress).await,
            WorkloadData::Volume(v) => self.provision_volume(&spec.id, v).await,
            WorkloadData::NetworkResource(nr) => self.networks.provision(&spec.id, &spec.owner_key, nr).await,
            WorkloadData::Vm(vm) => self.provision_vm(spec, vm, progress).await,
            WorkloadData::Kubernetes(k) => self.provision_kubernetes(spec, k, progress).await,
        }
    }

    async fn remove(&self, id: &WorkloadId) -> Result<(), String> {
        // The id says nothing of the kind; a volume's directory and a network's record exist
        // from their first side effect.
        if self.runtime.has_volume(id.as_str()) {
            return self.runtime.remove_volume(id.as_str()).await.map_err(|e| e.to_string());
        }
        if self.networks.has(id) {
            return self.networks.remove(id).await.map_err(|e| e.to_string());
        }
        // A VM's image, tap and the rest go with a container's below.
        if let Some(vms) = self.vms.as_ref().filter(|v| v.has(id.as_str())) {
            vms.remove(id.as_str()).await.map_err(|e| e.to_string())?;
        }
        self.tasks.stop(id.as_str());
        self.prober.forget(id.as_str());
        self.runtime.remove(id.as_str()).await.map_err(|e| e.to_string())?;
        if let Some(flists) = &self.flists {
            flists.unmount(id.as_str()).await?;
        }
        self.networks.detach(id).await.map_err(|e| e.to_string())?;
        self.networks.detach_tap(id).await.map_err(|e| e.to_string())?;
        self.seen.lock().expect("lock").remove(id.as_str());
        Ok(())
    }

    async fn health(&self, id: &WorkloadId) -> Health {
        if self.runtime.has_volume(id.as_str()) {
            self.volume_health(id)
        } else if self.networks.has(id) {
            if self.networks.is_up(id) { Health::Running } else { Health::Missing }
        } else if self.vms.as_ref().is_some_and(|v| v.has(id.as_str())) {
            self.vm_health(id).await
        } else {
            self.container_health(id).await
        }
    }

    fn updates_in_place(&self, spec: &WorkloadSpec) -> bool {
        matches!(spec.data, WorkloadData::NetworkResource(_))
    }

    fn lost_with_agent(&self, spec: &WorkloadSpec) -> bool {
        match &spec.data {
            WorkloadData::NetworkResource(_) => true,
            // The container runs on; its output forwarder, statistics publisher and console
            // were tasks of the old agent.
            WorkloadData::Container(_) => true,
            // The guest runs on; the agent's reader of its console was a task of the old agent.
            WorkloadData::Vm(_) | WorkloadData::Kubernetes(_) => true,
            WorkloadData::Volume(_) => false,
        }
    }

    fn time_limit(&self, spec: &WorkloadSpec) -> Option<std::time::Duration> {
        matches!(spec.data, WorkloadData::Kubernetes(_)).then_some(kubernetes::TIME_LIMIT)
    }

    async fn existing(&self) -> Vec<WorkloadId> {
        let ids = self.runtime.list().and_then(|mut c| {
            c.extend(self.runtime.list_volumes()?);
            c.extend(self.networks.list()?.iter().map(ToString::to_string));
            if let Some(vms) = &self.vms {
                c.extend(vms.list()?);
            }
            Ok(c)
        });
        match ids {
            Ok(ids) => ids.iter().filter_map(|i| i.parse().ok()).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot list containers, volumes and networks");
                Vec::new()
            }
        }
    }
}
