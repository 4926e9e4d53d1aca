//! The hub's storage, all plain files under its data directory:
//!
//! - `chunks/<id[0..2]>/<id>`: chunks, named by the hash of their bytes, shared by all users;
//! - `objects/<hash>.flist`: flist files, named by their address, immutable;
//! - `names/<owner>/<name>.json`: which flist a name points at (a [`FlistInfo`]);
//! - `tmp/`: uploads being received.
//!
//! Every file is written aside, synced and renamed into place, and an flist is stored before
//! any name points at it, so a crash leaves at worst an unreferenced object.

use std::io::Write;
use std::path::{Path, PathBuf};

use zgrid_flist::{DirStore, Flist};
use zgrid_types::hub::{FlistInfo, Repository};

/// Why a stored flist was refused.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file is not a readable flist.
    #[error("not an flist this hub can read: {0}")]
    NotAnFlist(String),
    /// It references chunks the hub does not have.
    #[error("{missing} of its {total} chunks are not on the hub (first: {first}); upload them first")]
    MissingChunks {
        /// How many are missing.
        missing: usize,
        /// How many it references.
        total: usize,
        /// One of them.
        first: String,
    },
    /// Disk trouble.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Flists, their names and the chunk store.
pub struct Repos {
    root: PathBuf,
    chunks: DirStore,
}

impl Repos {
    /// Open the store in `root`, creating its directories.
    pub fn open(root: &Path) -> std::io::Result<Self> {
        for dir in ["chunks", "objects", "names", "tmp"] {
            std::fs::create_dir_all(root.join(dir))?;
        }
        // Uploads that were being received when the hub stopped.
        for entry in std::fs::read_dir(root.join("tmp"))? {
            let _ = std::fs::remove_file(entry?.path());
        }
        Ok(Self { root: root.to_owned(), chunks: DirStore::new(root.join("chunks")) })
    }

    /// The chunk store.
    pub fn chunks(&self) -> &DirStore {
        &self.chunks
    }

    /// Where uploads are spooled.
    pub fn spool(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// The file of flist `hash`.
    pub fn object(&self, hash: &str) -> PathBuf {
        self.root.join("objects").join(format!("{hash}.flist"))
    }

    fn record(&self, owner: &str, name: &str) -> PathBuf {
        self.root.join("names").join(owner).join(format!("{name}.json"))
    }

    /// Check that the flist in `file` is readable and all its chunks are here, store it, and
    /// point `owner`'s `name` at it.
    pub fn put_flist(&self, owner: &str, name: &str, file: &Path) -> Result<FlistInfo, StoreError> {
        let flist = Flist::open(file).map_err(|e| StoreError::NotAnFlist(e.to_string()))?;
        let ids = flist.chunk_ids().map_err(|e| StoreError::NotAnFlist(e.to_string()))?;
        let missing: Vec<_> = ids.iter().filter(|id| !self.chunks.has(id)).collect();
        if let Some(first) = missing.first() {
            return Err(StoreError::MissingChunks {
                missing: missing.len(),
                total: ids.len(),
                first: hex::encode(first),
            });
        }
        let (_, content_bytes, _, chunks) = flist.totals().map_err(|e| StoreError::NotAnFlist(e.to_string()))?;
        drop(flist);
        let hash = zgrid_flist::address(file)?;
        let object = self.object(&hash);
        if !object.exists() {
            let tmp = tempfile::NamedTempFile::new_in(self.spool())?;
            std::fs::copy(file, tmp.path())?;
            tmp.as_file().sync_all()?;
            tmp.persist(&object).map_err(|e| e.error)?;
        }
        let info = FlistInfo {
            owner: owner.to_owned(),
            name: name.to_owned(),
            size: std::fs::metadata(&object)?.len(),
            hash,
            content_bytes,
            chunks,
            updated: zgrid_types::unix_now(),
            path: format!("/flists/{owner}/{name}"),
        };
        let record = self.record(owner, name);
        let dir = record.parent().expect("records have a parent");
        std::fs::create_dir_all(dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        tmp.write_all(&serde_json::to_vec_pretty(&info).expect("flist info serialises"))?;
        tmp.as_file().sync_all()?;
        tmp.persist(&record).map_err(|e| e.error)?;
        std::fs::File::open(dir)?.sync_all()?;
        Ok(info)
    }

    /// What `owner`'s `name` points at.
    pub fn get(&self, owner: &str, name: &str) -> std::io::Result<Option<FlistInfo>> {
        match std::fs::read(self.record(owner, name)) {
            Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).map_err(std::io::Error::other)?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Remove `owner`'s `name` (the flist and its chunks stay: others may share them).
    pub fn remove(&self, owner: &str, name: &str) -> std::io::Result<bool> {
        match std::fs::remove_file(self.record(owner, name)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every namespace with at least one flist.
    pub fn repositories(&self) -> std::io::Result<Vec<Repository>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(self.root.join("names"))? {
            let entry = entry?;
            let flists = records(&entry.path())?.len() as u64;
            if flists > 0 {
                out.push(Repository { owner: entry.file_name().to_string_lossy().into_owned(), flists });
            }
        }
        out.sort_by(|a, b| a.owner.cmp(&b.owner));
        Ok(out)
    }

    /// `owner`'s flists, by name.
    pub fn list(&self, owner: &str) -> std::io::Result<Vec<FlistInfo>> {
        let dir = self.root.join("names").join(owner);
        let records = match records(&dir) {
            Ok(records) => records,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for record in records {
            let bytes = std::fs::read(record)?;
            out.push(serde_json::from_slice::<FlistInfo>(&bytes).map_err(std::io::Error::other)?);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

/// The name records (`<name>.json`) in a namespace's directory, without the files being written
/// aside there (`.tmp…`, half written, or left by a crash): names never start with a dot.
fn records(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if !name.starts_with('.') && name.ends_with(".json") {
            out.push(dir.join(&*name));
        }
    }
    Ok(out)
}
