//! The HTTP layer shared by the explorer and node clients: base URL handling, request signing
//! (`Authorization: Zgrid ...`), and mapping error answers to [`ClientError`].

use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use zgrid_types::Keypair;
use zgrid_types::api::ApiError;
use zgrid_types::auth::{BodyDigest, CONTENT_HASH_HEADER, RequestAuth};

/// What can go wrong talking to the explorer, a node or a hub.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error.
    #[error("{peer} refused the request ({status}): {}{}", field.as_ref().map(|f| format!("{f}: ")).unwrap_or_default(), message)]
    Api {
        /// Who answered: `explorer`, `node` or `hub`.
        peer: &'static str,
        /// HTTP status.
        status: u16,
        /// The server's explanation.
        message: String,
        /// The field at fault, if any.
        field: Option<String>,
    },
    /// The server could not be reached or the connection broke.
    #[error("cannot reach the {peer} at {url}: {source}")]
    Transport {
        /// Who was called: `explorer`, `node` or `hub`.
        peer: &'static str,
        /// The URL tried.
        url: String,
        /// The failure.
        source: reqwest::Error,
    },
    /// The answer was not what the API promises.
    #[error("unexpected answer: {0}")]
    Decode(String),
    /// A signed call was made without a key.
    #[error("this call must be signed; load an identity first")]
    NoKey,
    /// The base URL is not usable.
    #[error("{0:?} is not a base URL such as http://127.0.0.1:8080")]
    BadUrl(String),
}

impl ClientError {
    /// The HTTP status the server answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Result alias for client calls.
pub type ClientResult<T> = Result<T, ClientError>;

/// A request body with its length and BLAKE3 hash (what a signature covers) and content type.
pub(crate) struct Payload {
    body: reqwest::Body,
    digest: BodyDigest,
    content_type: &'static str,
}

impl Payload {
    /// A body held in memory.
    pub(crate) fn bytes(bytes: Vec<u8>, content_type: &'static str) -> Self {
        Self { digest: BodyDigest::of(&bytes), body: bytes.into(), content_type }
    }

    /// A file streamed from disk (hashed first, so it is read twice, never held in memory).
    pub(crate) async fn file(path: &std::path::Path, content_type: &'static str) -> std::io::Result<Self> {
        let owned = path.to_owned();
        let (hash, len) = tokio::task::spawn_blocking(move || {
            let mut hasher = blake3::Hasher::new();
            hasher.update_reader(std::fs::File::open(&owned)?)?;
            Ok::<_, std::io::Error>((hasher.finalize(), hasher.count()))
        })
        .await
        .map_err(std::io::Error::other)??;
        let file = tokio::fs::File::open(path).await?;
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
        Ok(Self { body, digest: BodyDigest { len, hash }, content_type })
    }
}

/// One server's base URL, an HTTP client and an optional signing key.
#[derive(Clone)]
pub(crate) struct Http {
    base: url::Url,
    client: reqwest::Client,
    pub(crate) key: Option<Keypair>,
    peer: &'static str,
}

impl Http {
    /// A client of the `peer` (`explorer`, `node` or `hub`) at `base`.
    pub(crate) fn new(base: &str, peer: &'static str) -> ClientResult<Self> {
        let base = url::Url::parse(base)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| ClientError::BadUrl(base.to_string()))?;
        let client = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| ClientError::Transport { peer, url: base.to_string(), source: e })?;
        Ok(Self { base, client, key: None, peer })
    }

    /// The base URL.
    pub(crate) fn base(&self) -> &str {
        self.base.as_str()
    }

    fn url(&self, path_and_query: &str) -> String {
        format!("{}{}", self.base.as_str().trim_end_matches('/'), path_and_query)
    }

    /// Send a request, signed with the key when `signed`; error answers become [`ClientError::Api`].
    /// A signed request declares its body's length and hash in headers, so a server can check
    /// the signature before it reads the body.
    pub(crate) async fn request(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Payload>,
        signed: bool,
    ) -> ClientResult<reqwest::Response> {
        let url = self.url(path_and_query);
        let mut req = self.client.request(method.clone(), &url);
        if signed {
            let key = self.key.as_ref().ok_or(ClientError::NoKey)?;
            let nonce = hex::encode(rand::random::<[u8; 16]>());
            let digest = body.as_ref().map_or_else(|| BodyDigest::of(b""), |b| b.digest);
            let now = zgrid_types::unix_now();
            let auth = RequestAuth::sign_digest(key, method.as_str(), path_and_query, now, nonce, &digest);
            req = req
                .header(reqwest::header::AUTHORIZATION, auth.to_string())
                .header(CONTENT_HASH_HEADER, digest.hash.to_hex().as_str());
        }
        if let Some(payload) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, payload.content_type)
                .header(reqwest::header::CONTENT_LENGTH, payload.digest.len)
                .body(payload.body);
        }
        let peer = self.peer;
        let resp = req.send().await.map_err(|source| ClientError::Transport { peer, url: url.clone(), source })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        Err(match serde_json::from_str::<ApiError>(&text) {
            Ok(e) => ClientError::Api { peer, status, message: e.error, field: e.field },
            Err(_) => ClientError::Api { peer, status, message: text, field: None },
        })
    }

    /// Send a JSON request and parse the JSON answer.
    pub(crate) async fn call<B: Serialize, R: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        signed: bool,
    ) -> ClientResult<R> {
        let body =
            body.map(|b| Payload::bytes(serde_json::to_vec(b).expect("zgrid types serialise"), "application/json"));
        let resp = self.request(method, path, body, signed).await?;
        let bytes = resp.bytes().await.map_err(|e| ClientError::Decode(e.to_string()))?;
        let bytes: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
        serde_json::from_slice(bytes).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// An unsigned `GET` with a JSON answer.
    pub(crate) async fn get<R: DeserializeOwned>(&self, path: &str) -> ClientResult<R> {
        self.call::<(), R>(Method::GET, path, None, false).await
    }
}
