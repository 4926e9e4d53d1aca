//! The extractor for signed requests: checks the `Authorization` signature over method, path,
//! timestamp, nonce and body (on a blocking thread, off the async workers) and the timestamp
//! window, then parses the JSON body with the path of any field at fault. The nonce is claimed
//! later, in the same transaction as the request's action ([`crate::db::Db::transact`]).

use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;
use zgrid_types::PublicKey;
use zgrid_types::auth::RequestAuth;

use crate::AppState;
use crate::db::{Db, Nonce, Replayed};
use crate::error::ApiErr;

/// A request body signed by `key`.
pub struct Authed<T> {
    /// Who signed the request.
    pub key: PublicKey,
    /// The parsed body (`()` for requests without one).
    pub body: T,
    /// The request's nonce: give it to the write that carries the request out.
    pub nonce: Nonce,
}

impl From<Replayed> for ApiErr {
    fn from(_: Replayed) -> Self {
        ApiErr::unauthorized("this request was already used (nonce seen before); sign a new one")
    }
}

/// Refuse a signed request with `err` after spending its nonce, so that it cannot be carried
/// out later either (a replay of it is still refused as a replay).
pub async fn refused<T>(db: &Db, nonce: Nonce, err: ApiErr) -> Result<T, ApiErr> {
    db.transact(Some(nonce), |_| Box::pin(async { Ok::<_, ApiErr>(()) })).await?;
    Err(err)
}

/// Run CPU-bound signature checks on the blocking threads, so the async workers keep serving.
pub async fn off_async<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    tokio::task::spawn_blocking(f).await.expect("a signature check panicked")
}

/// Parse JSON, naming the field at fault on error.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiErr> {
    let bytes: &[u8] = if bytes.is_empty() { b"null" } else { bytes };
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_data() && path != "." {
            ApiErr::field(StatusCode::BAD_REQUEST, path.clone(), format!("invalid value at {path}: {inner}"))
        } else {
            ApiErr::bad_request(format!("invalid JSON body: {inner}"))
        }
    })
}

impl<T: DeserializeOwned + Send> FromRequest<AppState> for Authed<T> {
    type Rejection = ApiErr;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiErr> {
        let (parts, body) = req.into_parts();
        let header = parts.headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
        let auth = RequestAuth::from_header(header).map_err(|e| ApiErr::unauthorized(e.to_string()))?;
        let limit = state.config.max_body_bytes;
        let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
            ApiErr::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body is larger than the limit of {limit} bytes"),
            )
        })?;
        let window = state.config.request_window_secs;
        auth.check_time(window, "explorer").map_err(|e| ApiErr::unauthorized(e.to_string()))?;
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
        let method = parts.method.as_str().to_string();
        let (auth, bytes) = off_async(move || {
            auth.verify(&method, &path, &bytes).map_err(|e| ApiErr::unauthorized(e.to_string()))?;
            Ok::<_, ApiErr>((auth, bytes))
        })
        .await?;
        let body = parse_json(&bytes)?;
        let nonce = Nonce { signer: auth.key.to_string(), nonce: auth.nonce, expires_at: auth.timestamp + window };
        Ok(Self { key: auth.key, body, nonce })
    }
}
