//! Volumes: a size-limited ext4 filesystem per volume workload, mounted on the node and
//! bind-mounted into the owner's containers. Its data outlives containers, agent restarts and
//! reboots; it goes when the volume workload is deleted or expires.

use zgrid_types::WorkloadId;
use zgrid_types::workload::Volume;

use super::Workloads;
use crate::provision::{Health, ProvisionError};

impl Workloads {
    /// Create (or mount again) the volume.
    pub(super) async fn provision_volume(
        &self,
        id: &WorkloadId,
        v: &Volume,
    ) -> Result<serde_json::Value, ProvisionError> {
        self.runtime.create_volume(id.as_str(), v.size).await.map_err(|e| ProvisionError::Transient(e.to_string()))?;
        Ok(serde_json::json!({ "id": id, "size": v.size }))
    }

    /// Mounted is running; an unmounted volume is missing and gets mounted again.
    pub(super) fn volume_health(&self, id: &WorkloadId) -> Health {
        match self.runtime.volume(id.as_str()) {
            Ok(Some(_)) => Health::Running,
            Ok(None) => Health::Missing,
            Err(e) => {
                tracing::warn!(workload = %id, error = %e, "cannot check the volume");
                Health::Running
            }
        }
    }
}
