//! `/v1/users`: registration (signed by the key being registered) and look-ups.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;
use zgrid_types::api::ApiError;
use zgrid_types::directory::{User, UserRegistration};
use zgrid_types::{PublicKey, UserId};

use super::errors::{Conflict, ReadErrors, Refused, SignedErrors};
use crate::AppState;
use crate::auth::{Authed, refused};
use crate::db::users;
use crate::error::{ApiErr, ApiResult};
use crate::extract::{ApiPath, ApiQuery};

/// Register a user. The request must be signed by the key it registers.
#[utoipa::path(post, path = "/v1/users", operation_id = "register_user", tag = "users",
    request_body = UserRegistration,
    security(("zgrid_signature" = [])),
    responses((status = 201, description = "The new user", body = User),
        SignedErrors, Refused, Conflict))]
pub async fn register(
    State(state): State<AppState>,
    req: Authed<UserRegistration>,
) -> ApiResult<(StatusCode, Json<User>)> {
    let Authed { key, body: reg, nonce, .. } = req;
    if key != reg.public_key {
        let err = ApiErr::forbidden("a user registration must be signed by the key it registers");
        return refused(&state.db, nonce, err).await;
    }
    if let Some(existing) = users::by_key(&state.db, &reg.public_key).await? {
        let taken = format!("this key is already registered as user {} ({})", existing.id, existing.name);
        return refused(&state.db, nonce, ApiErr::conflict(taken)).await;
    }
    let user = state
        .db
        .transact(Some(nonce), move |tx| {
            Box::pin(async move {
                reg.validate()?;
                match users::insert(tx, &reg, zgrid_types::unix_now()).await {
                    Err(e) if e.is_unique_violation() => Err(ApiErr::field(
                        StatusCode::CONFLICT,
                        "name",
                        format!("the name {:?} is taken; choose another", reg.name),
                    )),
                    other => Ok(other?),
                }
            })
        })
        .await?;
    Ok((StatusCode::CREATED, Json(user)))
}

/// One user.
#[utoipa::path(get, path = "/v1/users/{id}", operation_id = "get_user", tag = "users",
    params(("id" = u64, Path, description = "user id")),
    responses((status = 200, description = "The user", body = User),
        ReadErrors,
        (status = 404, description = "No such user", body = ApiError)))]
pub async fn get(State(state): State<AppState>, ApiPath(id): ApiPath<UserId>) -> ApiResult<Json<User>> {
    users::by_id(&state.db, id).await?.map(Json).ok_or_else(|| ApiErr::not_found(format!("no user {id}")))
}

/// Look a user up by name, key or both (then the user must have both).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UserLookup {
    /// The user's name.
    pub name: Option<String>,
    /// The user's public key (base58).
    #[param(value_type = Option<PublicKey>)]
    pub public_key: Option<String>,
}

/// Find a user by name, public key or both.
#[utoipa::path(get, path = "/v1/users", operation_id = "find_user", tag = "users",
    params(UserLookup),
    responses((status = 200, description = "The user", body = User),
        ReadErrors,
        (status = 404, description = "No such user", body = ApiError),
        (status = 422, description = "Neither `name` nor `public_key` was given", body = ApiError)))]
pub async fn find(State(state): State<AppState>, ApiQuery(q): ApiQuery<UserLookup>) -> ApiResult<Json<User>> {
    let key = q
        .public_key
        .map(|key| {
            key.parse::<PublicKey>().map_err(|e| ApiErr::field(StatusCode::BAD_REQUEST, "public_key", e.to_string()))
        })
        .transpose()?;
    let user = match (q.name, key) {
        (Some(name), key) => users::by_name(&state.db, &name).await?.filter(|u| key.is_none_or(|k| u.public_key == k)),
        (None, Some(key)) => users::by_key(&state.db, &key).await?,
        // Both parameters are optional in the schema, which cannot say "at least one": a
        // well-formed query refused by a rule, like the other 422s.
        (None, None) => {
            return Err(ApiErr::new(StatusCode::UNPROCESSABLE_ENTITY, "give ?name=, ?public_key= or both"));
        }
    };
    user.map(Json).ok_or_else(|| ApiErr::not_found("no such user"))
}
