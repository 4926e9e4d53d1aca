//! The error responses the routes share, in sets that a `#[utoipa::path]` names in its
//! `responses(...)` after its success response and before the errors of its own (a 404 naming the
//! resource). The sets exist only for the OpenAPI document: handlers answer with `ApiErr`, whose
//! body is an [`ApiError`]. A variant's doc comment is its response's description.

use utoipa::IntoResponses;
use zgrid_types::api::ApiError;

/// The errors of an unsigned read: only its path or query can be at fault.
#[derive(IntoResponses)]
#[expect(dead_code, reason = "a set of responses for the document, never a value")]
pub(crate) enum ReadErrors {
    /// A malformed path, query or body; `field` names the part at fault
    #[response(status = 400)]
    Malformed(ApiError),
}

/// The errors of any signed request, read or write (`Authed` checks the signature and bounds
/// the body before the handler runs).
#[derive(IntoResponses)]
#[expect(dead_code, reason = "a set of responses for the document, never a value")]
pub(crate) enum SignedErrors {
    /// A malformed path, query or body; `field` names the part at fault
    #[response(status = 400)]
    Malformed(ApiError),
    /// The request is not validly signed, is outside the time window or was seen before
    #[response(status = 401)]
    Unauthorized(ApiError),
    /// Signed by a key that may not do this
    #[response(status = 403)]
    Forbidden(ApiError),
    /// The body is larger than the explorer takes
    #[response(status = 413)]
    TooLarge(ApiError),
}

/// The refusal every signed write adds to [`SignedErrors`]: its body is checked against rules.
#[derive(IntoResponses)]
#[expect(dead_code, reason = "a set of responses for the document, never a value")]
pub(crate) enum Refused {
    /// Well formed but refused by a rule; `field` names the part at fault
    #[response(status = 422)]
    Unprocessable(ApiError),
}

/// The conflict of a write that can collide with what exists: a name or id taken, a version
/// that is not newer, a workload no longer active.
#[derive(IntoResponses)]
#[expect(dead_code, reason = "a set of responses for the document, never a value")]
pub(crate) enum Conflict {
    /// Conflicts with what exists
    #[response(status = 409)]
    Conflict(ApiError),
}
