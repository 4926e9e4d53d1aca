//! The hub's HTTP API.
//!
//! Public, read-only:
//! - `GET /chunks/{id}`: a chunk's stored bytes, immutable (cache forever);
//! - `GET /objects/{hash}`: an flist by its address, immutable;
//! - `GET /flists/{owner}/{name}`: the flist a name points at now (revalidate; its address is
//!   in `X-Zgrid-Flist-Hash` and the `ETag`);
//! - `GET /api/v1/flists`, `/api/v1/flists/{owner}`, `/api/v1/flists/{owner}/{name}`: listings;
//! - `POST /api/v1/chunks/missing`: which of some chunks the hub lacks;
//! - `GET /api/v1/stats`, `GET /health`.
//!
//! `HEAD` of a chunk or flist answers its length without reading it, and is not counted as
//! served.
//!
//! Signed (`Authorization: Zgrid ...` over the body's declared length and hash, checked before
//! the body is read; see `auth`); `{owner}` must be the signer:
//! - `PUT /api/v1/chunks/{id}`: store a chunk (its bytes must hash to `id`; any signer);
//! - `PUT /api/v1/flists/{owner}/{name}`: store an flist whose chunks are all on the hub;
//! - `POST /api/v1/flists/{owner}/{name}/import`: turn a tar(.gz), OCI image layout (tar) or
//!   `docker save` archive into an flist;
//! - `POST /api/v1/flists/{owner}/{name}/merge`: one flist of several;
//! - `DELETE /api/v1/flists/{owner}/{name}`.

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use zgrid_flist::PackSummary;
use zgrid_types::PublicKey;
use zgrid_types::hub::{FlistInfo, HubStats, MAX_MISSING_QUERY, MergeRequest, MissingQuery, Stored, is_hash};

use crate::auth::Upload;
use crate::error::Refusal;
use crate::store::StoreError;
use crate::{Hub, Inner};

/// Chunks and flists by hash never change.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Largest merge request (a list of names).
const MAX_MERGE_BYTES: u64 = 1 << 20;

/// The hub's routes.
pub fn app(hub: Hub) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/chunks/{id}", get(chunk))
        .route("/objects/{file}", get(object))
        .route("/flists/{owner}/{name}", get(named_flist))
        .route("/api/v1/stats", get(stats))
        .route("/api/v1/chunks/missing", post(missing))
        .route("/api/v1/chunks/{id}", put(put_chunk))
        .route("/api/v1/flists", get(repositories))
        .route("/api/v1/flists/{owner}", get(list))
        .route("/api/v1/flists/{owner}/{name}", get(info).put(put_flist).delete(delete_flist))
        .route("/api/v1/flists/{owner}/{name}/import", post(import))
        .route("/api/v1/flists/{owner}/{name}/merge", post(merge))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(hub)
}

type Answer<T> = Result<T, Refusal>;

fn owner_key(owner: &str) -> Answer<PublicKey> {
    owner.parse().map_err(|_| Refusal::not_found(format!("{owner:?} is not a namespace: namespaces are public keys")))
}

fn flist_name(name: &str) -> Answer<()> {
    zgrid_types::hub::check_flist_name(name).map_err(Refusal::bad_request)
}

fn hash_param(id: &str) -> Answer<zgrid_flist::chunk::Hash> {
    let bytes = hex::decode(id).ok().filter(|_| is_hash(id));
    bytes
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| Refusal::bad_request(format!("{id:?} is not a 64-digit lowercase hex hash")))
}

/// Run blocking storage work off the async workers.
async fn blocking<T: Send + 'static>(hub: &Hub, work: impl FnOnce(&Inner) -> Answer<T> + Send + 'static) -> Answer<T> {
    let hub = hub.clone();
    tokio::task::spawn_blocking(move || work(&hub.inner))
        .await
        .map_err(|e| Refusal::internal("a storage task failed", e))?
}

/// What a read-only request gets of a stored file: its bytes (`GET`), or only its length
/// (`HEAD`: nothing is read, and nothing counts as served).
enum Content {
    Bytes(Vec<u8>),
    Length(u64),
}

impl Content {
    async fn of(path: PathBuf, method: &Method) -> std::io::Result<Self> {
        if method == Method::HEAD {
            Ok(Self::Length(tokio::fs::metadata(&path).await?.len()))
        } else {
            tokio::fs::read(&path).await.map(Self::Bytes)
        }
    }

    /// The bytes sent, when it counts as served.
    fn served(&self) -> Option<u64> {
        match self {
            Self::Bytes(bytes) => Some(bytes.len() as u64),
            Self::Length(_) => None,
        }
    }
}

fn bytes_response(content: Content, cache: &'static str, extra: HeaderMap) -> Response {
    let mut resp = match content {
        Content::Bytes(bytes) => (StatusCode::OK, extra, bytes).into_response(),
        Content::Length(length) => {
            let mut resp = (StatusCode::OK, extra).into_response();
            resp.headers_mut().insert(header::CONTENT_LENGTH, length.into());
            resp
        }
    };
    let headers = resp.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    resp
}

async fn chunk(State(hub): State<Hub>, method: Method, Path(id): Path<String>) -> Answer<Response> {
    let hash = hash_param(&id)?;
    let content = match Content::of(hub.inner.repos.chunks().path(&hash), &method).await {
        Ok(content) => content,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Refusal::not_found(format!("no chunk {id} on this hub")));
        }
        Err(e) => return Err(Refusal::internal("cannot read a chunk", e)),
    };
    if let Some(bytes) = content.served() {
        let stats = &hub.inner.stats;
        stats.chunks_served.fetch_add(1, Ordering::Relaxed);
        stats.chunk_bytes_served.fetch_add(bytes, Ordering::Relaxed);
    }
    let mut extra = HeaderMap::new();
    extra.insert(header::ETAG, HeaderValue::from_str(&format!("\"{id}\"")).expect("hex is a header value"));
    Ok(bytes_response(content, IMMUTABLE, extra))
}

/// Flist `hash`; a request that already has it (`If-None-Match` with its ETag) gets `304`.
async fn serve_flist(
    hub: &Hub,
    hash: &str,
    cache: &'static str,
    method: &Method,
    request: &HeaderMap,
) -> Answer<Response> {
    let etag = format!("\"{hash}\"");
    let has_it = request.get_all(header::IF_NONE_MATCH).iter().filter_map(|v| v.to_str().ok()).any(|v| {
        v.split(',').any(|tag| {
            let tag = tag.trim();
            tag == "*" || tag.trim_start_matches("W/") == etag
        })
    });
    if has_it {
        let mut resp = StatusCode::NOT_MODIFIED.into_response();
        resp.headers_mut().insert(header::ETAG, HeaderValue::from_str(&etag).expect("hex is a header value"));
        resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
        return Ok(resp);
    }
    let content = Content::of(hub.inner.repos.object(hash), method)
        .await
        .map_err(|e| Refusal::internal("cannot read a stored flist", e))?;
    if content.served().is_some() {
        hub.inner.stats.flists_served.fetch_add(1, Ordering::Relaxed);
    }
    let mut extra = HeaderMap::new();
    let value = HeaderValue::from_str(hash).expect("hex is a header value");
    extra.insert("x-zgrid-flist-hash", value);
    extra.insert(header::ETAG, HeaderValue::from_str(&etag).expect("hex is a header value"));
    Ok(bytes_response(content, cache, extra))
}

async fn object(
    State(hub): State<Hub>,
    method: Method,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Answer<Response> {
    let hash = file.strip_suffix(".flist").unwrap_or(&file);
    hash_param(hash)?;
    if !hub.inner.repos.object(hash).exists() {
        return Err(Refusal::not_found(format!("no flist {hash} on this hub")));
    }
    serve_flist(&hub, hash, IMMUTABLE, &method, &headers).await
}

async fn named_flist(
    State(hub): State<Hub>,
    method: Method,
    Path((owner, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Answer<Response> {
    let info = lookup(&hub, owner, name).await?;
    serve_flist(&hub, &info.hash, "no-cache", &method, &headers).await
}

async fn lookup(hub: &Hub, owner: String, name: String) -> Answer<FlistInfo> {
    owner_key(&owner)?;
    flist_name(&name)?;
    blocking(hub, move |inner| {
        inner.repos.get(&owner, &name).map_err(|e| Refusal::internal("cannot read a name", e))?.ok_or_else(|| {
            Refusal::not_found(format!("no flist {name} in namespace {owner}; `zgrid hub ls {owner}` lists them"))
        })
    })
    .await
}

async fn info(State(hub): State<Hub>, Path((owner, name)): Path<(String, String)>) -> Answer<Json<FlistInfo>> {
    lookup(&hub, owner, name).await.map(Json)
}

async fn stats(State(hub): State<Hub>) -> Json<HubStats> {
    let s = &hub.inner.stats;
    Json(HubStats {
        chunks_served: s.chunks_served.load(Ordering::Relaxed),
        chunk_bytes_served: s.chunk_bytes_served.load(Ordering::Relaxed),
        flists_served: s.flists_served.load(Ordering::Relaxed),
        chunks_received: s.chunks_received.load(Ordering::Relaxed),
    })
}

async fn missing(State(hub): State<Hub>, Json(query): Json<MissingQuery>) -> Answer<Json<MissingQuery>> {
    if query.chunks.len() > MAX_MISSING_QUERY {
        return Err(Refusal::bad_request(format!("ask about at most {MAX_MISSING_QUERY} chunks at a time")));
    }
    let ids = query.chunks.iter().map(|id| hash_param(id)).collect::<Answer<Vec<_>>>()?;
    blocking(&hub, move |inner| {
        let chunks = ids.iter().filter(|id| !inner.repos.chunks().has(id)).map(hex::encode).collect();
        Ok(Json(MissingQuery { chunks }))
    })
    .await
}

async fn put_chunk(State(hub): State<Hub>, Path(id): Path<String>, req: Request) -> Answer<StatusCode> {
    let hash = hash_param(&id)?;
    let (parts, body) = req.into_parts();
    let upload = Upload::admit(&hub.inner, &parts, &body, hub.inner.config.max_chunk_bytes as u64, None)?;
    if upload.hash().as_bytes() != &hash {
        return Err(Refusal::bad_request(format!(
            "the body does not hash to {id}: a chunk is named by the BLAKE3 hash of its stored bytes"
        )));
    }
    let file = spool(&hub, &upload, body).await?;
    let new = blocking(&hub, move |inner| {
        let _upload = upload;
        inner.repos.chunks().put_file(&hash, file).map_err(|e| Refusal::internal("cannot store a chunk", e))
    })
    .await?;
    if new {
        hub.inner.stats.chunks_received.fetch_add(1, Ordering::Relaxed);
        Ok(StatusCode::CREATED)
    } else {
        Ok(StatusCode::OK)
    }
}

/// Receive an admitted upload's body into a new spool file (removed when dropped).
async fn spool(hub: &Hub, upload: &Upload, body: Body) -> Answer<tempfile::NamedTempFile> {
    let mut file = tempfile::NamedTempFile::new_in(hub.inner.repos.spool())
        .map_err(|e| Refusal::internal("cannot create a spool file", e))?;
    upload.receive(body, &mut file).await?;
    Ok(file)
}

/// Admit an upload of at most `limit` bytes signed by `owner` and receive it to a spool file.
async fn spooled(hub: &Hub, owner: &str, req: Request, limit: u64) -> Answer<(Upload, tempfile::NamedTempFile)> {
    let (parts, body) = req.into_parts();
    let upload = Upload::admit(&hub.inner, &parts, &body, limit, Some(owner))?;
    let file = spool(hub, &upload, body).await?;
    Ok((upload, file))
}

fn stored(inner: &Inner, owner: &str, name: &str, file: &std::path::Path, summary: PackSummary) -> Answer<Stored> {
    let flist = inner.repos.put_flist(owner, name, file).map_err(|e| match e {
        StoreError::Io(e) => Refusal::internal("cannot store an flist", e),
        e @ StoreError::NotAnFlist(_) => Refusal::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
        e @ StoreError::MissingChunks { .. } => Refusal::new(StatusCode::CONFLICT, e.to_string()),
    })?;
    tracing::info!(owner, name, hash = %flist.hash, new_chunks = summary.new_chunks, "flist stored");
    Ok(Stored { flist, new_chunks: summary.new_chunks, new_bytes: summary.new_bytes })
}

async fn put_flist(
    State(hub): State<Hub>,
    Path((owner, name)): Path<(String, String)>,
    req: Request,
) -> Answer<Json<Stored>> {
    flist_name(&name)?;
    let (upload, file) = spooled(&hub, &owner, req, hub.inner.config.max_flist_bytes).await?;
    blocking(&hub, move |inner| {
        let _upload = upload;
        stored(inner, &owner, &name, file.path(), PackSummary::default()).map(Json)
    })
    .await
}

async fn import(
    State(hub): State<Hub>,
    Path((owner, name)): Path<(String, String)>,
    req: Request,
) -> Answer<Json<Stored>> {
    flist_name(&name)?;
    let (upload, archive) = spooled(&hub, &owner, req, hub.inner.config.max_import_bytes).await?;
    blocking(&hub, move |inner| {
        let _upload = upload;
        let out = tempfile::NamedTempFile::new_in(inner.repos.spool())
            .map_err(|e| Refusal::internal("cannot create a spool file", e))?;
        let summary = zgrid_flist::import(archive.path(), inner.repos.chunks(), out.path())
            .map_err(|e| Refusal::new(StatusCode::UNPROCESSABLE_ENTITY, format!("cannot import the archive: {e}")))?;
        stored(inner, &owner, &name, out.path(), summary).map(Json)
    })
    .await
}

async fn merge(
    State(hub): State<Hub>,
    Path((owner, name)): Path<(String, String)>,
    req: Request,
) -> Answer<Json<Stored>> {
    flist_name(&name)?;
    let (parts, body) = req.into_parts();
    let upload = Upload::admit(&hub.inner, &parts, &body, MAX_MERGE_BYTES, Some(&owner))?;
    let mut bytes = Vec::new();
    upload.receive(body, &mut bytes).await?;
    let request: MergeRequest = serde_json::from_slice(&bytes)
        .map_err(|e| Refusal::bad_request(format!("expected {{\"sources\": [\"<owner>/<name>\", ...]}}: {e}")))?;
    if request.sources.len() < 2 {
        return Err(Refusal::bad_request("merge needs at least two sources"));
    }
    let mut sources: Vec<PathBuf> = Vec::new();
    for source in &request.sources {
        let (owner, source_name) = source
            .split_once('/')
            .ok_or_else(|| Refusal::bad_request(format!("source {source:?}: write it as <owner>/<name>")))?;
        let info = lookup(&hub, owner.to_owned(), source_name.to_owned()).await?;
        sources.push(hub.inner.repos.object(&info.hash));
    }
    blocking(&hub, move |inner| {
        let _upload = upload;
        let out = tempfile::NamedTempFile::new_in(inner.repos.spool())
            .map_err(|e| Refusal::internal("cannot create a spool file", e))?;
        zgrid_flist::merge(&sources, out.path())
            .map_err(|e| Refusal::new(StatusCode::UNPROCESSABLE_ENTITY, format!("cannot merge: {e}")))?;
        stored(inner, &owner, &name, out.path(), PackSummary::default()).map(Json)
    })
    .await
}

async fn delete_flist(
    State(hub): State<Hub>,
    Path((owner, name)): Path<(String, String)>,
    req: Request,
) -> Answer<StatusCode> {
    flist_name(&name)?;
    let (parts, body) = req.into_parts();
    let upload = Upload::admit(&hub.inner, &parts, &body, 0, Some(&owner))?;
    upload.receive(body, &mut std::io::sink()).await?;
    blocking(&hub, move |inner| match inner.repos.remove(&owner, &name) {
        Ok(true) => Ok(StatusCode::NO_CONTENT),
        Ok(false) => Err(Refusal::not_found(format!("no flist {name} in your namespace"))),
        Err(e) => Err(Refusal::internal("cannot remove a name", e)),
    })
    .await
}

async fn repositories(State(hub): State<Hub>) -> Answer<Json<Vec<zgrid_types::hub::Repository>>> {
    blocking(&hub, |inner| inner.repos.repositories().map(Json).map_err(|e| Refusal::internal("cannot list", e))).await
}

async fn list(State(hub): State<Hub>, Path(owner): Path<String>) -> Answer<Json<Vec<FlistInfo>>> {
    owner_key(&owner)?;
    blocking(&hub, move |inner| inner.repos.list(&owner).map(Json).map_err(|e| Refusal::internal("cannot list", e)))
        .await
}
