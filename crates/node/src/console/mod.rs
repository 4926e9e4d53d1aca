//! The interactive console of a container (seed `004`'s CoreX), for `interactive` containers:
//! on port 7681 of the container's address in its private network, a web page listing the
//! container's processes and a JSON API to start a process on a terminal inside the container
//! (`/api/process/start?arg[]=/bin/sh`) and attach to it over a WebSocket.
//!
//! The server is a task of the agent whose listening socket lives in the container's network
//! namespace, so it is reachable only from the owner's private network and needs nothing in the
//! image. The page uses xterm.js when the node has it (`--console-assets`), a plain text view
//! otherwise. Processes are started with `runc exec --tty`: inside the container, with its
//! environment, limits and namespaces.

mod page;
mod process;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;

use crate::runtime::Runtime;
use process::Process;

/// The console's TCP port.
pub const PORT: u16 = 7681;

/// What the handlers share.
struct Console {
    runtime: Runtime,
    /// Where xterm.js and xterm.css are, if installed.
    assets: Option<PathBuf>,
    container: String,
    started: Mutex<BTreeMap<u32, Arc<Process>>>,
}

/// Serve container `container`'s console on `ip`:[`PORT`] inside the network namespace at
/// `netns`, with the browser terminal from `assets` when given, until aborted.
pub async fn serve(runtime: Runtime, container: String, netns: PathBuf, ip: Ipv4Addr, assets: Option<PathBuf>) {
    let listener = match bind_in(&netns, SocketAddr::from((ip, PORT))).await {
        Ok(listener) => listener,
        Err(e) => {
            tracing::warn!(container = %container, error = %e, "cannot open the console port");
            return;
        }
    };
    let console = Arc::new(Console { runtime, assets, container: container.clone(), started: Mutex::default() });
    let app = axum::Router::new()
        .route("/", get(|| async { Html(page::PAGE) }))
        .route("/assets/{file}", get(asset))
        .route("/api/processes", get(processes))
        .route("/api/process/start", get(start).post(start))
        .route("/api/process/{id}/attach", get(attach))
        .route("/api/process/{id}/kill", post(kill))
        .with_state(console);
    tracing::info!(container = %container, %ip, port = PORT, "console listening");
    if let Err(e) = axum::serve(listener, app).await {
        tracing::warn!(container = %container, error = %e, "the console stopped");
    }
}

/// A listening socket made in the network namespace at `netns`, served from the agent's runtime.
async fn bind_in(netns: &std::path::Path, addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let netns = netns.to_owned();
    let listener = tokio::task::spawn_blocking(move || {
        crate::network::in_netns(&netns, move || {
            let listener = std::net::TcpListener::bind(addr)?;
            listener.set_nonblocking(true)?;
            Ok(listener)
        })
    })
    .await
    .map_err(std::io::Error::other)??;
    tokio::net::TcpListener::from_std(listener)
}

/// xterm.js or xterm.css from the installed assets.
async fn asset(State(c): State<Arc<Console>>, Path(file): Path<String>) -> Response {
    let kind = match file.as_str() {
        "xterm.js" => "text/javascript",
        "xterm.css" => "text/css",
        _ => return error(StatusCode::NOT_FOUND, format!("no asset {file}")),
    };
    let Some(dir) = &c.assets else { return error(StatusCode::NOT_FOUND, "no browser terminal on this node") };
    match tokio::fs::read(dir.join(&file)).await {
        Ok(bytes) => ([(axum::http::header::CONTENT_TYPE, kind)], bytes).into_response(),
        Err(_) => {
            error(StatusCode::NOT_FOUND, format!("{file} is not installed on this node (scripts/console-assets)"))
        }
    }
}

/// One process of the container, as the API lists it.
#[derive(Debug, Serialize)]
struct Listed {
    /// The console's id for it, when the console started it.
    id: Option<u32>,
    /// Host pid.
    pid: u32,
    /// Its command line.
    cmdline: Vec<String>,
}

/// An API error: a status and a JSON `{"error": ...}`.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

async fn processes(State(c): State<Arc<Console>>) -> Response {
    let pids = match c.runtime.processes(&c.container) {
        Ok(pids) => pids,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let started = c.started.lock().expect("lock");
    let listed: Vec<Listed> = pids
        .into_iter()
        .map(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = cmdline
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let id = started.values().find(|p| p.pid == pid).map(|p| p.id);
            Listed { id, pid, cmdline }
        })
        .collect();
    Json(listed).into_response()
}

/// `?arg[]=/bin/sh&arg[]=-l` (or `arg=`): the command line to start.
async fn start(State(c): State<Arc<Console>>, RawQuery(query): RawQuery) -> Response {
    let args: Vec<String> = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .filter(|(k, _)| k == "arg[]" || k == "arg")
        .map(|(_, v)| v.into_owned())
        .collect();
    if args.is_empty() {
        return error(StatusCode::BAD_REQUEST, "name the program to start: /api/process/start?arg[]=/bin/sh");
    }
    let id = c.started.lock().expect("lock").keys().next_back().map_or(1, |n| n + 1);
    match Process::start(&c.runtime, &c.container, id, args).await {
        Ok(process) => {
            let pid = process.pid;
            c.started.lock().expect("lock").insert(id, Arc::new(process));
            Json(serde_json::json!({ "id": id, "pid": pid })).into_response()
        }
        Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
    }
}

fn started(c: &Console, id: u32) -> Option<Arc<Process>> {
    c.started.lock().expect("lock").get(&id).cloned()
}

fn not_started(id: u32) -> Response {
    error(StatusCode::NOT_FOUND, format!("no process {id} was started here"))
}

async fn attach(State(c): State<Arc<Console>>, Path(id): Path<u32>, ws: WebSocketUpgrade) -> Response {
    match started(&c, id) {
        Some(process) => ws.on_upgrade(move |socket| relay(socket, process)),
        None => not_started(id),
    }
}

async fn kill(State(c): State<Arc<Console>>, Path(id): Path<u32>) -> Response {
    match started(&c, id) {
        Some(process) => {
            process.kill();
            StatusCode::NO_CONTENT.into_response()
        }
        None => not_started(id),
    }
}

/// Carry terminal output to the socket (what came before first) and the socket's messages to
/// the terminal: binary or text as keystrokes, `{"resize":[cols,rows]}` as a size change.
async fn relay(mut socket: WebSocket, process: Arc<Process>) {
    let (backlog, mut output) = process.subscribe();
    if !backlog.is_empty() && socket.send(Message::Binary(backlog.into())).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            chunk = output.recv() => match chunk {
                Ok(bytes) => if socket.send(Message::Binary(bytes.into())).await.is_err() { return },
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                    let _ = socket.send(Message::Close(None)).await;
                    return;
                }
            },
            message = socket.recv() => match message {
                Some(Ok(Message::Binary(bytes))) => process.write(bytes.to_vec()).await,
                Some(Ok(Message::Text(text))) => match serde_json::from_str::<serde_json::Value>(&text) {
                    Ok(v) if v.get("resize").is_some() => {
                        let size = |i| v["resize"][i].as_u64().and_then(|n| u16::try_from(n).ok()).unwrap_or(0);
                        process.resize(size(0), size(1));
                    }
                    _ => process.write(text.as_bytes().to_vec()).await,
                },
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return,
            },
        }
    }
}
