//! Volumes: size-limited filesystems that outlive the containers mounting them, kept under
//! `<root>/volumes/<id>/` (`disk.img`, mounted at `data/`). Containers get `data/` bind-mounted.
//! The data survives the agent's restart and the machine's reboot (mounting again reuses the
//! image) and goes only with [`Runtime::remove_volume`].

use std::path::PathBuf;

use super::config::check_id;
use super::{Runtime, RuntimeError, disk, layout, mounts};

impl Runtime {
    /// Create volume `id` of `mib` MiB (formatting it once) and mount it; returns the directory
    /// containers bind-mount. Idempotent: an existing volume keeps its data.
    pub async fn create_volume(&self, id: &str, mib: u64) -> Result<PathBuf, RuntimeError> {
        check_id(id)?;
        let dir = layout::volumes_dir(&self.root).join(id);
        let data = dir.join("data");
        disk::mount(&self.tools, id, &dir.join("disk.img"), &data, mib, true).await?;
        Ok(data)
    }

    /// Whether anything of volume `id` exists on this node (mounted or not, complete or not).
    pub fn has_volume(&self, id: &str) -> bool {
        check_id(id).is_ok() && layout::volumes_dir(&self.root).join(id).exists()
    }

    /// The mounted data directory of volume `id`, or `None` when it is not mounted.
    pub fn volume(&self, id: &str) -> Result<Option<PathBuf>, RuntimeError> {
        check_id(id)?;
        let data = layout::volumes_dir(&self.root).join(id).join("data");
        Ok(mounts::is_mounted(&data)?.then_some(data))
    }

    /// Unmount volume `id` and delete it with its data. Idempotent.
    pub async fn remove_volume(&self, id: &str) -> Result<(), RuntimeError> {
        check_id(id)?;
        let dir = layout::volumes_dir(&self.root).join(id);
        disk::release(&self.tools, id, &dir, &dir.join("disk.img")).await?;
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(RuntimeError::io(id, "remove", dir, e)),
            _ => Ok(()),
        }
    }

    /// Ids of the volumes on disk, sorted.
    pub fn list_volumes(&self) -> Result<Vec<String>, RuntimeError> {
        layout::ids_in(&layout::volumes_dir(&self.root))
    }
}
