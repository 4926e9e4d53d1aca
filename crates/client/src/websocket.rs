//! WebSocket connections to zgrid servers (the node API's `exec`), with the same trust as the
//! HTTP clients: plain or TLS with the system's root certificates plus `--ca-cert`, the same
//! connect limit, and the silence limit on the handshake. Refusals become
//! [`ClientError::Api`] with the server's reason, as for HTTP.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use zgrid_types::api::ApiError;

use crate::http::{ClientError, ClientResult};
use crate::transport::HttpClient;

/// A byte stream, plain or TLS.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// An open WebSocket.
pub(crate) type Socket = WebSocketStream<Box<dyn Io>>;

/// Open a WebSocket to `url` (`http(s)://`), a server in the role `peer`, sending `headers`
/// and offering `protocols`; returns the socket and the protocol the server chose.
pub(crate) async fn connect(
    client: &HttpClient,
    peer: &'static str,
    url: &str,
    headers: Vec<(&'static str, String)>,
    protocols: &[&str],
) -> ClientResult<(Socket, Option<String>)> {
    let parsed = url::Url::parse(url).map_err(|_| ClientError::BadUrl(url.to_owned()))?;
    let tls = match parsed.scheme() {
        "http" => false,
        "https" => true,
        _ => return Err(ClientError::BadUrl(url.to_owned())),
    };
    let host = parsed.host_str().ok_or_else(|| ClientError::BadUrl(url.to_owned()))?.to_owned();
    let port = parsed.port_or_known_default().unwrap_or(80);
    let transport = |cause: String| ClientError::Transport { peer, url: url.to_owned(), cause };
    let limit = client.connect_timeout();
    let timed_out = |what| ClientError::TimedOut { peer, url: url.to_owned(), what, limit };
    let host_for_tcp = host.trim_start_matches('[').trim_end_matches(']').to_owned();
    let tcp = tokio::time::timeout(limit, tokio::net::TcpStream::connect((host_for_tcp.as_str(), port)))
        .await
        .map_err(|_| timed_out("accept a connection"))?
        .map_err(|e| transport(e.to_string()))?;
    let stream: Box<dyn Io> = if tls {
        let config = tls_config(client)?;
        let name = ServerName::try_from(host_for_tcp.clone()).map_err(|_| ClientError::BadUrl(url.to_owned()))?;
        let connector = tokio_rustls::TlsConnector::from(config);
        let tls = tokio::time::timeout(limit, connector.connect(name, tcp))
            .await
            .map_err(|_| timed_out("accept a connection"))?
            .map_err(|e| tls_error(peer, url, &e))?;
        Box::new(tls)
    } else {
        Box::new(tcp)
    };
    let mut ws_url = parsed.clone();
    let _ = ws_url.set_scheme(if tls { "wss" } else { "ws" });
    let mut request = ws_url.as_str().into_client_request().map_err(|e| ClientError::BadUrl(format!("{url}: {e}")))?;
    let bad_header = |e: tokio_tungstenite::tungstenite::http::header::InvalidHeaderValue| {
        ClientError::Decode(format!("a header cannot be sent: {e}"))
    };
    for (name, value) in headers {
        request.headers_mut().insert(name, HeaderValue::from_str(&value).map_err(bad_header)?);
    }
    if !protocols.is_empty() {
        let offered = HeaderValue::from_str(&protocols.join(", ")).map_err(bad_header)?;
        request.headers_mut().insert("sec-websocket-protocol", offered);
    }
    let handshake = tokio_tungstenite::client_async(request, stream);
    let (socket, response) = tokio::time::timeout(client.timeout(), handshake)
        .await
        .map_err(|_| ClientError::TimedOut { peer, url: url.to_owned(), what: "answer", limit: client.timeout() })?
        .map_err(|e| handshake_error(peer, url, e))?;
    let chosen = response.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok()).map(str::to_owned);
    Ok((socket, chosen))
}

/// The TLS client configuration: the system's roots plus the client's extra CAs.
fn tls_config(client: &HttpClient) -> ClientResult<Arc<rustls::ClientConfig>> {
    let mut extra = Vec::new();
    if let Some(path) = &client.ca_cert {
        let bad = |reason: String| ClientError::CaCert { path: path.clone(), reason };
        let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            extra.push(cert.map_err(|e| bad(e.to_string()))?);
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let setup = |e: rustls::Error| ClientError::Decode(format!("cannot set up TLS: {e}"));
    let verifier = rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider.clone()).map_err(setup)?;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(setup)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn tls_error(peer: &'static str, url: &str, e: &std::io::Error) -> ClientError {
    let url = url.to_owned();
    match e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(reason)) => {
            ClientError::Untrusted { peer, url, reason: format!("{reason:?}") }
        }
        Some(rustls::Error::InvalidMessage(_)) => ClientError::NotTls { peer, url },
        _ => ClientError::Transport { peer, url, cause: e.to_string() },
    }
}

fn handshake_error(peer: &'static str, url: &str, e: tokio_tungstenite::tungstenite::Error) -> ClientError {
    use tokio_tungstenite::tungstenite::Error;
    match e {
        Error::Http(response) => {
            let status = response.status().as_u16();
            let body = response.body().as_deref().unwrap_or_default();
            let text = String::from_utf8_lossy(body);
            match serde_json::from_str::<ApiError>(&text) {
                Ok(e) => ClientError::Api { peer, status, message: e.error, field: e.field },
                Err(_) => ClientError::Api { peer, status, message: text.trim().to_owned(), field: None },
            }
        }
        other => ClientError::Broken { peer, url: url.to_owned(), cause: other.to_string() },
    }
}
