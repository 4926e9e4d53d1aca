//! The volume workload: a size-limited filesystem on a node that outlives the containers
//! that mount it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::DiskType;
use crate::validate::{Valid, ensure};

/// Largest volume, in MiB (16 TiB).
pub const MAX_VOLUME_MIB: u64 = 16 << 20;

/// A persistent volume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Volume {
    /// Size in MiB (the seed system used GiB; MiB lets small volumes exist).
    pub size: u64,
    /// Disk class (the seed's `type`; renamed because `type` names the workload kind).
    pub disk_type: DiskType,
}

impl Volume {
    pub(super) fn validate(&self) -> Valid {
        ensure((1..=MAX_VOLUME_MIB).contains(&self.size), "size", || {
            format!("{} MiB is out of range: use 1 to {MAX_VOLUME_MIB} MiB", self.size)
        })
    }
}
