//! Where things live under the runtime's state directory:
//!
//! ```text
//! <root>/runc/<id>/                runc's own state (--root <root>/runc)
//! <root>/containers/<id>/          the container directory, also the OCI bundle
//!     config.json                  the runtime spec
//!     disk.img                     sparse file holding the writable layer (ext4)
//!     layer/                       disk.img loop-mounted: upper/ and work/ of the overlay, and
//!                                  idmap, the id range upper/ was shifted into
//!     rootfs/                      the overlay: image below, layer/upper above
//!     image/                       the image again, idmapped into the container's id range
//!     volumes/<n>/                 the n-th volume again, idmapped likewise
//!     sys/                         sysfs of the container's network namespace (user namespaces)
//!     idmap                        the container's id range: the host id of its root
//!     stdout.pipe, stderr.pipe     named pipes the container writes its output to
//!     log                          stdout and stderr as the agent keeps them, bounded
//!     oom_killed                   present once the OOM killer is known to have struck
//!     init.pid                     host pid of the container's init, written by runc
//!     exit                         how the init ended (code or signal), once the agent reaped it
//! <root>/volumes/<id>/             a volume
//!     disk.img                     sparse file holding its file system (ext4)
//!     data/                        disk.img loop-mounted; bind-mounted into containers
//! ```

use std::path::{Path, PathBuf};

use super::RuntimeError;
use super::config::check_id;

/// The paths of one container.
#[derive(Debug, Clone)]
pub(crate) struct ContainerPaths {
    /// The container directory (and OCI bundle).
    pub dir: PathBuf,
    /// The container's id.
    id: String,
}

impl ContainerPaths {
    /// The paths of container `id` under state directory `root`.
    pub(crate) fn new(root: &Path, id: &str) -> Self {
        Self { dir: containers_dir(root).join(id), id: id.to_owned() }
    }

    /// The container's id.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// The runtime spec.
    pub(crate) fn config(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    /// Where the image is mounted again with the container's ids (the overlay's lower layer).
    pub(crate) fn mapped_image(&self) -> PathBuf {
        self.dir.join("image")
    }

    /// Where the container's `n`-th volume is mounted again with the container's ids.
    pub(crate) fn mapped_volume(&self, n: usize) -> PathBuf {
        self.dir.join("volumes").join(n.to_string())
    }

    /// Where the container's user namespace is pinned (a bind mount of it).
    pub(crate) fn userns(&self) -> PathBuf {
        self.dir.join("userns")
    }

    /// The record of the container's id range.
    pub(crate) fn id_range(&self) -> PathBuf {
        self.dir.join("idmap")
    }

    /// The record of the id range the writable layer was shifted into.
    pub(crate) fn layer_range(&self) -> PathBuf {
        self.layer().join("idmap")
    }

    /// The log file.
    pub(crate) fn log(&self) -> PathBuf {
        self.dir.join("log")
    }

    /// The named pipes carrying stdout and stderr when the agent forwards them.
    pub(crate) fn pipes(&self) -> [PathBuf; 2] {
        [self.dir.join("stdout.pipe"), self.dir.join("stderr.pipe")]
    }

    /// Where runc writes the host pid of the container's init.
    pub(crate) fn init_pid(&self) -> PathBuf {
        self.dir.join("init.pid")
    }

    /// The host pid of the container's last init, as runc wrote it.
    pub(crate) fn recorded_init_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.init_pid()).ok()?.trim().parse().ok()
    }

    /// The record of how the container's init ended.
    pub(crate) fn exit_record(&self) -> PathBuf {
        self.dir.join("exit")
    }

    /// The marker recording an OOM kill.
    pub(crate) fn oom_marker(&self) -> PathBuf {
        self.dir.join("oom_killed")
    }
}

/// The paths of a root file system made of a read-only image below a writable layer, in a
/// workload's directory (a container's or a VM's).
pub(crate) trait LayeredRoot {
    /// The workload's directory.
    fn dir(&self) -> &Path;

    /// The file holding the writable layer's file system.
    fn disk_image(&self) -> PathBuf {
        self.dir().join("disk.img")
    }

    /// Where the writable layer is mounted.
    fn layer(&self) -> PathBuf {
        self.dir().join("layer")
    }

    /// The overlay's upper directory.
    fn upper(&self) -> PathBuf {
        self.layer().join("upper")
    }

    /// The overlay's work directory.
    fn work(&self) -> PathBuf {
        self.layer().join("work")
    }

    /// The merged root filesystem.
    fn rootfs(&self) -> PathBuf {
        self.dir().join("rootfs")
    }
}

impl LayeredRoot for ContainerPaths {
    fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The directory holding every container directory.
pub(crate) fn containers_dir(root: &Path) -> PathBuf {
    root.join("containers")
}

/// The directory holding every volume.
pub(crate) fn volumes_dir(root: &Path) -> PathBuf {
    root.join("volumes")
}

/// The names of the subdirectories of `dir` that are valid ids, sorted.
pub(crate) fn ids_in(dir: &Path) -> Result<Vec<String>, RuntimeError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(RuntimeError::host_io("list", dir, e)),
    };
    let mut ids = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| RuntimeError::host_io("list", dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if check_id(&name).is_ok() && entry.path().is_dir() {
            ids.push(name);
        }
    }
    ids.sort();
    Ok(ids)
}

/// runc's state directory (`runc --root`).
pub(crate) fn runc_dir(root: &Path) -> PathBuf {
    root.join("runc")
}
