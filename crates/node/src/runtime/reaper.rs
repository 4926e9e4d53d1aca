//! How containers' init processes end. `runc run --detach` leaves a container's init without
//! its parent; the agent is the child subreaper, so the init becomes the agent's child and the
//! agent learns its exit status by reaping it: the code or signal is written to the
//! container's exit record, where [`super::Runtime::exit`] reads it.
//!
//! Being the subreaper, the agent also inherits other orphans of its children (daemonised VM
//! processes, processes started in containers by `runc exec --detach`); they are reaped too.
//! The agent's own children (in its session and pid namespace) are left to whoever spawned them.
//! After an agent restart, containers it adopts are no longer its children: their exit status
//! is not known (the record stays absent).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

/// How often orphans are looked for.
const POLL: Duration = Duration::from_millis(200);

/// How long an exited container init waits to be claimed by its container before it is reaped
/// without a record (its start failed after runc made it).
const UNCLAIMED: Duration = Duration::from_secs(30);

/// How a container's init process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exit {
    /// Its exit code, when it exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    /// The signal that killed it, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
}

impl Exit {
    /// `exited with code 1`, `killed by signal 9 (SIGKILL)`.
    pub fn describe(&self) -> String {
        match (self.code, self.signal) {
            (_, Some(signal)) => {
                let name = nix::sys::signal::Signal::try_from(signal).map(|s| format!(" ({})", s.as_str()));
                format!("killed by signal {signal}{}", name.unwrap_or_default())
            }
            (Some(code), None) => format!("exited with code {code}"),
            (None, None) => "exited".to_owned(),
        }
    }
}

/// The container inits being watched: host pid -> exit record.
#[derive(Default)]
struct Watched {
    records: HashMap<i32, PathBuf>,
    /// Exited inits not claimed yet, and since when.
    unclaimed: HashMap<i32, Instant>,
}

static WATCHED: OnceLock<Mutex<Watched>> = OnceLock::new();

/// Make this process the child subreaper and start reaping (once per process).
pub(crate) fn start() -> std::io::Result<()> {
    if WATCHED.get().is_some() {
        return Ok(());
    }
    nix::sys::prctl::set_child_subreaper(true).map_err(std::io::Error::from)?;
    if WATCHED.set(Mutex::default()).is_ok() {
        std::thread::Builder::new().name("zgrid-reaper".into()).spawn(|| {
            loop {
                std::thread::sleep(POLL);
                reap_orphans();
            }
        })?;
    }
    Ok(())
}

/// Record how the container init `pid` ends in `record`.
pub(crate) fn watch(pid: i32, record: PathBuf) {
    if let Some(w) = WATCHED.get() {
        w.lock().expect("lock").records.insert(pid, record);
    }
    collect(pid);
}

/// Reap `pid` now if it is a watched init that has ended, writing its record.
pub(crate) fn collect(pid: i32) {
    let Some(w) = WATCHED.get() else { return };
    let mut w = w.lock().expect("lock");
    let Some(record) = w.records.get(&pid).cloned() else { return };
    let exit = match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::Exited(_, code)) => Exit { code: Some(code), signal: None },
        Ok(WaitStatus::Signaled(_, signal, _)) => Exit { code: None, signal: Some(signal as i32) },
        Ok(_) => return,
        // Not (or no longer) this process's child.
        Err(_) => {
            w.records.remove(&pid);
            return;
        }
    };
    w.records.remove(&pid);
    w.unclaimed.remove(&pid);
    if let Err(e) = write(&record, &exit) {
        tracing::warn!(pid, record = %record.display(), error = %e, "cannot record how a container ended");
    }
}

/// Stop watching `pid` (its container is being removed): reap it if it has ended, without a
/// record. Once this returns, nothing writes its record any more.
pub(crate) fn forget(pid: i32) {
    let Some(w) = WATCHED.get() else { return };
    let mut w = w.lock().expect("lock");
    if w.records.remove(&pid).is_some() {
        reap(pid);
    }
}

/// The exit `record` holds, if any.
pub(crate) fn read(record: &Path) -> Option<Exit> {
    serde_json::from_slice(&std::fs::read(record).ok()?).ok()
}

fn write(record: &Path, exit: &Exit) -> std::io::Result<()> {
    let tmp = record.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(exit)?)?;
    std::fs::rename(&tmp, record)
}

/// Reap the orphans this process inherited that have ended.
fn reap_orphans() {
    let (Some(watched), Some(own)) = (WATCHED.get(), stat(std::process::id() as i32)) else { return };
    for pid in children() {
        let Some(s) = stat(pid).filter(|s| s.zombie) else { continue };
        let ns = nspids(pid);
        let nested = ns.len() > 1;
        if watched.lock().expect("lock").records.contains_key(&pid) {
            collect(pid);
        } else if nested && ns.last().is_some_and(|p| p == "1") {
            // A container's init its container has not claimed yet (runc has just returned).
            let mut w = watched.lock().expect("lock");
            let since = *w.unclaimed.entry(pid).or_insert_with(Instant::now);
            if since.elapsed() >= UNCLAIMED {
                reap(pid);
                w.unclaimed.remove(&pid);
            }
        } else if nested || s.session != own.session {
            reap(pid);
        }
    }
}

fn reap(pid: i32) {
    let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
}

/// This process's children.
fn children() -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return Vec::new() };
    let mut pids: Vec<i32> = tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|text| text.split_whitespace().filter_map(|p| p.parse().ok()).collect::<Vec<_>>())
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

struct Stat {
    zombie: bool,
    session: i32,
}

/// What `/proc/<pid>/stat` says of its state and session.
fn stat(pid: i32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

fn parse_stat(text: &str) -> Option<Stat> {
    // After the command name, which may hold anything: state ppid pgrp session ...
    let mut fields = text.get(text.rfind(')')? + 1..)?.split_whitespace();
    let zombie = fields.next()? == "Z";
    let session = fields.nth(2)?.parse().ok()?;
    Some(Stat { zombie, session })
}

/// The `NSpid:` entries of `pid`: its pid in each pid namespace it is in, the host's first.
fn nspids(pid: i32) -> Vec<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let line = status.lines().find_map(|l| l.strip_prefix("NSpid:")).unwrap_or_default();
    line.split_whitespace().map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_are_read_past_odd_command_names() {
        let s = parse_stat("42 (a) b (c) Z 1 40 41 0 -1 4194560").unwrap();
        assert!(s.zombie);
        assert_eq!(s.session, 41);
        let s = parse_stat("7 (sleep) S 1 7 7 0").unwrap();
        assert!(!s.zombie);
    }

    #[test]
    fn exits_are_described_with_their_code_or_signal() {
        assert_eq!(Exit { code: Some(3), signal: None }.describe(), "exited with code 3");
        assert_eq!(Exit { code: None, signal: Some(9) }.describe(), "killed by signal 9 (SIGKILL)");
    }
}
