//! The node agent's own HTTP API, for what only the node has: a workload's output, and
//! commands run in its containers.
//!
//! `GET /v1/workloads/{id}/logs?follow=true|false&streams=true|false` answers the container's
//! recent stdout and stderr (a VM's serial console) as `text/plain`, or with `streams` as the
//! log's records, which keep the two apart (`zgrid_types::logs`), then, with `follow`, streams
//! what it writes until it is removed. The request must be signed (`Authorization: Zgrid ...`, as for the
//! explorer) by the key the workload's owner signed the workload with, within five minutes of
//! the node's clock. Reading changes nothing, so its nonces are not tracked.
//!
//! `GET /v1/workloads/{id}/exec?command=WORD&command=WORD...&stdin=true|false&tty=true|false`
//! upgrades to a WebSocket (subprotocol `v4.channel.k8s.io` or `v5.channel.k8s.io`) carrying
//! a process started in the container with `runc exec`, in Kubernetes' channel framing
//! (`zgrid_types::exec`: 0 stdin, 1 stdout, 2 stderr, 3 the final `metav1.Status`, 4 resize,
//! `[255, 0]` closes stdin), so a virtual kubelet relays `kubectl exec` frame for frame. Signed
//! and checked like logs (401, 403, 404 before the upgrade; 404 for anything but a
//! container), and, as it runs something, each signed request is good once: the (signer, nonce)
//! pairs of the window are kept in memory, at most [`MAX_NONCES`] (503 when full). 1 to 64
//! command words, at most 4096 bytes (400). A container on a private network that runs in a
//! user namespace of its own cannot be entered (409; see `exec.rs`). `GET /v1/node` says which
//! node this is.

use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::sync::mpsc;
use zgrid_types::api::ApiError;
use zgrid_types::auth::RequestAuth;
use zgrid_types::logs::LogDecoder;
use zgrid_types::{NodeId, WorkloadId};

use crate::runtime::Runtime;

mod exec;
mod replay;

use crate::store::Store;
use crate::vm::Vms;
pub use replay::{MAX_NONCES, UsedNonces};

/// How far a request's timestamp may be from the node's clock, seconds.
const REQUEST_WINDOW_SECS: i64 = 300;

/// How often a followed log is checked for new output.
const FOLLOW_POLL: Duration = Duration::from_millis(100);

/// What the API reads from.
#[derive(Clone)]
pub struct ApiState {
    /// This node.
    pub node_id: NodeId,
    /// What the node provisioned (owners' keys).
    pub store: Store,
    /// Where container logs are.
    pub runtime: Runtime,
    /// Where VM consoles are, when the node runs VMs.
    pub vms: Option<Vms>,
    /// The nonces of exec requests seen within the time window.
    pub nonces: UsedNonces,
}

/// The API's routes.
pub fn router(state: ApiState) -> axum::Router {
    axum::Router::new()
        .route("/v1/node", axum::routing::get(node))
        .route("/v1/workloads/{id}/logs", axum::routing::get(logs))
        .route("/v1/workloads/{id}/exec", axum::routing::get(exec::exec))
        .with_state(state)
}

/// Serve the API on `listener` (plain HTTP or TLS) until the task is dropped.
pub async fn serve(listener: zgrid_serve::Listener, state: ApiState) -> std::io::Result<()> {
    tracing::info!(url = %listener.url()?, "node API listening");
    zgrid_serve::serve(listener, router(state), std::future::pending()).await
}

/// An error answer in the explorer's JSON shape.
struct Refusal(StatusCode, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.0, Json(ApiError { error: self.1, field: None })).into_response()
    }
}

async fn node(State(state): State<ApiState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "node_id": state.node_id, "version": env!("CARGO_PKG_VERSION") }))
}

#[derive(Deserialize)]
struct LogsQuery {
    #[serde(default)]
    follow: bool,
    /// Records that keep stdout and stderr apart (`zgrid_types::logs`) instead of text.
    #[serde(default)]
    streams: bool,
}

async fn logs(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Query(query): Query<LogsQuery>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    let auth = signed_by(&uri, &headers)?;
    let id: WorkloadId =
        id.parse().map_err(|_| Refusal(StatusCode::NOT_FOUND, format!("{id:?} is not a workload id")))?;
    let entry = state
        .store
        .get(&id)
        .map_err(|e| internal(&e))?
        .ok_or_else(|| Refusal(StatusCode::NOT_FOUND, format!("workload {id} is not on this node")))?;
    if entry.workload.payload.owner_key != auth.key {
        return Err(Refusal(StatusCode::FORBIDDEN, format!("only the owner of workload {id} may read its logs")));
    }
    let not_found = || Refusal(StatusCode::NOT_FOUND, format!("workload {id} has no logs on this node"));
    let mut follower = match state.runtime.follow_logs(id.as_str()).map_err(|e| internal(&e))? {
        Some(follower) => follower,
        None => match &state.vms {
            Some(vms) => vms.follow_console(id.as_str()).map_err(|e| internal(&e))?.ok_or_else(not_found)?,
            None => return Err(not_found()),
        },
    };
    // The log's records as they are, or as text.
    let mut decoder = (!query.streams).then(LogDecoder::default);
    let mut shown = move |records: Vec<u8>| match &mut decoder {
        Some(decoder) => decoder.merged(&records),
        None => records,
    };
    let first = shown(follower.read_new().map_err(|e| internal(&e))?);
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    let _ = tx.try_send(Ok(Bytes::from(first)));
    if query.follow {
        let (runtime, vms) = (state.runtime.clone(), state.vms.clone());
        tokio::spawn(async move {
            // Ends when the client goes away (send fails) or the container or VM is removed.
            while runtime.exists(id.as_str()) || vms.as_ref().is_some_and(|v| v.has(id.as_str())) {
                tokio::time::sleep(FOLLOW_POLL).await;
                let chunk = match follower.read_new() {
                    Ok(bytes) if bytes.is_empty() => continue,
                    Ok(bytes) => Ok(Bytes::from(shown(bytes))),
                    Err(e) => Err(std::io::Error::other(e.to_string())),
                };
                if tx.send(chunk).await.is_err() {
                    break;
                }
            }
        });
    } else {
        drop(tx);
    }
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response())
}

/// The verified signer of this (bodiless) request.
fn signed_by(uri: &Uri, headers: &HeaderMap) -> Result<RequestAuth, Refusal> {
    let unauthorized = |m: String| Refusal(StatusCode::UNAUTHORIZED, m);
    let auth = RequestAuth::from_header(headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()))
        .map_err(|e| unauthorized(e.to_string()))?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    auth.verify("GET", path, b"").map_err(|e| unauthorized(e.to_string()))?;
    auth.check_time(REQUEST_WINDOW_SECS, "node").map_err(|e| unauthorized(e.to_string()))?;
    Ok(auth)
}

fn internal(e: &dyn std::fmt::Display) -> Refusal {
    tracing::error!(error = %e, "node API request failed");
    Refusal(StatusCode::INTERNAL_SERVER_ERROR, "internal error on the node; see its log".into())
}

#[cfg(test)]
mod tests {
    use zgrid_types::workload::{DiskType, Volume};
    use zgrid_types::{Keypair, Signed, WorkloadData, WorkloadSpec};

    use super::*;
    use crate::store::{Entry, Phase};

    /// The cgroup parent the test's runtime makes (no container ever runs in it).
    const PARENT: &str = "zgrid-api-test";

    /// Removes [`PARENT`] from every cgroup hierarchy when dropped.
    struct NoCgroupLeft;

    impl Drop for NoCgroupLeft {
        fn drop(&mut self) {
            for hierarchy in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
                let _ = std::fs::remove_dir(hierarchy.path().join(PARENT));
            }
        }
    }

    /// A node API on loopback whose store holds one volume of `owner`; its URL and the id.
    async fn serve_one(owner: &Keypair, dir: &std::path::Path) -> (String, WorkloadId) {
        let (url, ids) =
            serve(owner, dir, vec![WorkloadData::Volume(Volume { size: 10, disk_type: DiskType::Ssd })]).await;
        (url, ids[0].clone())
    }

    /// A node API on loopback whose store holds workloads of `owner` with `data`; its URL and
    /// their ids.
    async fn serve(owner: &Keypair, dir: &std::path::Path, data: Vec<WorkloadData>) -> (String, Vec<WorkloadId>) {
        let node = Keypair::from_seed(&rand::random());
        let store = Store::open(dir.join("store")).unwrap();
        let mut ids = Vec::new();
        for data in data {
            let spec = WorkloadSpec {
                id: zgrid_client::new_workload_id(),
                version: 1,
                owner: 1,
                owner_key: owner.public(),
                node_id: node.public(),
                expires_at: zgrid_types::unix_now() + 3600,
                description: String::new(),
                metadata: String::new(),
                data,
            };
            ids.push(spec.id.clone());
            let workload = Signed::sign(spec, owner);
            let entry = Entry {
                workload,
                phase: Phase::Running,
                restarts: 0,
                data: Default::default(),
                last_stop: Default::default(),
            };
            store.put(&entry).unwrap();
        }
        let runtime = Runtime::new(dir.join("runtime"), PARENT).expect("the node API tests need root and runc");
        let state = ApiState { node_id: node.public(), store, runtime, vms: None, nonces: UsedNonces::default() };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(super::serve(listener.into(), state));
        (url, ids)
    }

    /// `GET path` with an `Authorization` header signed by `key` at `ts` over `signed_path`.
    async fn get(url: &str, path: &str, auth: Option<(&Keypair, i64, &str)>) -> (u16, String) {
        let authorization = auth.map(|(key, ts, signed_path)| {
            let nonce = hex::encode(rand::random::<[u8; 16]>());
            RequestAuth::sign(key, "GET", signed_path, ts, nonce, b"").to_string()
        });
        get_with(url, path, authorization.as_deref()).await
    }

    #[tokio::test]
    async fn logs_are_read_only_by_the_owner_with_a_fresh_signature_over_this_request() {
        let _clean = NoCgroupLeft;
        let dir = tempfile::tempdir().unwrap();
        let owner = Keypair::from_seed(&rand::random());
        let (url, id) = serve_one(&owner, dir.path()).await;
        let path = format!("/v1/workloads/{id}/logs");
        let now = zgrid_types::unix_now();

        let (status, body) = get(&url, &path, None).await;
        assert_eq!(status, 401, "{body}");
        let (status, body) = get(&url, &path, Some((&owner, now, "/v1/workloads/other/logs"))).await;
        assert_eq!((status, body.contains("does not verify")), (401, true), "{body}");
        for stale in [now - 400, now + 400] {
            let (status, body) = get(&url, &path, Some((&owner, stale, &path))).await;
            assert_eq!((status, body.contains("from the node's clock")), (401, true), "{body}");
        }
        let stranger = Keypair::from_seed(&rand::random());
        let (status, body) = get(&url, &path, Some((&stranger, now, &path))).await;
        assert_eq!((status, body.contains("only the owner")), (403, true), "{body}");
        // The owner passes every check; this workload simply has no container logs.
        let (status, body) = get(&url, &path, Some((&owner, now, &path))).await;
        assert_eq!((status, body.contains("has no logs")), (404, true), "{body}");
    }

    /// `GET url+path` with `authorization`, if any; the status and body.
    async fn get_with(url: &str, path: &str, authorization: Option<&str>) -> (u16, String) {
        let mut req = reqwest::Client::new().get(format!("{url}{path}"));
        if let Some(authorization) = authorization {
            req = req.header("authorization", authorization);
        }
        let resp = req.send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    #[tokio::test]
    async fn exec_is_for_the_owner_once_per_signed_request_and_only_in_containers() {
        let _clean = NoCgroupLeft;
        let dir = tempfile::tempdir().unwrap();
        let owner = Keypair::from_seed(&rand::random());
        let container: zgrid_types::workload::Container = serde_json::from_value(serde_json::json!({
            "flist": "/nowhere", "capacity": { "cpu": 1, "memory": 64, "disk_size": 256, "disk_type": "ssd" }
        }))
        .unwrap();
        let volume = WorkloadData::Volume(Volume { size: 10, disk_type: DiskType::Ssd });
        let (url, ids) = serve(&owner, dir.path(), vec![WorkloadData::Container(container), volume]).await;
        let (container, volume) = (&ids[0], &ids[1]);
        let path = format!("/v1/workloads/{container}/exec?command=sh&command=-c&command=true&stdin=false&tty=false");
        let now = zgrid_types::unix_now();

        let (status, body) = get(&url, &path, None).await;
        assert_eq!(status, 401, "{body}");
        let stranger = Keypair::from_seed(&rand::random());
        let (status, body) = get(&url, &path, Some((&stranger, now, &path))).await;
        assert_eq!((status, body.contains("only the owner")), (403, true), "{body}");
        let not_a_container = format!("/v1/workloads/{volume}/exec?command=true");
        let (status, body) = get(&url, &not_a_container, Some((&owner, now, &not_a_container))).await;
        assert_eq!((status, body.contains("not a container")), (404, true), "{body}");
        let unknown = format!("/v1/workloads/{}/exec?command=true", zgrid_client::new_workload_id());
        let (status, body) = get(&url, &unknown, Some((&owner, now, &unknown))).await;
        assert_eq!((status, body.contains("not on this node")), (404, true), "{body}");
        let long = format!("/v1/workloads/{container}/exec?{}", vec!["command=x"; 65].join("&"));
        let (status, body) = get(&url, &long, Some((&owner, now, &long))).await;
        assert_eq!((status, body.contains("at most 64")), (400, true), "{body}");
        let empty = format!("/v1/workloads/{container}/exec?stdin=true");
        let (status, body) = get(&url, &empty, Some((&owner, now, &empty))).await;
        assert_eq!((status, body.contains("name the command")), (400, true), "{body}");

        // The owner's request passes every check (this container is not running here); the
        // same request again is a replay.
        let nonce = hex::encode(rand::random::<[u8; 16]>());
        let header = RequestAuth::sign(&owner, "GET", &path, now, nonce, b"").to_string();
        let (status, body) = get_with(&url, &path, Some(&header)).await;
        assert_eq!((status, body.contains("not running")), (404, true), "{body}");
        let (status, body) = get_with(&url, &path, Some(&header)).await;
        assert_eq!((status, body.contains("used before")), (401, true), "{body}");
    }
}
