//! The zgrid node agent: turns a Linux machine into grid capacity. It registers the node,
//! follows its desired set from the explorer, verifies every owner signature itself, provisions
//! workloads concurrently with a time limit on every step, keeps what it provisioned in a local
//! store so it can reconcile after a crash or reboot, and reports signed results.

pub mod api;
mod backoff;
pub mod capacity;
pub mod console;
pub mod engine;
pub mod flist;
mod follow;
pub mod hypervisor;
pub mod identity;
pub mod network;
pub mod provision;
pub mod report;
pub mod runtime;
mod source;
pub mod store;
pub mod vm;
pub mod workloads;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::mpsc;
use zgrid_client::{ExplorerClient, HttpClient};
use zgrid_serve::TlsFiles;
use zgrid_types::directory::{Location, NodeHeartbeat, NodeRegistration};
use zgrid_types::invitation::FarmInvitation;
use zgrid_types::{FarmId, Signed};

use crate::engine::{Engine, EngineConfig};
use crate::hypervisor::Hypervisor;
use crate::store::Store;
use crate::workloads::Workloads;

/// Node agent settings.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Where the node keeps its key, its store and its workloads' files.
    pub state_dir: PathBuf,
    /// The explorer's URL, or several explorers sharing one database separated by commas: the
    /// agent moves on to the next when the one in use cannot be reached, and resumes its feed
    /// there from where it stopped.
    pub explorer: String,
    /// The farm this node belongs to.
    pub farm_id: FarmId,
    /// The farm owner's consent (`zgrid farm invite`), needed the first time the node
    /// registers in this farm; ignored by the explorer once it is a member.
    pub farm_invitation: Option<Signed<FarmInvitation>>,
    /// Host name to register.
    pub hostname: String,
    /// Where the node is.
    pub location: Location,
    /// Public address for WireGuard peers, if any.
    pub public_endpoint: Option<IpAddr>,
    /// Where the node's own API (workload logs) listens.
    pub api_listen: SocketAddr,
    /// The API's certificate and key, to serve it over TLS (plain HTTP without).
    pub api_tls: Option<TlsFiles>,
    /// The API's URL as deployers reach it; by default `http://` (`https://` with TLS) the
    /// listen address, or, when that is a wildcard, the address this machine reaches the
    /// explorer from.
    pub api_url: Option<String>,
    /// How the agent reaches the explorer and hubs: trusted CAs and time limits.
    pub http: HttpClient,
    /// How often the node reports its used capacity and hypervisor.
    pub heartbeat: Duration,
    /// Which hypervisor VMs use, sent with every heartbeat; the VM runtime sets it through a
    /// clone of this handle.
    pub hypervisor: Hypervisor,
    /// Engine settings.
    pub engine: EngineConfig,
}

/// Run the agent, provisioning with `workloads`, until `shutdown` resolves.
pub async fn run(config: NodeConfig, workloads: Workloads, shutdown: impl Future<Output = ()>) -> Result<()> {
    if let (Some(url), Some(_)) = (&config.api_url, &config.api_tls)
        && !url.starts_with("https://")
    {
        anyhow::bail!("the node API serves TLS, so --api-url {url} must start with https://");
    }
    let key = identity::load_or_create(&config.state_dir)?;
    let explorer = ExplorerClient::with_http(&config.explorer, &config.http)?.with_key(key.clone());
    let total = capacity::total(&config.state_dir)?;
    let tcp = tokio::net::TcpListener::bind(config.api_listen).await.with_context(|| {
        format!("cannot listen on {} for the node API; pick another --api-listen", config.api_listen)
    })?;
    let listener = zgrid_serve::Listener::new(tcp, config.api_tls.as_ref()).context("cannot serve the node API")?;
    let api_url = match config.api_url.clone() {
        Some(url) => url,
        None => advertised_url(listener.scheme(), listener.local_addr()?, explorer.base_urls()[0])?,
    };
    let registration = NodeRegistration {
        farm_id: config.farm_id,
        hostname: config.hostname.clone(),
        total,
        location: config.location.clone(),
        public_endpoint: config.public_endpoint,
        api_url: Some(api_url.clone()),
        version: env!("CARGO_PKG_VERSION").into(),
        farm_invitation: config.farm_invitation.clone(),
    };
    register(&explorer, &registration).await?;
    tracing::info!(node = %key.public(), cru = total.cru, mru = total.mru, sru = total.sru, api = %api_url, "node registered");

    let store = Store::open(config.state_dir.join("workloads")).context("cannot open the workload store")?;
    let state = api::ApiState {
        node_id: key.public(),
        store: store.clone(),
        runtime: workloads.runtime().clone(),
        vms: workloads.vms().cloned(),
        nonces: api::UsedNonces::default(),
    };
    let server = tokio::spawn(api::serve(listener, state));
    let probe = workloads.hypervisor();
    let hypervisor = config.hypervisor.clone();
    let probe = tokio::spawn(async move {
        let description = probe.await;
        tracing::info!(hypervisor = %description, "VMs");
        hypervisor.set(Some(description));
    });
    let reporter = report::Reporter::start(key.clone(), explorer.clone());
    // What heartbeats say that does not change while the agent runs.
    let fixed = NodeHeartbeat {
        used: Default::default(),
        hypervisor: None,
        wireguard: Some(workloads.wireguard()),
        public_ipv6: workloads.outside_prefix(network::Reach::PublicIpv6),
        yggdrasil: workloads.outside_prefix(network::Reach::Yggdrasil),
    };
    let engine = Engine::new(explorer.clone(), reporter, key, store, workloads, total, config.engine.clone())?;
    let used = engine.used();
    let (tx, rx) = mpsc::channel(1024);
    let follower = tokio::spawn(follow::follow(explorer.clone(), tx));
    let beats = tokio::spawn(heartbeats(explorer, used, config.hypervisor.clone(), fixed, config.heartbeat));
    tokio::select! {
        () = engine.run(rx) => {}
        () = shutdown => tracing::info!("node agent stopping; workloads keep running"),
    }
    follower.abort();
    beats.abort();
    probe.abort();
    server.abort();
    Ok(())
}

/// `scheme://` the API's listen address; for a wildcard address, the local address of the
/// route to the (first) explorer (no packet is sent).
fn advertised_url(scheme: &str, listen: SocketAddr, explorer: &str) -> Result<String> {
    if !listen.ip().is_unspecified() {
        return Ok(format!("{scheme}://{listen}"));
    }
    let url = url::Url::parse(explorer).with_context(|| format!("{explorer:?} is not a URL"))?;
    let host = url.host_str().context("the explorer URL has no host")?;
    let port = url.port_or_known_default().unwrap_or(80);
    let target = std::net::ToSocketAddrs::to_socket_addrs(&(host.trim_matches(['[', ']']), port))
        .with_context(|| format!("cannot resolve the explorer host {host}"))?
        .next()
        .with_context(|| format!("the explorer host {host} has no address"))?;
    let bind: SocketAddr = if target.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
    let probe = std::net::UdpSocket::bind(bind)?;
    probe.connect(target).with_context(|| format!("no route to the explorer at {target}"))?;
    Ok(format!("{scheme}://{}", SocketAddr::new(probe.local_addr()?.ip(), listen.port())))
}

/// Register, retrying until the explorer takes it (it may not be up yet). A refusal that
/// waiting cannot fix (no farm, no consent of the farm's owner, a bad field) is returned.
async fn register(explorer: &ExplorerClient, registration: &NodeRegistration) -> Result<()> {
    let mut backoff = backoff::Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
    loop {
        let e = match explorer.register_node(registration).await {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        if matches!(e.status(), Some(403 | 422)) {
            return Err(e)
                .context(format!("the explorer refused to register this node in farm {}", registration.farm_id));
        }
        let wait = backoff.next();
        tracing::warn!(error = %e, "registration failed; retrying in {wait:?}");
        tokio::time::sleep(wait).await;
    }
}

/// Report the capacity in use and the hypervisor, with what `fixed` says (the WireGuard
/// backend, the public IPv6 prefix), every `every`.
async fn heartbeats(
    explorer: ExplorerClient,
    used: tokio::sync::watch::Receiver<zgrid_types::directory::Capacity>,
    hypervisor: Hypervisor,
    fixed: NodeHeartbeat,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let beat = NodeHeartbeat { used: *used.borrow(), hypervisor: hypervisor.get(), ..fixed.clone() };
        if let Err(e) = explorer.heartbeat(&beat).await {
            tracing::warn!(error = %e, "heartbeat failed");
        }
    }
}
