//! `/v1/workloads`: the ledger. Creates, updates and deletes are signed by the owner twice: the
//! request (against replay) and the workload or delete request itself (so nodes can check it
//! without trusting the explorer). Results are signed by the workload's node.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use zgrid_types::api::{ApiError, KeyPage, WorkloadFilter, WorkloadRecord, WorkloadState};
use zgrid_types::workload::check_host_ip;
use zgrid_types::{DeleteRequest, NodeId, PublicKey, Signed, WorkloadData, WorkloadId, WorkloadResult, WorkloadSpec};

use super::errors::{Conflict, ReadErrors, Refused, SignedErrors};
use super::{after_key, fits_i64, page_size};
use crate::AppState;
use crate::auth::{Authed, OwnerSignature, off_async, refused};
use crate::db::{Taken, Tx, nodes, users, workloads};
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
/// over the spec verifies (`owner_signature_ok`, checked with the request's), every field is
/// valid and the node exists.
async fn check_signed_spec(
    state: &AppState,
    key: &PublicKey,
    signed: Signed<WorkloadSpec>,
    owner_signature_ok: bool,
) -> ApiResult<Signed<WorkloadSpec>> {
    let spec = &signed.payload;
    let owner = spec.owner;
    let owner_key = users::key_of(&state.db, owner)
        .await?
        .ok_or_else(|| unprocessable("payload.owner", format!("no user {owner}")))?;
    if owner_key != spec.owner_key {
        return Err(unprocessable("payload.owner_key", format!("is not the key of user {owner}")));
    }
    if owner_key != *key {
        return Err(ApiErr::forbidden(format!("a workload must be submitted by its owner (user {owner})")));
    }
    if !owner_signature_ok {
        return Err(unprocessable("signature", "the owner's signature does not match this workload; sign it again"));
    }
    let spec = &signed.payload;
    spec.validate(zgrid_types::unix_now()).map_err(|e| e.within("payload"))?;
    if !nodes::is_registered(&state.db, &spec.node_id).await? {
        return Err(unprocessable("payload.node_id", format!("node {} is not registered", spec.node_id)));
    }
    Ok(signed)
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
    req: Authed<Signed<WorkloadSpec>, OwnerSignature>,
) -> ApiResult<(StatusCode, Json<WorkloadRecord>)> {
    let Authed { key, body, nonce, checked } = req;
    let signed = match check_signed_spec(&state, &key, body, checked).await {
        Ok(signed) => signed,
        Err(e) => return refused(&state.db, nonce, e).await,
    };
    let node = signed.payload.node_id;
    // The checks only read; the insert is the one change.
    let record =
        state.db.transact_single(Some(nonce), move |tx| Box::pin(async move { insert(tx, &signed).await })).await?;
    state.feed.notify(node);
    Ok((StatusCode::CREATED, Json(record)))
}

/// Store a new workload, after the checks against the ledger.
async fn insert(tx: &mut Tx, signed: &Signed<WorkloadSpec>) -> ApiResult<WorkloadRecord> {
    let spec = &signed.payload;
    check_context(tx, spec).await?;
    // The id is the table's key: a workload that has it, in any state, refuses the insert.
    let taken = Taken {
        field: "payload.id",
        message: format!(
            "workload {} exists; to change it, PUT a higher version to /v1/workloads/{}",
            spec.id, spec.id
        ),
    };
    let record = workloads::insert(tx, signed, zgrid_types::unix_now(), taken);
    tx.announce(Some(&spec.node_id));
    Ok(record)
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
    req: Authed<Signed<WorkloadSpec>, OwnerSignature>,
) -> ApiResult<Json<WorkloadRecord>> {
    let Authed { key, body, nonce, checked } = req;
    let checked = match workload_id(&id) {
        Ok(id) if body.payload.id != id => {
            Err(unprocessable("payload.id", format!("the body is workload {}, the path says {id}", body.payload.id)))
        }
        Ok(_) => check_signed_spec(&state, &key, body, checked).await,
        Err(e) => Err(e),
    };
    let signed = match checked {
        Ok(signed) => signed,
        Err(e) => return refused(&state.db, nonce, e).await,
    };
    let node = signed.payload.node_id;
    let record = state.db.transact(Some(nonce), move |tx| Box::pin(async move { replace(tx, &signed).await })).await?;
    state.feed.notify(node);
    Ok(Json(record))
}

/// Replace an active workload with `signed`, after the checks against its current version.
async fn replace(tx: &mut Tx, signed: &Signed<WorkloadSpec>) -> ApiResult<WorkloadRecord> {
    let spec = &signed.payload;
    let id = &spec.id;
    let current =
        workloads::get_for_update(tx, id).await?.ok_or_else(|| ApiErr::not_found(format!("no workload {id}")))?;
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
    check_context(tx, spec).await?;
    let record = workloads::update(tx, signed, zgrid_types::unix_now()).await?;
    tx.announce(Some(&spec.node_id));
    Ok(record)
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
    let Authed { key, body, nonce, .. } = req;
    let (id, node, request) = match check_delete(&state, &id, &key, body).await {
        Ok(checked) => checked,
        Err(e) => return refused(&state.db, nonce, e).await,
    };
    let record = state
        .db
        .transact(Some(nonce), move |tx| {
            Box::pin(async move {
                let now = workloads::get_for_update(tx, &id).await?.map_or(WorkloadState::Deleted, |r| r.state);
                if now != WorkloadState::Active {
                    return Err(ApiErr::conflict(format!("workload {id} is already {}", now.as_str())));
                }
                let record = workloads::delete(tx, &request, zgrid_types::unix_now()).await?;
                tx.announce(Some(&node));
                Ok(record)
            })
        })
        .await?;
    state.feed.notify(node);
    Ok(Json(record))
}

/// Checks of a delete request: it names the workload of the path, comes from the workload's
/// owner and is signed by them in time. Returns the workload id and its node.
async fn check_delete(
    state: &AppState,
    id: &str,
    key: &PublicKey,
    request: Signed<DeleteRequest>,
) -> ApiResult<(WorkloadId, NodeId, Signed<DeleteRequest>)> {
    let id = workload_id(id)?;
    if request.payload.workload_id != id {
        return Err(unprocessable(
            "payload.workload_id",
            format!("the body deletes {}, the path says {id}", request.payload.workload_id),
        ));
    }
    let current =
        workloads::get(&state.db, &id).await?.ok_or_else(|| ApiErr::not_found(format!("no workload {id}")))?;
    let owner_id = current.workload.payload.owner;
    let owner_key =
        users::key_of(&state.db, owner_id).await?.ok_or_else(|| ApiErr::not_found(format!("no user {owner_id}")))?;
    if *key != owner_key || request.payload.owner != owner_id {
        return Err(ApiErr::forbidden(format!("only the owner (user {owner_id}) can delete workload {id}")));
    }
    let request = off_async(move || match request.verify(&owner_key) {
        Ok(()) => Ok(request),
        Err(_) => Err(ApiErr::forbidden("the delete request is not signed by the workload's owner")),
    })
    .await?;
    request
        .payload
        .check_time(zgrid_types::unix_now(), state.config.request_window_secs)
        .map_err(|e| e.within("payload"))?;
    Ok((id, current.workload.payload.node_id, request))
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
    let Authed { key, body, nonce, .. } = req;
    let checked = match workload_id(&id) {
        Ok(id) if body.payload.workload_id != id => Err(unprocessable(
            "payload.workload_id",
            format!("the body reports on {}, the path says {id}", body.payload.workload_id),
        )),
        Ok(_) => verify_results(key, vec![body]).await,
        Err(e) => Err(e),
    };
    let result = match checked {
        Ok(mut results) => results.pop().expect("one result in, one out"),
        Err(e) => return refused(&state.db, nonce, e).await,
    };
    state.db.transact(Some(nonce), move |tx| Box::pin(async move { record_result(tx, &result).await })).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Check, off the async threads, that every result comes from node `key` and is signed by it.
pub(super) async fn verify_results(
    key: PublicKey,
    results: Vec<Signed<WorkloadResult>>,
) -> ApiResult<Vec<Signed<WorkloadResult>>> {
    off_async(move || {
        for (i, result) in results.iter().enumerate() {
            let r = &result.payload;
            if r.node_id != key {
                return Err(ApiErr::forbidden(format!(
                    "result {i} (workload {}) is from node {}, not from the signer {key}",
                    r.workload_id, r.node_id
                )));
            }
            result.verify(&key).map_err(|_| {
                ApiErr::forbidden(format!("result {i} (workload {}) is not signed by node {key}", r.workload_id))
            })?;
        }
        Ok(results)
    })
    .await
}

/// Keep a verified result as its workload's latest, if the workload is its node's.
pub(super) async fn record_result(tx: &mut Tx, result: &Signed<WorkloadResult>) -> ApiResult<()> {
    let r = &result.payload;
    let id = &r.workload_id;
    let current =
        workloads::get_for_update(tx, id).await?.ok_or_else(|| ApiErr::not_found(format!("no workload {id}")))?;
    let node = current.workload.payload.node_id;
    if r.node_id != node {
        return Err(ApiErr::forbidden(format!("only node {node} reports on workload {id}")));
    }
    if r.version > current.workload.payload.version {
        return Err(unprocessable("payload.version", format!("workload {id} has no version {}", r.version)));
    }
    workloads::set_result(tx, result, zgrid_types::unix_now()).await?;
    tx.announce(None);
    Ok(())
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

/// Workloads, newest first (ties by id, descending), by owner and state. Pages are by key:
/// follow `next` in `after` until it is absent.
#[utoipa::path(get, path = "/v1/workloads", operation_id = "list_workloads", tag = "workloads",
    params(WorkloadFilter),
    responses((status = 200, description = "A page of workloads", body = KeyPage<WorkloadRecord>),
        ReadErrors))]
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(filter): ApiQuery<WorkloadFilter>,
) -> ApiResult<Json<KeyPage<WorkloadRecord>>> {
    let size = page_size(filter.size)?;
    fits_i64("owner", filter.owner)?;
    if let Some(s) = &filter.state {
        s.parse::<WorkloadState>().map_err(|m| ApiErr::field(StatusCode::BAD_REQUEST, "state", m))?;
    }
    let after = after_key(filter.after.as_deref(), workloads::WorkloadKey::decode)?;
    Ok(Json(workloads::list(&state.db, &filter, after.as_ref(), size).await?))
}
