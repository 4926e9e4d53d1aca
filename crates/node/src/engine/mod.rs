//! The engine: level-triggered reconciliation of the desired set (what the explorer's records,
//! verified here, ask for) against what this node has (its [`Store`]).
//!
//! One loop owns the state and decides; the work runs in one task per workload, so a workload
//! that hangs holds up only itself, and every attempt has a time limit. Transient failures are
//! retried with exponential backoff; a permanent failure is reported with its reason and not
//! retried until a new version arrives. Workloads leave the node only when their own signed
//! expiry time has passed or their owner signed a delete request.

mod deps;
mod jobs;
pub mod verify;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use zgrid_client::ExplorerClient;
use zgrid_types::api::{WorkloadRecord, WorkloadState};
use zgrid_types::directory::Capacity;
use zgrid_types::{ResultState, WorkloadId};

use self::jobs::{Ctx, Outcome};
use crate::capacity;
use crate::provision::{Health, Provisioner};
use crate::report::Reporter;
use crate::store::{Entry, Phase, Store};

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Limit on one provisioning or removal attempt.
    pub step_timeout: Duration,
    /// Attempts on transient failures before reporting an error.
    pub max_attempts: u32,
    /// First retry delay; doubles on each failure, up to a minute.
    pub retry_base: Duration,
    /// How often running workloads are checked, expiry enforced and retries run.
    pub tick: Duration,
    /// Restarts of a crashing workload before it is reported failed and left stopped.
    pub crash_limit: u32,
    /// How long a started workload whose result says `"stable": false` must keep running before
    /// the node reports it stable (what `zgrid deploy --wait` waits for, to catch an exit at once).
    pub settle: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            step_timeout: Duration::from_secs(120),
            max_attempts: 5,
            retry_base: Duration::from_secs(1),
            tick: Duration::from_secs(2),
            crash_limit: 5,
            settle: Duration::from_secs(2),
        }
    }
}

/// What the engine learns from the explorer.
#[derive(Debug)]
pub enum Input {
    /// The whole desired set (after connecting or a gap).
    Snapshot(Vec<WorkloadRecord>),
    /// One workload changed.
    Change(Box<WorkloadRecord>),
}

/// The reconciliation engine.
pub struct Engine<P> {
    ctx: Arc<Ctx<P>>,
    explorer: ExplorerClient,
    config: EngineConfig,
    used: watch::Sender<Capacity>,
    records: HashMap<WorkloadId, WorkloadRecord>,
    entries: HashMap<WorkloadId, Entry>,
    busy: HashSet<WorkloadId>,
    retry: HashMap<WorkloadId, (u32, Instant)>,
    noted: HashSet<(WorkloadId, u32, String)>,
    /// When each workload was last provisioned (or first checked, after an agent restart).
    started: HashMap<WorkloadId, Instant>,
}

impl<P: Provisioner> Engine<P> {
    /// An engine for the node with key `me`, which asks `explorer` about workloads it no longer
    /// lists and sends results through `reporter`.
    ///
    /// After a reboot of the machine every workload the store says was running is provisioned
    /// again (its processes and mounts are gone); after a restart of the agent alone they are
    /// adopted as they are, except those whose side effects ended with the previous agent.
    pub fn new(
        explorer: ExplorerClient,
        reporter: Reporter,
        me: zgrid_types::Keypair,
        store: Store,
        provisioner: P,
        total: Capacity,
        config: EngineConfig,
    ) -> anyhow::Result<Self> {
        let mut entries = store.load_all()?;
        let rebooted = store.rebooted()?;
        if rebooted {
            tracing::info!(workloads = entries.len(), "the machine rebooted; provisioning its workloads again");
        }
        for entry in entries.values_mut().filter(|e| e.phase == Phase::Running) {
            if rebooted || provisioner.lost_with_agent(&entry.workload.payload) {
                entry.phase = Phase::Provisioning;
            }
        }
        let ctx = Arc::new(Ctx { me, store, provisioner, reporter, total, step_timeout: config.step_timeout });
        let (used, _) = watch::channel(Capacity::default());
        let engine = Self {
            ctx,
            explorer,
            config,
            used,
            records: HashMap::new(),
            entries,
            busy: HashSet::new(),
            retry: HashMap::new(),
            noted: HashSet::new(),
            started: HashMap::new(),
        };
        engine.publish_used();
        Ok(engine)
    }

    /// Capacity in use, updated as workloads come and go (for heartbeats).
    pub fn used(&self) -> watch::Receiver<Capacity> {
        self.used.subscribe()
    }

    /// Run until `inputs` closes.
    pub async fn run(mut self, mut inputs: mpsc::Receiver<Input>) {
        let (done_tx, mut done) = mpsc::unbounded_channel::<(WorkloadId, Outcome)>();
        self.remove_orphans().await;
        let mut tick = tokio::time::interval(self.config.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                input = inputs.recv() => match input {
                    Some(Input::Snapshot(records)) => self.snapshot(records, &done_tx),
                    Some(Input::Change(record)) => {
                        let id = record.workload.payload.id.clone();
                        self.records.insert(id.clone(), *record);
                        self.reconcile(&id, &done_tx);
                    }
                    None => return,
                },
                Some((id, outcome)) = done.recv() => {
                    self.busy.remove(&id);
                    self.apply(&id, outcome);
                    self.reconcile(&id, &done_tx);
                    for other in self.related(&id) {
                        self.reconcile(&other, &done_tx);
                    }
                }
                _ = tick.tick() => self.tick(&done_tx),
            }
        }
    }

    async fn remove_orphans(&self) {
        for id in self.ctx.provisioner.existing().await {
            if !self.entries.contains_key(&id) {
                self.ctx.clone().remove_orphan(id).await;
            }
        }
    }

    fn snapshot(&mut self, records: Vec<WorkloadRecord>, done: &mpsc::UnboundedSender<(WorkloadId, Outcome)>) {
        let listed: HashSet<WorkloadId> = records.iter().map(|r| r.workload.payload.id.clone()).collect();
        for r in records {
            self.report_missing(&r);
            self.records.insert(r.workload.payload.id.clone(), r);
        }
        // Workloads this node has but the explorer no longer lists: learn why (a signed delete,
        // an expiry) before removing anything.
        for id in self.entries.keys().filter(|id| !listed.contains(*id)) {
            if self.records.get(id).is_none_or(|r| r.state == WorkloadState::Active) {
                let (explorer, id, tx) = (self.explorer.clone(), id.clone(), done.clone());
                tokio::spawn(async move {
                    match explorer.workload(&id).await {
                        Ok(record) => drop(tx.send((id, Outcome::Fetched(Box::new(record))))),
                        Err(e) => {
                            tracing::warn!(workload = %id, error = %e, "cannot fetch a workload the explorer no longer lists")
                        }
                    }
                });
            }
        }
        self.reconcile_all(done);
    }

    /// Reconcile every workload the node knows of, asked for or provisioned.
    fn reconcile_all(&mut self, done: &mpsc::UnboundedSender<(WorkloadId, Outcome)>) {
        let ids: Vec<WorkloadId> = self.records.keys().chain(self.entries.keys()).cloned().collect();
        ids.iter().for_each(|id| self.reconcile(id, done));
    }

    /// Send again a settled outcome the explorer does not show (its delivery was cut short by a
    /// crash or restart of the agent).
    fn report_missing(&self, record: &WorkloadRecord) {
        let id = &record.workload.payload.id;
        let Some(entry) = self.entries.get(id) else { return };
        let spec = &entry.workload.payload;
        let (state, message) = match &entry.phase {
            Phase::Running => (ResultState::Ok, ""),
            Phase::Failed { reason } => (ResultState::Error, reason.as_str()),
            Phase::Provisioning | Phase::Removing => return,
        };
        let settled = record
            .result
            .as_ref()
            .is_some_and(|r| r.payload.version == spec.version && r.payload.state != ResultState::Provisioning);
        if spec.version == record.workload.payload.version && !settled {
            self.ctx.reporter.report(spec, state, message, entry.data.clone());
        }
    }

    fn tick(&mut self, done: &mpsc::UnboundedSender<(WorkloadId, Outcome)>) {
        self.reconcile_all(done);
        // A running workload with a retry pending is one whose removal failed: what its check
        // would find is the removal's doing.
        let running: Vec<WorkloadId> = self
            .entries
            .values()
            .filter(|e| e.phase == Phase::Running && !self.busy.contains(e.id()) && !self.retry.contains_key(e.id()))
            .map(|e| e.id().clone())
            .collect();
        for id in running {
            self.spawn(&id, done, |ctx| ctx.check(id.clone()));
        }
    }

    fn spawn<F: Future<Output = Outcome> + Send + 'static>(
        &mut self,
        id: &WorkloadId,
        done: &mpsc::UnboundedSender<(WorkloadId, Outcome)>,
        job: impl FnOnce(Arc<Ctx<P>>) -> F,
    ) {
        self.busy.insert(id.clone());
        let (fut, tx, id) = (job(self.ctx.clone()), done.clone(), id.clone());
        tokio::spawn(async move {
            let outcome = fut.await;
            let _ = tx.send((id, outcome));
        });
    }

    /// Say something about a workload version once, not on every tick, reporting it to the
    /// owner as a result in `state` when given.
    fn note(&mut self, id: &WorkloadId, version: u32, message: String, state: Option<ResultState>) {
        if self.noted.insert((id.clone(), version, message.clone())) {
            tracing::info!(workload = %id, version, %message);
            if let (Some(state), Some(r)) = (state, self.records.get(id)) {
                self.ctx.reporter.report(&r.workload.payload, state, message, serde_json::Value::Null);
            }
        }
    }

    /// Tell the owner once why the explorer's word was not enough to remove a workload this node
    /// keeps, in a result about the version it runs (with that version's facts).
    fn keep(&mut self, entry: &Entry, message: String) {
        let spec = &entry.workload.payload;
        let (state, report, data) = match &entry.phase {
            Phase::Running => (ResultState::Ok, format!("still running: {message}"), entry.data.clone()),
            Phase::Failed { reason } => {
                (ResultState::Error, format!("{reason} (and {message})"), serde_json::Value::Null)
            }
            Phase::Provisioning | Phase::Removing => return,
        };
        if self.noted.insert((spec.id.clone(), spec.version, message.clone())) {
            tracing::warn!(workload = %spec.id, version = spec.version, %message, "not removed");
            self.ctx.reporter.report(spec, state, report, data);
        }
    }

    /// Workloads whose next step may depend on `id`: those that need it, and those it needs.
    fn related(&self, id: &WorkloadId) -> Vec<WorkloadId> {
        let own =
            self.entries.get(id).map(|e| &e.workload.payload).or(self.records.get(id).map(|r| &r.workload.payload));
        let Some(own) = own else { return Vec::new() };
        let specs = self.records.values().map(|r| &r.workload.payload);
        let specs = specs.chain(self.entries.values().map(|e| &e.workload.payload));
        let mut out: Vec<WorkloadId> = specs
            .filter(|other| deps::depends_on(other, own) || deps::depends_on(own, other))
            .map(|other| other.id.clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    fn reconcile(&mut self, id: &WorkloadId, done: &mpsc::UnboundedSender<(WorkloadId, Outcome)>) {
        if self.busy.contains(id) || self.retry.get(id).is_some_and(|(_, at)| Instant::now() < *at) {
            return;
        }
        let now = zgrid_types::unix_now();
        let record = self.records.get(id).cloned();
        let entry = self.entries.get(id).cloned();
        let wanted = record
            .as_ref()
            .filter(|r| r.state == WorkloadState::Active && r.workload.payload.expires_at > now)
            .map(|r| r.workload.clone());
        match (wanted, entry) {
            (Some(w), entry) => {
                let verified = verify::workload(&w, &self.ctx.me.public())
                    .and_then(|()| entry.as_ref().map_or(Ok(()), |e| verify::update(&e.workload, &w)));
                if let Err(message) = verified {
                    return self.note(id, w.payload.version, message, Some(ResultState::Error));
                }
                let redo = match &entry {
                    None => true,
                    Some(e) if e.workload.payload.version < w.payload.version => true,
                    Some(e) => matches!(e.phase, Phase::Provisioning | Phase::Removing),
                };
                if !redo {
                    return;
                }
                match deps::check(&w.payload, &self.entries, &self.records) {
                    deps::Ready::Yes => {
                        let others = self.used_except(Some(id));
                        self.spawn(id, done, move |ctx| ctx.provision(w, entry, others));
                    }
                    deps::Ready::Wait(m) => self.note(id, w.payload.version, m, Some(ResultState::Provisioning)),
                    deps::Ready::Refuse(m) => self.note(id, w.payload.version, m, Some(ResultState::Error)),
                }
            }
            (None, Some(e)) => {
                let users = deps::users_of(id, &self.entries);
                if let Some(user) = users.first() {
                    let message = format!("kept until {user}, which uses it, is removed");
                    return self.note(id, e.workload.payload.version, message, None);
                }
                let why = if e.workload.payload.expires_at <= now {
                    Ok("expired")
                } else if e.phase == Phase::Removing {
                    Ok("removal finished")
                } else {
                    let Some(r) = &record else { return };
                    verify::removal_basis(r, &e.workload, &self.ctx.me.public())
                        .and_then(|signed| verify::removal(r, signed, now))
                };
                match why {
                    Ok(why) => self.spawn(id, done, move |ctx| ctx.remove(e, why.to_string())),
                    Err(message) => self.keep(&e, message),
                }
            }
            (None, None) => {}
        }
    }

    fn apply(&mut self, id: &WorkloadId, outcome: Outcome) {
        match outcome {
            Outcome::Provisioned(entry) => {
                self.retry.remove(id);
                self.started.insert(id.clone(), Instant::now());
                self.entries.insert(id.clone(), entry);
            }
            Outcome::Failed { entry, reason, transient } => {
                if transient {
                    let attempts = self.retry.get(id).map_or(0, |(n, _)| *n) + 1;
                    if attempts >= self.config.max_attempts {
                        // The cause once, first: every attempt said much the same.
                        let message = format!("{reason} (gave up after {attempts} attempts)");
                        let failed = Entry { phase: Phase::Failed { reason: message.clone() }, ..entry };
                        self.retry.remove(id);
                        self.entries.insert(id.clone(), failed.clone());
                        let ctx = self.ctx.clone();
                        tokio::spawn(async move { ctx.fail(failed, message, false).await });
                    } else {
                        let delay = self.retry_delay(attempts);
                        tracing::info!(workload = %id, attempts, error = %reason, "will retry in {delay:?}");
                        self.retry.insert(id.clone(), (attempts, Instant::now() + delay));
                        self.entries.insert(id.clone(), entry);
                    }
                } else {
                    self.retry.remove(id);
                    self.entries.insert(id.clone(), entry);
                }
            }
            Outcome::Removed => {
                self.entries.remove(id);
                self.started.remove(id);
                self.retry.remove(id);
            }
            Outcome::RemoveFailed(reason) => {
                let attempts = self.retry.get(id).map_or(0, |(n, _)| *n) + 1;
                let delay = self.retry_delay(attempts);
                tracing::warn!(workload = %id, error = %reason, "removal did not finish; retrying in {delay:?}");
                self.retry.insert(id.clone(), (attempts, Instant::now() + delay));
            }
            Outcome::Fetched(record) => {
                self.records.insert(id.clone(), *record);
            }
            Outcome::Checked(health) => self.supervise(id, health),
        }
        self.publish_used();
    }

    /// Restart a workload that stopped, up to the crash limit; report changes of readiness.
    fn supervise(&mut self, id: &WorkloadId, health: Health) {
        let Some(entry) = self.entries.get_mut(id) else { return };
        let (reason, mut facts, permanent) = match health {
            Health::Running => {
                self.readiness(id, Ok(()));
                return self.settle(id, String::new());
            }
            // Not ready is still running: stable too once it ran through the window.
            Health::NotReady(why) => {
                self.readiness(id, Err(why.clone()));
                return self.settle(id, why);
            }
            Health::Degraded(message) => {
                let spec = entry.workload.payload.clone();
                return self.ctx.reporter.report(&spec, ResultState::Error, message, serde_json::Value::Null);
            }
            Health::Missing => ("it was gone (machine restarted?)".to_string(), serde_json::Map::new(), false),
            Health::Stopped(how) => (how, serde_json::Map::new(), false),
            Health::Exited(exit) => (exit.how, exit.facts, exit.permanent),
        };
        self.started.remove(id);
        entry.restarts += 1;
        facts.insert("reason".into(), reason.clone().into());
        entry.last_stop = facts.into();
        let spec = entry.workload.payload.clone();
        let restarts = entry.restarts;
        if permanent || restarts > self.config.crash_limit {
            let message = if permanent {
                format!("{reason}; not restarted")
            } else {
                format!("{reason}; stopped {restarts} times, not restarted")
            };
            entry.phase = Phase::Failed { reason: message.clone() };
            let failed = entry.clone();
            let ctx = self.ctx.clone();
            tokio::spawn(async move { ctx.fail(failed, message, false).await });
            return;
        }
        entry.phase = Phase::Provisioning;
        let message = format!("{reason}; restarting ({restarts}/{})", self.config.crash_limit);
        let data = serde_json::json!({ "restarts": restarts, "restarting": true, "last_stop": entry.last_stop });
        self.ctx.reporter.report(&spec, ResultState::Error, message, data);
        let delay = self.retry_delay(restarts);
        self.retry.insert(id.clone(), (0, Instant::now() + delay));
    }

    /// Report a running workload stable once it has run for the settle window since it
    /// started: its ok result says `"stable": false` until then. `message` is the result's
    /// (why it is not ready, if it is not).
    fn settle(&mut self, id: &WorkloadId, message: String) {
        let Some(entry) = self.entries.get_mut(id) else { return };
        let Some(facts) = entry.data.as_object_mut().filter(|f| f.get("stable") == Some(&false.into())) else {
            return;
        };
        let since = *self.started.entry(id.clone()).or_insert_with(Instant::now);
        if since.elapsed() < self.config.settle {
            return;
        }
        facts.insert("stable".into(), true.into());
        let spec = &entry.workload.payload;
        tracing::debug!(workload = %spec.id, version = spec.version, "stable");
        self.ctx.reporter.report(spec, ResultState::Ok, message, entry.data.clone());
    }

    /// Report a running workload's ok result again, with `"ready"` in its data, when its
    /// readiness changed (the message says why it is not ready). One that never was not ready
    /// needs no field.
    fn readiness(&mut self, id: &WorkloadId, ready: Result<(), String>) {
        let Some(entry) = self.entries.get_mut(id) else { return };
        let Some(facts) = entry.data.as_object_mut() else { return };
        let was = facts.get("ready").and_then(serde_json::Value::as_bool);
        if was.unwrap_or(true) == ready.is_ok() && (was.is_some() || ready.is_ok()) {
            return;
        }
        facts.insert("ready".into(), ready.is_ok().into());
        let spec = &entry.workload.payload;
        tracing::info!(workload = %spec.id, version = spec.version, ready = ready.is_ok(), "readiness changed");
        self.ctx.reporter.report(spec, ResultState::Ok, ready.err().unwrap_or_default(), entry.data.clone());
    }

    /// The wait before retry number `attempt` (from 1): the base, doubled per attempt, at most
    /// a minute.
    fn retry_delay(&self, attempt: u32) -> Duration {
        (self.config.retry_base * 2u32.saturating_pow(attempt.clamp(1, 6) - 1)).min(Duration::from_secs(60))
    }

    /// Capacity reserved by the workloads this node has (failed ones hold none), `except` one.
    fn used_except(&self, except: Option<&WorkloadId>) -> Capacity {
        let caps: Vec<Capacity> = self
            .entries
            .values()
            .filter(|e| Some(e.id()) != except && !matches!(e.phase, Phase::Failed { .. }))
            .map(|e| capacity::of(&e.workload.payload.data))
            .collect();
        capacity::sum(&caps)
    }

    fn publish_used(&self) {
        self.used.send_replace(self.used_except(None));
    }
}

#[cfg(test)]
mod tests;
