//! HTTP handlers, one module per resource. Handlers translate between HTTP and the storage
//! layer; every rule about who may do what lives here, next to the route it guards.

pub mod farms;
pub mod feed;
pub mod nodes;
pub mod users;
pub mod workloads;

use zgrid_types::api::{MAX_PAGE_SIZE, Paging};

use crate::error::{ApiErr, ApiResult};

/// Default page size.
const DEFAULT_PAGE_SIZE: u32 = 50;

/// Resolve `page` and `size` with defaults, refusing out-of-range values.
pub(crate) fn paging(p: Paging) -> ApiResult<(u32, u32)> {
    let page = p.page.unwrap_or(1);
    let size = p.size.unwrap_or(DEFAULT_PAGE_SIZE);
    if page == 0 {
        return Err(ApiErr::field(axum::http::StatusCode::BAD_REQUEST, "page", "pages are numbered from 1"));
    }
    if size == 0 || size > MAX_PAGE_SIZE {
        return Err(ApiErr::field(
            axum::http::StatusCode::BAD_REQUEST,
            "size",
            format!("page size must be 1 to {MAX_PAGE_SIZE}"),
        ));
    }
    Ok((page, size))
}
