//! The command line, defined once: help text, flags and environment variables.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use ipnet::Ipv4Net;

/// zgrid: a peer-to-peer capacity grid. One binary for the CLI, the explorer, the node agent
/// and the hub.
#[derive(Debug, Parser)]
#[command(name = "zgrid", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes (listed apart from a command's own in its help).
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct Global {
    /// Explorer URL (overrides the config file). Several explorers sharing one database:
    /// separate their URLs with commas or repeat the flag; a command (or the node agent) moves
    /// on to the next when the one in use cannot be reached.
    #[arg(long, global = true, env = "ZGRID_EXPLORER", value_name = "URL", value_delimiter = ',')]
    pub explorer: Vec<String>,
    /// Identity to act as (default: the one set with `zgrid id use`).
    #[arg(long, global = true, env = "ZGRID_IDENTITY")]
    pub identity: Option<String>,
    /// Directory of identities and the config file (default: ~/.config/zgrid).
    #[arg(long, global = true, env = "ZGRID_HOME")]
    pub home: Option<PathBuf>,
    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// A PEM file of CA certificates to trust besides the system's, for servers whose TLS
    /// certificates a private CA signed (overrides `ca-cert` in the config file).
    #[arg(long, global = true, env = "ZGRID_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// Seconds a server may stay silent before it answers, or between pieces of its answer
    /// (overrides `timeout` in the config file; default 30).
    #[arg(long, global = true, env = "ZGRID_HTTP_TIMEOUT", value_name = "SECS", value_parser = timeout_secs)]
    pub timeout: Option<u64>,
}

/// Parse a time limit in whole seconds (at least 1).
pub fn timeout_secs(text: &str) -> Result<u64, String> {
    match text.trim().parse::<u64>() {
        Ok(secs) if secs > 0 => Ok(secs),
        _ => Err(format!("{text:?}: write the time limit in whole seconds, at least 1, such as 30")),
    }
}

/// Serve TLS: the server's certificate and key (plain HTTP without them).
#[derive(Debug, Args)]
pub struct TlsArgs {
    /// The server's TLS certificate chain (PEM, leaf first); serve HTTPS with --tls-key.
    #[arg(long, env = "ZGRID_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "ZGRID_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

impl TlsArgs {
    /// The files, when TLS was asked for.
    pub fn files(&self) -> Option<zgrid_serve::TlsFiles> {
        Some(zgrid_serve::TlsFiles::new(self.tls_cert.clone()?, self.tls_key.clone()?))
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage identities (keys and their registration).
    #[command(subcommand)]
    Id(IdCommand),
    /// Manage farms.
    #[command(subcommand)]
    Farm(FarmCommand),
    /// Find nodes by location, farm and free capacity.
    Nodes(NodesArgs),
    /// Reserve capacity: submit a signed workload.
    #[command(subcommand)]
    Deploy(DeployCommand),
    /// Private WireGuard networks between my nodes (and my own machines).
    #[command(subcommand)]
    Network(NetworkCommand),
    /// Kubernetes clusters on my VMs: make one in one command, reach it from this machine with
    /// kubectl, grow it, remove it.
    #[command(subcommand)]
    K8s(K8sCommand),
    /// Be a Kubernetes node backed by the grid (a virtual kubelet): Pods scheduled to it run as
    /// my grid containers.
    Kubelet(KubeletArgs),
    /// List my workloads with their state and the nodes' results.
    Live(LiveArgs),
    /// Delete workloads (signed by their owner).
    Delete(DeleteArgs),
    /// Show a container's output, read from its node: its stdout on stdout, its stderr on stderr.
    Logs(LogsArgs),
    /// Print a container's live statistics from the Redis channel its node publishes them to.
    Stats(StatsArgs),
    /// Use an interactive container's console (from a machine on its private network).
    Console(ConsoleArgs),
    /// Run a command in a container, through its node (signed by the owner); exits with the
    /// command's exit code.
    Exec(ExecArgs),
    /// Read or change the config file.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Run the explorer (directory, ledger and node feeds).
    Explorer(ExplorerArgs),
    /// Run the node agent: turn this machine into grid capacity.
    Node(NodeArgs),
    /// Make and read flist images.
    #[command(subcommand)]
    Flist(FlistCommand),
    /// The node's flist mount service (the node agent starts it).
    #[command(hide = true)]
    FlistMounts(MountServiceArgs),
    /// Start a whole grid on this machine (explorer, hub, node agents each in a network
    /// namespace), or repair it; point this CLI at it. Root.
    Up(UpArgs),
    /// Stop the grid `zgrid up` started and remove everything it made.
    Down(GridDir),
    /// Show what runs of the grid `zgrid up` started.
    Status(GridDir),
    /// Run a hub, or use one: list, import, merge and remove flists.
    #[command(subcommand)]
    Hub(HubCommand),
    /// Measure performance.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Subcommand)]
pub enum IdCommand {
    /// Create a new identity (a fresh key) and optionally register it.
    New {
        /// Local name; also the user name when registering.
        name: String,
        /// Register with the explorer right away.
        #[arg(long)]
        register: bool,
        /// Email to register with.
        #[arg(long, default_value = "", hide_default_value = true)]
        email: String,
    },
    /// Restore an identity from its 24 words.
    Import {
        /// Local name.
        name: String,
        /// The 24-word mnemonic.
        #[arg(long, env = "ZGRID_MNEMONIC", hide_env_values = true)]
        mnemonic: String,
    },
    /// Register the identity with the explorer.
    Register {
        /// User name (default: the identity's name).
        #[arg(long)]
        user_name: Option<String>,
        /// Email.
        #[arg(long, default_value = "", hide_default_value = true)]
        email: String,
    },
    /// Show the identity in use.
    Show {
        /// Also print the 24-word mnemonic (a secret).
        #[arg(long)]
        mnemonic: bool,
    },
    /// List identities.
    List,
    /// Make an identity the default.
    Use {
        /// Its name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum FarmCommand {
    /// Create a farm owned by me.
    Create {
        /// Unique farm name.
        name: String,
        /// A public IPv4 the farm offers, as ADDRESS/PREFIX=GATEWAY (repeatable).
        #[arg(long = "public-ip")]
        public_ips: Vec<String>,
    },
    /// List farms.
    List {
        #[command(flatten)]
        page: PageArgs,
    },
    /// Invite nodes into my farm: prints a token that `zgrid node --farm-invite` presents
    /// when the node first registers. Without --node any node holding it may join until it
    /// expires, so keep it secret.
    Invite {
        /// The farm (its id).
        #[arg(long)]
        farm: u64,
        /// How long it admits nodes, e.g. 2h or 7d (30d at most).
        #[arg(long, default_value = "7d", allow_hyphen_values = true)]
        expires: Lifetime,
        /// Admit only this node (its id, printed in the agent's log and by `zgrid nodes`).
        #[arg(long)]
        node: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct PageArgs {
    /// Page number, from 1.
    #[arg(long, default_value_t = 1)]
    pub page: u32,
    /// Items per page.
    #[arg(long, default_value_t = 50)]
    pub size: u32,
}

/// How a listing that shows every match reads it.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Items per request to the explorer (1 to 500); every match is shown, page after page.
    #[arg(long, default_value_t = 500)]
    pub size: u32,
    /// Show at most this many.
    #[arg(long)]
    pub limit: Option<usize>,
}

#[derive(Debug, Args)]
pub struct NodesArgs {
    /// Only nodes of this farm.
    #[arg(long)]
    pub farm: Option<u64>,
    /// Only nodes in this country.
    #[arg(long)]
    pub country: Option<String>,
    /// Only nodes in this city.
    #[arg(long)]
    pub city: Option<String>,
    /// At least this many free CPU cores.
    #[arg(long)]
    pub free_cru: Option<u64>,
    /// At least this much free memory (MiB).
    #[arg(long)]
    pub free_mru: Option<u64>,
    /// At least this much free SSD (MiB).
    #[arg(long)]
    pub free_sru: Option<u64>,
    /// At least this much free HDD (MiB).
    #[arg(long)]
    pub free_hru: Option<u64>,
    /// Only nodes that reported recently.
    #[arg(long, conflicts_with = "dead")]
    pub alive: bool,
    /// Only nodes that have not reported recently.
    #[arg(long)]
    pub dead: bool,
    /// Only nodes that give containers public IPv6 addresses (`deploy container --public-ipv6`).
    #[arg(long = "public-ipv6")]
    pub public_ipv6: bool,
    /// Only nodes that give containers Yggdrasil addresses (`deploy container --yggdrasil`).
    #[arg(long)]
    pub yggdrasil: bool,
    #[command(flatten)]
    pub list: ListArgs,
}

// Parsed once per process: the size of the container variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum DeployCommand {
    /// A container started from an image.
    #[command(group = clap::ArgGroup::new("outside").multiple(true).args(["public_ipv6", "yggdrasil"]))]
    Container {
        #[command(flatten)]
        image: ImageArgs,
        /// Program and arguments (default: the image's).
        #[arg(long, default_value = "", hide_default_value = true)]
        entrypoint: String,
        /// Run no entrypoint: give the container a console on port 7681 of its address in
        /// its private network (needs --network); use it with `zgrid console ID`.
        #[arg(long, requires = "network")]
        interactive: bool,
        /// Publish each line the container writes to Redis: stdout to channel PREFIX-stdout,
        /// stderr to PREFIX-stderr, given as redis://[:PASSWORD@]HOST:PORT/PREFIX (repeatable).
        #[arg(long = "logs")]
        logs: Vec<String>,
        /// Seal the --logs URLs to the node (they may hold a password), so only it reads them.
        #[arg(long, requires = "logs")]
        seal_logs: bool,
        /// Publish the container's statistics every 2 s to a Redis channel,

        /// redis://HOST:PORT/CHANNEL (repeatable); read them with `zgrid stats ID`.
        #[arg(long = "stats")]
        stats: Vec<String>,
        /// Virtual CPUs.
        #[arg(long, default_value_t = 1)]
        cpu: u32,
        /// Memory in MiB.
        #[arg(long, default_value_t = 256)]
        memory: u64,
        /// Writable root filesystem size in MiB.
        #[arg(long, default_value_t = 256)]
        disk: u64,
        /// Disk class of the root filesystem: ssd or hdd.
        #[arg(long = "disk-type", default_value = "ssd")]
        disk_type: String,
        /// Join one of my private networks; the node must be a member (`zgrid network add-node`).
        #[arg(long)]
        network: Option<String>,
        /// Address in the network (default: the lowest free one of the node's subnet).
        #[arg(long, requires = "network")]
        ip: Option<Ipv4Addr>,
        /// Also give the container a public IPv6 address from the node's prefix (nodes that
        /// have one were started with --public-ipv6), closed to the outside but for --open.
        #[arg(long = "public-ipv6", requires = "network")]
        public_ipv6: bool,
        /// Also give the container an address on the Yggdrasil network, from the node's
        /// Yggdrasil subnet (nodes that have one were started with --yggdrasil), closed to the
        /// outside but for --open.
        #[arg(long, requires = "network")]
        yggdrasil: bool,
        /// Ports the public and Yggdrasil addresses take connections on: PORT (TCP), PORT/tcp
        /// or PORT/udp, comma-separated or repeated (default: none; ICMP always passes).
        #[arg(long = "open", value_delimiter = ',', requires = "outside")]
        open: Vec<zgrid_types::workload::OpenPort>,
        #[command(flatten)]
        probes: ProbeArgs,
        /// Wait until the node reports the container running (or failing), showing progress.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        common: DeployCommon,
    },
    /// A Kubernetes node in a VM booted from the grid's Kubernetes image (scripts/k8s-image):
    /// a master, or a worker joining the masters given with --master-ip. `zgrid k8s up` makes
    /// whole clusters.
    Kubernetes {
        #[command(flatten)]
        source: FlistArgs,
        /// The private network the VM joins; the node must be a member.
        #[arg(long)]
        network: String,
        /// Address in the network (default: the lowest free one of the node's subnet).
        #[arg(long)]
        ip: Option<Ipv4Addr>,
        /// VM size, 1 to 18: 1 is 1 CPU, 2 GiB of memory and 50 GB of disk (the seed's table).
        #[arg(long, default_value_t = 1)]
        size: u8,
        /// The cluster secret, sealed to the node: every node of a cluster gets the same one,
        /// and it grants administration of the cluster. Give it in the environment.
        #[arg(long, env = "ZGRID_K8S_SECRET", hide_env_values = true)]
        secret: String,
        /// A master to join (repeatable); none makes this VM a master.
        #[arg(long = "master-ip")]
        master_ips: Vec<Ipv4Addr>,
        /// An OpenSSH public key file whose key may log in as root (repeatable).
        #[arg(long = "ssh-key")]
        ssh_keys: Vec<PathBuf>,
        /// An etcd URL a master keeps the cluster in, instead of etcd in its VM.
        #[arg(long, default_value = "", hide_default_value = true)]
        datastore_endpoint: String,
        /// A registry on the private network pulled from over plain HTTP, HOST:PORT
        /// (repeatable).
        #[arg(long = "registry")]
        registries: Vec<String>,
        /// Wait until the node reports the VM a Ready node of its cluster (or failing).
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        common: DeployCommon,
    },
    /// A virtual machine booted from an image, reachable on one of my private networks.
    Vm {
        #[command(flatten)]
        image: ImageArgs,
        /// The private network the VM joins (`zgrid network create`); the node must be a
        /// member (`zgrid network add-node`). The VM is reachable only there.
        #[arg(long)]
        network: String,
        /// Address in the network (default: the lowest free one of the node's subnet).
        #[arg(long)]
        ip: Option<Ipv4Addr>,
        /// An OpenSSH public key file whose key may log in, e.g. ~/.ssh/id_ed25519.pub
        /// (repeatable; every key line of each file).
        #[arg(long = "ssh-key", required = true)]
        ssh_keys: Vec<PathBuf>,
        /// Virtual CPUs.
        #[arg(long, default_value_t = 1)]
        cpu: u32,
        /// Memory in MiB (at least 256).
        #[arg(long, default_value_t = 1024)]
        memory: u64,
        /// Size in MiB of the writable layer over the image, kept across reboots.
        #[arg(long, default_value_t = 2048)]
        disk: u64,
        /// Disk class of the writable layer: ssd or hdd.
        #[arg(long = "disk-type", default_value = "ssd")]
        disk_type: String,
        /// Extra words for the guest kernel's command line, e.g. "quiet mitigations=off"
        /// (root=, init=, console= and zgrid.* are the node's).
        #[arg(long = "kernel-args", default_value = "", hide_default_value = true, allow_hyphen_values = true)]
        kernel_args: String,
        /// Wait until the node reports the VM running (or failing), showing progress.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        common: DeployCommon,
    },
    /// A persistent volume.
    Volume {
        /// Node to put it on: its id, or the start of it (at least 4 characters).
        #[arg(long)]
        node: String,
        /// Size in MiB.
        #[arg(long)]
        size: u64,
        /// Disk class: ssd or hdd.
        #[arg(long = "type", default_value = "ssd")]
        disk_type: String,
        /// Wait until the node reports the volume made (or failing).
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        common: DeployCommon,
    },
}

/// What a container and a VM both take: the node, the image and what the workload is given.
#[derive(Debug, Args)]
pub struct ImageArgs {
    #[command(flatten)]
    pub source: FlistArgs,
    /// An environment variable, KEY=VALUE (repeatable).
    #[arg(long = "env")]
    pub env: Vec<String>,
    /// A secret environment variable, sealed to the node so only it can read the value:
    /// KEY=VALUE, or KEY alone to take the value from this shell's environment and keep it
    /// out of the command line (repeatable).
    #[arg(long = "secret-env")]
    pub secret_env: Vec<String>,
    /// Mount one of my volumes on the same node: VOLUME_ID:/path inside the container or VM
    /// (repeatable).
    #[arg(long = "volume")]
    pub volumes: Vec<String>,
}

/// The node and the image a workload runs.
#[derive(Debug, Args)]
pub struct FlistArgs {
    /// Node to run it on: its id, or the start of it (at least 4 characters) as `zgrid live` shows it.
    #[arg(long)]
    pub node: String,
    /// Image: an flist URL (`zgrid flist push` prints it), or a directory or tar archive on
    /// the node.
    #[arg(long)]
    pub flist: String,
    /// The flist's hash: the node refuses any other content. Default: the hash the hub
    /// serves for the URL now (a hub answers with it).
    #[arg(long, default_value = "", hide_default_value = true)]
    pub flist_hash: String,
    /// Hub serving the flist's chunks, when not the flist URL's own server.
    #[arg(long = "hub-url", default_value = "", hide_default_value = true)]
    pub hub_url: String,
}

/// `zgrid kubelet`.
#[derive(Debug, Args)]
pub struct KubeletArgs {
    /// The kubeconfig of the cluster to join (its user needs rights on nodes, leases, pods,
    /// pods/status, secrets and configmaps).
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: PathBuf,
    /// The Node's name in the cluster.
    #[arg(long, default_value = "zgrid")]
    pub node_name: String,
    /// My private network the Pods join (their IP is their address on it); without it Pods
    /// have no private address.
    #[arg(long)]
    pub network: Option<String>,
    /// Grid nodes Pods may run on (repeatable; default: any node that is up, of the network's
    /// members when --network is given).
    #[arg(long)]
    pub node: Vec<String>,
    /// Only nodes of this farm.
    #[arg(long)]
    pub farm: Option<u64>,
    /// Only nodes in this country.
    #[arg(long)]
    pub country: Option<String>,
    /// Where the API server reaches this kubelet (`kubectl logs`, `kubectl exec`).
    #[arg(long, default_value = "127.0.0.1")]
    pub address: std::net::IpAddr,
    /// The kubelet API's port.
    #[arg(long, default_value_t = 10250)]
    pub port: u16,
    /// The CA that signs the API server's client certificate for kubelets (its
    /// `--kubelet-client-certificate`): only such clients may read logs and exec. Without it
    /// the kubelet API is not served and `kubectl logs` and `exec` do not work.
    #[arg(long)]
    pub client_ca: Option<PathBuf>,
    /// How long each signed container reservation lasts; it is renewed when half has passed,
    /// so Pods run until deleted.
    #[arg(long, default_value = "1d")]
    pub lifetime: Lifetime,
}

/// A container's probes, which its node runs (`zgrid deploy container`). PROBE is `tcp:PORT`
/// (a connection opens), `http:PORT/PATH` (GET answers 200 to 399) or `exec:COMMAND` (exits
/// with 0; split into words like --entrypoint), on 127.0.0.1 in the container's network or in
/// the container.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// Readiness probe: the node's result says `"ready": true` once it passes, and false when
    /// it fails 3 times in a row.
    #[arg(long, value_name = "PROBE", value_parser = zgrid_types::workload::ProbeAction::parse)]
    pub readiness: Option<zgrid_types::workload::ProbeAction>,
    /// Liveness probe: the node restarts the container when it fails 3 times in a row.
    #[arg(long, value_name = "PROBE", value_parser = zgrid_types::workload::ProbeAction::parse)]
    pub liveness: Option<zgrid_types::workload::ProbeAction>,
    /// Seconds between two attempts of each probe (1 to 3600); an attempt may take 1 s.
    #[arg(long, value_name = "SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=3600))]
    pub probe_period: u32,
}

/// A length of time from now given on the command line (`30m`, `2h`, `7d`): longer than zero,
/// with a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime(pub std::time::Duration);

impl std::str::FromStr for Lifetime {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        const HINT: &str = "write it like 30m, 2h or 7d";
        if text.starts_with('-') {
            return Err(format!("a length of time cannot be negative: {HINT}"));
        }
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("{text} what? Give a unit: {text}m, {text}h or {text}d"));
        }
        match humantime::parse_duration(text) {
            Ok(d) if d.is_zero() => Err(format!("it must be longer than zero: {HINT}")),
            Ok(d) => Ok(Self(d)),
            Err(e) => Err(format!("{HINT} ({e})")),
        }
    }
}

#[derive(Debug, Args)]
pub struct DeployCommon {
    /// How long to reserve it, e.g. 2h, 30m, 7d.
    #[arg(long, default_value = "1d", allow_hyphen_values = true)]
    pub duration: Lifetime,
    /// Description.
    #[arg(long, default_value = "", hide_default_value = true)]
    pub description: String,
}

#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Create a network on one or more nodes: one network resource per node, then the peers
    /// once every node reported its port. Shows each node as it becomes ready.
    Create {
        #[command(flatten)]
        network: NetworkName,
        /// The network's private range, a /16 such as 10.20.0.0/16.
        #[arg(long, value_parser = ipv4_cidr)]
        cidr: Ipv4Net,
        /// A node to put it on: its id, or the start of it (at least 4 characters); repeatable,
        /// at least one.
        #[arg(long = "node", required = true)]
        nodes: Vec<String>,
        /// Let containers on the network reach outside it through their node's uplink
        /// (addresses translated; nothing outside can connect in). Nodes added later get it too.
        #[arg(long)]
        egress: bool,
        #[command(flatten)]
        common: DeployCommon,
    },
    /// Add a node to a network and connect the other members to it.
    AddNode {
        #[command(flatten)]
        target: NetworkNode,
        /// The node's /24 in the network (default: the lowest free one).
        #[arg(long, value_parser = ipv4_cidr)]
        subnet: Option<Ipv4Net>,
        /// How long to reserve it, e.g. 7d (default: until the last member expires).
        #[arg(long, allow_hyphen_values = true)]
        duration: Option<Lifetime>,
    },
    /// Take a node out of a network (refused while my containers there use it).
    RemoveNode {
        #[command(flatten)]
        target: NetworkNode,
    },
    /// Let a machine of mine (a laptop) join the network through a public member: writes its
    /// WireGuard config for `wg-quick up FILE`.
    AddAccess {
        #[command(flatten)]
        target: NetworkNode,
        /// The access point's /24 in the network (default: the lowest free one).
        #[arg(long, value_parser = ipv4_cidr)]
        subnet: Option<Ipv4Net>,
        /// Where to write the config, mode 0600 (default: NAME.conf in the current directory).
        #[arg(long)]
        output: Option<PathBuf>,
        /// Overwrite the config file if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Revoke an access point (a lost laptop): its key leaves every member's peers, so its
    /// config no longer reaches the network. Waits until every node applied the change.
    RemoveAccess {
        #[command(flatten)]
        network: NetworkName,
        /// The access point: its subnet or its WireGuard public key (`zgrid network show`).
        #[arg(long)]
        access: String,
    },
    /// Print the network as a Graphviz graph (render with `dot -Tsvg`).
    Graph {
        #[command(flatten)]
        network: NetworkName,
    },
    /// Show members, subnets, endpoints, states and access points.
    Show {
        #[command(flatten)]
        network: NetworkName,
    },
    /// Delete the whole network (refused while my containers use it).
    Delete {
        #[command(flatten)]
        network: NetworkName,
    },
}

#[derive(Debug, Subcommand)]
pub enum K8sCommand {
    /// Make a cluster: choose nodes, make the network NAME (or reuse mine) with this machine's
    /// WireGuard access, provision the master then the workers, wait until every node is
    /// Ready, and write a kubeconfig for kubectl.
    Up(K8sUpArgs),
    /// List my clusters: network, master, VMs per node, expiry.
    Ls,
    /// Write the kubeconfig of a cluster, from this identity alone (needs this machine on the
    /// cluster's network: `wg-quick up` the config `up` wrote).
    Kubeconfig {
        /// The cluster.
        name: String,
        /// Where to write it, mode 0600 (default: ~/.kube/zgrid-NAME.yaml).
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Add a worker to a running cluster and wait until it is a Ready node.
    AddWorker {
        /// The cluster.
        name: String,
        /// The node to put it on (default: one with room, hosting fewest of the cluster's VMs).
        #[arg(long)]
        node: Option<String>,
        /// Its size, 1 to 18 (default: the master's).
        #[arg(long)]
        size: Option<u8>,
    },
    /// Delete a cluster: every VM it has, then its network if `up` made it.
    Down {
        /// The cluster.
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct K8sUpArgs {
    /// The cluster's name, which its network has too.
    #[arg(long)]
    pub name: String,
    /// How many VMs: one master and the rest workers (default: one per --node).
    #[arg(long, required_unless_present = "node")]
    pub nodes: Option<usize>,
    /// A node to use (repeatable; the master goes on the first, the VMs round the list).
    /// Default: nodes with room that run VMs, chosen for you.
    #[arg(long)]
    pub node: Vec<String>,
    /// VM size, 1 to 18: 1 is 1 CPU, 2 GiB of memory and 50 GB of disk (the seed's table).
    #[arg(long, default_value_t = 1)]
    pub size: u8,
    /// The network's private range when it is made, a /16 clear of the cluster's own
    /// 10.42.0.0/16 (pods) and 10.43.0.0/16 (services). Default: the first free 10.N.0.0/16
    /// from 10.20.
    #[arg(long, value_parser = ipv4_cidr)]
    pub cidr: Option<Ipv4Net>,
    /// Let the VMs reach outside the network through their node's uplink (to pull images from
    /// public registries), when the network is made.
    #[arg(long)]
    pub egress: bool,
    /// How long to reserve it, e.g. 2h, 30m, 7d.
    #[arg(long, default_value = "1d", allow_hyphen_values = true)]
    pub duration: Lifetime,
    /// Who may log in to the VMs as root: an OpenSSH public key file, or github:USER for the
    /// keys GitHub lists for USER (repeatable).
    #[arg(long = "ssh-key")]
    pub ssh_keys: Vec<String>,
    /// The Kubernetes image's flist URL (scripts/k8s-image prints it). Default: `k8s-flist` in
    /// the config file (`zgrid up` sets it).
    #[arg(long, env = "ZGRID_K8S_FLIST")]
    pub flist: Option<String>,
    /// A registry on the private network the nodes pull images from over plain HTTP,
    /// HOST:PORT (repeatable).
    #[arg(long = "registry")]
    pub registries: Vec<String>,
    /// Where to write the kubeconfig, mode 0600 (default: ~/.kube/zgrid-NAME.yaml).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Where to write this machine's WireGuard config for the network, mode 0600 (default:
    /// wireguard/NAME.conf in the zgrid home directory).
    #[arg(long)]
    pub wg_config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct NetworkName {
    /// The network's name.
    #[arg(long)]
    pub name: String,
}

#[derive(Debug, Args)]
pub struct NetworkNode {
    #[command(flatten)]
    pub network: NetworkName,
    /// The node: its id, or the start of it (at least 4 characters) as `zgrid live` shows it.
    #[arg(long)]
    pub node: String,
}

#[derive(Debug, Args)]
pub struct LiveArgs {
    /// Which workloads: active, deleted, expired or all.
    #[arg(long, default_value = "active")]
    pub state: String,
    #[command(flatten)]
    pub list: ListArgs,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Workload ids.
    #[arg(required = true)]
    pub ids: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Set a value: `explorer URL` (or `URL,URL,...` for explorers sharing one database), `hub
    /// URL`, `identity NAME`, `ca-cert FILE`, `timeout SECS` or `k8s-flist URL`.
    Set {
        /// The key: explorer, hub, identity, ca-cert, timeout or k8s-flist.
        key: String,
        /// The value.
        value: String,
    },
    /// Print the config file.
    Show,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The workload id.
    pub id: String,
    /// Keep printing new output until the container is removed (or Ctrl-C).
    #[arg(short, long)]
    pub follow: bool,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The workload id (a container).
    pub id: String,
    /// Send this terminal's stdin to the command.
    #[arg(short = 'i', long)]
    pub stdin: bool,
    /// Run the command on a terminal (with -i, this terminal is put in raw mode meanwhile).
    #[arg(short, long)]
    pub tty: bool,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ConsoleArgs {
    /// The workload id (a container deployed with `--interactive`).
    pub id: String,
    /// Start a shell in the container, type these lines into it, then `exit`, and print what
    /// the terminal shows, as plain text (default: on a terminal, attach it to a new shell in
    /// the container until the shell exits or Ctrl-] detaches; elsewhere, list the container's
    /// processes and the console's URL).
    #[arg(long, conflicts_with = "attach")]
    pub send: Option<String>,
    /// Attach this terminal to process N the console started (`--list` shows them) instead of
    /// starting a new one.
    #[arg(long, value_name = "N", conflicts_with = "list")]
    pub attach: Option<u64>,
    /// List the container's processes and the console's URL, also on a terminal.
    #[arg(long, conflicts_with = "send")]
    pub list: bool,
    /// The program `--send` and the interactive mode start.
    #[arg(long, default_value = "/bin/sh")]
    pub program: String,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// The workload id (a container deployed with `--stats`).
    pub id: String,
    /// Stop after this many messages (default: until Ctrl-C).
    #[arg(long)]
    pub count: Option<usize>,
}

#[derive(Debug, Args)]
pub struct ExplorerArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080", env = "ZGRID_LISTEN")]
    pub listen: String,
    /// Database: a SQLite file path, or a postgres:// URL.
    #[arg(long, default_value = "explorer.sqlite", env = "ZGRID_DATABASE")]
    pub db: String,
    #[command(flatten)]
    pub tls: TlsArgs,
}

#[derive(Debug, Args)]
pub struct NodeArgs {
    /// The farm this node belongs to.
    #[arg(long, env = "ZGRID_FARM")]
    pub farm: u64,
    /// The farm owner's invitation (`zgrid farm invite`), needed when the node first joins
    /// the farm (or moves to it), not afterwards.
    #[arg(long, env = "ZGRID_FARM_INVITE", hide_env_values = true, conflicts_with = "farm_invite_file")]
    pub farm_invite: Option<String>,
    /// A file holding the farm owner's invitation (safer than the command line).
    #[arg(long)]
    pub farm_invite_file: Option<std::path::PathBuf>,
    /// Where the node keeps its key, its records and its containers.
    #[arg(long, default_value = "/var/lib/zgrid", env = "ZGRID_STATE_DIR")]
    pub state_dir: std::path::PathBuf,
    /// Host name to register (default: the machine's).
    #[arg(long)]
    pub hostname: Option<String>,
    /// Country to register.
    #[arg(long, default_value = "", hide_default_value = true)]
    pub country: String,
    /// City to register.
    #[arg(long, default_value = "", hide_default_value = true)]
    pub city: String,
    /// Public address WireGuard peers can reach, if any.
    #[arg(long)]
    pub public_endpoint: Option<std::net::IpAddr>,
    /// Where the node's own API (workload logs) listens.
    #[arg(long, default_value = "0.0.0.0:7780")]
    pub api_listen: std::net::SocketAddr,
    /// The API's URL as deployers reach it (default: derived from --api-listen, or the address
    /// this machine reaches the explorer from; https:// with --tls-cert).
    #[arg(long)]
    pub api_url: Option<String>,
    /// Serve the node API over TLS.
    #[command(flatten)]
    pub tls: TlsArgs,
    /// cgroup under which containers run (per controller).
    #[arg(long, default_value = "zgrid")]
    pub cgroup_parent: String,
    /// Seconds one provisioning step may take.
    #[arg(long, default_value_t = 120)]
    pub step_timeout: u64,
    /// Where the consoles' browser terminal (xterm.js and xterm.css) is; install it with
    /// scripts/console-assets. Without it consoles show a plain text view.
    #[arg(long, default_value = zgrid_node::console::ASSETS_DIR, env = "ZGRID_CONSOLE_ASSETS")]
    pub console_assets: std::path::PathBuf,
    /// UDP ports the node picks WireGuard listen ports from, as FIRST-LAST.
    #[arg(long, default_value = "51820-52819", value_parser = port_range)]
    pub wireguard_ports: std::ops::RangeInclusive<u16>,
    /// A public IPv6 prefix (a /64 or larger) this node gives containers that ask for a public
    /// address (`deploy container --public-ipv6`); it turns on IPv6 forwarding on the node.
    #[arg(long = "public-ipv6", value_name = "PREFIX")]
    pub public_ipv6: Option<ipnet::Ipv6Net>,
    /// The interface the --public-ipv6 prefix is on, where the node answers for its containers'
    /// addresses (default: the one holding an address of the prefix; none for a prefix routed
    /// to the node).
    #[arg(long = "public-ipv6-dev", value_name = "INTERFACE", requires = "public_ipv6")]
    pub public_ipv6_dev: Option<String>,
    /// Run Debian's yggdrasil (its key and configuration in the state directory) and give
    /// containers that ask for one an address from the node's Yggdrasil subnet.
    #[arg(long)]
    pub yggdrasil: bool,
    /// A Yggdrasil node to peer with, as tcp://HOST:PORT or tls://HOST:PORT (repeatable).
    #[arg(long = "yggdrasil-peer", value_name = "URI", requires = "yggdrasil", value_parser = yggdrasil_uri)]
    pub yggdrasil_peers: Vec<String>,
    /// Where Yggdrasil takes peerings, as tcp://ADDRESS:PORT or tls://ADDRESS:PORT (repeatable).
    #[arg(long = "yggdrasil-listen", value_name = "URI", requires = "yggdrasil", value_parser = yggdrasil_uri)]
    pub yggdrasil_listen: Vec<String>,
    /// Most MiB of image chunks the node keeps cached (least recently used go first).
    #[arg(long, default_value_t = 10240)]
    pub flist_cache_mib: u64,
    /// The kernel for VM images without their own: a directory holding `boot/vmlinuz-<version>`
    /// and `usr/lib/modules/<version>/`, as `scripts/vm-kernel` makes it. Default: the newest
    /// under /var/cache/zgrid/vm-kernel. Without one, the node refuses VMs and says why.
    #[arg(long, env = "ZGRID_VM_KERNEL")]
    pub vm_kernel: Option<std::path::PathBuf>,
    /// How VMs run: `auto` uses KVM when a guest kernel boots with it and TCG (emulation,
    /// several times slower) otherwise; `kvm` refuses VMs without working KVM; `tcg` never uses KVM.
    #[arg(long, default_value = "auto", env = "ZGRID_VM_ACCEL")]
    pub vm_accel: zgrid_node::vm::AcceleratorChoice,
}

/// Where the local grid lives.
#[derive(Debug, Args)]
pub struct GridDir {
    /// The grid's directory (default: the one `zgrid up` last pointed this CLI at, else
    /// /var/lib/zgrid/devnet).
    #[arg(long, env = "ZGRID_GRID_DIR")]
    pub dir: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Node agents to run (a running grid with fewer gets more; none are removed).
    #[arg(long, default_value_t = 2)]
    pub nodes: u32,
    /// Where the nodes find the consoles' browser terminal (xterm.js and xterm.css), which
    /// scripts/console-assets installs there; without it consoles show a plain text view.
    #[arg(long, value_name = "DIR", default_value = zgrid_node::console::ASSETS_DIR, env = "ZGRID_CONSOLE_ASSETS")]
    pub console_assets: std::path::PathBuf,
    #[command(flatten)]
    pub grid: GridDir,
}

#[derive(Debug, Args)]
pub struct MountServiceArgs {
    /// Directory of flists, the chunk cache and mount points.
    #[arg(long)]
    pub dir: std::path::PathBuf,
    /// Most bytes the chunk cache holds.
    #[arg(long)]
    pub cache_bytes: u64,
}

/// Parse ADDRESS/LENGTH into an IPv4 range, saying which half is wrong.
fn ipv4_cidr(text: &str) -> Result<Ipv4Net, String> {
    text.parse().map_err(|_| {
        let hint = match text.split_once('/') {
            None => "add the prefix length",
            Some((address, _)) if address.parse::<Ipv4Addr>().is_err() => "the address is not an IPv4 address",
            Some(_) => "the prefix length is 0 to 32",
        };
        format!("{text:?}: write an IPv4 range such as 10.20.0.0/16 ({hint})")
    })
}

/// Check a Yggdrasil peer or listen URI: tcp:// or tls:// with a host and a port.
fn yggdrasil_uri(text: &str) -> Result<String, String> {
    let bad = || format!("{text:?}: write tcp://HOST:PORT or tls://HOST:PORT (IPv6 hosts in brackets)");
    let rest = text.strip_prefix("tcp://").or_else(|| text.strip_prefix("tls://")).ok_or_else(bad)?;
    let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(bad());
    }
    Ok(text.to_owned())
}

/// Parse FIRST-LAST into a port range.
fn port_range(text: &str) -> Result<std::ops::RangeInclusive<u16>, String> {
    let bad = || format!("{text:?}: write a port range such as 51820-52819");
    let (first, last) = text.split_once('-').ok_or_else(bad)?;
    let (first, last): (u16, u16) = (first.parse().map_err(|_| bad())?, last.parse().map_err(|_| bad())?);
    if first == 0 || first > last {
        return Err(bad());
    }
    Ok(first..=last)
}

/// Which hub to talk to.
#[derive(Debug, Args)]
pub struct HubUrl {
    /// Hub URL (default: `hub` in the config file).
    #[arg(long, env = "ZGRID_HUB")]
    pub hub: Option<String>,
}

/// How many uploads a hub takes at once, and how many bytes of them it holds (refused with 429
/// past a key's limits, 503 past the hub's).
#[derive(Debug, Args)]
pub struct UploadLimitArgs {
    /// Uploads in progress at once, from all keys.
    #[arg(long, default_value_t = zgrid_hub::UploadLimits::default().uploads)]
    pub max_uploads: usize,
    /// Uploads in progress at once from one key.
    #[arg(long, default_value_t = zgrid_hub::UploadLimits::default().uploads_per_key)]
    pub max_uploads_per_key: usize,
    /// MiB the uploads in progress may hold (on disk while received), from all keys.
    #[arg(long, default_value_t = zgrid_hub::UploadLimits::default().bytes >> 20)]
    pub max_spool_mib: u64,
    /// MiB the uploads in progress of one key may hold; an import needs its archive's size.
    #[arg(long, default_value_t = zgrid_hub::UploadLimits::default().bytes_per_key >> 20)]
    pub max_spool_mib_per_key: u64,
}

#[derive(Debug, Subcommand)]
pub enum HubCommand {
    /// Serve a hub until SIGINT or SIGTERM.
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8090", env = "ZGRID_LISTEN")]
        listen: String,
        /// Directory of chunks, flists and names (created if missing).
        #[arg(long, default_value = "hub-data")]
        data: std::path::PathBuf,
        #[command(flatten)]
        limits: UploadLimitArgs,
        #[command(flatten)]
        tls: TlsArgs,
    },
    /// List namespaces, or the flists of one (its owner's public key; `me` for yours).
    Ls {
        /// Namespace to list.
        owner: Option<String>,
        #[command(flatten)]
        hub: HubUrl,
    },
    /// Have the hub turn an archive into an flist in your namespace: a tar or tar.gz root
    /// filesystem, an OCI image layout (directory or tar) or a `docker save` archive.
    Import {
        /// The archive or OCI layout directory.
        source: std::path::PathBuf,
        /// Name in your namespace (ending in .flist).
        #[arg(long)]
        name: String,
        #[command(flatten)]
        hub: HubUrl,
    },
    /// Merge flists into one in your namespace; later sources win where paths collide.
    Merge {
        /// Name of the result (ending in .flist).
        name: String,
        /// Sources as `<owner>/<name>`, lowest first.
        #[arg(required = true, num_args = 2..)]
        sources: Vec<String>,
        #[command(flatten)]
        hub: HubUrl,
    },
    /// What the hub has served since it started (chunks, bytes, flists).
    Stats {
        #[command(flatten)]
        hub: HubUrl,
    },
    /// Remove a name from your namespace.
    Rm {
        /// The flist's name.
        name: String,
        #[command(flatten)]
        hub: HubUrl,
    },
}

#[derive(Debug, Subcommand)]
pub enum FlistCommand {
    /// Upload an flist and the chunks the hub lacks into your namespace.
    Push {
        /// The flist file.
        flist: std::path::PathBuf,
        /// Directory of its chunks.
        #[arg(long)]
        store: std::path::PathBuf,
        /// Name in your namespace (default: the file's name).
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        hub: HubUrl,
    },
    /// Pack a directory, a tar(.gz) archive, an OCI image layout (directory or tar) or a
    /// `docker save` archive into an flist; its files' chunks go to a chunk store.
    Create {
        /// What to pack: a root filesystem directory, a tar of one (plain, gzip or zstd), an OCI
        /// image layout (directory or tar) or a `docker save` archive.
        source: std::path::PathBuf,
        /// The flist file to write.
        #[arg(short, long)]
        output: std::path::PathBuf,
        /// Directory of chunks (created if missing).
        #[arg(long)]
        store: std::path::PathBuf,
    },
    /// List a directory of an flist.
    Ls {
        /// The flist file.
        flist: std::path::PathBuf,
        /// Directory in the image.
        #[arg(default_value = "/")]
        path: String,
    },
    /// Print a file of an flist, read from its chunks (each checked).
    Cat {
        /// The flist file.
        flist: std::path::PathBuf,
        /// File in the image.
        path: String,
        /// Directory of chunks.
        #[arg(long)]
        store: std::path::PathBuf,
    },
    /// Show an flist's address, size, chunk counts and image config.
    Inspect {
        /// The flist file.
        flist: std::path::PathBuf,
    },
    /// Write an flist's whole tree into a directory (owners and devices need root).
    Unpack {
        /// The flist file.
        flist: std::path::PathBuf,
        /// Directory to write (empty or absent).
        dest: std::path::PathBuf,
        /// Directory of chunks.
        #[arg(long)]
        store: std::path::PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Submit-to-running latency of containers, container start time and node agent memory, on
    /// a devnet (an explorer and one node agent in a network namespace) on this machine. Root.
    Node {
        /// Containers to run, one after the other, then all at once.
        #[arg(long, default_value_t = 50)]
        containers: usize,
    },
    /// Throughput (iperf3) and latency (ping) between containers on two nodes over a private
    /// network, next to the raw underlay between the same nodes, on a devnet. Root; needs
    /// iperf3.
    Network {
        /// Seconds each iperf3 run lasts.
        #[arg(long, default_value_t = 10)]
        seconds: u32,
    },
    /// Cold time-to-ready of a container from an flist on a hub (chunks fetched lazily) against
    /// the same image downloaded whole as a .tar.gz and unpacked, and the hub's dedup over
    /// successive versions of an image, on a devnet. Root; needs debootstrap and curl.
    Flist {
        /// Runs, each on a new node (empty caches).
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// MiB of incompressible data added to the image, in a file the start does not read.
        #[arg(long, default_value_t = 200)]
        extra_mib: u64,
        /// Root filesystem to start (it needs /usr/bin/python3). Default: Debian bookworm
        /// minbase with python3-minimal, built once with debootstrap under /var/tmp/zgrid-bench.
        #[arg(long)]
        image: Option<std::path::PathBuf>,
        /// Successive versions of an image to push for the dedup measurement. Default:
        /// /var/tmp/zgrid-chunking/v1..v5 (made by scripts/chunking-images) when present.
        #[arg(long, num_args = 1..)]
        versions: Vec<std::path::PathBuf>,
    },
    /// Time from submitting a VM to its guest answering SSH, with the node's chunk cache
    /// empty and warm; the image bytes fetched from the hub; qemu's resident memory; on a
    /// devnet, naming the accelerator. Root; needs qemu-system-x86, openssh-client, the kernel
    /// of scripts/vm-kernel and debootstrap.
    Vm {
        /// Runs, each on a new node (empty chunk cache) with a cold and a warm VM.
        #[arg(long, default_value_t = 1)]
        runs: usize,
        /// Root filesystem of the VM image. Default: the Debian image of `scripts/vm-image`.
        #[arg(long)]
        image: Option<std::path::PathBuf>,
    },
    /// Time from `zgrid k8s up` until every VM of the cluster is a Ready node, for clusters of
    /// 1 and 3 VMs by default, and qemu's resident memory for the master and a worker; on a
    /// devnet, naming the accelerator. Root; needs what `bench vm` needs and the Kubernetes
    /// image of scripts/k8s-image (its first build compiles Kubernetes, about 15 minutes).
    K8s {
        /// Cluster sizes (VMs: one master, the rest workers), each made and removed in turn.
        #[arg(long = "vms", num_args = 1.., default_values_t = [1, 3])]
        vms: Vec<usize>,
        /// VM size (`zgrid k8s up --size`); under TCG a master needs two CPUs (16).
        #[arg(long, default_value_t = 16)]
        size: u8,
        /// Root filesystem of the Kubernetes image. Default: `scripts/k8s-image --tree`.
        #[arg(long)]
        image: Option<std::path::PathBuf>,
    },
    /// Pod startup latency through `zgrid kubelet`: a Deployment of busybox web servers with a
    /// readiness probe, from each Pod's creation to Running and to Ready, with where the time
    /// goes; on a devnet with a private network and a Kubernetes control plane on loopback.
    /// Root; needs etcd-server, kubectl and the server binaries of scripts/k8s-build.
    Kubelet {
        /// Replicas of the Deployment.
        #[arg(long, default_value_t = 20)]
        pods: usize,
        /// Grid nodes (node agents) the Pods are spread over.
        #[arg(long, default_value_t = 2)]
        nodes: usize,
    },
    /// Load times of the explorer's cockpit pages on a big grid: an in-process explorer on
    /// loopback filled through the signed API, then each kind of page loaded 50 times.
    Cockpit {
        /// Nodes to register (spread over 5 countries, a heartbeat each).
        #[arg(long, default_value_t = 1000)]
        nodes: usize,
        /// Workloads to submit (spread over the nodes and users, a node's result each).
        #[arg(long, default_value_t = 10_000)]
        workloads: usize,
        /// Deployers owning them.
        #[arg(long, default_value_t = 10)]
        users: usize,
        /// Database (default: a temporary SQLite file).
        #[arg(long)]
        db: Option<String>,
    },
    /// The explorer with many nodes connected: `zgrid explorer` processes on loopback and, in
    /// this process, simulated nodes that register (signed), keep their feed open, send
    /// heartbeats every 30 s and a signed result for each workload; then deployers' workloads
    /// accepted per second, acceptance-to-feed latency, and the explorers' memory and CPU with
    /// every feed idle (heartbeats the only load).
    Scale {
        /// Simulated nodes (each holds one feed connection open).
        #[arg(long, default_value_t = 10_000)]
        nodes: usize,
        /// Workloads the deployers create, spread over the nodes.
        #[arg(long, default_value_t = 100_000)]
        workloads: usize,
        /// Explorer processes; nodes and deployers use them in turn. More than one needs a
        /// PostgreSQL `--db`.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=16))]
        explorers: u16,
        /// Database: an SQLite file path (default: a temporary one), or a PostgreSQL server's
        /// URL (postgres://user:password@host/db), on which a new database is created for the
        /// run and dropped after it.
        #[arg(long, visible_alias = "database")]
        db: Option<String>,
        /// Requests in flight while registering nodes and creating workloads.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Creates timed one at a time from acceptance to the node's feed.
        #[arg(long, default_value_t = 500)]
        samples: usize,
        /// Seconds the explorers are watched with every feed idle.
        #[arg(long, default_value_t = 10)]
        idle_seconds: u64,
        /// Then, loads of each listing timed (`GET /v1/nodes` filters, `GET /v1/workloads?owner=`
        /// pages) on the full grid; 0 skips them.
        #[arg(long, default_value_t = 20)]
        query_loads: usize,
    },
    /// Directory listings on a big ledger: a database filled directly (not through the API) with
    /// 10,000 nodes and 100,000 workloads, served by an in-process explorer; `GET /v1/nodes`
    /// filters and an owner's `GET /v1/workloads` timed (first and a later page), the plans the
    /// database chooses for them, and what a `COUNT` over the same filters would cost.
    Lists {
        /// Nodes to fill in.
        #[arg(long, default_value_t = 10_000)]
        nodes: usize,
        /// Workloads to fill in (5 % of them the first owner's).
        #[arg(long, default_value_t = 100_000)]
        workloads: usize,
        /// Requests timed per listing.
        #[arg(long, default_value_t = 200)]
        loads: usize,
        /// Database: an SQLite file path (default: a temporary one) or an empty PostgreSQL
        /// database's URL.
        #[arg(long)]
        db: Option<String>,
    },
    /// Signed workloads accepted per second and feed latency, against an in-process explorer.
    Explorer {
        /// Workloads to submit.
        #[arg(long, default_value_t = 2000)]
        workloads: usize,
        /// Concurrent submitters.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Database (default: a temporary SQLite file).
        #[arg(long)]
        db: Option<String>,
    },
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[test]
    fn the_definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    /// What `zgrid deploy volume --node N --size 1 --duration TEXT` says of TEXT: the parsed
    /// length of time, or clap's whole error.
    fn duration(text: &str) -> Result<u64, String> {
        let cli = Cli::try_parse_from(["zgrid", "deploy", "volume", "--node", "N", "--size", "1", "--duration", text]);
        match cli {
            Ok(Cli { command: Command::Deploy(DeployCommand::Volume { common, .. }), .. }) => {
                Ok(common.duration.0.as_secs())
            }
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn durations_need_a_unit_and_say_so_once_with_the_fix() {
        assert_eq!(duration("2h"), Ok(7200));
        assert_eq!(duration("1d 12h"), Ok(129_600));
        let bare = duration("2").unwrap_err();
        assert!(bare.contains("'2' for '--duration"), "{bare}");
        assert!(bare.contains("2m, 2h or 2d"), "{bare}");
        assert!(!bare.contains("2sec"), "humantime's contradicting hint is not repeated: {bare}");
        let negative = duration("-5m").unwrap_err();
        assert!(negative.contains("cannot be negative"), "{negative}");
        assert!(!negative.contains("unexpected argument"), "{negative}");
        assert!(duration("0s").unwrap_err().contains("longer than zero"));
        let unit = duration("5x").unwrap_err();
        assert!(unit.contains("30m, 2h or 7d") && unit.contains("unknown time unit"), "{unit}");
    }

    /// Every command's help, with its path (`zgrid deploy volume`), but clap's own `help`.
    fn helps(command: &mut clap::Command, path: String, out: &mut Vec<(String, String)>) {
        out.push((path.clone(), command.render_help().to_string()));
        for sub in command.get_subcommands_mut().filter(|s| s.get_name() != "help") {
            let name = format!("{path} {}", sub.get_name());
            helps(sub, name, out);
        }
    }

    #[test]
    fn help_lists_a_commands_own_options_before_the_global_ones_and_no_empty_defaults() {
        let mut all = Vec::new();
        helps(&mut Cli::command(), "zgrid".into(), &mut all);
        assert!(all.len() > 40, "{}", all.len());
        for (path, help) in all {
            assert!(!help.contains("[default: ]"), "{path}:\n{help}");
            let (own, global) = help.split_once("Global options:").unwrap_or_else(|| panic!("{path}:\n{help}"));
            // (`bench scale` has an own `--explorers`.)
            assert!(!own.contains("--explorer <") && global.contains("--explorer <"), "{path}:\n{help}");
        }
    }

    #[test]
    fn several_explorers_are_given_with_commas_or_the_flag_repeated() {
        let urls = ["http://a:1", "http://b:2", "http://c:3"];
        for args in [
            ["zgrid", "--explorer", "http://a:1,http://b:2", "--explorer", "http://c:3", "nodes"],
            ["zgrid", "nodes", "--explorer", "http://a:1", "--explorer", "http://b:2,http://c:3"],
        ] {
            assert_eq!(Cli::try_parse_from(args).unwrap().global.explorer, urls, "{args:?}");
        }
    }

    #[test]
    fn network_verbs_parse_their_flags() {
        let cli = Cli::try_parse_from([
            "zgrid",
            "network",
            "add-node",
            "--name",
            "web",
            "--node",
            "N",
            "--subnet",
            "10.20.9.0/24",
        ]);
        let Ok(Cli { command: Command::Network(NetworkCommand::AddNode { target, subnet, duration }), .. }) = cli
        else {
            panic!("{cli:?}")
        };
        assert_eq!((target.network.name.as_str(), target.node.as_str()), ("web", "N"));
        assert_eq!((subnet.map(|s| s.to_string()), duration), (Some("10.20.9.0/24".into()), None));
        let no_network =
            Cli::try_parse_from(["zgrid", "deploy", "container", "--node", "N", "--flist", "f", "--ip", "10.20.1.2"]);
        assert!(no_network.is_err(), "--ip needs --network");
        let no_node = Cli::try_parse_from(["zgrid", "network", "create", "--name", "web", "--cidr", "10.20.0.0/16"]);
        assert!(no_node.is_err(), "create needs a --node");
        for (cidr, says) in [
            ("10.20.0.0/33", "the prefix length is 0 to 32"),
            ("10.20.0/16", "the address is not an IPv4 address"),
            ("10.20.0.0", "add the prefix length"),
        ] {
            let args = ["zgrid", "network", "create", "--name", "web", "--node", "N", "--cidr", cidr];
            let said = Cli::try_parse_from(args).unwrap_err().to_string();
            assert!(said.contains(says) && said.contains("such as 10.20.0.0/16"), "{cidr}: {said}");
        }
    }

    #[test]
    fn deploy_vm_takes_the_container_image_flags_and_sane_defaults() {
        let args = ["zgrid", "deploy", "vm", "--node", "N", "--flist", "https://hub/d.flist", "--network", "web"];
        let with = |extra: &[&str]| Cli::try_parse_from(args.iter().chain(extra));
        let cli = with(&["--ssh-key", "a.pub", "--ssh-key", "b.pub", "--env", "A=1", "--kernel-args", "-v quiet"]);
        let Ok(Cli {
            command: Command::Deploy(DeployCommand::Vm { image, ssh_keys, cpu, memory, disk, kernel_args, ip, .. }),
            ..
        }) = cli
        else {
            panic!("{cli:?}")
        };
        assert_eq!(
            (image.source.node.as_str(), image.source.flist.as_str(), image.env),
            ("N", "https://hub/d.flist", vec!["A=1".to_string()])
        );
        assert_eq!(ssh_keys, [PathBuf::from("a.pub"), PathBuf::from("b.pub")]);
        assert_eq!((cpu, memory, disk, kernel_args.as_str(), ip), (1, 1024, 2048, "-v quiet", None));
        assert!(with(&[]).is_err(), "a VM nobody can log in to needs --ssh-key");
        let no_network = ["zgrid", "deploy", "vm", "--node", "N", "--flist", "f", "--ssh-key", "a.pub"];
        assert!(Cli::try_parse_from(no_network).is_err(), "a VM is reachable only on a private network");
    }

    #[test]
    fn k8s_up_needs_a_count_or_nodes_and_takes_repeated_keys_and_registries() {
        let up = |extra: &[&str]| Cli::try_parse_from(["zgrid", "k8s", "up", "--name", "kube"].iter().chain(extra));
        assert!(up(&[]).is_err(), "--nodes or --node is needed");
        let cli = up(&[
            "--node",
            "A",
            "--node",
            "B",
            "--ssh-key",
            "github:me",
            "--ssh-key",
            "k.pub",
            "--registry",
            "10.1.2.9:5000",
        ]);
        let Ok(Cli { command: Command::K8s(K8sCommand::Up(a)), .. }) = cli else { panic!("{cli:?}") };
        assert_eq!((a.nodes, a.node.len(), a.size, a.duration.0.as_secs()), (None, 2, 1, 86_400));
        assert_eq!(
            (a.ssh_keys, a.registries),
            (vec!["github:me".to_string(), "k.pub".into()], vec!["10.1.2.9:5000".to_string()])
        );
        let cli = up(&["--nodes", "3", "--cidr", "10.30.0.0/16", "--size", "4"]);
        let Ok(Cli { command: Command::K8s(K8sCommand::Up(a)), .. }) = cli else { panic!("{cli:?}") };
        assert_eq!((a.nodes, a.cidr.map(|c| c.to_string()), a.size), (Some(3), Some("10.30.0.0/16".into()), 4));
        assert!(up(&["--nodes", "1", "--cidr", "10.30.0.0"]).is_err(), "a range, not an address");
        let add = Cli::try_parse_from(["zgrid", "k8s", "add-worker", "kube", "--size", "2"]);
        let Ok(Cli { command: Command::K8s(K8sCommand::AddWorker { name, node, size }), .. }) = add else {
            panic!("{add:?}")
        };
        assert_eq!((name.as_str(), node, size), ("kube", None, Some(2)));
    }
}
