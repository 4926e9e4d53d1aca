//! `zgrid kubelet` end to end: a real Kubernetes control plane (etcd, kube-apiserver,
//! controller-manager and scheduler 1.20, built from Debian's source, on loopback) schedules a
//! Deployment onto the virtual node, and its Pods run as busybox containers on two real grid
//! nodes, on the deployer's private network. Driven with kubectl, checked on the explorer.

use std::collections::HashSet;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::Value;
use zgrid_devnet::kubernetes::ControlPlane;

use crate::grid::{Grid, wait_until};

const LIMIT: Duration = Duration::from_secs(180);

/// The seed's Deployment (env, tcpSocket readiness and liveness probes, nodeSelector and
/// toleration) with a busybox web server as its one container.
fn deployment(image: &Path, replicas: u32) -> String {
    serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": "web" },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": {
                    "restartPolicy": "Always",
                    "containers": [{
                        "name": "web",
                        "image": image,
                        "command": ["/bin/sh", "-c", "echo ok > /scratch/x; echo \"foo is $foo, token is $TOKEN, scratch $(cat /scratch/x)\"; exec httpd -f -p 8080"],
                        "volumeMounts": [{ "name": "scratch", "mountPath": "/scratch" }],
                        "ports": [{ "containerPort": 8080, "name": "http" }],
                        "env": [
                            { "name": "foo", "value": "bar" },
                            { "name": "TOKEN", "valueFrom": { "secretKeyRef": { "name": "web", "key": "token" } } }
                        ],
                        "resources": { "requests": { "memory": "64Mi", "cpu": "100m" } },
                        "readinessProbe": { "tcpSocket": { "port": 8080 }, "periodSeconds": 1 },
                        "livenessProbe": { "tcpSocket": { "port": "http" }, "initialDelaySeconds": 2, "periodSeconds": 2 }
                    }],
                    "volumes": [{ "name": "scratch", "emptyDir": { "sizeLimit": "64Mi" } }],
                    "nodeSelector": {
                        "kubernetes.io/role": "agent",
                        "beta.kubernetes.io/os": "linux",
                        "type": "virtual-kubelet"
                    },
                    "tolerations": [{ "key": "virtual-kubelet.io/provider", "operator": "Exists" }]
                }
            }
        }
    })
    .to_string()
}

/// A bare Pod for the virtual node with `container` as its (only) container.
fn pod(name: &str, containers: Value) -> String {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name },
        "spec": {
            "containers": containers,
            "nodeSelector": { "type": "virtual-kubelet" },
            "tolerations": [{ "key": "virtual-kubelet.io/provider", "operator": "Exists" }]
        }
    })
    .to_string()
}

/// `zgrid kubelet` as a child process, SIGKILLed when dropped.
struct Kubelet {
    child: Child,
    log: std::path::PathBuf,
}

impl Kubelet {
    /// Start `zgrid kubelet` as Node `name` with its API on `port`, its Pods on network `pods`,
    /// logging to `log`.
    fn start(grid: &Grid, cp: &ControlPlane, name: &str, port: u16, log: &Path) -> Self {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
        let child = grid
            .cli_command()
            .args(["kubelet", "--kubeconfig", cp.kubeconfig().to_str().unwrap(), "--node-name", name])
            .args(["--client-ca", cp.kubelet_client_ca().to_str().unwrap()])
            .args(["--port", &port.to_string(), "--lifetime", "3m", "--network", "pods"])
            .env("ZGRID_LOG", "info")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("zgrid kubelet");
        Self { child, log: log.to_owned() }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Ask it to stop, as a service manager does (SIGTERM); how it ended, if it did in 20 s.
    fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        wait_until(Duration::from_secs(20), || self.child.try_wait().unwrap())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Run kubectl against `cp`, expecting success; returns stdout.
fn kubectl(cp: &ControlPlane, args: &[&str]) -> String {
    let out = cp.kubectl(args).output().expect("kubectl");
    assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run kubectl against `cp`: stdout when it succeeds.
fn try_kubectl(cp: &ControlPlane, args: &[&str]) -> Option<String> {
    let out = cp.kubectl(args).output().expect("kubectl");
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `kubectl apply` of a manifest.
fn apply(cp: &ControlPlane, manifest: &str) {
    let mut child = cp.kubectl(["apply", "-f", "-"]).stdin(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), manifest.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success(), "kubectl apply of {manifest}");
}

fn pods(cp: &ControlPlane, selector: &str) -> Vec<Value> {
    let listed: Value = serde_json::from_str(&kubectl(cp, &["get", "pods", "-l", selector, "-o", "json"])).unwrap();
    listed["items"].as_array().cloned().unwrap_or_default()
}

fn one_pod(cp: &ControlPlane, name: &str) -> Value {
    serde_json::from_str(&kubectl(cp, &["get", "pod", name, "-o", "json"])).unwrap()
}

fn is_ready(pod: &Value) -> bool {
    pod["metadata"]["deletionTimestamp"].is_null()
        && pod["status"]["conditions"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

/// Wait until exactly `n` Pods of `app=web` exist and all are Running and Ready.
fn wait_for_ready(cp: &ControlPlane, kubelet: &Kubelet, n: usize) -> Vec<Value> {
    wait_until(LIMIT, || {
        let pods = pods(cp, "app=web");
        (pods.len() == n && pods.iter().all(is_ready)).then_some(pods)
    })
    .unwrap_or_else(|| {
        let described =
            cp.kubectl(["describe", "pods"]).output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        panic!("never {n} ready web Pods:\n{}\nkubelet log:\n{}", described.unwrap_or_default(), kubelet.log())
    })
}

/// The deployer's active container workloads the kubelet made.
fn pod_workloads(grid: &Grid) -> Vec<Value> {
    kubelet_workloads(grid).into_iter().filter(|r| r["workload"]["payload"]["data"]["type"] == "container").collect()
}

/// The deployer's active workloads (containers and volumes) the kubelet made.
fn kubelet_workloads(grid: &Grid) -> Vec<Value> {
    let live = grid.cli(&["live", "--size", "100"]);
    live["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["workload"]["payload"]["metadata"].as_str().is_some_and(|m| m.contains("\"kubelet\"")))
        .cloned()
        .collect()
}

fn workload_of(pod: &Value) -> String {
    let id = pod["status"]["containerStatuses"][0]["containerID"].as_str().expect("a containerID");
    id.strip_prefix("zgrid://").expect("a zgrid container id").to_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn a_deployment_runs_scales_survives_a_provider_crash_and_goes_away_on_the_grid() {
    let grid = Grid::new();
    let (a, b) = (grid.node(60), grid.node(60));
    crate::network::create(&grid, "pods", "10.191.0.0/16", &[&a, &b]);
    let dir = tempfile::tempdir().unwrap();
    let bin = zgrid_devnet::kubernetes::binaries().expect("Kubernetes binaries (scripts/k8s-build)");
    let cp = ControlPlane::start(&dir.path().join("k8s"), &bin).expect("control plane");
    let name = format!("vk-{:08x}", rand::random::<u32>());
    let port = free_port();
    let log = dir.path().join("kubelet.log");
    let mut kubelet = Kubelet::start(&grid, &cp, &name, port, &log);

    // The virtual node registers Ready, labelled and tainted for Pods that ask for it.
    let ready = r#"{.status.conditions[?(@.type=="Ready")].status}"#;
    let jsonpath = format!("jsonpath={ready}");
    wait_until(LIMIT, || (try_kubectl(&cp, &["get", "nodes", &name, "-o", &jsonpath])? == "True").then_some(()))
        .unwrap_or_else(|| panic!("the virtual node never turned Ready:\n{}", kubelet.log()));
    let node: Value = serde_json::from_str(&kubectl(&cp, &["get", "node", &name, "-o", "json"])).unwrap();
    assert_eq!(node["metadata"]["labels"]["type"], "virtual-kubelet");
    assert_eq!(node["spec"]["taints"][0]["key"], "virtual-kubelet.io/provider");

    // One replica: a grid container with the Pod's environment, at its private address.
    kubectl(&cp, &["create", "secret", "generic", "web", "--from-literal=token=s3cr3t-value"]);
    apply(&cp, &deployment(&grid.image, 1));
    let first = wait_for_ready(&cp, &kubelet, 1).remove(0);
    let ip = first["status"]["podIP"].as_str().expect("a Pod IP");
    assert!(ip.starts_with("10.191."), "the Pod's IP {ip} is not on the network");
    let workloads = pod_workloads(&grid);
    assert_eq!(workloads.len(), 1, "{workloads:?}");
    let container = &workloads[0]["workload"]["payload"]["data"];
    assert_eq!(container["environment"]["foo"], "bar");
    // The Secret's value is sealed to the node: the explorer never sees it.
    assert!(container["secret_environment"]["TOKEN"].as_str().is_some_and(|v| v.starts_with("v1:")), "{container}");
    assert!(!workloads[0].to_string().contains("s3cr3t-value"));

    // kubectl logs, through the virtual node's kubelet API and the grid node's log API; -f
    // streams and stays open.
    let first_name = first["metadata"]["name"].as_str().unwrap();
    let said = "foo is bar, token is s3cr3t-value, scratch ok";
    wait_until(LIMIT, || try_kubectl(&cp, &["logs", first_name])?.contains(said).then_some(())).unwrap_or_else(|| {
        let out = cp.kubectl(["logs", first_name]).output().unwrap();
        let shown = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        panic!("kubectl logs never showed {said:?}, but {shown}\n{}", kubelet.log())
    });
    let mut follow = cp.kubectl(["logs", "-f", first_name]).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(follow.stdout.take().unwrap()), &mut line).unwrap();
    assert!(line.contains(said), "{line:?}");
    assert!(follow.try_wait().unwrap().is_none(), "kubectl logs -f ended instead of following");
    let _ = follow.kill();
    let _ = follow.wait();
    // Only the API server (its client certificate) may use the kubelet API.
    let url = format!("https://127.0.0.1:{port}/containerLogs/default/{first_name}/web");
    let stranger = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let client = reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap();
        client.get(&url).send().await
    });
    assert!(stranger.is_err(), "a client without a certificate read the logs: {stranger:?}");
    assert_eq!(container["probes"]["readiness"]["action"]["type"], "tcp_socket");
    assert_eq!(workloads[0]["workload"]["payload"]["id"], workload_of(&first));
    // Its emptyDir is a grid volume on the same node, mounted where the Pod says.
    let mount = &container["volumes"][0];
    assert_eq!(mount["mountpoint"], "/scratch", "{container}");
    let volume = grid.record(mount["volume_id"].as_str().unwrap()).unwrap();
    assert_eq!(volume["workload"]["payload"]["data"]["size"], 64);
    assert_eq!(volume["workload"]["payload"]["node_id"], workloads[0]["workload"]["payload"]["node_id"]);

    // Three replicas across both grid nodes.
    kubectl(&cp, &["scale", "deployment", "web", "--replicas=3"]);
    let three = wait_for_ready(&cp, &kubelet, 3);
    let workloads = pod_workloads(&grid);
    assert_eq!(workloads.len(), 3);
    let nodes: HashSet<&str> =
        workloads.iter().map(|w| w["workload"]["payload"]["node_id"].as_str().unwrap()).collect();
    assert_eq!(nodes.len(), 2, "three Pods on one node: {workloads:?}");

    // SIGKILL the provider; a Pod deleted meanwhile is removed on the grid once it is back,
    // and the others keep running: not restarted, not duplicated.
    kubelet.kill();
    let (gone, kept) = (&three[0], &three[1..]);
    let gone_name = gone["metadata"]["name"].as_str().unwrap();
    kubectl(&cp, &["delete", "pod", gone_name, "--wait=false"]);
    let kept_ids: HashSet<String> = kept.iter().map(workload_of).collect();
    let mut kubelet = Kubelet::start(&grid, &cp, &name, port, &log);
    let after = wait_for_ready(&cp, &kubelet, 3);
    assert!(after.iter().all(|p| p["metadata"]["name"] != gone_name));
    let gone_id = workload_of(gone);
    let record = grid.record(&gone_id).unwrap();
    assert_ne!(record["state"], "active", "the deleted Pod's workload is still active: {record}");
    for pod in &after {
        if kept_ids.contains(&workload_of(pod)) {
            assert_eq!(pod["status"]["containerStatuses"][0]["restartCount"], 0, "{pod}");
        }
    }
    let workloads = pod_workloads(&grid);
    assert_eq!(workloads.len(), 3, "duplicated or lost: {workloads:?}");
    let live_ids: HashSet<String> =
        workloads.iter().map(|w| w["workload"]["payload"]["id"].as_str().unwrap().to_owned()).collect();
    assert!(kept_ids.is_subset(&live_ids), "a surviving Pod got a new container: {kept_ids:?} vs {live_ids:?}");

    // kubectl exec, through the kubelet API and the grid node's exec API: output, exit code
    // and stdin, in a Pod on the private network (its container keeps its user namespace).
    let networked = after[0]["metadata"]["name"].as_str().unwrap();
    let out = cp
        .kubectl([
            "exec",
            networked,
            "--",
            "sh",
            "-c",
            "echo out $((6*7)) on $(cat /sys/class/net/eth0/operstate); echo err >&2; exit 3",
        ])
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(3), "{stdout} {stderr}\n{}", kubelet.log());
    assert_eq!(stdout.trim(), "out 42 on up");
    assert!(stderr.contains("err"), "{stderr}");
    let mut cat = cp
        .kubectl(["exec", "-i", networked, "--", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut cat.stdin.take().unwrap(), b"hello from stdin\n").unwrap();
    let echoed = cat.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&echoed.stdout), "hello from stdin\n");

    // What the grid cannot run says why.
    let free: Vec<u64> = grid.cli(&["nodes"])["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["total"]["mru"].as_u64().unwrap() - n["used"]["mru"].as_u64().unwrap())
        .collect();
    let too_big = free.iter().max().unwrap() + 256;
    assert!(too_big < free.iter().sum::<u64>(), "the test needs two nodes whose memory together fits {too_big} MiB");
    let busybox = grid.image.to_str().unwrap();
    let sleeper = |memory: &str| {
        serde_json::json!([{ "name": "c", "image": busybox, "command": ["sleep", "1d"],
                             "resources": { "requests": { "memory": memory } } }])
    };
    apply(&cp, &pod("too-big", sleeper(&format!("{too_big}Mi"))));
    apply(
        &cp,
        &pod("unknown-image", serde_json::json!([{ "name": "c", "image": "no-such-image", "command": ["true"] }])),
    );
    apply(
        &cp,
        &pod(
            "two",
            serde_json::json!([{ "name": "a", "image": busybox, "command": ["sleep", "1d"] },
                                        { "name": "b", "image": busybox, "command": ["sleep", "1d"] }]),
        ),
    );
    let said = |name: &str, phase: &str, words: &str| {
        wait_until(LIMIT, || {
            let p = one_pod(&cp, name);
            let message = p["status"]["message"].as_str().unwrap_or_default().to_owned();
            (p["status"]["phase"] == phase && message.contains(words)).then_some(p)
        })
        .unwrap_or_else(|| panic!("Pod {name} never {phase} with {words:?}: {}\n{}", one_pod(&cp, name), kubelet.log()))
    };
    assert_eq!(said("too-big", "Pending", "no grid node has")["status"]["reason"], "Unschedulable");
    let unknown = said("unknown-image", "Pending", "there is no flist at");
    assert_eq!(unknown["status"]["reason"], "ErrImagePull");
    assert!(unknown["status"]["message"].as_str().unwrap().contains("/no-such-image.flist"), "{unknown}");
    said("two", "Failed", "sidecars are not supported");

    // A container whose liveness probe fails is restarted, and the Pod counts it.
    let dying = serde_json::json!([{ "name": "c", "image": busybox, "command": ["sleep", "1d"],
        "livenessProbe": { "tcpSocket": { "port": 9 }, "periodSeconds": 1, "failureThreshold": 1 } }]);
    apply(&cp, &pod("unhealthy", dying));
    wait_until(LIMIT, || {
        let p = one_pod(&cp, "unhealthy");
        (p["status"]["containerStatuses"][0]["restartCount"].as_u64() >= Some(1)).then_some(())
    })
    .unwrap_or_else(|| {
        panic!("the failing liveness probe never restarted the container: {}", one_pod(&cp, "unhealthy"))
    });
    kubectl(&cp, &["delete", "pod", "too-big", "unknown-image", "two", "unhealthy", "--grace-period=1"]);

    // By now the 3-minute reservations were renewed with signed updates, in place: the Pods
    // never restarted.
    let renewed =
        |pod: &Value| grid.record(&workload_of(pod)).unwrap()["workload"]["payload"]["version"].as_u64() > Some(1);
    wait_until(LIMIT, || pods(&cp, "app=web").iter().all(renewed).then_some(())).unwrap_or_else(|| {
        panic!("the reservations were never renewed: {:?}\n{}", pod_workloads(&grid), kubelet.log())
    });
    for pod in wait_for_ready(&cp, &kubelet, 3) {
        assert_eq!(pod["status"]["containerStatuses"][0]["restartCount"], 0, "{pod}");
    }

    // Scale to zero, then delete: nothing is left active on the explorer.
    kubectl(&cp, &["scale", "deployment", "web", "--replicas=0"]);
    wait_until(LIMIT, || pods(&cp, "app=web").is_empty().then_some(()))
        .unwrap_or_else(|| panic!("web Pods remain after scaling to 0:\n{}", kubelet.log()));
    kubectl(&cp, &["delete", "deployment", "web"]);
    wait_until(LIMIT, || kubelet_workloads(&grid).is_empty().then_some(()))
        .unwrap_or_else(|| panic!("workloads remain active: {:?}\n{}", kubelet_workloads(&grid), kubelet.log()));
    // SIGTERM stops it cleanly, even in the middle of a pass.
    let ended = kubelet.terminate();
    assert!(ended.is_some_and(|s| s.success()) && kubelet.log().contains("stopped;"), "{ended:?}\n{}", kubelet.log());
}
