//! How every zgrid HTTP client connects and how long it waits: TLS with the system's root
//! certificates plus any CA certificates the user trusts, a limit on opening a connection, and
//! a limit on how long a server may stay silent (before it answers a request it has been sent
//! in full, and between two pieces of its answer). An upload that makes progress and a stream
//! that keeps sending are never cut off. Every HTTP client in zgrid is built here.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use reqwest::Method;
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use zgrid_types::api::ApiError;
use zgrid_types::auth::BodyDigest;

use crate::http::{ClientError, ClientResult};

/// The default limit on a server's silence.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest opening a connection (TCP and TLS) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Idle connections are probed this often, so a stream from a vanished peer ends.
const TCP_KEEPALIVE: Duration = Duration::from_secs(30);

/// Request bodies are sent in pieces of this size, so progress can be seen.
const PIECE: usize = 64 << 10;

/// What every HTTP client of zgrid is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpOptions {
    /// A PEM file of CA certificates to trust besides the system's, for servers whose
    /// certificates a private CA signed.
    pub ca_cert: Option<PathBuf>,
    /// How long a server may stay silent: before it answers a request sent in full, and
    /// between two pieces of its answer. Opening a connection may take at most 10 s, or this
    /// when it is shorter.
    pub timeout: Duration,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self { ca_cert: None, timeout: DEFAULT_TIMEOUT }
    }
}

/// The limit on opening a connection for a client whose silence limit is `timeout`.
fn connect_limit(timeout: Duration) -> Duration {
    timeout.min(CONNECT_TIMEOUT)
}

impl HttpOptions {
    fn connect_timeout(&self) -> Duration {
        connect_limit(self.timeout)
    }

    fn ca_certs(&self) -> ClientResult<Vec<reqwest::Certificate>> {
        let Some(path) = &self.ca_cert else { return Ok(Vec::new()) };
        let bad = |reason: String| ClientError::CaCert { path: path.clone(), reason };
        let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| bad(e.to_string()))?;
        if certs.is_empty() {
            return Err(bad("it holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into()));
        }
        Ok(certs)
    }

    /// An async client with these options.
    pub fn client(&self) -> ClientResult<HttpClient> {
        let builder =
            || reqwest::Client::builder().connect_timeout(self.connect_timeout()).tcp_keepalive(TCP_KEEPALIVE);
        let extra = self.ca_certs()?;
        let client = builder().tls_certs_merge(extra.clone()).build().or_else(|e| {
            // Without system roots (no ca-certificates), plain HTTP and the extra CAs still work.
            let why = std::error::Error::source(&e).map_or_else(|| e.to_string(), ToString::to_string);
            tracing::warn!("cannot use the system's CA certificates ({why}; is ca-certificates installed?); trusting only --ca-cert");
            builder().tls_certs_only(extra).build().map_err(ClientError::Setup)
        })?;
        Ok(HttpClient { client, timeout: self.timeout, ca_cert: self.ca_cert.clone() })
    }

    /// A blocking client with these options, for code on plain threads (such as a FUSE file
    /// system); each request must end within `whole`, or within the silence limit when longer.
    #[cfg(feature = "blocking")]
    pub fn blocking_client(&self, whole: Duration) -> ClientResult<reqwest::blocking::Client> {
        reqwest::blocking::Client::builder()
            .connect_timeout(self.connect_timeout())
            .timeout(whole.max(self.timeout))
            .tcp_keepalive(TCP_KEEPALIVE)
            .tls_certs_merge(self.ca_certs()?)
            .build()
            .map_err(ClientError::Setup)
    }
}

/// An async HTTP client of zgrid servers, with the TLS roots and time limits of its
/// [`HttpOptions`]. Cheap to clone; clones share connections.
#[derive(Debug, Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    timeout: Duration,
    /// The extra CA certificates' file, for connections made without reqwest (WebSockets).
    pub(crate) ca_cert: Option<PathBuf>,
}

impl HttpClient {
    /// The limit on a server's silence.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// An unsigned request without a body to `url`, a server in the role `peer` (`hub`,
    /// `console`, ... : error messages name it). Error answers become [`ClientError::Api`].
    pub async fn fetch(&self, peer: &'static str, method: Method, url: &str) -> ClientResult<Answer> {
        self.send(peer, self.client.request(method, url), url, None, self.timeout).await
    }

    pub(crate) fn request(&self, method: Method, url: &str) -> reqwest::RequestBuilder {
        self.client.request(method, url)
    }

    /// Send `req` to `url` with `body`: the server must answer within `patience` of the last
    /// piece of the body it took (or of the start, without a body).
    pub(crate) async fn send(
        &self,
        peer: &'static str,
        mut req: reqwest::RequestBuilder,
        url: &str,
        body: Option<Payload>,
        patience: Duration,
    ) -> ClientResult<Answer> {
        let progress = Arc::new(Progress::new());
        if let Some(payload) = body {
            let seen = progress.clone();
            req = req
                .header(reqwest::header::CONTENT_TYPE, payload.content_type)
                .header(reqwest::header::CONTENT_LENGTH, payload.digest.len)
                .body(reqwest::Body::wrap_stream(payload.pieces.inspect(move |_| seen.touch())));
        }
        let resp = tokio::select! {
            sent = req.send() => sent.map_err(|e| self.failure(peer, url, e))?,
            () = progress.stalled(patience) => {
                return Err(ClientError::TimedOut { peer, url: url.to_owned(), what: "answer", limit: patience });
            }
        };
        let answer = Answer { resp, peer, url: url.to_owned(), idle: self.timeout };
        if answer.status().is_success() {
            return Ok(answer);
        }
        let status = answer.status().as_u16();
        let body = answer.bytes_at_most(MAX_REFUSAL).await.unwrap_or_default();
        let text = String::from_utf8_lossy(&body);
        Err(match serde_json::from_str::<ApiError>(&text) {
            Ok(e) => ClientError::Api { peer, status, message: e.error, field: e.field },
            Err(_) => ClientError::Api { peer, status, message: not_ours(peer, url, text.trim()), field: None },
        })
    }

    /// The limit on opening a connection.
    pub(crate) fn connect_timeout(&self) -> Duration {
        connect_limit(self.timeout)
    }

    fn failure(&self, peer: &'static str, url: &str, source: reqwest::Error) -> ClientError {
        let url = url.to_owned();
        if source.is_connect() && source.is_timeout() {
            let limit = connect_limit(self.timeout);
            return ClientError::TimedOut { peer, url, what: "accept a connection", limit };
        }
        match tls_failure(&source) {
            Some(rustls::Error::InvalidCertificate(reason)) => {
                ClientError::Untrusted { peer, url, reason: format!("{reason:?}") }
            }
            Some(rustls::Error::InvalidMessage(_)) => ClientError::NotTls { peer, url },
            _ => ClientError::Transport { peer, url, cause: root_cause(&source) },
        }
    }
}

/// The TLS failure `error` comes down to, if any.
/// The most of a refusal's body read: a zgrid server's reasons are short.
const MAX_REFUSAL: usize = 64 * 1024;

/// The reason to show for a refusal without a zgrid server's JSON reason (`text` is its body):
/// what it said, shortened, or, when it said nothing, the likely mistake: a URL of some other
/// server.
fn not_ours(peer: &str, url: &str, text: &str) -> String {
    if text.is_empty() {
        let origin = reqwest::Url::parse(url).map_or_else(|_| url.to_owned(), |u| u.origin().ascii_serialization());
        return format!("no reason given, as no zgrid {peer} answers; is {origin} the {peer}'s address?");
    }
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

fn tls_failure<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    causes(error).find_map(|e| e.downcast_ref::<rustls::Error>())
}

/// What `error` comes down to, in words: its innermost cause (reqwest's own layers only repeat
/// the URL and name the step that failed).
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    causes(error).last().map(ToString::to_string).unwrap_or_default()
}

/// `error` and the errors it was caused by, outermost first.
fn causes<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(error), |e| {
        // An I/O error hides the error it carries from `source()`.
        match e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            Some(carried) => Some(carried as &(dyn std::error::Error + 'static)),
            None => e.source(),
        }
    })
}

/// A server's successful answer, read within the limit on its silence.
pub struct Answer {
    resp: reqwest::Response,
    peer: &'static str,
    url: String,
    idle: Duration,
}

impl Answer {
    /// The HTTP status.
    pub fn status(&self) -> reqwest::StatusCode {
        self.resp.status()
    }

    /// The headers.
    pub fn headers(&self) -> &reqwest::header::HeaderMap {
        self.resp.headers()
    }

    /// The body's length, when the server said it.
    pub fn content_length(&self) -> Option<u64> {
        self.resp.content_length()
    }

    /// The body as it arrives; an error ends it when the server is silent for `idle` (never,
    /// with `None`, for streams that may rightly be quiet).
    pub(crate) fn stream(self, idle: Option<Duration>) -> impl Stream<Item = ClientResult<Bytes>> + Send + use<> {
        let Self { resp, peer, url, .. } = self;
        futures::stream::unfold(Some(resp.bytes_stream().boxed()), move |body| {
            let url = url.clone();
            async move {
                let mut body = body?;
                let next = match idle {
                    Some(limit) => tokio::time::timeout(limit, body.next()).await.map_err(|_| limit),
                    None => Ok(body.next().await),
                };
                match next {
                    Ok(Some(Ok(bytes))) => Some((Ok(bytes), Some(body))),
                    Ok(Some(Err(source))) => {
                        Some((Err(ClientError::Broken { peer, url, cause: root_cause(&source) }), None))
                    }
                    Ok(None) => None,
                    Err(limit) => {
                        let what = "send the rest of its answer";
                        Some((Err(ClientError::TimedOut { peer, url, what, limit }), None))
                    }
                }
            }
        })
    }

    /// The whole body.
    pub async fn bytes(self) -> ClientResult<Vec<u8>> {
        let idle = self.idle;
        let mut body = std::pin::pin!(self.stream(Some(idle)));
        let mut all = Vec::new();
        while let Some(piece) = body.next().await {
            all.extend_from_slice(&piece?);
        }
        Ok(all)
    }

    /// The whole body, refused past `limit` bytes (for answers that should be small, from
    /// servers not trusted to keep them so).
    pub async fn bytes_at_most(self, limit: usize) -> ClientResult<Vec<u8>> {
        let (idle, url) = (self.idle, self.url.clone());
        let mut body = std::pin::pin!(self.stream(Some(idle)));
        let mut all = Vec::new();
        while let Some(piece) = body.next().await {
            let piece = piece?;
            if all.len() + piece.len() > limit {
                return Err(ClientError::Decode(format!("{url} sent more than {limit} bytes")));
            }
            all.extend_from_slice(&piece);
        }
        Ok(all)
    }

    /// The body parsed as JSON (an empty body as `null`).
    pub async fn json<T: DeserializeOwned>(self) -> ClientResult<T> {
        let bytes = self.bytes().await?;
        let bytes: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
        serde_json::from_slice(bytes).map_err(|e| ClientError::Decode(e.to_string()))
    }
}

/// A request body with its length and BLAKE3 hash (what a signature covers) and content type,
/// sent in pieces so the time limit can tell a slow upload from a dead one.
pub(crate) struct Payload {
    pieces: BoxStream<'static, std::io::Result<Bytes>>,
    pub(crate) digest: BodyDigest,
    content_type: &'static str,
}

impl Payload {
    /// A body held in memory.
    pub(crate) fn bytes(bytes: Vec<u8>, content_type: &'static str) -> Self {
        let digest = BodyDigest::of(&bytes);
        let bytes = Bytes::from(bytes);
        let pieces = (0..bytes.len()).step_by(PIECE).map(move |at| Ok(bytes.slice(at..(at + PIECE).min(bytes.len()))));
        Self { pieces: futures::stream::iter(pieces.collect::<Vec<_>>()).boxed(), digest, content_type }
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
        let pieces = tokio_util::io::ReaderStream::with_capacity(file, PIECE).boxed();
        Ok(Self { pieces, digest: BodyDigest { len, hash }, content_type })
    }
}

/// When a request last made progress.
struct Progress {
    start: Instant,
    /// Milliseconds from `start` to the last piece of the body taken.
    last: AtomicU64,
}

impl Progress {
    fn new() -> Self {
        Self { start: Instant::now(), last: AtomicU64::new(0) }
    }

    fn touch(&self) {
        self.last.store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Resolves once nothing has happened for `limit`.
    async fn stalled(&self, limit: Duration) {
        loop {
            let last = self.last.load(Ordering::Relaxed);
            tokio::time::sleep_until(self.start + Duration::from_millis(last) + limit).await;
            if self.last.load(Ordering::Relaxed) == last {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::routing::{get, post};

    use super::*;

    /// Serve `app` on loopback; its URL.
    async fn serve(app: axum::Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    fn client(limit: Duration) -> HttpClient {
        HttpOptions { timeout: limit, ..HttpOptions::default() }.client().unwrap()
    }

    /// A body of `pieces` pieces, each ready `every` after the previous one.
    fn slow_body(pieces: usize, every: Duration) -> Payload {
        let body = futures::stream::iter(0..pieces).then(move |_| async move {
            tokio::time::sleep(every).await;
            Ok(Bytes::from(vec![7; PIECE]))
        });
        let digest = BodyDigest { len: (pieces * PIECE) as u64, hash: blake3::hash(b"") };
        Payload { pieces: body.boxed(), digest, content_type: "x/y" }
    }

    #[tokio::test]
    async fn an_upload_that_keeps_making_progress_outlasts_the_limit() {
        let url =
            serve(axum::Router::new().route("/", post(|body: Bytes| async move { body.len().to_string() }))).await;
        let http = client(Duration::from_secs(1));
        let started = Instant::now();
        let sent = http.send(
            "hub",
            http.request(Method::POST, &url),
            &url,
            Some(slow_body(8, Duration::from_millis(400))),
            http.timeout(),
        );
        let answer = sent.await.expect("an upload that makes progress is not cut off");
        assert!(started.elapsed() > Duration::from_secs(2), "the upload took longer than the limit");
        assert_eq!(answer.bytes().await.unwrap(), (8 * PIECE).to_string().into_bytes());
    }

    #[tokio::test]
    async fn a_server_that_takes_the_request_and_never_answers_is_given_up_on() {
        let never = |_: Bytes| std::future::pending::<String>();
        let url = serve(axum::Router::new().route("/", post(never))).await;
        let http = client(Duration::from_secs(1));
        let body = Payload::bytes(vec![1; 3 * PIECE], "x/y");
        let error = http.send("hub", http.request(Method::POST, &url), &url, Some(body), http.timeout()).await.err();
        let Some(e @ ClientError::TimedOut { peer: "hub", what: "answer", .. }) = error else { panic!("{:?}", error) };
        assert_eq!(e.to_string(), format!("the hub at {url} did not answer within 1 s"));
    }

    #[tokio::test]
    async fn a_refusal_from_another_kind_of_server_asks_whether_the_url_is_right() {
        let url = serve(axum::Router::new()).await;
        let error =
            client(Duration::from_secs(5)).fetch("explorer", Method::GET, &format!("{url}api/v1/nodes?page=1")).await;
        let message = error.err().expect("404").to_string();
        let origin = url.trim_end_matches('/');
        assert_eq!(
            message,
            format!(
                "explorer refused the request (404): no reason given, as no zgrid explorer answers; is {origin} the explorer's address?"
            )
        );
        let chatty =
            serve(axum::Router::new().fallback(|| async { (axum::http::StatusCode::NOT_FOUND, "x".repeat(10_000)) }))
                .await;
        let message =
            client(Duration::from_secs(5)).fetch("hub", Method::GET, &chatty).await.err().unwrap().to_string();
        assert!(message.ends_with("xxx…") && message.len() < 300, "{message}");
    }

    #[tokio::test]
    async fn an_https_url_of_a_plain_http_server_is_named_as_such() {
        let url = serve(axum::Router::new().route("/", get(|| async { "plain" }))).await;
        let url = url.replacen("http://", "https://", 1);
        let error = client(Duration::from_secs(5)).fetch("hub", Method::GET, &url).await.err();
        let Some(e @ ClientError::NotTls { .. }) = error else { panic!("{error:?}") };
        assert!(e.to_string().starts_with(&format!("the hub at {url} does not speak TLS")), "{e}");
    }

    #[tokio::test]
    async fn an_answer_that_stops_coming_ends_with_an_error_unless_it_may_be_quiet() {
        let stalls = || async {
            let first = futures::stream::once(async { Ok::<_, std::io::Error>(Bytes::from_static(b"first")) });
            axum::body::Body::from_stream(first.chain(futures::stream::pending()))
        };
        let url = serve(axum::Router::new().route("/", get(stalls))).await;
        let http = client(Duration::from_secs(1));

        let limited = http.fetch("node", Method::GET, &url).await.unwrap().stream(Some(http.timeout()));
        let pieces: Vec<_> = limited.collect().await;
        assert_eq!(pieces[0].as_ref().unwrap().as_ref(), b"first");
        let Err(ClientError::TimedOut { what, .. }) = &pieces[1] else { panic!("{pieces:?}") };
        assert_eq!(*what, "send the rest of its answer");

        let mut quiet = Box::pin(http.fetch("node", Method::GET, &url).await.unwrap().stream(None));
        assert_eq!(quiet.next().await.unwrap().unwrap().as_ref(), b"first");
        let waited = tokio::time::timeout(Duration::from_secs(3), quiet.next()).await;
        assert!(waited.is_err(), "a stream that may be quiet stays open past the limit: {waited:?}");
    }
}
