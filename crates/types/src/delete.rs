//! An owner's signed request to remove a workload.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::{UserId, WorkloadId};
use crate::signing::Signable;
use crate::validate::{Valid, ensure};

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

impl DeleteRequest {
    /// Check that it was signed within `window` seconds of `now`, the rule request timestamps
    /// follow, so a delete request signed long ago (or post-dated) is not taken.
    pub fn check_time(&self, now: i64, window: i64) -> Valid {
        ensure(crate::auth::within_window(self.requested_at, now, window), "requested_at", || {
            format!(
                "{} is more than {window} s from the explorer's time ({now}): check this machine's clock and sign it again",
                self.requested_at
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_taken_only_within_the_clock_window() {
        let at = |requested_at| DeleteRequest { workload_id: crate::WorkloadId::from_u64(1), owner: 1, requested_at };
        assert!(at(1000).check_time(1300, 300).is_ok());
        assert!(at(1300).check_time(1000, 300).is_ok());
        assert_eq!(at(999).check_time(1300, 300).unwrap_err().field, "requested_at");
        assert!(at(1301).check_time(1000, 300).is_err());
        assert!(at(i64::MIN).check_time(1000, 300).is_err());
    }
}
