//! A grid that stays up on this machine between commands (`zgrid up`, `zgrid status`,
//! `zgrid down`): the same parts as a [`crate::Devnet`] (an underlay bridge, an explorer on
//! SQLite and a hub on the host's side of it, node agents each in a network namespace), but
//! started as background processes and described in `<dir>/grid.json`, so any later command
//! finds them. Bringing it up is idempotent: what runs is left alone, what is missing or dead
//! (a process, a namespace, the bridge) is started or made again, on the same addresses.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::node::{Launch, NodeOptions, agent_command, clean_node, wait_registered};
use crate::process::{cli_json, log_tail, wait_for};
use crate::underlay::{attach_netns, free_net, ip, make_bridge, remove_netns};

/// Where `zgrid up` keeps the grid unless told otherwise.
pub const DEFAULT_DIR: &str = "/var/lib/zgrid/devnet";
/// Names of everything a grid makes on the host start with its prefix, this one unless another
/// grid has it: bridge `zgupbr`, namespaces `zgup-n1`…, veths `zguph2`…, cgroups `zgup-n1`….
const PREFIX: &str = "zgup";
const EXPLORER_PORT: u16 = 8080;
const HUB_PORT: u16 = 8090;
/// Most nodes one grid has.
pub const MAX_NODES: u32 = 32;

/// What `grid.json` records: enough to find (or make again) every part.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    /// What the grid's names start with.
    prefix: String,
    /// The underlay's /24 (first three octets).
    net: [u8; 3],
    /// The farm the nodes join.
    farm: Option<u64>,
    /// How many nodes there are.
    nodes: u32,
}

/// How to bring the grid up.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// The `zgrid` binary every process runs.
    pub zgrid: PathBuf,
    /// Where the grid keeps its state, logs and description.
    pub dir: PathBuf,
    /// Node agents to run (more are added; fewer stops none).
    pub nodes: u32,
    /// `ZGRID_LOG` for the processes.
    pub log_level: String,
    /// Where the node agents find the consoles' xterm.js (`zgrid node --console-assets`).
    pub console_assets: PathBuf,
}

/// One process of the grid.
#[derive(Debug, Clone, Serialize)]
pub struct Process {
    /// Its URL (servers) or underlay address (nodes).
    pub address: String,
    /// Its process id, when it runs.
    pub pid: Option<u32>,
}

/// One node of the grid.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    /// `n1`, `n2`, …
    pub name: String,
    /// Its id, once it has a key.
    pub id: Option<String>,
    /// Its network namespace.
    pub netns: String,
    /// The agent.
    pub agent: Process,
}

/// What runs, as far as this machine can tell.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// The grid's directory.
    pub dir: PathBuf,
    /// The explorer (its URL is `address`).
    pub explorer: Process,
    /// The hub (its URL is `address`).
    pub hub: Process,
    /// The farm the nodes are in.
    pub farm: Option<u64>,
    /// The nodes.
    pub nodes: Vec<NodeStatus>,
}

impl Status {
    /// Whether every part runs.
    pub fn healthy(&self) -> bool {
        self.explorer.pid.is_some() && self.hub.pid.is_some() && self.nodes.iter().all(|n| n.agent.pid.is_some())
    }
}

fn gateway(net: [u8; 3]) -> Ipv4Addr {
    Ipv4Addr::new(net[0], net[1], net[2], 1)
}

fn node_address(net: [u8; 3], n: u32) -> Ipv4Addr {
    Ipv4Addr::new(net[0], net[1], net[2], u8::try_from(n + 1).expect("at most MAX_NODES nodes"))
}

fn bridge(prefix: &str) -> String {
    format!("{prefix}br")
}

fn netns_name(prefix: &str, n: u32) -> String {
    format!("{prefix}-n{n}")
}

fn veth(prefix: &str, n: u32) -> String {
    format!("{prefix}h{}", n + 1)
}

/// `zgup`, or `zg` and six random hex digits when another grid on this machine has it.
fn free_prefix() -> String {
    if ip(&["link", "show", &bridge(PREFIX)]).is_err() {
        return PREFIX.to_owned();
    }
    format!("zg{:06x}", rand::random::<u32>() & 0xff_ffff)
}

fn node_dir(dir: &Path, n: u32) -> PathBuf {
    dir.join(format!("n{n}"))
}

fn explorer_url(net: [u8; 3]) -> String {
    format!("http://{}:{EXPLORER_PORT}", gateway(net))
}

fn hub_url(net: [u8; 3]) -> String {
    format!("http://{}:{HUB_PORT}", gateway(net))
}

fn read_record(dir: &Path) -> Result<Option<Record>> {
    match std::fs::read(dir.join("grid.json")) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).context("grid.json is damaged; run `zgrid down`")?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).context("cannot read grid.json"),
    }
}

fn write_record(dir: &Path, record: &Record) -> Result<()> {
    let tmp = dir.join("grid.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(record)?)?;
    std::fs::rename(&tmp, dir.join("grid.json"))?;
    Ok(())
}

/// The pid in `file` if that process runs and its command line has `role` (so a recycled pid
/// is not mistaken for ours).
fn running(file: &Path, role: &str) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(file).ok()?.trim().parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    (alive(pid) && cmdline.split(|b| *b == 0).any(|arg| arg == role.as_bytes())).then_some(pid)
}

/// Whether process `pid` exists and has not exited (a zombie has).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

/// Start `command` in its own process group (it outlives this one), logging to `log`, and
/// record its pid in `pid_file`.
fn spawn_detached(mut command: Command, log: &Path, pid_file: &Path) -> Result<u32> {
    let out = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
    let child = command
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {command:?}"))?;
    std::fs::write(pid_file, child.id().to_string())?;
    Ok(child.id())
}

/// Wait until something listens on `addr`.
fn wait_listening(addr: SocketAddr, what: &str, log: &Path) -> Result<()> {
    let up = wait_for(Duration::from_secs(20), || {
        Ok(TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok().then_some(()))
    })?;
    up.with_context(|| format!("the {what} did not start listening on {addr}; see {}", log.display()))
}

/// Make sure a server (`zgrid <role…> --listen <addr> <args>`) runs.
fn ensure_server(
    opts: &UpOptions,
    role: &[&str],
    addr: SocketAddr,
    args: &[&std::ffi::OsStr],
    progress: &mut dyn FnMut(&str),
) -> Result<()> {
    let name = role[0];
    let (pid_file, log) = (opts.dir.join(format!("{name}.pid")), opts.dir.join(format!("{name}.log")));
    if running(&pid_file, name).is_some() {
        return Ok(());
    }
    progress(&format!("starting the {name} on {addr}"));
    let mut command = Command::new(&opts.zgrid);
    command.args(role).args(["--listen", &addr.to_string()]).args(args).env("ZGRID_LOG", &opts.log_level);
    spawn_detached(command, &log, &pid_file)?;
    wait_listening(addr, name, &log)
}

fn launch(opts: &UpOptions, record: &Record, n: u32) -> Launch {
    Launch {
        zgrid: opts.zgrid.clone(),
        explorer: explorer_url(record.net),
        farm: record.farm.unwrap_or_default(),
        farmer_home: opts.dir.join("farmer"),
        log_level: opts.log_level.clone(),
        hostname: format!("node{n}"),
        state_dir: node_dir(&opts.dir, n),
        cgroup_parent: format!("{}-n{n}", record.prefix),
        options: NodeOptions::default(),
    }
}

fn netns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

/// Bring the grid up (or repair it), reporting each step through `progress`; returns what runs.
pub fn up(opts: &UpOptions, progress: &mut dyn FnMut(&str)) -> Result<Status> {
    if opts.nodes == 0 || opts.nodes > MAX_NODES {
        bail!("--nodes {}: run 1 to {MAX_NODES} nodes", opts.nodes);
    }
    std::fs::create_dir_all(&opts.dir).with_context(|| format!("cannot create {}", opts.dir.display()))?;
    let mut record = match read_record(&opts.dir)? {
        Some(r) => r,
        None => {
            let r = Record { prefix: free_prefix(), net: free_net()?, farm: None, nodes: 0 };
            write_record(&opts.dir, &r)?;
            r
        }
    };
    let (gw, prefix) = (gateway(record.net), record.prefix.clone());
    if ip(&["link", "show", &bridge(&prefix)]).is_err() {
        progress(&format!("creating the underlay bridge {} ({gw}/24)", bridge(&prefix)));
        make_bridge(&bridge(&prefix), gw)?;
    }
    let db = opts.dir.join("explorer.sqlite");
    ensure_server(opts, &["explorer"], (gw, EXPLORER_PORT).into(), &["--db".as_ref(), db.as_os_str()], progress)?;
    let hub_data = opts.dir.join("hub");
    let hub_args = ["--data".as_ref(), hub_data.as_os_str()];
    ensure_server(opts, &["hub", "serve"], (gw, HUB_PORT).into(), &hub_args, progress)?;
    let explorer = explorer_url(record.net);
    if record.farm.is_none() {
        progress("registering a farmer and a farm");
        let home = opts.dir.join("farmer");
        if !home.join("identities/farmer.seed").exists() {
            cli_json(&opts.zgrid, &home, &explorer, &["id", "new", "farmer", "--register"])?;
        }
        let farm = cli_json(&opts.zgrid, &home, &explorer, &["farm", "create", "devnet"])?["id"]
            .as_u64()
            .context("`zgrid farm create` printed no farm id")?;
        record.farm = Some(farm);
        write_record(&opts.dir, &record)?;
    }
    record.nodes = record.nodes.max(opts.nodes);
    write_record(&opts.dir, &record)?;
    for n in 1..=record.nodes {
        let (name, address) = (netns_name(&prefix, n), node_address(record.net, n));
        if !netns_exists(&name) {
            let _ = ip(&["link", "del", &veth(&prefix, n)]);
            attach_netns(&name, &veth(&prefix, n), address, &bridge(&prefix), gw)?;
        }
        let l = launch(opts, &record, n);
        let pid_file = l.state_dir.join("agent.pid");
        if running(&pid_file, "node").is_some() {
            continue;
        }
        progress(&format!("starting node agent n{n} in namespace {name} ({address})"));
        let mut command = agent_command(&l, &Path::new("/run/netns").join(&name), address)?;
        command.arg("--console-assets").arg(&opts.console_assets);
        let pid = spawn_detached(command, &l.state_dir.join("agent.log"), &pid_file)?;
        // By pid: until it execs, the new process still has this one's command line.
        wait_registered(&l, || {
            if alive(pid) {
                return Ok(());
            }
            let log = l.state_dir.join("agent.log");
            bail!("node agent n{n} (pid {pid}) exited; the end of {}:\n{}", log.display(), log_tail(&log, 20))
        })?;
    }
    status(&opts.dir)?.context("the grid's record vanished")
}

/// What runs of the grid in `dir`; `None` when there is no grid there.
pub fn status(dir: &Path) -> Result<Option<Status>> {
    let Some(record) = read_record(dir)? else { return Ok(None) };
    let nodes = (1..=record.nodes)
        .map(|n| {
            let state = node_dir(dir, n);
            let id = zgrid_node::identity::load(&state).ok().flatten().map(|key| key.public().to_string());
            let agent = Process {
                address: node_address(record.net, n).to_string(),
                pid: running(&state.join("agent.pid"), "node").filter(|_| netns_exists(&netns_name(&record.prefix, n))),
            };
            NodeStatus { name: format!("n{n}"), id, netns: netns_name(&record.prefix, n), agent }
        })
        .collect();
    Ok(Some(Status {
        dir: dir.to_owned(),
        explorer: Process { address: explorer_url(record.net), pid: running(&dir.join("explorer.pid"), "explorer") },
        hub: Process { address: hub_url(record.net), pid: running(&dir.join("hub.pid"), "hub") },
        farm: record.farm,
        nodes,
    }))
}

fn kill(pid: Option<u32>) {
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
}

/// Stop the grid in `dir` and remove everything it made: containers, volumes, networks and
/// their mounts, cgroups and processes, the node agents and their mount services, the
/// explorer, the hub, the namespaces, interfaces and bridge, and `dir` itself. Also works on a
/// grid whose record is lost (by its names).
pub fn down(dir: &Path, progress: &mut dyn FnMut(&str)) -> Result<()> {
    let record = read_record(dir).ok().flatten();
    let nodes = record.as_ref().map_or(0, |r| r.nodes);
    let prefix = record.map_or_else(|| PREFIX.to_owned(), |r| r.prefix);
    // Namespaces by name, also ones a lost record no longer lists.
    let mut names: Vec<u32> = (1..=nodes).collect();
    for entry in std::fs::read_dir("/run/netns").into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(n) = name.strip_prefix(&format!("{prefix}-n")).and_then(|n| n.parse().ok())
            && !names.contains(&n)
        {
            names.push(n);
        }
    }
    for &n in &names {
        let state = node_dir(dir, n);
        kill(running(&state.join("agent.pid"), "node"));
        progress(&format!("removing node n{n}: its containers, volumes, networks and mounts"));
        clean_node(&state, &format!("{prefix}-n{n}"))?;
        if netns_exists(&netns_name(&prefix, n)) {
            remove_netns(&netns_name(&prefix, n), &veth(&prefix, n))?;
        }
    }
    progress("stopping the explorer and the hub");
    for name in ["explorer", "hub"] {
        let pid = running(&dir.join(format!("{name}.pid")), name);
        kill(pid);
        if let Some(pid) = pid {
            // Reaped by init, since we did not start it; wait until it is gone.
            let gone = wait_for(Duration::from_secs(5), || {
                Ok(running(&dir.join(format!("{name}.pid")), name).is_none().then_some(()))
            })?;
            gone.with_context(|| format!("the {name} (pid {pid}) does not stop"))?;
        }
    }
    if ip(&["link", "show", &bridge(&prefix)]).is_ok() {
        ip(&["link", "del", &bridge(&prefix)])?;
    }
    progress(&format!("removing {}", dir.display()));
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", dir.display()))
        }
        _ => Ok(()),
    }
}
