//! The routes, gathered with their OpenAPI descriptions; served at `/openapi.json`. The document
//! is checked in CI: `tests/openapi.rs` validates it with `openapi-spec-validator` and fuzzes
//! every operation with schemathesis (`scripts/openapi/`).

use utoipa::openapi::schema::{AdditionalProperties, Schema};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, RefOr};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use zgrid_types::api::{ApiError, FeedEvent};

use crate::AppState;
use crate::routes::{farms, feed, nodes, users, workloads};

/// The name operations use for the request signature in their `security` (the `#[utoipa::path]`
/// attributes in `routes/` spell it out).
const SIGNATURE_SCHEME: &str = "zgrid_signature";

#[derive(OpenApi)]
#[openapi(
    info(title = "zgrid explorer", description = "Directory of users, farms and nodes; ledger of signed workloads; node feeds. \
State-changing calls and the node feed are signed: see the `zgrid_signature` security scheme."),
    tags((name = "users"), (name = "farms"), (name = "nodes"), (name = "workloads"), (name = "feed")),
    // `ApiError` is the body of the error sets of `routes/errors.rs`, whose schemas utoipa does
    // not gather as it does those of `body = ...`.
    components(schemas(ApiError, FeedEvent)),
    modifiers(&Signature)
)]
struct ApiDoc;

/// Adds the request signature as a security scheme.
struct Signature;

impl Modify for Signature {
    fn modify(&self, doc: &mut Document) {
        let description = "`Zgrid key=<base58 ed25519 public key>,ts=<unix seconds>,nonce=<16 to 64 hex>,sig=<hex>`: \
an ed25519 signature over `zgrid/request/v2` 0x00 `METHOD` \\n `path?query` \\n `ts` \\n `nonce` \\n \
`body length` \\n `hex(BLAKE3(body))` (crates/types/src/auth.rs). `ts` must be within 300 s of the \
explorer's clock and each (key, nonce) is taken once.";
        let scheme =
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description("Authorization", description)));
        doc.components.get_or_insert_with(Default::default).add_security_scheme(SIGNATURE_SCHEME, scheme);
    }
}

/// Closes the variants of enums whose serde refuses unknown fields, which utoipa leaves open:
/// a schema must not promise that the explorer takes a field it refuses with a 400.
struct ClosedVariants;

/// The enums, tagged internally with `deny_unknown_fields`.
const CLOSED_ENUMS: [&str; 1] = ["ProbeAction"];

impl Modify for ClosedVariants {
    fn modify(&self, doc: &mut Document) {
        let Some(components) = doc.components.as_mut() else { return };
        for name in CLOSED_ENUMS {
            if let Some(RefOr::T(Schema::OneOf(one_of))) = components.schemas.get_mut(name) {
                for variant in &mut one_of.items {
                    if let RefOr::T(Schema::Object(object)) = variant {
                        object.additional_properties = Some(Box::new(AdditionalProperties::FreeForm(false)));
                    }
                }
            }
        }
    }
}

/// Every route of the `/v1` API, and the document describing them.
pub fn routes() -> (axum::Router<AppState>, Document) {
    let (router, mut doc) = router().split_for_parts();
    // After the routes have added their schemas.
    ClosedVariants.modify(&mut doc);
    (router, doc)
}

/// The routes with their descriptions.
fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(users::register, users::find))
        .routes(routes!(users::get))
        .routes(routes!(farms::create, farms::list))
        .routes(routes!(farms::get))
        .routes(routes!(nodes::register, nodes::search))
        .routes(routes!(nodes::get))
        .routes(routes!(nodes::heartbeat))
        .routes(routes!(nodes::results))
        .routes(routes!(nodes::desired))
        .routes(routes!(feed::stream))
        .routes(routes!(workloads::create, workloads::list))
        .routes(routes!(workloads::get, workloads::update))
        .routes(routes!(workloads::delete))
        .routes(routes!(workloads::result))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn document() -> serde_json::Value {
        serde_json::to_value(routes().1).unwrap()
    }

    #[test]
    fn probe_actions_refuse_unknown_fields_as_serde_does() {
        let doc = document();
        let variants = doc["components"]["schemas"]["ProbeAction"]["oneOf"].as_array().unwrap();
        assert_eq!(variants.len(), 3, "{variants:?}");
        for variant in variants {
            assert_eq!(variant["additionalProperties"], false, "{variant}");
        }
    }

    /// The mistakes of the issue, checked without the Python tools of `tests/api/openapi.rs`.
    #[test]
    fn operations_have_unique_ids_described_responses_and_their_signature() {
        let doc = document();
        let scheme = &doc["components"]["securitySchemes"][SIGNATURE_SCHEME];
        assert_eq!((scheme["type"].as_str(), scheme["in"].as_str()), (Some("apiKey"), Some("header")), "{scheme}");
        let mut ids = BTreeSet::new();
        let mut signed = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let id = op["operationId"].as_str().unwrap();
                assert!(ids.insert(id.to_string()), "{method} {path}: operation id {id} is used twice");
                for (status, response) in op["responses"].as_object().unwrap() {
                    assert!(response["description"].is_string(), "{method} {path} {status} has no description");
                }
                for param in op["parameters"].as_array().into_iter().flatten() {
                    let name = param["name"].as_str().unwrap();
                    let in_path = path.contains(&format!("{{{name}}}"));
                    assert_eq!(
                        param["in"] == "path",
                        in_path,
                        "{method} {path}: parameter {name} is in the wrong place"
                    );
                }
                signed += usize::from(op["security"][0].get(SIGNATURE_SCHEME).is_some());
            }
        }
        // The creates, updates, deletes, results (one, and a node's batch), registrations,
        // heartbeats and the feed.
        assert_eq!(signed, 10);
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        assert!(schemas.contains_key("NodeCapacity") && schemas.contains_key("ContainerCapacity"));
        assert!(!schemas.contains_key("Capacity"));
    }
}
