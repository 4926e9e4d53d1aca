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

/// Print rows as a table with a header, columns padded to their widest cell; on a terminal,
/// the last column is cut to fit its width.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let width = std::io::IsTerminal::is_terminal(&std::io::stdout())
        .then(|| rustix::termios::tcgetwinsize(std::io::stdout()).ok())
        .flatten()
        .map(|size| usize::from(size.ws_col))
        .filter(|&w| w > 0);
    for line in render(header, rows, width) {
        println!("{line}");
    }
}

/// The lines of a table: columns padded to their widest cell; with a `width`, the last
/// column's cells cut (ending in `…`, keeping at least 12 characters) so lines fit it.
fn render(header: &[&str], rows: &[Vec<String>], width: Option<usize>) -> Vec<String> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let before_last: usize = widths.iter().rev().skip(1).map(|w| w + 2).sum();
    let room = width.map(|w| w.saturating_sub(before_last).max(12));
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (cell, w))| match room {
                Some(room) if i == last && cell.chars().count() > room => {
                    format!("{}…", cell.chars().take(room - 1).collect::<String>())
                }
                _ => format!("{cell:<w$}"),
            })
            .collect();
        padded.join("  ").trim_end().to_owned()
    };
    std::iter::once(line(header.to_vec()))
        .chain(rows.iter().map(|row| line(row.iter().map(String::as_str).collect())))
        .collect()
}

/// Progress of `total` steps of `what` (such as "chunks uploaded"), `total_bytes` bytes in all,
/// on stderr: on a terminal one bar of the bytes with the steps done, the rate and the elapsed
/// time; otherwise a line at each tenth of the steps; nothing when `quiet`.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    total: u64,
    total_bytes: u64,
    done: std::sync::atomic::AtomicU64,
    bytes: std::sync::atomic::AtomicU64,
    what: &'static str,
    quiet: bool,
}

impl Progress {
    /// Start showing progress (for `total` steps of `total_bytes` bytes in all).
    pub fn new(total: u64, total_bytes: u64, what: &'static str, quiet: bool) -> Self {
        let bar = (!quiet && total > 0 && std::io::IsTerminal::is_terminal(&std::io::stderr())).then(|| {
            indicatif::ProgressBar::new(total_bytes).with_style(bar_style()).with_message(format!("0/{total} {what}"))
        });
        Self { bar, total, total_bytes, done: 0.into(), bytes: 0.into(), what, quiet }
    }

    /// One more step done, of `bytes` bytes.
    pub fn step(&self, bytes: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let done = self.done.fetch_add(1, Relaxed) + 1;
        let sent = self.bytes.fetch_add(bytes, Relaxed) + bytes;
        let (total, what) = (self.total, self.what);
        match &self.bar {
            Some(bar) => {
                bar.set_message(format!("{done}/{total} {what}"));
                bar.inc(bytes);
            }
            None if !self.quiet && tenth_reached(done, total) => {
                let (sent, all) = (indicatif::BinaryBytes(sent), indicatif::BinaryBytes(self.total_bytes));
                eprintln!("  {what} {done}/{total} ({sent} of {all})");
            }
            None => {}
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}

/// The progress bar: steps, elapsed time, bar, bytes done and in all, rate.
fn bar_style() -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template(
        "  {msg} [{elapsed}] {wide_bar} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec}",
    )
    .expect("a valid template")
}

/// Whether step `done` of `total` is the first to reach another tenth of them.
fn tenth_reached(done: u64, total: u64) -> bool {
    done <= total && done * 10 / total.max(1) != (done - 1) * 10 / total.max(1)
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
    fn the_progress_bar_template_parses() {
        // Only a terminal shows the bar, so a bad template would fail there alone.
        super::bar_style();
    }

    #[test]
    fn progress_without_a_terminal_is_a_line_at_each_tenth() {
        let lines = |total: u64| (1..=total).filter(|&n| super::tenth_reached(n, total)).collect::<Vec<_>>();
        assert_eq!(lines(1000), (1..=10).map(|t| t * 100).collect::<Vec<_>>());
        assert_eq!(lines(3), vec![1, 2, 3]);
        assert_eq!(lines(1), vec![1]);
        assert_eq!(lines(25), vec![3, 5, 8, 10, 13, 15, 18, 20, 23, 25]);
    }

    #[test]
    fn tables_pad_columns_and_cut_the_last_to_the_terminal() {
        let rows = vec![vec!["a".to_owned(), "error: ".to_owned() + &"x".repeat(100)], vec!["bb".into(), "ok".into()]];
        let full = super::render(&["ID", "RESULT"], &rows, None);
        assert_eq!(full[0], "ID  RESULT");
        assert_eq!(full[2], "bb  ok");
        assert_eq!(full[1].chars().count(), 4 + 107);
        let cut = super::render(&["ID", "RESULT"], &rows, Some(40));
        assert!(cut.iter().all(|l| l.chars().count() <= 40), "{cut:?}");
        assert!(cut[1].starts_with("a   error: xxx") && cut[1].ends_with('…'), "{cut:?}");
        assert_eq!(cut[2], "bb  ok");
        let narrow = super::render(&["ID", "RESULT"], &rows, Some(5));
        assert_eq!(narrow[1].chars().count(), 4 + 12, "the last column keeps 12 characters: {narrow:?}");
    }

    #[test]
    fn times_are_utc_dates() {
        assert_eq!(super::time(0), "1970-01-01 00:00");
        assert_eq!(super::time(1_800_000_000), "2027-01-15 08:00");
    }
}
