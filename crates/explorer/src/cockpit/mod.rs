//! The cockpit: read-only web pages over the explorer's own data, at `/` on the explorer's port.
//!
//! Pages are HTML rendered here ([`pages`]) with one small script and one stylesheet, both
//! compiled into the binary: nothing to build with npm, nothing fetched from a CDN, and every
//! page reads without the script. The script keeps pages live: twice a second, while the page
//! is visible, it asks `/cockpit/changes` how many changes the explorer has accepted, and when
//! that grew it loads the page's `<main>` again. Pages show only what the public API shows, and
//! never a sealed value.

mod pages;
mod query;

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use maud::Markup;
use zgrid_types::api::{NodeFilter, WorkloadFilter};
use zgrid_types::{NodeId, PublicKey, UserId};

use crate::AppState;
use crate::db::nodes::{NodeKey, NodeOrder};
use crate::db::workloads::WorkloadKey;
use crate::db::{DbError, farms, nodes, users, workloads};

/// Nodes or workloads on one page.
const PAGE_SIZE: u32 = 100;
/// Results shown per workload in its history.
const HISTORY: i64 = 10;
/// Network members drawn on a user's page.
const NETWORKED: i64 = 500;
/// Workloads listed on a node's page.
const ON_NODE: i64 = 100;

/// Who may show the pages: none but this origin may frame them, and only their own script and
/// stylesheet run.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
                      form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The cockpit's routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(overview))
        .route("/nodes/{id}", get(node))
        .route("/farms/{id}", get(farm))
        .route("/users", get(find_user))
        .route("/users/{who}", get(user))
        .route("/cockpit/changes", get(changes))
        .route("/cockpit/style.css", get(|| async { asset("text/css; charset=utf-8", pages::STYLE) }))
        .route("/cockpit/script.js", get(|| async { asset("text/javascript; charset=utf-8", pages::SCRIPT) }))
        // Browsers ask for it; there is none.
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
}

/// Middleware: after any request that changed something (not a read, and accepted), tell
/// open cockpit pages to load again.
pub async fn touch_on_change(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let changes = !matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let response = next.run(request).await;
    if changes && response.status().is_success() {
        state.feed.touch();
    }
    response
}

/// A page as sent: HTML that is not to be cached or framed.
fn page(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, markup).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

fn not_found(what: String) -> Response {
    page(StatusCode::NOT_FOUND, pages::message("Not found", &what))
}

fn bad_request(what: String) -> Response {
    page(StatusCode::BAD_REQUEST, pages::message("Cannot show that", &what))
}

/// A failure of the database, as a page (the cause goes to the log only).
fn failed(e: DbError) -> Response {
    tracing::warn!(error = %e, "a cockpit page failed");
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        pages::layout(
            "Unavailable",
            maud::html! {},
            maud::html! { p { "The explorer cannot read its database right now; try again in a moment." } },
        ),
    )
}

/// The query string as pairs, empty values left out.
fn pairs(query: Option<&str>) -> HashMap<String, String> {
    url_pairs(query.unwrap_or_default()).filter(|(_, v)| !v.is_empty()).collect()
}

fn url_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    url::form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned()))
}

/// What a page link's `after` that is not a key of the list gets.
const BAD_AFTER: &str = "That link's page key (after=) is not one this list made; follow the page links, or \
                         start again from the first page.";

/// The key in `query`'s `after`, read by `decode`: `Ok(None)` when missing, `Err` when not a key.
fn after_key<K>(query: &HashMap<String, String>, decode: impl FnOnce(&str) -> Option<K>) -> Result<Option<K>, String> {
    query.get("after").map(|text| decode(text).ok_or_else(|| BAD_AFTER.to_owned())).transpose()
}

/// The node filter in the query string, or what to change in it.
fn node_filter(query: &HashMap<String, String>) -> Result<(NodeFilter, NodeOrder), String> {
    let number = |name: &str| -> Result<Option<u64>, String> {
        query
            .get(name)
            .map(|v| {
                v.trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| i64::try_from(*n).is_ok())
                    .ok_or_else(|| format!("{name} must be a whole number from 0 to {}, not {v:?}", i64::MAX))
            })
            .transpose()
    };
    let flag = |name: &str| match query.get(name).map(String::as_str) {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(other) => Err(format!("{name} must be true or false, not {other:?}")),
    };
    let order = match query.get("sort") {
        None => NodeOrder::default(),
        Some(name) => NodeOrder::parse(name).ok_or_else(|| {
            let names: Vec<&str> = NodeOrder::ALL.iter().map(|o| o.name()).collect();
            format!("sort must be one of {}, not {name:?}", names.join(", "))
        })?,
    };
    let filter = NodeFilter {
        farm: number("farm")?,
        country: query.get("country").map(|c| c.trim().to_owned()),
        city: query.get("city").map(|c| c.trim().to_owned()),
        free_cru: number("free_cru")?,
        free_mru: number("free_mru")?,
        free_sru: number("free_sru")?,
        free_hru: number("free_hru")?,
        alive: flag("alive")?,
        public_ipv6: flag("public_ipv6")?,
        yggdrasil: flag("yggdrasil")?,
        after: None,
        size: None,
    };
    after_key(query, |k| NodeKey::decode(k, order))?;
    Ok((filter, order))
}

/// Farm names by id (every farm: a grid has few).
async fn farm_names(state: &AppState) -> Result<HashMap<u64, String>, DbError> {
    let mut names = HashMap::new();
    let mut page = 1;
    loop {
        let farms = farms::list(&state.db, page, 500).await?;
        let done = u64::from(page) * 500 >= farms.total;
        names.extend(farms.items.into_iter().map(|f| (f.id, f.name)));
        if done {
            return Ok(names);
        }
        page += 1;
    }
}

async fn overview(State(state): State<AppState>, RawQuery(raw): RawQuery) -> Response {
    let query = pairs(raw.as_deref());
    let (filter, order) = match node_filter(&query) {
        Ok(parsed) => parsed,
        Err(why) => {
            let (filter, order) = (NodeFilter::default(), NodeOrder::default());
            let body = maud::html! { p.error role="alert" { (why) } };
            return page(StatusCode::BAD_REQUEST, pages::layout("Nodes", pages::node_filter(&filter, order), body));
        }
    };
    let now = zgrid_types::unix_now();
    let alive_since = state.alive_since();
    let read = async {
        let summary = query::summary(&state.db, alive_since).await?;
        let after = after_key(&query, |k| NodeKey::decode(k, order)).unwrap_or_default();
        let list = nodes::search(&state.db, &filter, order, after.as_ref(), PAGE_SIZE, alive_since).await?;
        Ok::<_, DbError>((summary, list, farm_names(&state).await?))
    };
    match read.await {
        Ok((summary, list, farms)) => {
            let main = pages::overview(&summary, &list, &farms, now, raw.as_deref().unwrap_or_default());
            page(StatusCode::OK, pages::layout("The grid", pages::node_filter(&filter, order), main))
        }
        Err(e) => failed(e),
    }
}

async fn node(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let Ok(node_id) = id.parse::<NodeId>() else {
        return not_found(format!("{id:?} is not a node id (a node id is a base58 key, as `zgrid nodes` lists)"));
    };
    let now = zgrid_types::unix_now();
    let read = async {
        let Some(node) = nodes::by_id(&state.db, &node_id, state.alive_since()).await? else { return Ok(None) };
        let farm = farms::by_id(&state.db, node.farm_id).await?;
        let usage = nodes::usage(&state.db, &node_id, now).await?;
        let (on_node, count) = query::on_node(&state.db, &node_id, ON_NODE).await?;
        Ok::<_, DbError>(Some((node, farm, usage, on_node, count)))
    };
    match read.await {
        Ok(Some((node, farm, usage, on_node, count))) => {
            let main = pages::node_page(&node, farm.as_ref(), &usage, &on_node, count, now);
            page(StatusCode::OK, pages::layout(&format!("Node {}", node.hostname), maud::html! {}, main))
        }
        Ok(None) => not_found(format!("No node {node_id} is registered with this explorer.")),
        Err(e) => failed(e),
    }
}

async fn farm(State(state): State<AppState>, Path(id): Path<String>, RawQuery(raw): RawQuery) -> Response {
    let Some(farm_id) = id.parse::<u64>().ok().filter(|id| i64::try_from(*id).is_ok()) else {
        return not_found(format!("{id:?} is not a farm id (a number)"));
    };
    let query = pairs(raw.as_deref());
    let after = match after_key(&query, |k| NodeKey::decode(k, NodeOrder::default())) {
        Ok(after) => after,
        Err(why) => return bad_request(why),
    };
    let now = zgrid_types::unix_now();
    let read = async {
        let Some(farm) = farms::by_id(&state.db, farm_id).await? else { return Ok(None) };
        let owner = users::by_id(&state.db, farm.owner).await?;
        let filter = NodeFilter { farm: Some(farm_id), ..NodeFilter::default() };
        let order = NodeOrder::default();
        let list = nodes::search(&state.db, &filter, order, after.as_ref(), PAGE_SIZE, state.alive_since()).await?;
        Ok::<_, DbError>(Some((farm, owner, list)))
    };
    match read.await {
        Ok(Some((farm, owner, list))) => {
            let main = pages::farm_page(&farm, owner.as_ref(), &list, now, raw.as_deref().unwrap_or_default());
            page(StatusCode::OK, pages::layout(&format!("Farm {}", farm.name), maud::html! {}, main))
        }
        Ok(None) => not_found(format!("No farm {farm_id} is registered with this explorer.")),
        Err(e) => failed(e),
    }
}

/// The user `who` names: by id, public key or name.
async fn lookup(state: &AppState, who: &str) -> Result<Option<zgrid_types::directory::User>, DbError> {
    if let Some(id) = who.parse::<UserId>().ok().filter(|id| i64::try_from(*id).is_ok())
        && let Some(user) = users::by_id(&state.db, id).await?
    {
        return Ok(Some(user));
    }
    if let Ok(key) = who.parse::<PublicKey>()
        && let Some(user) = users::by_key(&state.db, &key).await?
    {
        return Ok(Some(user));
    }
    users::by_name(&state.db, who).await
}

async fn find_user(State(state): State<AppState>, RawQuery(raw): RawQuery) -> Response {
    let query = pairs(raw.as_deref());
    let Some(name) = query.get("name").map(|n| n.trim()) else {
        return bad_request("Give a user's name, id or public key (?name=).".to_owned());
    };
    match lookup(&state, name).await {
        Ok(Some(user)) => Redirect::to(&format!("/users/{}", user.id)).into_response(),
        Ok(None) => not_found(format!("No user is named {name:?} or has that id or key.")),
        Err(e) => failed(e),
    }
}

async fn user(State(state): State<AppState>, Path(who): Path<String>, RawQuery(raw): RawQuery) -> Response {
    let query = pairs(raw.as_deref());
    let wanted = query.get("state").cloned();
    if let Some(s) = wanted.as_deref().filter(|s| !["active", "deleted", "expired"].contains(s)) {
        return bad_request(format!("state must be active, deleted or expired, not {s:?}"));
    }
    let after = match after_key(&query, WorkloadKey::decode) {
        Ok(after) => after,
        Err(why) => return bad_request(why),
    };
    let now = zgrid_types::unix_now();
    let read = async {
        let Some(user) = lookup(&state, &who).await? else { return Ok(None) };
        let filter = WorkloadFilter { owner: Some(user.id), state: wanted.clone(), after: None, size: None };
        let list = workloads::list(&state.db, &filter, after.as_ref(), PAGE_SIZE).await?;
        let ids: Vec<_> = list.items.iter().map(|w| w.workload.payload.id.clone()).collect();
        let history = query::history(&state.db, &ids, HISTORY).await?;
        let networked = query::networked(&state.db, user.id, NETWORKED).await?;
        Ok::<_, DbError>(Some((user, list, history, networked)))
    };
    match read.await {
        Ok(Some((user, list, history, networked))) => {
            let main = pages::user_page(&user, &list, &history, &networked, now, raw.as_deref().unwrap_or_default());
            let fixed = pages::state_filter(&user, wanted.as_deref());
            page(StatusCode::OK, pages::layout(&format!("User {}", user.name), fixed, main))
        }
        Ok(None) => not_found(format!("No user is named {who:?} or has that id or key.")),
        Err(e) => failed(e),
    }
}

/// How many changes the explorer has accepted since it started: a page that polls it loads
/// again when it grows. Polling, not a held connection, so open pages cost no connection each
/// (browsers allow only 6 to a host over HTTP/1.1, across all tabs).
async fn changes(State(state): State<AppState>) -> Response {
    let count = *state.feed.changes().borrow();
    let mut response = count.to_string().into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_read_from_the_form_and_bad_ones_say_what_to_change() {
        let query = pairs(Some("country=BE&free_mru=2048&city=&alive=true&sort=free_mru"));
        let (filter, order) = node_filter(&query).unwrap();
        assert_eq!((filter.country.as_deref(), filter.free_mru, filter.city), (Some("BE"), Some(2048), None));
        assert_eq!((filter.alive, order), (Some(true), NodeOrder::FreeMemory));
        let bad = node_filter(&pairs(Some("free_mru=lots"))).unwrap_err();
        assert!(bad.contains("free_mru must be a whole number") && bad.contains("\"lots\""), "{bad}");
        let huge = node_filter(&pairs(Some("free_cru=99999999999999999999"))).unwrap_err();
        assert!(huge.contains("free_cru"), "{huge}");
        assert!(node_filter(&pairs(Some("sort=price"))).unwrap_err().contains("free_mru"));
        assert_eq!(node_filter(&pairs(Some("sort=country&after=2"))).unwrap_err(), BAD_AFTER);
    }
}
