//! An owner's signed request to remove a workload.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::{UserId, WorkloadId};
use crate::signing::Signable;

/// "Remove this workload", signed by its owner. The explorer keeps it and hands it to the node,
/// so the node too can check that the owner asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteRequest {
    /// The workload to remove.
    pub workload_id: WorkloadId,
    /// Its owner, who signs this request.
    pub owner: UserId,
    /// Unix time (seconds) of the request.
    pub requested_at: i64,
}

impl Signable for DeleteRequest {
    const DOMAIN: &'static str = "zgrid/delete/v1";
}
