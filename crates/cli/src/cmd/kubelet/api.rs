//! The kubelet API the API server calls for `kubectl logs` and `kubectl exec`: HTTPS with a
//! certificate made at start, answering only clients whose certificate the cluster's kubelet
//! client CA (`--client-ca`) signed, as a kubelet with x509 authentication does. Each call is
//! carried to the grid node of the Pod's container, signed with the deployer's key; an exec's
//! WebSocket frames (Kubernetes' channel framing) are relayed as they are.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use axum::body::Body;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path as UrlPath, Query, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{ObjectRef, Store};
use serde::Deserialize;
use zgrid_client::{ExplorerClient, HttpClient, NodeClient};
use zgrid_types::{Keypair, WorkloadId};

use super::status;

/// Most log bytes read to find the last lines of a container that is not followed.
const MAX_TAIL_READ: usize = 8 << 20;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// The Pods bound to the Node.
    pub pods: Store<Pod>,
    /// The explorer, to find a workload's node.
    pub explorer: ExplorerClient,
    /// The deployer's key: nodes answer the workloads' owner only.
    pub key: Keypair,
    /// HTTP settings for node APIs.
    pub http: HttpClient,
}

/// A TLS configuration with a new self-signed certificate for `address`, that requires client
/// certificates signed by the CA in `client_ca`.
fn tls(address: &str, client_ca: &Path) -> Result<Arc<rustls::ServerConfig>> {
    let pem =
        std::fs::read(client_ca).with_context(|| format!("--client-ca {}: cannot read it", client_ca.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
        let cert: rustls::pki_types::CertificateDer<'static> =
            cert.with_context(|| format!("--client-ca {}: not a PEM certificate", client_ca.display()))?;
        roots.add(cert).with_context(|| format!("--client-ca {}: not a usable CA certificate", client_ca.display()))?;
    }
    if roots.is_empty() {
        anyhow::bail!("--client-ca {}: holds no certificate", client_ca.display());
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .context("cannot check client certificates")?;
    let key = rcgen::KeyPair::generate().context("cannot generate the kubelet API's key")?;
    let cert = rcgen::CertificateParams::new(vec![address.to_owned()])
        .and_then(|p| p.self_signed(&key))
        .context("cannot make the kubelet API's certificate")?;
    let key = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).map_err(|e| anyhow!("{e}"))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![cert.der().clone()], key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serve the kubelet API on `at` for clients certified by the CA in `client_ca`, until the
/// task is aborted.
pub async fn start(
    at: std::net::SocketAddr,
    client_ca: &Path,
    state: ApiState,
) -> Result<tokio::task::JoinHandle<std::io::Result<()>>> {
    let tls = tls(&at.ip().to_string(), client_ca)?;
    let tcp = tokio::net::TcpListener::bind(at)
        .await
        .with_context(|| format!("cannot listen on {at} for the kubelet API (--address, --port)"))?;
    let listener = zgrid_serve::Listener::with_config(tcp, tls);
    tracing::info!(%at, "kubelet API listening (kubectl logs and exec)");
    Ok(tokio::spawn(zgrid_serve::serve(listener, router(state), std::future::pending())))
}

/// The routes the API server uses.
fn router(state: ApiState) -> axum::Router {
    axum::Router::new()
        .route("/containerLogs/{namespace}/{pod}/{container}", axum::routing::get(logs))
        .route("/exec/{namespace}/{pod}/{container}", axum::routing::get(exec).post(exec))
        .with_state(state)
}

/// An error answer, as plain text (kubectl shows it).
struct Failure(StatusCode, String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, self.1).into_response()
    }
}

impl ApiState {
    /// The workload behind container `container` of Pod `namespace/pod`, and a client of its
    /// node.
    async fn container(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
    ) -> Result<(WorkloadId, NodeClient), Failure> {
        let not_found = |m: String| Failure(StatusCode::NOT_FOUND, m);
        let found = self
            .pods
            .get(&ObjectRef::new(pod).within(namespace))
            .ok_or_else(|| not_found(format!("pod {namespace}/{pod} is not on this node")))?;
        let named = found.spec.as_ref().is_some_and(|s| s.containers.iter().any(|c| c.name == container));
        if !named {
            return Err(not_found(format!("pod {namespace}/{pod} has no container {container:?}")));
        }
        let id = status::workload_of(&found)
            .and_then(|id| id.parse().ok())
            .ok_or_else(|| not_found(format!("pod {namespace}/{pod} has no grid container yet")))?;
        let bad_gateway = |e: zgrid_client::ClientError| Failure(StatusCode::BAD_GATEWAY, e.to_string());
        let record = self.explorer.workload(&id).await.map_err(bad_gateway)?;
        let node = self.explorer.node(&record.workload.payload.node_id).await.map_err(bad_gateway)?;
        let api = node.api_url.ok_or_else(|| {
            Failure(StatusCode::BAD_GATEWAY, format!("grid node {} publishes no API address", node.node_id))
        })?;
        let client = NodeClient::with_http(&api, self.key.clone(), &self.http).map_err(bad_gateway)?;
        Ok((id, client))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogsQuery {
    #[serde(default)]
    follow: bool,
    tail_lines: Option<usize>,
}

/// `kubectl logs [-f] [--tail N]`: the container's output from its node.
async fn logs(
    State(state): State<ApiState>,
    UrlPath((namespace, pod, container)): UrlPath<(String, String, String)>,
    Query(query): Query<LogsQuery>,
) -> Result<Response, Failure> {
    let (id, node) = state.container(&namespace, &pod, &container).await?;
    let stream = node.logs(&id, query.follow).await.map_err(|e| Failure(StatusCode::BAD_GATEWAY, e.to_string()))?;
    let plain = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    match query.tail_lines.filter(|_| !query.follow) {
        None => {
            Ok((plain, Body::from_stream(stream.map(|piece| piece.map_err(std::io::Error::other)))).into_response())
        }
        Some(lines) => {
            let mut all = Vec::new();
            let mut stream = std::pin::pin!(stream);
            while let Some(piece) = stream.next().await {
                all.extend(piece.map_err(|e| Failure(StatusCode::BAD_GATEWAY, e.to_string()))?);
                if all.len() > MAX_TAIL_READ {
                    all.drain(..all.len() - MAX_TAIL_READ);
                }
            }
            Ok((plain, tail(&all, lines).to_vec()).into_response())
        }
    }
}

/// `kubectl exec [-i] [-t]`: the command runs in the container on its node; frames are
/// relayed both ways until either side ends.
async fn exec(
    State(state): State<ApiState>,
    UrlPath((namespace, pod, container)): UrlPath<(String, String, String)>,
    RawQuery(query): RawQuery,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, Failure> {
    let upgrade = upgrade.map_err(|e| {
        let why =
            format!("exec on zgrid's virtual node needs a WebSocket (kubectl 1.30 or newer; SPDY is not spoken): {e}");
        Failure(StatusCode::BAD_REQUEST, why)
    })?;
    let (command, stdin, tty) = exec_query(&query.unwrap_or_default());
    if command.is_empty() {
        return Err(Failure(StatusCode::BAD_REQUEST, "no command to run".into()));
    }
    let (id, node) = state.container(&namespace, &pod, &container).await?;
    let offered = [zgrid_types::exec::PROTOCOL_V5, zgrid_types::exec::PROTOCOL_V4];
    let upgrade = upgrade.protocols(offered);
    // The node refuses before anything runs. Its reason goes back as the exec's failed
    // status, which kubectl prints (an HTTP error would only make it try SPDY).
    Ok(match node.exec(&id, &command, stdin, tty).await {
        Ok(upstream) => upgrade.on_upgrade(move |socket| relay(socket, upstream)),
        Err(e) => upgrade.on_upgrade(move |socket| refuse(socket, e.to_string())),
    })
}

/// Send `why` as the exec's failed status and close.
async fn refuse(mut socket: WebSocket, why: String) {
    let status = serde_json::to_vec(&zgrid_types::exec::ExecStatus::failed(why)).unwrap_or_default();
    let frame = [&[zgrid_types::exec::ERROR][..], &status].concat();
    let _ = socket.send(Message::Binary(frame.into())).await;
    let _ = socket.send(Message::Close(Some(normal_closure()))).await;
}

/// A normal closure: kubectl takes a close without a code for a failure.
fn normal_closure() -> axum::extract::ws::CloseFrame {
    axum::extract::ws::CloseFrame { code: 1000, reason: "".into() }
}

/// The command words and whether stdin and a terminal are asked for, from an exec's query
/// (`command=ls&command=-l&input=1&tty=1`; newer API servers say `stdin`).
fn exec_query(query: &str) -> (Vec<String>, bool, bool) {
    let (mut command, mut stdin, mut tty) = (Vec::new(), false, false);
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let on = matches!(value.as_ref(), "1" | "true");
        match key.as_ref() {
            "command" => command.push(value.into_owned()),
            "input" | "stdin" => stdin = on,
            "tty" => tty = on,
            _ => {}
        }
    }
    (command, stdin, tty)
}

/// Carry frames between the API server's WebSocket and the node's until either ends.
async fn relay(socket: WebSocket, upstream: zgrid_client::ExecStream) {
    let (mut to_kube, mut from_kube) = socket.split();
    let (mut to_node, mut from_node) = upstream.split();
    let up = async {
        while let Some(Ok(message)) = from_kube.next().await {
            match message {
                Message::Binary(frame) if to_node.send(frame.to_vec()).await.is_err() => break,
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = to_node.close().await;
    };
    let down = async {
        while let Some(Ok(frame)) = from_node.next().await {
            if to_kube.send(Message::Binary(frame.into())).await.is_err() {
                break;
            }
        }
        let _ = to_kube.send(Message::Close(Some(normal_closure()))).await;
    };
    // The command's end (the node closing) ends the exec even while stdin stays open.
    tokio::select! {
        () = down => {}
        () = async { up.await; std::future::pending::<()>().await } => {}
    }
}

/// The last `lines` lines of `text`.
fn tail(text: &[u8], lines: usize) -> &[u8] {
    if lines == 0 {
        return &text[text.len()..];
    }
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    let ends = body.iter().enumerate().rev().filter(|(_, b)| **b == b'\n');
    let start = ends.map(|(at, _)| at + 1).nth(lines - 1).unwrap_or(0);
    &text[start..]
}

#[cfg(test)]
mod tests {
    use super::tail;

    #[test]
    fn the_last_lines_are_cut_at_line_ends() {
        assert_eq!(tail(b"a\nb\nc\n", 2), b"b\nc\n");
        assert_eq!(tail(b"a\nb\nc", 1), b"c");
        assert_eq!(tail(b"a\nb\n", 5), b"a\nb\n");
        assert_eq!(tail(b"a\nb\n", 0), b"");
        assert_eq!(tail(b"", 3), b"");
    }
}
