//! `zgrid bench kubelet`: Pod startup latency through the virtual kubelet. On a devnet of this
//! machine (an explorer, a hub and `--nodes` node agents in network namespaces, a private
//! network over them), a Kubernetes control plane on loopback (`zgrid_devnet::kubernetes`) and
//! this binary's `zgrid kubelet` as a child process, it creates a Deployment of `--pods` busybox
//! web servers with a tcpSocket readiness probe (period 1 s) and times each Pod from the moment
//! a watch on the bench's side first sees it (`creationTimestamp` has whole seconds only) to
//! each step of its start: bound to the virtual node, its grid workload on the explorer, the
//! node's `ok` result, phase Running, the node's readiness result, condition Ready. The grid's
//! side is read from the explorer every [`POLL`]; Kubernetes' side from the watch, as it happens.
//!
//! Everything it starts (kubelet, control plane, node agents and their containers, the devnet)
//! is stopped and removed on every path, failures included.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node as KubeNode, Pod};
use kube::api::PostParams;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use zgrid_client::ExplorerClient;
use zgrid_devnet::kubernetes::{ControlPlane, binaries};
use zgrid_devnet::{Devnet, DevnetConfig, Node, NodeOptions, busybox_rootfs};
use zgrid_types::ResultState;
use zgrid_types::api::WorkloadRecord;

use super::flist::Deployer;
use super::{ms, remove_unless_mounted, round, summary};
use crate::config::Ctx;
use crate::output;

/// How often the explorer is asked for the workloads' results.
const POLL: Duration = Duration::from_millis(50);
/// How long the virtual node may take to turn Ready.
const NODE_LIMIT: Duration = Duration::from_secs(120);
/// How long all the Pods may take to turn Ready.
const LIMIT: Duration = Duration::from_secs(600);
/// The private network the Pods join.
const NETWORK: &str = "pods";
const CIDR: &str = "10.191.0.0/16";
/// The Deployment's name and its Pods' `app` label.
const APP: &str = "zgrid-bench";

/// The steps timed for each Pod: key, and what it means.
const STAGES: [(&str, &str); 6] = [
    ("scheduled", "bound to the virtual node"),
    ("workload_accepted", "grid workload on the explorer"),
    ("node_running", "node's result: running"),
    ("pod_running", "Pod phase Running"),
    ("node_ready", "node's result: readiness probe passed"),
    ("pod_ready", "Pod condition Ready"),
];

pub async fn run(ctx: &Ctx, pods: usize, nodes: usize) -> Result<()> {
    if pods == 0 || nodes == 0 {
        bail!("--pods and --nodes must be at least 1");
    }
    let bin = binaries()?;
    let work = tempfile::Builder::new().prefix("zgrid-bench-kubelet-").tempdir()?;
    let dir = work.path().to_owned();
    let report = match tokio::task::spawn_blocking(move || Rig::start(&dir, &bin, nodes)).await? {
        Ok(mut rig) => {
            let report = measure(&mut rig, pods).await;
            if report.is_err() {
                eprintln!("the end of zgrid kubelet's log:\n{}", rig.kubelet.tail());
            }
            eprintln!("cleaning up");
            tokio::task::spawn_blocking(move || drop(rig)).await?;
            report
        }
        Err(e) => Err(e),
    };
    tokio::task::spawn_blocking(move || remove_unless_mounted(work)).await??;
    let report = report?;
    if ctx.json {
        return output::json(&report);
    }
    print(&report);
    Ok(())
}

/// Everything the benchmark runs; fields drop in order: the kubelet, the control plane, the
/// node agents (with their containers), the devnet.
struct Rig {
    kubelet: Kubelet,
    plane: ControlPlane,
    nodes: Vec<Node>,
    _devnet: Devnet,
    me: Deployer,
    /// The busybox root filesystem, the Pods' image.
    image: PathBuf,
}

impl Rig {
    /// Start it all in `dir`, with the Kubernetes server binaries of `bin`.
    fn start(dir: &Path, bin: &Path, nodes: usize) -> Result<Self> {
        let zgrid = std::env::current_exe().context("cannot find the zgrid binary")?;
        eprintln!("starting a devnet with {nodes} nodes and network {NETWORK} over them");
        let mut config = DevnetConfig::new(&zgrid, dir.join("devnet"));
        config.log_level = "warn".into();
        let devnet = Devnet::start(config)?;
        let nodes: Vec<Node> = (0..nodes).map(|_| devnet.add_node(NodeOptions::default())).collect::<Result<_>>()?;
        let me = Deployer::register(zgrid, dir.join("deployer"), &devnet)?;
        me.create_network(NETWORK, CIDR, &nodes.iter().collect::<Vec<_>>())?;
        let image = busybox_rootfs(dir)?;
        eprintln!("starting a Kubernetes control plane and zgrid kubelet");
        let plane = ControlPlane::start(&dir.join("k8s"), bin)?;
        let kubelet = Kubelet::start(&me, plane.kubeconfig(), &dir.join("kubelet.log"))?;
        Ok(Self { kubelet, plane, nodes, _devnet: devnet, me, image })
    }
}

/// `zgrid kubelet` as a child process, SIGKILLed when dropped.
struct Kubelet {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Kubelet {
    /// Run this binary's `kubelet` as `me`, joining the cluster of `kubeconfig` as a Node of a
    /// new name, logging to `log`.
    fn start(me: &Deployer, kubeconfig: &Path, log: &Path) -> Result<Self> {
        let name = format!("bench-{:08x}", rand::random::<u32>());
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let file = std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
        let child = me
            .cli()
            .arg("kubelet")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["--node-name", &name, "--network", NETWORK, "--port", &port.to_string()])
            .env("ZGRID_LOG", "info")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .context("cannot start zgrid kubelet")?;
        Ok(Self { name, child, log: log.to_owned() })
    }

    /// Fail when the process has exited.
    fn check(&mut self) -> Result<()> {
        match self.child.try_wait()? {
            Some(status) => bail!("zgrid kubelet exited ({status})"),
            None => Ok(()),
        }
    }

    /// The last lines of its log.
    fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// When the bench saw each step of one Pod.
struct PodTimes {
    first: Instant,
    scheduled: Option<Instant>,
    running: Option<Instant>,
    ready: Option<Instant>,
}

/// When the bench saw each step of one Pod's workload on the explorer.
#[derive(Clone, Copy)]
struct GridTimes {
    accepted: Instant,
    running: Option<Instant>,
    ready: Option<Instant>,
}

/// What the Pod watch reports.
enum Seen {
    /// The first listing is done: every later Pod is seen as it is made.
    Listed,
    /// A Pod as it is now, and when that was seen.
    Pod(Instant, Box<Pod>),
}

/// A spawned task, aborted when dropped.
struct Task(tokio::task::JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn measure(rig: &mut Rig, pods: usize) -> Result<Value> {
    let (kube, _) = crate::cmd::kubelet::client(rig.plane.kubeconfig()).await?;
    eprintln!("waiting for virtual node {} to be Ready", rig.kubelet.name);
    node_ready(&kube, &mut rig.kubelet).await?;

    let (sender, mut seen) = mpsc::unbounded_channel();
    let _watch = Task(tokio::spawn(watch(Api::namespaced(kube.clone(), "default"), sender)));
    match tokio::time::timeout(NODE_LIMIT, seen.recv()).await {
        Ok(Some(Seen::Listed)) => {}
        _ => bail!("cannot list the Pods of app={APP} within {NODE_LIMIT:?}"),
    }
    let grid: Arc<Mutex<HashMap<String, GridTimes>>> = Arc::default();
    let explorer = ExplorerClient::new(&rig.me.explorer)?;
    let _follow = Task(tokio::spawn(follow_grid(explorer, rig.me.user_id, grid.clone())));

    eprintln!("creating a Deployment of {pods} Pods");
    let deployments: Api<Deployment> = Api::namespaced(kube, "default");
    let created = Instant::now();
    deployments
        .create(&PostParams::default(), &deployment(&rig.image, pods)?)
        .await
        .context("cannot create the Deployment")?;
    let mut times: HashMap<String, PodTimes> = HashMap::new();
    let mut check = tokio::time::interval(Duration::from_secs(1));
    while times.len() < pods || times.values().any(|t| t.ready.is_none()) {
        tokio::select! {
            message = seen.recv() => match message {
                Some(Seen::Pod(at, pod)) => observe(&mut times, at, &pod),
                Some(Seen::Listed) => {}
                None => bail!("the Pod watch ended"),
            },
            _ = check.tick() => {
                rig.kubelet.check()?;
                if created.elapsed() > LIMIT {
                    let ready = times.values().filter(|t| t.ready.is_some()).count();
                    bail!("{ready} of {pods} Pods were Ready after {LIMIT:?}");
                }
            }
            stop = tokio::signal::ctrl_c() => {
                stop.context("cannot wait for Ctrl-C")?;
                bail!("interrupted");
            }
        }
    }
    let all_ready = created.elapsed();
    let grid = grid.lock().expect("the grid's times are not poisoned").clone();
    Ok(report(pods, rig.nodes.len(), &times, &grid, all_ready))
}

/// Wait until the kubelet's Node is Ready.
async fn node_ready(kube: &kube::Client, kubelet: &mut Kubelet) -> Result<()> {
    let nodes: Api<KubeNode> = Api::all(kube.clone());
    let started = Instant::now();
    loop {
        let node = nodes.get_opt(&kubelet.name).await.ok().flatten();
        let conditions = node.and_then(|n| n.status?.conditions).unwrap_or_default();
        if conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True") {
            return Ok(());
        }
        kubelet.check()?;
        if started.elapsed() > NODE_LIMIT {
            bail!("virtual node {} was not Ready after {NODE_LIMIT:?}", kubelet.name);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Send every state of the Pods of [`APP`] to `to`, stamped as it arrives.
async fn watch(pods: Api<Pod>, to: mpsc::UnboundedSender<Seen>) {
    let config = watcher::Config::default().labels(&format!("app={APP}"));
    let mut events = std::pin::pin!(watcher::watcher(pods, config).default_backoff());
    while let Some(event) = events.next().await {
        let at = Instant::now();
        let seen = match event {
            Ok(Event::Apply(pod) | Event::InitApply(pod)) => Seen::Pod(at, Box::new(pod)),
            Ok(Event::InitDone) => Seen::Listed,
            Ok(_) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "watching the Pods failed; retrying");
                continue;
            }
        };
        if to.send(seen).is_err() {
            return;
        }
    }
}

/// Record the steps `pod` shows at `at` that were not seen before.
fn observe(times: &mut HashMap<String, PodTimes>, at: Instant, pod: &Pod) {
    let Some(uid) = pod.uid() else { return };
    let t = times.entry(uid).or_insert(PodTimes { first: at, scheduled: None, running: None, ready: None });
    if pod.spec.as_ref().is_some_and(|s| s.node_name.is_some()) {
        t.scheduled.get_or_insert(at);
    }
    let status = pod.status.as_ref();
    if status.and_then(|s| s.phase.as_deref()) == Some("Running") {
        t.running.get_or_insert(at);
    }
    let conditions = status.and_then(|s| s.conditions.as_deref()).unwrap_or_default();
    if conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True") {
        t.ready.get_or_insert(at);
    }
}

/// Every [`POLL`], record when each Pod's workload (by the Pod uid the kubelet signs into its
/// metadata) is on the explorer, has the node's `ok` result and a passing readiness probe.
async fn follow_grid(explorer: ExplorerClient, owner: u64, times: Arc<Mutex<HashMap<String, GridTimes>>>) {
    loop {
        if let Ok(records) = explorer.all_workloads(owner, Some("active")).await {
            let at = Instant::now();
            let mut times = times.lock().expect("the grid's times are not poisoned");
            for record in &records {
                let Some(uid) = pod_uid(record) else { continue };
                let t = times.entry(uid).or_insert(GridTimes { accepted: at, running: None, ready: None });
                if let Some(result) = record.result.as_ref().map(|r| &r.payload)
                    && matches!(result.state, ResultState::Ok)
                {
                    t.running.get_or_insert(at);
                    if result.data["ready"] == true {
                        t.ready.get_or_insert(at);
                    }
                }
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The uid of the Pod a workload of the kubelet's runs.
fn pod_uid(record: &WorkloadRecord) -> Option<String> {
    let reference: Value = serde_json::from_str(&record.workload.payload.metadata).ok()?;
    reference["uid"].as_str().map(str::to_owned)
}

/// `replicas` busybox web servers on port 8080 for the virtual node, Ready once the port opens.
fn deployment(image: &Path, replicas: usize) -> Result<Deployment> {
    let deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": APP },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": APP } },
            "template": {
                "metadata": { "labels": { "app": APP } },
                "spec": {
                    "containers": [{
                        "name": "web",
                        "image": image,
                        "command": ["/bin/busybox", "httpd", "-f", "-p", "8080"],
                        "ports": [{ "containerPort": 8080 }],
                        "resources": { "requests": { "memory": "32Mi" } },
                        "readinessProbe": { "tcpSocket": { "port": 8080 }, "periodSeconds": 1 }
                    }],
                    "nodeSelector": { "type": "virtual-kubelet" },
                    "tolerations": [{ "key": "virtual-kubelet.io/provider", "operator": "Exists" }]
                }
            }
        }
    });
    serde_json::from_value(deployment).context("the bench's Deployment does not parse")
}

/// Each stage's latency from the Pods' first sighting, and the whole run's time.
fn report(
    pods: usize,
    nodes: usize,
    times: &HashMap<String, PodTimes>,
    grid: &HashMap<String, GridTimes>,
    all_ready: Duration,
) -> Value {
    let mut samples: HashMap<&str, Vec<Duration>> = HashMap::new();
    for (uid, t) in times {
        let g = grid.get(uid);
        let steps = [
            ("scheduled", t.scheduled),
            ("workload_accepted", g.map(|g| g.accepted)),
            ("node_running", g.and_then(|g| g.running)),
            ("pod_running", t.running),
            ("node_ready", g.and_then(|g| g.ready)),
            ("pod_ready", t.ready),
        ];
        for (stage, at) in steps {
            if let Some(at) = at {
                samples.entry(stage).or_default().push(at.saturating_duration_since(t.first));
            }
        }
    }
    let stages: Vec<Value> = STAGES
        .iter()
        .map(|(key, what)| {
            let mut summary = summary(samples.get_mut(key).map(Vec::as_mut_slice).unwrap_or_default());
            if let Some(summary) = summary.as_object_mut() {
                summary.insert("stage".into(), json!(key));
                summary.insert("what".into(), json!(what));
            }
            summary
        })
        .collect();
    json!({
        "pods": pods,
        "nodes": nodes,
        "from": "each Pod's first sighting by a watch",
        "grid_poll_ms": ms(POLL),
        "stages": stages,
        "create_to_all_ready_ms": round(ms(all_ready)),
    })
}

fn print(report: &Value) {
    println!(
        "{} Pods on {} grid nodes through zgrid kubelet; from each Pod's first sighting (explorer read every {} ms):",
        report["pods"], report["nodes"], report["grid_poll_ms"]
    );
    let rows: Vec<Vec<String>> = report["stages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| !s.is_null())
        .map(|s| {
            let cell = |key: &str| s[key].as_f64().map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"));
            vec![
                s["what"].as_str().unwrap_or_default().to_owned(),
                s["count"].to_string(),
                cell("p50_ms"),
                cell("p99_ms"),
                cell("max_ms"),
            ]
        })
        .collect();
    output::table(&["STAGE", "PODS", "P50 MS", "P99 MS", "MAX MS"], &rows);
    println!(
        "Deployment created to all {} Pods Ready: {:.1} s",
        report["pods"],
        report["create_to_all_ready_ms"].as_f64().unwrap_or_default() / 1000.0
    );
}
