//! Where a VM's things live under the VM runtime's state directory:
//!
//! ```text
//! <root>/vms/<id>/
//!     disk.img           sparse file holding the writable layer (ext4, with a journal)
//!     layer/             disk.img loop-mounted: upper/ and work/ of the overlay
//!     rootfs/            the overlay the guest boots from: its kernel's modules and the image
//!                        below, layer/upper above; shared with the guest by virtiofsd
//!     fwcfg/             the guest's configuration, handed over through qemu's fw_cfg
//!     virtiofs-<n>.sock  vhost-user sockets of virtiofsd (0: the root, 1..: volumes)
//!     virtiofs-<n>.log   what that virtiofsd said (errors only)
//!     qmp.sock           qemu's QMP control socket
//!     console.sock       the guest's serial console
//!     console.log        the serial console as the agent keeps it, bounded
//!     qemu.pid           qemu's pid
//!     uid                the host user and group id qemu runs as, this VM's alone
//! <root>/boot/           initramfs images, one per kernel and init script
//! <root>/probe/          the accelerator probe's scratch files
//! ```

use std::path::{Path, PathBuf};

use crate::runtime::layout::LayeredRoot;

/// The paths of one VM.
#[derive(Debug, Clone)]
pub(crate) struct VmPaths {
    /// The VM's directory.
    pub dir: PathBuf,
}

impl VmPaths {
    /// The paths of VM `id` under state directory `root`.
    pub(crate) fn new(root: &Path, id: &str) -> Self {
        Self { dir: vms_dir(root).join(id) }
    }

    /// The guest's configuration files.
    pub(crate) fn fwcfg(&self) -> PathBuf {
        self.dir.join("fwcfg")
    }

    /// The vhost-user socket of the `n`-th shared directory (0 is the root).
    pub(crate) fn virtiofs_socket(&self, n: usize) -> PathBuf {
        self.dir.join(format!("virtiofs-{n}.sock"))
    }

    /// What the `n`-th virtiofsd said (errors only), since it last started.
    pub(crate) fn virtiofs_log(&self, n: usize) -> PathBuf {
        self.dir.join(format!("virtiofs-{n}.log"))
    }

    /// qemu's QMP socket.
    pub(crate) fn qmp(&self) -> PathBuf {
        self.dir.join("qmp.sock")
    }

    /// The serial console's socket.
    pub(crate) fn console(&self) -> PathBuf {
        self.dir.join("console.sock")
    }

    /// The serial console's log.
    pub(crate) fn console_log(&self) -> PathBuf {
        self.dir.join("console.log")
    }

    /// The record of the host user id qemu runs as.
    pub(crate) fn uid(&self) -> PathBuf {
        self.dir.join("uid")
    }

    /// qemu's pid file.
    pub(crate) fn pid_file(&self) -> PathBuf {
        self.dir.join("qemu.pid")
    }
}

impl LayeredRoot for VmPaths {
    fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The directory holding every VM's directory.
pub(crate) fn vms_dir(root: &Path) -> PathBuf {
    root.join("vms")
}

/// The directory of initramfs images.
pub(crate) fn boot_dir(root: &Path) -> PathBuf {
    root.join("boot")
}

/// The accelerator probe's scratch directory.
pub(crate) fn probe_dir(root: &Path) -> PathBuf {
    root.join("probe")
}
