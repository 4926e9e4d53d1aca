//! Listing queries at scale (issue 17): `GET /v1/nodes` with typical filters and
//! `GET /v1/workloads?owner=`, first page and a later one, timed over HTTP; the query plans
//! the database chooses for them; and what a `COUNT` over the same filters would cost.
//!
//! [`time_queries`] times a running explorer (`zgrid bench scale` calls it on its grid);
//! [`at_scale`] (`zgrid bench lists`) fills a database directly (10,000 nodes and 100,000
//! workloads by default, not through the API), serves it and reports all three.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::{Value, json};
use zgrid_client::ExplorerClient;
use zgrid_explorer::db::bulk::{self, Fill};
use zgrid_explorer::db::nodes::{self, NodeKey, NodeOrder};
use zgrid_explorer::db::workloads::{self, WorkloadKey};
use zgrid_types::UserId;
use zgrid_types::api::{KeyPage, NodeFilter, WorkloadFilter};

use super::{LocalExplorer, summary};

/// Items per page in the timed requests (the API's default).
const SIZE: u32 = 50;

/// The node filters timed: a country, free memory and liveness together, and none.
fn node_filters() -> [(&'static str, NodeFilter); 2] {
    let typical = NodeFilter {
        country: Some("NL".into()),
        free_mru: Some(2 * bulk::TOTAL_MRU_STEP as u64),
        alive: Some(true),
        ..NodeFilter::default()
    };
    [("nodes country=NL free_mru>=32768 alive", typical), ("nodes (all)", NodeFilter::default())]
}

/// The workload filters timed for `owner`: all theirs, their active ones; and everyone's.
fn workload_filters(owner: UserId) -> [(&'static str, WorkloadFilter); 3] {
    let theirs = WorkloadFilter { owner: Some(owner), ..WorkloadFilter::default() };
    let active = WorkloadFilter { state: Some("active".into()), ..theirs.clone() };
    [
        ("workloads owner", theirs),
        ("workloads owner state=active", active),
        ("workloads (all)", WorkloadFilter::default()),
    ]
}

/// The key after `skip` items of a listing (read in pages of 500), or `None` when it is shorter.
async fn key_after<F, Fut>(skip: usize, fetch: F) -> Result<Option<String>>
where
    F: Fn(Option<String>, u32) -> Fut,
    Fut: Future<Output = Result<KeyPage<()>>>,
{
    let (mut after, mut read) = (None, 0);
    while read < skip {
        let step = (skip - read).min(500) as u32;
        let page = fetch(after, step).await?;
        read += step as usize;
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(None),
        }
    }
    Ok(after)
}

/// `loads` timings of `call`.
async fn time<F, Fut, T, E>(loads: usize, call: F) -> Result<Value>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::error::Error + Send + Sync + 'static,
{
    let mut samples = Vec::with_capacity(loads);
    for _ in 0..loads {
        let started = Instant::now();
        call().await?;
        samples.push(started.elapsed());
    }
    Ok(summary(&mut samples))
}

/// Timings (p50, p99, max over `loads` requests each) of the listings of a running explorer:
/// nodes with a typical filter and without, workloads of `owner` (all, active) and everyone's,
/// each on its first page and on a later one (after 80% of the matches), plus reading all of
/// `owner`'s workloads page by page as `zgrid live` does. Times are of the SDK's calls:
/// request, response and decoding.
pub(super) async fn time_queries(client: &ExplorerClient, owner: UserId, loads: usize) -> Result<Value> {
    let mut rows = Vec::new();
    for (name, filter) in node_filters() {
        let matches = client.all_nodes(&filter, None).await?.len();
        let later = key_after(matches * 4 / 5, |after, size| {
            let filter = NodeFilter { after, size: Some(size), ..filter.clone() };
            async move {
                let page = client.nodes(&filter).await?;
                Ok(KeyPage { items: vec![], next: page.next })
            }
        })
        .await?;
        for (page, after) in [("first", None), ("later", later)] {
            let filter = NodeFilter { after, size: Some(SIZE), ..filter.clone() };
            let load = time(loads, || client.nodes(&filter)).await?;
            rows.push(json!({ "query": name, "page": page, "matches": matches, "load": load }));
        }
    }
    for (name, filter) in workload_filters(owner) {
        let matches = client.all_workloads_matching(&filter, None).await?.len();
        let later = key_after(matches * 4 / 5, |after, size| {
            let filter = WorkloadFilter { after, size: Some(size), ..filter.clone() };
            async move {
                let page = client.workloads(&filter).await?;
                Ok(KeyPage { items: vec![], next: page.next })
            }
        })
        .await?;
        for (page, after) in [("first", None), ("later", later)] {
            let filter = WorkloadFilter { after, size: Some(SIZE), ..filter.clone() };
            let load = time(loads, || client.workloads(&filter)).await?;
            rows.push(json!({ "query": name, "page": page, "matches": matches, "load": load }));
        }
        if filter.owner.is_some() && filter.state.is_none() {
            let all = time(loads.div_ceil(20), || client.all_workloads_matching(&filter, None)).await?;
            rows.push(json!({ "query": name, "page": "all, 500 a page", "matches": matches, "load": all }));
        }
    }
    Ok(Value::Array(rows))
}

/// The plans the database chooses for the timed listings (first page and a page after the
/// first 100 matches), as `EXPLAIN QUERY PLAN` (SQLite) or `EXPLAIN` (PostgreSQL) prints them.
async fn plans(db: &zgrid_explorer::Db, owner: UserId, alive_since: i64) -> Result<Value> {
    let mut out = Vec::new();
    for (name, filter) in node_filters() {
        let order = NodeOrder::Registered;
        let first = nodes::search(db, &filter, order, None, 100, alive_since).await?;
        let later = first.next.as_deref().and_then(|k| NodeKey::decode(k, order));
        for (page, after) in [("first", None), ("later", later.as_ref())] {
            let plan = nodes::explain_search(db, &filter, order, after, SIZE, alive_since).await?;
            out.push(json!({ "query": name, "page": page, "plan": plan }));
        }
    }
    for (name, filter) in workload_filters(owner) {
        let first = workloads::list(db, &filter, None, 100).await?;
        let later = first.next.as_deref().and_then(WorkloadKey::decode);
        for (page, after) in [("first", None), ("later", later.as_ref())] {
            let plan = workloads::explain_list(db, &filter, after, SIZE).await?;
            out.push(json!({ "query": name, "page": page, "plan": plan }));
        }
    }
    Ok(Value::Array(out))
}

/// What `COUNT(*)` over the timed filters takes (median of `loads`): the price of a `total`
/// in every page, which the listings no longer pay.
async fn counts(db: &zgrid_explorer::Db, owner: UserId, alive_since: i64, loads: usize) -> Result<Value> {
    let typical = "SELECT COUNT(*) FROM nodes WHERE LOWER(country) = LOWER('NL') AND (total_mru - used_mru) >= 32768 \
                   AND last_seen >= $1";
    let queries = [
        ("nodes country=NL free_mru>=32768 alive", typical, Some(alive_since)),
        ("workloads owner", "SELECT COUNT(*) FROM workloads WHERE owner = $1", Some(owner as i64)),
        ("workloads (all)", "SELECT COUNT(*) FROM workloads", None),
    ];
    let mut out = Vec::new();
    for (name, sql, bind) in queries {
        let mut samples: Vec<Duration> = Vec::new();
        let mut count = 0;
        for _ in 0..loads {
            let started = Instant::now();
            let query = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql));
            let query = match bind {
                Some(value) => query.bind(value),
                None => query,
            };
            count = query.fetch_one(db.pool()).await?;
            samples.push(started.elapsed());
        }
        out.push(json!({ "query": name, "count": count, "load": summary(&mut samples) }));
    }
    Ok(Value::Array(out))
}

/// Fill `database` (a new SQLite file when `None`; else an empty PostgreSQL database) as
/// `fill` says, directly, serve it, and report the listings' timings ([`time_queries`], `loads`
/// requests each), their plans and the cost of counts.
pub(super) async fn at_scale(database: Option<String>, fill: &Fill, loads: usize) -> Result<Value> {
    let dir = tempfile::tempdir()?;
    let database = database.unwrap_or_else(|| dir.path().join("lists.sqlite").display().to_string());
    let db = zgrid_explorer::Db::open(&database).await.context("open the database to fill")?;
    let started = Instant::now();
    let filled = bulk::fill(&db, fill, |what| eprintln!("filling: {what}")).await.context("fill the database")?;
    let fill_seconds = started.elapsed().as_secs_f64();
    let owner = filled.owners[0];
    let explorer = LocalExplorer::start(Some(database)).await?;
    let client = ExplorerClient::new(&explorer.url)?;
    // The explorer's default: seen within 180 s.
    let alive_since = zgrid_types::unix_now() - 180;
    let timings = time_queries(&client, owner, loads).await;
    let plans = plans(&db, owner, alive_since).await;
    let counts = counts(&db, owner, alive_since, loads).await;
    let engine = explorer.engine;
    explorer.stop().await?;
    db.pool().close().await;
    Ok(json!({
        "database": engine,
        "nodes": fill.nodes,
        "workloads": fill.workloads,
        "owner_workloads": fill.first_owner_workloads,
        "fill_seconds": super::round(fill_seconds),
        "loads": loads,
        "timings": timings?,
        "plans": plans?,
        "counts": counts?,
    }))
}
