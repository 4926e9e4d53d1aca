//! Signed uploads. Before the body is read, the `Authorization` header must parse, its
//! timestamp be within the window and its key own the namespace written to; the body is then
//! received (to memory or to a file) while it is hashed, and the signature checked over method,
//! path, timestamp, nonce and that hash. A nonce is used once: used nonces are kept, with when
//! they may be forgotten, in memory and in an append-only file, so a restarted hub still knows
//! them.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use futures::StreamExt;
use zgrid_types::PublicKey;
use zgrid_types::auth::RequestAuth;

use crate::error::Refusal;

/// Nonces seen within the window, with when they may be forgotten.
pub struct Nonces {
    window: i64,
    seen: Mutex<Seen>,
}

struct Seen {
    /// `key/nonce` -> when it may be forgotten.
    map: HashMap<String, i64>,
    /// The same, one `<forget-at> <key/nonce>` line each.
    file: std::fs::File,
    path: PathBuf,
}

impl Nonces {
    /// The nonces recorded in `path` that are still within the window (the file is rewritten
    /// with only those).
    pub fn open(path: &Path, window: i64) -> std::io::Result<Self> {
        let now = zgrid_types::unix_now();
        let mut map = HashMap::new();
        if let Ok(file) = std::fs::File::open(path) {
            for line in std::io::BufReader::new(file).lines() {
                let line = line?;
                if let Some((at, key)) = line.split_once(' ')
                    && let Ok(at) = at.parse::<i64>()
                    && at >= now
                {
                    map.insert(key.to_owned(), at);
                }
            }
        }
        let file = rewrite(path, &map)?;
        Ok(Self { window, seen: Mutex::new(Seen { map, file, path: path.to_owned() }) })
    }

    /// Claim `auth`'s nonce, durably.
    fn claim(&self, auth: &RequestAuth) -> Result<(), Refusal> {
        let now = zgrid_types::unix_now();
        let mut seen = self.seen.lock().expect("nonce lock");
        let key = format!("{}/{}", auth.key, auth.nonce);
        if seen.map.contains_key(&key) {
            return Err(Refusal::unauthorized("this request was already used (nonce seen before); sign a new one"));
        }
        let forget_at = auth.timestamp + self.window;
        seen.map.insert(key.clone(), forget_at);
        let written = writeln!(seen.file, "{forget_at} {key}").and_then(|()| seen.file.sync_data());
        written.map_err(|e| Refusal::internal("cannot record a nonce", e))?;
        if seen.map.len() > 100_000 {
            seen.map.retain(|_, at| *at >= now);
            let compacted =
                rewrite(&seen.path, &seen.map).map_err(|e| Refusal::internal("cannot compact nonces", e))?;
            seen.file = compacted;
        }
        Ok(())
    }
}

/// Write `map` to `path` (aside, then renamed) and open it for appending.
fn rewrite(path: &Path, map: &HashMap<String, i64>) -> std::io::Result<std::fs::File> {
    let tmp = path.with_extension("tmp");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
    for (key, at) in map {
        writeln!(out, "{at} {key}")?;
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::OpenOptions::new().append(true).open(path)
}

/// Receive the body of a signed request (at most `limit` bytes) into `sink` (memory or a spool
/// file) and check its signature and nonce; with `owner`, only that key may sign. The header,
/// its time and the owner are checked before the body is read. Returns the signer.
pub async fn receive(
    nonces: &Nonces,
    parts: &Parts,
    body: Body,
    limit: u64,
    owner: Option<&str>,
    sink: &mut impl Write,
) -> Result<PublicKey, Refusal> {
    let auth = RequestAuth::from_header(parts.headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()))
        .and_then(|auth| auth.check_time(nonces.window, "hub").map(|()| auth))
        .map_err(|e| Refusal::unauthorized(e.to_string()))?;
    if let Some(owner) = owner
        && owner != auth.key.to_string()
    {
        return Err(Refusal::new(
            StatusCode::FORBIDDEN,
            format!("you ({}) may only write to your own namespace, not {owner}", auth.key),
        ));
    }
    let mut hasher = blake3::Hasher::new();
    let mut received = 0u64;
    let mut stream = body.into_data_stream();
    while let Some(piece) = stream.next().await {
        let piece = piece.map_err(|e| Refusal::bad_request(format!("the upload broke off: {e}")))?;
        received += piece.len() as u64;
        if received > limit {
            return Err(Refusal::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is larger than this hub's limit of {limit} bytes"),
            ));
        }
        hasher.update(&piece);
        sink.write_all(&piece).map_err(|e| Refusal::internal("cannot keep an upload", e))?;
    }
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    auth.verify_hashed(parts.method.as_str(), path, &hasher.finalize())
        .map_err(|e| Refusal::unauthorized(e.to_string()))?;
    nonces.claim(&auth)?;
    Ok(auth.key)
}
