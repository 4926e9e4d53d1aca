//! The extractor for signed requests: checks the timestamp window and the `Authorization`
//! signature over method, path, timestamp, nonce and body, then parses the JSON body with the
//! path of any field at fault and runs the route's [`BodyCheck`] (all three off the async
//! workers, in one hand-off). The nonce is claimed
//! later, in the same transaction as the request's action ([`crate::db::Db::transact`]).

use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;
use zgrid_types::auth::RequestAuth;
use zgrid_types::{PublicKey, Signed, WorkloadSpec};

use crate::AppState;
use crate::db::{Db, Nonce, Replayed};
use crate::error::ApiErr;

/// A request body signed by `key`, and what `C` found checking the body along with the
/// request's signature.
pub struct Authed<T, C: BodyCheck<T> = Unchecked> {
    /// Who signed the request.
    pub key: PublicKey,
    /// The parsed body (`()` for requests without one).
    pub body: T,
    /// The request's nonce: give it to the write that carries the request out.
    pub nonce: Nonce,
    /// What `C` found; the handler decides when it counts.
    pub checked: C::Found,
}

/// A check of a request's body that runs with the check of the request's signature, on the
/// same thread off the async workers (one hand-off instead of two).
pub trait BodyCheck<T>: Send + 'static {
    /// What the check found.
    type Found: Send + 'static;
    /// Check `body`.
    fn check(body: &T) -> Self::Found;
}

/// No check of the body beyond parsing it.
pub struct Unchecked;

impl<T> BodyCheck<T> for Unchecked {
    type Found = ();
    fn check(_: &T) {}
}

/// Whether the workload's owner signature verifies (against the key the workload names; the
/// handler checks that key is the owner's).
pub struct OwnerSignature;

impl BodyCheck<Signed<WorkloadSpec>> for OwnerSignature {
    type Found = bool;
    fn check(body: &Signed<WorkloadSpec>) -> bool {
        body.verify_owner().is_ok()
    }
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

/// Run CPU-bound signature checks on a pool of one thread per core, so the async workers keep
/// serving. (Tokio's blocking pool grows a thread per waiting check and wakes one for each:
/// under load that cost a fifth of the explorer's throughput.)
pub async fn off_async<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = tokio::sync::oneshot::channel();
    rayon::spawn(move || {
        // A panic drops `tx`, which the caller reports.
        if let Ok(out) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
            let _ = tx.send(out);
        }
    });
    rx.await.expect("a signature check panicked")
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

impl<T: DeserializeOwned + Send + 'static, C: BodyCheck<T>> FromRequest<AppState> for Authed<T, C> {
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
        let (auth, body, checked) = off_async(move || {
            auth.verify(&method, &path, &bytes).map_err(|e| ApiErr::unauthorized(e.to_string()))?;
            let body: T = parse_json(&bytes)?;
            let checked = C::check(&body);
            Ok::<_, ApiErr>((auth, body, checked))
        })
        .await?;
        let nonce = Nonce { signer: auth.key.to_string(), nonce: auth.nonce, expires_at: auth.timestamp + window };
        Ok(Self { key: auth.key, body, nonce, checked })
    }
}
