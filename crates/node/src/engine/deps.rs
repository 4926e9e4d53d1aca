//! Ordering between workloads on one node: a container needs its volumes mounted first (and,
//! with networks, its network resource). A volume that a container still uses is removed only
//! after that container.

use std::collections::HashMap;

use zgrid_types::api::WorkloadRecord;
use zgrid_types::{WorkloadData, WorkloadId, WorkloadSpec};

use crate::store::{Entry, Phase};

/// Whether a workload's dependencies let it be provisioned now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ready {
    /// Everything it needs is in place.
    Yes,
    /// Something it needs is still being made; the text says what.
    Wait(String),
    /// It cannot be provisioned as specified; the text says why.
    Refuse(String),
}

/// The workloads `spec` needs on this node before it can be provisioned.
pub fn needs(spec: &WorkloadSpec) -> Vec<&WorkloadId> {
    match &spec.data {
        WorkloadData::Container(c) => c.volumes.iter().map(|v| &v.volume_id).collect(),
        _ => Vec::new(),
    }
}

/// Check what `spec` needs against what this node has (`entries`) and is asked for (`records`).
pub fn check(
    spec: &WorkloadSpec,
    entries: &HashMap<WorkloadId, Entry>,
    records: &HashMap<WorkloadId, WorkloadRecord>,
) -> Ready {
    for dep in needs(spec) {
        let Some(entry) = entries.get(dep) else {
            if records.get(dep).is_some_and(|r| r.state == zgrid_types::api::WorkloadState::Active) {
                return Ready::Wait(format!("waiting for volume {dep}"));
            }
            return Ready::Refuse(format!("volume {dep} is not on this node"));
        };
        let volume = &entry.workload.payload;
        if !matches!(volume.data, WorkloadData::Volume(_)) {
            return Ready::Refuse(format!("{dep} is a {} workload, not a volume", volume.data.kind()));
        }
        if volume.owner_key != spec.owner_key {
            return Ready::Refuse(format!("volume {dep} belongs to another owner; refused"));
        }
        match &entry.phase {
            Phase::Running => {}
            Phase::Provisioning => return Ready::Wait(format!("waiting for volume {dep}")),
            Phase::Failed { reason } => return Ready::Refuse(format!("volume {dep} failed: {reason}")),
            Phase::Removing => return Ready::Refuse(format!("volume {dep} is being removed")),
        }
    }
    Ready::Yes
}

/// Workloads on this node that use `id` and still have side effects, so `id` must stay.
pub fn users_of<'a>(id: &WorkloadId, entries: &'a HashMap<WorkloadId, Entry>) -> Vec<&'a WorkloadId> {
    entries
        .values()
        .filter(|e| !matches!(e.phase, Phase::Failed { .. }))
        .filter(|e| needs(&e.workload.payload).contains(&id))
        .map(Entry::id)
        .collect()
}
