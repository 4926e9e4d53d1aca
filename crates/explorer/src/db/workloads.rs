//! The `workloads` table: the ledger of owner-signed workloads, their deletions and the nodes'
//! signed results, plus the per-node change feed (`feed_seq`).
//!
//! Every change that alters a node's desired set takes a new feed position inside the same
//! transaction, so the feed and the ledger cannot disagree after a crash.

use sqlx::Row;
use sqlx::any::AnyRow;
use zgrid_types::api::{Deletion, DesiredSet, KeyPage, WorkloadFilter, WorkloadRecord, WorkloadState};
use zgrid_types::{DeleteRequest, NodeId, Signed, UserId, WorkloadData, WorkloadId, WorkloadResult, WorkloadSpec};

use super::keyset::{self, Bind, Conditions};
use super::{Db, DbError, DbResult, InsertInto, Taken, Tx, from_json, to_json};

/// A `workloads` row as its record.
pub(crate) fn record(row: &AnyRow) -> DbResult<WorkloadRecord> {
    let state: String = row.try_get("state")?;
    let deleted_at: Option<i64> = row.try_get("deleted_at")?;
    let deleted_by: Option<i64> = row.try_get("deleted_by")?;
    let request: Option<String> = row.try_get("delete_request")?;
    let result: Option<String> = row.try_get("result")?;
    Ok(WorkloadRecord {
        workload: from_json(&row.try_get::<String, _>("signed")?, "workloads.signed")?,
        state: state.parse().map_err(DbError::Corrupt)?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        deletion: match deleted_at {
            None => None,
            Some(at) => Some(Deletion {
                at,
                by: deleted_by.map(|b| b as UserId),
                request: request.map(|r| from_json(&r, "workloads.delete_request")).transpose()?,
            }),
        },
        result: result.map(|r| from_json(&r, "workloads.result")).transpose()?,
    })
}

/// The columns that index a workload's network membership: `(network name, ip, subnet)`.
fn network_columns(data: &WorkloadData) -> (Option<String>, Option<String>, Option<String>) {
    match data {
        WorkloadData::NetworkResource(n) => (Some(n.name.clone()), None, Some(n.iprange.to_string())),
        other => match other.network_attachment() {
            Some((name, ip)) => (Some(name.to_string()), Some(ip.to_string()), None),
            None => (None, None, None),
        },
    }
}

/// One workload by id.
pub async fn get(db: &Db, id: &WorkloadId) -> DbResult<Option<WorkloadRecord>> {
    let row = sqlx::query("SELECT * FROM workloads WHERE id = $1").bind(id.as_str()).fetch_optional(db.pool()).await?;
    row.as_ref().map(record).transpose()
}

/// One workload by id, read inside a write transaction.
pub async fn get_for_update(tx: &mut Tx, id: &WorkloadId) -> DbResult<Option<WorkloadRecord>> {
    let row =
        sqlx::query("SELECT * FROM workloads WHERE id = $1").bind(id.as_str()).fetch_optional(tx.conn().await?).await?;
    row.as_ref().map(record).transpose()
}

/// Where [`insert`] puts a new workload.
static WORKLOADS: InsertInto = InsertInto {
    table: "workloads",
    columns: &[
        "id",
        "owner",
        "node_id",
        "kind",
        "version",
        "expires_at",
        "state",
        "signed",
        "network_name",
        "ipaddress",
        "subnet",
        "created_at",
        "updated_at",
        "feed_seq",
    ],
    key: "id",
};

/// Store a new workload (version 1 or any first version) with the rows of the writes after it
/// ([`Tx::insert_later`]), as the write's last change, and return its record; if a workload
/// with its id exists (in any state), the write is answered with `taken` instead. The database
/// keeps the version in `workload_versions` (a trigger).
pub fn insert(tx: &mut Tx, signed: &Signed<WorkloadSpec>, now: i64, taken: Taken) -> WorkloadRecord {
    let seq = tx.next_feed_seq();
    let spec = &signed.payload;
    let (network, ip, subnet) = network_columns(&spec.data);
    let text = |v: Option<String>| v.map_or(Bind::NullText, Bind::Text);
    let values = vec![
        Bind::Text(spec.id.as_str().to_owned()),
        Bind::Int(spec.owner as i64),
        Bind::Text(spec.node_id.to_string()),
        Bind::Text(spec.data.kind().as_str().to_owned()),
        Bind::Int(i64::from(spec.version)),
        Bind::Int(spec.expires_at),
        Bind::Text(WorkloadState::Active.as_str().to_owned()),
        Bind::Text(to_json(signed)),
        text(network),
        text(ip),
        text(subnet),
        Bind::Int(now),
        Bind::Int(now),
        Bind::Int(seq),
    ];
    tx.insert_later(&WORKLOADS, spec.id.as_str().to_owned(), values, taken);
    WorkloadRecord {
        workload: signed.clone(),
        state: WorkloadState::Active,
        created_at: now,
        updated_at: now,
        deletion: None,
        result: None,
    }
}

/// Replace an active workload with a newer signed version (kept in `workload_versions` by a
/// trigger).
pub async fn update(tx: &mut Tx, signed: &Signed<WorkloadSpec>, now: i64) -> DbResult<WorkloadRecord> {
    let seq = tx.next_feed_seq();
    let spec = &signed.payload;
    let (network, ip, subnet) = network_columns(&spec.data);
    let row = sqlx::query(
        "UPDATE workloads SET version = $2, expires_at = $3, signed = $4, network_name = $5,
                ipaddress = $6, subnet = $7, updated_at = $8, feed_seq = $9
         WHERE id = $1 AND state = 'active' RETURNING *",
    )
    .bind(spec.id.as_str())
    .bind(i64::from(spec.version))
    .bind(spec.expires_at)
    .bind(to_json(signed))
    .bind(network)
    .bind(ip)
    .bind(subnet)
    .bind(now)
    .bind(seq)
    .fetch_one(tx.conn().await?)
    .await?;
    record(&row)
}

/// Mark an active workload deleted by its owner's signed request.
pub async fn delete(tx: &mut Tx, request: &Signed<DeleteRequest>, now: i64) -> DbResult<WorkloadRecord> {
    let seq = tx.next_feed_seq();
    let row = sqlx::query(
        "UPDATE workloads SET state = 'deleted', deleted_at = $2, deleted_by = $3, delete_request = $4,
                updated_at = $2, feed_seq = $5
         WHERE id = $1 AND state = 'active' RETURNING *",
    )
    .bind(request.payload.workload_id.as_str())
    .bind(now)
    .bind(request.payload.owner as i64)
    .bind(to_json(request))
    .bind(seq)
    .fetch_one(tx.conn().await?)
    .await?;
    record(&row)
}

/// Keep a node's signed result as the workload's latest, and in the result history.
pub async fn set_result(tx: &mut Tx, result: &Signed<WorkloadResult>, now: i64) -> DbResult<()> {
    let r = &result.payload;
    let json = to_json(result);
    sqlx::query("INSERT INTO results (workload_id, version, state, signed, received_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(r.workload_id.as_str())
        .bind(i64::from(r.version))
        .bind(r.state.as_str())
        .bind(&json)
        .bind(now)
        .execute(tx.conn().await?)
        .await?;
    sqlx::query("UPDATE workloads SET result = $2 WHERE id = $1")
        .bind(r.workload_id.as_str())
        .bind(&json)
        .execute(tx.conn().await?)
        .await?;
    Ok(())
}

/// Mark every active workload whose expiry has passed as expired, and announce each node
/// affected (see [`super::announce`]). Returns those nodes.
pub async fn expire_due(tx: &mut Tx, now: i64) -> DbResult<Vec<NodeId>> {
    let due: Vec<(String, String)> =
        sqlx::query_as("SELECT id, node_id FROM workloads WHERE state = 'active' AND expires_at <= $1")
            .bind(now)
            .fetch_all(tx.conn().await?)
            .await?;
    let mut nodes = Vec::new();
    for (id, node) in due {
        let seq = tx.next_feed_seq();
        sqlx::query(
            "UPDATE workloads SET state = 'expired', deleted_at = $2, updated_at = $2, feed_seq = $3
             WHERE id = $1 AND state = 'active'",
        )
        .bind(&id)
        .bind(now)
        .bind(seq)
        .execute(tx.conn().await?)
        .await?;
        let node: NodeId = node.parse().map_err(|_| DbError::Corrupt("workloads.node_id".into()))?;
        if !nodes.contains(&node) {
            tx.announce(Some(&node));
            nodes.push(node);
        }
    }
    Ok(nodes)
}

/// Where a page of a workload listing ended: the last workload's creation time and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadKey {
    created_at: i64,
    id: String,
}

impl WorkloadKey {
    /// The key `text` (the `next` of a page), or `None` when it is not one.
    pub fn decode(text: &str) -> Option<Self> {
        match keyset::decode(text)?.as_slice() {
            [created_at, id] => Some(Self { created_at: created_at.as_i64()?, id: id.as_str()?.to_owned() }),
            _ => None,
        }
    }

    /// As sent in a page's `next`.
    pub fn encode(&self) -> String {
        keyset::encode(&[self.created_at.into(), self.id.clone().into()])
    }
}

/// How the database runs [`list`] with these arguments (see [`super::keyset`]): for tests and
/// benchmarks that check it reads an index range, not the table.
pub async fn explain_list(
    db: &Db,
    filter: &WorkloadFilter,
    after: Option<&WorkloadKey>,
    size: u32,
) -> DbResult<Vec<String>> {
    let (sql, c) = list_statement(filter, after, size);
    keyset::explain(db, &sql, &c).await
}

/// The statement listing `size + 1` workloads matching `filter`, newest first (ties: larger id
/// first), after `after` (the extra row says whether there is a next page), and its parameters.
fn list_statement(filter: &WorkloadFilter, after: Option<&WorkloadKey>, size: u32) -> (String, Conditions) {
    // Only the conditions given, so `(owner, state, created_at, id)` or `(owner, created_at, id)`
    // serves the listing in key order.
    let mut c = Conditions::default();
    if let Some(owner) = filter.owner {
        let p = c.param(Bind::Int(owner as i64));
        c.push(format!("owner = {p}"));
    }
    if let Some(state) = &filter.state {
        let p = c.param(Bind::Text(state.clone()));
        c.push(format!("state = {p}"));
    }
    if let Some(key) = after {
        let (at, id) = (c.param(Bind::Int(key.created_at)), c.param(Bind::Text(key.id.clone())));
        c.push(format!("(created_at, id) < ({at}, {id})"));
    }
    let sql = format!(
        "SELECT * FROM workloads{} ORDER BY created_at DESC, id DESC LIMIT {}",
        c.clause(),
        u64::from(size) + 1
    );
    (sql, c)
}

/// One page of at most `size` workloads matching `filter`, newest first, after the workload
/// `after` names (from the newest when `None`).
pub async fn list(
    db: &Db,
    filter: &WorkloadFilter,
    after: Option<&WorkloadKey>,
    size: u32,
) -> DbResult<KeyPage<WorkloadRecord>> {
    let (sql, c) = list_statement(filter, after, size);
    let mut rows = c.query(sql).fetch_all(db.pool()).await?;
    let more = rows.len() > size as usize;
    rows.truncate(size as usize);
    let next = match rows.last() {
        Some(last) if more => {
            Some(WorkloadKey { created_at: last.try_get("created_at")?, id: last.try_get("id")? }.encode())
        }
        _ => None,
    };
    let items = rows.iter().map(record).collect::<DbResult<_>>()?;
    Ok(KeyPage { items, next })
}

/// Changes to `node`'s workloads after `cursor`, oldest first, at most `limit`. From cursor 0
/// only active workloads are sent: a new node has nothing to remove.
pub async fn changes(db: &Db, node: &NodeId, cursor: i64, limit: i64) -> DbResult<Vec<(i64, WorkloadRecord)>> {
    let rows = sqlx::query(
        "SELECT * FROM workloads WHERE node_id = $1 AND feed_seq > $2 AND ($2 > 0 OR state = 'active')
         ORDER BY feed_seq LIMIT $3",
    )
    .bind(node.to_string())
    .bind(cursor)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(|r| Ok((r.try_get("feed_seq")?, record(r)?))).collect()
}

/// Every active workload of `node`, with a cursor to stream later changes from.
pub async fn desired(db: &Db, node: &NodeId) -> DbResult<DesiredSet> {
    // Read the position first: anything committed after it has a larger position and will be
    // streamed; anything before it is in the rows read next.
    let cursor: i64 = sqlx::query_scalar("SELECT value FROM counters WHERE name = 'feed'").fetch_one(db.pool()).await?;
    let rows = sqlx::query("SELECT * FROM workloads WHERE node_id = $1 AND state = 'active' ORDER BY feed_seq")
        .bind(node.to_string())
        .fetch_all(db.pool())
        .await?;
    let workloads = rows.iter().map(record).collect::<DbResult<_>>()?;
    Ok(DesiredSet { cursor, workloads })
}

/// An owner's active network resource of network `name` on `node`: its id and /24.
pub async fn network_resource(
    tx: &mut Tx,
    owner: UserId,
    name: &str,
    node: &NodeId,
) -> DbResult<Option<(WorkloadId, String)>> {
    let row: Option<(String, String)> = sqlx::query_as(
        "SELECT id, subnet FROM workloads WHERE owner = $1 AND network_name = $2 AND node_id = $3
         AND kind = 'network_resource' AND state = 'active'",
    )
    .bind(owner as i64)
    .bind(name)
    .bind(node.to_string())
    .fetch_optional(tx.conn().await?)
    .await?;
    row.map(|(id, subnet)| Ok((id.parse().map_err(|_| DbError::Corrupt("workloads.id".into()))?, subnet))).transpose()
}

/// The active workload (other than `except`) of `owner` that already uses `ip` in network
/// `name` on `node`.
pub async fn ip_user(
    tx: &mut Tx,
    owner: UserId,
    name: &str,
    node: &NodeId,
    ip: &str,
    except: &WorkloadId,
) -> DbResult<Option<String>> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM workloads WHERE owner = $1 AND network_name = $2 AND node_id = $3 AND ipaddress = $4
         AND state = 'active' AND id <> $5",
    )
    .bind(owner as i64)
    .bind(name)
    .bind(node.to_string())
    .bind(ip)
    .bind(except.as_str())
    .fetch_optional(tx.conn().await?)
    .await?)
}

/// The other active resources of an owner's network: `(id, node, subnet)`.
pub async fn network_members(
    tx: &mut Tx,
    owner: UserId,
    name: &str,
    except: &WorkloadId,
) -> DbResult<Vec<(String, String, String)>> {
    Ok(sqlx::query_as(
        "SELECT id, node_id, subnet FROM workloads WHERE owner = $1 AND network_name = $2
         AND kind = 'network_resource' AND state = 'active' AND id <> $3",
    )
    .bind(owner as i64)
    .bind(name)
    .bind(except.as_str())
    .fetch_all(tx.conn().await?)
    .await?)
}
