//! The `nonces` table: single-use request nonces, kept while their timestamp is in the window.

use std::collections::HashSet;

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

/// Record every nonce given, in one statement. Returns, for each, whether it was fresh: one
/// seen before, or earlier in the same list, is not.
pub(super) async fn claim_all<'n>(tx: &mut Tx, nonces: impl Iterator<Item = Option<&'n Nonce>>) -> DbResult<Vec<bool>> {
    let nonces: Vec<Option<&Nonce>> = nonces.collect();
    let mut first = HashSet::new();
    // A job without a nonce counts as fresh; a repeat within the list is never inserted.
    let wanted: Vec<&Nonce> =
        nonces.iter().flatten().copied().filter(|n| first.insert((n.signer.as_str(), n.nonce.as_str()))).collect();
    let mut inserted = HashSet::new();
    if !wanted.is_empty() {
        let rows: Vec<String> =
            (0..wanted.len()).map(|i| format!("(${}, ${}, ${})", 3 * i + 1, 3 * i + 2, 3 * i + 3)).collect();
        let sql = format!(
            "INSERT INTO nonces (signer, nonce, expires_at) VALUES {} ON CONFLICT DO NOTHING RETURNING signer, nonce",
            rows.join(", ")
        );
        // Only placeholders are formatted in; the nonces are bound.
        let mut claim = sqlx::query_as::<_, (String, String)>(sqlx::AssertSqlSafe(sql));
        for n in &wanted {
            claim = claim.bind(&n.signer).bind(&n.nonce).bind(n.expires_at);
        }
        inserted.extend(claim.fetch_all(tx.conn().await?).await?);
    }
    Ok(nonces.iter().map(|n| n.is_none_or(|n| inserted.remove(&(n.signer.clone(), n.nonce.clone())))).collect())
}

/// Forget nonces whose timestamps can no longer pass the window check.
pub async fn prune(tx: &mut Tx, now: i64) -> DbResult<u64> {
    let done = sqlx::query("DELETE FROM nonces WHERE expires_at < $1").bind(now).execute(tx.conn().await?).await?;
    Ok(done.rows_affected())
}
