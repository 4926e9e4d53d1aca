//! Authentication of state-changing HTTP requests.
//!
//! The caller signs the method, the path with its query, a timestamp, a single-use nonce and the
//! body's length and BLAKE3 hash (a [`BodyDigest`]), and sends
//! `Authorization: Zgrid key=<base58>,ts=<unix>,nonce=<hex>,sig=<hex>` with the length in
//! `Content-Length` and the hash in [`CONTENT_HASH_HEADER`]. A server that reads small bodies
//! whole (the explorer) verifies over what it read; one that takes large uploads (the hub)
//! verifies over the declared digest before it reads a byte, then checks that the body matches.
//! Timestamps outside the checker's window are refused, and nonces remembered for that window,
//! so a captured request can never be replayed.

use std::fmt;

use crate::keys::{KeyError, Keypair, PublicKey, Signature};

/// Domain of request signatures.
pub const REQUEST_DOMAIN: &str = "zgrid/request/v2";
/// The authorisation scheme name.
pub const SCHEME: &str = "Zgrid";
/// The header in which a signed request declares its body's BLAKE3 hash (lowercase hex).
pub const CONTENT_HASH_HEADER: &str = "x-zgrid-content-hash";

/// Why an `Authorization` header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No header was sent.
    #[error("this request must be signed: send an `Authorization: Zgrid key=..,ts=..,nonce=..,sig=..` header")]
    Missing,
    /// The header is not of the expected form.
    #[error("malformed Authorization header: {0}")]
    Malformed(String),
    /// The header is not ASCII text.
    #[error("Authorization header is not ASCII")]
    NotAscii,
    /// The signature is not valid for this request.
    #[error("request signature does not verify: {0}")]
    BadSignature(KeyError),
    /// The request was signed too long before or after the checker's clock.
    #[error(
        "request timestamp {timestamp} is more than {window} s from the {clock}'s clock ({now}); check the clock and sign again"
    )]
    Clock {
        /// When the request says it was signed.
        timestamp: i64,
        /// The checker's time.
        now: i64,
        /// The accepted distance, in seconds.
        window: i64,
        /// Whose clock: `explorer`, `hub` or `node`.
        clock: &'static str,
    },
}

/// The parts of a request's `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestAuth {
    /// The signer's key (a user's key or a node id).
    pub key: PublicKey,
    /// Unix time (seconds) the request was signed.
    pub timestamp: i64,
    /// Single-use value, 16 to 64 hex characters.
    pub nonce: String,
    /// Signature over [`request_bytes`].
    pub signature: Signature,
}

/// What a request signature says about the body: its length and BLAKE3 hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyDigest {
    /// Length in bytes.
    pub len: u64,
    /// BLAKE3 hash of the bytes.
    pub hash: blake3::Hash,
}

impl BodyDigest {
    /// The digest of `body`.
    pub fn of(body: &[u8]) -> Self {
        Self { len: body.len() as u64, hash: blake3::hash(body) }
    }
}

/// The bytes a request signature covers.
pub fn request_bytes(method: &str, path_and_query: &str, timestamp: i64, nonce: &str, body: &BodyDigest) -> Vec<u8> {
    let (len, hash) = (body.len, body.hash.to_hex());
    format!("{REQUEST_DOMAIN}\0{}\n{path_and_query}\n{timestamp}\n{nonce}\n{len}\n{hash}", method.to_ascii_uppercase())
        .into_bytes()
}

/// Whether `timestamp` is within `window` seconds of `now`, either side: the one clock rule for
/// signed requests and the signed objects they carry.
pub fn within_window(timestamp: i64, now: i64, window: i64) -> bool {
    timestamp.abs_diff(now) <= window.unsigned_abs()
}

impl RequestAuth {
    /// Sign a request.
    pub fn sign(key: &Keypair, method: &str, path_and_query: &str, timestamp: i64, nonce: String, body: &[u8]) -> Self {
        Self::sign_digest(key, method, path_and_query, timestamp, nonce, &BodyDigest::of(body))
    }

    /// Sign a request whose body is known by its digest (a large upload streamed from disk).
    pub fn sign_digest(
        key: &Keypair,
        method: &str,
        path_and_query: &str,
        timestamp: i64,
        nonce: String,
        body: &BodyDigest,
    ) -> Self {
        let signature = key.sign(&request_bytes(method, path_and_query, timestamp, &nonce, body));
        Self { key: key.public(), timestamp, nonce, signature }
    }

    /// Parse the raw value of a request's `Authorization` header (`None`: it has none).
    pub fn from_header(value: Option<&[u8]>) -> Result<Self, AuthError> {
        let value = value.ok_or(AuthError::Missing)?;
        let text = std::str::from_utf8(value).ok().filter(|t| t.is_ascii()).ok_or(AuthError::NotAscii)?;
        Self::parse(text)
    }

    /// Check that the request was signed within `window` seconds of `clock`'s time now.
    pub fn check_time(&self, window: i64, clock: &'static str) -> Result<(), AuthError> {
        let now = crate::unix_now();
        if !within_window(self.timestamp, now, window) {
            return Err(AuthError::Clock { timestamp: self.timestamp, now, window, clock });
        }
        Ok(())
    }

    /// Parse an `Authorization` header value.
    pub fn parse(header: &str) -> Result<Self, AuthError> {
        let bad = |m: &str| AuthError::Malformed(m.to_string());
        let rest = header
            .strip_prefix(SCHEME)
            .and_then(|r| r.strip_prefix(' '))
            .ok_or_else(|| bad("expected the `Zgrid` scheme"))?;
        let (mut key, mut ts, mut nonce, mut sig) = (None, None, None, None);
        for part in rest.split(',') {
            let (name, value) = part.trim().split_once('=').ok_or_else(|| bad("expected name=value pairs"))?;
            let slot = match name {
                "key" => &mut key,
                "ts" => &mut ts,
                "nonce" => &mut nonce,
                "sig" => &mut sig,
                other => return Err(bad(&format!("unknown parameter {other:?}"))),
            };
            if slot.replace(value).is_some() {
                return Err(bad(&format!("parameter {name:?} given twice")));
            }
        }
        let key = key.ok_or_else(|| bad("missing key"))?.parse().map_err(|e: KeyError| bad(&e.to_string()))?;
        let timestamp = ts.ok_or_else(|| bad("missing ts"))?.parse().map_err(|_| bad("ts is not an integer"))?;
        let nonce = nonce.ok_or_else(|| bad("missing nonce"))?;
        let nonce_ok = (16..=64).contains(&nonce.len()) && nonce.bytes().all(|b| b.is_ascii_hexdigit());
        if !nonce_ok {
            return Err(bad("nonce must be 16 to 64 hex characters"));
        }
        let signature = sig.ok_or_else(|| bad("missing sig"))?.parse().map_err(|e: KeyError| bad(&e.to_string()))?;
        Ok(Self { key, timestamp, nonce: nonce.to_string(), signature })
    }

    /// Check the signature against this request's method, path and body.
    pub fn verify(&self, method: &str, path_and_query: &str, body: &[u8]) -> Result<(), AuthError> {
        self.verify_digest(method, path_and_query, &BodyDigest::of(body))
    }

    /// Check the signature against this request's method, path and the digest of its body (as
    /// declared, before the body is read).
    pub fn verify_digest(&self, method: &str, path_and_query: &str, body: &BodyDigest) -> Result<(), AuthError> {
        let bytes = request_bytes(method, path_and_query, self.timestamp, &self.nonce, body);
        self.key.verify(&bytes, &self.signature).map_err(AuthError::BadSignature)
    }
}

impl fmt::Display for RequestAuth {
    /// The header value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME} key={},ts={},nonce={},sig={}", self.key, self.timestamp, self.nonce, self.signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_binds_every_part() {
        let key = Keypair::from_seed(&[9; 32]);
        let auth = RequestAuth::sign(&key, "post", "/v1/workloads", 100, "00112233445566778899".into(), b"{}");
        let parsed = RequestAuth::parse(&auth.to_string()).unwrap();
        assert_eq!(parsed, auth);
        assert!(parsed.verify("POST", "/v1/workloads", b"{}").is_ok());
        assert!(parsed.verify("PUT", "/v1/workloads", b"{}").is_err());
        assert!(parsed.verify("POST", "/v1/workloads?x=1", b"{}").is_err());
        assert!(parsed.verify("POST", "/v1/workloads", b"{ }").is_err());
        let mut later = parsed.clone();
        later.timestamp += 1;
        assert!(later.verify("POST", "/v1/workloads", b"{}").is_err());
        // A captured request replayed under a fresh nonce no longer verifies.
        let mut fresh = parsed.clone();
        fresh.nonce = "99887766554433221100".into();
        assert!(fresh.verify("POST", "/v1/workloads", b"{}").is_err());
        let mut other_key = parsed.clone();
        other_key.key = Keypair::from_seed(&[8; 32]).public();
        assert!(other_key.verify("POST", "/v1/workloads", b"{}").is_err());
        // A declared digest is bound by its length as well as its hash.
        let digest = BodyDigest::of(b"{}");
        assert!(parsed.verify_digest("POST", "/v1/workloads", &digest).is_ok());
        let longer = BodyDigest { len: digest.len + 1, ..digest };
        assert!(parsed.verify_digest("POST", "/v1/workloads", &longer).is_err());
    }

    #[test]
    fn extreme_timestamps_are_outside_every_window() {
        let key = Keypair::from_seed(&[9; 32]);
        let now = crate::unix_now();
        for ts in [i64::MIN, i64::MIN + now, i64::MAX, -now, 0] {
            let auth = RequestAuth::sign(&key, "GET", "/", ts, "00112233445566778899".into(), b"");
            assert!(matches!(auth.check_time(300, "node"), Err(AuthError::Clock { .. })), "{ts} passed");
        }
    }

    #[test]
    fn header_bytes_and_clock_are_checked() {
        assert_eq!(RequestAuth::from_header(None), Err(AuthError::Missing));
        assert_eq!(RequestAuth::from_header(Some("Zgrid key=é".as_bytes())), Err(AuthError::NotAscii));
        let key = Keypair::from_seed(&[9; 32]);
        let now = crate::unix_now();
        let auth = RequestAuth::sign(&key, "GET", "/", now - 400, "00112233445566778899".into(), b"");
        let parsed = RequestAuth::from_header(Some(auth.to_string().as_bytes())).unwrap();
        assert_eq!(parsed, auth);
        let late = parsed.check_time(300, "hub").unwrap_err().to_string();
        assert!(late.contains("more than 300 s from the hub's clock") && late.contains("check the clock"), "{late}");
        assert!(parsed.check_time(500, "hub").is_ok());
    }

    #[test]
    fn malformed_headers_say_what_is_wrong() {
        assert!(matches!(RequestAuth::parse("Bearer x"), Err(AuthError::Malformed(_))));
        let err = RequestAuth::parse("Zgrid key=abc").unwrap_err();
        assert!(err.to_string().contains("base58"), "{err}");
    }
}
