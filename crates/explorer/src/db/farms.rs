//! The `farms` table.

use sqlx::Row;
use sqlx::any::AnyRow;
use zgrid_types::api::Page;
use zgrid_types::directory::{Farm, FarmRegistration};
use zgrid_types::{FarmId, UserId};

use super::{Db, DbResult, Tx, from_json, to_json};

fn farm(row: &AnyRow) -> DbResult<Farm> {
    Ok(Farm {
        id: row.try_get::<i64, _>("id")? as FarmId,
        owner: row.try_get::<i64, _>("owner")? as UserId,
        name: row.try_get("name")?,
        public_ips: from_json(&row.try_get::<String, _>("public_ips")?, "farms.public_ips")?,
        created_at: row.try_get("created_at")?,
    })
}

/// Create a farm owned by `owner`; fails with a unique violation when the name is taken.
pub async fn insert(tx: &mut Tx, owner: UserId, reg: &FarmRegistration, now: i64) -> DbResult<Farm> {
    let row = sqlx::query(
        "INSERT INTO farms (owner, name, public_ips, created_at) VALUES ($1, $2, $3, $4)
         RETURNING id, owner, name, public_ips, created_at",
    )
    .bind(owner as i64)
    .bind(&reg.name)
    .bind(to_json(&reg.public_ips))
    .bind(now)
    .fetch_one(tx.conn().await?)
    .await?;
    farm(&row)
}

/// The farm with this id.
pub async fn by_id(db: &Db, id: FarmId) -> DbResult<Option<Farm>> {
    let row = sqlx::query("SELECT * FROM farms WHERE id = $1").bind(id as i64).fetch_optional(db.pool()).await?;
    row.as_ref().map(farm).transpose()
}

/// One page of farms, oldest first.
pub async fn list(db: &Db, page: u32, size: u32) -> DbResult<Page<Farm>> {
    let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM farms").fetch_one(db.pool()).await?;
    let rows = sqlx::query("SELECT * FROM farms ORDER BY id LIMIT $1 OFFSET $2")
        .bind(i64::from(size))
        .bind(i64::from(page - 1) * i64::from(size))
        .fetch_all(db.pool())
        .await?;
    let items = rows.iter().map(farm).collect::<DbResult<_>>()?;
    Ok(Page { items, page, size, total: total as u64 })
}
