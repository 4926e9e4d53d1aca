//! The runtime's error type: every variant names the container, command or path involved, and
//! the ones a farmer can fix say how.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A container runtime failure.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A program the runtime needs is not installed.
    #[error(
        "{program} is not installed (looked in PATH, /usr/sbin, /usr/bin, /sbin, /bin); install it: apt-get install {package}"
    )]
    ProgramMissing {
        /// The program looked for.
        program: &'static str,
        /// The Debian package that provides it.
        package: &'static str,
    },
    /// The agent does not run as root.
    #[error("the container runtime needs root (running as uid {euid}); start the node agent as root")]
    NotRoot {
        /// The effective uid of the agent.
        euid: u32,
    },
    /// No cgroup filesystem is mounted.
    #[error("no cgroup filesystem is mounted under /sys/fs/cgroup; mount one: mount -t cgroup2 none /sys/fs/cgroup")]
    NoCgroups,
    /// A cgroup controller the runtime enforces limits with is not available.
    #[error(
        "cgroup controller {controller} is not available ({layout}); enable it: add cgroup_enable={controller} to the kernel command line, or mount it (cgroup v1: mkdir /sys/fs/cgroup/{controller} && mount -t cgroup -o {controller} cgroup /sys/fs/cgroup/{controller})"
    )]
    ControllerMissing {
        /// The missing controller.
        controller: &'static str,
        /// The cgroup layout in use.
        layout: &'static str,
    },
    /// A container id that cannot be used in paths and cgroup names.
    #[error("invalid workload id {id:?}: use 1 to 32 characters from [a-z0-9-]")]
    InvalidId {
        /// The rejected id.
        id: String,
    },
    /// A runtime setting (state directory, cgroup parent) is unusable.
    #[error("invalid runtime setting {setting} {value:?}: {reason}")]
    InvalidSetting {
        /// Which setting.
        setting: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A container configuration that cannot be run.
    #[error("invalid configuration for container {id}: {field}: {reason}")]
    InvalidConfig {
        /// The container.
        id: String,
        /// The field at fault.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The image's `/.zgrid/config.json` is unreadable or malformed.
    #[error("workload {id}: invalid image config {path}: {reason}")]
    ImageConfig {
        /// The container.
        id: String,
        /// The image config file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The container's program is not an executable file in its image: the deployer's to fix,
    /// so starting again cannot help.
    #[error("the entrypoint {program:?} {problem}; deploy with an --entrypoint the image has, or an image that has it")]
    EntrypointMissing {
        /// argv\[0\] as deployed.
        program: String,
        /// What is wrong with it (`is not in the image`, ...).
        problem: String,
    },
    /// There is nothing on this node for the container.
    #[error("workload {id} does not exist on this node")]
    NotFound {
        /// The container.
        id: String,
    },
    /// An external command could not be started.
    #[error("workload {id}: cannot run `{command}`: {source}")]
    Spawn {
        /// The container.
        id: String,
        /// The command line.
        command: String,
        /// Why it could not be started.
        source: io::Error,
    },
    /// An external command did not finish in time (it was killed).
    #[error("workload {id}: `{command}` did not finish within {timeout:?} and was killed")]
    Timeout {
        /// The container.
        id: String,
        /// The command line.
        command: String,
        /// The limit it exceeded.
        timeout: Duration,
    },
    /// An external command failed.
    #[error("workload {id}: `{command}` failed ({status}): {stderr}")]
    Command {
        /// The container.
        id: String,
        /// The command line.
        command: String,
        /// How it exited.
        status: String,
        /// Its error output (trimmed).
        stderr: String,
    },
    /// An external command printed something the runtime could not understand.
    #[error("workload {id}: cannot parse the output of `{command}`: {reason}")]
    Parse {
        /// The container.
        id: String,
        /// The command line.
        command: String,
        /// What was wrong with the output.
        reason: String,
    },
    /// A file system operation for one container failed.
    #[error("workload {id}: cannot {action} {path}: {source}")]
    Io {
        /// The container.
        id: String,
        /// What was being done, as a verb phrase.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A file system operation not tied to one container failed.
    #[error("cannot {action} {path}: {source}")]
    HostIo {
        /// What was being done, as a verb phrase.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A VM cannot boot as deployed (its image, its kernel arguments); starting it again will
    /// not help.
    #[error("workload {id}: the VM cannot boot: {reason}")]
    GuestRefused {
        /// The VM.
        id: String,
        /// Why: what the guest's initramfs said and the console's last lines, or what the node
        /// found wrong before starting it.
        reason: String,
    },
    /// A VM could not be started, booted or controlled.
    #[error("workload {id}: {reason}")]
    Vm {
        /// The VM.
        id: String,
        /// What went wrong.
        reason: String,
    },
    /// Removal could not take something away; nothing was deleted under it.
    #[error("workload {id}: {what} is still present after cleanup; remove it by hand and retry")]
    Leftover {
        /// The container.
        id: String,
        /// What is left (a mount point, a cgroup, a loop device).
        what: String,
    },
}

impl RuntimeError {
    /// The error as the container's owner is told it: the cause, without the node's paths
    /// under `root` or the command lines that failed (those go to the node's log).
    pub fn for_owner(&self, root: &Path) -> String {
        let scrub = |text: &str| text.replace(&*root.to_string_lossy(), "…");
        match self {
            Self::Command { stderr, .. } => {
                let said = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no reason given");
                format!("the container could not be started: {}", scrub(said.trim()))
            }
            Self::Spawn { source, .. } => format!("the node cannot run its container runtime: {source}"),
            Self::Timeout { timeout, .. } => format!("the node's container runtime did not answer within {timeout:?}"),
            Self::Parse { .. } => "the node's container runtime gave an answer the node does not understand".into(),
            Self::Io { action, source, .. } | Self::HostIo { action, source, .. } => {
                format!("the node cannot {action} the container's files: {source}")
            }
            Self::ImageConfig { reason, .. } => {
                format!("the image's /{} is invalid: {}", super::IMAGE_CONFIG, scrub(reason))
            }
            other => scrub(&other.to_string()),
        }
    }

    /// An [`RuntimeError::Io`] for container `id`.
    pub(crate) fn io(id: &str, action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io { id: id.to_owned(), action, path: path.into(), source }
    }

    /// A [`RuntimeError::HostIo`].
    pub(crate) fn host_io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::HostIo { action, path: path.into(), source }
    }
}
