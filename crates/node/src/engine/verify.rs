//! The node's own checks of what the explorer sends: it trusts no one's word that a workload or
//! a deletion was asked for by the owner.
//!
//! Removal is judged against the signed workload the node verified itself (the version it runs,
//! or a newer one whose owner signature it has just checked): the explorer's record contributes
//! only its state and the owner's signed delete request, never the expiry, the owner or the key
//! those are checked against.

use zgrid_types::api::{WorkloadRecord, WorkloadState};
use zgrid_types::{NodeId, Signed, WorkloadSpec};

/// Check that a workload is for this node, signed by the owner key it names, and valid by the
/// rules the explorer applies ([`WorkloadSpec::validate_content`]).
pub fn workload(signed: &Signed<WorkloadSpec>, me: &NodeId) -> Result<(), String> {
    let spec = &signed.payload;
    if spec.node_id != *me {
        return Err(format!("workload {} is for node {}, not this node", spec.id, spec.node_id));
    }
    signed.verify_owner().map_err(|_| {
        format!("the owner's signature on workload {} version {} does not verify; refused", spec.id, spec.version)
    })?;
    // The explorer's own checks, run again: a node refuses what breaks them, whoever let it through.
    spec.validate_content().map_err(|e| format!("workload {} version {}: {e}; refused", spec.id, spec.version))
}

/// Check that `newer`, a verified version of the workload this node runs as `running`, is the
/// same owner's: a version signed by another key (one the explorer swapped in) is refused.
pub fn update(running: &Signed<WorkloadSpec>, newer: &Signed<WorkloadSpec>) -> Result<(), String> {
    let (old, new) = (&running.payload, &newer.payload);
    if new.owner_key != old.owner_key || new.owner != old.owner {
        return Err(format!(
            "version {} of workload {} names another owner or owner key than version {} this node runs; refused",
            new.version, new.id, old.version
        ));
    }
    if std::mem::discriminant(&new.data) != std::mem::discriminant(&old.data) {
        return Err(format!("version {} of workload {} is of another kind; refused", new.version, new.id));
    }
    Ok(())
}

/// The signed workload removal is judged against: the version this node runs (`running`), or
/// the record's newer version once its owner signature verifies for this node.
pub fn removal_basis<'a>(
    record: &'a WorkloadRecord,
    running: &'a Signed<WorkloadSpec>,
    me: &NodeId,
) -> Result<&'a Signed<WorkloadSpec>, String> {
    if record.workload.payload.version <= running.payload.version {
        return Ok(running);
    }
    workload(&record.workload, me)
        .and_then(|()| update(running, &record.workload))
        .map(|()| &record.workload)
        .map_err(|m| format!("{m}; the running version is kept"))
}

/// Whether the workload `signed` (a verified [`removal_basis`]) must go: its own signed expiry
/// time has passed, or the explorer's `record` carries a delete request its owner signed.
pub fn removal(record: &WorkloadRecord, signed: &Signed<WorkloadSpec>, now: i64) -> Result<&'static str, String> {
    let spec = &signed.payload;
    if spec.expires_at <= now {
        return Ok("expired");
    }
    let theirs = &record.workload;
    if theirs.payload.version == spec.version && theirs != signed {
        return Err(format!(
            "the explorer's record of workload {} version {} is not what its owner signed; ignored, kept running",
            spec.id, spec.version
        ));
    }
    match (&record.state, record.deletion.as_ref().and_then(|d| d.request.as_ref())) {
        (WorkloadState::Deleted, Some(request)) => {
            let r = &request.payload;
            if r.workload_id != spec.id || r.owner != spec.owner {
                return Err(format!("the delete request for {} names another workload or owner; ignored", spec.id));
            }
            request
                .verify(&spec.owner_key)
                .map(|()| "deleted by its owner")
                .map_err(|_| format!("the delete request for {} is not signed by its owner; ignored", spec.id))
        }
        (WorkloadState::Deleted, None) => {
            Err(format!("workload {} is marked deleted without a signed request; kept", spec.id))
        }
        (WorkloadState::Expired, _) => Err(format!(
            "workload {} is marked expired, but its signed expiry time {} is {} s away; kept until then",
            spec.id,
            spec.expires_at,
            spec.expires_at - now
        )),
        (WorkloadState::Active, _) => Err(format!(
            "the explorer's record of workload {} (version {}) asks neither to run nor to remove it; kept",
            spec.id, theirs.payload.version
        )),
    }
}
