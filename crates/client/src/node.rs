//! A client of a node agent's own API: what only the node has, such as a workload's output,
//! and commands run in its containers (`exec`, a WebSocket).
//! Every call is signed by the workload's owner; the node checks the key against the workload.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::{Sink, SinkExt, Stream, StreamExt};
use reqwest::Method;
use zgrid_types::logs::{LogDecoder, LogStream};
use zgrid_types::{Keypair, WorkloadId};

use crate::http::{ClientResult, Http};
use crate::transport::{HttpClient, HttpOptions};

/// A connection to one node agent, signing as a workload owner.
#[derive(Clone)]
pub struct NodeClient {
    http: Http,
}

impl NodeClient {
    /// A client of the node agent API at `api_url` (from the node's directory entry), signing
    /// with `key`, with the default [`HttpOptions`].
    pub fn new(api_url: &str, key: Keypair) -> ClientResult<Self> {
        Self::with_http(api_url, key, &HttpOptions::default().client()?)
    }

    /// A client of the node agent API at `api_url`, signing with `key`, over `http` (its
    /// trusted CAs and time limits).
    pub fn with_http(api_url: &str, key: Keypair, http: &HttpClient) -> ClientResult<Self> {
        let mut http = Http::new(api_url, "node", http)?;
        http.key = Some(key);
        Ok(Self { http })
    }

    /// The workload's recent output (stdout and stderr, interleaved as written), then, with
    /// `follow`, what it writes next until the workload goes away or the stream is dropped (a
    /// followed container may rightly be quiet, so only a dead connection ends it early).
    pub async fn logs(
        &self,
        id: &WorkloadId,
        follow: bool,
    ) -> ClientResult<impl Stream<Item = ClientResult<Vec<u8>>> + use<>> {
        let path = format!("/v1/workloads/{id}/logs?follow={follow}");
        let answer = self.http.request(Method::GET, &path, None, true).await?;
        let idle = (!follow).then(|| self.http.timeout());
        Ok(answer.stream(idle).map(|piece| piece.map(|b| b.to_vec())))
    }

    /// As [`NodeClient::logs`], each piece with the stream it was written on (a node that
    /// does not keep them apart, or a VM's console, gives only stdout).
    pub async fn log_streams(
        &self,
        id: &WorkloadId,
        follow: bool,
    ) -> ClientResult<impl Stream<Item = ClientResult<(LogStream, Vec<u8>)>> + use<>> {
        let path = format!("/v1/workloads/{id}/logs?follow={follow}&streams=true");
        let answer = self.http.request(Method::GET, &path, None, true).await?;
        let idle = (!follow).then(|| self.http.timeout());
        let mut decoder = LogDecoder::default();
        let pieces = answer.stream(idle).map(move |records| {
            let mut pieces = Vec::new();
            match records {
                Ok(records) => decoder.decode(&records, |stream, piece| pieces.push(Ok((stream, piece.to_vec())))),
                Err(e) => pieces.push(Err(e)),
            }
            futures::stream::iter(pieces)
        });
        Ok(pieces.flatten())
    }
}

/// A command running in a container ([`NodeClient::exec`]): binary frames in Kubernetes'
/// channel framing (`zgrid_types::exec`), the channel byte first, both ways. As a [`Stream`]
/// it yields the node's frames (stdout, stderr, then the status on channel 3) and ends when
/// the node closes; as a [`Sink`] it takes frames for the node (stdin, resize, close stdin).
pub struct ExecStream {
    socket: crate::websocket::Socket,
    protocol: String,
    url: String,
}

impl NodeClient {
    /// Run `command` in container `id` (signed as its owner, with a fresh nonce, so a captured
    /// request cannot be replayed): with stdin when `stdin`, on a terminal when `tty`. The node
    /// refuses (before anything runs) with [`crate::ClientError::Api`]: 401, 403 (not the
    /// owner), 404 (not a container on this node).
    pub async fn exec(&self, id: &WorkloadId, command: &[String], stdin: bool, tty: bool) -> ClientResult<ExecStream> {
        // The serializer is not Send: it ends before the first await.
        let path = {
            let mut query = url::form_urlencoded::Serializer::new(String::new());
            for word in command {
                query.append_pair("command", word);
            }
            query.append_pair("stdin", if stdin { "true" } else { "false" });
            query.append_pair("tty", if tty { "true" } else { "false" });
            format!("/v1/workloads/{id}/exec?{}", query.finish())
        };
        let offered = [zgrid_types::exec::PROTOCOL_V5, zgrid_types::exec::PROTOCOL_V4];
        let (socket, protocol) = self.http.websocket(&path, &offered).await?;
        let protocol = protocol.unwrap_or_else(|| zgrid_types::exec::PROTOCOL_V4.to_owned());
        Ok(ExecStream { socket, protocol, url: format!("{}{path}", self.http.base().trim_end_matches('/')) })
    }
}

impl ExecStream {
    /// The subprotocol the node chose: `v5.channel.k8s.io` (which closes stdin with
    /// `[255, 0]`) or `v4.channel.k8s.io`.
    pub fn protocol(&self) -> &str {
        &self.protocol
    }

    fn broken(&self, e: &tokio_tungstenite::tungstenite::Error) -> crate::ClientError {
        crate::ClientError::Broken { peer: "node", url: self.url.clone(), cause: e.to_string() }
    }
}

impl Stream for ExecStream {
    type Item = ClientResult<Vec<u8>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        use tokio_tungstenite::tungstenite::Message;
        loop {
            return match std::task::ready!(self.socket.poll_next_unpin(cx)) {
                Some(Ok(Message::Binary(bytes))) => Poll::Ready(Some(Ok(bytes.to_vec()))),
                Some(Ok(Message::Close(_))) | None => Poll::Ready(None),
                Some(Ok(_)) => continue,
                Some(Err(e)) => Poll::Ready(Some(Err(self.broken(&e)))),
            };
        }
    }
}

impl Sink<Vec<u8>> for ExecStream {
    type Error = crate::ClientError;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<ClientResult<()>> {
        self.socket.poll_ready_unpin(cx).map_err(|e| self.broken(&e))
    }

    fn start_send(mut self: Pin<&mut Self>, frame: Vec<u8>) -> ClientResult<()> {
        use tokio_tungstenite::tungstenite::Message;
        self.socket.start_send_unpin(Message::Binary(frame.into())).map_err(|e| self.broken(&e))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<ClientResult<()>> {
        self.socket.poll_flush_unpin(cx).map_err(|e| self.broken(&e))
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<ClientResult<()>> {
        self.socket.poll_close_unpin(cx).map_err(|e| self.broken(&e))
    }
}
