//! Starting, inspecting, stopping and removing containers. Calls for one container id must not
//! overlap (the engine serialises them); calls for different ids may.

use std::time::Duration;

use std::path::{Path, PathBuf};

use super::config::Bind;
use super::idmap::{self, Mapping};
use super::layout::{self, ContainerPaths, LayeredRoot};
use super::runc::RuncState;
use super::spec::{self, Placement};
use super::{ContainerConfig, ContainerState, Runtime, RuntimeError, entrypoint, image, logs, rootfs};

/// How long a container gets to die after SIGKILL before runc is told to delete it anyway.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// How often a stopping container is looked at.
const POLL: Duration = Duration::from_millis(50);

impl Runtime {
    /// Create and mount the container's root filesystem, without starting it: the first half of
    /// [`Runtime::start`], idempotent like it.
    pub async fn prepare(&self, cfg: &ContainerConfig) -> Result<(), RuntimeError> {
        cfg.validate()?;
        let paths = self.paths(&cfg.id)?;
        let mapping = self.mapping(&paths).await?;
        rootfs::prepare(&self.tools, cfg, &paths, mapping.as_ref()).await
    }

    /// The user namespace container `id` runs in, pinned at a file and made now if it is not
    /// there; `None` when containers on this node run without one. The container's network
    /// namespace is to be made inside it, so that `exec` can enter both.
    pub async fn user_namespace(&self, id: &str) -> Result<Option<PathBuf>, RuntimeError> {
        let paths = self.paths(id)?;
        Ok(self.mapping(&paths).await?.map(|_| paths.userns()))
    }

    /// Prepare the root filesystem and start the container detached.
    ///
    /// A running container with this id is left alone. A stopped one (or one a crash left
    /// half-created) is started again on the same writable layer, with fresh cgroups; its
    /// OOM record is cleared, so read [`Runtime::state`] first if it matters.
    ///
    /// The container writes its output into two named pipes; [`Runtime::pump_logs`] keeps it.
    pub async fn start(&self, cfg: &ContainerConfig) -> Result<(), RuntimeError> {
        cfg.validate()?;
        let id = cfg.id.as_str();
        let paths = self.paths(id)?;
        // Before any side effect, so that a bad image config changes nothing.
        let process = image::process(cfg)?;
        match self.runc.state(id).await? {
            Some(s) if is_running(&s) => {
                tracing::debug!(container = id, pid = s.pid, "already running");
                return Ok(());
            }
            Some(s) => {
                tracing::info!(container = id, status = %s.status, "replacing a container that is not running");
                self.runc.delete(id).await?;
            }
            None => {}
        }
        let mapping = self.mapping(&paths).await?;
        rootfs::prepare(&self.tools, cfg, &paths, mapping.as_ref()).await?;
        // A host init is mounted by runc; anything else must be in the image.
        if cfg.host_init.is_none() {
            check_entrypoint(&paths.rootfs(), &process)?;
        }
        let binds = map_binds(&paths, &cfg.binds, mapping.as_ref())?;
        let (rootfs, userns) = (paths.rootfs(), paths.userns());
        let cgroups_path = self.cgroups.cgroups_path(id);
        let at = Placement {
            rootfs: &rootfs,
            cgroups_path: &cgroups_path,
            swap_accounting: self.cgroups.swap_accounting(),
            binds: &binds,
            user: mapping.as_ref().map(|m| (m.range, userns.as_path())),
        };
        write_config(id, &paths, &spec::build(cfg, &process, &at))?;
        remove_file(id, &paths.oom_marker())?;
        // How the previous run ended is not to be written after this one started.
        forget_init(&paths);
        remove_file(id, &paths.exit_record())?;
        remove_file(id, &paths.init_pid())?;
        // Cgroups left by a crashed attempt would carry its processes and counters.
        self.cgroups.remove(id).await?;
        // The parent may be new (its last container removed by someone); it gets the limit again.
        self.cgroups.limit_parent_pids(self.node_pids)?;
        let pipes = logs::open_pipes(id, &paths.pipes())?;
        let held = logs::open_pipes(id, &paths.pipes())?;
        self.runc.run(id, &paths.dir, &paths.init_pid(), &paths.log(), &paths.pipes(), pipes).await?;
        match paths.recorded_init_pid() {
            Some(pid) => super::reaper::watch(pid, paths.exit_record()),
            None => tracing::warn!(container = id, "runc wrote no init pid; how the container ends will not be known"),
        }
        self.held_pipes.lock().expect("lock").insert(id.to_owned(), held);
        tracing::info!(container = id, args = ?process.args, "started");
        Ok(())
    }

    /// What the container is doing. A stopped container's OOM kills are read from its memory
    /// cgroup and remembered on disk, so they are still reported once the cgroup is gone.
    pub async fn state(&self, id: &str) -> Result<ContainerState, RuntimeError> {
        let paths = self.paths(id)?;
        match self.runc.state(id).await? {
            Some(s) if is_running(&s) => Ok(ContainerState::Running { pid: s.pid }),
            Some(_) => Ok(ContainerState::Stopped { oom_killed: self.record_oom(id, &paths)? }),
            None if paths.dir.exists() => Ok(ContainerState::Stopped { oom_killed: self.record_oom(id, &paths)? }),
            None => Ok(ContainerState::Missing),
        }
    }

    /// Stop the container (SIGTERM, then SIGKILL after the stop grace) and remove everything it
    /// created: runc state, processes and cgroups in every hierarchy, mounts, the loop device,
    /// its directory. Idempotent, and safe on a half-created container.
    pub async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        let paths = self.paths(id)?;
        self.held_pipes.lock().expect("lock").remove(id);
        // Failures of runc are not final: killing what is in the cgroups below is.
        if let Err(e) = self.stop(id).await {
            tracing::warn!(container = id, error = %e, "graceful stop failed; killing");
        }
        if let Err(e) = self.runc.delete(id).await {
            tracing::warn!(container = id, error = %e, "runc delete failed; cleaning up by hand");
        }
        self.cgroups.remove(id).await?;
        // Its init is dead by now; its record is not to be written into a directory going away.
        forget_init(&paths);
        let runc_state = layout::runc_dir(&self.root).join(id);
        if runc_state.exists() {
            std::fs::remove_dir_all(&runc_state).map_err(|e| RuntimeError::io(id, "remove", runc_state, e))?;
        }
        rootfs::teardown(&self.tools, id, &paths).await?;
        match std::fs::remove_dir_all(&paths.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(RuntimeError::io(id, "remove", paths.dir, e)),
            _ => Ok(()),
        }
    }

    /// Stop the container because its image is gone, and detach its root filesystem so that
    /// [`Runtime::start`] mounts it again over the image's new mount. The writable layer stays.
    pub async fn stop_for_new_image(&self, id: &str) -> Result<(), RuntimeError> {
        let paths = self.paths(id)?;
        self.stop(id).await?;
        rootfs::detach_overlay(id, &paths)
    }

    /// Stop the container: SIGTERM, wait up to the stop grace, then SIGKILL and wait a little
    /// more. What it has on disk stays, for [`Runtime::start`] to start it again.
    pub async fn stop(&self, id: &str) -> Result<(), RuntimeError> {
        if !self.runc.state(id).await?.is_some_and(|s| is_running(&s)) {
            return Ok(());
        }
        if !self.stop_grace.is_zero() {
            self.runc.kill(id, "TERM").await?;
            if self.wait_stopped(id, self.stop_grace).await? {
                return Ok(());
            }
            tracing::info!(container = id, grace = ?self.stop_grace, "did not stop on SIGTERM; sending SIGKILL");
        }
        self.runc.kill(id, "KILL").await?;
        self.wait_stopped(id, KILL_WAIT).await.map(drop)
    }

    /// Whether the container stopped within `limit`.
    async fn wait_stopped(&self, id: &str, limit: Duration) -> Result<bool, RuntimeError> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if !self.runc.state(id).await?.is_some_and(|s| is_running(&s)) {
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The container's id range and its pinned user namespace, when containers run in user
    /// namespaces on this node.
    async fn mapping(&self, paths: &ContainerPaths) -> Result<Option<Mapping>, RuntimeError> {
        if !self.user_namespaces {
            return Ok(None);
        }
        let range = idmap::assign(&self.root, paths, &self.ranges)?;
        let (tools, pinned) = (self.tools.clone(), paths.clone());
        let userns =
            tokio::task::spawn_blocking(move || idmap::pinned(&tools, &pinned, range)).await.map_err(|e| {
                RuntimeError::io(paths.id(), "make a user namespace for", &paths.dir, std::io::Error::other(e))
            })??;
        Ok(Some(Mapping { range, userns }))
    }

    /// Whether the OOM killer struck, remembering a yes in the container directory.
    fn record_oom(&self, id: &str, paths: &ContainerPaths) -> Result<bool, RuntimeError> {
        let marker = paths.oom_marker();
        if marker.exists() {
            return Ok(true);
        }
        let kills = self.cgroups.oom_kills(id)?;
        if kills > 0 && paths.dir.exists() {
            std::fs::write(&marker, format!("{kills}\n")).map_err(|e| RuntimeError::io(id, "write", marker, e))?;
        }
        Ok(kills > 0)
    }
}

/// Stop watching the container's last init (see [`super::reaper::forget`]).
fn forget_init(paths: &ContainerPaths) {
    if let Some(pid) = paths.recorded_init_pid() {
        super::reaper::forget(pid);
    }
}

/// Refuse to start `process` when its program is not an executable file in `rootfs`.
fn check_entrypoint(rootfs: &Path, process: &image::Process) -> Result<(), RuntimeError> {
    let program = process.args.first().map_or("", String::as_str);
    entrypoint::check(rootfs, program, &process.env, &process.cwd).map_err(|missing| {
        let problem = match missing {
            entrypoint::Missing::NotFound if program.contains('/') => "is not in the image".to_owned(),
            entrypoint::Missing::NotFound => {
                let path = process.env.iter().find_map(|e| e.strip_prefix("PATH=")).unwrap_or_default();
                format!("is not in the image (looked in PATH {path})")
            }
            entrypoint::Missing::NotExecutable(what) => format!("cannot run: in the image it is {what}"),
        };
        RuntimeError::EntrypointMissing { program: program.to_owned(), problem }
    })
}

/// Whether runc reports the init process alive (running, or paused by someone).
fn is_running(state: &RuncState) -> bool {
    matches!(state.status.as_str(), "running" | "paused")
}

/// The volumes as runc is to mount them: with a `mapping`, idmapped copies under the container
/// directory, so the volume's files keep their ids on disk whichever container mounts it.
fn map_binds(paths: &ContainerPaths, binds: &[Bind], mapping: Option<&Mapping>) -> Result<Vec<Bind>, RuntimeError> {
    let Some(mapping) = mapping else { return Ok(binds.to_vec()) };
    let id = paths.id();
    let mut mapped = Vec::with_capacity(binds.len());
    for (n, bind) in binds.iter().enumerate() {
        let copy = paths.mapped_volume(n);
        // A copy from an earlier run may show a mount made before a reboot.
        rootfs::detach(id, &copy)?;
        idmap::mount_mapped(id, &bind.source, &copy, &mapping.userns)?;
        mapped.push(Bind { source: copy, destination: bind.destination.clone() });
    }
    Ok(mapped)
}

/// Write the runtime spec, atomically.
fn write_config(id: &str, paths: &ContainerPaths, spec: &serde_json::Value) -> Result<(), RuntimeError> {
    let path = paths.config();
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(spec).map_err(|e| RuntimeError::io(id, "encode", &path, e.into()))?;
    std::fs::write(&tmp, bytes).map_err(|e| RuntimeError::io(id, "write", &tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| RuntimeError::io(id, "rename into place", &tmp, e))
}

/// Remove `path` if it exists.
fn remove_file(id: &str, path: &std::path::Path) -> Result<(), RuntimeError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(RuntimeError::io(id, "remove", path, e)),
        _ => Ok(()),
    }
}
