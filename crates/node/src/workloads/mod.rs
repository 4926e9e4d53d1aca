//! The node's provisioner: makes each kind of workload real on this machine. Containers run
//! with runc ([`container`]); volumes are size-limited filesystems ([`volume`]); network
//! resources are namespaces joined by WireGuard ([`crate::network`]). Kubernetes VMs are
//! refused with a reason until this node version has them.

mod container;
mod logs;
mod redis;
mod stats;
mod tasks;
mod volume;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use zgrid_types::{Keypair, Signed, WorkloadData, WorkloadId, WorkloadSpec};

use crate::network::Networks;
use crate::provision::{Health, Progress, ProvisionError, Provisioner};
use crate::runtime::Runtime;

/// Provisions containers and volumes through one [`Runtime`], and networks.
pub struct Workloads {
    runtime: Runtime,
    networks: Networks,
    /// Opens secrets sealed to this node.
    key: Keypair,
    /// Agent-side tasks of running containers: statistics, output forwarding, consoles.
    tasks: tasks::Tasks,
    /// Redis outages of the publishers, reported to the owners.
    problems: redis::Problems,
    /// Where the consoles' browser terminal is, if installed.
    console_assets: Option<PathBuf>,
    images: PathBuf,
    /// Images mounted from hubs, when this node can.
    flists: Option<crate::flist::FlistImages>,
    /// OOM kills and refused processes already reported, per container.
    seen: Mutex<HashMap<String, container::Seen>>,
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
            problems: redis::Problems::default(),
            console_assets: None,
            images: images.into(),
            flists: None,
            seen: Mutex::default(),
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
            other => Err(ProvisionError::Permanent(format!(
                "{} workloads are not supported by this node version yet",
                other.kind()
            ))),
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
        self.tasks.stop(id.as_str());
        self.runtime.remove(id.as_str()).await.map_err(|e| e.to_string())?;
        if let Some(flists) = &self.flists {
            flists.unmount(id.as_str()).await?;
        }
        self.networks.detach(id).await.map_err(|e| e.to_string())?;
        self.seen.lock().expect("lock").remove(id.as_str());
        Ok(())
    }

    async fn health(&self, id: &WorkloadId) -> Health {
        if self.runtime.has_volume(id.as_str()) {
            self.volume_health(id)
        } else if self.networks.has(id) {
            if self.networks.is_up(id) { Health::Running } else { Health::Missing }
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
            _ => false,
        }
    }

    async fn existing(&self) -> Vec<WorkloadId> {
        let ids = self.runtime.list().and_then(|mut c| {
            c.extend(self.runtime.list_volumes()?);
            c.extend(self.networks.list()?.iter().map(ToString::to_string));
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
