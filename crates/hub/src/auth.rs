//! Signed uploads: the body is received (to memory or to a file) while it is hashed, then the
//! `Authorization` signature is checked over method, path, timestamp, nonce and that hash; the
//! timestamp must be within the window and the nonce unused. Nonces live in memory, so requests
//! signed before this hub process started are refused: none can be replayed across a restart.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;

use axum::body::Body;
use axum::http::header;
use axum::http::request::Parts;
use futures::StreamExt;
use zgrid_types::PublicKey;
use zgrid_types::auth::{AuthError, RequestAuth};

use crate::error::Refusal;

/// Nonces seen within the window, with when they may be forgotten.
pub struct Nonces {
    window: i64,
    started: i64,
    seen: Mutex<HashMap<String, i64>>,
}

impl Nonces {
    /// An empty set for a hub started now.
    pub fn new(window: i64) -> Self {
        Self { window, started: zgrid_types::unix_now(), seen: Mutex::new(HashMap::new()) }
    }

    /// Check `auth`'s time and claim its nonce.
    fn claim(&self, auth: &RequestAuth) -> Result<(), Refusal> {
        let now = zgrid_types::unix_now();
        if (auth.timestamp - now).abs() > self.window {
            return Err(Refusal::unauthorized(format!(
                "request timestamp {} is more than {} s from the hub's clock ({now}); check the clock and sign again",
                auth.timestamp, self.window
            )));
        }
        if auth.timestamp < self.started {
            return Err(Refusal::unauthorized("this request was signed before the hub started; sign it again"));
        }
        let mut seen = self.seen.lock().expect("nonce lock");
        if seen.len() > 100_000 {
            seen.retain(|_, forget_at| *forget_at >= now);
        }
        let key = format!("{}/{}", auth.key, auth.nonce);
        if seen.insert(key, auth.timestamp + self.window).is_some() {
            return Err(Refusal::unauthorized("this request was already used (nonce seen before); sign a new one"));
        }
        Ok(())
    }
}

/// A signed body, kept in memory or spooled to a file.
pub enum Upload {
    /// Small bodies.
    Memory(Vec<u8>),
    /// Large bodies, in the hub's scratch directory.
    File(tempfile::NamedTempFile),
}

/// Receive the body of a signed request (at most `limit` bytes; to a file in `spool` when
/// given) and check its signature and nonce. Returns the signer and the body.
pub async fn receive(
    nonces: &Nonces,
    parts: &Parts,
    body: Body,
    limit: u64,
    spool: Option<&std::path::Path>,
) -> Result<(PublicKey, Upload), Refusal> {
    let header = parts
        .headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| Refusal::unauthorized(AuthError::Missing.to_string()))?
        .to_str()
        .map_err(|_| Refusal::unauthorized("Authorization header is not ASCII"))?;
    let auth = RequestAuth::parse(header).map_err(|e| Refusal::unauthorized(e.to_string()))?;
    let mut hasher = blake3::Hasher::new();
    let mut upload = match spool {
        Some(dir) => Upload::File(
            tempfile::NamedTempFile::new_in(dir).map_err(|e| Refusal::internal("cannot create a spool file", e))?,
        ),
        None => Upload::Memory(Vec::new()),
    };
    let mut received = 0u64;
    let mut stream = body.into_data_stream();
    while let Some(piece) = stream.next().await {
        let piece = piece.map_err(|e| Refusal::bad_request(format!("the upload broke off: {e}")))?;
        received += piece.len() as u64;
        if received > limit {
            return Err(Refusal::new(
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is larger than this hub's limit of {limit} bytes"),
            ));
        }
        hasher.update(&piece);
        match &mut upload {
            Upload::Memory(bytes) => bytes.extend_from_slice(&piece),
            Upload::File(file) => {
                file.write_all(&piece).map_err(|e| Refusal::internal("cannot spool an upload", e))?;
            }
        }
    }
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    auth.verify_hashed(parts.method.as_str(), path, &hasher.finalize())
        .map_err(|e| Refusal::unauthorized(e.to_string()))?;
    nonces.claim(&auth)?;
    Ok((auth.key, upload))
}
