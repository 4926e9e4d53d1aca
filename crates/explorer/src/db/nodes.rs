//! The `nodes` table: registrations, heartbeats and search.

use sqlx::Row;
use sqlx::any::AnyRow;
use zgrid_types::api::{KeyPage, NodeFilter};
use zgrid_types::directory::{Capacity, Node, NodeHeartbeat, NodeRegistration};
use zgrid_types::invitation::FarmInvitation;
use zgrid_types::{FarmId, NodeId, Signed};

use super::keyset::{self, Bind, Conditions};
use super::{Db, DbError, DbResult, Tx, from_json, to_json};

fn capacity(row: &AnyRow, prefix: &str) -> DbResult<Capacity> {
    let get = |unit: &str| -> DbResult<u64> { Ok(row.try_get::<i64, _>(format!("{prefix}_{unit}").as_str())? as u64) };
    Ok(Capacity { cru: get("cru")?, mru: get("mru")?, sru: get("sru")?, hru: get("hru")? })
}

/// The IPv6 prefix in nullable column `column`.
fn ipv6_prefix(row: &AnyRow, column: &str) -> DbResult<Option<ipnet::Ipv6Net>> {
    row.try_get::<Option<String>, _>(column)?
        .map(|p| p.parse())
        .transpose()
        .map_err(|e: ipnet::AddrParseError| DbError::Corrupt(format!("a node's {column}: {e}")))
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
        wireguard: row.try_get("wireguard")?,
        public_ipv6: ipv6_prefix(row, "public_ipv6")?,
        yggdrasil: ipv6_prefix(row, "yggdrasil")?,
        created_at: row.try_get("created_at")?,
        last_seen,
        alive: last_seen >= alive_since,
    })
}

/// Register a node, or update the registration of a known one (keeping its used capacity).
/// `consent` is the farm owner's invitation that admitted it into the farm, kept as evidence
/// (never listed: an invitation without a node is a bearer token); `None` keeps the one it has.
pub async fn upsert(
    tx: &mut Tx,
    id: &NodeId,
    reg: &NodeRegistration,
    consent: Option<&Signed<FarmInvitation>>,
    now: i64,
) -> DbResult<()> {
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
    .execute(tx.conn().await?)
    .await?;
    Ok(())
}

/// Width of one bucket of [`usage`] history, seconds.
pub const USAGE_BUCKET_SECS: i64 = 300;
/// How long [`usage`] history is kept, seconds.
pub const USAGE_KEEP_SECS: i64 = 24 * 3600;

/// Record a heartbeat (capacity in use, the hypervisor and WireGuard backend, and the usage in the current
/// [`usage`] bucket); returns false when the node is not registered.
pub async fn heartbeat(tx: &mut Tx, id: &NodeId, beat: &NodeHeartbeat, now: i64) -> DbResult<bool> {
    let used = &beat.used;
    let done = sqlx::query(
        "UPDATE nodes SET used_cru = $2, used_mru = $3, used_sru = $4, used_hru = $5, last_seen = $6,
                          hypervisor = $7, wireguard = $8, public_ipv6 = $9, yggdrasil = $10
         WHERE node_id = $1",
    )
    .bind(id.to_string())
    .bind(used.cru as i64)
    .bind(used.mru as i64)
    .bind(used.sru as i64)
    .bind(used.hru as i64)
    .bind(now)
    .bind(beat.hypervisor.clone())
    .bind(beat.wireguard.clone())
    .bind(beat.public_ipv6.map(|p| p.to_string()))
    .bind(beat.yggdrasil.map(|p| p.to_string()))
    .execute(tx.conn().await?)
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
    .execute(tx.conn().await?)
    .await?;
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
pub async fn prune_usage(tx: &mut Tx, now: i64) -> DbResult<u64> {
    let done = sqlx::query("DELETE FROM node_usage WHERE bucket < $1")
        .bind(now - USAGE_KEEP_SECS)
        .execute(tx.conn().await?)
        .await?;
    Ok(done.rows_affected())
}

/// Whether node `id` is registered (remembered once seen: nodes are not removed).
pub async fn is_registered(db: &Db, id: &NodeId) -> DbResult<bool> {
    if db.known().nodes.get(id).is_some() {
        return Ok(true);
    }
    let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM nodes WHERE node_id = $1")
        .bind(id.to_string())
        .fetch_optional(db.pool())
        .await?;
    if found.is_some() {
        db.known().nodes.insert(*id, ());
    }
    Ok(found.is_some())
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

    /// The columns this order sorts by, before the node id (which breaks ties), as SQL
    /// expressions the indexes of migration 0006 cover.
    fn columns(self) -> &'static [&'static str] {
        match self {
            Self::Registered => &["created_at"],
            Self::FreeMemory => &["(total_mru - used_mru)"],
            Self::FreeCpu => &["(total_cru - used_cru)"],
            Self::FreeSsd => &["(total_sru - used_sru)"],
            Self::LastSeen => &["last_seen"],
            Self::Country => &["LOWER(country)", "LOWER(city)"],
        }
    }

    /// Whether the largest values come first (the node id then too, so a row comparison pages).
    fn descending(self) -> bool {
        matches!(self, Self::FreeMemory | Self::FreeCpu | Self::FreeSsd | Self::LastSeen)
    }

    /// Whether the sort values are text (else integers).
    fn textual(self) -> bool {
        self == Self::Country
    }
}

/// Where a page of a node search ended: the order, the last node's sort values and its id.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeKey {
    order: NodeOrder,
    values: Vec<serde_json::Value>,
    id: String,
}

impl NodeKey {
    /// The key `text` (the `next` of a page in `order`), or `None` when it is not one.
    pub fn decode(text: &str, order: NodeOrder) -> Option<Self> {
        let mut parts = keyset::decode(text)?;
        if parts.len() != order.columns().len() + 2 || parts.first()?.as_str()? != order.name() {
            return None;
        }
        let id = parts.pop()?.as_str()?.to_owned();
        let values: Vec<_> = parts.drain(1..).collect();
        let fits = values.iter().all(|v| if order.textual() { v.is_string() } else { v.is_i64() });
        fits.then_some(Self { order, values, id })
    }

    /// As sent in a page's `next`.
    pub fn encode(&self) -> String {
        let mut parts = vec![serde_json::Value::from(self.order.name())];
        parts.extend(self.values.iter().cloned());
        parts.push(self.id.clone().into());
        keyset::encode(&parts)
    }
}

/// The conditions of `filter` (each only when given, so the planner can pick an index for it).
fn conditions(filter: &NodeFilter, alive_since: i64) -> Conditions {
    let mut c = Conditions::default();
    if let Some(farm) = filter.farm {
        let p = c.param(Bind::Int(farm as i64));
        c.push(format!("farm_id = {p}"));
    }
    for (column, value) in [("country", &filter.country), ("city", &filter.city)] {
        if let Some(value) = value {
            let p = c.param(Bind::Text(value.clone()));
            c.push(format!("LOWER({column}) = LOWER({p})"));
        }
    }
    for (unit, value) in
        [("cru", filter.free_cru), ("mru", filter.free_mru), ("sru", filter.free_sru), ("hru", filter.free_hru)]
    {
        if let Some(value) = value {
            let p = c.param(Bind::Int(value as i64));
            c.push(format!("(total_{unit} - used_{unit}) >= {p}"));
        }
    }
    if let Some(alive) = filter.alive {
        let p = c.param(Bind::Int(alive_since));
        c.push(format!("last_seen {} {p}", if alive { ">=" } else { "<" }));
    }
    for (column, wanted) in [("public_ipv6", filter.public_ipv6), ("yggdrasil", filter.yggdrasil)] {
        if let Some(wanted) = wanted {
            c.push(format!("{column} IS {}NULL", if wanted { "NOT " } else { "" }));
        }
    }
    c
}

/// How the database runs [`search`] with these arguments (see [`super::keyset`]): for tests
/// and benchmarks that check it reads an index range, not the table.
pub async fn explain_search(
    db: &Db,
    filter: &NodeFilter,
    order: NodeOrder,
    after: Option<&NodeKey>,
    size: u32,
    alive_since: i64,
) -> DbResult<Vec<String>> {
    let (sql, c) = search_statement(filter, order, after, size, alive_since);
    keyset::explain(db, &sql, &c).await
}

/// The statement listing `size + 1` nodes matching `filter` in `order` after `after` (the
/// extra row says whether there is a next page), and its parameters.
fn search_statement(
    filter: &NodeFilter,
    order: NodeOrder,
    after: Option<&NodeKey>,
    size: u32,
    alive_since: i64,
) -> (String, Conditions) {
    let mut c = conditions(filter, alive_since);
    let mut columns: Vec<&str> = order.columns().to_vec();
    columns.push("node_id");
    if let Some(key) = after {
        let mut params: Vec<String> = key
            .values
            .iter()
            .map(|v| match v {
                serde_json::Value::String(s) => c.param(Bind::Text(s.clone())),
                other => c.param(Bind::Int(other.as_i64().unwrap_or_default())),
            })
            .collect();
        params.push(c.param(Bind::Text(key.id.clone())));
        let op = if order.descending() { "<" } else { ">" };
        c.push(format!("({}) {op} ({})", columns.join(", "), params.join(", ")));
    }
    let direction = if order.descending() { " DESC" } else { "" };
    let by: Vec<String> = columns.iter().map(|col| format!("{col}{direction}")).collect();
    let keys: Vec<String> = order.columns().iter().enumerate().map(|(i, col)| format!("{col} AS sort_{i}")).collect();
    let sql = format!(
        "SELECT *, {} FROM nodes{} ORDER BY {} LIMIT {}",
        keys.join(", "),
        c.clause(),
        by.join(", "),
        u64::from(size) + 1
    );
    (sql, c)
}

/// One page of at most `size` nodes matching `filter`, in `order`, after the node `after`
/// names (from the first when `None`).
pub async fn search(
    db: &Db,
    filter: &NodeFilter,
    order: NodeOrder,
    after: Option<&NodeKey>,
    size: u32,
    alive_since: i64,
) -> DbResult<KeyPage<Node>> {
    let (sql, c) = search_statement(filter, order, after, size, alive_since);
    let mut rows = c.query(sql).fetch_all(db.pool()).await?;
    let more = rows.len() > size as usize;
    rows.truncate(size as usize);
    let next = match rows.last() {
        Some(last) if more => {
            let values = (0..order.columns().len())
                .map(|i| {
                    let column = format!("sort_{i}");
                    Ok(if order.textual() {
                        serde_json::Value::from(last.try_get::<String, _>(column.as_str())?)
                    } else {
                        serde_json::Value::from(last.try_get::<i64, _>(column.as_str())?)
                    })
                })
                .collect::<DbResult<_>>()?;
            Some(NodeKey { order, values, id: last.try_get("node_id")? }.encode())
        }
        _ => None,
    };
    let items = rows.iter().map(|r| node(r, alive_since)).collect::<DbResult<_>>()?;
    Ok(KeyPage { items, next })
}
