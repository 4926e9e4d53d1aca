//! The devnet: an underlay, an explorer on the host's side of it, a farmer with a farm, and
//! node agents added one by one.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result};

use crate::node::{Node, NodeOptions};
use crate::process::{Server, cli_json};
use crate::underlay::Underlay;

/// Where and how to start a devnet.
#[derive(Debug, Clone)]
pub struct DevnetConfig {
    /// The `zgrid` binary every process runs.
    pub zgrid: PathBuf,
    /// Directory for the explorer's database, logs, the farmer's identity and node state.
    pub dir: PathBuf,
    /// `ZGRID_LOG` for the explorer and the nodes.
    pub log_level: String,
    /// The explorer's database (`--db`, e.g. a `postgres://` URL other explorers share);
    /// `<dir>/explorer.sqlite` without.
    pub database: Option<String>,
}

impl DevnetConfig {
    /// Run `zgrid` at `zgrid`, keeping state in `dir`, logging at `info`.
    pub fn new(zgrid: impl Into<PathBuf>, dir: impl Into<PathBuf>) -> Self {
        Self { zgrid: zgrid.into(), dir: dir.into(), log_level: "info".into(), database: None }
    }
}

/// A running devnet. Dropping it stops the explorer and removes the underlay once every
/// [`Node`] made from it is dropped too.
#[derive(Debug)]
pub struct Devnet {
    config: DevnetConfig,
    prefix: String,
    underlay: Arc<Underlay>,
    explorer: Server,
    hub: Server,
    farm: u64,
    nodes_made: AtomicU32,
}

impl Devnet {
    /// Create the underlay, start the explorer and a hub (data in `<dir>/hub`) on its host
    /// address, and register a farmer (identity `farmer` in `<dir>/farmer`) with a farm.
    pub fn start(config: DevnetConfig) -> Result<Self> {
        std::fs::create_dir_all(&config.dir).with_context(|| format!("cannot create {}", config.dir.display()))?;
        // Container root is an unprivileged host user (user namespaces) that resolves paths
        // through it into the nodes' state directories.
        let mode = std::fs::metadata(&config.dir)?.permissions().mode() | 0o111;
        std::fs::set_permissions(&config.dir, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot open {} to other users", config.dir.display()))?;
        let prefix = format!("zg{:06x}", rand::random::<u32>() & 0xff_ffff);
        let underlay = Underlay::create(&prefix)?;
        let listen = (underlay.gateway(), 0).into();
        let explorer = start_explorer(&config, listen)?;
        let hub_data = config.dir.join("hub");
        let hub = Server::start(
            &config.zgrid,
            "hub serve",
            listen,
            &["--data".as_ref(), hub_data.as_os_str()],
            &config.dir.join("hub.log"),
            &config.log_level,
        )?;
        let home = config.dir.join("farmer");
        cli_json(&config.zgrid, &home, &explorer.url, &["id", "new", "farmer", "--register"])?;
        let farm = cli_json(&config.zgrid, &home, &explorer.url, &["farm", "create", "devnet"])?["id"]
            .as_u64()
            .context("`zgrid farm create` printed no farm id")?;
        Ok(Self { config, prefix, underlay, explorer, hub, farm, nodes_made: AtomicU32::new(0) })
    }

    /// The explorer's URL (on the underlay, reachable from the host and every node).
    pub fn explorer_url(&self) -> &str {
        &self.explorer.url
    }

    /// The hub's URL (on the underlay, reachable from the host and every node).
    pub fn hub_url(&self) -> &str {
        &self.hub.url
    }

    /// The hub's data directory (chunks in `chunks/`).
    pub fn hub_data(&self) -> PathBuf {
        self.config.dir.join("hub")
    }

    /// The farm nodes join.
    pub fn farm(&self) -> u64 {
        self.farm
    }

    /// The explorer's SQLite database file (unless [`DevnetConfig::database`] names another).
    pub fn database(&self) -> PathBuf {
        self.config.dir.join("explorer.sqlite")
    }

    /// The underlay the nodes are attached to.
    pub fn underlay(&self) -> &Arc<Underlay> {
        &self.underlay
    }

    /// The directory holding the devnet's state.
    pub fn dir(&self) -> &Path {
        &self.config.dir
    }

    /// SIGKILL the explorer (nodes keep running and retry).
    pub fn kill_explorer(&mut self) {
        self.explorer.kill();
    }

    /// Start the explorer again on the same database and address (after [`Devnet::kill_explorer`]).
    pub fn restart_explorer(&mut self) -> Result<()> {
        self.explorer.kill();
        self.explorer = start_explorer(&self.config, self.explorer.listen)?;
        Ok(())
    }

    /// Start a node agent in a new network namespace on the underlay and wait until it has
    /// registered with the explorer.
    pub fn add_node(&self, options: NodeOptions) -> Result<Node> {
        let n = self.nodes_made.fetch_add(1, Ordering::Relaxed) + 1;
        let netns = self.underlay.add_netns(&format!("n{n}"))?;
        let state_dir = self.config.dir.join(format!("node{n}"));
        let cgroup_parent = format!("{}-n{n}", self.prefix);
        Node::start(
            crate::node::Launch {
                zgrid: self.config.zgrid.clone(),
                explorer: options.explorers.clone().unwrap_or_else(|| self.explorer.url.clone()),
                farm: self.farm,
                farmer_home: self.config.dir.join("farmer"),
                log_level: self.config.log_level.clone(),
                hostname: format!("node{n}"),
                state_dir,
                cgroup_parent,
                options,
            },
            netns,
        )
    }
}

/// `zgrid explorer` on the devnet's database.
fn start_explorer(config: &DevnetConfig, listen: std::net::SocketAddr) -> Result<Server> {
    let db = match &config.database {
        Some(url) => url.into(),
        None => config.dir.join("explorer.sqlite").into_os_string(),
    };
    let args = ["--db".as_ref(), db.as_os_str()];
    Server::start(&config.zgrid, "explorer", listen, &args, &config.dir.join("explorer.log"), &config.log_level)
}
