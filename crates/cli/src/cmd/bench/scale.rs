//! `zgrid bench scale`: the explorer with many nodes connected (issue 17). Runs `zgrid explorer`
//! processes of this binary on loopback (one on SQLite, or several sharing a PostgreSQL
//! database), so their memory and CPU can be read from `/proc`, and simulates the nodes in this
//! process: each registers with its own key (signed, with the farm owner's invitation), holds
//! its feed open, sends a heartbeat every 30 s (the nodes spread evenly over the interval) and
//! a signed result for each workload its feed brings. Then:
//! 1. deployers create the workloads (volumes) on random nodes, through the explorers in turn,
//!    `--concurrency` at a time: accepted per second;
//! 2. creates one at a time on random nodes, each timed from the explorer's `201` to the event
//!    on that node's feed;
//! 3. nothing but the heartbeats for a while: each explorer's resident memory and CPU with
//!    every feed open, and what the heartbeats cost;
//! 4. the listings of `lists.rs` (`GET /v1/nodes` filters, `GET /v1/workloads?owner=` pages)
//!    timed on the full grid.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;
use zgrid_client::{ClientResult, ExplorerClient, HttpOptions};
use zgrid_types::api::{FeedEvent, MAX_RESULTS, WorkloadState};
use zgrid_types::directory::{FarmRegistration, NodeHeartbeat};
use zgrid_types::{FarmId, Keypair, ResultState, Signed, UserId, WorkloadId, WorkloadResult};

use super::{node_registration, round, summary, volume};
use crate::config::Ctx;
use crate::output;

/// How often a node sends a heartbeat (what `zgrid node` sets).
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(30);
/// Countries the nodes are in, in turn (the listings filter on them).
const COUNTRIES: [&str; 5] = ["BE", "NL", "DE", "EG", "US"];
/// Deployers owning the workloads, in turn.
const DEPLOYERS: usize = 10;
/// A timed create not on its node's feed this long after its acceptance is counted as missed.
const LATENCY_LIMIT: Duration = Duration::from_secs(2);
/// Timing stops after this many misses (a feed that does not deliver would take too long).
const MAX_MISSES: usize = 20;
/// Open files kept for this process's own use besides one connection per node.
const SPARE_FILES: u64 = 4096;

/// What to run.
pub struct Options {
    /// Simulated nodes.
    pub nodes: usize,
    /// Workloads to create in the throughput phase.
    pub workloads: usize,
    /// Explorer processes.
    pub explorers: u16,
    /// SQLite file or PostgreSQL server URL.
    pub db: Option<String>,
    /// Requests in flight while filling.
    pub concurrency: usize,
    /// Creates timed from acceptance to the node's feed.
    pub samples: usize,
    /// How long the explorers are watched with every feed idle.
    pub idle: Duration,
    /// Loads of each listing timed at the end (none when 0).
    pub query_loads: usize,
}

/// Run the bench and print its report; the explorer processes and a database made for the
/// run are gone afterwards, also after an error or Ctrl-C.
pub async fn run(ctx: &Ctx, options: Options) -> Result<()> {
    // Dropping the bench ends the explorer processes and drops the database, also on Ctrl-C.
    tokio::select! {
        result = bench(ctx, options) => result,
        _ = tokio::signal::ctrl_c() => bail!("interrupted; the explorers were stopped"),
    }
}

/// The whole run: set up, the four phases, tear down, report.
async fn bench(ctx: &Ctx, o: Options) -> Result<()> {
    ensure!(o.nodes > 0 && o.concurrency > 0, "--nodes and --concurrency must be at least 1");
    let postgres = o.db.as_deref().is_some_and(|db| db.starts_with("postgres://") || db.starts_with("postgresql://"));
    if o.explorers > 1 && !postgres {
        bail!(
            "--explorers {} needs a database they share: --db postgres://user:password@host/db (a PostgreSQL \
             server; a new database is made on it for the run). An SQLite file serves one explorer",
            o.explorers
        );
    }
    raise_open_files(o.nodes as u64 + SPARE_FILES)?;

    // The database, the explorers, the farm and the deployers.
    let dir = tempfile::tempdir()?;
    let pg = match (&o.db, postgres) {
        (Some(server), true) => Some(PgDatabase::create(server).await?),
        _ => None,
    };
    let database = match (&pg, &o.db) {
        (Some(pg), _) => pg.url.clone(),
        (None, Some(path)) => path.clone(),
        (None, None) => dir.path().join("explorer.sqlite").display().to_string(),
    };
    let grid = Grid::start(&database, o.explorers).await?;

    // The nodes follow their feeds and beat until `tasks` is dropped.
    let tally = Arc::new(Tally::default());
    let mut tasks = tokio::task::JoinSet::new();
    let (nodes, join) = grid.join(o.nodes, o.concurrency, &tally, &mut tasks).await?;
    let deploy = grid.deploy(&nodes, o.workloads, o.concurrency, &tally).await?;
    let feed_latency = grid.time_feed(&nodes, o.samples, &tally).await;
    let idle = grid.watch_idle(&nodes, o.idle, &tally).await?;
    // Timings of `GET /v1/nodes` filters and `GET /v1/workloads?owner=` listings on this full
    // grid (`lists.rs`), through the first explorer, as one of the deployers.
    let queries = if o.query_loads > 0 {
        eprintln!("timing listings, {} loads each…", o.query_loads);
        super::lists::time_queries(&grid.clients[0], grid.deployers[0].id, o.query_loads).await?
    } else {
        Value::Null
    };

    // Stop the nodes, then the explorers; the database goes with `pg`.
    tasks.shutdown().await;
    let explorers = grid.clients.len();
    grid.stop().await;
    drop(pg);

    let report = json!({
        "database": if postgres { "postgresql" } else { "sqlite" },
        "explorers": explorers,
        "nodes": o.nodes,
        "workloads": o.workloads,
        "concurrency": o.concurrency,
        "load_average": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split(' ').take(3).collect::<Vec<_>>().join(" "),
        "join": join,
        "deploy": deploy,
        "feed_latency": feed_latency,
        "idle": idle,
        "queries": queries,
        "first_node_error": tally.first_error.lock().expect("lock").clone(),
    });
    if ctx.json {
        return output::json(&report);
    }
    print_report(&report);
    Ok(())
}

/// The explorers, a farm and the deployers.
struct Grid {
    explorers: Vec<ExplorerProcess>,
    /// A client of each explorer, signing with no key.
    clients: Vec<ExplorerClient>,
    farmer: Keypair,
    farm: FarmId,
    deployers: Vec<Deployer>,
}

impl Grid {
    /// Start `explorers` explorer processes on `database`, one after the other (the first
    /// migrates it), and register a farmer with a farm and the deployers.
    async fn start(database: &str, explorers: u16) -> Result<Self> {
        let mut processes = Vec::new();
        for _ in 0..explorers {
            processes.push(ExplorerProcess::start(database).await?);
        }
        let http = HttpOptions::default().client()?;
        let clients: Vec<ExplorerClient> =
            processes.iter().map(|e| ExplorerClient::with_http(&e.url, &http)).collect::<ClientResult<_>>()?;
        let farmer = Keypair::from_seed(&rand::random());
        let farmer_client = clients[0].clone().with_key(farmer.clone());
        farmer_client.register_user(&format!("farmer{:08x}", rand::random::<u32>()), "").await?;
        let farm = farmer_client
            .create_farm(&FarmRegistration { name: format!("farm{:08x}", rand::random::<u32>()), public_ips: vec![] })
            .await?;
        let mut deployers = Vec::with_capacity(DEPLOYERS);
        for n in 0..DEPLOYERS {
            let key = Keypair::from_seed(&rand::random());
            let client = clients[n % clients.len()].clone().with_key(key.clone());
            let user = client.register_user(&format!("deployer{n}x{:08x}", rand::random::<u32>()), "").await?;
            let through: Vec<ExplorerClient> = clients.iter().map(|c| c.clone().with_key(key.clone())).collect();
            deployers.push(Deployer { id: user.id, key, through });
        }
        Ok(Self { explorers: processes, clients, farmer, farm: farm.id, deployers })
    }

    /// Kill the explorers and wait until they are gone.
    async fn stop(self) {
        for e in self.explorers {
            e.stop().await;
        }
    }

    /// Register `count` nodes, `concurrency` at a time, each on the explorers in turn, and open
    /// their feeds; each then follows its feed and beats in `tasks`. The nodes, and how joining
    /// went.
    async fn join(
        &self,
        count: usize,
        concurrency: usize,
        tally: &Arc<Tally>,
        tasks: &mut tokio::task::JoinSet<()>,
    ) -> Result<(Vec<Arc<SimNode>>, Value)> {
        let started = Instant::now();
        let mut nodes: Vec<Arc<SimNode>> = Vec::with_capacity(count);
        let mut progress = Progress::new("registering nodes and opening their feeds", count);
        let mut joining = futures::stream::iter((0..count).map(|n| {
            let key = Keypair::from_seed(&rand::random());
            let explorer = n % self.clients.len();
            let node = SimNode { explorer, client: self.clients[explorer].clone().with_key(key.clone()), key };
            let mut reg = node_registration(&self.farmer, self.farm, &node.key, format!("sim{n}"));
            reg.location.country = COUNTRIES[n % COUNTRIES.len()].into();
            async move {
                node.client.register_node(&reg).await?;
                let feed = node.client.feed(0).await?.boxed();
                ClientResult::Ok((n, node, feed))
            }
        }))
        .buffer_unordered(concurrency);
        let (mut failures, mut first_error) = (0, None);
        while let Some(joined) = joining.next().await {
            progress.tick();
            match joined {
                Ok((n, node, feed)) => {
                    let node = Arc::new(node);
                    tally.connected.fetch_add(1, Ordering::Relaxed);
                    // Node n beats first at n/count of the interval after the start, then
                    // every 30 s: the beats are spread evenly.
                    let mut first = started + HEARTBEAT_INTERVAL.mul_f64(n as f64 / count as f64);
                    while first < Instant::now() {
                        first += HEARTBEAT_INTERVAL;
                    }
                    tasks.spawn(heartbeats(node.clone(), first, tally.clone()));
                    tasks.spawn(follow(node.clone(), feed, tally.clone()));
                    nodes.push(node);
                }
                Err(e) => {
                    failures += 1;
                    first_error.get_or_insert(e.to_string());
                }
            }
        }
        let took = started.elapsed();
        if nodes.is_empty() {
            bail!("no node could register: {}", first_error.unwrap_or_default());
        }
        if let Some(e) = &first_error {
            eprintln!("warning: {failures} nodes could not join, first: {e}");
        }
        let report = json!({
            "joined": nodes.len(),
            "failures": failures,
            "first_error": first_error,
            "seconds": round(took.as_secs_f64()),
            "per_second": round(nodes.len() as f64 / took.as_secs_f64()),
        });
        Ok((nodes, report))
    }

    /// The deployers' load: `count` workloads on random nodes, through the explorers in turn,
    /// `concurrency` at a time; then wait for them on the nodes' feeds and for the results.
    async fn deploy(&self, nodes: &[Arc<SimNode>], count: usize, concurrency: usize, tally: &Tally) -> Result<Value> {
        eprintln!("signing {count} workloads…");
        let signed: Vec<_> = (0..count)
            .map(|k| {
                let deployer = &self.deployers[k % DEPLOYERS];
                let node = &nodes[rand::random_range(0..nodes.len())];
                volume(deployer.id, &deployer.key, node.key.public())
            })
            .collect();
        let delivered_before = tally.delivered.load(Ordering::Relaxed);
        let cpu_before = cpu_times(&self.explorers)?;
        let started = Instant::now();
        let mut progress = Progress::new("creating workloads", count);
        let explorers = self.clients.len();
        let mut creating = futures::stream::iter(
            signed
                .iter()
                .enumerate()
                .map(|(k, w)| self.deployers[k % DEPLOYERS].through[k % explorers].create_workload(w)),
        )
        .buffer_unordered(concurrency);
        let (mut accepted, mut failures, mut first_error) = (0_u64, 0_u64, None);
        while let Some(created) = creating.next().await {
            progress.tick();
            match created {
                Ok(_) => accepted += 1,
                Err(e) => {
                    failures += 1;
                    first_error.get_or_insert(e.to_string());
                }
            }
        }
        drop(creating);
        let took = started.elapsed();
        let cpu = cpu_percent(&cpu_before, &cpu_times(&self.explorers)?, took);
        if let Some(e) = &first_error {
            eprintln!("warning: {failures} creates failed, first: {e}");
        }
        // Every accepted workload should reach its node, and its result the explorer.
        let delivered = || tally.delivered.load(Ordering::Relaxed) - delivered_before;
        let all_delivered = settle(|| delivered() >= accepted).await;
        let drain = started.elapsed() - took;
        let delivered = delivered();
        let results_done = settle(|| {
            tally.results.load(Ordering::Relaxed) + tally.result_failures.load(Ordering::Relaxed)
                >= tally.delivered.load(Ordering::Relaxed)
        })
        .await;
        Ok(json!({
            "accepted": accepted,
            "failures": failures,
            "first_error": first_error,
            "seconds": round(took.as_secs_f64()),
            "accepted_per_second": round(accepted as f64 / took.as_secs_f64()),
            "explorer_cpu_percent": cpu.iter().map(|c| round(*c)).collect::<Vec<_>>(),
            "delivered": delivered,
            "all_delivered": all_delivered,
            "delivered_after_last_acceptance_seconds": round(drain.as_secs_f64()),
            "results_sent": tally.results.load(Ordering::Relaxed),
            "result_failures": tally.result_failures.load(Ordering::Relaxed),
            "results_done": results_done,
            "result_requests": tally.result_batches.load(Ordering::Relaxed),
        }))
    }

    /// Feed latency: `samples` creates one at a time on random nodes, through the explorers in
    /// turn, each timed from its acceptance (and from its sending) to its node's feed.
    async fn time_feed(&self, nodes: &[Arc<SimNode>], samples: usize, tally: &Tally) -> Value {
        eprintln!("timing up to {samples} creates from acceptance to the node's feed…");
        let (mut accept_to_node, mut submit_to_node) = (Vec::new(), Vec::new());
        let (mut misses, mut cross_misses, mut failures) = (0, 0, 0);
        for k in 0..samples {
            if misses >= MAX_MISSES {
                break;
            }
            let deployer = &self.deployers[k % DEPLOYERS];
            let node = &nodes[rand::random_range(0..nodes.len())];
            let through = k % self.clients.len();
            let w = volume(deployer.id, &deployer.key, node.key.public());
            let (tx, rx) = tokio::sync::oneshot::channel();
            tally.waiting.lock().expect("lock").insert(w.payload.id.clone(), tx);
            let sent = Instant::now();
            if deployer.through[through].create_workload(&w).await.is_err() {
                failures += 1;
                tally.waiting.lock().expect("lock").remove(&w.payload.id);
                continue;
            }
            let acked = Instant::now();
            match tokio::time::timeout(LATENCY_LIMIT, rx).await {
                Ok(Ok(arrived)) => {
                    accept_to_node.push(arrived.saturating_duration_since(acked));
                    submit_to_node.push(arrived - sent);
                }
                _ => {
                    tally.waiting.lock().expect("lock").remove(&w.payload.id);
                    misses += 1;
                    cross_misses += usize::from(node.explorer != through);
                }
            }
        }
        json!({
            "timed": accept_to_node.len(),
            "failed_creates": failures,
            "missed": misses,
            "missed_across_explorers": cross_misses,
            "limit_ms": LATENCY_LIMIT.as_millis() as u64,
            "acceptance_to_node": summary(&mut accept_to_node),
            "submit_to_node": summary(&mut submit_to_node),
        })
    }

    /// Every feed open, heartbeats the only load: each explorer's memory and CPU over `idle`,
    /// and the heartbeats' rate and cost.
    async fn watch_idle(&self, nodes: &[Arc<SimNode>], idle: Duration, tally: &Tally) -> Result<Value> {
        eprintln!("watching the explorers idle for {} s…", idle.as_secs_f64());
        // Let the last results land first.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (beats_before, failures_before) =
            (tally.heartbeats.load(Ordering::Relaxed), tally.heartbeat_failures.load(Ordering::Relaxed));
        let cpu_before = cpu_times(&self.explorers)?;
        let started = Instant::now();
        tokio::time::sleep(idle).await;
        let took = started.elapsed();
        let cpu_after = cpu_times(&self.explorers)?;
        let beats = tally.heartbeats.load(Ordering::Relaxed) - beats_before;
        let failures = tally.heartbeat_failures.load(Ordering::Relaxed) - failures_before;
        let cpu = cpu_percent(&cpu_before, &cpu_after, took);
        let mut each = Vec::new();
        for (n, e) in self.explorers.iter().enumerate() {
            each.push(json!({
                "pid": e.pid,
                "feeds": nodes.iter().filter(|node| node.explorer == n).count(),
                "rss_mib": round(rss_mib(e.pid)?),
                "cpu_percent": round(cpu[n]),
            }));
        }
        let all_cpu: Duration = cpu_after.iter().zip(&cpu_before).map(|(a, b)| a.saturating_sub(*b)).sum();
        Ok(json!({
            "seconds": round(took.as_secs_f64()),
            "feeds_open": tally.connected.load(Ordering::Relaxed),
            "feed_reconnects": tally.reconnects.load(Ordering::Relaxed),
            "explorers": each,
            "explorer_cpu_percent": round(100.0 * all_cpu.as_secs_f64() / took.as_secs_f64()),
            "heartbeats_per_second": round(beats as f64 / took.as_secs_f64()),
            "heartbeat_failures": failures,
            "explorer_cpu_ms_per_heartbeat": if beats > 0 { round(1000.0 * all_cpu.as_secs_f64() / beats as f64) } else { 0.0 },
            "bench_rss_mib": round(rss_mib(std::process::id())?),
        }))
    }
}

/// A short table for people.
fn print_report(r: &Value) {
    let f = |v: &Value| v.as_f64().unwrap_or_default();
    let lat = &r["feed_latency"]["acceptance_to_node"];
    println!(
        "{} on {} explorer(s), {} nodes, {} workloads, {} in flight (load average {})",
        r["database"].as_str().unwrap_or_default(),
        r["explorers"],
        r["join"]["joined"],
        r["deploy"]["accepted"],
        r["concurrency"],
        r["load_average"].as_str().unwrap_or_default(),
    );
    let rows = [
        ("nodes joined (register + feed) /s", format!("{:.1}", f(&r["join"]["per_second"]))),
        (
            "workloads accepted /s",
            format!("{:.1} ({} failed)", f(&r["deploy"]["accepted_per_second"]), r["deploy"]["failures"]),
        ),
        (
            "  explorer CPU % meanwhile",
            r["deploy"]["explorer_cpu_percent"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| format!("{:.1}", f(c)))
                .collect::<Vec<_>>()
                .join(" + "),
        ),
        (
            "  delivered to feeds",
            format!(
                "{} ({:.1} s after the last acceptance{})",
                r["deploy"]["delivered"],
                f(&r["deploy"]["delivered_after_last_acceptance_seconds"]),
                if r["deploy"]["all_delivered"].as_bool() == Some(true) { "" } else { ", NOT ALL" }
            ),
        ),
        (
            "  results accepted (requests)",
            format!(
                "{} ({}; {} failed)",
                r["deploy"]["results_sent"], r["deploy"]["result_requests"], r["deploy"]["result_failures"]
            ),
        ),
        (
            "acceptance -> feed p50 / p99 ms",
            format!(
                "{:.1} / {:.1} ({} timed, {} missed)",
                f(&lat["p50_ms"]),
                f(&lat["p99_ms"]),
                r["feed_latency"]["timed"],
                r["feed_latency"]["missed"]
            ),
        ),
        ("feeds open, idle", format!("{}", r["idle"]["feeds_open"])),
        (
            "heartbeats /s",
            format!("{:.1} ({} failed)", f(&r["idle"]["heartbeats_per_second"]), r["idle"]["heartbeat_failures"]),
        ),
        (
            "explorer CPU % idle (all)",
            format!(
                "{:.1} ({:.2} ms a heartbeat)",
                f(&r["idle"]["explorer_cpu_percent"]),
                f(&r["idle"]["explorer_cpu_ms_per_heartbeat"])
            ),
        ),
    ];
    for (what, value) in rows {
        println!("{what:<36} {value}");
    }
    for e in r["idle"]["explorers"].as_array().into_iter().flatten() {
        println!(
            "explorer pid {:<7} {:>6} feeds {:>8.1} MiB RSS {:>6.1} % CPU idle",
            e["pid"].as_u64().unwrap_or_default(),
            e["feeds"],
            f(&e["rss_mib"]),
            f(&e["cpu_percent"])
        );
    }
    for q in r["queries"].as_array().into_iter().flatten() {
        println!(
            "{:<48} {:>7} matches {:>8.1} ms p50 {:>8.1} ms p99",
            format!("{} ({})", q["query"].as_str().unwrap_or_default(), q["page"].as_str().unwrap_or_default()),
            q["matches"],
            f(&q["load"]["p50_ms"]),
            f(&q["load"]["p99_ms"])
        );
    }
}

/// A deployer, with a client for each explorer.
struct Deployer {
    id: UserId,
    key: Keypair,
    through: Vec<ExplorerClient>,
}

/// A simulated node: its key and a client of its explorer signing with it.
struct SimNode {
    key: Keypair,
    client: ExplorerClient,
    /// Which explorer it uses.
    explorer: usize,
}

/// What the simulated nodes report to the bench.
#[derive(Default)]
struct Tally {
    /// Feeds open now.
    connected: AtomicI64,
    /// New workloads that arrived on a feed.
    delivered: AtomicU64,
    /// Results the explorers accepted, and refused or failed.
    results: AtomicU64,
    result_failures: AtomicU64,
    /// Requests that carried results.
    result_batches: AtomicU64,
    /// Heartbeats the explorers accepted, and refused or failed.
    heartbeats: AtomicU64,
    heartbeat_failures: AtomicU64,
    /// Feeds that ended or failed and were opened again.
    reconnects: AtomicU64,
    /// Workloads being timed: told when each arrives.
    waiting: Mutex<HashMap<WorkloadId, tokio::sync::oneshot::Sender<Instant>>>,
    /// The first thing that went wrong for a node.
    first_error: Mutex<Option<String>>,
}

impl Tally {
    fn note(&self, what: &str, e: impl std::fmt::Display) {
        self.first_error.lock().expect("lock").get_or_insert_with(|| format!("{what}: {e}"));
    }
}

/// Follow a node's feed for ever: note each new workload and report a signed `ok` result for
/// it, reopening the feed from the last cursor when it ends.
async fn follow(node: Arc<SimNode>, mut feed: BoxStream<'static, ClientResult<FeedEvent>>, tally: Arc<Tally>) {
    let mut cursor = 0;
    loop {
        let mut broken = false;
        let mut results = Vec::new();
        match feed.next().await {
            Some(Ok(event)) => {
                cursor = event.cursor;
                results.extend(arrived(&node, event, &tally));
                // Take what else is there already, to report it together.
                loop {
                    match feed.next().now_or_never() {
                        Some(Some(Ok(event))) => {
                            cursor = event.cursor;
                            results.extend(arrived(&node, event, &tally));
                        }
                        Some(_) => {
                            broken = true;
                            break;
                        }
                        None => break,
                    }
                }
            }
            Some(Err(e)) => {
                tally.note("feed", e);
                broken = true;
            }
            None => broken = true,
        }
        report(&node, results, &tally).await;
        if broken {
            tally.connected.fetch_sub(1, Ordering::Relaxed);
            feed = loop {
                tally.reconnects.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(500 + rand::random_range(0..1000))).await;
                match node.client.feed(cursor).await {
                    Ok(feed) => break feed.boxed(),
                    Err(e) => tally.note("reopening a feed", e),
                }
            };
            tally.connected.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Note a feed event; a new workload gets its result.
fn arrived(node: &SimNode, event: FeedEvent, tally: &Tally) -> Option<Signed<WorkloadResult>> {
    let now = Instant::now();
    let record = event.record;
    if record.state != WorkloadState::Active || record.result.is_some() {
        return None;
    }
    let spec = &record.workload.payload;
    if let Some(waiting) = tally.waiting.lock().expect("lock").remove(&spec.id) {
        let _ = waiting.send(now);
    }
    tally.delivered.fetch_add(1, Ordering::Relaxed);
    let result = WorkloadResult {
        workload_id: spec.id.clone(),
        version: spec.version,
        node_id: node.key.public(),
        state: ResultState::Ok,
        message: String::new(),
        data: json!({}),
        timestamp: zgrid_types::unix_now(),
    };
    Some(Signed::sign(result, &node.key))
}

/// Send a node's results, all it has in one request (`POST /v1/nodes/{id}/results`).
async fn report(node: &SimNode, results: Vec<Signed<WorkloadResult>>, tally: &Tally) {
    for batch in results.chunks(MAX_RESULTS) {
        match node.client.post_results(batch).await {
            Ok(receipt) => {
                tally.results.fetch_add(u64::from(receipt.accepted), Ordering::Relaxed);
                tally.result_batches.fetch_add(1, Ordering::Relaxed);
                if let Some(refused) = receipt.refused.first() {
                    tally.note("result refused", &refused.error);
                    tally.result_failures.fetch_add(receipt.refused.len() as u64, Ordering::Relaxed);
                }
            }
            Err(e) => {
                tally.note("results", e);
                tally.result_failures.fetch_add(batch.len() as u64, Ordering::Relaxed);
            }
        }
    }
}

/// A heartbeat at `first`, then every 30 s, for ever.
async fn heartbeats(node: Arc<SimNode>, first: Instant, tally: Arc<Tally>) {
    let mut tick = tokio::time::interval_at(first.into(), HEARTBEAT_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let beat = NodeHeartbeat::default();
    loop {
        tick.tick().await;
        match node.client.heartbeat(&beat).await {
            Ok(()) => tally.heartbeats.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                tally.note("heartbeat", e);
                tally.heartbeat_failures.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

/// Wait until `done`, for 60 s at most; whether it is.
async fn settle(done: impl Fn() -> bool) -> bool {
    let started = Instant::now();
    while !done() && started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    done()
}

/// Progress of a long phase on stderr, every tenth.
struct Progress {
    what: &'static str,
    total: usize,
    done: usize,
    started: Instant,
}

impl Progress {
    fn new(what: &'static str, total: usize) -> Self {
        eprintln!("{what}: 0/{total}");
        Self { what, total, done: 0, started: Instant::now() }
    }

    fn tick(&mut self) {
        self.done += 1;
        let step = self.total.div_ceil(10).max(1);
        if self.done.is_multiple_of(step) || self.done == self.total {
            let rate = self.done as f64 / self.started.elapsed().as_secs_f64();
            eprintln!("{}: {}/{} ({rate:.0}/s)", self.what, self.done, self.total);
        }
    }
}

/// A `zgrid explorer` process of this binary on a free loopback port, killed when dropped.
struct ExplorerProcess {
    child: tokio::process::Child,
    pid: u32,
    url: String,
    /// Its standard output, kept open so that writing to it never fails.
    _stdout: tokio::io::BufReader<tokio::process::ChildStdout>,
}

impl ExplorerProcess {
    /// Start one on `database` and wait until it listens.
    async fn start(database: &str) -> Result<Self> {
        let exe = std::env::current_exe().context("cannot find the zgrid binary to run explorers")?;
        let mut child = tokio::process::Command::new(&exe)
            .args(["explorer", "--listen", "127.0.0.1:0", "--db", database])
            .env("ZGRID_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot run {} explorer", exe.display()))?;
        let pid = child.id().context("the explorer exited at once")?;
        let mut stdout = tokio::io::BufReader::new(child.stdout.take().context("no pipe from the explorer")?);
        let mut line = String::new();
        tokio::time::timeout(Duration::from_secs(120), stdout.read_line(&mut line))
            .await
            .context("the explorer did not listen within 120 s")??;
        let url = line
            .trim()
            .strip_prefix("explorer listening on ")
            .with_context(|| format!("the explorer did not start (it said {line:?}; its error is above)"))?
            .to_owned();
        Ok(Self { child, pid, url, _stdout: stdout })
    }

    /// Kill it and wait until it is gone.
    async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// CPU time (user and system) each explorer has used so far.
fn cpu_times(explorers: &[ExplorerProcess]) -> Result<Vec<Duration>> {
    explorers.iter().map(|e| cpu_time(e.pid)).collect()
}

/// Each explorer's CPU use between `before` and `after`, `wall` apart, in % of one core.
fn cpu_percent(before: &[Duration], after: &[Duration], wall: Duration) -> Vec<f64> {
    before.iter().zip(after).map(|(b, a)| 100.0 * a.saturating_sub(*b).as_secs_f64() / wall.as_secs_f64()).collect()
}

/// CPU time (user and system) process `pid` has used, from `/proc/<pid>/stat`.
fn cpu_time(pid: u32) -> Result<Duration> {
    let path = PathBuf::from(format!("/proc/{pid}/stat"));
    let stat = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    // Fields after the command name (which may hold spaces, in parentheses): state is the
    // third field of the line, utime the 14th and stime the 15th.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default().split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    let (Some(user), Some(system)) = (ticks(11), ticks(12)) else {
        bail!("cannot parse {}: {stat:?}", path.display());
    };
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100).max(1) as f64;
    Ok(Duration::from_secs_f64((user + system) as f64 / hz))
}

/// Resident memory of process `pid` in MiB, from `/proc/<pid>/status`.
fn rss_mib(pid: u32) -> Result<f64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .with_context(|| format!("no VmRSS in {path}"))?;
    Ok(kib / 1024.0)
}

/// Allow this process (and the explorers it starts, which inherit it) `wanted` open files:
/// one connection per simulated node.
fn raise_open_files(wanted: u64) -> Result<()> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).context("cannot read the open files limit")?;
    if soft >= wanted {
        return Ok(());
    }
    // Raising the hard limit needs root (CAP_SYS_RESOURCE); otherwise go as far as it allows.
    if setrlimit(Resource::RLIMIT_NOFILE, wanted, hard.max(wanted)).is_ok() {
        return Ok(());
    }
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).context("cannot raise the open files limit")?;
    if hard < wanted {
        bail!(
            "{wanted} open files are needed (a connection per node) but the hard limit is {hard}: raise it \
             (ulimit -Hn {wanted} as root, or LimitNOFILE=) or run with fewer --nodes"
        );
    }
    Ok(())
}

/// A database made on a PostgreSQL server for this run, dropped with this value.
struct PgDatabase {
    /// The server URL it was made through.
    admin: String,
    name: String,
    /// The URL of the new database.
    url: String,
}

impl PgDatabase {
    /// Make a new database on the server `admin` names.
    async fn create(admin: &str) -> Result<Self> {
        use sqlx::Connection;
        let name = format!("zgrid_bench_{:016x}", rand::random::<u64>());
        let mut conn = sqlx::PgConnection::connect(admin)
            .await
            .with_context(|| format!("cannot connect to the PostgreSQL server at {}", redact(admin)))?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .with_context(|| format!("cannot create database {name} (the user needs CREATEDB)"))?;
        let _ = conn.close().await;
        let mut url = url::Url::parse(admin).with_context(|| format!("bad database URL {}", redact(admin)))?;
        url.set_path(&format!("/{name}"));
        Ok(Self { admin: admin.to_owned(), name, url: url.to_string() })
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Dropped inside a runtime: use a private one on its own thread.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(&admin).await.map_err(std::io::Error::other)?;
                let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await.map_err(std::io::Error::other)?;
                std::io::Result::Ok(())
            })
        })
        .join();
    }
}

/// A database URL without its password, for messages.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}
