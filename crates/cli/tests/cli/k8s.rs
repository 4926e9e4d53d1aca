//! Kubernetes clusters end to end: the grid's Kubernetes image (`scripts/k8s-image`: Kubernetes
//! built from Debian's source, with Debian's etcd, containerd and CNI plugins) on the devnet's
//! hub, `zgrid k8s up` making a master and a worker on two real node agents (qemu, TCG here),
//! a laptop namespace joined with `wg-quick` running `kubectl`, pods pulling an image pushed with
//! `skopeo` to Debian's docker-registry running as a grid container, a worker added, a worker
//! with the wrong secret refused, and `zgrid k8s down` leaving nothing behind.
//!
//! Needs what the VM tests need, skopeo, and the images of `scripts/k8s-image` and
//! `scripts/registry-image` (`scripts/test` builds them; the first build of Kubernetes takes
//! 5-15 minutes). It runs alone (`.config/nextest.toml`): its VMs keep every core busy, so no
//! more than three run at once. 15-35 minutes under TCG on two cores.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use zgrid_devnet::Node;

use crate::grid::{Grid, id_of, wait_until};
use crate::network::{Laptop, host};
use crate::vm::{delete, leftovers, ssh_key, vm_node};

/// For one step of the cluster's (a pod to running, a worker to Ready) under TCG on two shared
/// cores.
const LIMIT: Duration = Duration::from_secs(12 * 60);

/// Run an image script (`scripts/<name>`) and return what it printed: an flist file (packed
/// into `<dir>/store`), or with `--tree` a root tree.
fn image_script(name: &str, args: &[&str]) -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts").join(name);
    let out = Command::new(&script).args(args).env("ZGRID", crate::common::ZGRID).output().expect("image script");
    assert!(out.status.success(), "scripts/{name} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// Push the flist an image script made (with its store beside it) to the devnet's hub; its URL.
fn push_image(grid: &Grid, flist: &Path) -> String {
    let store = flist.parent().unwrap().join("store");
    let name = flist.file_name().unwrap().to_str().unwrap();
    let args = ["flist", "push", flist.to_str().unwrap(), "--store", store.to_str().unwrap(), "--name", name];
    grid.cli(&args)["url"].as_str().expect("the pushed flist's URL").to_owned()
}

/// What a command printed, both streams, for failure messages.
fn said(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// kubectl (Debian's kubernetes-client 1.20, from the Kubernetes image) in the laptop's
/// namespace with `kubeconfig`.
struct Kubectl<'a> {
    laptop: &'a Laptop,
    program: String,
    kubeconfig: String,
}

impl Kubectl<'_> {
    fn run(&self, args: &[&str]) -> Output {
        let mut all = vec!["--kubeconfig", &self.kubeconfig, "--request-timeout", "60s"];
        all.extend_from_slice(args);
        self.laptop.run(&self.program, &all)
    }

    /// Wait until `args` succeeds with output that satisfies `done` (a request through a busy
    /// API server may time out, and is tried again); the output.
    fn until(&self, args: &[&str], done: impl Fn(&str) -> bool) -> String {
        let mut last = String::new();
        wait_until(LIMIT, || {
            let out = self.run(args);
            last = said(&out);
            (out.status.success() && done(&last)).then(|| last.clone())
        })
        .unwrap_or_else(|| {
            let state = said(&self.run(&["get", "nodes,pods,pvc,pv,events", "-A", "-o", "wide"]));
            panic!("kubectl {} never gave what was expected; last:\n{last}\nthe cluster:\n{state}", args.join(" "))
        })
    }

    /// The names of the pods labelled `app=<app>` that run, once `count` run.
    fn running_pods(&self, app: &str, count: usize) -> Vec<String> {
        let selector = format!("app={app}");
        let jsonpath = "-o=jsonpath={range .items[?(@.status.phase==\"Running\")]}{.metadata.name}{\"\\n\"}{end}";
        let out = self.until(&["get", "pods", "-l", &selector, jsonpath], |o| o.lines().count() == count);
        out.lines().map(str::to_owned).collect()
    }
}

/// The nodes of the cluster whose kubeconfig is `kubectl`'s, once `count` are Ready (under TCG
/// a busy master may miss a node's heartbeats for a while).
fn ready_nodes(kubectl: &Kubectl, count: usize) -> Vec<String> {
    let jsonpath =
        "-o=jsonpath={range .items[*]}{.metadata.name} {.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}";
    let ready = |out: &str| -> Vec<String> {
        out.lines().filter(|l| l.ends_with(" True")).map(|l| l.split(' ').next().unwrap().to_owned()).collect()
    };
    ready(&kubectl.until(&["get", "nodes", jsonpath], |out| ready(out).len() == count))
}

/// The test's web image as an OCI archive in `dir`: busybox serving its pod's name on port 8080.
fn web_image(dir: &Path) -> PathBuf {
    let root = dir.join("web-root");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("www")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox-static");
    let archive = dir.join("web.tar");
    let script = "hostname > /www/index.html; echo serving $(hostname); exec busybox httpd -f -v -p 8080 -h /www";
    let args = [root.to_str().unwrap(), "web:1", archive.to_str().unwrap(), "--port", "8080", "--"];
    let mut full: Vec<&str> = args.to_vec();
    full.extend(["/bin/busybox", "sh", "-c", script]);
    image_script("oci-image", &full);
    archive
}

/// The manifests the test applies: the web Deployment and its NodePort Service, and a claim of
/// the default StorageClass used by a Deployment that appends to a file on it at each start.
fn manifests(registry: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - labelSelector: {{matchLabels: {{app: web}}}}
            topologyKey: kubernetes.io/hostname
      containers:
      - name: web
        image: {registry}/web:1
        ports: [{{containerPort: 8080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  type: NodePort
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080, nodePort: 30080}}]
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: notes}}
spec:
  accessModes: [ReadWriteOnce]
  resources: {{requests: {{storage: 64Mi}}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: notes}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: notes}}}}
  template:
    metadata: {{labels: {{app: notes}}}}
    spec:
      containers:
      - name: notes
        image: {registry}/web:1
        command: ["/bin/busybox", "sh", "-c", "echo started >> /data/starts; busybox wc -l < /data/starts; exec busybox sleep 100000"]
        volumeMounts: [{{name: data, mountPath: /data}}]
      volumes:
      - name: data
        persistentVolumeClaim: {{claimName: notes}}
"#
    )
}

/// Whether `laptop` gets a page from `url` (busybox wget, within 5 s); the page. (Not wget's own
/// `-T`: Debian's busybox 1.35 wget dies of a segmentation fault with it.)
fn fetch(laptop: &Laptop, url: &str) -> Option<String> {
    let out = laptop.run("timeout", &["5", "busybox", "wget", "-q", "-O", "-", url]);
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The ids of cluster `name`'s VMs, from `zgrid k8s ls`.
fn cluster_vms(grid: &Grid, name: &str) -> Vec<(String, String)> {
    let clusters = grid.cli(&["k8s", "ls"]);
    let cluster = clusters.as_array().unwrap().iter().find(|c| c["name"] == name).expect("the cluster in k8s ls");
    let master = std::iter::once(&cluster["master"]);
    let vms = master.chain(cluster["workers"].as_array().unwrap().iter());
    vms.map(|vm| (vm["workload_id"].as_str().unwrap().to_owned(), vm["node_id"].as_str().unwrap().to_owned())).collect()
}

#[test]
fn a_cluster_of_two_vms_runs_pods_from_a_grid_registry_grows_refuses_a_wrong_secret_and_goes_without_leftovers() {
    let grid = Grid::new();
    let (a, b) = (vm_node(&grid, None), vm_node(&grid, None));
    let dir = tempfile::tempdir().unwrap();
    let k8s_url = push_image(&grid, &image_script("k8s-image", &[]));
    let registry_url = push_image(&grid, &image_script("registry-image", &[]));
    let key = ssh_key(dir.path());
    let public = format!("{}.pub", key.display());

    // One command: the network (with this machine's access), the master on a, the worker on b.
    // The registry will be the container at .200 of a's /24 (the first: a is listed first).
    let registry = "10.72.1.200:5000";
    let wg_dir = tempfile::tempdir().unwrap();
    let wg = wg_dir.path().join(Laptop::config_name());
    let mut args = vec!["--json", "k8s", "up", "--name", "kube", "--node", a.id(), "--node", b.id()];
    args.extend(["--cidr", "10.72.0.0/16"]);
    // Two CPUs each: under TCG a one-CPU master cannot run its control plane (issue 15).
    args.extend(["--size", "16", "--flist", &k8s_url, "--ssh-key", &public, "--registry", registry]);
    args.extend(["--duration", "3h"]);
    args.extend(["--wg-config", wg.to_str().unwrap()]);
    let up = grid.cli_raw(&args);
    assert!(up.status.success(), "k8s up failed:\n{}\nagent a:\n{}\nagent b:\n{}", said(&up), a.log(), b.log());
    let up: serde_json::Value = serde_json::from_slice(&up.stdout).unwrap();
    let master_ip = up["cluster"]["master"]["ip"].as_str().unwrap().to_owned();
    assert_eq!(host(&grid, "kube", &a, 200), registry.trim_end_matches(":5000"), "a's /24 is not the first");
    // This machine is not on the network: the cluster is made, and `up` says how to reach it.
    assert_eq!(up["reachable"], false, "{up}");

    // The laptop joins with the config `up` wrote and gets its kubeconfig there.
    let laptop = Laptop::up(&grid, wg.clone(), wg_dir);
    let kubeconfig = dir.path().join("kube.yaml");
    let out = laptop.cli(&grid, &["--json", "k8s", "kubeconfig", "kube", "--output", kubeconfig.to_str().unwrap()]);
    assert!(out.status.success(), "k8s kubeconfig failed:\n{}", said(&out));
    let tree = image_script("k8s-image", &["--tree"]);
    let kubectl = Kubectl {
        laptop: &laptop,
        program: tree.join("usr/bin/kubectl").to_str().unwrap().to_owned(),
        kubeconfig: kubeconfig.to_str().unwrap().to_owned(),
    };
    let vms = cluster_vms(&grid, "kube");
    let names: Vec<&str> = vms.iter().map(|(id, _)| id.as_str()).collect();
    let mut ready = ready_nodes(&kubectl, 2);
    ready.sort();
    let mut expected: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    expected.sort();
    assert_eq!(ready, expected, "both VMs are Ready nodes");

    // Debian's docker-registry as a grid container on the network, filled from the laptop.
    let mut args = vec!["deploy", "container", "--node", a.id(), "--flist", &registry_url, "--network", "kube"];
    args.extend(["--ip", "10.72.1.200", "--memory", "256", "--disk", "1024", "--duration", "3h"]);
    args.extend(["--entrypoint", "/usr/bin/docker-registry serve /etc/docker/registry/config.yml", "--wait"]);
    let registry_id = id_of(&grid.cli(&args));
    let archive = web_image(dir.path());
    let source = format!("oci-archive:{}", archive.display());
    let target = format!("docker://{registry}/web:1");
    let mut last = String::new();
    let copied = wait_until(Duration::from_secs(120), || {
        let out = laptop.run("skopeo", &["copy", "--dest-tls-verify=false", &source, &target]);
        last = said(&out);
        out.status.success().then_some(())
    });
    assert!(copied.is_some(), "skopeo could not push to the registry on the grid:\n{last}");

    // Two replicas, one per node, pulled from the registry; the NodePort answers from both pods
    // through either node (pod traffic crosses between the VMs).
    let manifest = dir.path().join("apps.yaml");
    std::fs::write(&manifest, manifests(registry)).unwrap();
    kubectl.until(&["apply", "--validate=false", "-f", manifest.to_str().unwrap()], |_| true);
    let mut pods = kubectl.running_pods("web", 2);
    pods.sort();
    let mut seen = std::collections::BTreeSet::new();
    let worker_ip = up["cluster"]["workers"][0]["ip"].as_str().unwrap().to_owned();
    for node_ip in [&master_ip, &worker_ip] {
        let url = format!("http://{node_ip}:30080/");
        let answered = wait_until(Duration::from_secs(300), || {
            let page = fetch(&laptop, &url)?;
            seen.insert(page);
            (seen.len() == 2).then_some(())
        });
        assert!(answered.is_some(), "the NodePort at {url} showed only {seen:?} of pods {pods:?}");
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), pods);

    // kubectl logs and exec reach the pods through their kubelets (whose authorization check,
    // a call to the API server, can time out while four TCG VMs share two cores).
    kubectl.until(&["logs", &pods[0]], |logs| logs.contains(&format!("serving {}", pods[0])));
    kubectl.until(&["exec", &pods[1], "--", "/bin/busybox", "cat", "/www/index.html"], |page| page.trim() == pods[1]);

    // The claim's data outlives its pod.
    let first = kubectl.running_pods("notes", 1);
    kubectl.until(&["logs", &first[0]], |o| o.trim() == "1");
    kubectl.until(&["delete", "pod", &first[0], "--wait=false", "--ignore-not-found"], |_| true);
    // The deleted pod stays (phase Running) through its grace period: wait until it has gone and
    // its successor is the only one.
    let names = "-o=jsonpath={range .items[*]}{.metadata.name}{\"\\n\"}{end}";
    let second = kubectl.until(&["get", "pods", "-l", "app=notes", names], |o| {
        let pods: Vec<&str> = o.lines().collect();
        pods.len() == 1 && pods[0] != first[0]
    });
    kubectl.until(&["logs", second.trim()], |o| o.trim() == "2");

    // A worker with another cluster's secret never joins, and its node says why.
    let ip = host(&grid, "kube", &b, 20);
    let mut args = vec!["deploy", "kubernetes", "--node", b.id(), "--flist", &k8s_url, "--network", "kube"];
    args.extend(["--ip", &ip, "--secret", "not-the-cluster-secret", "--master-ip", &master_ip, "--duration", "1h"]);
    args.extend(["--size", "1"]);
    let stranger = id_of(&grid.cli(&args));
    let record = grid.wait_for_result(&b, &stranger, "error", LIMIT);
    let message = record["result"]["payload"]["message"].as_str().unwrap();
    assert!(message.contains("does not know this cluster secret"), "{message}");
    let names = kubectl.until(&["get", "nodes", "-o", "name"], |_| true);
    assert!(!names.contains(&stranger), "the stranger joined: {names}");
    delete(&grid, &b, &stranger);

    // Then another worker joins the running cluster; with one CPU, so that three VMs under TCG
    // leave the master's control plane enough of two cores (with two CPUs, the master's own
    // node went NotReady and the new kubelet could not register in 15 minutes).
    let out = laptop.cli(&grid, &["--json", "k8s", "add-worker", "kube", "--node", a.id(), "--size", "1"]);
    assert!(out.status.success(), "k8s add-worker failed:\n{}\nagent a:\n{}", said(&out), a.log());
    assert_eq!(ready_nodes(&kubectl, 3).len(), 3, "the new worker is not Ready");

    // Down: every VM goes with everything it had on its node, then the network `up` made.
    let vms = cluster_vms(&grid, "kube");
    assert_eq!(vms.len(), 3, "{vms:?}");
    let network = grid.cli(&["network", "show", "--name", "kube"]);
    let resources: Vec<String> = network["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["record"]["workload"]["payload"]["id"].as_str().unwrap().to_owned())
        .collect();
    delete(&grid, &a, &registry_id);
    let down = grid.cli(&["k8s", "down", "kube"]);
    assert_eq!((&down["gone"], &down["network_deleted"]), (&true.into(), &true.into()), "{down}");
    for (id, node_id) in &vms {
        let node: &Node = if node_id == a.id() { &a } else { &b };
        let left = leftovers(node, id);
        assert!(left.is_empty(), "VM {id} left:\n{}", left.join("\n"));
    }
    let namespaces = crate::network::namespaces();
    let kept: Vec<&String> = resources.iter().filter(|id| namespaces.contains(&format!("zgn-{id}"))).collect();
    assert!(kept.is_empty(), "network resources still have their namespaces: {kept:?}");
    assert!(!grid.cli_raw(&["network", "show", "--name", "kube"]).status.success(), "network kube is still listed");
}
