//! The `nonces` table: single-use request nonces, kept while their timestamp is in the window.

use super::{Db, DbResult};

/// Record `nonce` for `signer` until `expires_at`. Returns false if it was already used.
pub async fn claim(db: &Db, signer: &str, nonce: &str, expires_at: i64) -> DbResult<bool> {
    let mut tx = db.write().await?;
    let done = sqlx::query("INSERT INTO nonces (signer, nonce, expires_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
        .bind(signer)
        .bind(nonce)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(done.rows_affected() == 1)
}

/// Forget nonces whose timestamps can no longer pass the window check.
pub async fn prune(db: &Db, now: i64) -> DbResult<u64> {
    let mut tx = db.write().await?;
    let done = sqlx::query("DELETE FROM nonces WHERE expires_at < $1").bind(now).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(done.rows_affected())
}
