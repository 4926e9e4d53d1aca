//! Cgroups: which layout the machine uses (v1, hybrid or unified v2), where a container's cgroup
//! is in each hierarchy, the pids limit of the parent cgroup (all containers together), how many
//! of a container's processes the OOM killer took and how often it hit its pids limit, and
//! removing its cgroups from every hierarchy, killing anything left in them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::{RuntimeError, mounts};

/// Where cgroup hierarchies are mounted.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Controllers the runtime enforces limits with.
const REQUIRED: [&str; 3] = ["memory", "cpu", "pids"];

/// How long leftover processes get to die before their cgroup is given up on.
const DRAIN: Duration = Duration::from_secs(5);

/// Where the kernel's largest pid (plus one) is.
const PID_MAX: &str = "/proc/sys/kernel/pid_max";

/// The fewest pids the node keeps for itself beyond all containers.
const NODE_PIDS_RESERVE: u64 = 1024;

/// Most processes and threads all containers may have together: `kernel.pid_max` less a
/// reserve for the node itself (a quarter of it, at least [`NODE_PIDS_RESERVE`]).
pub(crate) fn node_pids_limit() -> Result<u64, RuntimeError> {
    let text = std::fs::read_to_string(PID_MAX).map_err(|e| RuntimeError::host_io("read", PID_MAX, e))?;
    let pid_max: u64 =
        text.trim().parse().map_err(|e| RuntimeError::host_io("parse", PID_MAX, std::io::Error::other(e)))?;
    Ok(pid_max.saturating_sub((pid_max / 4).max(NODE_PIDS_RESERVE)).max(1))
}

/// The machine's cgroup hierarchies, and the parent cgroup containers go under.
#[derive(Debug, Clone)]
pub(crate) struct Cgroups {
    /// `true` when `/sys/fs/cgroup` itself is the unified (v2) hierarchy.
    unified: bool,
    /// Every mounted hierarchy: its mount point and controllers (v1 super options).
    hierarchies: Vec<mounts::Mount>,
    /// The parent cgroup, e.g. `zgrid`.
    parent: String,
}

impl Cgroups {
    /// Find the hierarchies and check the controllers the runtime needs are there.
    pub(crate) fn detect(parent: &str) -> Result<Self, RuntimeError> {
        let hierarchies: Vec<_> =
            mounts::all()?.into_iter().filter(|m| m.fstype == "cgroup" || m.fstype == "cgroup2").collect();
        let unified = hierarchies.iter().any(|m| m.fstype == "cgroup2" && m.point == Path::new(CGROUP_ROOT));
        let cgroups = Self { unified, hierarchies, parent: parent.to_owned() };
        if cgroups.hierarchies.is_empty() {
            return Err(RuntimeError::NoCgroups);
        }
        let available = if unified {
            let path = Path::new(CGROUP_ROOT).join("cgroup.controllers");
            std::fs::read_to_string(&path).map_err(|e| RuntimeError::host_io("read", path, e))?
        } else {
            String::new()
        };
        for controller in REQUIRED {
            let present = if unified {
                available.split_whitespace().any(|c| c == controller)
            } else {
                cgroups.v1_mount(controller).is_some()
            };
            if !present {
                return Err(RuntimeError::ControllerMissing { controller, layout: cgroups.layout() });
            }
        }
        Ok(cgroups)
    }

    /// The layout in use, for messages and logs.
    pub(crate) fn layout(&self) -> &'static str {
        match (self.unified, self.hierarchies.iter().any(|m| m.fstype == "cgroup2")) {
            (true, _) => "cgroup v2",
            (false, true) => "cgroup v1 (hybrid)",
            (false, false) => "cgroup v1",
        }
    }

    /// Whether swap is accounted, so a swap limit can be set (v1 needs `memory.memsw.*`).
    pub(crate) fn swap_accounting(&self) -> bool {
        self.unified || self.v1_mount("memory").is_some_and(|m| m.join("memory.memsw.limit_in_bytes").exists())
    }

    /// runc's `linux.cgroupsPath` for container `id`.
    pub(crate) fn cgroups_path(&self, id: &str) -> String {
        format!("/{}/{id}", self.parent)
    }

    /// The container's cgroup directory in `controller`'s hierarchy.
    pub(crate) fn path(&self, id: &str, controller: &str) -> PathBuf {
        let base = match self.unified {
            true => PathBuf::from(CGROUP_ROOT),
            false => self.v1_mount(controller).unwrap_or_else(|| Path::new(CGROUP_ROOT).join(controller)),
        };
        base.join(&self.parent).join(id)
    }

    /// Limit the parent cgroup, and so all containers together, to `max` processes and threads.
    pub(crate) fn limit_parent_pids(&self, max: u64) -> Result<(), RuntimeError> {
        let dir = match self.unified {
            true => {
                // The controller must be enabled for the parent by every cgroup above it.
                let mut above = PathBuf::from(CGROUP_ROOT);
                for name in self.parent.split('/') {
                    let control = above.join("cgroup.subtree_control");
                    std::fs::write(&control, "+pids")
                        .map_err(|e| RuntimeError::host_io("enable pids in", control, e))?;
                    above.push(name);
                    std::fs::create_dir_all(&above).map_err(|e| RuntimeError::host_io("create", &above, e))?;
                }
                above
            }
            false => {
                let base = self.v1_mount("pids").unwrap_or_else(|| Path::new(CGROUP_ROOT).join("pids"));
                base.join(&self.parent)
            }
        };
        std::fs::create_dir_all(&dir).map_err(|e| RuntimeError::host_io("create", &dir, e))?;
        let file = dir.join("pids.max");
        std::fs::write(&file, max.to_string()).map_err(|e| RuntimeError::host_io("write", file, e))
    }

    /// How many times a process or thread of the container could not be made because of a pids
    /// limit, since its cgroup was made (0 when it has none). cgroup v1 counts every refused
    /// fork in the container (its own limit's or the parent's); v2 the times the container's own
    /// limit was reached.
    pub(crate) fn pids_limit_hits(&self, id: &str) -> Result<u64, RuntimeError> {
        let path = self.path(id, "pids").join("pids.events");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(RuntimeError::io(id, "read", path, e)),
        };
        Ok(text.lines().find_map(|l| l.strip_prefix("max ")).and_then(|n| n.trim().parse().ok()).unwrap_or(0))
    }

    /// How many of the container's processes the OOM killer killed since its cgroup was made
    /// (0 when it has no memory cgroup).
    pub(crate) fn oom_kills(&self, id: &str) -> Result<u64, RuntimeError> {
        let file = if self.unified { "memory.events" } else { "memory.oom_control" };
        let path = self.path(id, "memory").join(file);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(RuntimeError::io(id, "read", path, e)),
        };
        Ok(text.lines().find_map(|l| l.strip_prefix("oom_kill ")).and_then(|n| n.trim().parse().ok()).unwrap_or(0))
    }

    /// Host pids of the container's processes (from its pids cgroup), sorted.
    pub(crate) fn processes(&self, id: &str) -> Result<Vec<u32>, RuntimeError> {
        let mut pids: Vec<u32> =
            procs(&self.path(id, "pids")).into_iter().filter_map(|p| u32::try_from(p).ok()).collect();
        pids.sort_unstable();
        Ok(pids)
    }

    /// The container's resource use as its cgroups count it, or `None` when it has no cgroup.
    pub(crate) fn usage(&self, id: &str) -> Result<Option<Usage>, RuntimeError> {
        let read = |controller: &str, file: &str| -> Result<Option<String>, RuntimeError> {
            let path = self.path(id, controller).join(file);
            match std::fs::read_to_string(&path) {
                Ok(text) => Ok(Some(text)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(RuntimeError::io(id, "read", path, e)),
            }
        };
        let number = |text: Option<String>| text.and_then(|t| t.trim().parse::<u64>().ok());
        let field = |text: &Option<String>, name: &str| {
            text.as_deref()?.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<u64>().ok())
        };
        let (usage, limit, stat, cpu_ns) = if self.unified {
            let Some(usage) = number(read("memory", "memory.current")?) else { return Ok(None) };
            let cpu = read("cpu", "cpu.stat")?;
            (
                usage,
                number(read("memory", "memory.max")?),
                read("memory", "memory.stat")?,
                field(&cpu, "usage_usec").map(|u| u * 1000),
            )
        } else {
            let Some(usage) = number(read("memory", "memory.usage_in_bytes")?) else { return Ok(None) };
            (
                usage,
                number(read("memory", "memory.limit_in_bytes")?),
                read("memory", "memory.stat")?,
                number(read("cpuacct", "cpuacct.usage")?),
            )
        };
        let cache = field(&stat, if self.unified { "file" } else { "cache" }).unwrap_or(0);
        Ok(Some(Usage {
            memory_usage: usage.saturating_sub(cache),
            memory_limit: limit.unwrap_or(u64::MAX),
            memory_cache: cache,
            cpu_ns: cpu_ns.unwrap_or(0),
            pids: number(read("pids", "pids.current")?).unwrap_or(0),
        }))
    }

    /// Make cgroup `id` in every hierarchy, limited to `limits`, for processes the runtime
    /// starts itself (runc makes containers' cgroups). Returns the `cgroup.procs` files a process
    /// writes its pid to, to join it.
    pub(crate) fn create(&self, id: &str, limits: &Limits) -> Result<Vec<PathBuf>, RuntimeError> {
        let write = |dir: &Path, file: &str, value: String| {
            let path = dir.join(file);
            std::fs::write(&path, value).map_err(|e| RuntimeError::io(id, "write", path, e))
        };
        let quota = u64::from(limits.cpu) * super::CFS_PERIOD_US;
        if self.unified {
            let parent = Path::new(CGROUP_ROOT).join(&self.parent);
            // The parent's controllers must be enabled for its children.
            write(&parent, "cgroup.subtree_control", "+memory +cpu +pids".to_owned())?;
            let dir = parent.join(id);
            std::fs::create_dir_all(&dir).map_err(|e| RuntimeError::io(id, "create", &dir, e))?;
            write(&dir, "memory.max", limits.memory_bytes.to_string())?;
            write(&dir, "cpu.max", format!("{quota} {}", super::CFS_PERIOD_US))?;
            write(&dir, "pids.max", limits.pids.to_string())?;
            return Ok(vec![dir.join("cgroup.procs")]);
        }
        let mut procs = Vec::new();
        // Not cpuset's: a v1 cpuset cgroup takes no process until its CPUs and memory nodes are set.
        let joined = self.hierarchies.iter().filter(|m| m.fstype == "cgroup" && !m.super_options.contains("cpuset"));
        for hierarchy in joined {
            let dir = hierarchy.point.join(&self.parent).join(id);
            std::fs::create_dir_all(&dir).map_err(|e| RuntimeError::io(id, "create", &dir, e))?;
            let controllers: Vec<&str> = hierarchy.super_options.split(',').collect();
            if controllers.contains(&"memory") {
                write(&dir, "memory.limit_in_bytes", limits.memory_bytes.to_string())?;
            }
            if controllers.contains(&"cpu") {
                write(&dir, "cpu.cfs_period_us", super::CFS_PERIOD_US.to_string())?;
                write(&dir, "cpu.cfs_quota_us", quota.to_string())?;
            }
            if controllers.contains(&"pids") {
                write(&dir, "pids.max", limits.pids.to_string())?;
            }
            procs.push(dir.join("cgroup.procs"));
        }
        Ok(procs)
    }

    /// Remove the container's cgroup from every hierarchy, first thawing and killing whatever
    /// still runs in it. Cgroups already gone are fine.
    pub(crate) async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        let dirs: Vec<PathBuf> =
            self.hierarchies.iter().map(|m| m.point.join(&self.parent).join(id)).filter(|d| d.is_dir()).collect();
        for dir in &dirs {
            // Frozen processes cannot die; best effort, the files exist only in some hierarchies.
            let _ = std::fs::write(dir.join("freezer.state"), "THAWED");
            let _ = std::fs::write(dir.join("cgroup.freeze"), "0");
        }
        let deadline = tokio::time::Instant::now() + DRAIN;
        for dir in &dirs {
            loop {
                for pid in procs(dir) {
                    // The process may have exited meanwhile; that is what we want anyway.
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
                match std::fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(e) if tokio::time::Instant::now() >= deadline => {
                        return Err(RuntimeError::Leftover {
                            id: id.to_owned(),
                            what: format!("cgroup {} ({e})", dir.display()),
                        });
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        }
        Ok(())
    }

    /// The mount point of the v1 hierarchy holding `controller`.
    fn v1_mount(&self, controller: &str) -> Option<PathBuf> {
        self.hierarchies
            .iter()
            .find(|m| m.fstype == "cgroup" && m.super_options.split(',').any(|o| o == controller))
            .map(|m| m.point.clone())
    }
}

/// Pids in the cgroup at `dir`.
fn procs(dir: &Path) -> Vec<i32> {
    let text = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    text.lines().filter_map(|l| l.trim().parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_this_machine() {
        let cg = Cgroups::detect("zgrid").unwrap();
        assert_eq!(cg.cgroups_path("c1"), "/zgrid/c1");
        assert!(cg.path("c1", "memory").ends_with("zgrid/c1"));
        assert_eq!(cg.oom_kills("no-such-container").unwrap(), 0);
        assert_eq!(cg.pids_limit_hits("no-such-container").unwrap(), 0);
    }

    #[test]
    fn the_node_keeps_a_reserve_of_pids() {
        let limit = node_pids_limit().unwrap();
        let pid_max: u64 = std::fs::read_to_string(PID_MAX).unwrap().trim().parse().unwrap();
        assert!(limit <= pid_max - NODE_PIDS_RESERVE && limit >= pid_max / 2, "{limit} of {pid_max}");
    }
}

/// Limits of a cgroup made with [`Cgroups::create`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// CPUs' worth of time per period.
    pub cpu: u32,
    /// Memory, page cache included, in bytes.
    pub memory_bytes: u64,
    /// Processes and threads.
    pub pids: u64,
}

/// A container's resource use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Memory in use, page cache excluded, in bytes.
    pub memory_usage: u64,
    /// The memory limit in bytes.
    pub memory_limit: u64,
    /// Page cache in bytes.
    pub memory_cache: u64,
    /// CPU time used since the container started, in nanoseconds.
    pub cpu_ns: u64,
    /// Processes and threads.
    pub pids: u64,
}
