//! Named network namespaces (`ip netns`, under `/run/netns`) and the `ip` commands run inside
//! them. Every operation is idempotent, so a provisioning step cut short is finished by the next.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use crate::runtime::RuntimeError;
use crate::runtime::command::Cmd;

/// Where `ip netns` keeps its namespaces.
const NETNS_DIR: &str = "/run/netns";
/// Time limit of one `ip` command.
const IP_TIMEOUT: Duration = Duration::from_secs(20);

/// The programs that make a network namespace inside a container's user namespace: a helper
/// enters that user namespace (`nsenter --user`) and unshares a network namespace (`unshare
/// --net`, then `sleep`) for `ip netns attach` to name.
#[derive(Debug, Clone)]
pub(crate) struct Helpers {
    nsenter: PathBuf,
    unshare: PathBuf,
    sleep: PathBuf,
}

impl Helpers {
    /// Find them (util-linux and coreutils).
    pub(crate) fn find() -> Result<Self, RuntimeError> {
        use crate::runtime::command::find_program;
        Ok(Self {
            nsenter: find_program("nsenter", "util-linux")?,
            unshare: find_program("unshare", "util-linux")?,
            sleep: find_program("sleep", "coreutils")?,
        })
    }
}

/// One named network namespace; `owner` (a workload id) is named in errors.
#[derive(Debug, Clone)]
pub(crate) struct Netns {
    name: String,
    owner: String,
    ip: PathBuf,
}

impl Netns {
    /// The namespace `name`, acted on for workload `owner` with the `ip` program at `ip`.
    pub(crate) fn new(name: String, owner: &str, ip: &Path) -> Self {
        Self { name, owner: owner.to_owned(), ip: ip.to_owned() }
    }

    /// Its name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The file that pins it, for runc and `setns`.
    pub(crate) fn path(&self) -> PathBuf {
        Path::new(NETNS_DIR).join(&self.name)
    }

    /// Whether it exists.
    pub(crate) fn exists(&self) -> bool {
        self.path().exists()
    }

    /// Create it unless it exists, with its loopback up and IPv4 forwarding as `forward` says.
    pub(crate) async fn ensure(&self, forward: bool) -> Result<(), RuntimeError> {
        if !self.exists() {
            self.host(&["netns", "add", &self.name]).await?;
        }
        self.set_up(forward).await
    }

    /// Create it unless it exists inside the user namespace pinned at `userns`, so that a
    /// process of that user namespace (a container's `exec`) may enter it; its loopback up and
    /// IPv4 forwarding off.
    pub(crate) async fn ensure_in(&self, userns: &Path, helpers: &Helpers) -> Result<(), RuntimeError> {
        if !self.exists() {
            let mut helper = tokio::process::Command::new(&helpers.nsenter)
                .arg(format!("--user={}", userns.display()))
                .arg("--")
                .arg(&helpers.unshare)
                .args(["--net", "--"])
                .arg(&helpers.sleep)
                .arg("60")
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .map_err(|source| RuntimeError::Spawn {
                    id: self.owner.clone(),
                    command: "nsenter --user … unshare --net".into(),
                    source,
                })?;
            let pid = helper.id().unwrap_or_default().to_string();
            let proc = Path::new("/proc").join(&pid);
            let entered = tokio::task::spawn_blocking(move || crate::runtime::wait_for_namespace(&proc, "net"))
                .await
                .map_err(std::io::Error::other)
                .flatten();
            if let Err(e) = entered {
                return Err(RuntimeError::io(&self.owner, "make a network namespace in", userns, e));
            }
            self.host(&["netns", "attach", &self.name, &pid]).await?;
            let _ = helper.kill().await;
        }
        self.set_up(false).await
    }

    /// Bring its loopback up and set IPv4 forwarding as `forward` says.
    async fn set_up(&self, forward: bool) -> Result<(), RuntimeError> {
        self.ip(&["link", "set", "lo", "up"]).await?;
        self.sysctl("/proc/sys/net/ipv4/ip_forward", if forward { "1" } else { "0" }).await
    }

    /// Let every user in the namespace ping (ICMP echo through datagram sockets): containers
    /// have no `CAP_NET_RAW` for raw ones.
    pub(crate) async fn allow_ping(&self) -> Result<(), RuntimeError> {
        self.sysctl("/proc/sys/net/ipv4/ping_group_range", "0 2147483647").await
    }

    /// Set the per-namespace sysctl file `key` to `value` inside the namespace.
    async fn sysctl(&self, key: &'static str, value: &'static str) -> Result<(), RuntimeError> {
        let path = self.path();
        tokio::task::spawn_blocking(move || write_sysctl(&path, key, value))
            .await
            .map_err(|e| RuntimeError::host_io("set a sysctl in", self.path(), std::io::Error::other(e)))?
            .map_err(|e| RuntimeError::host_io("set a sysctl in", self.path(), e))
    }

    /// Delete it (and with it every interface inside); nothing to do when it does not exist.
    pub(crate) async fn delete(&self) -> Result<(), RuntimeError> {
        if self.exists() {
            self.host(&["netns", "delete", &self.name]).await?;
        }
        Ok(())
    }

    /// Run `ip args…` inside the namespace.
    pub(crate) async fn ip(&self, args: &[&str]) -> Result<Output, RuntimeError> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        self.host(&all).await
    }

    /// Whether interface `name` exists inside the namespace.
    pub(crate) async fn has_link(&self, name: &str) -> Result<bool, RuntimeError> {
        self.succeeds(&["-n", &self.name, "link", "show", "dev", name]).await
    }

    /// Whether interface `name` exists in the agent's own namespace.
    pub(crate) async fn host_has_link(&self, name: &str) -> Result<bool, RuntimeError> {
        self.succeeds(&["link", "show", "dev", name]).await
    }

    async fn succeeds(&self, args: &[&str]) -> Result<bool, RuntimeError> {
        Ok(Cmd::new(&self.owner, &self.ip, args, IP_TIMEOUT).output().await?.status.success())
    }

    /// Run `program args…` inside the namespace (`ip netns exec`); fails unless it succeeds.
    pub(crate) async fn exec(&self, program: &Path, args: &[&str]) -> Result<Output, RuntimeError> {
        let mut all = vec![std::ffi::OsStr::new("netns"), "exec".as_ref(), self.name.as_ref(), program.as_os_str()];
        all.extend(args.iter().map(std::ffi::OsStr::new));
        Cmd::new(&self.owner, &self.ip, all, IP_TIMEOUT).run().await
    }

    /// Run `ip args…` in the agent's own namespace.
    pub(crate) async fn host(&self, args: &[&str]) -> Result<Output, RuntimeError> {
        Cmd::new(&self.owner, &self.ip, args, IP_TIMEOUT).run().await
    }
}

/// Write `value` to the per-namespace sysctl file `key` as seen from the namespace at `netns`.
fn write_sysctl(netns: &Path, key: &'static str, value: &'static str) -> std::io::Result<()> {
    in_netns(netns, move || std::fs::write(key, value))
}

/// Run `f` inside the network namespace at `netns`, on a fresh thread that joins it, so the
/// agent's own threads never leave theirs. Sockets `f` makes belong to that namespace.
pub(crate) fn in_netns<T: Send + 'static>(
    netns: &Path,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    in_netns_of(std::fs::File::open(netns)?, f)
}

/// [`in_netns`] with the namespace given as an open file of it (a pin under `/run/netns`, or a
/// process's `/proc/<pid>/ns/net`, which keeps the namespace of that process while it is open).
pub(crate) fn in_netns_of<T: Send + 'static>(
    file: std::fs::File,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    std::thread::spawn(move || {
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
        f()
    })
    .join()
    .map_err(|_| std::io::Error::other("a thread inside a network namespace panicked"))?
}
