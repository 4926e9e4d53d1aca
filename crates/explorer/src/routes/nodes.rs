//! `/v1/nodes`: registration and heartbeats (signed by the node's own key) and search.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use zgrid_types::NodeId;
use zgrid_types::api::{ApiError, DesiredSet, NodeFilter, Page, Paging};
use zgrid_types::directory::{Node, NodeHeartbeat, NodeRegistration};

use super::paging;
use crate::AppState;
use crate::auth::Authed;
use crate::db::{farms, nodes, workloads};
use crate::error::{ApiErr, ApiResult};
use crate::extract::{ApiPath, ApiQuery};

/// Parse a node id from the path.
pub(crate) fn node_id(text: &str) -> ApiResult<NodeId> {
    text.parse().map_err(|_| {
        ApiErr::field(StatusCode::BAD_REQUEST, "node_id", format!("{text:?} is not a node id (base58 ed25519 key)"))
    })
}

/// Register a node, or refresh its registration. Signed by the node's key.
#[utoipa::path(post, path = "/v1/nodes", tag = "nodes", request_body = NodeRegistration,
    responses((status = 200, body = Node), (status = 401, body = ApiError), (status = 422, body = ApiError)))]
pub async fn register(State(state): State<AppState>, req: Authed<NodeRegistration>) -> ApiResult<Json<Node>> {
    let reg = req.body;
    reg.validate()?;
    if farms::by_id(&state.db, reg.farm_id).await?.is_none() {
        return Err(ApiErr::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "farm_id",
            format!("no farm {}; create it with `zgrid farm create`", reg.farm_id),
        ));
    }
    let now = zgrid_types::unix_now();
    nodes::upsert(&state.db, &req.key, &reg, now).await?;
    let node = nodes::by_id(&state.db, &req.key, state.alive_since()).await?;
    node.map(Json).ok_or_else(|| ApiErr::new(StatusCode::INTERNAL_SERVER_ERROR, "node vanished during registration"))
}

/// Report capacity in use; keeps the node alive in searches.
#[utoipa::path(post, path = "/v1/nodes/{id}/heartbeat", tag = "nodes", request_body = NodeHeartbeat,
    params(("id" = String, Path, description = "node id")),
    responses((status = 204), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError)))]
pub async fn heartbeat(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    req: Authed<NodeHeartbeat>,
) -> ApiResult<StatusCode> {
    let id = node_id(&id)?;
    if req.key != id {
        return Err(ApiErr::forbidden("a heartbeat must be signed by the node itself"));
    }
    if nodes::heartbeat(&state.db, &id, &req.body.used, zgrid_types::unix_now()).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiErr::not_found(format!("node {id} is not registered")))
    }
}

/// One node.
#[utoipa::path(get, path = "/v1/nodes/{id}", tag = "nodes", params(("id" = String, Path, description = "node id")),
    responses((status = 200, body = Node), (status = 404, body = ApiError)))]
pub async fn get(State(state): State<AppState>, ApiPath(id): ApiPath<String>) -> ApiResult<Json<Node>> {
    let id = node_id(&id)?;
    nodes::by_id(&state.db, &id, state.alive_since())
        .await?
        .map(Json)
        .ok_or_else(|| ApiErr::not_found(format!("no node {id}")))
}

/// Find nodes by farm, location, free capacity and liveness.
#[utoipa::path(get, path = "/v1/nodes", tag = "nodes", params(NodeFilter),
    responses((status = 200, body = Page<Node>), (status = 400, body = ApiError)))]
pub async fn search(
    State(state): State<AppState>,
    ApiQuery(filter): ApiQuery<NodeFilter>,
) -> ApiResult<Json<Page<Node>>> {
    let (page, size) = paging(Paging { page: filter.page, size: filter.size })?;
    Ok(Json(nodes::search(&state.db, &filter, page, size, state.alive_since()).await?))
}

/// A node's whole desired set and the feed cursor to stream later changes from.
#[utoipa::path(get, path = "/v1/nodes/{id}/workloads", tag = "feed", params(("id" = String, Path, description = "node id")),
    responses((status = 200, body = DesiredSet), (status = 404, body = ApiError)))]
pub async fn desired(State(state): State<AppState>, ApiPath(id): ApiPath<String>) -> ApiResult<Json<DesiredSet>> {
    let id = node_id(&id)?;
    Ok(Json(workloads::desired(&state.db, &id).await?))
}
