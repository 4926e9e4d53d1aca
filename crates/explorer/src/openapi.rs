//! The routes, gathered with their OpenAPI descriptions; served at `/openapi.json`.

use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::routes::{farms, feed, nodes, users, workloads};

#[derive(OpenApi)]
#[openapi(
    info(title = "zgrid explorer", description = "Directory of users, farms and nodes; ledger of signed workloads; node feeds. \
State-changing calls carry `Authorization: Zgrid key=<base58>,ts=<unix>,nonce=<hex>,sig=<hex>`."),
    tags((name = "users"), (name = "farms"), (name = "nodes"), (name = "workloads"), (name = "feed"))
)]
struct ApiDoc;

/// Every route of the `/v1` API with its description.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(users::register, users::find))
        .routes(routes!(users::get))
        .routes(routes!(farms::create, farms::list))
        .routes(routes!(farms::get))
        .routes(routes!(nodes::register, nodes::search))
        .routes(routes!(nodes::get))
        .routes(routes!(nodes::heartbeat))
        .routes(routes!(nodes::desired))
        .routes(routes!(feed::stream))
        .routes(routes!(workloads::create, workloads::list))
        .routes(routes!(workloads::get, workloads::update))
        .routes(routes!(workloads::delete))
        .routes(routes!(workloads::result))
}
