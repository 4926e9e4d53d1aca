//! `/v1/farms`: farms created by signed users.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use zgrid_types::FarmId;
use zgrid_types::api::{ApiError, Page, Paging};
use zgrid_types::directory::{Farm, FarmRegistration};

use super::errors::{Conflict, ReadErrors, Refused, SignedErrors};
use super::paging;
use crate::AppState;
use crate::auth::{Authed, refused};
use crate::db::{farms, users};
use crate::error::{ApiErr, ApiResult};
use crate::extract::{ApiPath, ApiQuery};

/// Create a farm owned by the signing user.
#[utoipa::path(post, path = "/v1/farms", operation_id = "create_farm", tag = "farms",
    request_body = FarmRegistration,
    security(("zgrid_signature" = [])),
    responses((status = 201, description = "The new farm", body = Farm),
        SignedErrors, Refused, Conflict))]
pub async fn create(
    State(state): State<AppState>,
    req: Authed<FarmRegistration>,
) -> ApiResult<(StatusCode, Json<Farm>)> {
    let Authed { key, body: reg, nonce, .. } = req;
    let Some(owner) = users::by_key(&state.db, &key).await? else {
        let err = ApiErr::forbidden("the signing key is not a registered user; run `zgrid id register` first");
        return refused(&state.db, nonce, err).await;
    };
    let farm = state
        .db
        .transact(Some(nonce), move |tx| {
            Box::pin(async move {
                reg.validate()?;
                match farms::insert(tx, owner.id, &reg, zgrid_types::unix_now()).await {
                    Err(e) if e.is_unique_violation() => Err(ApiErr::field(
                        StatusCode::CONFLICT,
                        "name",
                        format!("a farm named {:?} exists; choose another name", reg.name),
                    )),
                    other => Ok(other?),
                }
            })
        })
        .await?;
    Ok((StatusCode::CREATED, Json(farm)))
}

/// One farm.
#[utoipa::path(get, path = "/v1/farms/{id}", operation_id = "get_farm", tag = "farms",
    params(("id" = u64, Path, description = "farm id")),
    responses((status = 200, description = "The farm", body = Farm),
        ReadErrors,
        (status = 404, description = "No such farm", body = ApiError)))]
pub async fn get(State(state): State<AppState>, ApiPath(id): ApiPath<FarmId>) -> ApiResult<Json<Farm>> {
    farms::by_id(&state.db, id).await?.map(Json).ok_or_else(|| ApiErr::not_found(format!("no farm {id}")))
}

/// All farms, a page at a time.
#[utoipa::path(get, path = "/v1/farms", operation_id = "list_farms", tag = "farms",
    params(Paging),
    responses((status = 200, description = "A page of farms", body = Page<Farm>),
        ReadErrors))]
pub async fn list(State(state): State<AppState>, ApiQuery(p): ApiQuery<Paging>) -> ApiResult<Json<Page<Farm>>> {
    let (page, size) = paging(p)?;
    Ok(Json(farms::list(&state.db, page, size).await?))
}
