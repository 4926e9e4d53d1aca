//! Kubernetes' control plane on loopback (`zgrid_devnet::kubernetes`): two at once, each ready,
//! taking a pod straight away, running a Deployment's controllers and the scheduler (the pods
//! stay Pending: there are no nodes), and nothing left running once they are dropped; and a
//! start that fails says which process died and why.
//!
//! Needs Kubernetes' server binaries (`scripts/k8s-build`, or `ZGRID_K8S_BIN`), Debian's
//! `etcd-server` and a `kubectl`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use zgrid_devnet::kubernetes::{ControlPlane, binaries};

/// How long a Deployment's pods get to appear.
const PODS_LIMIT: Duration = Duration::from_secs(30);

/// What a command printed, both streams, for failure messages.
fn said(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Run kubectl with `args` against `plane`, expecting success; what it printed.
fn kubectl(plane: &ControlPlane, args: &[&str]) -> String {
    let out = plane.kubectl(args).output().expect("kubectl runs");
    assert!(out.status.success(), "kubectl {} failed:\n{}", args.join(" "), said(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The processes whose command line mentions `dir`.
fn processes_using(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy().into_owned();
    let entries = std::fs::read_dir("/proc").unwrap().flatten();
    let cmdlines = entries.filter_map(|e| std::fs::read(e.path().join("cmdline")).ok());
    cmdlines.map(|c| String::from_utf8_lossy(&c).replace('\0', " ")).filter(|c| c.contains(&dir)).collect()
}

#[test]
fn two_control_planes_schedule_nothing_and_leave_nothing() {
    let bin = binaries().unwrap();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let started = Instant::now();
    let planes: Vec<ControlPlane> = std::thread::scope(|s| {
        let starts: Vec<_> = dirs.iter().map(|dir| s.spawn(|| ControlPlane::start(dir.path(), &bin))).collect();
        starts.into_iter().map(|start| start.join().unwrap().unwrap_or_else(|e| panic!("{e:#}"))).collect()
    });
    eprintln!("both control planes started in {:?}", started.elapsed());
    assert_ne!(planes[0].server(), planes[1].server());
    for plane in &planes {
        assert_eq!(kubectl(plane, &["get", "--raw", "/readyz"]), "ok");
        // Straight away: the service account's token is there (else "no API token found").
        kubectl(plane, &["run", "solo", "--image=x", "--restart=Never"]);
        kubectl(plane, &["create", "deployment", "web", "--image=x", "--replicas=2"]);
    }
    for plane in &planes {
        let deadline = Instant::now() + PODS_LIMIT;
        // Pending, and found unschedulable by the scheduler.
        let states = "--output=jsonpath={range .items[*]}{.status.phase}/{.status.conditions[0].reason} {end}";
        loop {
            let now = kubectl(plane, &["get", "pods", "--selector=app=web", states]);
            if now == "Pending/Unschedulable Pending/Unschedulable" {
                break;
            }
            assert!(Instant::now() < deadline, "the Deployment's pods are {now:?} after {PODS_LIMIT:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
        assert!(plane.log("kube-apiserver").contains("Serving securely"), "the API server's log is empty");
    }
    drop(planes);
    for dir in &dirs {
        assert_eq!(processes_using(dir.path()), Vec::<String>::new(), "left running");
        assert!(dir.path().join("etcd/member").is_dir(), "etcd's data is gone");
    }
}

#[test]
fn a_control_plane_whose_api_server_dies_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    for name in ["kube-apiserver", "kube-controller-manager", "kube-scheduler"] {
        let script = bin.join(name);
        std::fs::write(&script, format!("#!/bin/sh\necho {name} cannot start: no reason >&2\nexit 3\n")).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let started = Instant::now();
    let error = format!("{:#}", ControlPlane::start(&dir.path().join("state"), &bin).unwrap_err());
    assert!(error.contains("kube-apiserver exited"), "{error}");
    assert!(error.contains("kube-apiserver cannot start: no reason"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(10), "it took {:?} to fail", started.elapsed());
    assert_eq!(processes_using(dir.path()), Vec::<String>::new(), "left running");
}
