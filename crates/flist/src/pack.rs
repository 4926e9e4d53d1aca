//! Turning a directory into an flist: every entry's metadata into the database, every regular
//! file's contents into sealed chunks in a store (a chunk the store has is not written again).

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::chunk;
use crate::meta::{ChunkRef, Flist, ImageConfig, Inode, MetaError, ROOT};
use crate::store::DirStore;

/// Chunk size: fixed 1 MiB pieces (see `docs/flist.md`).
pub const CHUNK_SIZE: usize = 1 << 20;
/// Where an image directory keeps its config (the node's container runtime reads the same).
pub const CONFIG_FILE: &str = ".zgrid/config.json";

/// Why packing failed.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// Reading the source failed.
    #[error("{path}: {source}")]
    Read {
        /// What was read.
        path: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// Writing a chunk failed.
    #[error("cannot store a chunk: {0}")]
    Store(std::io::Error),
    /// Writing the flist failed.
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// The config file is not valid.
    #[error("{CONFIG_FILE}: {0}")]
    Config(String),
}

/// What packing did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PackSummary {
    /// Inodes recorded.
    pub inodes: u64,
    /// Bytes of regular file contents.
    pub bytes: u64,
    /// Chunks referenced.
    pub chunks: u64,
    /// Chunks the store did not have.
    pub new_chunks: u64,
    /// Stored bytes of the new chunks.
    pub new_bytes: u64,
}

struct Packer<'a> {
    flist: &'a Flist,
    store: &'a DirStore,
    next: u64,
    /// Inodes already recorded, by (device, inode) of the source: hardlinks.
    seen: HashMap<(u64, u64), u64>,
    summary: PackSummary,
}

fn read_err(path: &Path) -> impl FnOnce(std::io::Error) -> PackError + '_ {
    move |source| PackError::Read { path: path.display().to_string(), source }
}

/// Pack directory `source` into a new flist at `out`, storing chunks in `store`.
pub fn pack(source: &Path, store: &DirStore, out: &Path) -> Result<PackSummary, PackError> {
    let flist = Flist::create(out)?;
    let mut packer = Packer { flist: &flist, store, next: ROOT, seen: HashMap::new(), summary: PackSummary::default() };
    let root = std::fs::symlink_metadata(source).map_err(read_err(source))?;
    if !root.is_dir() {
        return Err(PackError::Read {
            path: source.display().to_string(),
            source: std::io::ErrorKind::NotADirectory.into(),
        });
    }
    packer.record(source, &root)?;
    packer.walk(source, ROOT)?;
    let config_path = source.join(CONFIG_FILE);
    if config_path.is_file() {
        let text = std::fs::read_to_string(&config_path).map_err(read_err(&config_path))?;
        let config: ImageConfig = serde_json::from_str(&text).map_err(|e| PackError::Config(e.to_string()))?;
        flist.put_config(&config)?;
    }
    let summary = packer.summary.clone();
    flist.finish()?;
    Ok(summary)
}

impl Packer<'_> {
    /// Record the inode at `path` (with `meta`) and return its number.
    fn record(&mut self, path: &Path, meta: &std::fs::Metadata) -> Result<u64, PackError> {
        let ino = self.next;
        self.next += 1;
        let target = if meta.file_type().is_symlink() {
            Some(std::fs::read_link(path).map_err(read_err(path))?.as_os_str().as_bytes().to_vec())
        } else {
            None
        };
        self.flist.put_inode(&Inode {
            ino,
            mode: meta.mode(),
            uid: meta.uid(),
            gid: meta.gid(),
            size: meta.size(),
            mtime: meta.mtime(),
            mtime_nsec: u32::try_from(meta.mtime_nsec()).unwrap_or(0),
            rdev: meta.rdev(),
            target,
        })?;
        for name in xattr::list(path).map_err(read_err(path))? {
            if let Some(value) = xattr::get(path, &name).map_err(read_err(path))? {
                self.flist.put_xattr(ino, name.as_bytes(), &value)?;
            }
        }
        if meta.file_type().is_file() {
            self.chunk(path, ino)?;
        }
        self.summary.inodes += 1;
        Ok(ino)
    }

    fn chunk(&mut self, path: &Path, ino: u64) -> Result<(), PackError> {
        let mut file = std::fs::File::open(path).map_err(read_err(path))?;
        let mut buf = vec![0u8; CHUNK_SIZE];
        for idx in 0u64.. {
            let n = fill(&mut file, &mut buf).map_err(read_err(path))?;
            if n == 0 {
                break;
            }
            let sealed = chunk::seal(&buf[..n]);
            if self.store.put(&sealed.id, &sealed.bytes).map_err(PackError::Store)? {
                self.summary.new_chunks += 1;
                self.summary.new_bytes += sealed.bytes.len() as u64;
            }
            self.flist.put_chunk(ino, idx, &ChunkRef { id: sealed.id, key: sealed.key, size: n as u64 })?;
            self.summary.chunks += 1;
            self.summary.bytes += n as u64;
        }
        Ok(())
    }

    fn walk(&mut self, dir: &Path, parent: u64) -> Result<(), PackError> {
        let mut items: Vec<_> =
            std::fs::read_dir(dir).map_err(read_err(dir))?.collect::<Result<_, _>>().map_err(read_err(dir))?;
        items.sort_by_key(std::fs::DirEntry::file_name);
        for item in items {
            let path = item.path();
            let meta = std::fs::symlink_metadata(&path).map_err(read_err(&path))?;
            let key = (meta.dev(), meta.ino());
            let ino = match self.seen.get(&key) {
                Some(ino) if !meta.is_dir() => *ino,
                _ => {
                    let ino = self.record(&path, &meta)?;
                    if meta.nlink() > 1 && !meta.is_dir() {
                        self.seen.insert(key, ino);
                    }
                    ino
                }
            };
            self.flist.put_entry(parent, item.file_name().as_bytes(), ino)?;
            if meta.is_dir() {
                self.walk(&path, ino)?;
            }
        }
        Ok(())
    }
}

/// Read until `buf` is full or the file ends; the number of bytes read.
fn fill(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}
