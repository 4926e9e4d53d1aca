//! Fill a database directly (not through the API) with a large directory and ledger, for
//! benchmarks of the read paths at scale (`zgrid bench`): users, farms, nodes with varied
//! places, capacity and liveness, and signed workloads in every state. The rows are what the
//! API would have stored for the listings, searches and pages to read; workload versions,
//! results and node usage history are left out.

use zgrid_types::api::WorkloadState;
use zgrid_types::directory::Location;
use zgrid_types::workload::{DiskType, Volume};
use zgrid_types::{Keypair, NodeId, Signed, UserId, WorkloadData, WorkloadId, WorkloadSpec};

use super::keyset::{Bind, insert_rows};
use super::{Db, DbResult, to_json};

/// What to put in the database.
#[derive(Debug, Clone)]
pub struct Fill {
    /// Nodes, in farms of 100.
    pub nodes: usize,
    /// Workloads in all.
    pub workloads: usize,
    /// Users owning them.
    pub owners: usize,
    /// Of the workloads, how many the first owner has (the rest are spread over the others).
    pub first_owner_workloads: usize,
}

impl Default for Fill {
    /// 10,000 nodes and 100,000 workloads of 100 users, 5,000 of them the first user's.
    fn default() -> Self {
        Self { nodes: 10_000, workloads: 100_000, owners: 100, first_owner_workloads: 5_000 }
    }
}

/// Countries the nodes are in (each with [`CITIES`] cities), round robin.
pub const COUNTRIES: &[&str] = &["BE", "NL", "DE", "FR", "EG", "US", "IN", "BR", "JP", "KE"];
/// Cities per country: `<country>-city-<n>`.
pub const CITIES: usize = 5;
/// Total memory of a node is `TOTAL_MRU_STEP` MiB times 1 to 8.
pub const TOTAL_MRU_STEP: i64 = 16_384;

/// What was filled, for the queries of a benchmark.
#[derive(Debug, Clone)]
pub struct Filled {
    /// The users, the first owning [`Fill::first_owner_workloads`] workloads.
    pub owners: Vec<UserId>,
    /// The nodes.
    pub nodes: Vec<NodeId>,
    /// Unix time the fill used as now: two thirds of the nodes were seen then, a third an
    /// hour before.
    pub now: i64,
}

/// Rows per multi-row `INSERT` (within both engines' limits on parameters).
const BATCH: usize = 500;

/// A deterministic key, the `n`th of `kind`.
fn key(kind: u8, n: usize) -> Keypair {
    let mut seed = [kind; 32];
    seed[..8].copy_from_slice(&(n as u64).to_le_bytes());
    Keypair::from_seed(&seed)
}

/// Insert `rows` of `columns` into `table`, [`BATCH`] rows a statement, in one transaction.
async fn insert(db: &Db, table: &str, columns: &[&str], rows: Vec<Vec<Bind>>) -> DbResult<()> {
    let mut tx = db.pool().begin().await?;
    for batch in rows.chunks(BATCH) {
        insert_rows(table, columns, batch.iter().map(Vec::as_slice), "").execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Fill an empty, migrated database as `fill` says; `progress` hears what is being done.
pub async fn fill(db: &Db, fill: &Fill, progress: impl Fn(&str)) -> DbResult<Filled> {
    use Bind::{Int, Text};
    let now = zgrid_types::unix_now();
    let owners_n = fill.owners.max(1);
    let user_keys: Vec<Keypair> = (0..owners_n).map(|i| key(1, i)).collect();
    progress(&format!("{owners_n} users"));
    let rows = user_keys
        .iter()
        .enumerate()
        .map(|(i, k)| vec![Text(format!("bulk-user-{i}")), Text(String::new()), Text(k.public().to_string()), Int(now)])
        .collect();
    insert(db, "users", &["name", "email", "public_key", "created_at"], rows).await?;
    let mut owners = Vec::with_capacity(owners_n);
    for k in &user_keys {
        let id: i64 = sqlx::query_scalar("SELECT id FROM users WHERE public_key = $1")
            .bind(k.public().to_string())
            .fetch_one(db.pool())
            .await?;
        owners.push(id as UserId);
    }

    let farms_n = fill.nodes.div_ceil(100).max(1);
    let rows =
        (0..farms_n).map(|i| vec![Int(owners[0] as i64), Text(format!("bulk-farm-{i}")), Text("[]".into()), Int(now)]);
    insert(db, "farms", &["owner", "name", "public_ips", "created_at"], rows.collect()).await?;
    let farms: Vec<i64> = sqlx::query_scalar("SELECT id FROM farms ORDER BY id").fetch_all(db.pool()).await?;

    progress(&format!("{} nodes", fill.nodes));
    let nodes: Vec<NodeId> = (0..fill.nodes).map(|i| key(2, i).public()).collect();
    let rows = nodes
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let country = COUNTRIES[i % COUNTRIES.len()];
            let city = format!("{country}-city-{}", (i / COUNTRIES.len()) % CITIES);
            let location = Location { country: country.into(), city: city.clone(), latitude: None, longitude: None };
            let total_mru = TOTAL_MRU_STEP * (1 + (i % 8) as i64);
            let used_mru = (i as i64 * 7_919) % total_mru;
            let seen = if i % 3 == 2 { now - 3_600 } else { now };
            vec![
                Text(id.to_string()),
                Int(farms[i / 100 % farms.len()]),
                Text(format!("bulk-node-{i}")),
                Int(64),
                Int(total_mru),
                Int(1 << 30),
                Int(1 << 30),
                Int((i % 65) as i64),
                Int(used_mru),
                Int((i as i64 * 104_729) % (1 << 30)),
                Int(0),
                Text(country.into()),
                Text(city),
                Text(to_json(&location)),
                Text("bulk".into()),
                // Three nodes a second: ties in the registration order.
                Int(now - 86_400 + (i / 3) as i64),
                Int(seen),
            ]
        })
        .collect();
    let columns = [
        "node_id",
        "farm_id",
        "hostname",
        "total_cru",
        "total_mru",
        "total_sru",
        "total_hru",
        "used_cru",
        "used_mru",
        "used_sru",
        "used_hru",
        "country",
        "city",
        "location",
        "version",
        "created_at",
        "last_seen",
    ];
    insert(db, "nodes", &columns, rows).await?;

    progress(&format!("{} workloads", fill.workloads));
    let mut rows = Vec::with_capacity(BATCH);
    let columns =
        ["id", "owner", "node_id", "kind", "version", "expires_at", "state", "signed", "created_at", "updated_at"];
    let columns = [&columns[..], &["deleted_at", "feed_seq"]].concat();
    let others = owners_n.saturating_sub(1).max(1);
    for i in 0..fill.workloads {
        let owner = if i < fill.first_owner_workloads || owners_n == 1 { 0 } else { 1 + i % others };
        let id = WorkloadId::from_u64(0x5a00_0000_0000_0000 | i as u64);
        let node = nodes.get(i % nodes.len().max(1)).copied().unwrap_or_else(|| key(2, 0).public());
        let spec = WorkloadSpec {
            id: id.clone(),
            version: 1,
            owner: owners[owner],
            owner_key: user_keys[owner].public(),
            node_id: node,
            expires_at: now + 3_600,
            description: String::new(),
            metadata: String::new(),
            data: WorkloadData::Volume(Volume { size: 64, disk_type: DiskType::Ssd }),
        };
        let state = match i % 20 {
            0..=15 => WorkloadState::Active,
            16..=18 => WorkloadState::Deleted,
            _ => WorkloadState::Expired,
        };
        // Ten a second, spread over the first owner's and everyone's: ties in the order.
        let created = now - (fill.workloads - i) as i64 / 10;
        rows.push(vec![
            Text(id.as_str().to_owned()),
            Int(owners[owner] as i64),
            Text(node.to_string()),
            Text("volume".into()),
            Int(1),
            Int(now + 3_600),
            Text(state.as_str().into()),
            Text(to_json(&Signed::sign(spec, &user_keys[owner]))),
            Int(created),
            Int(created),
            if state == WorkloadState::Active { Bind::NullInt } else { Int(now) },
            Int(i as i64 + 1),
        ]);
        if rows.len() == BATCH * 20 || i + 1 == fill.workloads {
            insert(db, "workloads", &columns, std::mem::take(&mut rows)).await?;
        }
    }
    sqlx::query("UPDATE counters SET value = $1 WHERE name = 'feed'")
        .bind(fill.workloads as i64)
        .execute(db.pool())
        .await?;
    if db.backend() == super::Backend::Postgres {
        // As autovacuum would soon: the planner's statistics for the new rows. (SQLite has
        // none unless asked, and the explorer does not ask.)
        sqlx::query("ANALYZE").execute(db.pool()).await?;
    }
    Ok(Filled { owners, nodes, now })
}
