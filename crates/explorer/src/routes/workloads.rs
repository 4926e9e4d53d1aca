//! `/v1/workloads`: the ledger. Creates, updates and deletes are signed by the owner twice: the
//! request (against replay) and the workload or delete request itself (so nodes can check it
//! without trusting the explorer). Results are signed by the workload's node.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use zgrid_types::api::{ApiError, Page, WorkloadFilter, WorkloadRecord, WorkloadState};
use zgrid_types::workload::check_host_ip;
use zgrid_types::{DeleteRequest, PublicKey, Signed, WorkloadData, WorkloadId, WorkloadResult, WorkloadSpec};

use super::errors::{Conflict, ReadErrors, Refused, SignedErrors};
use super::{fits_i64, paging};
use crate::AppState;
use crate::auth::Authed;
use crate::db::{Tx, nodes, users, workloads};
use crate::error::{ApiErr, ApiResult};
use crate::extract::{ApiPath, ApiQuery};

fn unprocessable(field: &str, message: impl Into<String>) -> ApiErr {
    ApiErr::field(StatusCode::UNPROCESSABLE_ENTITY, field, message)
}

fn workload_id(text: &str) -> ApiResult<WorkloadId> {
    text.parse()
        .map_err(|e: zgrid_types::ids::BadWorkloadId| ApiErr::field(StatusCode::BAD_REQUEST, "id", e.to_string()))
}

/// Checks shared by create and update: the request comes from the owner, the owner's signature
/// over the spec verifies, every field is valid and the node exists.
async fn check_signed_spec(state: &AppState, key: &PublicKey, signed: &Signed<WorkloadSpec>) -> ApiResult<()> {
    let spec = &signed.payload;
    let owner = users::by_id(&state.db, spec.owner)
        .await?
        .ok_or_else(|| unprocessable("payload.owner", format!("no user {}", spec.owner)))?;
    if owner.public_key != spec.owner_key {
        return Err(unprocessable("payload.owner_key", format!("is not the key of user {}", owner.id)));
    }
    if owner.public_key != *key {
        return Err(ApiErr::forbidden(format!("a workload must be submitted by its owner (user {})", owner.id)));
    }
    signed
        .verify_owner()
        .map_err(|_| unprocessable("signature", "the owner's signature does not match this workload; sign it again"))?;
    spec.validate(zgrid_types::unix_now()).map_err(|e| e.within("payload"))?;
    if nodes::by_id(&state.db, &spec.node_id, 0).await?.is_none() {
        return Err(unprocessable("payload.node_id", format!("node {} is not registered", spec.node_id)));
    }
    Ok(())
}

/// Checks against the rest of the ledger: networks, addresses and volumes the workload uses
/// (a container, a VM or a Kubernetes VM joins a network; a container or a VM mounts volumes).
async fn check_context(tx: &mut Tx, spec: &WorkloadSpec) -> ApiResult<()> {
    match &spec.data {
        WorkloadData::NetworkResource(nr) => {
            let existing = workloads::network_resource(tx, spec.owner, &nr.name, &spec.node_id).await?;
            if let Some((other, _)) = existing.filter(|(other, _)| *other != spec.id) {
                return Err(ApiErr::field(
                    StatusCode::CONFLICT,
                    "payload.data.name",
                    format!("network {:?} already has resource {other} on this node; update that one instead", nr.name),
                ));
            }
            for (id, node, subnet) in workloads::network_members(tx, spec.owner, &nr.name, &spec.id).await? {
                if subnet == nr.iprange.to_string() {
                    return Err(ApiErr::field(
                        StatusCode::CONFLICT,
                        "payload.data.iprange",
                        format!("{subnet} is already used by resource {id} on node {node}; pick a free /24"),
                    ));
                }
                let member = workloads::get_for_update(tx, &workload_id(&id)?).await?;
                if let Some(WorkloadData::NetworkResource(m)) = member.map(|r| r.workload.payload.data)
                    && m.network_iprange != nr.network_iprange
                {
                    return Err(unprocessable(
                        "payload.data.network_iprange",
                        format!("network {:?} is {}, not {}", nr.name, m.network_iprange, nr.network_iprange),
                    ));
                }
            }
        }
        data => {
            if let Some((network, ip)) = data.network_attachment() {
                let at = match data {
                    WorkloadData::Container(_) => "payload.data.network_connection[0]",
                    _ => "payload.data",
                };
                check_address(tx, spec, network, ip, at).await?;
            }
            for (i, mount) in data.volume_mounts().iter().enumerate() {
                check_volume(tx, spec, &mount.volume_id, &format!("payload.data.volumes[{i}].volume_id")).await?;
            }
        }
    }
    Ok(())
}

async fn check_address(
    tx: &mut Tx,
    spec: &WorkloadSpec,
    network: &str,
    ip: std::net::Ipv4Addr,
    at: &str,
) -> ApiResult<()> {
    let (_, subnet) = workloads::network_resource(tx, spec.owner, network, &spec.node_id).await?.ok_or_else(|| {
        unprocessable(
            &format!("{at}.network_id"),
            format!("network {network:?} has no resource on node {}; add the node to the network first", spec.node_id),
        )
    })?;
    let subnet = subnet.parse().map_err(|_| ApiErr::new(StatusCode::INTERNAL_SERVER_ERROR, "corrupt subnet"))?;
    check_host_ip(ip, subnet).map_err(|m| unprocessable(&format!("{at}.ipaddress"), m))?;
    if let Some(other) = workloads::ip_user(tx, spec.owner, network, &spec.node_id, &ip.to_string(), &spec.id).await? {
        return Err(ApiErr::field(
            StatusCode::CONFLICT,
            format!("{at}.ipaddress"),
            format!("{ip} is already used by workload {other}"),
        ));
    }
    Ok(())
}

async fn check_volume(tx: &mut Tx, spec: &WorkloadSpec, id: &WorkloadId, field: &str) -> ApiResult<()> {
    let vol =
        workloads::get_for_update(tx, id).await?.ok_or_else(|| unprocessable(field, format!("no volume {id}")))?;
    let v = &vol.workload.payload;
    if v.owner != spec.owner {
        return Err(ApiErr::field(StatusCode::FORBIDDEN, field, format!("volume {id} belongs to another user")));
    }
    if !matches!(v.data, WorkloadData::Volume(_)) {
        return Err(unprocessable(field, format!("{id} is a {}, not a volume", v.data.kind())));
    }
    if v.node_id != spec.node_id {
        return Err(unprocessable(field, format!("volume {id} is on node {}, not on {}", v.node_id, spec.node_id)));
    }
    if vol.state != WorkloadState::Active {
        return Err(unprocessable(field, format!("volume {id} is {}", vol.state.as_str())));
    }
    Ok(())
}

/// Submit a new signed workload.
#[utoipa::path(post, path = "/v1/workloads", operation_id = "create_workload", tag = "workloads",
    request_body = Signed<WorkloadSpec>,
    security(("zgrid_signature" = [])),
    responses((status = 201, description = "The stored workload", body = WorkloadRecord),
        SignedErrors, Refused, Conflict))]
pub async fn create(
    State(state): State<AppState>,
    req: Authed<Signed<WorkloadSpec>>,
) -> ApiResult<(StatusCode, Json<WorkloadRecord>)> {
    let signed = req.body;
    check_signed_spec(&state, &req.key, &signed).await?;
    let spec = &signed.payload;
    let mut tx = state.db.write_ledger().await?;
    if workloads::get_for_update(&mut tx, &spec.id).await?.is_some() {
        return Err(ApiErr::field(
            StatusCode::CONFLICT,
            "payload.id",
            format!("workload {} exists; to change it, PUT a higher version to /v1/workloads/{}", spec.id, spec.id),
        ));
    }
    check_context(&mut tx, spec).await?;
    let record = match workloads::insert(&mut tx, &signed, zgrid_types::unix_now()).await {
        Err(e) if e.is_unique_violation() => {
            return Err(ApiErr::field(StatusCode::CONFLICT, "payload.id", format!("workload {} exists", spec.id)));
        }
        other => other?,
    };
    tx.commit().await?;
    state.feed.notify(spec.node_id);
    Ok((StatusCode::CREATED, Json(record)))
}

/// Replace a workload with a newer version signed by its owner.
#[utoipa::path(put, path = "/v1/workloads/{id}", operation_id = "update_workload", tag = "workloads",
    request_body = Signed<WorkloadSpec>,
    params(("id" = WorkloadId, Path, description = "workload id")),
    security(("zgrid_signature" = [])),
    responses((status = 200, description = "The stored workload", body = WorkloadRecord),
        SignedErrors, Refused, Conflict,
        (status = 404, description = "No such workload", body = ApiError)))]
pub async fn update(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    req: Authed<Signed<WorkloadSpec>>,
) -> ApiResult<Json<WorkloadRecord>> {
    let id = workload_id(&id)?;
    let signed = req.body;
    let spec = &signed.payload;
    if spec.id != id {
        return Err(unprocessable("payload.id", format!("the body is workload {}, the path says {id}", spec.id)));
    }
    check_signed_spec(&state, &req.key, &signed).await?;
    let mut tx = state.db.write_ledger().await?;
    let current =
        workloads::get_for_update(&mut tx, &id).await?.ok_or_else(|| ApiErr::not_found(format!("no workload {id}")))?;
    let old = &current.workload.payload;
    if current.state != WorkloadState::Active {
        return Err(ApiErr::conflict(format!(
            "workload {id} is {}; create a new workload instead",
            current.state.as_str()
        )));
    }
    if old.owner != spec.owner {
        return Err(ApiErr::forbidden(format!("workload {id} belongs to user {}", old.owner)));
    }
    if old.node_id != spec.node_id {
        return Err(unprocessable(
            "payload.node_id",
            "a workload cannot move to another node; create a new workload there",
        ));
    }
    if old.data.kind() != spec.data.kind() {
        return Err(unprocessable(
            "payload.data.type",
            format!("workload {id} is a {}; its type cannot change", old.data.kind()),
        ));
    }
    if spec.version <= old.version {
        return Err(ApiErr::field(
            StatusCode::CONFLICT,
            "payload.version",
            format!("version {} is not newer than the current version {}", spec.version, old.version),
        ));
    }
    check_context(&mut tx, spec).await?;
    let record = workloads::update(&mut tx, &signed, zgrid_types::unix_now()).await?;
    tx.commit().await?;
    state.feed.notify(spec.node_id);
    Ok(Json(record))
}

/// Delete a workload at its owner's signed request.
#[utoipa::path(post, path = "/v1/workloads/{id}/delete", operation_id = "delete_workload", tag = "workloads",
    request_body = Signed<DeleteRequest>,
    params(("id" = WorkloadId, Path, description = "workload id")),
    security(("zgrid_signature" = [])),
    responses((status = 200, description = "The workload, now deleted", body = WorkloadRecord),
        SignedErrors, Refused, Conflict,
        (status = 404, description = "No such workload", body = ApiError)))]
pub async fn delete(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    req: Authed<Signed<DeleteRequest>>,
) -> ApiResult<Json<WorkloadRecord>> {
    let id = workload_id(&id)?;
    let request = req.body;
    if request.payload.workload_id != id {
        return Err(unprocessable(
            "payload.workload_id",
            format!("the body deletes {}, the path says {id}", request.payload.workload_id),
        ));
    }
    let current =
        workloads::get(&state.db, &id).await?.ok_or_else(|| ApiErr::not_found(format!("no workload {id}")))?;
    let owner_id = current.workload.payload.owner;
    let owner =
        users::by_id(&state.db, owner_id).await?.ok_or_else(|| ApiErr::not_found(format!("no user {owner_id}")))?;
    if req.key != owner.public_key || request.payload.owner != owner_id {
        return Err(ApiErr::forbidden(format!("only the owner (user {owner_id}) can delete workload {id}")));
    }
    request
        .verify(&owner.public_key)
        .map_err(|_| ApiErr::forbidden("the delete request is not signed by the workload's owner"))?;
    request
        .payload
        .check_time(zgrid_types::unix_now(), state.config.request_window_secs)
        .map_err(|e| e.within("payload"))?;
    let mut tx = state.db.write_ledger().await?;
    let state_now = workloads::get_for_update(&mut tx, &id).await?.map_or(WorkloadState::Deleted, |r| r.state);
    if state_now != WorkloadState::Active {
        return Err(ApiErr::conflict(format!("workload {id} is already {}", state_now.as_str())));
    }
    let record = workloads::delete(&mut tx, &request, zgrid_types::unix_now()).await?;
    tx.commit().await?;
    state.feed.notify(current.workload.payload.node_id);
    Ok(Json(record))
}

/// Report a result, signed by the workload's node.
#[utoipa::path(post, path = "/v1/workloads/{id}/results", operation_id = "report_result", tag = "workloads",
    request_body = Signed<WorkloadResult>,
    params(("id" = WorkloadId, Path, description = "workload id")),
    security(("zgrid_signature" = [])),
    responses((status = 204, description = "Recorded"),
        SignedErrors, Refused,
        (status = 404, description = "No such workload", body = ApiError)))]
pub async fn result(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    req: Authed<Signed<WorkloadResult>>,
) -> ApiResult<StatusCode> {
    let id = workload_id(&id)?;
    let result = req.body;
    let r = &result.payload;
    if r.workload_id != id {
        return Err(unprocessable(
            "payload.workload_id",
            format!("the body reports on {}, the path says {id}", r.workload_id),
        ));
    }
    let mut tx = state.db.write().await?;
    let current =
        workloads::get_for_update(&mut tx, &id).await?.ok_or_else(|| ApiErr::not_found(format!("no workload {id}")))?;
    let node = current.workload.payload.node_id;
    if req.key != node || r.node_id != node {
        return Err(ApiErr::forbidden(format!("only node {node} reports on workload {id}")));
    }
    result.verify(&node).map_err(|_| ApiErr::forbidden("the result is not signed by the workload's node"))?;
    if r.version > current.workload.payload.version {
        return Err(unprocessable("payload.version", format!("workload {id} has no version {}", r.version)));
    }
    workloads::set_result(&mut tx, &result, zgrid_types::unix_now()).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// One workload with its state and latest result.
#[utoipa::path(get, path = "/v1/workloads/{id}", operation_id = "get_workload", tag = "workloads",
    params(("id" = WorkloadId, Path, description = "workload id")),
    responses((status = 200, description = "The workload with its state and latest result", body = WorkloadRecord),
        ReadErrors,
        (status = 404, description = "No such workload", body = ApiError)))]
pub async fn get(State(state): State<AppState>, ApiPath(id): ApiPath<String>) -> ApiResult<Json<WorkloadRecord>> {
    let id = workload_id(&id)?;
    workloads::get(&state.db, &id).await?.map(Json).ok_or_else(|| ApiErr::not_found(format!("no workload {id}")))
}

/// Workloads, newest first, by owner and state.
#[utoipa::path(get, path = "/v1/workloads", operation_id = "list_workloads", tag = "workloads",
    params(WorkloadFilter),
    responses((status = 200, description = "A page of workloads", body = Page<WorkloadRecord>),
        ReadErrors))]
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(filter): ApiQuery<WorkloadFilter>,
) -> ApiResult<Json<Page<WorkloadRecord>>> {
    let (page, size) = paging(zgrid_types::api::Paging { page: filter.page, size: filter.size })?;
    fits_i64("owner", filter.owner)?;
    if let Some(s) = &filter.state {
        s.parse::<WorkloadState>().map_err(|m| ApiErr::field(StatusCode::BAD_REQUEST, "state", m))?;
    }
    Ok(Json(workloads::list(&state.db, &filter, page, size).await?))
}
