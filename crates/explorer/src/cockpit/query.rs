//! What the cockpit reads that the API's own queries do not give: totals for the grid at a
//! glance, a node's workloads, recent results per workload and an owner's network members.

use std::collections::HashMap;

use sqlx::Row;
use zgrid_types::api::WorkloadRecord;
use zgrid_types::directory::Capacity;
use zgrid_types::result::WorkloadResult;
use zgrid_types::{NodeId, Signed, UserId, WorkloadId};

use crate::db::{Db, DbResult, from_json, workloads};

/// The grid at a glance.
#[derive(Debug, Default)]
pub struct Summary {
    /// Farms registered.
    pub farms: i64,
    /// Nodes registered.
    pub nodes: i64,
    /// Nodes alive.
    pub alive: i64,
    /// Capacity of the alive nodes.
    pub total: Capacity,
    /// Capacity in use on the alive nodes.
    pub used: Capacity,
    /// Workloads by kind and state: (kind, state, count), sorted.
    pub workloads: Vec<(String, String, i64)>,
}

/// Totals over the whole directory and ledger.
pub async fn summary(db: &Db, alive_since: i64) -> DbResult<Summary> {
    let farms: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM farms").fetch_one(db.pool()).await?;
    let nodes: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM nodes").fetch_one(db.pool()).await?;
    // SUM is NUMERIC on PostgreSQL, which sqlx's Any driver cannot read: cast it back.
    let sums: Vec<String> = ["total", "used"]
        .iter()
        .flat_map(|p| {
            ["cru", "mru", "sru", "hru"].map(|u| format!("CAST(COALESCE(SUM({p}_{u}), 0) AS BIGINT) AS {p}_{u}"))
        })
        .collect();
    let sql = format!("SELECT COUNT(*) AS alive, {} FROM nodes WHERE last_seen >= $1", sums.join(", "));
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(alive_since).fetch_one(db.pool()).await?;
    let sum = |prefix: &str| -> DbResult<Capacity> {
        let get = |unit: &str| -> DbResult<u64> {
            Ok(row.try_get::<i64, _>(format!("{prefix}_{unit}").as_str())?.max(0) as u64)
        };
        Ok(Capacity { cru: get("cru")?, mru: get("mru")?, sru: get("sru")?, hru: get("hru")? })
    };
    let (total, used) = (sum("total")?, sum("used")?);
    let counts =
        sqlx::query("SELECT kind, state, COUNT(*) AS n FROM workloads GROUP BY kind, state ORDER BY kind, state")
            .fetch_all(db.pool())
            .await?;
    let workloads = counts
        .iter()
        .map(|r| Ok((r.try_get("kind")?, r.try_get("state")?, r.try_get("n")?)))
        .collect::<DbResult<_>>()?;
    Ok(Summary { farms, nodes, alive: row.try_get("alive")?, total, used, workloads })
}

/// Active workloads on `node`, newest first, at most `limit`, with how many there are.
pub async fn on_node(db: &Db, node: &NodeId, limit: i64) -> DbResult<(Vec<WorkloadRecord>, i64)> {
    let id = node.to_string();
    let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM workloads WHERE node_id = $1 AND state = 'active'")
        .bind(&id)
        .fetch_one(db.pool())
        .await?;
    let rows = sqlx::query(
        "SELECT * FROM workloads WHERE node_id = $1 AND state = 'active' ORDER BY created_at DESC, id LIMIT $2",
    )
    .bind(&id)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    Ok((rows.iter().map(workloads::record).collect::<DbResult<_>>()?, total))
}

/// The latest `per` results of each workload in `ids`, newest first, with when each arrived.
pub async fn history(
    db: &Db,
    ids: &[WorkloadId],
    per: i64,
) -> DbResult<HashMap<WorkloadId, Vec<(i64, WorkloadResult)>>> {
    let mut out: HashMap<WorkloadId, Vec<(i64, WorkloadResult)>> = HashMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    // The ids are parsed workload ids (hex), bound one by one.
    let marks: Vec<String> = (0..ids.len()).map(|n| format!("${}", n + 2)).collect();
    let sql = format!(
        "SELECT workload_id, signed, received_at FROM (
             SELECT workload_id, signed, received_at,
                    ROW_NUMBER() OVER (PARTITION BY workload_id ORDER BY id DESC) AS n
             FROM results WHERE workload_id IN ({})) AS latest
         WHERE n <= $1 ORDER BY workload_id, received_at DESC, n",
        marks.join(", ")
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(per);
    for id in ids {
        query = query.bind(id.to_string());
    }
    for row in query.fetch_all(db.pool()).await? {
        let signed: Signed<WorkloadResult> = from_json(&row.try_get::<String, _>("signed")?, "results.signed")?;
        out.entry(signed.payload.workload_id.clone()).or_default().push((row.try_get("received_at")?, signed.payload));
    }
    for results in out.values_mut() {
        results.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
    }
    Ok(out)
}

/// `owner`'s active workloads that are on a private network (network resources and their
/// members), at most `limit`.
pub async fn networked(db: &Db, owner: UserId, limit: i64) -> DbResult<Vec<WorkloadRecord>> {
    let rows = sqlx::query(
        "SELECT * FROM workloads WHERE owner = $1 AND state = 'active' AND network_name IS NOT NULL
         ORDER BY network_name, node_id, id LIMIT $2",
    )
    .bind(owner as i64)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(workloads::record).collect()
}
