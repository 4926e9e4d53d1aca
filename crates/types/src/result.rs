//! What a node reports about a workload, signed with the node's key.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::{NodeId, WorkloadId};
use crate::signing::Signable;

/// The message of the `provisioning` result a node sends once a container's image is ready.
pub const IMAGE_READY: &str = "image ready";

/// Outcome of provisioning or removing a workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResultState {
    /// The node picked it up and is working on it; `message` says what it is doing.
    Provisioning,
    /// It failed; `message` says why.
    Error,
    /// It runs as specified.
    Ok,
    /// It was removed from the node.
    Deleted,
}

impl ResultState {
    /// The snake_case name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provisioning => "provisioning",
            Self::Error => "error",
            Self::Ok => "ok",
            Self::Deleted => "deleted",
        }
    }
}

/// A node's report on one version of one workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkloadResult {
    /// The workload reported on.
    pub workload_id: WorkloadId,
    /// The version the node acted on.
    pub version: u32,
    /// The reporting node; its key signs the result.
    pub node_id: NodeId,
    /// Outcome.
    pub state: ResultState,
    /// Human-readable detail; for errors, the specific reason.
    #[serde(default)]
    pub message: String,
    /// Type-specific facts (addresses, ports, ...).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    /// Unix time (seconds) the node produced the result.
    pub timestamp: i64,
}

impl Signable for WorkloadResult {
    const DOMAIN: &'static str = "zgrid/result/v1";
}
