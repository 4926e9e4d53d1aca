//! The side effects of the engine, behind one trait: making a workload real on this machine,
//! checking on it, and removing it. The engine is tested with a recording implementation; the
//! agent uses [`crate::container::Containers`].

use std::future::Future;
use std::time::Duration;

use zgrid_types::{Signed, WorkloadId, WorkloadSpec};

/// Why provisioning failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProvisionError {
    /// Trying again will not help (bad input, unsupported); the message is reported as is.
    #[error("{0}")]
    Permanent(String),
    /// Might work on a later attempt.
    #[error("{0}")]
    Transient(String),
}

/// How a provisioned workload is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Running as provisioned.
    Running,
    /// It runs, but something went wrong inside it that the owner should hear about (for a
    /// container: the OOM killer struck one of its processes).
    Degraded(String),
    /// It runs but is not ready (for a container: its readiness probe does not pass); the text
    /// says why. The engine reports `"ready": false` in its result until it is [`Health::Running`]
    /// again.
    NotReady(String),
    /// It stopped; the text says how (a VM's guest state and console, a container's failed
    /// liveness probe or lost image mount).
    Stopped(String),
    /// Its process ended, and the node knows how (for a container: its exit code or signal,
    /// whether the OOM killer struck, its last output).
    Exited(Exit),
    /// Nothing of it exists (for example after a reboot).
    Missing,
}

/// How a workload's process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    /// What happened, cause first (`the container exited with code 1`).
    pub how: String,
    /// The same as facts for results' data: `exit_code`, `signal`, `oom_killed`, `output` (its
    /// last lines), those known.
    pub facts: serde_json::Map<String, serde_json::Value>,
    /// Whether starting it again cannot help (its image is corrupt): it is not restarted.
    pub permanent: bool,
}

/// Tells the owner how far provisioning got: each call reports a `provisioning` result with
/// the message (for a container: "image ready").
pub type Progress<'a> = &'a (dyn Fn(&str) + Send + Sync);

/// Makes workloads real. Every method must be idempotent: the engine calls again after a crash.
pub trait Provisioner: Send + Sync + 'static {
    /// Provision `workload` (again, if a previous attempt was cut short) and return the facts to
    /// report in the result; milestones on the way go to `progress`.
    fn provision(
        &self,
        workload: &Signed<WorkloadSpec>,
        progress: Progress<'_>,
    ) -> impl Future<Output = Result<serde_json::Value, ProvisionError>> + Send;

    /// Remove everything `id` created. Succeeds if nothing is left, including when nothing was there.
    fn remove(&self, id: &WorkloadId) -> impl Future<Output = Result<(), String>> + Send;

    /// Check a provisioned workload.
    fn health(&self, id: &WorkloadId) -> impl Future<Output = Health> + Send;

    /// Ids of workloads with side effects on this machine, to find orphans after a crash.
    fn existing(&self) -> impl Future<Output = Vec<WorkloadId>> + Send;

    /// Whether a new version of `spec` is applied to the running workload in place (a network
    /// resource keeps carrying traffic) rather than by removing the old version first. A failed
    /// in-place update leaves the running version alone.
    fn updates_in_place(&self, spec: &WorkloadSpec) -> bool {
        let _ = spec;
        false
    }

    /// How long provisioning `spec` may take when that is longer than the engine's step limit
    /// by nature (a Kubernetes VM waits for its node to join the cluster); `None` keeps the
    /// engine's limit.
    fn time_limit(&self, spec: &WorkloadSpec) -> Option<Duration> {
        let _ = spec;
        None
    }

    /// Whether the workload's side effects end with the agent process (a userspace WireGuard
    /// device), so the agent provisions it again when it starts, as after a reboot.
    fn lost_with_agent(&self, spec: &WorkloadSpec) -> bool {
        let _ = spec;
        false
    }
}
