//! `zgrid bench vm`: on a devnet of this machine, how long a VM takes from submission until its
//! guest answers SSH, with the node's chunk cache empty (cold) and with a VM of the same image
//! already booted on the node (warm); the image bytes the hub served for each; and the memory
//! qemu holds per VM (its resident set). The accelerator (KVM or TCG) is named with the figures.
//!
//! The image is the Debian VM image of `scripts/vm-image` (systemd, sshd). SSH is tried from
//! the network's namespace on the node, every 200 ms, with the key the VM was deployed with.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use zgrid_devnet::{Devnet, DevnetConfig, Node, NodeOptions};

use super::flist::Deployer;
use super::run_tool;
use crate::config::Ctx;
use crate::output;

/// How long one VM may take to answer SSH.
const LIMIT: Duration = Duration::from_secs(600);
/// The network the VMs join.
const NETWORK: &str = "bench";

pub async fn run(ctx: &Ctx, runs: usize, image: Option<PathBuf>) -> Result<()> {
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    let report = tokio::task::spawn_blocking(move || measure(runs, image)).await??;
    if ctx.json {
        return output::json(&report);
    }
    print(&report);
    Ok(())
}

fn measure(runs: usize, image: Option<PathBuf>) -> Result<Value> {
    let ImageGrid { devnet, me, url, image, pushed, work } = ImageGrid::start("vm", image, "vm-image")?;
    let key = ssh_key(work.path())?;
    let mut samples = Vec::new();
    for run in 0..runs {
        // A new node each run: its chunk cache starts empty.
        let options = NodeOptions { step_timeout: LIMIT, ..NodeOptions::default() };
        let node = devnet.add_node(options)?;
        let name = format!("{NETWORK}{run}");
        me.create_network(&name, "10.80.0.0/16", &[&node])?;
        let cold = boot(&me, &node, &url, &name, 10, &key)?;
        let warm = boot(&me, &node, &url, &name, 11, &key)?;
        samples.push(json!({ "cold": cold, "warm": warm }));
    }
    let files = super::flist::file_bytes(&image)?;
    Ok(json!({ "image": image, "image_bytes": files, "flist": pushed["stored"], "runs": samples }))
}

/// Deploy a VM of `url` as host `n` of network `name` on `node`, wait until SSH answers, and
/// measure it; the VM is deleted again.
fn boot(me: &Deployer, node: &Node, url: &str, name: &str, n: u8, key: &Path) -> Result<Value> {
    let shown = me.json(&["network", "show", "--name", name])?;
    let member = shown["members"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["node_id"] == node.id()))
        .with_context(|| format!("network {name} has no member on node {}", node.id()))?;
    let subnet: ipnet::Ipv4Net = member["subnet"].as_str().context("no subnet")?.parse()?;
    let resource = member["record"]["workload"]["payload"]["id"].as_str().context("no network resource")?;
    let ip = std::net::Ipv4Addr::from(u32::from(subnet.network()) + u32::from(n)).to_string();
    let public = format!("{}.pub", key.display());
    let (_, before) = me.hub_served()?;
    let started = Instant::now();
    let args = ["deploy", "vm", "--node", node.id(), "--flist", url, "--network", name, "--ip", &ip];
    let deployed = me.json(&[&args[..], &["--ssh-key", &public, "--memory", "1024", "--duration", "1h"]].concat())?;
    let id = deployed["workload"]["payload"]["id"].as_str().context("`zgrid deploy` printed no workload id")?;
    let netns = format!("zgn-{resource}");
    loop {
        let out = Command::new("ip")
            .args(["netns", "exec", &netns, "ssh", "-i"])
            .arg(key)
            .args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes"])
            .args(["-o", "ConnectTimeout=2", &format!("root@{ip}"), "true"])
            .output()?;
        if out.status.success() {
            break;
        }
        if started.elapsed() > LIMIT {
            bail!("VM {id} did not answer SSH in {LIMIT:?}: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let ssh_ready = started.elapsed();
    let (_, after) = me.hub_served()?;
    let data = result_data(me, id)?;
    let rss_kib = qemu_rss_kib(node, id)?;
    run_tool(me.cli().args(["delete", id]), "zgrid delete", "zgrid")?;
    Ok(json!({
        "ssh_ready_s": ssh_ready.as_secs_f64(),
        "boot_ms": data["boot_ms"],
        "accelerator": data["accelerator"],
        "hub_bytes": after - before,
        "qemu_rss_kib": rss_kib,
    }))
}

/// A devnet (explorer and hub, no nodes yet) with a registered deployer whose hub is the
/// devnet's, and a VM image pushed there.
pub(super) struct ImageGrid {
    /// The grid.
    pub devnet: Devnet,
    /// The deployer.
    pub me: Deployer,
    /// The image's flist URL on the hub.
    pub url: String,
    /// The image's root tree.
    pub image: PathBuf,
    /// What `zgrid flist push` said of the image.
    pub pushed: Value,
    /// Where all of it lives (removed last: fields drop in order).
    pub work: tempfile::TempDir,
}

impl ImageGrid {
    /// Start one for benchmark `what`, pushing `image`, or else the tree `scripts/<script>
    /// --tree` builds.
    pub(super) fn start(what: &str, image: Option<PathBuf>, script: &str) -> Result<Self> {
        let image = match image {
            Some(dir) => dir,
            None => image_tree(script)?,
        };
        let work = tempfile::Builder::new().prefix(&format!("zgrid-bench-{what}-")).tempdir()?;
        let zgrid = std::env::current_exe().context("cannot find the zgrid binary")?;
        let mut config = DevnetConfig::new(&zgrid, work.path().join("devnet"));
        config.log_level = "warn".into();
        let devnet = Devnet::start(config)?;
        let me = Deployer::register(zgrid, work.path().join("deployer"), &devnet)?;
        let pushed = me.push(&image, &work.path().join("image"), &format!("bench-{what}.flist"))?;
        let url = pushed["url"].as_str().context("`zgrid flist push` printed no url")?.to_owned();
        Ok(Self { devnet, me, url, image, pushed, work })
    }
}

/// The data of the latest result the node reported for workload `id` (null before any).
pub(super) fn result_data(me: &Deployer, id: &str) -> Result<Value> {
    let all = me.json(&["live", "--state", "all", "--size", "100"])?;
    let record = all["items"].as_array().and_then(|a| a.iter().find(|r| r["workload"]["payload"]["id"] == id));
    Ok(record.map_or(Value::Null, |r| r["result"]["payload"]["data"].clone()))
}

/// The resident memory, in KiB, of the qemu running VM `id` on `node`.
pub(super) fn qemu_rss_kib(node: &Node, id: &str) -> Result<u64> {
    let pid_file = node.state_dir().join("vms/vms").join(id).join("qemu.pid");
    let pid = std::fs::read_to_string(&pid_file).with_context(|| format!("cannot read {}", pid_file.display()))?;
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim()))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("qemu's status has no VmRSS")
}

/// The image tree that `scripts/<script> --tree` builds (cached between runs).
pub(super) fn image_tree(script: &str) -> Result<PathBuf> {
    let script = [format!("scripts/{script}"), format!("/usr/share/zgrid/scripts/{script}")]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .with_context(|| format!("no scripts/{script} here: run from the repository, or pass --image DIR"))?;
    let what = format!("{} --tree", script.display());
    let tree = run_tool(Command::new(&script).arg("--tree"), &what, "debootstrap")?;
    Ok(PathBuf::from(tree.trim()))
}

/// An SSH key pair in `dir` made with `ssh-keygen`; the private key's path.
pub(super) fn ssh_key(dir: &Path) -> Result<PathBuf> {
    let key = dir.join("id_ed25519");
    run_tool(
        Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&key),
        "ssh-keygen",
        "openssh-client",
    )?;
    Ok(key)
}

fn print(report: &Value) {
    let mib = |v: &Value| format!("{:.1}", v.as_f64().unwrap_or_default() / 1048576.0);
    println!(
        "VM image {}: {} MiB of files, {} MiB stored on the hub",
        report["image"].as_str().unwrap_or_default(),
        mib(&report["image_bytes"]),
        mib(&report["flist"]["new_bytes"])
    );
    let rows: Vec<Vec<String>> = report["runs"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|run| {
            ["cold", "warm"].map(|which| {
                let r = &run[which];
                vec![
                    which.to_owned(),
                    r["accelerator"].as_str().unwrap_or("?").to_owned(),
                    format!("{:.1}", r["ssh_ready_s"].as_f64().unwrap_or_default()),
                    format!("{:.1}", r["boot_ms"].as_f64().unwrap_or_default() / 1000.0),
                    mib(&r["hub_bytes"]),
                    format!("{:.0}", r["qemu_rss_kib"].as_f64().unwrap_or_default() / 1024.0),
                ]
            })
        })
        .collect();
    output::table(&["START", "ACCEL", "SSH READY S", "INIT S", "HUB MIB", "QEMU RSS MIB"], &rows);
}
