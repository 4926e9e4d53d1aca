//! HTTP handlers, one module per resource. Handlers translate between HTTP and the storage
//! layer; every rule about who may do what lives here, next to the route it guards.

mod errors;
pub mod farms;
pub mod feed;
pub mod nodes;
pub mod users;
pub mod workloads;

use zgrid_types::api::{MAX_PAGE, MAX_PAGE_SIZE, Paging};

use crate::error::{ApiErr, ApiResult};

/// Default page size.
const DEFAULT_PAGE_SIZE: u32 = 50;

/// Refuse a number of a query that does not fit the database's 64-bit signed integers.
pub(crate) fn fits_i64(field: &str, value: Option<u64>) -> ApiResult<()> {
    match value {
        Some(v) if i64::try_from(v).is_err() => {
            Err(ApiErr::field(axum::http::StatusCode::BAD_REQUEST, field, format!("{v} is larger than {}", i64::MAX)))
        }
        _ => Ok(()),
    }
}

/// Resolve a keyset listing's `size` with its default, refusing out-of-range values.
pub(crate) fn page_size(size: Option<u32>) -> ApiResult<u32> {
    paging(Paging { page: None, size }).map(|(_, size)| size)
}

/// The key in `after`, read by `decode`, or a 400 that says what to send.
pub(crate) fn after_key<K>(after: Option<&str>, decode: impl FnOnce(&str) -> Option<K>) -> ApiResult<Option<K>> {
    after
        .map(|text| {
            decode(text).ok_or_else(|| {
                ApiErr::field(
                    axum::http::StatusCode::BAD_REQUEST,
                    "after",
                    format!(
                        "{text:?} is not a key of this listing: send the `next` of the previous page unchanged \
                         (with the same filters), or leave `after` out for the first page"
                    ),
                )
            })
        })
        .transpose()
}

/// Resolve `page` and `size` with defaults, refusing out-of-range values.
pub(crate) fn paging(p: Paging) -> ApiResult<(u32, u32)> {
    let page = p.page.unwrap_or(1);
    let size = p.size.unwrap_or(DEFAULT_PAGE_SIZE);
    if page == 0 || page > MAX_PAGE {
        return Err(ApiErr::field(
            axum::http::StatusCode::BAD_REQUEST,
            "page",
            format!("pages are numbered from 1 to {MAX_PAGE}"),
        ));
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
