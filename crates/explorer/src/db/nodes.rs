//! The `nodes` table: registrations, heartbeats and search.

use sqlx::Row;
use sqlx::any::AnyRow;
use zgrid_types::api::{NodeFilter, Page};
use zgrid_types::directory::{Capacity, Node, NodeHeartbeat, NodeRegistration};
use zgrid_types::invitation::FarmInvitation;
use zgrid_types::{FarmId, NodeId, Signed};

use super::{Db, DbError, DbResult, from_json, to_json};

fn capacity(row: &AnyRow, prefix: &str) -> DbResult<Capacity> {
    let get = |unit: &str| -> DbResult<u64> { Ok(row.try_get::<i64, _>(format!("{prefix}_{unit}").as_str())? as u64) };
    Ok(Capacity { cru: get("cru")?, mru: get("mru")?, sru: get("sru")?, hru: get("hru")? })
}

fn node(row: &AnyRow, alive_since: i64) -> DbResult<Node> {
    let id: String = row.try_get("node_id")?;
    let endpoint: Option<String> = row.try_get("public_endpoint")?;
    let last_seen: i64 = row.try_get("last_seen")?;
    Ok(Node {
        node_id: id.parse().map_err(|_| DbError::Corrupt("nodes.node_id".into()))?,
        farm_id: row.try_get::<i64, _>("farm_id")? as FarmId,
        hostname: row.try_get("hostname")?,
        total: capacity(row, "total")?,
        used: capacity(row, "used")?,
        location: from_json(&row.try_get::<String, _>("location")?, "nodes.location")?,
        public_endpoint: endpoint
            .map(|e| e.parse().map_err(|_| DbError::Corrupt("nodes.public_endpoint".into())))
            .transpose()?,
        api_url: row.try_get("api_url")?,
        version: row.try_get("version")?,
        hypervisor: row.try_get("hypervisor")?,
        created_at: row.try_get("created_at")?,
        last_seen,
        alive: last_seen >= alive_since,
    })
}

/// Register a node, or update the registration of a known one (keeping its used capacity).
/// `consent` is the farm owner's invitation that admitted it into the farm, kept as evidence
/// (never listed: an invitation without a node is a bearer token); `None` keeps the one it has.
pub async fn upsert(
    db: &Db,
    id: &NodeId,
    reg: &NodeRegistration,
    consent: Option<&Signed<FarmInvitation>>,
    now: i64,
) -> DbResult<()> {
    let mut tx = db.write().await?;
    sqlx::query(
        "INSERT INTO nodes (node_id, farm_id, hostname, total_cru, total_mru, total_sru, total_hru,
                            used_cru, used_mru, used_sru, used_hru, country, city, location,
                            public_endpoint, api_url, version, created_at, last_seen, farm_consent)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 0, 0, 0, 0, $8, $9, $10, $11, $12, $13, $14, $14, $15)
         ON CONFLICT (node_id) DO UPDATE SET
            farm_id = excluded.farm_id, hostname = excluded.hostname,
            total_cru = excluded.total_cru, total_mru = excluded.total_mru,
            total_sru = excluded.total_sru, total_hru = excluded.total_hru,
            country = excluded.country, city = excluded.city, location = excluded.location,
            public_endpoint = excluded.public_endpoint, api_url = excluded.api_url, version = excluded.version,
            last_seen = excluded.last_seen, farm_consent = COALESCE(excluded.farm_consent, nodes.farm_consent)",
    )
    .bind(id.to_string())
    .bind(reg.farm_id as i64)
    .bind(&reg.hostname)
    .bind(reg.total.cru as i64)
    .bind(reg.total.mru as i64)
    .bind(reg.total.sru as i64)
    .bind(reg.total.hru as i64)
    .bind(&reg.location.country)
    .bind(&reg.location.city)
    .bind(to_json(&reg.location))
    .bind(reg.public_endpoint.map(|e| e.to_string()))
    .bind(reg.api_url.clone())
    .bind(&reg.version)
    .bind(now)
    .bind(consent.map(to_json))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Width of one bucket of [`usage`] history, seconds.
pub const USAGE_BUCKET_SECS: i64 = 300;
/// How long [`usage`] history is kept, seconds.
pub const USAGE_KEEP_SECS: i64 = 24 * 3600;

/// Record a heartbeat (capacity in use and the hypervisor, and the usage in the current
/// [`usage`] bucket); returns false when the node is not registered.
pub async fn heartbeat(db: &Db, id: &NodeId, beat: &NodeHeartbeat, now: i64) -> DbResult<bool> {
    let used = &beat.used;
    let mut tx = db.write().await?;
    let done = sqlx::query(
        "UPDATE nodes SET used_cru = $2, used_mru = $3, used_sru = $4, used_hru = $5, last_seen = $6,
                          hypervisor = $7
         WHERE node_id = $1",
    )
    .bind(id.to_string())
    .bind(used.cru as i64)
    .bind(used.mru as i64)
    .bind(used.sru as i64)
    .bind(used.hru as i64)
    .bind(now)
    .bind(beat.hypervisor.clone())
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() != 1 {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO node_usage (node_id, bucket, used_cru, used_mru, used_sru, used_hru)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (node_id, bucket) DO UPDATE SET
            used_cru = excluded.used_cru, used_mru = excluded.used_mru,
            used_sru = excluded.used_sru, used_hru = excluded.used_hru",
    )
    .bind(id.to_string())
    .bind(now - now.rem_euclid(USAGE_BUCKET_SECS))
    .bind(used.cru as i64)
    .bind(used.mru as i64)
    .bind(used.sru as i64)
    .bind(used.hru as i64)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// Capacity `id` had in use over the last day, oldest first: (bucket start, usage).
pub async fn usage(db: &Db, id: &NodeId, now: i64) -> DbResult<Vec<(i64, Capacity)>> {
    let rows = sqlx::query("SELECT * FROM node_usage WHERE node_id = $1 AND bucket >= $2 ORDER BY bucket")
        .bind(id.to_string())
        .bind(now - USAGE_KEEP_SECS)
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(|r| Ok((r.try_get("bucket")?, capacity(r, "used")?))).collect()
}

/// Forget usage history older than a day.
pub async fn prune_usage(db: &Db, now: i64) -> DbResult<u64> {
    let done =
        sqlx::query("DELETE FROM node_usage WHERE bucket < $1").bind(now - USAGE_KEEP_SECS).execute(db.pool()).await?;
    Ok(done.rows_affected())
}

/// The node with this id; `alive_since` is the oldest last-seen time that counts as alive.
pub async fn by_id(db: &Db, id: &NodeId, alive_since: i64) -> DbResult<Option<Node>> {
    let row =
        sqlx::query("SELECT * FROM nodes WHERE node_id = $1").bind(id.to_string()).fetch_optional(db.pool()).await?;
    row.as_ref().map(|r| node(r, alive_since)).transpose()
}

/// The order of a node search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NodeOrder {
    /// Oldest registration first (the API's order).
    #[default]
    Registered,
    /// Most free memory first.
    FreeMemory,
    /// Most free CPUs first.
    FreeCpu,
    /// Most free SSD first.
    FreeSsd,
    /// Most recently seen first.
    LastSeen,
    /// By country, then city.
    Country,
}

impl NodeOrder {
    /// Every order, as offered to people.
    pub const ALL: &'static [Self] =
        &[Self::Registered, Self::FreeMemory, Self::FreeCpu, Self::FreeSsd, Self::LastSeen, Self::Country];

    /// Its name in a query string.
    pub fn name(self) -> &'static str {
        match self {
            Self::Registered => "registered",
            Self::FreeMemory => "free_mru",
            Self::FreeCpu => "free_cru",
            Self::FreeSsd => "free_sru",
            Self::LastSeen => "last_seen",
            Self::Country => "country",
        }
    }

    /// The order named `name`, if any.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|o| o.name() == name)
    }

    /// Its description for people.
    pub fn label(self) -> &'static str {
        match self {
            Self::Registered => "registration",
            Self::FreeMemory => "free memory",
            Self::FreeCpu => "free CPUs",
            Self::FreeSsd => "free SSD",
            Self::LastSeen => "last seen",
            Self::Country => "country, city",
        }
    }

    fn sql(self) -> &'static str {
        match self {
            Self::Registered => "created_at, node_id",
            Self::FreeMemory => "total_mru - used_mru DESC, node_id",
            Self::FreeCpu => "total_cru - used_cru DESC, node_id",
            Self::FreeSsd => "total_sru - used_sru DESC, node_id",
            Self::LastSeen => "last_seen DESC, node_id",
            Self::Country => "LOWER(country), LOWER(city), node_id",
        }
    }
}

const FILTER: &str = "($1 IS NULL OR farm_id = $1)
    AND ($2 IS NULL OR LOWER(country) = LOWER($2))
    AND ($3 IS NULL OR LOWER(city) = LOWER($3))
    AND ($4 IS NULL OR total_cru - used_cru >= $4)
    AND ($5 IS NULL OR total_mru - used_mru >= $5)
    AND ($6 IS NULL OR total_sru - used_sru >= $6)
    AND ($7 IS NULL OR total_hru - used_hru >= $7)
    AND ($8 IS NULL OR ($8 = 1 AND last_seen >= $9) OR ($8 = 0 AND last_seen < $9))";

/// One page of the nodes matching `filter`, in `order`.
pub async fn search(
    db: &Db,
    filter: &NodeFilter,
    order: NodeOrder,
    (page, size): (u32, u32),
    alive_since: i64,
) -> DbResult<Page<Node>> {
    let count_sql = format!("SELECT COUNT(*) FROM nodes WHERE {FILTER}");
    let list_sql = format!("SELECT * FROM nodes WHERE {FILTER} ORDER BY {} LIMIT $10 OFFSET $11", order.sql());
    macro_rules! bind_filter {
        ($q:expr) => {
            $q.bind(filter.farm.map(|f| f as i64))
                .bind(filter.country.clone())
                .bind(filter.city.clone())
                .bind(filter.free_cru.map(|v| v as i64))
                .bind(filter.free_mru.map(|v| v as i64))
                .bind(filter.free_sru.map(|v| v as i64))
                .bind(filter.free_hru.map(|v| v as i64))
                .bind(filter.alive.map(i64::from))
                .bind(alive_since)
        };
    }
    let total: i64 = bind_filter!(sqlx::query_scalar(sqlx::AssertSqlSafe(count_sql))).fetch_one(db.pool()).await?;
    let rows = bind_filter!(sqlx::query(sqlx::AssertSqlSafe(list_sql)))
        .bind(i64::from(size))
        .bind(i64::from(page - 1) * i64::from(size))
        .fetch_all(db.pool())
        .await?;
    let items = rows.iter().map(|r| node(r, alive_since)).collect::<DbResult<_>>()?;
    Ok(Page { items, page, size, total: total as u64 })
}
