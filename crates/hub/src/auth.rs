//! Signed uploads. Every check is made on the headers, before a byte of the body is read: the
//! signature covers the body's length (`Content-Length`) and BLAKE3 hash (declared in
//! `X-Zgrid-Content-Hash`), so a stranger's upload is refused before it costs the hub memory or
//! disk. The body is then received while it is hashed, and refused unless it is what was
//! signed. A nonce is used once: used nonces are kept, with when they may be forgotten, in
//! memory and in an append-only file, so a restarted hub still knows them.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use axum::body::{Body, HttpBody};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use futures::StreamExt;
use zgrid_types::auth::{BodyDigest, CONTENT_HASH_HEADER, RequestAuth};

use crate::Inner;
use crate::error::Refusal;
use crate::limits::Permit;

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

/// A signed upload whose headers passed every check, admitted among the uploads in progress;
/// its body is still unread. Holds its share of the limits until dropped.
pub struct Upload {
    body: BodyDigest,
    _permit: Permit,
}

impl Upload {
    /// Check a signed upload from its headers alone, in this order: the `Authorization` header
    /// parses and its time is within the window (401); with `owner`, the signer is that key
    /// (403); the body's length is declared (411) and at most `limit` (413); its hash is
    /// declared (400); the signature covers them (401); the nonce is new, and is claimed (401);
    /// the uploads in progress leave room for it (429, 503).
    pub fn admit(hub: &Inner, parts: &Parts, body: &Body, limit: u64, owner: Option<&str>) -> Result<Self, Refusal> {
        let nonces = &hub.auth;
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
        let len = body.size_hint().exact().ok_or_else(|| {
            Refusal::new(
                StatusCode::LENGTH_REQUIRED,
                "send the body's length in Content-Length (not chunked): it is signed",
            )
        })?;
        if len > limit {
            return Err(Refusal::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body ({len} bytes) is larger than this hub's limit of {limit} bytes for this request"),
            ));
        }
        let hash = parts
            .headers
            .get(CONTENT_HASH_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| blake3::Hash::from_hex(v).ok())
            .ok_or_else(|| {
                Refusal::bad_request(format!(
                    "send the BLAKE3 hash of the body (64 hex digits) in {CONTENT_HASH_HEADER}: it is signed"
                ))
            })?;
        let digest = BodyDigest { len, hash };
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        auth.verify_digest(parts.method.as_str(), path, &digest).map_err(|e| Refusal::unauthorized(e.to_string()))?;
        nonces.claim(&auth)?;
        let permit = hub.uploads.admit(&auth.key, len)?;
        Ok(Self { body: digest, _permit: permit })
    }

    /// The BLAKE3 hash the body was signed with.
    pub fn hash(&self) -> &blake3::Hash {
        &self.body.hash
    }

    /// Receive the body into `sink` (memory or a spool file), hashing it as it arrives; it must
    /// be the declared length and hash (400), and nothing past the declared length is taken.
    /// On refusal, what `sink` holds must be thrown away.
    pub async fn receive(&self, body: Body, sink: &mut impl Write) -> Result<(), Refusal> {
        let declared = self.body.len;
        let mut hasher = blake3::Hasher::new();
        let mut stream = body.into_data_stream();
        while let Some(piece) = stream.next().await {
            let piece = piece.map_err(|e| Refusal::bad_request(format!("the upload broke off: {e}")))?;
            if hasher.count() + piece.len() as u64 > declared {
                return Err(Refusal::bad_request(format!(
                    "the body is longer than its declared length of {declared} bytes"
                )));
            }
            hasher.update(&piece);
            sink.write_all(&piece).map_err(|e| Refusal::internal("cannot keep an upload", e))?;
        }
        if hasher.count() != declared {
            return Err(Refusal::bad_request(format!(
                "the upload broke off after {} of its {declared} bytes",
                hasher.count()
            )));
        }
        if hasher.finalize() != self.body.hash {
            return Err(Refusal::bad_request(format!(
                "the body does not match the hash it was signed with ({CONTENT_HASH_HEADER}); nothing was stored"
            )));
        }
        Ok(())
    }
}
