//! The node's own record of what it has provisioned, one JSON file per workload, written
//! atomically (temporary file, fsync, rename, fsync of the directory). The engine writes an
//! entry *before* its first side effect, so after a crash at any point the agent knows every
//! workload it may have left half done, and finishes or removes it.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use zgrid_types::{Signed, WorkloadId, WorkloadSpec};

/// Where a workload is on this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Phase {
    /// Side effects may have started; not known to be complete.
    Provisioning,
    /// Provisioned as specified.
    Running,
    /// Gave up; `reason` was reported. Retried only when a new version arrives.
    Failed {
        /// What was reported.
        reason: String,
    },
    /// Being removed.
    Removing,
}

/// The kernel's id of the current boot.
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// One workload as this node keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The signed version being (or last) provisioned.
    pub workload: Signed<WorkloadSpec>,
    /// Progress.
    #[serde(flatten)]
    pub phase: Phase,
    /// Times the workload crashed and was restarted.
    #[serde(default)]
    pub restarts: u32,
    /// The facts reported with the `ok` result, kept so it can be sent again.
    #[serde(default)]
    pub data: serde_json::Value,
    /// How it last stopped before a restart (`reason` and what else is known of the exit), kept
    /// in its results while it runs again.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub last_stop: serde_json::Value,
}

impl Entry {
    /// The workload's id.
    pub fn id(&self) -> &WorkloadId {
        &self.workload.payload.id
    }
}

/// The directory of entries.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// Open (creating) the store in `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Self { dir })
    }

    fn path(&self, id: &WorkloadId) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Every entry on disk. Leftover temporary files from a crash mid-write are removed.
    pub fn load_all(&self) -> Result<HashMap<WorkloadId, Entry>> {
        let mut out = HashMap::new();
        for item in fs::read_dir(&self.dir).with_context(|| format!("cannot read {}", self.dir.display()))? {
            let path = item?.path();
            match path.extension().and_then(|e| e.to_str()) {
                Some("json") => {
                    let entry =
                        parse(&path, &fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?)?;
                    out.insert(entry.id().clone(), entry);
                }
                Some("tmp") => fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?,
                _ => {}
            }
        }
        Ok(out)
    }

    /// The entry of workload `id`, if this node has one.
    pub fn get(&self, id: &WorkloadId) -> Result<Option<Entry>> {
        let path = self.path(id);
        match fs::read(&path) {
            Ok(bytes) => parse(&path, &bytes).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Whether the machine booted since the last call (or since the store was made), judged by
    /// the kernel's boot id; the current one is recorded.
    pub fn rebooted(&self) -> Result<bool> {
        let current = fs::read_to_string(BOOT_ID).with_context(|| format!("cannot read {BOOT_ID}"))?;
        let recorded = self.dir.join("boot_id");
        let previous = match fs::read_to_string(&recorded) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", recorded.display())),
        };
        if previous.as_deref() == Some(current.as_str()) {
            return Ok(false);
        }
        write_durably(&recorded, current.as_bytes()).with_context(|| format!("cannot write {}", recorded.display()))?;
        Ok(previous.is_some())
    }

    /// Write an entry durably.
    pub fn put(&self, entry: &Entry) -> Result<()> {
        let path = self.path(entry.id());
        write_durably(&path, &serde_json::to_vec(entry)?).with_context(|| format!("cannot write {}", path.display()))
    }

    /// Forget an entry durably.
    pub fn remove(&self, id: &WorkloadId) -> Result<()> {
        match fs::remove_file(self.path(id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("cannot remove the entry of {id}"))
            }
            _ => sync_dir(&self.dir),
        }
    }
}

fn parse(path: &Path, bytes: &[u8]) -> Result<Entry> {
    serde_json::from_slice(bytes).with_context(|| format!("{} is not a workload entry", path.display()))
}

/// Replace the file at `path` with `bytes` so that a crash leaves either the old or the new
/// contents, and the new ones survive it once this returns: a temporary file beside it, fsync,
/// rename, fsync of the directory.
pub(crate) fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    fs::File::open(path.parent().unwrap_or(Path::new(".")))?.sync_all()
}

fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir).and_then(|d| d.sync_all()).with_context(|| format!("cannot sync {}", dir.display()))
}
