//! `zgrid bench k8s`: on a devnet of this machine, how long `zgrid k8s up` takes until every VM
//! of the cluster is a Ready node, for clusters of one master and some workers, and the memory
//! qemu holds for the master and for a worker once the cluster is up. The accelerator (KVM or
//! TCG) is named with the figures.
//!
//! `k8s up` returns once every VM's node reported it provisioned, which a node does only when
//! the guest's `zgrid-k8s` saw its own Kubernetes node Ready; this machine is not joined to the
//! cluster's network, so the time includes no kubeconfig round trip. Each cluster is removed
//! with `zgrid k8s down` before the next.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use zgrid_devnet::{Node, NodeOptions};

use super::vm::{ImageGrid, qemu_rss_kib, result_data, ssh_key};
use crate::config::Ctx;
use crate::output;

/// How long a node may take over one VM (the node's own limit on a Kubernetes VM is 40 minutes).
const STEP_LIMIT: Duration = Duration::from_secs(45 * 60);

pub async fn run(ctx: &Ctx, vms: Vec<usize>, size: u8, image: Option<PathBuf>) -> Result<()> {
    if vms.is_empty() || vms.contains(&0) {
        bail!("--vms takes cluster sizes of at least 1, e.g. --vms 1 3");
    }
    let report = tokio::task::spawn_blocking(move || measure(&vms, size, image)).await??;
    if ctx.json {
        return output::json(&report);
    }
    print(&report);
    Ok(())
}

fn measure(counts: &[usize], size: u8, image: Option<PathBuf>) -> Result<Value> {
    let ImageGrid { devnet, me, url, image, work, .. } = ImageGrid::start("k8s", image, "k8s-image")?;
    let public = format!("{}.pub", ssh_key(work.path())?.display());
    // One node per VM of the largest cluster, so every VM has a node of its own.
    let options = NodeOptions { step_timeout: STEP_LIMIT, ..NodeOptions::default() };
    let nodes: Vec<Node> = (0..counts.iter().copied().max().unwrap_or(1))
        .map(|_| devnet.add_node(options.clone()))
        .collect::<Result<_>>()?;
    let nodes: HashMap<&str, &Node> = nodes.iter().map(|n| (n.id(), n)).collect();
    let mut clusters = Vec::new();
    for (n, &count) in counts.iter().enumerate() {
        let name = format!("bench{n}");
        let wg = work.path().join(format!("{name}.conf"));
        let vms = count.to_string();
        let size_arg = size.to_string();
        let mut args = vec!["k8s", "up", "--name", &name, "--nodes", &vms, "--size", &size_arg, "--flist", &url];
        args.extend(["--ssh-key", &public, "--duration", "2h", "--wg-config", wg.to_str().context("path")?]);
        let started = Instant::now();
        let up = me.json(&args)?;
        let ready = started.elapsed();
        let cluster = &up["cluster"];
        let rss = |vm: &Value| -> Result<u64> {
            let node = vm["node_id"].as_str().and_then(|id| nodes.get(id)).context("a VM on an unknown node")?;
            qemu_rss_kib(node, vm["workload_id"].as_str().context("a VM without a workload id")?)
        };
        let master_rss = rss(&cluster["master"])?;
        let worker_rss = match cluster["workers"].as_array().and_then(|w| w.first()) {
            Some(worker) => Some(rss(worker)?),
            None => None,
        };
        let master = cluster["master"]["workload_id"].as_str().unwrap_or_default();
        let accelerator = result_data(&me, master)?["accelerator"].clone();
        me.json(&["k8s", "down", &name])?;
        clusters.push(json!({
            "vms": count,
            "size": size,
            "ready_s": ready.as_secs_f64(),
            "accelerator": accelerator,
            "master_rss_kib": master_rss,
            "worker_rss_kib": worker_rss,
        }));
    }
    Ok(json!({ "image": image, "clusters": clusters }))
}

fn print(report: &Value) {
    let mib = |v: &Value| v.as_f64().map_or_else(|| "-".to_owned(), |kib| format!("{:.0}", kib / 1024.0));
    println!("Kubernetes image {}", report["image"].as_str().unwrap_or_default());
    let rows: Vec<Vec<String>> = report["clusters"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            vec![
                c["vms"].to_string(),
                c["size"].to_string(),
                c["accelerator"].as_str().unwrap_or("?").to_owned(),
                format!("{:.0}", c["ready_s"].as_f64().unwrap_or_default()),
                mib(&c["master_rss_kib"]),
                mib(&c["worker_rss_kib"]),
            ]
        })
        .collect();
    output::table(&["VMS", "SIZE", "ACCEL", "UP TO READY S", "MASTER RSS MIB", "WORKER RSS MIB"], &rows);
}
