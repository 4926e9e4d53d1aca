//! The node's provisioner: makes each kind of workload real on this machine. Containers run
//! with runc ([`container`]); volumes are size-limited filesystems ([`volume`]). Network
//! resources and Kubernetes VMs are refused with a reason until this node version has them.

mod container;
mod volume;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use zgrid_types::{Signed, WorkloadData, WorkloadId, WorkloadSpec};

use crate::provision::{Health, Progress, ProvisionError, Provisioner};
use crate::runtime::Runtime;

/// Provisions containers and volumes through one [`Runtime`].
pub struct Workloads {
    runtime: Runtime,
    images: PathBuf,
    /// OOM kills already reported, per container.
    oom_seen: Mutex<HashMap<String, u64>>,
}

impl Workloads {
    /// Workloads made with `runtime`; images unpacked from archives are kept under `images`.
    pub fn new(runtime: Runtime, images: impl Into<PathBuf>) -> Self {
        Self { runtime, images: images.into(), oom_seen: Mutex::default() }
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
            WorkloadData::Container(c) => self.provision_container(&spec.id, c, progress).await,
            WorkloadData::Volume(v) => self.provision_volume(&spec.id, v).await,
            other => Err(ProvisionError::Permanent(format!(
                "{} workloads are not supported by this node version yet",
                other.kind()
            ))),
        }
    }

    async fn remove(&self, id: &WorkloadId) -> Result<(), String> {
        // The id says nothing of the kind; a volume's directory exists from its first side effect.
        if self.runtime.has_volume(id.as_str()) {
            return self.runtime.remove_volume(id.as_str()).await.map_err(|e| e.to_string());
        }
        self.runtime.remove(id.as_str()).await.map_err(|e| e.to_string())?;
        self.oom_seen.lock().expect("lock").remove(id.as_str());
        Ok(())
    }

    async fn health(&self, id: &WorkloadId) -> Health {
        if self.runtime.has_volume(id.as_str()) { self.volume_health(id) } else { self.container_health(id).await }
    }

    async fn existing(&self) -> Vec<WorkloadId> {
        let ids = self.runtime.list().and_then(|mut c| {
            c.extend(self.runtime.list_volumes()?);
            Ok(c)
        });
        match ids {
            Ok(ids) => ids.iter().filter_map(|i| i.parse().ok()).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot list containers and volumes");
                Vec::new()
            }
        }
    }
}
