//! Kubernetes clusters end to end: the grid's Kubernetes image (`scripts/k8s-image`: Kubernetes
//! built from Debian's source, with Debian's etcd, containerd and CNI plugins) pushed to the
//! devnet's hub and booted as kubernetes workloads by real node agents, a master and a worker on
//! two nodes joined over the private network's WireGuard, driven from a laptop namespace.
//!
//! Needs what the VM tests need, and the image tree of `scripts/k8s-image --tree` (`scripts/test`
//! builds it; the first build of Kubernetes takes about ten minutes).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::grid::{Grid, id_of};
use crate::hub::push;
use crate::network::{Laptop, create, host};
use crate::vm::{ssh, ssh_key, vm_node};

/// From boot to a Ready node, under TCG.
const READY_LIMIT: Duration = Duration::from_secs(40 * 60);

/// The Kubernetes image's root tree, built by `scripts/k8s-image --tree` (cached between runs).
fn kubernetes_tree() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/k8s-image");
    let out = Command::new(&script).arg("--tree").output().expect("scripts/k8s-image");
    assert!(out.status.success(), "scripts/k8s-image --tree failed:\n{}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

#[test]
fn a_master_and_a_worker_make_a_cluster() {
    let grid = Grid::new();
    let (a, b) = (vm_node(&grid, None), vm_node(&grid, None));
    let dir = tempfile::tempdir().unwrap();
    let url = push(&grid, dir.path(), &kubernetes_tree(), "zgrid-kubernetes.flist")["url"].as_str().unwrap().to_owned();
    create(&grid, "kube", "10.72.0.0/16", &[&a, &b]);
    let (laptop, _) = Laptop::join(&grid, "kube", &a);
    let key = ssh_key(dir.path());
    let public = format!("{}.pub", key.display());
    let master_ip = host(&grid, "kube", &a, 2);
    let mut args = vec!["deploy", "kubernetes", "--node", a.id(), "--flist", &url, "--network", "kube"];
    args.extend(["--ip", &master_ip, "--ssh-key", &public, "--secret", "s3cret", "--duration", "2h", "--size", "2"]);
    let master = id_of(&grid.cli(&args));
    let record = grid.wait_for_result(&a, &master, "ok", READY_LIMIT);
    eprintln!("master: {record}");
    let worker_ip = host(&grid, "kube", &b, 2);
    let mut args = vec!["deploy", "kubernetes", "--node", b.id(), "--flist", &url, "--network", "kube"];
    args.extend(["--ip", &worker_ip, "--ssh-key", &public, "--secret", "s3cret", "--duration", "2h"]);
    args.extend(["--master-ip", &master_ip]);
    let worker = id_of(&grid.cli(&args));
    let record = grid.wait_for_result(&b, &worker, "ok", READY_LIMIT);
    eprintln!("worker: {record}");
    let out = ssh(&laptop, &key, &master_ip, "kubectl get nodes -o wide; journalctl -u zgrid-k8s --no-pager | tail -20");
    eprintln!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if std::env::var_os("ZGRID_TEST_HOLD").is_some() {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
