//! The `nonces` table: single-use request nonces, kept while their timestamp is in the window.

use super::{DbResult, Tx};

/// A signed request's nonce, to be claimed with the request's action.
#[derive(Debug, Clone)]
pub struct Nonce {
    /// The signer's public key.
    pub signer: String,
    /// The request's nonce.
    pub nonce: String,
    /// When the request's timestamp leaves the window, after which the nonce can be forgotten.
    pub expires_at: i64,
}

/// Record `nonce`. Returns false if it was already used.
pub async fn claim(tx: &mut Tx, nonce: &Nonce) -> DbResult<bool> {
    let done = sqlx::query("INSERT INTO nonces (signer, nonce, expires_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
        .bind(&nonce.signer)
        .bind(&nonce.nonce)
        .bind(nonce.expires_at)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Forget nonces whose timestamps can no longer pass the window check.
pub async fn prune(tx: &mut Tx, now: i64) -> DbResult<u64> {
    let done = sqlx::query("DELETE FROM nonces WHERE expires_at < $1").bind(now).execute(&mut **tx).await?;
    Ok(done.rows_affected())
}
