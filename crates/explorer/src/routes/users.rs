//! `/v1/users`: registration (signed by the key being registered) and look-ups.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;
use zgrid_types::api::ApiError;
use zgrid_types::directory::{User, UserRegistration};
use zgrid_types::{PublicKey, UserId};

use crate::AppState;
use crate::auth::Authed;
use crate::db::users;
use crate::error::{ApiErr, ApiResult};
use crate::extract::{ApiPath, ApiQuery};

/// Register a user. The request must be signed by the key it registers.
#[utoipa::path(post, path = "/v1/users", tag = "users", request_body = UserRegistration,
    responses((status = 201, body = User), (status = 401, body = ApiError), (status = 409, body = ApiError),
              (status = 422, body = ApiError)))]
pub async fn register(
    State(state): State<AppState>,
    req: Authed<UserRegistration>,
) -> ApiResult<(StatusCode, Json<User>)> {
    let reg = req.body;
    if req.key != reg.public_key {
        return Err(ApiErr::forbidden("a user registration must be signed by the key it registers"));
    }
    reg.validate()?;
    match users::insert(&state.db, &reg, zgrid_types::unix_now()).await {
        Ok(user) => Ok((StatusCode::CREATED, Json(user))),
        Err(e) if e.is_unique_violation() => {
            if let Some(existing) = users::by_key(&state.db, &reg.public_key).await? {
                Err(ApiErr::conflict(format!(
                    "this key is already registered as user {} ({})",
                    existing.id, existing.name
                )))
            } else {
                Err(ApiErr::field(
                    StatusCode::CONFLICT,
                    "name",
                    format!("the name {:?} is taken; choose another", reg.name),
                ))
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// One user.
#[utoipa::path(get, path = "/v1/users/{id}", tag = "users", params(("id" = u64, Path, description = "user id")),
    responses((status = 200, body = User), (status = 404, body = ApiError)))]
pub async fn get(State(state): State<AppState>, ApiPath(id): ApiPath<UserId>) -> ApiResult<Json<User>> {
    users::by_id(&state.db, id).await?.map(Json).ok_or_else(|| ApiErr::not_found(format!("no user {id}")))
}

/// Look a user up by name or key.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct UserLookup {
    /// The user's name.
    pub name: Option<String>,
    /// The user's public key.
    pub public_key: Option<String>,
}

/// Find a user by name or public key.
#[utoipa::path(get, path = "/v1/users", tag = "users", params(UserLookup),
    responses((status = 200, body = User), (status = 400, body = ApiError), (status = 404, body = ApiError)))]
pub async fn find(State(state): State<AppState>, ApiQuery(q): ApiQuery<UserLookup>) -> ApiResult<Json<User>> {
    let user = match (q.name, q.public_key) {
        (Some(name), None) => users::by_name(&state.db, &name).await?,
        (None, Some(key)) => {
            let key: PublicKey = key.parse().map_err(|e: zgrid_types::keys::KeyError| {
                ApiErr::field(StatusCode::BAD_REQUEST, "public_key", e.to_string())
            })?;
            users::by_key(&state.db, &key).await?
        }
        _ => return Err(ApiErr::bad_request("give exactly one of ?name= or ?public_key=")),
    };
    user.map(Json).ok_or_else(|| ApiErr::not_found("no such user"))
}
