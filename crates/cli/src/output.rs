//! Human tables and `--json` output.

use serde::Serialize;
use zgrid_types::api::WorkloadRecord;

/// Print `value` as pretty JSON.
pub fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Print `value` as JSON when `as_json`, else run `human` to print it for people.
pub fn report<T: Serialize>(as_json: bool, value: &T, human: impl FnOnce()) -> anyhow::Result<()> {
    if as_json {
        json(value)
    } else {
        human();
        Ok(())
    }
}

/// Print rows as a table with a header, columns padded to their widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// The node's latest result on a workload, for people: `pending`, `ok` or `error: why`.
pub fn result(record: &WorkloadRecord) -> String {
    match record.result.as_ref().map(|r| &r.payload) {
        None => "pending".into(),
        Some(r) if r.message.is_empty() => r.state.as_str().into(),
        Some(r) => format!("{}: {}", r.state.as_str(), r.message),
    }
}

/// A Unix time as UTC `YYYY-MM-DD HH:MM`.
pub fn time(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map_or_else(|| unix.to_string(), |t| t.format("%Y-%m-%d %H:%M").to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_are_utc_dates() {
        assert_eq!(super::time(0), "1970-01-01 00:00");
        assert_eq!(super::time(1_800_000_000), "2027-01-15 08:00");
    }
}
