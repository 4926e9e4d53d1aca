//! `/v1/nodes`: registration and heartbeats (signed by the node's own key) and search.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use zgrid_types::api::{ApiError, DesiredSet, NodeFilter, Page, Paging};
use zgrid_types::directory::{Farm, Node, NodeHeartbeat, NodeRegistration};
use zgrid_types::invitation::FarmInvitation;
use zgrid_types::{NodeId, PublicKey, Signed};

use super::errors::{ReadErrors, Refused, SignedErrors};
use super::{fits_i64, paging};
use crate::AppState;
use crate::auth::Authed;
use crate::db::{farms, nodes, users, workloads};
use crate::error::{ApiErr, ApiResult};
use crate::extract::{ApiPath, ApiQuery};

/// Parse a node id from the path.
pub(crate) fn node_id(text: &str) -> ApiResult<NodeId> {
    text.parse().map_err(|_| {
        ApiErr::field(StatusCode::BAD_REQUEST, "node_id", format!("{text:?} is not a node id (base58 ed25519 key)"))
    })
}

/// Register a node, or refresh its registration. Signed by the node's key. Entering a farm
/// (a new node, or one moving from another farm) takes the farm owner's signed invitation.
#[utoipa::path(post, path = "/v1/nodes", operation_id = "register_node", tag = "nodes",
    request_body = NodeRegistration,
    security(("zgrid_signature" = [])),
    responses((status = 200, description = "The node as the directory now lists it", body = Node),
        SignedErrors, Refused))]
pub async fn register(State(state): State<AppState>, req: Authed<NodeRegistration>) -> ApiResult<Json<Node>> {
    let reg = req.body;
    reg.validate()?;
    let Some(farm) = farms::by_id(&state.db, reg.farm_id).await? else {
        return Err(ApiErr::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "farm_id",
            format!("no farm {}; create it with `zgrid farm create`", reg.farm_id),
        ));
    };
    let now = zgrid_types::unix_now();
    let member = nodes::by_id(&state.db, &req.key, 0).await?.is_some_and(|n| n.farm_id == farm.id);
    let consent = if member { None } else { Some(farm_consent(&state, &farm, &req.key, &reg, now).await?) };
    nodes::upsert(&state.db, &req.key, &reg, consent, now).await?;
    let node = nodes::by_id(&state.db, &req.key, state.alive_since()).await?;
    node.map(Json).ok_or_else(|| ApiErr::new(StatusCode::INTERNAL_SERVER_ERROR, "node vanished during registration"))
}

/// The farm owner's invitation in `reg`, checked: it admits node `key` into `farm` now and is
/// signed by the key of the farm's owner.
async fn farm_consent<'a>(
    state: &AppState,
    farm: &Farm,
    key: &NodeId,
    reg: &'a NodeRegistration,
    now: i64,
) -> ApiResult<&'a Signed<FarmInvitation>> {
    let refused = |message: String| ApiErr::field(StatusCode::FORBIDDEN, "farm_invitation", message);
    let invitation = reg.farm_invitation.as_ref().ok_or_else(|| {
        refused(format!(
            "node {key} is not in farm {} ({}): joining takes its owner's consent; the owner runs \
             `zgrid farm invite --farm {} --node {key}` and the node is started with --farm-invite-file",
            farm.id, farm.name, farm.id
        ))
    })?;
    let owner = users::by_id(&state.db, farm.owner)
        .await?
        .ok_or_else(|| ApiErr::new(StatusCode::INTERNAL_SERVER_ERROR, "the farm's owner is not a user"))?;
    invitation.admits(farm.id, key, &owner.public_key, now).map_err(|e| refused(format!("the invitation {e}")))?;
    Ok(invitation)
}

/// Report capacity in use and the hypervisor VMs use; keeps the node alive in searches.
#[utoipa::path(post, path = "/v1/nodes/{id}/heartbeat", operation_id = "node_heartbeat", tag = "nodes",
    request_body = NodeHeartbeat,
    params(("id" = PublicKey, Path, description = "node id (base58 ed25519 key)")),
    security(("zgrid_signature" = [])),
    responses((status = 204, description = "Recorded"),
        SignedErrors, Refused,
        (status = 404, description = "No such registered node", body = ApiError)))]
pub async fn heartbeat(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    req: Authed<NodeHeartbeat>,
) -> ApiResult<StatusCode> {
    let id = node_id(&id)?;
    if req.key != id {
        return Err(ApiErr::forbidden("a heartbeat must be signed by the node itself"));
    }
    req.body.validate()?;
    if nodes::heartbeat(&state.db, &id, &req.body, zgrid_types::unix_now()).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiErr::not_found(format!("node {id} is not registered")))
    }
}

/// One node.
#[utoipa::path(get, path = "/v1/nodes/{id}", operation_id = "get_node", tag = "nodes",
    params(("id" = PublicKey, Path, description = "node id (base58 ed25519 key)")),
    responses((status = 200, description = "The node", body = Node),
        ReadErrors,
        (status = 404, description = "No such node", body = ApiError)))]
pub async fn get(State(state): State<AppState>, ApiPath(id): ApiPath<String>) -> ApiResult<Json<Node>> {
    let id = node_id(&id)?;
    nodes::by_id(&state.db, &id, state.alive_since())
        .await?
        .map(Json)
        .ok_or_else(|| ApiErr::not_found(format!("no node {id}")))
}

/// Find nodes by farm, location, free capacity and liveness.
#[utoipa::path(get, path = "/v1/nodes", operation_id = "search_nodes", tag = "nodes",
    params(NodeFilter),
    responses((status = 200, description = "A page of matching nodes", body = Page<Node>),
        ReadErrors))]
pub async fn search(
    State(state): State<AppState>,
    ApiQuery(filter): ApiQuery<NodeFilter>,
) -> ApiResult<Json<Page<Node>>> {
    let (page, size) = paging(Paging { page: filter.page, size: filter.size })?;
    for (field, value) in [
        ("farm", filter.farm),
        ("free_cru", filter.free_cru),
        ("free_mru", filter.free_mru),
        ("free_sru", filter.free_sru),
        ("free_hru", filter.free_hru),
    ] {
        fits_i64(field, value)?;
    }
    Ok(Json(nodes::search(&state.db, &filter, nodes::NodeOrder::Registered, (page, size), state.alive_since()).await?))
}

/// A node's whole desired set and the feed cursor to stream later changes from.
#[utoipa::path(get, path = "/v1/nodes/{id}/workloads", operation_id = "node_desired_set", tag = "feed",
    params(("id" = PublicKey, Path, description = "node id (base58 ed25519 key)")),
    responses((status = 200, description = "Every active workload of the node and the cursor to stream from", body = DesiredSet),
        ReadErrors))]
pub async fn desired(State(state): State<AppState>, ApiPath(id): ApiPath<String>) -> ApiResult<Json<DesiredSet>> {
    let id = node_id(&id)?;
    Ok(Json(workloads::desired(&state.db, &id).await?))
}
