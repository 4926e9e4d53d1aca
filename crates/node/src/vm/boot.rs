//! How a VM boots: which kernel ([`Kernel`]), the initramfs the node builds for it
//! ([`initramfs()`]), the guest's configuration passed as qemu fw_cfg entries ([`GuestConfig`])
//! and the kernel command line ([`kernel_cmdline`]).
//!
//! The guest's root is a directory on the node (the image's flist mount under a writable
//! overlay) exported by virtiofsd with the tag [`ROOT_TAG`]. The initramfs's `/init`
//! (`boot/init.sh`) loads the virtio, fuse and virtiofs modules, mounts that share, applies the
//! configuration and runs the image's `/sbin/init`; when something is wrong it prints a line
//! starting with [`CONSOLE_PREFIX`] on the serial console and powers the VM off.

mod guest_config;
mod initramfs;
mod kernel;
mod modules;

pub use guest_config::{GuestConfig, Volume};
pub use initramfs::initramfs;
pub use kernel::Kernel;

/// The virtiofs tag of the VM's root share.
pub const ROOT_TAG: &str = "root";

/// How `/init` starts the lines it prints on the console: `zgrid: starting /sbin/init` when it
/// hands over to the image, `zgrid: <what failed and what to change>` before it powers off.
pub const CONSOLE_PREFIX: &str = "zgrid: ";

/// The line `/init` prints when it hands over to the image's init.
pub const STARTING_INIT: &str = "zgrid: starting /sbin/init";

/// The longest kernel command line x86 kernels take (COMMAND_LINE_SIZE), terminator included.
const MAX_CMDLINE: usize = 2048;

/// What went wrong preparing a VM's boot.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// A file of the kernel, the image or the node could not be read or written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, with the path.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The kernel, the image or the deployment cannot boot as it is; says what to change.
    #[error("{0}")]
    Invalid(String),
}

impl BootError {
    /// An I/O error with what was being done.
    fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| BootError::Io { what, source }
    }
}

/// The kernel command line: the serial console on ttyS0, `eth0` as the network interface's
/// name, reboot at once on a panic (qemu, started with `-no-reboot`, then exits) and a quiet
/// boot, followed by the deployment's `extra` arguments.
pub fn kernel_cmdline(extra: &str) -> Result<String, BootError> {
    let base = "console=ttyS0 net.ifnames=0 panic=-1 quiet";
    let extra = extra.trim();
    if extra.chars().any(|c| c.is_control()) {
        return Err(BootError::Invalid(
            "the kernel command line additions contain a control character (a newline?); give them on one line".into(),
        ));
    }
    let line = if extra.is_empty() { base.to_string() } else { format!("{base} {extra}") };
    if line.len() >= MAX_CMDLINE {
        return Err(BootError::Invalid(format!(
            "the kernel command line would be {} bytes, more than the kernel's {}; shorten the additions",
            line.len(),
            MAX_CMDLINE - 1
        )));
    }
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_appends_the_deployments_arguments() {
        assert_eq!(kernel_cmdline("").unwrap(), "console=ttyS0 net.ifnames=0 panic=-1 quiet");
        assert_eq!(
            kernel_cmdline(" systemd.unit=rescue.target ").unwrap(),
            "console=ttyS0 net.ifnames=0 panic=-1 quiet systemd.unit=rescue.target"
        );
        assert!(kernel_cmdline("a\nb").is_err());
        assert!(kernel_cmdline(&"x".repeat(MAX_CMDLINE)).is_err());
    }
}
