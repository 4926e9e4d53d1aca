//! `GET /v1/workloads/{id}/exec?command=WORD&...&stdin=true|false&tty=true|false`: a process
//! started in a container (`runc exec`), spoken to over a WebSocket in Kubernetes' channel
//! framing (`zgrid_types::exec`), so a virtual kubelet relays `kubectl exec` frame for frame.
//!
//! Checked before the upgrade, like logs: the signature (401), the workload (404), its owner
//! (403), that it is a container on this node (404); then, as running a command changes state,
//! the request's nonce must be new (401; 503 when too many are in use). The process's outputs
//! are streamed as they come, never gathered; when it has ended and its outputs are closed (or
//! quiet for a second, as a background child may hold them), the status goes out on channel 3
//! and the socket is closed. A client that goes away has the process killed.

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use zgrid_types::exec::{self, ExecStatus, TerminalSize};
use zgrid_types::{WorkloadData, WorkloadId};

use super::replay::Refused;
use super::{ApiState, REQUEST_WINDOW_SECS, Refusal, internal, signed_by};
use crate::runtime::{ExecOutput, ExecSession};

/// Largest message a client may send.
const MAX_MESSAGE: usize = 1 << 20;

/// Largest piece of output read (and sent) at once.
const PIECE: usize = 32 << 10;

/// How long the outputs may stay quiet after the process ended before the status is sent.
const QUIET_AFTER_EXIT: std::time::Duration = std::time::Duration::from_secs(1);

/// What the query asks for.
struct ExecQuery {
    command: Vec<String>,
    stdin: bool,
    tty: bool,
}

fn parse_query(query: Option<&str>) -> Result<ExecQuery, Refusal> {
    let bad = |m: String| Refusal(StatusCode::BAD_REQUEST, m);
    let mut parsed = ExecQuery { command: Vec::new(), stdin: false, tty: false };
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        let flag = || match value.as_ref() {
            "true" => Ok(true),
            "false" => Ok(false),
            other => Err(bad(format!("{key} must be true or false, not {other:?}"))),
        };
        match key.as_ref() {
            "command" => parsed.command.push(value.clone().into_owned()),
            "stdin" => parsed.stdin = flag()?,
            "tty" => parsed.tty = flag()?,
            other => return Err(bad(format!("unknown query parameter {other:?}: use command, stdin and tty"))),
        }
    }
    if let Some(problem) = exec::command_problem(&parsed.command) {
        return Err(bad(problem));
    }
    Ok(parsed)
}

pub(super) async fn exec(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    uri: Uri,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, Refusal> {
    let auth = signed_by(&uri, &headers)?;
    let not_here = || Refusal(StatusCode::NOT_FOUND, format!("workload {id} is not on this node"));
    let id: WorkloadId = id.parse().map_err(|_| not_here())?;
    let entry = state.store.get(&id).map_err(|e| internal(&e))?.ok_or_else(not_here)?;
    if entry.workload.payload.owner_key != auth.key {
        return Err(Refusal(StatusCode::FORBIDDEN, format!("only the owner of workload {id} may exec in it")));
    }
    let WorkloadData::Container(_) = &entry.workload.payload.data else {
        return Err(Refusal(
            StatusCode::NOT_FOUND,
            format!("workload {id} is not a container; exec runs in containers"),
        ));
    };
    let query = parse_query(query.as_deref())?;
    match state.nonces.record(&auth, REQUEST_WINDOW_SECS, zgrid_types::unix_now()) {
        Ok(()) => {}
        Err(Refused::Replayed) => {
            return Err(Refusal(StatusCode::UNAUTHORIZED, "this request was used before; sign a new one".into()));
        }
        Err(Refused::Full) => {
            return Err(Refusal(StatusCode::SERVICE_UNAVAILABLE, "too many exec requests, try again".into()));
        }
    }
    if !state.runtime.exists(id.as_str()) {
        return Err(Refusal(StatusCode::NOT_FOUND, format!("container {id} is not running on this node")));
    }
    let ws = ws.map_err(|e| Refusal(e.status(), format!("exec is a WebSocket: {}", e.body_text())))?;
    let ws = ws.max_message_size(MAX_MESSAGE).protocols([exec::PROTOCOL_V5, exec::PROTOCOL_V4]);
    if ws.selected_protocol().is_none() {
        return Err(Refusal(
            StatusCode::BAD_REQUEST,
            format!("ask for the WebSocket subprotocol {}", exec::PROTOCOL_V4),
        ));
    }
    let runtime = state.runtime.clone();
    Ok(ws.on_upgrade(move |socket| async move {
        match runtime.exec_session(id.as_str(), &query.command, query.stdin, query.tty) {
            Ok(session) => relay(socket, session).await,
            Err(e) => {
                tracing::warn!(workload = %id, error = %e, "exec could not start");
                let _ = finish(socket, ExecStatus::failed(e.to_string())).await;
            }
        }
    }))
}

/// Carry the process's outputs to the socket and the socket's input to the process until the
/// process has ended (then send its status) or the client went away (then kill it).
async fn relay(socket: WebSocket, mut session: ExecSession) {
    let (mut sink, mut source) = socket.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(8);
    for output in session.take_outputs() {
        tokio::spawn(pump(output, out_tx.clone()));
    }
    drop(out_tx);
    let (mut stdin, resizer) = (session.take_stdin(), session.resizer());
    let (gone_tx, mut gone) = tokio::sync::oneshot::channel::<()>();
    // Input has its own task: a process that does not read its stdin must not stop its output.
    let input = tokio::spawn(async move {
        while let Some(Ok(message)) = source.next().await {
            let bytes = match message {
                Message::Binary(bytes) => bytes,
                Message::Close(_) => break,
                _ => continue,
            };
            match bytes.split_first() {
                Some((&exec::STDIN, data)) => {
                    if let Some(writer) = stdin.as_mut()
                        && (writer.write_all(data).await.is_err() || writer.flush().await.is_err())
                    {
                        stdin = None;
                    }
                }
                Some((&exec::RESIZE, json)) => {
                    if let (Some(r), Ok(size)) = (&resizer, serde_json::from_slice::<TerminalSize>(json)) {
                        r.resize(size.width, size.height);
                    }
                }
                Some((&exec::CLOSE, [exec::STDIN])) => stdin = None,
                _ => {}
            }
        }
        let _ = gone_tx.send(());
    });
    let mut code = None;
    let mut outputs_open = true;
    let status = loop {
        if let (Some(code), false) = (code, outputs_open) {
            break Ok(code);
        }
        tokio::select! {
            ended = session.wait(), if code.is_none() => match ended {
                Ok(c) => code = Some(c),
                Err(e) => break Err(e.to_string()),
            },
            piece = out_rx.recv(), if outputs_open => match piece {
                Some(frame) => if sink.send(Message::Binary(frame.into())).await.is_err() {
                    session.kill();
                    input.abort();
                    return;
                },
                None => outputs_open = false,
            },
            _ = &mut gone, if code.is_none() => {
                session.kill();
                return;
            }
            () = tokio::time::sleep(QUIET_AFTER_EXIT), if code.is_some() => break Ok(code.unwrap_or(0)),
        }
    }
    .map_or_else(ExecStatus::failed, ExecStatus::exited);
    input.abort();
    let mut socket = sink;
    let _ = send_status(&mut socket, &status).await;
}

/// Read one output and send it on as frames of its channel.
async fn pump((channel, mut reader): ExecOutput, frames: mpsc::Sender<Vec<u8>>) {
    let mut buf = vec![0u8; PIECE];
    // A terminal whose other end closed says EIO: that is its end.
    while let Ok(n @ 1..) = reader.read(&mut buf).await {
        let mut frame = Vec::with_capacity(n + 1);
        frame.push(channel);
        frame.extend_from_slice(&buf[..n]);
        if frames.send(frame).await.is_err() {
            return;
        }
    }
}

async fn send_status(
    sink: &mut (impl futures::Sink<Message, Error = axum::Error> + Unpin),
    status: &ExecStatus,
) -> Result<(), axum::Error> {
    let mut frame = vec![exec::ERROR];
    frame.extend(serde_json::to_vec(status).expect("a status serialises"));
    sink.send(Message::Binary(frame.into())).await?;
    sink.send(Message::Close(None)).await
}

/// Send `status` and close.
async fn finish(socket: WebSocket, status: ExecStatus) -> Result<(), axum::Error> {
    let (mut sink, _) = socket.split();
    send_status(&mut sink, &status).await
}
