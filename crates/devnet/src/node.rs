//! One node agent: a `zgrid node` process inside its own network namespace, with its own state
//! directory and cgroup parent.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use zgrid_node::network::{DEFAULT_PORTS, Networks};
use zgrid_node::runtime::Runtime;
use zgrid_node::vm::{AcceleratorChoice, Vms};
use zgrid_serve::TlsFiles;

use crate::process::{cli_json, wait_for};
use crate::underlay::Netns;

/// Port of the node API inside each node's namespace.
const API_PORT: u16 = 7780;

/// How long a node gets to register.
const REGISTER_LIMIT: Duration = Duration::from_secs(30);

/// Per-node settings.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// Time limit of one provisioning step (`--step-timeout`).
    pub step_timeout: Duration,
    /// Register the node's underlay address as its public endpoint; without one the node is
    /// "hidden" (as behind NAT) and joins networks through nodes that have one.
    pub public: bool,
    /// Serve the node API over TLS with this certificate (valid for the node's underlay
    /// address) and key; plain HTTP without.
    pub api_tls: Option<TlsFiles>,
    /// How the node runs VMs (`--vm-accel`: `auto`, `kvm` or `tcg`); the agent's default
    /// (`auto`) without.
    pub vm_accel: Option<String>,
    /// The country and city it registers (`--country`, `--city`); none without.
    pub location: Option<(String, String)>,
    /// The explorers the agent follows (`--explorer`: a URL, or several sharing one database
    /// separated by commas, each reachable from the node's namespace); the devnet's without.
    pub explorers: Option<String>,
    /// Give containers public IPv6 addresses of the underlay's IPv6 prefix
    /// ([`crate::Underlay::ipv6_prefix`]), on which the node gets its own address first.
    pub public_ipv6: bool,
    /// Run Yggdrasil (`--yggdrasil`), listening on [`Node::yggdrasil_uri`] and peering with
    /// these URIs (other nodes' [`Node::yggdrasil_uri`]); off without.
    pub yggdrasil: Option<Vec<String>>,
}

/// The TCP port a node's Yggdrasil takes peerings on (TLS), on its underlay address.
pub const YGGDRASIL_PORT: u16 = 7443;

impl Default for NodeOptions {
    fn default() -> Self {
        Self {
            step_timeout: Duration::from_secs(60),
            public: true,
            api_tls: None,
            vm_accel: None,
            location: None,
            explorers: None,
            public_ipv6: false,
            yggdrasil: None,
        }
    }
}

/// Everything needed to (re)start the agent.
#[derive(Debug, Clone)]
pub(crate) struct Launch {
    pub zgrid: PathBuf,
    pub explorer: String,
    pub farm: u64,
    /// The CLI home of the farm's owner, who invites each node.
    pub farmer_home: PathBuf,
    pub log_level: String,
    pub hostname: String,
    pub state_dir: PathBuf,
    pub cgroup_parent: String,
    pub options: NodeOptions,
}

/// A node agent in its namespace. Dropping it kills the agent, removes every container it
/// made (mounts, cgroups, directories) and its state, and deletes the namespace.
#[derive(Debug)]
pub struct Node {
    id: String,
    launch: Launch,
    child: Option<Child>,
    // Dropped last: the namespace outlives the agent in it.
    netns: Netns,
}

impl Node {
    /// Start the agent and wait until the explorer lists it.
    pub(crate) fn start(launch: Launch, netns: Netns) -> Result<Self> {
        std::fs::create_dir_all(&launch.state_dir)
            .with_context(|| format!("cannot create {}", launch.state_dir.display()))?;
        let mut node = Self { id: String::new(), launch, child: None, netns };
        node.spawn()?;
        let (launch, child) = (&node.launch, &mut node.child);
        let id = wait_registered(launch, || match child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
            Some(status) => {
                let log = std::fs::read_to_string(launch.state_dir.join("agent.log")).unwrap_or_default();
                bail!("the node agent exited ({status}):\n{log}")
            }
            None => Ok(()),
        });
        node.id = id?;
        Ok(node)
    }

    fn spawn(&mut self) -> Result<()> {
        let mut command = agent_command(&self.launch, &self.netns.path(), self.netns.address())?;
        if self.launch.options.public_ipv6 {
            self.netns.add_ipv6()?;
            command.args(["--public-ipv6", &self.netns.underlay_ipv6_prefix()]);
        }
        if let Some(peers) = &self.launch.options.yggdrasil {
            command.args(["--yggdrasil", "--yggdrasil-listen", &self.yggdrasil_uri()]);
            for peer in peers {
                command.args(["--yggdrasil-peer", peer]);
            }
        }
        let child = command.spawn().context("cannot start the node agent (is nsenter from util-linux installed?)")?;
        self.child = Some(child);
        Ok(())
    }

    /// The node id (base58 public key).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The agent's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The node's address on the underlay.
    pub fn address(&self) -> std::net::Ipv4Addr {
        self.netns.address()
    }

    /// Where the node's Yggdrasil takes peerings, when it runs one ([`NodeOptions::yggdrasil`]).
    pub fn yggdrasil_uri(&self) -> String {
        format!("tls://{}:{YGGDRASIL_PORT}", self.address())
    }

    /// The node's network namespace.
    pub fn netns(&self) -> &Netns {
        &self.netns
    }

    /// The agent's state directory (`--state-dir`).
    pub fn state_dir(&self) -> &Path {
        &self.launch.state_dir
    }

    /// The container runtime's directory inside the state directory.
    pub fn runtime_dir(&self) -> PathBuf {
        self.launch.state_dir.join("runtime")
    }

    /// The cgroup (in every hierarchy) the node's containers live under.
    pub fn cgroup_parent(&self) -> &str {
        &self.launch.cgroup_parent
    }

    /// A handle on the node's containers, for inspection.
    pub fn runtime(&self) -> Result<Runtime> {
        Ok(Runtime::new(self.runtime_dir(), &self.launch.cgroup_parent)?)
    }

    fn log_path(&self) -> PathBuf {
        self.launch.state_dir.join("agent.log")
    }

    /// Everything the agent has logged (across restarts).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// SIGKILL the agent; its containers keep running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start the agent again on the same state (killing it first if it runs).
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        self.spawn()
    }

    /// A handle on the node's networks, for inspection and cleanup.
    pub fn networks(&self) -> Result<Networks> {
        let key = zgrid_node::identity::load_or_create(&self.launch.state_dir)?;
        Ok(Networks::new(self.launch.state_dir.join("networks"), key, DEFAULT_PORTS)?)
    }
}

/// Have the farmer invite the node of `launch` (its key is made now if it has none yet) and
/// write the token to `<state>/farm-invite`; returns that file.
fn invite(launch: &Launch) -> Result<PathBuf> {
    let node = zgrid_node::identity::load_or_create(&launch.state_dir)?.public().to_string();
    let farm = launch.farm.to_string();
    let args = ["farm", "invite", "--farm", &farm, "--node", &node, "--expires", "1h"];
    let invitation = cli_json(&launch.zgrid, &launch.farmer_home, &launch.explorer, &args)?;
    let token = invitation["token"].as_str().context("`zgrid farm invite` printed no token")?;
    let path = launch.state_dir.join("farm-invite");
    std::fs::write(&path, token).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// The `zgrid node` command for `launch` in the namespace at `netns` whose underlay address is
/// `address` (API on it, and the public endpoint when the node has one), invited into the farm
/// by the farmer; it logs to `<state>/agent.log`.
pub(crate) fn agent_command(launch: &Launch, netns: &Path, address: std::net::Ipv4Addr) -> Result<Command> {
    let l = launch;
    std::fs::create_dir_all(&l.state_dir).with_context(|| format!("cannot create {}", l.state_dir.display()))?;
    let log = std::fs::OpenOptions::new().create(true).append(true).open(l.state_dir.join("agent.log"))?;
    let invitation = invite(l)?;
    let mut command = crate::underlay::nsenter(netns, &l.zgrid);
    command
        .args(["node", "--farm", &l.farm.to_string(), "--farm-invite-file"])
        .arg(&invitation)
        .arg("--state-dir")
        .arg(&l.state_dir)
        .args(["--cgroup-parent", &l.cgroup_parent, "--hostname", &l.hostname])
        .args(["--step-timeout", &l.options.step_timeout.as_secs().max(1).to_string()])
        .args(["--api-listen", &format!("{address}:{API_PORT}")]);
    if l.options.public {
        command.args(["--public-endpoint", &address.to_string()]);
    }
    if let Some(accel) = &l.options.vm_accel {
        command.args(["--vm-accel", accel]);
    }
    if let Some((country, city)) = &l.options.location {
        command.args(["--country", country, "--city", city]);
    }
    if let Some(tls) = &l.options.api_tls {
        command.arg("--tls-cert").arg(&tls.cert).arg("--tls-key").arg(&tls.key);
    }
    command
        .env("ZGRID_EXPLORER", &l.explorer)
        .env("ZGRID_LOG", &l.log_level)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    Ok(command)
}

/// Wait until the node of `launch` is listed by the explorer (its key appears in its state
/// directory first); `exited` fails when the agent is gone. Returns the node id.
pub(crate) fn wait_registered(launch: &Launch, mut exited: impl FnMut() -> Result<()>) -> Result<String> {
    let home = launch.state_dir.join("cli");
    let farm = launch.farm.to_string();
    let log = launch.state_dir.join("agent.log");
    let id = wait_for(REGISTER_LIMIT, || {
        exited()?;
        let Some(key) = zgrid_node::identity::load(&launch.state_dir)? else { return Ok(None) };
        let id = key.public().to_string();
        let nodes = cli_json(&launch.zgrid, &home, &launch.explorer, &["nodes", "--farm", &farm])?;
        let listed = nodes["items"].as_array().is_some_and(|all| all.iter().any(|n| n["node_id"] == id.as_str()));
        Ok(listed.then_some(id))
    })?;
    id.with_context(|| format!("the node did not register within {REGISTER_LIMIT:?}; see {}", log.display()))
}

/// Remove every container, volume and network of the node with state in `state_dir`, its
/// image mounts and their service, its cgroup parents, and, when nothing is mounted under it
/// any more, its state directory. The agent must be stopped first.
pub(crate) fn clean_node(state_dir: &Path, cgroup_parent: &str) -> Result<()> {
    let removed = remove_workloads(state_dir, cgroup_parent);
    // Also when a removal failed: the mount service would keep its mounts busy.
    zgrid_node::flist::FlistImages::stop_service(&state_dir.join("flist"));
    // Killing the agent leaves its Yggdrasil daemon running.
    zgrid_node::network::Yggdrasil::stop_left(&state_dir.join("yggdrasil"));
    removed?;
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
        let _ = std::fs::remove_dir(hierarchy.path().join(cgroup_parent));
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")?;
    let state = state_dir.to_string_lossy();
    if mounts.lines().filter_map(|l| l.split(' ').nth(4)).any(|m| m.starts_with(&*state)) {
        bail!("mounts remain under {state}; not removing it");
    }
    std::fs::remove_dir_all(state_dir).or_else(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Ok(()),
        _ => Err(e),
    })?;
    Ok(())
}

/// Remove every container, volume and network recorded under `state_dir`.
fn remove_workloads(state_dir: &Path, cgroup_parent: &str) -> Result<()> {
    let runtime_dir = state_dir.join("runtime");
    if runtime_dir.exists() {
        let runtime = Runtime::new(&runtime_dir, cgroup_parent)?.with_stop_grace(Duration::ZERO);
        let key = zgrid_node::identity::load_or_create(state_dir)?;
        let networks = Networks::new(state_dir.join("networks"), key, DEFAULT_PORTS)?;
        let (containers, volumes) = (runtime.list()?, runtime.list_volumes()?);
        let vms_dir = state_dir.join("vms");
        let vms = match vms_dir.exists() {
            true => {
                Some(Vms::new(&vms_dir, cgroup_parent, AcceleratorChoice::Tcg)?.with_shutdown_grace(Duration::ZERO))
            }
            false => None,
        };
        let vm_ids = vms.as_ref().map(Vms::list).transpose()?.unwrap_or_default();
        std::thread::scope(|s| {
            s.spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                rt.block_on(async {
                    if let Some(vms) = &vms {
                        for id in &vm_ids {
                            vms.remove(id).await?;
                        }
                    }
                    let removals = containers.iter().map(|id| runtime.remove(id));
                    for result in futures::future::join_all(removals).await {
                        result?;
                    }
                    for id in &volumes {
                        runtime.remove_volume(id).await?;
                    }
                    for id in containers.iter().filter_map(|id| id.parse().ok()) {
                        networks.detach(&id).await?;
                    }
                    for id in vm_ids.iter().filter_map(|id| id.parse().ok()) {
                        networks.detach_tap(&id).await?;
                    }
                    for id in networks.list()? {
                        networks.remove(&id).await?;
                    }
                    anyhow::Ok(())
                })
            })
            .join()
            .map_err(|_| anyhow::anyhow!("container cleanup panicked"))?
        })?;
    }
    Ok(())
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
        if let Err(e) = clean_node(&self.launch.state_dir, &self.launch.cgroup_parent) {
            eprintln!("devnet: cleaning up node {}: {e:#}", self.id);
        }
    }
}
