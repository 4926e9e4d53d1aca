//! The container runtime: runs workloads' containers with Debian's `runc`, each on an overlay
//! of its read-only image and a size-limited writable layer, with CPU, memory and pids limits in
//! cgroups, and stdout/stderr in a bounded log file that outlives the agent.
//!
//! Every operation is idempotent and safe after a crash at any point: [`Runtime::start`]
//! finishes what a previous attempt began, [`Runtime::remove`] removes any subset of what a
//! container left behind, and [`Runtime::list`] finds containers from the state on disk.
//!
//! ```no_run
//! # async fn demo(cfg: zgrid_node::runtime::ContainerConfig) -> Result<(), zgrid_node::runtime::RuntimeError> {
//! use zgrid_node::runtime::Runtime;
//! let runtime = Runtime::new("/var/lib/zgrid/runtime", "zgrid")?;
//! runtime.start(&cfg).await?;
//! println!("{:?}", runtime.state(&cfg.id).await?);
//! runtime.remove(&cfg.id).await?;
//! # Ok(()) }
//! ```

mod cgroup;
pub(crate) mod command;
mod config;
mod disk;
mod error;
mod image;
mod layout;
mod lifecycle;
mod logs;
mod mounts;
mod rootfs;
mod runc;
mod spec;
mod volume;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use config::{Bind, ContainerConfig, ContainerState, HOST_INIT, MIN_DISK_MIB};
pub use error::RuntimeError;
pub use image::IMAGE_CONFIG;
pub use logs::{LOG_KEEP_BYTES, LOG_TRIM_BYTES, LogFollower};
pub use spec::CFS_PERIOD_US;

use cgroup::Cgroups;
pub use cgroup::Usage;
use command::Tools;
use config::check_id;
use layout::ContainerPaths;
use runc::Runc;

/// How long a container gets between SIGTERM and SIGKILL, unless set with
/// [`Runtime::with_stop_grace`].
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(10);

/// Runs containers under one state directory and one parent cgroup.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// The state directory (absolute, canonical).
    root: PathBuf,
    /// External programs.
    tools: Tools,
    /// runc, with its state under `root`.
    runc: Runc,
    /// The cgroup hierarchies and the parent cgroup.
    cgroups: Cgroups,
    /// Time between SIGTERM and SIGKILL when stopping.
    stop_grace: Duration,
}

impl Runtime {
    /// A runtime keeping its state in `root` (created if missing) and putting containers in
    /// cgroup `<cgroup_parent>/<id>` of every hierarchy.
    ///
    /// Checks that runc, mkfs.ext4, mount and losetup are installed, that the agent runs as
    /// root, and that the memory, cpu and pids cgroup controllers are available.
    pub fn new(root: impl Into<PathBuf>, cgroup_parent: &str) -> Result<Self, RuntimeError> {
        let root = root.into();
        let parent_ok = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
        if !cgroup_parent.split('/').all(parent_ok) {
            return Err(RuntimeError::InvalidSetting {
                setting: "cgroup parent",
                value: cgroup_parent.to_owned(),
                reason: "use names of [A-Za-z0-9_-] separated by '/'".to_owned(),
            });
        }
        let tools = Tools::find()?;
        let euid = nix::unistd::geteuid();
        if !euid.is_root() {
            return Err(RuntimeError::NotRoot { euid: euid.as_raw() });
        }
        let cgroups = Cgroups::detect(cgroup_parent)?;
        for dir in [layout::containers_dir(&root), layout::runc_dir(&root)] {
            std::fs::create_dir_all(&dir).map_err(|e| RuntimeError::host_io("create directory", dir, e))?;
        }
        let root = root.canonicalize().map_err(|e| RuntimeError::host_io("resolve", &root, e))?;
        if root.to_string_lossy().contains([',', ':', '\n']) {
            return Err(RuntimeError::InvalidSetting {
                setting: "state directory",
                value: root.display().to_string(),
                reason: "overlay mount options cannot carry ',', ':' or newlines in paths".to_owned(),
            });
        }
        tracing::debug!(root = %root.display(), layout = cgroups.layout(), "container runtime ready");
        let runc = Runc::new(tools.runc.clone(), layout::runc_dir(&root));
        Ok(Self { root, tools, runc, cgroups, stop_grace: DEFAULT_STOP_GRACE })
    }

    /// The same runtime, giving containers `grace` between SIGTERM and SIGKILL when stopped.
    pub fn with_stop_grace(mut self, grace: Duration) -> Self {
        self.stop_grace = grace;
        self
    }

    /// The state directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The container's recent stdout and stderr: at most the last [`LOG_KEEP_BYTES`].
    pub fn logs(&self, id: &str) -> Result<Vec<u8>, RuntimeError> {
        let paths = self.paths(id)?;
        if !paths.dir.exists() {
            return Err(RuntimeError::NotFound { id: id.to_owned() });
        }
        logs::tail(id, &paths.log())
    }

    /// A reader of the container's log from its recent tail onwards, or `None` when the
    /// container does not exist on this node.
    pub fn follow_logs(&self, id: &str) -> Result<Option<LogFollower>, RuntimeError> {
        let paths = self.paths(id)?;
        Ok(paths.dir.exists().then(|| LogFollower::new(id, paths.log())))
    }

    /// The named pipes carrying container `id`'s stdout and stderr, when it was started with
    /// [`ContainerConfig::log_pipes`]: whoever forwards them appends what they carry to the log
    /// with [`Runtime::append_log`].
    pub fn log_pipes(&self, id: &str) -> Result<Option<[PathBuf; 2]>, RuntimeError> {
        let pipes = self.paths(id)?.pipes();
        Ok(pipes.iter().all(|p| p.exists()).then_some(pipes))
    }

    /// Append output of container `id` to its log.
    pub fn append_log(&self, id: &str, bytes: &[u8]) -> Result<(), RuntimeError> {
        logs::append(id, &self.paths(id)?.log(), bytes)
    }

    /// Start `args` in running container `id` on a new terminal (`runc exec --tty`), with the
    /// container's environment, limits and namespaces. Returns the process's host pid and the
    /// terminal's master end.
    pub async fn exec_tty(&self, id: &str, args: &[String]) -> Result<(u32, std::os::fd::OwnedFd), RuntimeError> {
        let paths = self.paths(id)?;
        let n: u32 = rand::random();
        let (socket, pid_file) =
            (paths.dir.join(format!("tty-{n:08x}.sock")), paths.dir.join(format!("tty-{n:08x}.pid")));
        self.runc.exec_tty(id, args, &socket, &pid_file).await
    }

    /// Host pids of the processes in container `id`.
    pub fn processes(&self, id: &str) -> Result<Vec<u32>, RuntimeError> {
        check_id(id)?;
        self.cgroups.processes(id)
    }

    /// Whether anything of container `id` exists on this node.
    pub fn exists(&self, id: &str) -> bool {
        self.paths(id).is_ok_and(|p| p.dir.exists())
    }

    /// Cut the container's log down to its last [`LOG_KEEP_BYTES`] once it exceeds
    /// [`LOG_TRIM_BYTES`]. Output written while trimming may be lost or misplaced (a window of
    /// microseconds; see the module `logs`).
    pub fn trim_logs(&self, id: &str) -> Result<(), RuntimeError> {
        logs::trim(id, &self.paths(id)?.log())
    }

    /// Ids of the containers this runtime has state for on disk (a container directory or runc
    /// state), sorted: after a crash, each is to be adopted or removed.
    pub fn list(&self) -> Result<Vec<String>, RuntimeError> {
        let mut ids = layout::ids_in(&layout::containers_dir(&self.root))?;
        ids.extend(layout::ids_in(&layout::runc_dir(&self.root))?);
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    /// The container's resource use from its cgroups, or `None` when it has none (not running).
    pub fn usage(&self, id: &str) -> Result<Option<Usage>, RuntimeError> {
        check_id(id)?;
        self.cgroups.usage(id)
    }

    /// How many processes of the container the kernel's OOM killer has killed so far.
    pub fn oom_kills(&self, id: &str) -> Result<u64, RuntimeError> {
        check_id(id)?;
        self.cgroups.oom_kills(id)
    }

    /// The container's cgroup directory for `controller` (e.g. `cpu`, `memory`), for inspection.
    pub fn cgroup_path(&self, id: &str, controller: &str) -> PathBuf {
        self.cgroups.path(id, controller)
    }

    /// The paths of container `id`, once the id is known to be safe in paths.
    fn paths(&self, id: &str) -> Result<ContainerPaths, RuntimeError> {
        check_id(id)?;
        Ok(ContainerPaths::new(&self.root, id))
    }
}
