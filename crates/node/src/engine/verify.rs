//! The node's own checks of what the explorer sends: it trusts no one's word that a workload or
//! a deletion was asked for by the owner.

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

/// Whether the record proves that the workload must go: it expired by its own signed expiry
/// time, or its owner signed a request to delete it.
pub fn removal(record: &WorkloadRecord, now: i64) -> Result<&'static str, String> {
    let spec = &record.workload.payload;
    if spec.expires_at <= now {
        return Ok("expired");
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
        (WorkloadState::Expired, _) => {
            Err(format!("workload {} is marked expired before its expiry time; kept", spec.id))
        }
        (WorkloadState::Active, _) => Err(format!("workload {} is active", spec.id)),
    }
}
