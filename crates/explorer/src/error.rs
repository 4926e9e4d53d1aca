//! HTTP errors, mapped in one place: client mistakes become 4xx with a message (and the field
//! at fault when there is one); internal failures become a generic 500 and are logged.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use zgrid_types::ValidationError;
use zgrid_types::api::ApiError;

use crate::db::{DbError, Taken};

/// An error response.
#[derive(Debug)]
pub struct ApiErr {
    status: StatusCode,
    body: ApiError,
}

impl ApiErr {
    /// A response with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, body: ApiError { error: message.into(), field: None } }
    }

    /// A 4xx about one field.
    pub fn field(status: StatusCode, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { status, body: ApiError { error: message.into(), field: Some(field.into()) } }
    }

    /// 400: the body is not what the API takes.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 401: the request is not (validly) signed.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    /// 403: signed by someone not allowed to do this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    /// 404: no such thing.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// Whether the client is at fault (a 4xx).
    pub fn is_client_error(&self) -> bool {
        self.status.is_client_error()
    }

    /// What went wrong, in words.
    pub fn message(&self) -> &str {
        &self.body.error
    }

    /// 409: conflicts with what exists.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }
}

impl From<ValidationError> for ApiErr {
    fn from(e: ValidationError) -> Self {
        Self::field(StatusCode::UNPROCESSABLE_ENTITY, e.field, e.message)
    }
}

impl From<DbError> for ApiErr {
    fn from(e: DbError) -> Self {
        tracing::error!(error = %e, "storage failure");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error; the explorer's log has the cause")
    }
}

impl From<Taken> for ApiErr {
    fn from(taken: Taken) -> Self {
        ApiErr::field(StatusCode::CONFLICT, taken.field, taken.message)
    }
}

impl From<sqlx::Error> for ApiErr {
    fn from(e: sqlx::Error) -> Self {
        DbError::from(e).into()
    }
}

impl IntoResponse for ApiErr {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

/// Result alias for handlers.
pub type ApiResult<T> = Result<T, ApiErr>;
