//! The work the engine hands to its own tasks, one per workload at a time: provisioning (with a
//! capacity check, a write-ahead store entry, a time limit and rollback on failure), removal, and
//! health checks. Each job ends in an [`Outcome`] the engine loop applies.

use std::sync::Arc;
use std::time::Duration;

use zgrid_types::directory::Capacity;
use zgrid_types::{Keypair, ResultState, Signed, WorkloadId, WorkloadSpec};

use crate::capacity;
use crate::provision::{Health, ProvisionError, Provisioner};
use crate::report::Reporter;
use crate::store::{Entry, Phase, Store};

/// What jobs share.
pub struct Ctx<P> {
    /// The node key.
    pub me: Keypair,
    /// The local record.
    pub store: Store,
    /// Side effects.
    pub provisioner: P,
    /// Result delivery.
    pub reporter: Reporter,
    /// The machine's capacity.
    pub total: Capacity,
    /// Limit on one provisioning or removal attempt.
    pub step_timeout: Duration,
}

/// How a job ended.
#[derive(Debug)]
pub enum Outcome {
    /// Provisioned; the entry is stored as running.
    Provisioned(Entry),
    /// Failed and rolled back; `transient` failures are retried.
    Failed {
        /// The entry as stored.
        entry: Entry,
        /// What went wrong.
        reason: String,
        /// Whether another attempt may succeed.
        transient: bool,
    },
    /// Removed, entry forgotten.
    Removed,
    /// Removal did not finish; retried.
    RemoveFailed(String),
    /// A health check's answer.
    Checked(Health),
    /// The explorer's record of a workload it no longer lists.
    Fetched(Box<zgrid_types::api::WorkloadRecord>),
}

impl<P: Provisioner> Ctx<P> {
    /// Provision `workload`, replacing `previous` (an older version) first, unless the
    /// provisioner updates this kind in place.
    pub async fn provision(
        self: Arc<Self>,
        workload: Signed<WorkloadSpec>,
        previous: Option<Entry>,
        used_by_others: Capacity,
    ) -> Outcome {
        let spec = &workload.payload;
        let restarts = previous.as_ref().map_or(0, |p| p.restarts);
        let last_stop = previous.as_ref().map_or(serde_json::Value::Null, |p| p.last_stop.clone());
        let want = capacity::of(&spec.data);
        if let Some(reason) = capacity::shortfall(&want, &self.total.saturating_sub(used_by_others)) {
            let phase = Phase::Failed { reason: reason.clone() };
            let entry = Entry { workload: workload.clone(), phase, restarts, data: serde_json::Value::Null, last_stop };
            return self.fail(entry, reason, false).await;
        }
        if let Some(old) =
            previous.as_ref().filter(|p| p.phase == Phase::Running && only_renews(&p.workload.payload, spec))
        {
            return self.renew(workload, old).await;
        }
        let in_place = self.provisioner.updates_in_place(spec);
        let had_previous = previous.is_some();
        if let Some(old) = previous.filter(|p| !in_place && p.workload.payload.version != spec.version)
            && let Err(reason) = self.timed(self.provisioner.remove(old.id())).await.and_then(|r| r)
        {
            let reason = format!("cannot replace the old version: {reason}");
            return Outcome::Failed { entry: old, reason, transient: true };
        }
        let mut entry = Entry {
            workload: workload.clone(),
            phase: Phase::Provisioning,
            restarts,
            data: serde_json::Value::Null,
            last_stop: last_stop.clone(),
        };
        if let Err(e) = self.store.put(&entry) {
            return Outcome::Failed {
                entry,
                reason: format!("cannot record the workload locally: {e:#}"),
                transient: true,
            };
        }
        self.reporter.report(spec, ResultState::Provisioning, "picked up by the node", serde_json::Value::Null);
        let progress = |message: &str| {
            self.reporter.report(spec, ResultState::Provisioning, message, serde_json::Value::Null);
        };
        let limit = self.provisioner.time_limit(spec).map_or(self.step_timeout, |l| l.max(self.step_timeout));
        let attempt = timed(limit, self.provisioner.provision(&workload, &progress)).await;
        match attempt.map_err(ProvisionError::Transient).and_then(|r| r) {
            Ok(mut data) => {
                // How often it was restarted after stopping, for owners that show it (Pods), and
                // how it last stopped, kept in view while it runs again.
                if let Some(facts) = data.as_object_mut() {
                    facts.insert("restarts".into(), restarts.into());
                    if !last_stop.is_null() {
                        facts.insert("last_stop".into(), last_stop);
                    }
                }
                entry.phase = Phase::Running;
                entry.data = data.clone();
                if let Err(e) = self.store.put(&entry) {
                    return Outcome::Failed {
                        entry,
                        reason: format!("cannot record the workload locally: {e:#}"),
                        transient: true,
                    };
                }
                self.reporter.report(spec, ResultState::Ok, "", data);
                Outcome::Provisioned(entry)
            }
            Err(e) => {
                // Leave nothing half done behind, but never take down a version that runs.
                if in_place && had_previous {
                    tracing::warn!(workload = %spec.id, error = %e, "update not applied; the running version is kept");
                } else if let Err(r) = self.timed(self.provisioner.remove(&spec.id)).await.and_then(|r| r) {
                    tracing::warn!(workload = %spec.id, error = %r, "rollback after a failed attempt did not finish; retried later");
                }
                let transient = matches!(e, ProvisionError::Transient(_));
                if !transient {
                    entry.phase = Phase::Failed { reason: e.to_string() };
                }
                self.fail(entry, e.to_string(), transient).await
            }
        }
    }

    /// Take `workload`, a later version of the running `old` that only moves its expiry: the
    /// workload keeps running untouched (a long-lived deployment renews without restarts).
    async fn renew(&self, workload: Signed<WorkloadSpec>, old: &Entry) -> Outcome {
        let entry = Entry { workload, ..old.clone() };
        if let Err(e) = self.store.put(&entry) {
            let reason = format!("cannot record the workload locally: {e:#}");
            return Outcome::Failed { entry: old.clone(), reason, transient: true };
        }
        let spec = &entry.workload.payload;
        tracing::info!(workload = %spec.id, version = spec.version, expires_at = spec.expires_at, "renewed in place");
        self.reporter.report(spec, ResultState::Ok, "", entry.data.clone());
        Outcome::Provisioned(entry)
    }

    /// Record and report a failure. Transient ones are reported by the engine once it gives up.
    pub async fn fail(&self, entry: Entry, reason: String, transient: bool) -> Outcome {
        if !transient {
            if let Err(e) = self.store.put(&entry) {
                tracing::error!(workload = %entry.id(), error = %e, "cannot record a failure locally");
            }
            // A workload that stopped before says how, as its restarts did.
            let data = match &entry.last_stop {
                serde_json::Value::Null => serde_json::Value::Null,
                last => serde_json::json!({ "restarts": entry.restarts, "last_stop": last }),
            };
            self.reporter.report(&entry.workload.payload, ResultState::Error, reason.clone(), data);
        }
        Outcome::Failed { entry, reason, transient }
    }

    /// Remove a workload because of `why` (expired, deleted by its owner, ...).
    pub async fn remove(self: Arc<Self>, entry: Entry, why: String) -> Outcome {
        let removing = Entry { phase: Phase::Removing, ..entry };
        if let Err(e) = self.store.put(&removing) {
            return Outcome::RemoveFailed(format!("cannot record the removal locally: {e:#}"));
        }
        match self.timed(self.provisioner.remove(removing.id())).await.and_then(|r| r) {
            Ok(()) => match self.store.remove(removing.id()) {
                Ok(()) => {
                    self.reporter.report(
                        &removing.workload.payload,
                        ResultState::Deleted,
                        why,
                        serde_json::Value::Null,
                    );
                    Outcome::Removed
                }
                Err(e) => Outcome::RemoveFailed(format!("{e:#}")),
            },
            Err(reason) => Outcome::RemoveFailed(reason),
        }
    }

    /// Remove side effects that have no store entry (left by a crash before the entry existed).
    pub async fn remove_orphan(self: Arc<Self>, id: WorkloadId) {
        match self.timed(self.provisioner.remove(&id)).await.and_then(|r| r) {
            Ok(()) => tracing::info!(workload = %id, "removed an orphan"),
            Err(e) => tracing::warn!(workload = %id, error = %e, "cannot remove an orphan"),
        }
    }

    /// Check on a provisioned workload.
    pub async fn check(self: Arc<Self>, id: WorkloadId) -> Outcome {
        Outcome::Checked(self.timed(self.provisioner.health(&id)).await.unwrap_or(Health::Running))
    }

    async fn timed<T>(&self, step: impl Future<Output = T>) -> Result<T, String> {
        timed(self.step_timeout, step).await
    }
}

/// `step`, unless it takes longer than `limit`.
async fn timed<T>(limit: Duration, step: impl Future<Output = T>) -> Result<T, String> {
    tokio::time::timeout(limit, step).await.map_err(|_| format!("gave up after {limit:?} (the step time limit)"))
}

/// Whether `new` differs from `old` only in its version and expiry: a renewal.
fn only_renews(old: &WorkloadSpec, new: &WorkloadSpec) -> bool {
    let same = WorkloadSpec { version: old.version, expires_at: old.expires_at, ..new.clone() };
    same == *old && new.version > old.version
}
