//! Request and response bodies of the explorer's `/v1` API that are not directory or workload
//! payloads themselves: stored workload records, the node feed, pages, filters and errors.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::delete::DeleteRequest;
use crate::ids::{FarmId, UserId};
use crate::result::WorkloadResult;
use crate::signing::Signed;
use crate::workload::WorkloadSpec;

/// Where a workload is in its life at the explorer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WorkloadState {
    /// Desired on its node.
    Active,
    /// Removed at its owner's signed request.
    Deleted,
    /// Past its expiry time.
    Expired,
}

impl WorkloadState {
    /// The snake_case name used on the wire and in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Deleted => "deleted",
            Self::Expired => "expired",
        }
    }
}

impl std::str::FromStr for WorkloadState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "active" => Ok(Self::Active),
            "deleted" => Ok(Self::Deleted),
            "expired" => Ok(Self::Expired),
            other => Err(format!("unknown workload state {other:?}: use active, deleted or expired")),
        }
    }
}

/// Who ended a workload and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Deletion {
    /// Unix time it left the desired set.
    pub at: i64,
    /// The user whose signed request removed it; `None` when it expired.
    pub by: Option<UserId>,
    /// That signed request, so nodes can check it themselves.
    pub request: Option<Signed<DeleteRequest>>,
}

/// A workload as the explorer stores it: the owner-signed spec, its state and the node's latest
/// signed result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkloadRecord {
    /// The current version, as signed by the owner.
    pub workload: Signed<WorkloadSpec>,
    /// Life-cycle state.
    pub state: WorkloadState,
    /// Unix time the first version was accepted.
    pub created_at: i64,
    /// Unix time of the last change.
    pub updated_at: i64,
    /// Set once deleted or expired.
    pub deletion: Option<Deletion>,
    /// The node's most recent signed report.
    pub result: Option<Signed<WorkloadResult>>,
}

/// One change in a node's desired set, as sent on the feed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FeedEvent {
    /// Resume point: reconnect with `?cursor=` this value to get only later events.
    pub cursor: i64,
    /// The workload as it is now (active, deleted or expired).
    pub record: WorkloadRecord,
}

/// Most results one `POST /v1/nodes/{id}/results` carries.
pub const MAX_RESULTS: usize = 256;

/// The explorer's answer to a batch of results.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ResultsReceipt {
    /// How many results were kept.
    pub accepted: u32,
    /// The results refused, with why; they will never be kept, so the node drops them.
    pub refused: Vec<RefusedResult>,
}

/// A result the explorer refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RefusedResult {
    /// The workload the result was about.
    pub workload_id: crate::WorkloadId,
    /// Why it was refused.
    pub error: String,
}

/// A node's whole desired set, for reconciling after a gap.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DesiredSet {
    /// Feed position this snapshot corresponds to; stream from here.
    pub cursor: i64,
    /// Every active workload of the node.
    pub workloads: Vec<WorkloadRecord>,
}

/// One page of a listing paged by number (farms).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    /// The items on this page.
    pub items: Vec<T>,
    /// 1-based page number.
    pub page: u32,
    /// Page size used.
    pub size: u32,
    /// Items matching in all pages.
    pub total: u64,
}

/// One page of a listing paged by key: follow `next` until it is absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct KeyPage<T> {
    /// The items on this page, in the listing's order.
    pub items: Vec<T>,
    /// Send this as `after` to get the next page; absent on the last page. An opaque key:
    /// it names where this page ended, not a position, so items added or removed meanwhile
    /// neither repeat nor skip the items that come after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ApiError {
    /// What went wrong and what to change.
    pub error: String,
    /// JSON path of the offending field, when one is at fault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// Largest page size.
pub const MAX_PAGE_SIZE: u32 = 500;

/// Largest page number (the largest 32-bit signed integer, so every client can hold it).
pub const MAX_PAGE: u32 = i32::MAX as u32;

/// How often the explorer sends a keep-alive comment on an idle node feed, in seconds; a
/// reader may take a feed silent for several times this long as dead.
pub const FEED_KEEPALIVE_SECS: u64 = 15;

/// Pagination parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct Paging {
    /// 1-based page number (default 1, at most 2147483647).
    #[param(minimum = 1, maximum = 2147483647)]
    pub page: Option<u32>,
    /// Items per page (default 50, at most 500).
    #[param(minimum = 1, maximum = 500)]
    pub size: Option<u32>,
}

/// Filters for finding nodes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct NodeFilter {
    /// Only nodes of this farm.
    pub farm: Option<FarmId>,
    /// Only nodes in this country (case-insensitive).
    pub country: Option<String>,
    /// Only nodes in this city (case-insensitive).
    pub city: Option<String>,
    /// At least this many free CPU cores.
    pub free_cru: Option<u64>,
    /// At least this much free memory, MiB.
    pub free_mru: Option<u64>,
    /// At least this much free SSD, MiB.
    pub free_sru: Option<u64>,
    /// At least this much free HDD, MiB.
    pub free_hru: Option<u64>,
    /// Only nodes that are (true) or are not (false) alive.
    pub alive: Option<bool>,
    /// Only nodes that have (true) or have not (false) public IPv6 addresses for containers.
    pub public_ipv6: Option<bool>,
    /// Only nodes that run (true) or do not run (false) Yggdrasil for containers.
    pub yggdrasil: Option<bool>,
    /// Start after this key: the `next` of the previous page (absent for the first page).
    pub after: Option<String>,
    /// Items per page (default 50, at most 500).
    #[param(minimum = 1, maximum = 500)]
    pub size: Option<u32>,
}

/// Filters for listing workloads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WorkloadFilter {
    /// Only workloads of this owner.
    pub owner: Option<UserId>,
    /// Only workloads in this state.
    #[param(value_type = Option<WorkloadState>)]
    pub state: Option<String>,
    /// Start after this key: the `next` of the previous page (absent for the first page).
    pub after: Option<String>,
    /// Items per page (default 50, at most 500).
    #[param(minimum = 1, maximum = 500)]
    pub size: Option<u32>,
}

/// Query of the node feed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FeedQuery {
    /// Send only events after this cursor (default 0: everything still relevant).
    pub cursor: Option<i64>,
}
