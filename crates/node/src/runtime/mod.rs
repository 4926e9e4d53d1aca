//! The container runtime: runs workloads' containers with Debian's `runc`, each on an overlay
//! of its read-only image and a size-limited writable layer, in a user namespace of its own id
//! range where the kernel allows, under a system-call filter, with CPU, memory and pids limits
//! in cgroups (and a pids limit for all of them together), and stdout/stderr kept in a bounded
//! log file that outlives the agent.
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

pub(crate) mod cgroup;
pub(crate) mod command;
mod config;
pub(crate) mod disk;
mod entrypoint;
mod error;
mod exec;
mod idmap;
mod image;
pub(crate) mod layout;
mod lifecycle;
pub(crate) mod logs;
pub(crate) mod mounts;
mod reaper;
pub(crate) mod rootfs;
mod runc;
mod seccomp;
mod spec;
mod volume;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use config::{Bind, ContainerConfig, ContainerState, HOST_INIT, MIN_DISK_MIB};
pub use error::RuntimeError;
pub use exec::{ExecOutput, ExecSession, Resizer};
pub use idmap::{IDS_PER_CONTAINER, IdRange};
pub use image::IMAGE_CONFIG;
pub use logs::{LOG_KEEP_BYTES, LOG_TRIM_BYTES, LogFollower, READ_BYTES};
pub use spec::CFS_PERIOD_US;

use cgroup::Cgroups;
pub use cgroup::Usage;
use command::Tools;
pub(crate) use config::check_id;
pub(crate) use idmap::wait_for_namespace;
use layout::ContainerPaths;
pub use reaper::Exit;
pub use runc::Exited;
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
    /// Whether containers run in user namespaces of their own id ranges.
    user_namespaces: bool,
    /// Serialises the assignment of id ranges.
    ranges: Arc<Mutex<()>>,
    /// Most processes and threads all containers may have together.
    node_pids: u64,
    /// Started containers' output pipes, held open until [`Runtime::pump_logs`] reads them.
    held_pipes: Arc<Mutex<HashMap<String, [std::fs::File; 2]>>>,
}

impl Runtime {
    /// A runtime keeping its state in `root` (created if missing) and putting containers in
    /// cgroup `<cgroup_parent>/<id>` of every hierarchy.
    ///
    /// Checks that runc, mkfs.ext4, mount, losetup and unshare are installed, that the agent
    /// runs as root, and that the memory, cpu and pids cgroup controllers are available. Limits
    /// the parent cgroup to [`Runtime::node_pids_limit`] processes. Containers get user
    /// namespaces when the kernel makes idmapped mounts of `root`'s file system (otherwise the
    /// runtime logs why not); then every directory above `root` must let others through.
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
        // Containers' inits become the agent's children, so it learns how they end.
        reaper::start().map_err(|e| RuntimeError::host_io("set the child subreaper flag on", "/proc/self", e))?;
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
        let node_pids = cgroup::node_pids_limit()?;
        cgroups.limit_parent_pids(node_pids)?;
        let user_namespaces = match idmap::unsupported(&tools, &root) {
            Some(why) => {
                tracing::warn!(root = %root.display(), "containers run without user namespaces: {why}");
                false
            }
            None => true,
        };
        if let Some(reason) = user_namespaces.then(|| idmap::closed_ancestor(&root)).flatten() {
            return Err(RuntimeError::InvalidSetting {
                setting: "state directory",
                value: root.display().to_string(),
                reason,
            });
        }
        tracing::debug!(root = %root.display(), layout = cgroups.layout(), user_namespaces, node_pids, "container runtime ready");
        let runc = Runc::new(tools.runc.clone(), layout::runc_dir(&root));
        Ok(Self {
            root,
            tools,
            runc,
            cgroups,
            stop_grace: DEFAULT_STOP_GRACE,
            user_namespaces,
            ranges: Arc::default(),
            node_pids,
            held_pipes: Arc::default(),
        })
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

    /// The container's recent stdout and stderr, merged as they came: what the last
    /// [`LOG_KEEP_BYTES`] of its log hold.
    pub fn logs(&self, id: &str) -> Result<Vec<u8>, RuntimeError> {
        let paths = self.paths(id)?;
        if !paths.dir.exists() {
            return Err(RuntimeError::NotFound { id: id.to_owned() });
        }
        Ok(zgrid_types::logs::LogDecoder::default().merged(&logs::tail(id, &paths.log())?))
    }

    /// A reader of the container's log from its recent tail onwards, or `None` when the
    /// container does not exist on this node.
    pub fn follow_logs(&self, id: &str) -> Result<Option<LogFollower>, RuntimeError> {
        let paths = self.paths(id)?;
        Ok(paths.dir.exists().then(|| LogFollower::new(id, paths.log())))
    }

    /// Keep container `id`'s output: read its stdout and stderr pipes, append what they carry
    /// to its log within [`LOG_TRIM_BYTES`], and hand each piece to `observe` with its stream
    /// (0 for stdout, 1 for stderr). Runs until reading fails or the future is dropped; one at a
    /// time per container, started again after an agent restart (the pipes hold output meanwhile).
    pub async fn pump_logs(&self, id: &str, observe: impl FnMut(usize, &[u8])) -> Result<(), RuntimeError> {
        let paths = self.paths(id)?;
        let pipes = paths.pipes();
        if !pipes.iter().all(|p| p.exists()) {
            return Err(RuntimeError::NotFound { id: id.to_owned() });
        }
        let receivers = logs::receivers(id, &pipes)?;
        // From here on the receivers keep what the pipes hold.
        self.held_pipes.lock().expect("lock").remove(id);
        logs::pump(id, receivers, &pipes, &paths.log(), observe).await
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

    /// Run `args` in running container `id` without a terminal (`runc exec`), with the
    /// container's environment, limits and namespaces, and wait for it to end; after `limit` it
    /// is killed and the error is [`RuntimeError::Timeout`].
    pub async fn exec(&self, id: &str, args: &[String], limit: Duration) -> Result<Exited, RuntimeError> {
        let paths = self.paths(id)?;
        let n: u32 = rand::random();
        self.runc.exec(id, args, &paths.dir.join(format!("exec-{n:08x}.pid")), limit).await
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

    /// Cut the log of a container that writes it itself (one started by an agent before output
    /// went through pipes) down to its last [`LOG_KEEP_BYTES`] once it exceeds [`LOG_TRIM_BYTES`].
    /// Output written while trimming may be lost or misplaced (a window of microseconds; see the
    /// module `logs`). Nothing to do for other containers: [`Runtime::pump_logs`] bounds theirs.
    pub fn trim_logs(&self, id: &str) -> Result<(), RuntimeError> {
        let paths = self.paths(id)?;
        if paths.pipes().iter().all(|p| p.exists()) {
            return Ok(());
        }
        logs::trim(id, &paths.log())
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

    /// How the container's process ended when it was started by this agent process and has
    /// stopped; `None` while it runs, or when it was started by an earlier agent.
    pub fn exit(&self, id: &str) -> Result<Option<Exit>, RuntimeError> {
        let paths = self.paths(id)?;
        if let Some(pid) = paths.recorded_init_pid() {
            reaper::collect(pid);
        }
        Ok(reaper::read(&paths.exit_record()))
    }

    /// How many processes of the container the kernel's OOM killer has killed so far.
    pub fn oom_kills(&self, id: &str) -> Result<u64, RuntimeError> {
        check_id(id)?;
        self.cgroups.oom_kills(id)
    }

    /// How many times the container could not start a process or thread because its pids
    /// limit (or the node's, on cgroup v1) was reached, since it was started.
    pub fn pids_limit_hits(&self, id: &str) -> Result<u64, RuntimeError> {
        check_id(id)?;
        self.cgroups.pids_limit_hits(id)
    }

    /// Most processes and threads all containers may have together: `kernel.pid_max` less what
    /// the node keeps for itself (a quarter, at least 1024).
    pub fn node_pids_limit(&self) -> u64 {
        self.node_pids
    }

    /// The container's id range, when it has one (it runs in a user namespace).
    pub fn id_range(&self, id: &str) -> Result<Option<IdRange>, RuntimeError> {
        idmap::recorded(&self.paths(id)?.id_range())
    }

    /// Whether containers run in user namespaces on this node.
    pub fn user_namespaces(&self) -> bool {
        self.user_namespaces
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
