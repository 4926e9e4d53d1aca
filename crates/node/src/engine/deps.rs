//! Ordering between workloads on one node: a container needs its volumes mounted and the
//! network it joins up first. A volume or network that a container still uses is removed only
//! after that container.

use std::collections::HashMap;

use zgrid_types::api::{WorkloadRecord, WorkloadState};
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

/// Something a workload needs on its node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need<'a> {
    /// A volume, by id (any owner's, so another owner's is refused with a reason).
    Volume(&'a WorkloadId),
    /// The owner's network resource of this network name.
    Network(&'a str),
}

impl Need<'_> {
    /// Whether `candidate` is what this need of `spec` asks for.
    fn met_by(&self, spec: &WorkloadSpec, candidate: &WorkloadSpec) -> bool {
        match (self, &candidate.data) {
            (Need::Volume(id), _) => candidate.id == **id,
            (Need::Network(name), WorkloadData::NetworkResource(nr)) => {
                nr.name == *name && candidate.owner_key == spec.owner_key
            }
            (Need::Network(_), _) => false,
        }
    }

    fn describe(&self) -> String {
        match self {
            Need::Volume(id) => format!("volume {id}"),
            Need::Network(name) => format!("network {name:?}"),
        }
    }
}

fn needs(spec: &WorkloadSpec) -> Vec<Need<'_>> {
    let volumes = spec.data.volume_mounts().iter().map(|v| Need::Volume(&v.volume_id));
    volumes.chain(spec.data.network_attachment().map(|(network, _)| Need::Network(network))).collect()
}

/// Whether `user` needs `dependency`.
pub fn depends_on(user: &WorkloadSpec, dependency: &WorkloadSpec) -> bool {
    user.id != dependency.id && needs(user).iter().any(|n| n.met_by(user, dependency))
}

/// Check what `spec` needs against what this node has (`entries`) and is asked for (`records`).
pub fn check(
    spec: &WorkloadSpec,
    entries: &HashMap<WorkloadId, Entry>,
    records: &HashMap<WorkloadId, WorkloadRecord>,
) -> Ready {
    for need in needs(spec) {
        let what = need.describe();
        // Of several (an old network resource being removed, a new one), the one not leaving.
        let found = entries
            .values()
            .filter(|e| need.met_by(spec, &e.workload.payload))
            .min_by_key(|e| matches!(e.phase, Phase::Removing));
        let Some(entry) = found else {
            let asked =
                records.values().any(|r| r.state == WorkloadState::Active && need.met_by(spec, &r.workload.payload));
            if asked {
                return Ready::Wait(format!("waiting for {what}"));
            }
            return Ready::Refuse(match need {
                Need::Volume(_) => format!("{what} is not on this node"),
                Need::Network(_) => format!("{what} has no resource on this node; add the node to the network first"),
            });
        };
        let dependency = &entry.workload.payload;
        if let Need::Volume(id) = need {
            if !matches!(dependency.data, WorkloadData::Volume(_)) {
                return Ready::Refuse(format!("{id} is a {} workload, not a volume", dependency.data.kind()));
            }
            if dependency.owner_key != spec.owner_key {
                return Ready::Refuse(format!("{what} belongs to another owner; refused"));
            }
        }
        match &entry.phase {
            Phase::Running => {}
            Phase::Provisioning => return Ready::Wait(format!("waiting for {what}")),
            Phase::Failed { reason } => return Ready::Refuse(format!("{what} failed: {reason}")),
            Phase::Removing => return Ready::Refuse(format!("{what} is being removed")),
        }
    }
    Ready::Yes
}

/// Workloads on this node that use `id` and still have side effects, so `id` must stay.
pub fn users_of<'a>(id: &WorkloadId, entries: &'a HashMap<WorkloadId, Entry>) -> Vec<&'a WorkloadId> {
    let Some(dependency) = entries.get(id).map(|e| &e.workload.payload) else { return Vec::new() };
    entries
        .values()
        .filter(|e| !matches!(e.phase, Phase::Failed { .. }))
        .filter(|e| depends_on(&e.workload.payload, dependency))
        .map(Entry::id)
        .collect()
}
