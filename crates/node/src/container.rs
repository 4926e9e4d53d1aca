//! The container provisioner: turns a signed container workload into a runc container through
//! [`Runtime`], and reports on it. Other workload kinds are refused with a reason until their
//! provisioners exist.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use zgrid_types::workload::Container;
use zgrid_types::{Signed, WorkloadData, WorkloadId, WorkloadSpec};

use crate::provision::{Health, Progress, ProvisionError, Provisioner};
use crate::runtime::{ContainerConfig, ContainerState, Runtime};

/// Most processes one container may run.
const PIDS_LIMIT: i64 = 4096;

/// Provisions containers with runc.
pub struct Containers {
    runtime: Runtime,
    images: PathBuf,
    /// OOM kills already reported, per container.
    oom_seen: Mutex<HashMap<String, u64>>,
}

impl Containers {
    /// Containers run by `runtime`; images unpacked from archives are kept under `images`.
    pub fn new(runtime: Runtime, images: impl Into<PathBuf>) -> Self {
        Self { runtime, images: images.into(), oom_seen: Mutex::default() }
    }

    /// The runtime, for logs and inspection.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    async fn config(&self, id: &WorkloadId, c: &Container) -> Result<ContainerConfig, ProvisionError> {
        let unsupported =
            |what: &str| Err(ProvisionError::Permanent(format!("{what} is not supported by this node version yet")));
        if !c.network_connection.is_empty() {
            return unsupported("joining a private network");
        }
        if !c.volumes.is_empty() {
            return unsupported("mounting volumes");
        }
        if !c.secret_environment.is_empty() {
            return unsupported("secret_environment");
        }
        if c.interactive {
            return unsupported("the interactive console");
        }
        if !c.logs.is_empty() || !c.stats.is_empty() {
            return unsupported("publishing logs or stats to Redis");
        }
        // Unpacking may block (a slow disk, a FIFO): keep it off the async workers so the step
        // time limit can abandon it.
        let (flist, images) = (c.flist.clone(), self.images.clone());
        let image = tokio::task::spawn_blocking(move || crate::source::resolve(&flist, &images))
            .await
            .map_err(|e| ProvisionError::Transient(format!("image preparation stopped: {e}")))??;
        let args = shlex::split(&c.entrypoint)
            .ok_or_else(|| ProvisionError::Permanent(format!("entrypoint {:?} has unbalanced quotes", c.entrypoint)))?;
        Ok(ContainerConfig {
            id: id.to_string(),
            image,
            env: c.environment.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            args,
            hostname: id.to_string(),
            cpu: c.capacity.cpu,
            memory_mib: c.capacity.memory,
            disk_mib: c.capacity.disk_size,
            pids_limit: PIDS_LIMIT,
            netns: None,
        })
    }
}

impl Provisioner for Containers {
    async fn provision(
        &self,
        workload: &Signed<WorkloadSpec>,
        progress: Progress<'_>,
    ) -> Result<serde_json::Value, ProvisionError> {
        let spec = &workload.payload;
        let WorkloadData::Container(c) = &spec.data else {
            let kind = spec.data.kind();
            return Err(ProvisionError::Permanent(format!(
                "{kind} workloads are not supported by this node version yet"
            )));
        };
        let config = self.config(&spec.id, c).await?;
        progress(zgrid_types::result::IMAGE_READY);
        // A running container is left alone; a stopped one starts again on its writable layer.
        self.runtime.start(&config).await.map_err(|e| ProvisionError::Transient(e.to_string()))?;
        Ok(serde_json::json!({ "id": spec.id }))
    }

    async fn remove(&self, id: &WorkloadId) -> Result<(), String> {
        self.runtime.remove(id.as_str()).await.map_err(|e| e.to_string())?;
        self.oom_seen.lock().expect("lock").remove(id.as_str());
        Ok(())
    }

    async fn health(&self, id: &WorkloadId) -> Health {
        match self.runtime.state(id.as_str()).await {
            Ok(ContainerState::Running { .. }) => {
                if let Err(e) = self.runtime.trim_logs(id.as_str()) {
                    tracing::warn!(workload = %id, error = %e, "cannot trim the container's log");
                }
                let kills = self.runtime.oom_kills(id.as_str()).unwrap_or(0);
                let mut seen = self.oom_seen.lock().expect("lock");
                let before = seen.insert(id.to_string(), kills).unwrap_or(0);
                if kills > before {
                    Health::Degraded(format!(
                        "out of memory: the kernel killed a process in the container ({kills} so far)"
                    ))
                } else {
                    Health::Running
                }
            }
            Ok(ContainerState::Stopped { oom_killed: true }) => {
                Health::Stopped("killed by the kernel: out of memory".into())
            }
            Ok(ContainerState::Stopped { oom_killed: false }) => Health::Stopped("the container exited".into()),
            Ok(ContainerState::Missing) => Health::Missing,
            Err(e) => {
                tracing::warn!(workload = %id, error = %e, "cannot read container state");
                Health::Running
            }
        }
    }

    async fn existing(&self) -> Vec<WorkloadId> {
        match self.runtime.list() {
            Ok(ids) => ids.iter().filter_map(|i| i.parse().ok()).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot list containers");
                Vec::new()
            }
        }
    }
}
