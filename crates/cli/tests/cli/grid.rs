//! A small grid for end-to-end tests, on the devnet library: an explorer process on an underlay
//! bridge, node agents each in their own network namespace, and a registered deployer driving
//! it through the CLI. Everything is stopped and removed on drop, even when a test fails.

use std::time::{Duration, Instant};

use zgrid_devnet::{Devnet, DevnetConfig, Node, NodeOptions};

use crate::common::{ZGRID, zgrid, zgrid_json};

/// Explorer, deployer, farm and a busybox image; nodes are added with [`Grid::node`].
pub struct Grid {
    pub devnet: Devnet,
    pub home: tempfile::TempDir,
    /// A busybox root filesystem, usable as a container's `--flist`.
    pub image: std::path::PathBuf,
    // Dropped last: holds the devnet's state.
    dir: Option<tempfile::TempDir>,
}

impl Drop for Grid {
    /// Never delete the state through a mount a failed cleanup left: keep the directory instead.
    fn drop(&mut self) {
        let Some(dir) = self.dir.take() else { return };
        let path = dir.path().to_string_lossy().into_owned();
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        if mountinfo.lines().filter_map(|l| l.split(' ').nth(4)).any(|m| m.starts_with(&path)) {
            eprintln!("mounts remain under {path}; kept for inspection");
            let _ = dir.keep();
        }
    }
}

impl Grid {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = DevnetConfig::new(ZGRID, dir.path());
        config.log_level = "info,zgrid_node=debug".into();
        let devnet = Devnet::start(config).expect("devnet (needs root, iproute2, util-linux)");
        let home = tempfile::tempdir().unwrap();
        zgrid_json(home.path(), devnet.explorer_url(), &["id", "new", "deployer", "--register"]);
        let set = zgrid(home.path(), devnet.explorer_url(), &["config", "set", "hub", devnet.hub_url()]);
        assert!(set.status.success(), "{}", String::from_utf8_lossy(&set.stderr));
        let image = zgrid_devnet::busybox_rootfs(dir.path()).expect("busybox image");
        Self { devnet, home, image, dir: Some(dir) }
    }

    /// Start a node agent whose provisioning steps time out after `step_timeout_secs`.
    pub fn node(&self, step_timeout_secs: u64) -> Node {
        self.devnet
            .add_node(NodeOptions { step_timeout: Duration::from_secs(step_timeout_secs), ..NodeOptions::default() })
            .expect("node")
    }

    /// Run the CLI as the deployer, expecting success, and parse its JSON.
    pub fn cli(&self, args: &[&str]) -> serde_json::Value {
        zgrid_json(self.home.path(), self.devnet.explorer_url(), args)
    }

    /// Run the CLI as the deployer.
    pub fn cli_raw(&self, args: &[&str]) -> std::process::Output {
        zgrid(self.home.path(), self.devnet.explorer_url(), args)
    }

    /// The CLI as the deployer, to add arguments to and spawn.
    pub fn cli_command(&self) -> std::process::Command {
        zgrid_devnet::cli(std::path::Path::new(ZGRID), self.home.path(), self.devnet.explorer_url())
    }

    /// Deploy a container running `entrypoint` from the busybox image on `node`; extra flags follow.
    pub fn deploy(&self, node: &Node, entrypoint: &str, extra: &[&str]) -> serde_json::Value {
        self.deploy_from(node, &self.image, entrypoint, extra)
    }

    /// Deploy a container running `entrypoint` from `image` on `node`; extra flags follow.
    pub fn deploy_from(
        &self,
        node: &Node,
        image: &std::path::Path,
        entrypoint: &str,
        extra: &[&str],
    ) -> serde_json::Value {
        let mut args = vec!["deploy", "container", "--node", node.id(), "--flist", image.to_str().unwrap()];
        args.extend(["--entrypoint", entrypoint, "--memory", "32", "--disk", "64"]);
        args.extend_from_slice(extra);
        self.cli(&args)
    }

    /// The explorer's record of workload `id`.
    pub fn record(&self, id: &str) -> Option<serde_json::Value> {
        let all = self.cli(&["live", "--state", "all", "--size", "100"]);
        all["items"].as_array()?.iter().find(|r| r["workload"]["payload"]["id"] == id).cloned()
    }

    /// Wait until workload `id` has a result in `state`; returns the record. On failure the
    /// panic shows the record and `node`'s log.
    pub fn wait_for_result(&self, node: &Node, id: &str, state: &str, limit: Duration) -> serde_json::Value {
        wait_until(limit, || self.record(id).filter(|r| r["result"]["payload"]["state"] == state)).unwrap_or_else(
            || panic!("workload {id} never reported {state}: {:?}\nagent log:\n{}", self.record(id), node.log()),
        )
    }
}

/// Poll `f` every 100 ms until it returns `Some`, for at most `limit`.
pub fn wait_until<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(v) = f() {
            return Some(v);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// The id of a deployed workload from `zgrid --json deploy` output.
pub fn id_of(deployed: &serde_json::Value) -> String {
    deployed["workload"]["payload"]["id"].as_str().expect("a workload id").to_string()
}
