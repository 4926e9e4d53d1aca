//! The interactive console of a container (seed `004`'s CoreX), for `interactive` containers:
//! on port 7681 of the container's address in its private network, a web page listing the
//! container's processes (pids as the container sees them, its init left out) and a JSON API to
//! start a process on a terminal inside the container (`/api/process/start?arg[]=/bin/sh`),
//! attach to it over a WebSocket, and end it or any other process of the container (SIGTERM,
//! then SIGKILL).
//!
//! The server is a task of the agent whose listening socket lives in the container's network
//! namespace, so it is reachable only from the owner's private network (that is its only
//! access control, for every action alike) and needs nothing in the image. So that a browser
//! on the network cannot be used by other sites' pages, requests must name the console by its
//! address (or loopback, for a port forward) and come from its own page or no page at all. The page uses
//! xterm.js when the node has it (`--console-assets`), a plain text view otherwise. Processes
//! are started with `runc exec --tty`: inside the container, with its environment, limits and
//! namespaces.

mod page;
mod process;
mod procs;

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

/// Where a node looks for xterm.js and xterm.css unless told (`--console-assets`), and where
/// `scripts/console-assets` installs them unless told.
pub const ASSETS_DIR: &str = "/usr/share/zgrid/console";

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
        .route("/", get(|State(c): State<Arc<Console>>| async move { Html(page::render(&c.container)) }))
        .route("/assets/{file}", get(asset))
        .route("/api/processes", get(processes))
        .route("/api/process/start", post(start))
        .route("/api/process/{id}/attach", get(attach))
        .route("/api/process/{id}/kill", post(kill))
        .route("/api/pid/{pid}/kill", post(kill_pid))
        .layer(axum::middleware::from_fn_with_state(ip, same_site))
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

/// Whether `host` (a `Host` header) names the console the way its own page does: the
/// container's address and [`PORT`], or loopback (a port forward the user made). A name that
/// resolves to the address (DNS rebinding) is not one of them.
fn own_host(ip: Ipv4Addr, host: &str) -> bool {
    let name = host.rsplit_once(':').map_or(host, |(name, _)| name);
    host == format!("{ip}:{PORT}") || ["localhost", "127.0.0.1", "[::1]"].contains(&name)
}

/// Why a request with `headers` is refused by [`same_site`], if it is.
fn cross_site(ip: Ipv4Addr, headers: &axum::http::HeaderMap) -> Option<Response> {
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let Some(host) = header(axum::http::header::HOST).filter(|h| own_host(ip, h)) else {
        return Some(error(StatusCode::MISDIRECTED_REQUEST, format!("open the console at http://{ip}:{PORT}/")));
    };
    header(axum::http::header::ORIGIN)
        .is_some_and(|origin| origin != format!("http://{host}"))
        .then(|| error(StatusCode::FORBIDDEN, "requests from another site's pages are refused"))
}

/// Refuse what a web page of another site could make a browser on the private network send:
/// a request naming another host (DNS rebinding) or coming from another origin (a form, a
/// fetch or a WebSocket of another site's page). The network is the console's only access
/// control, so a browser on it must not lend its reach to other sites.
async fn same_site(
    State(ip): State<Ipv4Addr>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Some(refusal) = cross_site(ip, request.headers()) {
        return refusal;
    }
    next.run(request).await
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
    /// Its pid inside the container.
    pid: u32,
    /// Its command line.
    cmdline: Vec<String>,
    /// Its state, as `ps` shows it (`R` running, `S` sleeping, `T` stopped…).
    state: String,
}

/// An API error: a status and a JSON `{"error": ...}`.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

async fn processes(State(c): State<Arc<Console>>) -> Response {
    let host_pids = match c.runtime.processes(&c.container) {
        Ok(pids) => pids,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let started = c.started.lock().expect("lock");
    let listed: Vec<Listed> = procs::list(&host_pids)
        .into_iter()
        .map(|p| Listed {
            id: started.values().find(|s| s.pid == p.host_pid).map(|s| s.id),
            pid: p.pid,
            cmdline: p.cmdline,
            state: p.state,
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
            // Its pid inside the container, as the process list shows it.
            let pid = procs::read(process.pid).map(|p| p.pid);
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

/// End a process the console started: SIGTERM, then SIGKILL; answers once it is gone.
async fn kill(State(c): State<Arc<Console>>, Path(id): Path<u32>) -> Response {
    let Some(process) = started(&c, id) else { return not_started(id) };
    // Only while it is the container's: once it ended, its host pid may be anyone's.
    match c.runtime.processes(&c.container) {
        Ok(host_pids) if host_pids.contains(&process.pid) => {
            ended(procs::terminate(process.pid).await, &format!("process {id}"))
        }
        Ok(_) => error(StatusCode::NOT_FOUND, format!("process {id} has ended")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// End the container's process with pid `pid` (as the container sees it), whoever started it:
/// SIGTERM, then SIGKILL; answers once it is gone. Not its init.
async fn kill_pid(State(c): State<Arc<Console>>, Path(pid): Path<u32>) -> Response {
    if pid == 1 {
        return error(StatusCode::BAD_REQUEST, "pid 1 is the container's init; delete the container to stop it");
    }
    let host_pids = match c.runtime.processes(&c.container) {
        Ok(pids) => pids,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    match procs::list(&host_pids).into_iter().find(|p| p.pid == pid) {
        Some(p) => ended(procs::terminate(p.host_pid).await, &format!("pid {pid}")),
        None => error(StatusCode::NOT_FOUND, format!("the container has no process with pid {pid}")),
    }
}

/// The answer to a kill of `what`.
fn ended(result: Result<(), String>, what: &str) -> Response {
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(why) => error(StatusCode::CONFLICT, format!("cannot end {what}: {why}")),
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
