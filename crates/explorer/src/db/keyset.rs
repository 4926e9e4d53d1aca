//! Keyset pagination shared by the listings: SQL built from only the conditions a request
//! gives (so each can use its index), and the opaque keys that say where a page ended. Also
//! the multi-row inserts of the writer and the bulk fill.
//!
//! A key is the sort value(s) and the primary key of a page's last row, as a JSON array in
//! unpadded URL-safe base64. The next page is the rows after that position in the listing's
//! order (ties broken by the primary key), so rows added or removed between pages neither
//! repeat nor skip the rows that come after it, and every page is an index range scan.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, AssertSqlSafe, Row};

use super::{Backend, Db, DbResult};

/// A value bound to a statement parameter.
#[derive(Debug, Clone)]
pub(crate) enum Bind {
    /// An integer.
    Int(i64),
    /// Text.
    Text(String),
    /// NULL, in an integer column.
    NullInt,
    /// NULL, in a text column (PostgreSQL wants the type of a NULL in a `VALUES` list).
    NullText,
}

/// The conditions of a `WHERE` clause and the values of their parameters.
#[derive(Debug, Default)]
pub(crate) struct Conditions {
    parts: Vec<String>,
    binds: Vec<Bind>,
}

impl Conditions {
    /// A parameter placeholder (`$n`) bound to `value`.
    pub(crate) fn param(&mut self, value: Bind) -> String {
        self.binds.push(value);
        format!("${}", self.binds.len())
    }

    /// Add a condition (written with placeholders from [`Self::param`]).
    pub(crate) fn push(&mut self, condition: String) {
        self.parts.push(condition);
    }

    /// ` WHERE a AND b`, or nothing without conditions.
    pub(crate) fn clause(&self) -> String {
        if self.parts.is_empty() { String::new() } else { format!(" WHERE {}", self.parts.join(" AND ")) }
    }

    /// The statement `sql` with this clause's values bound, in order.
    pub(crate) fn query(&self, sql: String) -> Query<'static, Any, AnyArguments> {
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for bind in &self.binds {
            query = match bind {
                Bind::Int(v) => query.bind(*v),
                Bind::Text(v) => query.bind(v.clone()),
                Bind::NullInt => query.bind(None::<i64>),
                Bind::NullText => query.bind(None::<String>),
            };
        }
        query
    }
}

/// `INSERT INTO table (columns) VALUES (...), (...)` with a tuple of parameters for each of
/// `rows` (one value per column, bound in order), then `tail` (such as `ON CONFLICT ...`).
pub(crate) fn insert_rows<'r>(
    table: &str,
    columns: &[&str],
    rows: impl Iterator<Item = &'r [Bind]>,
    tail: &str,
) -> Query<'static, Any, AnyArguments> {
    let mut c = Conditions::default();
    let tuples: Vec<String> = rows
        .map(|row| format!("({})", row.iter().map(|v| c.param(v.clone())).collect::<Vec<_>>().join(", ")))
        .collect();
    c.query(format!("INSERT INTO {table} ({}) VALUES {} {tail}", columns.join(", "), tuples.join(", ")))
}

/// How the database runs `sql` with `c`'s values: the `detail` of each row of SQLite's
/// `EXPLAIN QUERY PLAN` (`SCAN workloads` is a full scan, `SEARCH ... USING INDEX` a range),
/// or the lines of PostgreSQL's `EXPLAIN`.
pub(crate) async fn explain(db: &Db, sql: &str, c: &Conditions) -> DbResult<Vec<String>> {
    let (prefix, column) = match db.backend() {
        Backend::Sqlite => ("EXPLAIN QUERY PLAN", "detail"),
        Backend::Postgres => ("EXPLAIN", "QUERY PLAN"),
    };
    let rows = c.query(format!("{prefix} {sql}")).fetch_all(db.pool()).await?;
    rows.iter().map(|r| Ok(r.try_get::<String, _>(column)?)).collect()
}

/// A key from its parts.
pub(crate) fn encode(parts: &[serde_json::Value]) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(parts).expect("JSON values always serialise"))
}

/// The parts of a key this module made, or `None` for anything else.
pub(crate) fn decode(key: &str) -> Option<Vec<serde_json::Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(key.trim()).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn keys_round_trip_and_strangers_are_refused() {
        let parts = vec![json!("country"), json!("bé"), json!("ghent"), json!("9vNode")];
        assert_eq!(super::decode(&super::encode(&parts)), Some(parts));
        for bad in ["", "2", "not a key!", "e30"] {
            assert_eq!(super::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn conditions_number_their_parameters() {
        let mut c = super::Conditions::default();
        assert_eq!(c.clause(), "");
        let a = c.param(super::Bind::Int(1));
        c.push(format!("owner = {a}"));
        let b = c.param(super::Bind::Text("x".into()));
        c.push(format!("state = {b}"));
        assert_eq!(c.clause(), " WHERE owner = $1 AND state = $2");
    }
}
