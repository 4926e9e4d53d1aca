//! The engine's decisions, with a recording provisioner (side effects are tested for real in
//! `tests/runtime.rs` and end to end in the CLI suite) and a recording reporter. No explorer is
//! involved: records are fed in as the follower would, and the explorer URL is unreachable.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use zgrid_types::api::{Deletion, WorkloadRecord, WorkloadState};
use zgrid_types::directory::Capacity;
use zgrid_types::workload::{
    Container, ContainerCapacity, DiskType, NetworkConnection, NetworkResource, Volume, VolumeMount,
};
use zgrid_types::{
    DeleteRequest, Keypair, ResultState, Signed, WorkloadData, WorkloadId, WorkloadResult, WorkloadSpec,
};

use super::{Engine, EngineConfig, Input};
use crate::provision::{Exit, Health, Progress, ProvisionError, Provisioner};
use crate::report::Reporter;
use crate::store::Store;

/// What the recording provisioner does for one workload.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Behaviour {
    Succeed,
    /// Never finishes.
    Hang,
    /// Fails transiently this many times, then succeeds.
    FailTransiently(u32),
    FailPermanently,
    /// Succeeds with `"stable": false` in its data, then is as `After` says.
    Unsettled(After),
}

/// How an [`Behaviour::Unsettled`] workload is after it started.
#[derive(Debug, Clone, Copy, PartialEq)]
enum After {
    Runs,
    /// Runs, but its readiness probe fails.
    NotReady,
    /// Stopped at once.
    Exits,
}

#[derive(Default)]
struct Recorded {
    behaviour: HashMap<WorkloadId, Behaviour>,
    health: HashMap<WorkloadId, Health>,
    provisions: HashMap<WorkloadId, u32>,
    removals: HashMap<WorkloadId, u32>,
    /// Removals that fail (this many more times), stopping the workload as they go.
    failing_removals: HashMap<WorkloadId, u32>,
    /// Health checks per workload: the engine checks every running workload once a tick.
    checks: HashMap<WorkloadId, u32>,
    /// Every call, in order: `provision <id>` or `remove <id>`.
    calls: Vec<String>,
}

/// Records calls and acts as told; shared with the test through the `Arc`.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Recorded>>);

impl Recorder {
    fn set(&self, id: &WorkloadId, behaviour: Behaviour) {
        self.0.lock().unwrap().behaviour.insert(id.clone(), behaviour);
    }
    fn fail_removals(&self, id: &WorkloadId, times: u32) {
        self.0.lock().unwrap().failing_removals.insert(id.clone(), times);
    }
    fn set_health(&self, id: &WorkloadId, health: Health) {
        self.0.lock().unwrap().health.insert(id.clone(), health);
    }
    fn provisions(&self, id: &WorkloadId) -> u32 {
        self.0.lock().unwrap().provisions.get(id).copied().unwrap_or(0)
    }
    fn removals(&self, id: &WorkloadId) -> u32 {
        self.0.lock().unwrap().removals.get(id).copied().unwrap_or(0)
    }
    fn calls(&self) -> Vec<String> {
        self.0.lock().unwrap().calls.clone()
    }
    fn checks(&self, id: &WorkloadId) -> u32 {
        self.0.lock().unwrap().checks.get(id).copied().unwrap_or(0)
    }

    /// Wait until the engine has ticked at least twice more, proven by two more health checks of
    /// the running workload `witness`: every tick reconciles every workload before it checks
    /// health, so whatever a tick would do to another workload has been done by then.
    async fn two_more_ticks(&self, witness: &WorkloadId) {
        let target = self.checks(witness) + 2;
        let wait = async {
            while self.checks(witness) < target {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(WAIT, wait).await.unwrap_or_else(|_| panic!("the engine stopped ticking"));
    }
}

impl Provisioner for Recorder {
    async fn provision(
        &self,
        workload: &Signed<WorkloadSpec>,
        progress: Progress<'_>,
    ) -> Result<serde_json::Value, ProvisionError> {
        let id = workload.payload.id.clone();
        let (behaviour, attempt) = {
            let mut r = self.0.lock().unwrap();
            let attempt = *r.provisions.entry(id.clone()).and_modify(|n| *n += 1).or_insert(1);
            r.calls.push(format!("provision {id}"));
            (r.behaviour.get(&id).copied().unwrap_or(Behaviour::Succeed), attempt)
        };
        progress(zgrid_types::result::IMAGE_READY);
        match behaviour {
            Behaviour::Succeed => {}
            Behaviour::Hang => futures::future::pending::<()>().await,
            Behaviour::FailTransiently(n) if attempt <= n => {
                return Err(ProvisionError::Transient(format!("flaky attempt {attempt}")));
            }
            Behaviour::FailTransiently(_) => {}
            Behaviour::FailPermanently => return Err(ProvisionError::Permanent("bad image".into())),
            Behaviour::Unsettled(after) => {
                let health = match after {
                    After::Runs => Health::Running,
                    After::NotReady => Health::NotReady("not listening yet".into()),
                    After::Exits => Health::Stopped("the container exited".into()),
                };
                self.0.lock().unwrap().health.insert(id, health);
                return Ok(serde_json::json!({ "attempt": attempt, "stable": false }));
            }
        }
        self.0.lock().unwrap().health.insert(id, Health::Running);
        Ok(serde_json::json!({ "attempt": attempt }))
    }

    async fn remove(&self, id: &WorkloadId) -> Result<(), String> {
        let mut r = self.0.lock().unwrap();
        *r.removals.entry(id.clone()).or_default() += 1;
        r.calls.push(format!("remove {id}"));
        if let Some(left) = r.failing_removals.get_mut(id).filter(|n| **n > 0) {
            *left -= 1;
            r.health.insert(id.clone(), Health::Stopped("it was shut down".into()));
            return Err("its disk is still busy".into());
        }
        r.health.remove(id);
        Ok(())
    }

    async fn health(&self, id: &WorkloadId) -> Health {
        let mut r = self.0.lock().unwrap();
        *r.checks.entry(id.clone()).or_default() += 1;
        r.health.get(id).cloned().unwrap_or(Health::Missing)
    }

    async fn existing(&self) -> Vec<WorkloadId> {
        self.0.lock().unwrap().health.keys().cloned().collect()
    }

    fn updates_in_place(&self, spec: &WorkloadSpec) -> bool {
        matches!(spec.data, WorkloadData::NetworkResource(_))
    }
}

/// An engine running on its own task, its inputs, results and provisioner.
struct Harness {
    me: Keypair,
    owner: Keypair,
    inputs: mpsc::Sender<Input>,
    results: mpsc::UnboundedReceiver<Signed<WorkloadResult>>,
    /// Every result received so far, in order.
    log: Vec<WorkloadResult>,
    /// Per workload: where in `log` the next [`Harness::result`] about it starts looking.
    taken: HashMap<WorkloadId, usize>,
    recorder: Recorder,
    _dir: tempfile::TempDir,
}

/// How long a test waits for an event that must come (generous: the machine may be loaded).
const WAIT: Duration = Duration::from_secs(30);

fn config() -> EngineConfig {
    EngineConfig {
        step_timeout: Duration::from_millis(500),
        max_attempts: 3,
        retry_base: Duration::from_millis(20),
        tick: Duration::from_millis(50),
        crash_limit: 2,
        settle: Duration::from_millis(100),
    }
}

impl Harness {
    fn start(total: Capacity) -> Self {
        let me = Keypair::from_seed(&rand::random());
        let owner = Keypair::from_seed(&rand::random());
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let recorder = Recorder::default();
        let (reporter, results) = Reporter::recording(me.clone());
        // Only asked about workloads it no longer lists, which these tests never need.
        let explorer = zgrid_client::ExplorerClient::new("http://127.0.0.1:9").unwrap();
        let engine = Engine::new(explorer, reporter, me.clone(), store, recorder.clone(), total, config()).unwrap();
        let (inputs, rx) = mpsc::channel(16);
        tokio::spawn(engine.run(rx));
        Self { me, owner, inputs, results, log: Vec::new(), taken: HashMap::new(), recorder, _dir: dir }
    }

    /// An active container record for this node, signed by the owner, expiring in `ttl` s.
    fn container(&self, memory: u64, ttl: i64) -> WorkloadRecord {
        self.container_with(memory, ttl, vec![])
    }

    /// An active volume record for this node, signed by `owner`.
    fn volume(&self, owner: &Keypair) -> WorkloadRecord {
        let mut record = self.container(64, 3600);
        let mut spec = record.workload.payload;
        spec.owner_key = owner.public();
        spec.data = WorkloadData::Volume(Volume { size: 100, disk_type: DiskType::Ssd });
        record.workload = Signed::sign(spec, owner);
        record
    }

    /// An active record of `owner`'s network resource of network `name` on this node.
    fn network(&self, owner: &Keypair, name: &str) -> WorkloadRecord {
        let mut record = self.container(64, 3600);
        let mut spec = record.workload.payload;
        spec.owner_key = owner.public();
        spec.data = WorkloadData::NetworkResource(NetworkResource {
            name: name.into(),
            network_iprange: "10.20.0.0/16".parse().unwrap(),
            iprange: "10.20.1.0/24".parse().unwrap(),
            wireguard_private_key_encrypted: hex::encode(zgrid_types::sealed::seal(&self.me.public(), &[0; 32])),
            wireguard_public_key: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into(),
            wireguard_listen_port: 0,
            peers: vec![],
            egress: false,
        });
        record.workload = Signed::sign(spec, owner);
        record
    }

    /// Record `record` again as version `version` with a changed description (a version that
    /// only moves the expiry is a renewal), re-signed by the owner.
    fn new_version(&self, record: &WorkloadRecord, version: u32) -> WorkloadRecord {
        let mut spec = record.workload.payload.clone();
        spec.version = version;
        spec.description = format!("version {version}");
        WorkloadRecord { workload: Signed::sign(spec, &self.owner), ..record.clone() }
    }

    /// An active container record that mounts `volumes` at `/data<n>`.
    fn container_with(&self, memory: u64, ttl: i64, volumes: Vec<WorkloadId>) -> WorkloadRecord {
        let volumes = volumes
            .into_iter()
            .enumerate()
            .map(|(n, volume_id)| VolumeMount { volume_id, mountpoint: format!("/data{n}") })
            .collect();
        let spec = WorkloadSpec {
            id: zgrid_client::new_workload_id(),
            version: 1,
            owner: 7,
            owner_key: self.owner.public(),
            node_id: self.me.public(),
            expires_at: zgrid_types::unix_now() + ttl,
            description: String::new(),
            metadata: String::new(),
            data: WorkloadData::Container(Container {
                flist: "/images/busybox".into(),
                hub_url: String::new(),
                flist_hash: String::new(),
                environment: BTreeMap::new(),
                secret_environment: BTreeMap::new(),
                entrypoint: "sleep 1000".into(),
                interactive: false,
                volumes,
                capacity: ContainerCapacity { cpu: 1, memory, disk_size: 256, disk_type: DiskType::Ssd },
                network_connection: vec![],
                logs: vec![],
                stats: vec![],
                probes: Default::default(),
                open_ports: vec![],
            }),
        };
        let now = zgrid_types::unix_now();
        WorkloadRecord {
            workload: Signed::sign(spec, &self.owner),
            state: WorkloadState::Active,
            created_at: now,
            updated_at: now,
            deletion: None,
            result: None,
        }
    }

    async fn send(&self, input: Input) {
        self.inputs.send(input).await.unwrap();
    }

    /// Hand the engine one new record, as the feed would; returns its id.
    async fn submit(&self, record: WorkloadRecord) -> WorkloadId {
        let id = record.workload.payload.id.clone();
        self.send(Input::Change(Box::new(record))).await;
        id
    }

    /// The next result about `id` in `state`, after the last one this returned about `id`
    /// (results in between are skipped; results about other workloads stay for their callers).
    async fn result(&mut self, id: &WorkloadId, state: ResultState) -> WorkloadResult {
        let mut at = self.taken.get(id).copied().unwrap_or(0);
        loop {
            if let Some(found) = self.log[at..].iter().position(|r| &r.workload_id == id && r.state == state) {
                at += found;
                self.taken.insert(id.clone(), at + 1);
                return self.log[at].clone();
            }
            at = self.log.len();
            let next = tokio::time::timeout(WAIT, self.results.recv()).await;
            let next = next.unwrap_or_else(|_| panic!("no {} result for {id}", state.as_str()));
            self.log.push(next.expect("reporter open").payload);
        }
    }

    /// Results about `id` that have arrived since the last one [`Self::result`] returned about
    /// it, without waiting.
    fn later_results(&mut self, id: &WorkloadId) -> Vec<WorkloadResult> {
        while let Ok(r) = self.results.try_recv() {
            self.log.push(r.payload);
        }
        let at = self.taken.get(id).copied().unwrap_or(0);
        self.log[at..].iter().filter(|r| &r.workload_id == id).cloned().collect()
    }

    /// Start a workload that runs, to witness the engine's ticks with; returns its id.
    async fn witness(&mut self) -> WorkloadId {
        let id = self.submit(self.container(64, 3600)).await;
        self.result(&id, ResultState::Ok).await;
        id
    }
}

/// Whether the last attempt to provision `first` came before the first one of `then`.
fn provisioned_before(calls: &[String], first: &WorkloadId, then: &WorkloadId) -> bool {
    let done = calls.iter().rposition(|c| c == &format!("provision {first}"));
    let started = calls.iter().position(|c| c == &format!("provision {then}"));
    matches!((done, started), (Some(done), Some(started)) if done < started)
}

fn plenty() -> Capacity {
    Capacity { cru: 8, mru: 8192, sru: 100_000, hru: 0 }
}

#[tokio::test]
async fn a_hanging_workload_does_not_delay_the_others_and_is_given_up_on() {
    let mut h = Harness::start(plenty());
    let (stuck, fine) = (h.container(64, 3600), h.container(64, 3600));
    let (stuck_id, fine_id) = (stuck.workload.payload.id.clone(), fine.workload.payload.id.clone());
    h.recorder.set(&stuck_id, Behaviour::Hang);
    h.send(Input::Snapshot(vec![stuck, fine])).await;
    let ok = h.result(&fine_id, ResultState::Ok).await;
    assert_eq!(ok.data["attempt"], 1);
    let error = h.result(&stuck_id, ResultState::Error).await;
    // The cause once, first, then how often it was tried.
    assert!(error.message.starts_with("gave up after"), "{}", error.message);
    assert!(error.message.ends_with("(gave up after 3 attempts)"), "{}", error.message);
    assert_eq!(error.message.matches("the step time limit").count(), 1, "{}", error.message);
    assert_eq!(h.recorder.provisions(&stuck_id), 3);
    assert!(h.recorder.removals(&stuck_id) >= 1, "attempts cut short are rolled back");
}

#[tokio::test]
async fn transient_failures_are_retried_until_provisioning_succeeds() {
    let mut h = Harness::start(plenty());
    let record = h.container(64, 3600);
    let id = record.workload.payload.id.clone();
    h.recorder.set(&id, Behaviour::FailTransiently(2));
    h.submit(record).await;
    let progress = h.result(&id, ResultState::Provisioning).await;
    assert_eq!(progress.message, "picked up by the node");
    let ok = h.result(&id, ResultState::Ok).await;
    assert_eq!(ok.data["attempt"], 3);
    assert_eq!(ok.node_id, h.me.public());
}

#[tokio::test]
async fn a_permanent_failure_is_reported_with_its_reason_and_not_retried() {
    let mut h = Harness::start(plenty());
    let record = h.container(64, 3600);
    let id = record.workload.payload.id.clone();
    h.recorder.set(&id, Behaviour::FailPermanently);
    h.submit(record).await;
    assert_eq!(h.result(&id, ResultState::Error).await.message, "bad image");
    let witness = h.witness().await;
    h.recorder.two_more_ticks(&witness).await;
    let later = h.later_results(&id);
    assert!(later.is_empty(), "reported again: {later:?}");
    assert_eq!(h.recorder.provisions(&id), 1);
}

#[tokio::test]
async fn a_workload_that_would_over_commit_memory_is_refused_saying_what_is_free() {
    let mut h = Harness::start(Capacity { cru: 2, mru: 300, sru: 100_000, hru: 0 });
    let first = h.container(200, 3600);
    let second = h.container(256, 3600);
    let (first_id, second_id) = (first.workload.payload.id.clone(), second.workload.payload.id.clone());
    h.send(Input::Change(Box::new(first))).await;
    h.result(&first_id, ResultState::Ok).await;
    h.send(Input::Change(Box::new(second))).await;
    let refused = h.result(&second_id, ResultState::Error).await;
    assert_eq!(refused.message, "not enough memory on this node: asked 256 MiB, 100 MiB free");
    assert_eq!(h.recorder.provisions(&second_id), 0);
}

#[tokio::test]
async fn a_workload_whose_signature_does_not_verify_is_refused_before_any_side_effect() {
    let mut h = Harness::start(plenty());
    let mut record = h.container(64, 3600);
    let id = record.workload.payload.id.clone();
    if let WorkloadData::Container(c) = &mut record.workload.payload.data {
        c.entrypoint = "cat /etc/shadow".into();
    }
    h.send(Input::Change(Box::new(record))).await;
    let refused = h.result(&id, ResultState::Error).await;
    assert!(refused.message.contains("does not verify"), "{}", refused.message);
    assert_eq!(h.recorder.provisions(&id), 0);
}

#[tokio::test]
async fn a_signed_workload_that_breaks_the_explorers_rules_is_refused_naming_the_field() {
    let mut h = Harness::start(plenty());
    let mut record = h.container(64, 3600);
    let mut spec = record.workload.payload.clone();
    if let WorkloadData::Container(c) = &mut spec.data {
        c.entrypoint = "/bin/sh -c 'echo".into();
    }
    record.workload = Signed::sign(spec, &h.owner);
    let id = record.workload.payload.id.clone();
    h.send(Input::Change(Box::new(record))).await;
    let refused = h.result(&id, ResultState::Error).await;
    assert!(
        refused.message.contains("data.entrypoint: ") && refused.message.contains("unbalanced"),
        "{}",
        refused.message
    );
    assert_eq!(h.recorder.provisions(&id), 0);
}

#[tokio::test]
async fn a_crashing_workload_is_restarted_with_backoff_then_given_up_on() {
    let mut h = Harness::start(plenty());
    let id = h.submit(h.container(64, 3600)).await;
    h.result(&id, ResultState::Ok).await;
    // It exits every time it is started.
    let recorder = h.recorder.clone();
    let crash = id.clone();
    tokio::spawn(async move {
        loop {
            recorder.set_health(&crash, Health::Stopped("the container exited".into()));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    let mut messages = Vec::new();
    while !messages.last().is_some_and(|m: &String| m.contains("not restarted")) {
        messages.push(h.result(&id, ResultState::Error).await.message);
    }
    assert_eq!(
        messages,
        [
            "the container exited; restarting (1/2)",
            "the container exited; restarting (2/2)",
            "the container exited; stopped 3 times, not restarted",
        ]
    );
    assert_eq!(h.recorder.provisions(&id), 3);
}

#[tokio::test]
async fn a_restarted_workload_keeps_how_it_last_stopped_in_its_results() {
    let mut h = Harness::start(plenty());
    let id = h.submit(h.container(64, 3600)).await;
    h.result(&id, ResultState::Ok).await;
    let mut facts = serde_json::Map::new();
    facts.insert("exit_code".into(), 137.into());
    facts.insert("oom_killed".into(), true.into());
    let how = "killed by the kernel: out of memory".to_owned();
    h.recorder.set_health(&id, Health::Exited(Exit { how: how.clone(), facts, permanent: false }));
    let restarting = h.result(&id, ResultState::Error).await;
    assert_eq!(restarting.message, format!("{how}; restarting (1/2)"));
    assert_eq!(restarting.data["restarting"], true);
    assert_eq!(restarting.data["last_stop"]["exit_code"], 137);
    // Running again: not a plain ok, but one that says it was restarted and why.
    let ok = h.result(&id, ResultState::Ok).await;
    assert_eq!(ok.data["restarts"], 1);
    assert_eq!(ok.data["last_stop"]["reason"], how.as_str());
    assert_eq!(ok.data["last_stop"]["oom_killed"], true);
}

#[tokio::test]
async fn a_workload_that_stopped_for_good_is_not_restarted() {
    let mut h = Harness::start(plenty());
    let (id, witness) = (h.submit(h.container(64, 3600)).await, h.submit(h.container(64, 3600)).await);
    h.result(&id, ResultState::Ok).await;
    let how = "the image is corrupt: chunk 00 is corrupt; the container exited with code 1".to_owned();
    let exit = Exit { how: how.clone(), facts: serde_json::Map::new(), permanent: true };
    h.recorder.set_health(&id, Health::Exited(exit));
    let failed = h.result(&id, ResultState::Error).await;
    assert_eq!(failed.message, format!("{how}; not restarted"));
    assert_eq!(failed.data["last_stop"]["reason"], how.as_str());
    h.recorder.two_more_ticks(&witness).await;
    assert_eq!(h.recorder.provisions(&id), 1);
}

#[tokio::test]
async fn a_workload_is_reported_stable_only_after_running_through_the_settle_window() {
    let mut h = Harness::start(plenty());
    let (steady, unready, crashing) = (h.container(64, 3600), h.container(64, 3600), h.container(64, 3600));
    let steady_id = steady.workload.payload.id.clone();
    let unready_id = unready.workload.payload.id.clone();
    let crash_id = crashing.workload.payload.id.clone();
    h.recorder.set(&steady_id, Behaviour::Unsettled(After::Runs));
    h.recorder.set(&unready_id, Behaviour::Unsettled(After::NotReady));
    h.recorder.set(&crash_id, Behaviour::Unsettled(After::Exits));
    h.send(Input::Snapshot(vec![steady, unready, crashing])).await;
    assert_eq!(h.result(&steady_id, ResultState::Ok).await.data["stable"], false);
    assert_eq!(h.result(&steady_id, ResultState::Ok).await.data["stable"], true);
    // Not ready is still running: stable, saying why it is not ready.
    loop {
        let r = h.result(&unready_id, ResultState::Ok).await;
        if r.data["stable"] == true {
            assert_eq!(r.message, "not listening yet");
            break;
        }
    }
    // One that stops within the window is reported stopped, never stable.
    assert_eq!(h.result(&crash_id, ResultState::Ok).await.data["stable"], false);
    let stopped = h.result(&crash_id, ResultState::Error).await;
    assert!(stopped.message.starts_with("the container exited; restarting"), "{}", stopped.message);
    let stable = |r: &WorkloadResult| r.workload_id == crash_id && r.data["stable"] == true;
    assert!(!h.log.iter().any(stable), "{:?}", h.log);
}

#[tokio::test]
async fn an_expired_workload_is_removed_without_the_explorer() {
    let mut h = Harness::start(plenty());
    let id = h.submit(h.container(64, 5)).await;
    h.result(&id, ResultState::Ok).await;
    let deleted = h.result(&id, ResultState::Deleted).await;
    assert_eq!(deleted.message, "expired");
    assert_eq!(h.recorder.removals(&id), 1);
}

/// `record` as the explorer would send it once deleted, with a delete request for `workload_id`
/// signed by `signer` (or none).
fn deleted(record: &WorkloadRecord, workload_id: &WorkloadId, signer: Option<&Keypair>) -> WorkloadRecord {
    let request = DeleteRequest { workload_id: workload_id.clone(), owner: 7, requested_at: zgrid_types::unix_now() };
    WorkloadRecord {
        state: WorkloadState::Deleted,
        deletion: Some(Deletion { at: 0, by: Some(7), request: signer.map(|k| Signed::sign(request, k)) }),
        ..record.clone()
    }
}

impl Harness {
    /// Start a container and wait until it runs; returns its record and id.
    async fn running(&mut self) -> (WorkloadRecord, WorkloadId) {
        let record = self.container(64, 3600);
        let id = self.submit(record.clone()).await;
        self.result(&id, ResultState::Ok).await;
        (record, id)
    }

    /// Send `record` about the running container `id` and check that the node keeps it, saying
    /// why in an `ok` result that contains `why`.
    async fn kept(&mut self, id: &WorkloadId, record: WorkloadRecord, why: &str) {
        self.send(Input::Change(Box::new(record))).await;
        let kept = self.result(id, ResultState::Ok).await;
        assert!(kept.message.starts_with("still running: ") && kept.message.contains(why), "{}", kept.message);
        assert_eq!(kept.version, 1, "the result is about the version the node runs");
        assert_eq!(self.recorder.removals(id), 0, "removed: {:?}", self.recorder.calls());
    }
}

#[tokio::test]
async fn a_deletion_is_carried_out_only_when_the_owner_signed_it() {
    let mut h = Harness::start(plenty());
    let (record, id) = h.running().await;
    let forger = Keypair::from_seed(&[3; 32]);
    h.kept(&id, deleted(&record, &id, Some(&forger)), "is not signed by its owner").await;
    h.kept(&id, deleted(&record, &id, None), "marked deleted without a signed request").await;

    h.send(Input::Change(Box::new(deleted(&record, &id, Some(&h.owner))))).await;
    assert_eq!(h.result(&id, ResultState::Deleted).await.message, "deleted by its owner");
    assert_eq!(h.recorder.removals(&id), 1);
}

#[tokio::test]
async fn a_workload_whose_removal_failed_is_not_restarted_while_the_removal_is_retried() {
    let mut h = Harness::start(plenty());
    let (record, id) = h.running().await;
    h.recorder.fail_removals(&id, 3);
    h.send(Input::Change(Box::new(deleted(&record, &id, Some(&h.owner))))).await;
    assert_eq!(h.result(&id, ResultState::Deleted).await.message, "deleted by its owner");
    assert_eq!(h.recorder.removals(&id), 4);
    assert_eq!(h.recorder.provisions(&id), 1, "restarted while its removal was retried: {:?}", h.recorder.calls());
    let errors: Vec<String> = h
        .log
        .iter()
        .filter(|r| r.workload_id == id && r.state == ResultState::Error)
        .map(|r| r.message.clone())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
}

#[tokio::test]
async fn a_delete_request_the_owner_signed_for_another_workload_removes_nothing() {
    let mut h = Harness::start(plenty());
    let (record, id) = h.running().await;
    let other = zgrid_client::new_workload_id();
    h.kept(&id, deleted(&record, &other, Some(&h.owner.clone())), "names another workload or owner").await;
}

#[tokio::test]
async fn a_record_marked_expired_before_its_signed_expiry_removes_nothing() {
    let mut h = Harness::start(plenty());
    let (record, id) = h.running().await;
    let early = WorkloadRecord {
        state: WorkloadState::Expired,
        deletion: Some(Deletion { at: 0, by: None, request: None }),
        ..record
    };
    h.kept(&id, early, "is marked expired, but its signed expiry time").await;
}

#[tokio::test]
async fn a_record_with_its_expiry_moved_into_the_past_removes_nothing() {
    let mut h = Harness::start(plenty());
    let (record, id) = h.running().await;
    let mut moved = WorkloadRecord { state: WorkloadState::Expired, deletion: None, ..record };
    moved.workload.payload.expires_at = zgrid_types::unix_now() - 60;
    h.kept(&id, moved.clone(), "is not what its owner signed").await;
    // A newer version with the past expiry, not signed by the owner.
    let newer = WorkloadRecord {
        workload: Signed { payload: WorkloadSpec { version: 2, ..moved.workload.payload }, ..moved.workload },
        ..moved
    };
    h.kept(&id, newer, "does not verify").await;
}

#[tokio::test]
async fn a_record_whose_owner_key_was_replaced_removes_nothing_even_with_a_delete_signed_by_that_key() {
    let mut h = Harness::start(plenty());
    let (record, id) = h.running().await;
    let thief = Keypair::from_seed(&[8; 32]);
    for version in [1, 2] {
        let mut spec = record.workload.payload.clone();
        spec.owner_key = thief.public();
        spec.version = version;
        let swapped = WorkloadRecord { workload: Signed::sign(spec, &thief), ..record.clone() };
        let why = if version == 1 { "is not what its owner signed" } else { "another owner or owner key" };
        h.kept(&id, deleted(&swapped, &id, Some(&thief)), why).await;
    }
    // Nor is such a version provisioned in place of the owner's.
    let mut spec = record.workload.payload.clone();
    (spec.owner_key, spec.version) = (thief.public(), 3);
    h.send(Input::Change(Box::new(WorkloadRecord { workload: Signed::sign(spec, &thief), ..record }))).await;
    let refused = h.result(&id, ResultState::Error).await;
    assert!(refused.message.contains("another owner or owner key"), "{}", refused.message);
    assert_eq!((h.recorder.provisions(&id), h.recorder.removals(&id)), (1, 0), "{:?}", h.recorder.calls());
}

#[tokio::test]
async fn a_workload_for_another_node_is_refused_before_any_side_effect() {
    let mut h = Harness::start(plenty());
    let mut record = h.container(64, 3600);
    let mut spec = record.workload.payload.clone();
    spec.node_id = Keypair::from_seed(&[9; 32]).public();
    record.workload = Signed::sign(spec, &h.owner);
    let id = h.submit(record).await;
    let refused = h.result(&id, ResultState::Error).await;
    assert!(refused.message.contains("not this node"), "{}", refused.message);
    assert_eq!(h.recorder.provisions(&id), 0);
}

#[tokio::test]
async fn a_container_waits_for_its_volume_and_starts_once_it_is_mounted() {
    let mut h = Harness::start(plenty());
    let volume = h.volume(&h.owner.clone());
    let volume_id = volume.workload.payload.id.clone();
    let container = h.container_with(64, 3600, vec![volume_id.clone()]);
    let id = container.workload.payload.id.clone();
    h.recorder.set(&volume_id, Behaviour::FailTransiently(2));
    h.send(Input::Snapshot(vec![container, volume])).await;
    let waiting = h.result(&id, ResultState::Provisioning).await;
    assert_eq!(waiting.message, format!("waiting for volume {volume_id}"));
    h.result(&id, ResultState::Ok).await;
    let calls = h.recorder.calls();
    assert!(provisioned_before(&calls, &volume_id, &id), "the container was provisioned before its volume: {calls:?}");
    assert_eq!(h.recorder.provisions(&volume_id), 3);
}

#[tokio::test]
async fn a_container_mounting_another_owners_volume_is_refused_by_the_node() {
    let mut h = Harness::start(plenty());
    let stranger = Keypair::from_seed(&[5; 32]);
    let volume = h.volume(&stranger);
    let volume_id = volume.workload.payload.id.clone();
    let container = h.container_with(64, 3600, vec![volume_id.clone()]);
    let id = container.workload.payload.id.clone();
    h.send(Input::Snapshot(vec![volume, container])).await;
    h.result(&volume_id, ResultState::Ok).await;
    let refused = h.result(&id, ResultState::Error).await;
    assert_eq!(refused.message, format!("volume {volume_id} belongs to another owner; refused"));
    assert_eq!(h.recorder.provisions(&id), 0);
}

#[tokio::test]
async fn a_volume_outlives_the_container_using_it_when_both_expire() {
    let mut h = Harness::start(plenty());
    let mut volume = h.volume(&h.owner.clone());
    let mut spec = volume.workload.payload.clone();
    spec.expires_at = zgrid_types::unix_now() + 5;
    volume.workload = Signed::sign(spec, &h.owner);
    let volume_id = volume.workload.payload.id.clone();
    let container = h.container_with(64, 5, vec![volume_id.clone()]);
    let id = container.workload.payload.id.clone();
    h.send(Input::Snapshot(vec![volume, container])).await;
    h.result(&id, ResultState::Ok).await;
    h.result(&volume_id, ResultState::Deleted).await;
    let calls = h.recorder.calls();
    let container_removed = calls.iter().position(|c| c == &format!("remove {id}")).unwrap();
    let volume_removed = calls.iter().position(|c| c == &format!("remove {volume_id}")).unwrap();
    assert!(container_removed < volume_removed, "the volume went first: {calls:?}");
}

#[tokio::test]
async fn a_container_joins_its_owners_network_only_once_it_is_up() {
    let mut h = Harness::start(plenty());
    let stranger = Keypair::from_seed(&[6; 32]);
    let theirs = h.network(&stranger, "net");
    let ours = h.network(&h.owner.clone(), "net");
    let ours_id = ours.workload.payload.id.clone();
    let mut container = h.container(64, 3600);
    let mut spec = container.workload.payload.clone();
    if let WorkloadData::Container(c) = &mut spec.data {
        c.network_connection = vec![NetworkConnection {
            network_id: "net".into(),
            ipaddress: "10.20.1.2".parse().unwrap(),
            public_ipv6: false,
            yggdrasil_ip: false,
        }];
    }
    container.workload = Signed::sign(spec, &h.owner);
    let id = container.workload.payload.id.clone();
    h.recorder.set(&ours_id, Behaviour::FailTransiently(2));
    h.send(Input::Snapshot(vec![theirs, container, ours])).await;
    let waiting = h.result(&id, ResultState::Provisioning).await;
    assert_eq!(waiting.message, "waiting for network \"net\"");
    h.result(&id, ResultState::Ok).await;
    let calls = h.recorder.calls();
    assert!(provisioned_before(&calls, &ours_id, &id), "the container was provisioned before its network: {calls:?}");
}

#[tokio::test]
async fn a_network_update_is_applied_in_place_and_a_failed_one_leaves_it_running() {
    let mut h = Harness::start(plenty());
    let v1 = h.network(&h.owner.clone(), "net");
    let id = v1.workload.payload.id.clone();
    h.send(Input::Snapshot(vec![v1.clone()])).await;
    h.result(&id, ResultState::Ok).await;
    h.submit(h.new_version(&v1, 2)).await;
    h.result(&id, ResultState::Ok).await;
    h.recorder.set(&id, Behaviour::FailPermanently);
    h.submit(h.new_version(&v1, 3)).await;
    h.result(&id, ResultState::Error).await;
    assert_eq!(h.recorder.provisions(&id), 3);
    assert_eq!(h.recorder.removals(&id), 0, "an update removed the running network: {:?}", h.recorder.calls());
}

#[tokio::test]
async fn a_renewal_that_only_moves_the_expiry_keeps_the_container_running() {
    let mut h = Harness::start(plenty());
    let v1 = h.container(64, 3600);
    let id = h.submit(v1.clone()).await;
    h.result(&id, ResultState::Ok).await;
    let mut renewed = v1.clone();
    renewed.workload.payload.version = 2;
    renewed.workload.payload.expires_at += 3600;
    renewed.workload = Signed::sign(renewed.workload.payload, &h.owner);
    h.submit(renewed.clone()).await;
    let ok = h.result(&id, ResultState::Ok).await;
    assert_eq!(ok.version, 2);
    assert_eq!(h.recorder.provisions(&id), 1, "a renewal restarted the container: {:?}", h.recorder.calls());
    assert_eq!(h.recorder.removals(&id), 0);
    // Any other change is a new version to run: the old one is replaced.
    h.submit(h.new_version(&renewed, 3)).await;
    h.result(&id, ResultState::Ok).await;
    assert_eq!(h.recorder.provisions(&id), 2);
}

#[tokio::test]
async fn a_change_of_readiness_is_reported_again_as_the_same_ok_result() {
    let mut h = Harness::start(plenty());
    let id = h.submit(h.container(64, 3600)).await;
    let first = h.result(&id, ResultState::Ok).await;
    assert_eq!(first.data.get("ready"), None, "a workload that never was unready needs no field");
    h.recorder.set_health(&id, Health::NotReady("readiness probe failed: refused".into()));
    let unready = h.result(&id, ResultState::Ok).await;
    assert_eq!((unready.version, unready.message.as_str()), (first.version, "readiness probe failed: refused"));
    assert_eq!((&unready.data["ready"], &unready.data["attempt"]), (&serde_json::json!(false), &first.data["attempt"]));
    h.recorder.set_health(&id, Health::Running);
    let ready = h.result(&id, ResultState::Ok).await;
    assert_eq!((&ready.data["ready"], ready.message.as_str()), (&serde_json::json!(true), ""));
    // Only changes are reported, and readiness never restarts anything.
    h.recorder.two_more_ticks(&id).await;
    while let Ok(result) = h.results.try_recv() {
        assert_ne!(result.payload.workload_id, id, "reported again without a change: {:?}", result.payload);
    }
    assert_eq!(h.recorder.provisions(&id), 1);
}
