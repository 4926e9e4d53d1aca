//! The HTTP layer shared by the explorer, hub and node clients: base URL handling (with
//! failover between several URLs of one service), request signing (`Authorization: Zgrid
//! ...`), and what can go wrong ([`ClientError`]).

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use zgrid_types::Keypair;
use zgrid_types::auth::{BodyDigest, CONTENT_HASH_HEADER, RequestAuth};

use crate::transport::{Answer, HttpClient, Payload};

/// How a user trusts a private CA, for error messages.
const TRUST_HINT: &str = "if a private CA signed it, trust that CA's certificate (a PEM file) with --ca-cert FILE, ZGRID_CA_CERT or `zgrid config set ca-cert FILE`";

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
    /// The server could not be reached.
    #[error("cannot reach the {peer} at {url}: {cause}; check that it is running and that this is its address")]
    Transport {
        /// Who was called: `explorer`, `node` or `hub`.
        peer: &'static str,
        /// The URL tried.
        url: String,
        /// The underlying failure, e.g. `Connection refused (os error 111)`.
        cause: String,
    },
    /// The connection broke while the server was answering.
    #[error("the connection to the {peer} at {url} broke: {cause}")]
    Broken {
        /// Who was called: `explorer`, `node` or `hub`.
        peer: &'static str,
        /// The URL tried.
        url: String,
        /// The underlying failure.
        cause: String,
    },
    /// The server did not answer, or stopped sending its answer, within the time limit.
    #[error("the {peer} at {url} did not {what} within {} s", limit.as_secs_f64())]
    TimedOut {
        /// Who was called: `explorer`, `node` or `hub`.
        peer: &'static str,
        /// The URL tried.
        url: String,
        /// What it did not do: `accept a connection`, `answer`, ...
        what: &'static str,
        /// The limit.
        limit: Duration,
    },
    /// The server's TLS certificate is not signed by a CA this client trusts.
    #[error("the {peer} at {url} presented a TLS certificate that is not trusted ({reason}); {TRUST_HINT}")]
    Untrusted {
        /// Who was called: `explorer`, `node` or `hub`.
        peer: &'static str,
        /// The URL tried.
        url: String,
        /// What the certificate check said.
        reason: String,
    },
    /// An `https://` URL names a server that answers in plain HTTP.
    #[error(
        "the {peer} at {url} does not speak TLS (it answered in plain text); use its http:// URL, or have it serve TLS"
    )]
    NotTls {
        /// Who was called: `explorer`, `node` or `hub`.
        peer: &'static str,
        /// The URL tried.
        url: String,
    },
    /// The file of CA certificates to trust cannot be used.
    #[error("cannot trust the CA certificates in {path}: {reason}")]
    CaCert {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The HTTP client could not be set up.
    #[error("cannot set up an HTTP client: {0}")]
    Setup(reqwest::Error),
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

    /// Whether the server could not be reached, or its connection broke or went silent: no
    /// server answered, so another URL of the same service may.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Self::Transport { .. } | Self::Broken { .. } | Self::TimedOut { .. })
    }
}

/// Result alias for client calls.
pub type ClientResult<T> = Result<T, ClientError>;

/// A service's base URLs (one server, or several sharing one state), an HTTP client and an
/// optional signing key.
#[derive(Clone)]
pub(crate) struct Http {
    /// Tried in turn when the one in use cannot be reached.
    bases: Arc<[url::Url]>,
    /// Which of `bases` is in use; shared by clones, so they all move on together.
    current: Arc<AtomicUsize>,
    client: HttpClient,
    pub(crate) key: Option<Keypair>,
    peer: &'static str,
}

impl Http {
    /// A client of the `peer` (`explorer`, `node` or `hub`) at `base`, over `client`.
    pub(crate) fn new(base: &str, peer: &'static str, client: &HttpClient) -> ClientResult<Self> {
        Self::with_bases(&[base], peer, client)
    }

    /// A client of the `peer` at any of `bases` (servers sharing one state), over `client`:
    /// the first is used until it cannot be reached, then the next, and so on.
    pub(crate) fn with_bases(bases: &[&str], peer: &'static str, client: &HttpClient) -> ClientResult<Self> {
        if bases.is_empty() {
            return Err(ClientError::BadUrl(String::new()));
        }
        let bases = bases
            .iter()
            .map(|base| {
                url::Url::parse(base)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https"))
                    .ok_or_else(|| ClientError::BadUrl((*base).to_string()))
            })
            .collect::<ClientResult<Vec<_>>>()?;
        Ok(Self { bases: bases.into(), current: Arc::default(), client: client.clone(), key: None, peer })
    }

    /// The base URL in use.
    pub(crate) fn base(&self) -> &str {
        self.bases[self.current.load(Ordering::Relaxed) % self.bases.len()].as_str()
    }

    /// Every base URL, in the order they are tried.
    pub(crate) fn bases(&self) -> impl Iterator<Item = &str> {
        self.bases.iter().map(url::Url::as_str)
    }

    /// The limit on the server's silence.
    pub(crate) fn timeout(&self) -> Duration {
        self.client.timeout()
    }

    /// `path_and_query` on base URL number `at`.
    fn url_at(&self, at: usize, path_and_query: &str) -> String {
        format!("{}{}", self.bases[at % self.bases.len()].as_str().trim_end_matches('/'), path_and_query)
    }

    /// `path_and_query` on the base URL in use.
    fn url(&self, path_and_query: &str) -> String {
        self.url_at(self.current.load(Ordering::Relaxed), path_and_query)
    }

    /// Run `attempt` on the base URL in use (its index is passed); when it cannot reach that
    /// server ([`ClientError::is_unreachable`]), run it again on the next, until one answers or
    /// every one was tried. The one that answered, even with a refusal, stays in use.
    async fn failover<T, F, Fut>(&self, mut attempt: F) -> ClientResult<T>
    where
        F: FnMut(usize) -> Fut,
        Fut: Future<Output = ClientResult<T>>,
    {
        let count = self.bases.len();
        let first = self.current.load(Ordering::Relaxed) % count;
        for tried in 0..count {
            let at = (first + tried) % count;
            match attempt(at).await {
                Err(e) if e.is_unreachable() && tried + 1 < count => {
                    let next = &self.bases[(at + 1) % count];
                    tracing::warn!("{e}; trying the {} at {next}", self.peer);
                }
                Err(e) if e.is_unreachable() => return Err(e),
                answered => {
                    self.current.store(at, Ordering::Relaxed);
                    return answered;
                }
            }
        }
        unreachable!("every base URL was tried")
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
    ) -> ClientResult<Answer> {
        self.request_patiently(method, path_and_query, body, signed, self.timeout()).await
    }

    /// [`Http::request`] to a server that may work up to `patience` before it answers.
    pub(crate) async fn request_patiently(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Payload>,
        signed: bool,
        patience: Duration,
    ) -> ClientResult<Answer> {
        match body {
            // A body is sent once: it may be a stream that cannot be read again.
            Some(body) => {
                let at = self.current.load(Ordering::Relaxed);
                self.send_at(at, method, path_and_query, Some(body), signed, patience).await
            }
            None => self.failover(|at| self.send_at(at, method.clone(), path_and_query, None, signed, patience)).await,
        }
    }

    /// Send a request to base URL number `at`, signed (with a fresh nonce) when `signed`.
    async fn send_at(
        &self,
        at: usize,
        method: Method,
        path_and_query: &str,
        body: Option<Payload>,
        signed: bool,
        patience: Duration,
    ) -> ClientResult<Answer> {
        let url = self.url_at(at, path_and_query);
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
        self.client.send(self.peer, req, &url, body, patience).await
    }

    /// Open a WebSocket with a signed `GET path_and_query` (a fresh nonce), offering `protocols`;
    /// returns it and the protocol the server chose.
    pub(crate) async fn websocket(
        &self,
        path_and_query: &str,
        protocols: &[&str],
    ) -> ClientResult<(crate::websocket::Socket, Option<String>)> {
        let key = self.key.as_ref().ok_or(ClientError::NoKey)?;
        let nonce = hex::encode(rand::random::<[u8; 16]>());
        let auth = RequestAuth::sign(key, "GET", path_and_query, zgrid_types::unix_now(), nonce, b"");
        let headers = vec![("authorization", auth.to_string())];
        crate::websocket::connect(&self.client, self.peer, &self.url(path_and_query), headers, protocols).await
    }

    /// Send a JSON request and parse the JSON answer; when the server cannot be reached, or
    /// breaks off before its answer is in, the request is signed again and sent to the next
    /// base URL.
    pub(crate) async fn call<B: Serialize, R: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        signed: bool,
    ) -> ClientResult<R> {
        let body = body.map(|b| serde_json::to_vec(b).expect("zgrid types serialise"));
        let patience = self.timeout();
        self.failover(|at| {
            let body = body.clone().map(|b| Payload::bytes(b, "application/json"));
            let method = method.clone();
            async move { self.send_at(at, method, path, body, signed, patience).await?.json().await }
        })
        .await
    }

    /// An unsigned `GET` with a JSON answer.
    pub(crate) async fn get<R: DeserializeOwned>(&self, path: &str) -> ClientResult<R> {
        self.call::<(), R>(Method::GET, path, None, false).await
    }
}
