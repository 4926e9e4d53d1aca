//! `zgrid kubelet`: a virtual kubelet. Kubernetes schedules Pods onto a Node this process
//! registers; each Pod runs as one grid container of the deployer's, signed with their key,
//! on their private network.
//!
//! Reconciliation is level-triggered, like the node engine's: every pass compares the Pods
//! bound to the Node with the deployer's active container workloads that carry this provider's
//! signed metadata (the Pod's uid), and makes what is missing, deletes what no Pod wants,
//! renews reservations before they lapse and writes each Pod's status from its node's signed
//! result. Nothing is kept only in memory, so after a restart the provider adopts what it made.

mod api;
mod node;
mod place;
mod pod;
mod status;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, ResourceExt};
use serde::{Deserialize, Serialize};
use zgrid_types::api::WorkloadRecord;
use zgrid_types::workload::{Container, ContainerCapacity, DiskType, NetworkConnection, Volume, VolumeMount};
use zgrid_types::{NodeId, WorkloadData};

use self::status::Observed;
use crate::args::KubeletArgs;
use crate::cmd::network::Session;
use crate::cmd::submit::{self, Notes};
use crate::config::Ctx;

/// How often the provider looks again without a Pod event (to follow the nodes' results).
const PASS: Duration = Duration::from_secs(1);
/// How long a Pod that could not be made waits before the next attempt.
const RETRY: Duration = Duration::from_secs(10);

/// What the provider signs into each workload's metadata: which Pod it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct PodRef {
    /// The virtual node's name.
    kubelet: String,
    /// The cluster's API server.
    cluster: String,
    /// `namespace/name`.
    pod: String,
    /// The Pod's uid.
    uid: String,
    /// For a volume: the Pod's `emptyDir` it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    volume: Option<String>,
}

/// `zgrid kubelet`: register the Node and run Pods until stopped.
pub async fn run(ctx: &Ctx, a: KubeletArgs) -> Result<()> {
    let session = Session::new(ctx)?;
    let (kube, cluster) = client(&a.kubeconfig).await?;
    let filter = place::Filter::from_args(&a)?;
    let hub = ctx.hub_url(None).ok();
    let me = node::Identity { name: a.node_name.clone(), address: a.address.to_string(), port: a.port };
    // Checks the network too: a typo fails here, not on the first Pod.
    let nodes = place::candidates(&session, &filter, a.network.as_deref()).await?;
    node::register(&kube, &me, &place::total_free(&nodes)).await?;
    tracing::info!(node = %me.name, grid_nodes = nodes.len(), "registered the virtual node");

    let offered = Offered { session: Session::new(ctx)?, filter: filter.clone(), network: a.network.clone() };
    let heartbeat = tokio::spawn(heartbeats(kube.clone(), me.clone(), offered));
    let pods: Api<Pod> = Api::all(kube.clone());
    let (reader, writer) = reflector::store();
    let selected = watcher::Config::default().fields(&format!("spec.nodeName={}", me.name));
    let events = reflector(writer, watcher(pods, selected)).default_backoff().touched_objects();
    let wake = Arc::new(tokio::sync::Notify::new());
    let woken = wake.clone();
    let watch = tokio::spawn(events.for_each(move |event| {
        if let Err(e) = event {
            tracing::warn!(error = %e, "watching Pods failed; retrying");
        }
        woken.notify_one();
        async {}
    }));
    reader.wait_until_ready().await.context("cannot list the Pods bound to the Node")?;
    let server = match &a.client_ca {
        Some(ca) => {
            let state = api::ApiState {
                pods: reader.clone(),
                explorer: session.client.clone(),
                key: session.identity.keypair.clone(),
                http: ctx.http()?,
            };
            Some(api::start(std::net::SocketAddr::new(a.address, a.port), ca, state).await?)
        }
        None => {
            tracing::warn!("no --client-ca: the kubelet API is off, so kubectl logs and exec will not work");
            None
        }
    };

    let mut provider = Provider {
        ctx,
        session,
        kube,
        me,
        cluster,
        hub,
        filter,
        network: a.network,
        lifetime: a.lifetime.0,
        retry_at: HashMap::new(),
        written: HashMap::new(),
    };
    // One listener for the whole run, so a signal that comes during a pass is not lost.
    let stop = super::explorer::shutdown_signal();
    tokio::pin!(stop);
    let ended = loop {
        if let Err(e) = provider.pass(reader.state()).await {
            tracing::warn!(error = format!("{e:#}"), "reconciliation pass failed; trying again");
        }
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(PASS) => {}
            () = &mut stop => break Ok(()),
        }
        if heartbeat.is_finished() {
            break Err(anyhow::anyhow!("the Node heartbeat stopped"));
        }
    };
    heartbeat.abort();
    watch.abort();
    if let Some(server) = server {
        server.abort();
    }
    tracing::info!("stopped; the Pods' containers keep running and are adopted on the next start");
    ended
}

/// A client of the cluster the kubeconfig at `path` names, and its API server's URL.
pub(super) async fn client(path: &std::path::Path) -> Result<(kube::Client, String)> {
    // Checked first: kube's own error repeats the path and the cause.
    std::fs::File::open(path).with_context(|| format!("--kubeconfig {}: cannot open it", path.display()))?;
    let file = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("--kubeconfig {}: not a kubeconfig", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
        .await
        .with_context(|| format!("--kubeconfig {}: no usable cluster, user and context in it", path.display()))?;
    let cluster = config.cluster_url.to_string();
    Ok((kube::Client::try_from(config).context("cannot build a Kubernetes client")?, cluster))
}

/// The grid nodes the provider may use, for the capacity the Node offers.
struct Offered {
    session: Session,
    filter: place::Filter,
    network: Option<String>,
}

/// Renew the Node's status and Lease with the grid's free capacity until aborted.
async fn heartbeats(kube: kube::Client, me: node::Identity, offered: Offered) {
    let mut free = zgrid_types::directory::Capacity::default();
    loop {
        tokio::time::sleep(node::HEARTBEAT).await;
        match place::candidates(&offered.session, &offered.filter, offered.network.as_deref()).await {
            Ok(nodes) => free = place::total_free(&nodes),
            Err(e) => tracing::warn!(error = format!("{e:#}"), "cannot read the grid's free capacity"),
        }
        if let Err(e) = node::heartbeat(&kube, &me, &free).await {
            tracing::warn!(error = format!("{e:#}"), "Node heartbeat failed");
        }
    }
}

/// The provider's state between passes: only what saves work (nothing it could not rebuild).
struct Provider<'a> {
    ctx: &'a Ctx,
    session: Session,
    kube: kube::Client,
    me: node::Identity,
    cluster: String,
    hub: Option<String>,
    filter: place::Filter,
    network: Option<String>,
    lifetime: Duration,
    /// Pods that could not be made, and when to try again.
    retry_at: HashMap<String, Instant>,
    /// The status last written for each Pod, so unchanged ones are not written again.
    written: HashMap<String, serde_json::Value>,
}

impl Provider<'_> {
    /// One reconciliation pass over `pods`, the Pods bound to the Node.
    async fn pass(&mut self, pods: Vec<Arc<Pod>>) -> Result<()> {
        let s = &self.session;
        let active = s.client.all_workloads(s.owner, Some("active")).await?;
        let mut mine: HashMap<String, Vec<WorkloadRecord>> = HashMap::new();
        for record in &active {
            if let Some(r) = self.made_here(record) {
                mine.entry(r.uid).or_default().push(record.clone());
            }
        }
        let uids: HashSet<String> = pods.iter().filter_map(|p| p.uid()).collect();
        for (uid, records) in &mine {
            if !uids.contains(uid) {
                for r in records {
                    tracing::info!(workload = %r.workload.payload.id, pod_uid = %uid, "its Pod is gone; deleting");
                    self.delete(r).await;
                }
            }
        }
        self.retry_at.retain(|uid, _| uids.contains(uid));
        self.written.retain(|uid, _| uids.contains(uid));
        let mut placing = Placing { nodes: None, active };
        for pod in pods {
            let records = pod.uid().and_then(|uid| mine.remove(&uid)).unwrap_or_default();
            if let Err(e) = self.pod(&pod, records, &mut placing).await {
                tracing::warn!(pod = %key(&pod), error = format!("{e:#}"), "cannot reconcile the Pod");
            }
        }
        Ok(())
    }

    /// The Pod `record` runs, if this provider made it.
    fn made_here(&self, record: &WorkloadRecord) -> Option<PodRef> {
        let r: PodRef = serde_json::from_str(&record.workload.payload.metadata).ok()?;
        (r.kubelet == self.me.name && r.cluster == self.cluster).then_some(r)
    }

    /// Bring one Pod's container in line with the Pod.
    async fn pod(&mut self, pod: &Pod, mut records: Vec<WorkloadRecord>, placing: &mut Placing) -> Result<()> {
        let uid = pod.uid().unwrap_or_default();
        if pod.metadata.deletion_timestamp.is_some() {
            return self.terminate(pod, &records).await;
        }
        if status::is_final(pod) {
            for r in &records {
                self.delete(r).await;
            }
            return Ok(());
        }
        records.sort_by_key(|r| r.created_at);
        let (containers, volumes): (Vec<_>, Vec<_>) =
            records.iter().partition(|r| matches!(r.workload.payload.data, WorkloadData::Container(_)));
        if let [keep, extra @ ..] = containers.as_slice() {
            let mounted = mounts(keep);
            for r in extra.iter().chain(volumes.iter().filter(|v| !mounted.contains(&v.workload.payload.id))) {
                tracing::warn!(workload = %r.workload.payload.id, pod = %key(pod), "not part of the Pod's container; deleting it");
                self.delete(r).await;
            }
            for v in volumes.iter().filter(|v| mounted.contains(&v.workload.payload.id)) {
                self.renew(v).await;
            }
            let record = self.renew(keep).await.unwrap_or_else(|| (*keep).clone());
            return self.write(pod, Observed::Workload(&record)).await;
        }
        // Volumes without their container: left by a crash between the two; made again.
        for v in &volumes {
            self.delete(v).await;
        }
        if let Some(id) = status::workload_of(pod) {
            // Made before, and no longer active: deleted or expired outside Kubernetes.
            let id = id.parse().with_context(|| format!("the Pod names workload {id:?}"))?;
            let record = self.session.client.workload(&id).await?;
            return self.write(pod, Observed::Workload(&record)).await;
        }
        if self.retry_at.get(&uid).is_some_and(|at| Instant::now() < *at) {
            return Ok(());
        }
        let plan = match pod::plan(pod) {
            Ok(plan) => plan,
            Err(refusal) => return self.write(pod, Observed::Refused(&refusal.0)).await,
        };
        if placing.nodes.is_none() {
            placing.nodes = Some(place::candidates(&self.session, &self.filter, self.network.as_deref()).await?);
        }
        match self.create(pod, &plan, placing).await {
            Ok(record) => {
                tracing::info!(pod = %key(pod), workload = %record.workload.payload.id, node = %record.workload.payload.node_id, "made the Pod's container");
                self.retry_at.remove(&uid);
                self.write(pod, Observed::Workload(&record)).await
            }
            Err(Waiting { reason, message }) => {
                self.retry_at.insert(uid, Instant::now() + RETRY);
                self.write(pod, Observed::Waiting { reason, message: &message }).await
            }
        }
    }

    /// Make the Pod's container: resolve its image and environment, place it, sign it; what
    /// it made joins `placing`'s active workloads.
    async fn create(&self, pod: &Pod, plan: &pod::Plan, placing: &mut Placing) -> Result<WorkloadRecord, Waiting> {
        let (flist, flist_hash) = self.image(&plan.image).await.map_err(|e| Waiting::new("ErrImagePull", e))?;
        let values = self.references(pod, plan).await.map_err(|e| Waiting::new("CreateContainerConfigError", e))?;
        let grid = placing.nodes.as_deref().unwrap_or_default();
        let held = place::held(grid, &placing.active, |r| {
            self.made_here(r).is_some() && matches!(r.workload.payload.data, WorkloadData::Container(_))
        });
        let node = place::choose(grid, plan, &held).map_err(|e| Waiting::new("Unschedulable", e))?;
        let connection = self.connection(&node).await.map_err(|e| Waiting::new("NetworkUnavailable", e))?;
        let mut volumes = Vec::with_capacity(plan.volumes.len());
        for v in &plan.volumes {
            match self
                .submit(
                    pod,
                    node,
                    Some(&v.name),
                    WorkloadData::Volume(Volume { size: v.size, disk_type: DiskType::Ssd }),
                )
                .await
            {
                Ok(record) => volumes.push((record, v.mount_path.clone())),
                Err(e) => {
                    for (made, _) in &volumes {
                        self.delete(made).await;
                    }
                    return Err(Waiting::new("CreateContainerError", e));
                }
            }
        }
        let mut secret_environment = BTreeMap::new();
        let mut environment = plan.environment.clone();
        for (reference, value) in plan.references.iter().zip(values) {
            let Some(value) = value else { continue };
            match reference.source {
                pod::RefSource::Secret => {
                    secret_environment
                        .insert(reference.variable.clone(), zgrid_types::sealed::seal_secret(&node, &value));
                }
                pod::RefSource::ConfigMap => {
                    environment.insert(reference.variable.clone(), value);
                }
            }
        }
        let container = Container {
            flist,
            hub_url: String::new(),
            flist_hash,
            environment,
            secret_environment,
            entrypoint: plan.entrypoint.clone(),
            interactive: false,
            volumes: volumes
                .iter()
                .map(|(r, at)| VolumeMount { volume_id: r.workload.payload.id.clone(), mountpoint: at.clone() })
                .collect(),
            capacity: ContainerCapacity {
                cpu: plan.cpu,
                memory: plan.memory,
                disk_size: plan.disk,
                disk_type: DiskType::Ssd,
            },
            network_connection: connection.into_iter().collect(),
            logs: vec![],
            stats: vec![],
            probes: plan.probes.clone(),
            open_ports: vec![],
        };
        match self.submit(pod, node, None, WorkloadData::Container(container)).await {
            Ok(record) => {
                // Counted by the next placement in this pass, before the node reports it.
                placing.active.extend(volumes.into_iter().map(|(v, _)| v));
                placing.active.push(record.clone());
                Ok(record)
            }
            Err(e) => {
                for (made, _) in &volumes {
                    self.delete(made).await;
                }
                Err(Waiting::new("CreateContainerError", e))
            }
        }
    }

    /// Sign and submit `data` for `pod` (its `emptyDir` `volume`, or its container) on `node`,
    /// with the metadata that ties it to the Pod.
    async fn submit(
        &self,
        pod: &Pod,
        node: NodeId,
        volume: Option<&str>,
        data: WorkloadData,
    ) -> Result<WorkloadRecord> {
        let reference = PodRef {
            kubelet: self.me.name.clone(),
            cluster: self.cluster.clone(),
            pod: key(pod),
            uid: pod.uid().unwrap_or_default(),
            volume: volume.map(str::to_owned),
        };
        let what = volume.map_or_else(|| format!("Pod {}", key(pod)), |v| format!("volume {v} of Pod {}", key(pod)));
        let notes = Notes {
            description: format!("{what} on Kubernetes node {}", self.me.name),
            metadata: serde_json::to_string(&reference)?,
        };
        let expires_at = submit::expiry(crate::args::Lifetime(self.lifetime));
        let s = &self.session;
        let spec = submit::new_spec(&s.identity, node, expires_at, &notes, data)?;
        submit::submit_new(&s.client, &s.identity, spec).await
    }

    /// The flist and its pinned hash for a Pod's `image`: an flist URL, a path on the node, or
    /// a name on the configured hub (`name` in my namespace, or `namespace/name`).
    async fn image(&self, image: &str) -> Result<(String, String)> {
        if image.starts_with('/') {
            return Ok((image.to_owned(), String::new()));
        }
        let url = if image.starts_with("http://") || image.starts_with("https://") {
            image.to_owned()
        } else {
            let Some(hub) = &self.hub else {
                bail!(
                    "image {image:?} is a name, and no hub is configured: run `zgrid config set hub URL` or give an flist URL"
                );
            };
            let (namespace, name) = match image.split_once('/') {
                Some((namespace, name)) => (namespace.to_owned(), name),
                None => (self.session.identity.keypair.public().to_string(), image),
            };
            let name = if name.ends_with(".flist") { name.to_owned() } else { format!("{name}.flist") };
            format!("{}/flists/{namespace}/{name}", hub.trim_end_matches('/'))
        };
        let hash = crate::cmd::deploy::served_hash(self.ctx, &url).await?;
        Ok((url, hash))
    }

    /// The values of the Pod's Secret and ConfigMap references, in order (`None`: optional and
    /// missing).
    async fn references(&self, pod: &Pod, plan: &pod::Plan) -> Result<Vec<Option<String>>> {
        let namespace = pod.namespace().unwrap_or_else(|| "default".into());
        let secrets: Api<Secret> = Api::namespaced(self.kube.clone(), &namespace);
        let maps: Api<ConfigMap> = Api::namespaced(self.kube.clone(), &namespace);
        let mut values = Vec::with_capacity(plan.references.len());
        for r in &plan.references {
            let value = match r.source {
                pod::RefSource::Secret => secrets.get_opt(&r.object).await?.and_then(|s| {
                    let bytes = s.data.and_then(|mut d| d.remove(&r.key)).map(|b| b.0);
                    bytes.or_else(|| s.string_data.and_then(|mut d| d.remove(&r.key)).map(String::into_bytes))
                }),
                pod::RefSource::ConfigMap => {
                    maps.get_opt(&r.object).await?.and_then(|m| m.data?.remove(&r.key)).map(String::into_bytes)
                }
            };
            let kind = match r.source {
                pod::RefSource::Secret => "secret",
                pod::RefSource::ConfigMap => "configmap",
            };
            match value {
                Some(v) => {
                    values.push(Some(String::from_utf8(v).with_context(|| {
                        format!("{kind} {}/{} key {} is not UTF-8 text", namespace, r.object, r.key)
                    })?))
                }
                None if r.optional => values.push(None),
                None => bail!("env {}: {kind} {namespace}/{} has no key {:?}", r.variable, r.object, r.key),
            }
        }
        Ok(values)
    }

    /// The Pod's place on the network, if the provider has one.
    async fn connection(&self, node: &NodeId) -> Result<Option<NetworkConnection>> {
        let Some(name) = &self.network else { return Ok(None) };
        let network = self.session.load(name).await?.with_context(|| format!("--network {name} no longer exists"))?;
        let ipaddress = network.free_ip(node).with_context(|| format!("network {name} on node {node}"))?;
        Ok(Some(NetworkConnection { network_id: name.clone(), ipaddress, public_ipv6: false, yggdrasil_ip: false }))
    }

    /// Renew `record`'s reservation once half of it has passed; the node keeps it running.
    async fn renew(&self, record: &WorkloadRecord) -> Option<WorkloadRecord> {
        let spec = &record.workload.payload;
        let half = i64::try_from(self.lifetime.as_secs() / 2).unwrap_or(i64::MAX);
        if spec.expires_at - zgrid_types::unix_now() > half {
            return None;
        }
        let mut next = spec.clone();
        next.version += 1;
        next.expires_at = submit::expiry(crate::args::Lifetime(self.lifetime));
        let s = &self.session;
        match submit::submit_update(&s.client, &s.identity, next).await {
            Ok(renewed) => {
                tracing::info!(workload = %spec.id, expires_at = renewed.workload.payload.expires_at, "renewed");
                Some(renewed)
            }
            Err(e) => {
                tracing::warn!(workload = %spec.id, error = format!("{e:#}"), "cannot renew; trying again");
                None
            }
        }
    }

    /// Delete a deleted Pod's container, then let the Pod go once its node stopped it or its
    /// grace period is over.
    async fn terminate(&mut self, pod: &Pod, records: &[WorkloadRecord]) -> Result<()> {
        for r in records {
            self.delete(r).await;
        }
        let mut stopped = true;
        if let Some(id) = status::workload_of(pod).and_then(|id| id.parse().ok()) {
            let record = self.session.client.workload(&id).await?;
            let result = record.result.as_ref().map(|r| r.payload.state);
            stopped = record.state != zgrid_types::api::WorkloadState::Active
                && matches!(result, None | Some(zgrid_types::ResultState::Deleted));
        }
        let deadline = pod.metadata.deletion_timestamp.as_ref().map(|t| t.0);
        let over = deadline.is_none_or(|t| k8s_openapi::jiff::Timestamp::now() >= t);
        if !(stopped || over) {
            return Ok(());
        }
        let api: Api<Pod> = Api::namespaced(self.kube.clone(), &pod.namespace().unwrap_or_default());
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions { uid: pod.uid(), resource_version: None }),
            ..DeleteParams::default()
        };
        match api.delete(&pod.name_any(), &params).await {
            Ok(_) => tracing::info!(pod = %key(pod), "its container stopped; the Pod is gone"),
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => return Err(e).context("cannot remove the deleted Pod"),
        }
        Ok(())
    }

    /// Send a signed delete for `record` (logged when it fails; the next pass tries again).
    async fn delete(&self, record: &WorkloadRecord) {
        let s = &self.session;
        let id = &record.workload.payload.id;
        if let Err(e) = s.client.delete_workload(id, s.owner).await {
            tracing::warn!(workload = %id, error = %e, "cannot delete the workload; trying again");
        }
    }

    /// Write the Pod's status from `observed`, unless it is what was last written.
    async fn write(&mut self, pod: &Pod, observed: Observed<'_>) -> Result<()> {
        let status = status::status(pod, observed, &self.me.address);
        let uid = pod.uid().unwrap_or_default();
        if self.written.get(&uid) == Some(&status) {
            return Ok(());
        }
        let api: Api<Pod> = Api::namespaced(self.kube.clone(), &pod.namespace().unwrap_or_default());
        let patch = serde_json::json!({ "status": status });
        match api.patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
            Err(e) => return Err(e).context("cannot write the Pod's status"),
        }
        self.written.insert(uid, status);
        Ok(())
    }
}

/// The volumes a container workload mounts.
fn mounts(record: &WorkloadRecord) -> Vec<zgrid_types::WorkloadId> {
    match &record.workload.payload.data {
        WorkloadData::Container(c) => c.volumes.iter().map(|v| v.volume_id.clone()).collect(),
        _ => Vec::new(),
    }
}

/// What one pass places Pods with: the grid nodes they may use (read when the first Pod needs
/// them) and the deployer's active workloads, with those the pass made.
struct Placing {
    nodes: Option<Vec<zgrid_types::directory::Node>>,
    active: Vec<WorkloadRecord>,
}

/// Why a Pod has no container yet: a Kubernetes waiting reason and the cause.
struct Waiting {
    reason: &'static str,
    message: String,
}

impl Waiting {
    fn new(reason: &'static str, error: anyhow::Error) -> Self {
        Self { reason, message: format!("{error:#}") }
    }
}

/// `namespace/name` of a Pod.
fn key(pod: &Pod) -> String {
    format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any())
}
