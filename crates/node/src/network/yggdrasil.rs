//! The node's Yggdrasil daemon (Debian's `yggdrasil`), run and kept running by the agent.
//!
//! Its configuration, `<dir>/yggdrasil.json` (mode 0600: it holds the node's Yggdrasil private
//! key), is made once, so the node keeps its address and subnet; the peers and listeners the
//! farmer gives are written into it at every start. The interface is `zgy0`; the admin socket
//! and multicast discovery are off (peers are static). The daemon's output goes to the agent's
//! log. A daemon left behind by an agent that was killed is stopped before a new one starts;
//! one that exits is started again. The node's own address on the Yggdrasil network takes no
//! connections (nftables table `ip6 zgrid_yggdrasil`): anyone can peer with the network, and the
//! node's services are not for it.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ipnet::Ipv6Net;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::runtime::RuntimeError;
use crate::runtime::command::Cmd;

/// The daemon's interface in the agent's namespace.
pub const INTERFACE: &str = "zgy0";
/// Time limit of the daemon's one-shot commands (making a key, reading the subnet).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a new daemon may take to bring its interface up.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest pause between restarts of a daemon that keeps exiting.
const MAX_RESTART_DELAY: Duration = Duration::from_secs(60);

/// A running Yggdrasil daemon; dropping it stops the daemon.
#[derive(Debug)]
pub struct Yggdrasil {
    subnet: Ipv6Net,
    supervisor: tokio::task::JoinHandle<()>,
}

impl Drop for Yggdrasil {
    fn drop(&mut self) {
        // The child is killed when its task drops it.
        self.supervisor.abort();
    }
}

impl Yggdrasil {
    /// Start the daemon with its configuration in `dir`, dialling `peers` and listening on
    /// `listen` (URIs such as `tls://192.0.2.1:7443`), once its interface is up.
    pub async fn start(dir: &Path, peers: &[String], listen: &[String]) -> anyhow::Result<Self> {
        let program = crate::runtime::command::find_program("yggdrasil", "yggdrasil")?;
        let nft = crate::runtime::command::find_program("nft", "nftables")?;
        std::fs::create_dir_all(dir).map_err(|e| RuntimeError::host_io("create directory", dir, e))?;
        // Closed before the interface exists.
        super::load_rules("yggdrasil", &nft, &dir.join("zgrid_yggdrasil.nft"), &closed_node_rules()).await?;
        let config = dir.join("yggdrasil.json");
        write_config(&program, &config, peers, listen).await?;
        let subnet = one_shot(&program, &config, "-subnet").await?;
        let subnet: Ipv6Net =
            subnet.parse().with_context(|| format!("yggdrasil -subnet printed {subnet:?}, not a prefix"))?;
        Self::stop_left(dir);
        let daemon = Daemon { program, config, pid_file: dir.join("yggdrasil.pid") };
        let mut child = daemon.spawn()?;
        let deadline = Instant::now() + START_TIMEOUT;
        while !interface_up() {
            if let Ok(Some(status)) = child.try_wait() {
                bail!("yggdrasil exited ({status}) before bringing {INTERFACE} up; what it said is in this log");
            }
            if Instant::now() > deadline {
                bail!("yggdrasil did not bring {INTERFACE} up within {START_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tracing::info!(%subnet, peers = peers.len(), listen = ?listen, "Yggdrasil up");
        Ok(Self { subnet, supervisor: tokio::spawn(daemon.supervise(child)) })
    }

    /// Stop the daemon an agent that was killed left running with its configuration in `dir`,
    /// if any: a second one could not take the interface.
    pub fn stop_left(dir: &Path) {
        stop_stale(&dir.join("yggdrasil.pid"), &dir.join("yggdrasil.json"));
    }

    /// The node's Yggdrasil /64, which its containers get addresses from.
    pub fn subnet(&self) -> Ipv6Net {
        self.subnet
    }
}

/// How to start the daemon again.
struct Daemon {
    program: PathBuf,
    config: PathBuf,
    pid_file: PathBuf,
}

impl Daemon {
    /// Start the daemon, its output forwarded to the log and its pid recorded.
    fn spawn(&self) -> Result<Child, RuntimeError> {
        let mut command = Command::new(&self.program);
        command
            .arg("-useconffile")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|source| RuntimeError::Spawn {
            id: "yggdrasil".into(),
            command: format!("{} -useconffile {}", self.program.display(), self.config.display()),
            source,
        })?;
        if let Some(pid) = child.id() {
            let _ = std::fs::write(&self.pid_file, pid.to_string());
        }
        if let Some(stdout) = child.stdout.take() {
            tokio::spawn(forward(BufReader::new(stdout)));
        }
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(forward(BufReader::new(stderr)));
        }
        Ok(child)
    }

    /// Wait for `child` to exit and start the daemon again, pausing longer each time it exits
    /// soon after starting.
    async fn supervise(self, mut child: Child) {
        let mut delay = Duration::from_secs(1);
        loop {
            let started = Instant::now();
            let status = child.wait().await;
            if started.elapsed() > MAX_RESTART_DELAY {
                delay = Duration::from_secs(1);
            }
            tracing::warn!(status = ?status, restart_in = ?delay, "yggdrasil exited; starting it again");
            loop {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_RESTART_DELAY);
                match self.spawn() {
                    Ok(new) => {
                        child = new;
                        break;
                    }
                    Err(e) => tracing::warn!(error = %e, "yggdrasil did not start"),
                }
            }
        }
    }
}

/// Log the daemon's lines.
async fn forward<R: tokio::io::AsyncRead + Unpin>(output: BufReader<R>) {
    let mut lines = output.lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::info!(target: "yggdrasil", "{line}");
    }
}

/// Write the daemon's configuration: its key as before (a new one the first time), `peers`
/// and `listen`, and the settings the agent relies on.
async fn write_config(program: &Path, config: &Path, peers: &[String], listen: &[String]) -> anyhow::Result<()> {
    let text = match std::fs::read_to_string(config) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let output = Cmd::new("yggdrasil", program, ["-genconf", "-json"], COMMAND_TIMEOUT).run().await?;
            String::from_utf8_lossy(&output.stdout).into_owned()
        }
        Err(e) => return Err(RuntimeError::host_io("read", config, e).into()),
    };
    let mut settings: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a Yggdrasil configuration (remove it for a new key)", config.display()))?;
    settings.insert("Peers".into(), peers.into());
    settings.insert("Listen".into(), listen.into());
    settings.insert("AdminListen".into(), "none".into());
    settings.insert("MulticastInterfaces".into(), serde_json::Value::Array(vec![]));
    settings.insert("IfName".into(), INTERFACE.into());
    let text = serde_json::to_vec_pretty(&settings)?;
    // Written whole and renamed into place, so a crash leaves the old key or the new one.
    let partial = config.with_extension("json.partial");
    let write = || -> std::io::Result<()> {
        let mut file =
            std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&partial)?;
        file.write_all(&text)?;
        file.sync_all()?;
        std::fs::rename(&partial, config)
    };
    Ok(write().map_err(|e| RuntimeError::host_io("write", config, e))?)
}

/// What `yggdrasil -useconffile CONFIG FLAG` prints, trimmed.
async fn one_shot(program: &Path, config: &Path, flag: &str) -> Result<String, RuntimeError> {
    let args = [std::ffi::OsStr::new("-useconffile"), config.as_os_str(), std::ffi::OsStr::new(flag)];
    let output = Cmd::new("yggdrasil", program, args, COMMAND_TIMEOUT).run().await?;
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Stop the daemon recorded in `pid_file` if it still runs with `config`.
fn stop_stale(pid_file: &Path, config: &Path) {
    let Some(pid) = std::fs::read_to_string(pid_file).ok().and_then(|p| p.trim().parse::<i32>().ok()) else {
        return;
    };
    let runs_config = |pid: i32| {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|line| line.split(|b| *b == 0).any(|arg| arg == config.as_os_str().as_encoded_bytes()))
    };
    if !runs_config(pid) {
        return;
    }
    tracing::info!(pid, "stopping the Yggdrasil daemon a previous agent left");
    let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    while runs_config(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if runs_config(pid) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// Rules that keep the node's own Yggdrasil address closed: ICMPv6 and answers pass.
fn closed_node_rules() -> String {
    format!(
        "table ip6 zgrid_yggdrasil
delete table ip6 zgrid_yggdrasil
table ip6 zgrid_yggdrasil {{
    chain input {{
        type filter hook input priority filter;
        iifname \"{INTERFACE}\" ct state established,related accept
        iifname \"{INTERFACE}\" meta l4proto ipv6-icmp accept
        iifname \"{INTERFACE}\" drop
    }}
}}
"
    )
}

/// Whether the daemon's interface has its global address (the last step of its start).
fn interface_up() -> bool {
    std::fs::read_to_string("/proc/net/if_inet6").is_ok_and(|table| {
        table.lines().any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() == 6 && fields[5] == INTERFACE && fields[3] == "00"
        })
    })
}
