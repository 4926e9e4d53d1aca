//! `/v1/nodes`: registration and heartbeats (signed by the node's own key) and search.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use zgrid_types::api::{ApiError, DesiredSet, KeyPage, MAX_RESULTS, NodeFilter, RefusedResult, ResultsReceipt};
use zgrid_types::directory::{Farm, Node, NodeHeartbeat, NodeRegistration};
use zgrid_types::invitation::FarmInvitation;
use zgrid_types::{NodeId, PublicKey, Signed, WorkloadResult};

use super::errors::{ReadErrors, Refused, SignedErrors};
use super::workloads as workloads_routes;
use super::{after_key, fits_i64, page_size};
use crate::AppState;
use crate::auth::{Authed, refused};
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
    let Authed { key, body: reg, nonce, .. } = req;
    let now = zgrid_types::unix_now();
    let admitted = match admit(&state, &key, &reg, now).await {
        Ok(admitted) => admitted,
        Err(e) => return refused(&state.db, nonce, e).await,
    };
    state
        .db
        .transact(Some(nonce), move |tx| {
            Box::pin(async move {
                let consent = if admitted { reg.farm_invitation.as_ref() } else { None };
                nodes::upsert(tx, &key, &reg, consent, now).await?;
                tx.announce(None);
                Ok::<_, ApiErr>(())
            })
        })
        .await?;
    let node = nodes::by_id(&state.db, &key, state.alive_since()).await?;
    node.map(Json).ok_or_else(|| ApiErr::new(StatusCode::INTERNAL_SERVER_ERROR, "node vanished during registration"))
}

/// Check a registration: valid, for a farm that exists, from a node already in that farm or
/// with an invitation that admits it. Returns whether the invitation was needed (and is kept).
async fn admit(state: &AppState, key: &NodeId, reg: &NodeRegistration, now: i64) -> ApiResult<bool> {
    reg.validate()?;
    let Some(farm) = farms::by_id(&state.db, reg.farm_id).await? else {
        return Err(ApiErr::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "farm_id",
            format!("no farm {}; create it with `zgrid farm create`", reg.farm_id),
        ));
    };
    if nodes::by_id(&state.db, key, 0).await?.is_some_and(|n| n.farm_id == farm.id) {
        return Ok(false);
    }
    farm_consent(state, &farm, key, reg, now).await?;
    Ok(true)
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
    let Authed { key, body: beat, nonce, .. } = req;
    state
        .db
        .transact(Some(nonce), move |tx| {
            Box::pin(async move {
                let id = node_id(&id)?;
                if key != id {
                    return Err(ApiErr::forbidden("a heartbeat must be signed by the node itself"));
                }
                beat.validate()?;
                if !nodes::heartbeat(tx, &id, &beat, zgrid_types::unix_now()).await? {
                    return Err(ApiErr::not_found(format!("node {id} is not registered")));
                }
                tx.announce(None);
                Ok(())
            })
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Report several results at once, all signed by the node (the agent sends what it has
/// waiting). Each is kept or refused on its own; the receipt lists the refused ones.
#[utoipa::path(post, path = "/v1/nodes/{id}/results", operation_id = "report_results", tag = "workloads",
    request_body = [Signed<WorkloadResult>],
    params(("id" = PublicKey, Path, description = "node id (base58 ed25519 key)")),
    security(("zgrid_signature" = [])),
    responses((status = 200, description = "Which results were kept and which refused, and why", body = ResultsReceipt),
        SignedErrors, Refused))]
pub async fn results(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    req: Authed<Vec<Signed<WorkloadResult>>>,
) -> ApiResult<Json<ResultsReceipt>> {
    let Authed { key, body, nonce, .. } = req;
    let checked = match node_id(&id) {
        Ok(id) if id != key => Err(ApiErr::forbidden("a node's results are sent by that node")),
        Ok(_) if body.len() > MAX_RESULTS => Err(ApiErr::field(
            StatusCode::PAYLOAD_TOO_LARGE,
            "",
            format!("{} results in one request; send at most {MAX_RESULTS}", body.len()),
        )),
        Ok(_) => workloads_routes::verify_results(key, body).await,
        Err(e) => Err(e),
    };
    let results = match checked {
        Ok(results) => results,
        Err(e) => return refused(&state.db, nonce, e).await,
    };
    let receipt = state
        .db
        .transact(Some(nonce), move |tx| {
            Box::pin(async move {
                let mut receipt = ResultsReceipt::default();
                for result in &results {
                    // A refusal changes nothing (every check comes before the write).
                    match workloads_routes::record_result(tx, result).await {
                        Ok(()) => receipt.accepted += 1,
                        Err(e) if e.is_client_error() => receipt.refused.push(RefusedResult {
                            workload_id: result.payload.workload_id.clone(),
                            error: e.message().to_string(),
                        }),
                        Err(e) => return Err(e),
                    }
                }
                Ok(receipt)
            })
        })
        .await?;
    Ok(Json(receipt))
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

/// Find nodes by farm, location, free capacity and liveness, oldest registration first (ties
/// by node id). Pages are by key: follow `next` in `after` until it is absent.
#[utoipa::path(get, path = "/v1/nodes", operation_id = "search_nodes", tag = "nodes",
    params(NodeFilter),
    responses((status = 200, description = "A page of matching nodes", body = KeyPage<Node>),
        ReadErrors))]
pub async fn search(
    State(state): State<AppState>,
    ApiQuery(filter): ApiQuery<NodeFilter>,
) -> ApiResult<Json<KeyPage<Node>>> {
    let size = page_size(filter.size)?;
    for (field, value) in [
        ("farm", filter.farm),
        ("free_cru", filter.free_cru),
        ("free_mru", filter.free_mru),
        ("free_sru", filter.free_sru),
        ("free_hru", filter.free_hru),
    ] {
        fits_i64(field, value)?;
    }
    let order = nodes::NodeOrder::Registered;
    let after = after_key(filter.after.as_deref(), |k| nodes::NodeKey::decode(k, order))?;
    Ok(Json(nodes::search(&state.db, &filter, order, after.as_ref(), size, state.alive_since()).await?))
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
