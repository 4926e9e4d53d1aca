//! Turning a directory into an flist: every entry's metadata into the database, every regular
//! file's contents into sealed chunks in a store (a chunk the store has is not written again).

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use crate::chunk;
use crate::meta::{ChunkRef, Flist, ImageConfig, Inode, MetaError, ROOT};
use crate::store::DirStore;

/// Content-defined chunking (FastCDC 2020, normalisation level 1, per file): no chunk is
/// smaller than this unless the file is, ...
pub const MIN_CHUNK: usize = 256 << 10;
/// ... chunks average this size, ...
pub const AVG_CHUNK: usize = 1 << 20;
/// ... and none is larger than this. The choice was measured: see `docs/flist.md`.
pub const MAX_CHUNK: usize = 4 << 20;
/// Where an image directory keeps its config (the node's container runtime reads the same).
pub const CONFIG_FILE: &str = ".zgrid/config.json";

/// Why packing failed.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// Reading the source failed.
    #[error("cannot read {path}")]
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
            // Made canonical when recorded (`Inode::canonical`): whole seconds, no directory
            // size, so a tree and its tar give the same flist.
            size: meta.size(),
            mtime: meta.mtime(),
            mtime_nsec: 0,
            rdev: meta.rdev(),
            target,
        })?;
        // In name order, as an archive's are, not in the host filesystem's.
        let mut names: Vec<_> = xattr::list(path).map_err(read_err(path))?.collect();
        names.sort();
        for name in names {
            if let Some(value) = xattr::get(path, &name).map_err(read_err(path))? {
                self.flist.put_xattr(ino, name.as_bytes(), &value)?;
            }
        }
        if meta.file_type().is_file() {
            let mut file = std::fs::File::open(path).map_err(read_err(path))?;
            let chunks = store_chunks(&mut file, &path.display(), self.store, &mut self.summary)?;
            put_chunks(self.flist, ino, &chunks, &mut self.summary)?;
        }
        self.summary.inodes += 1;
        Ok(ino)
    }

    fn walk(&mut self, dir: &Path, parent: u64) -> Result<(), PackError> {
        let mut items: Vec<_> =
            std::fs::read_dir(dir).map_err(read_err(dir))?.collect::<Result<_, _>>().map_err(read_err(dir))?;
        items.sort_by_key(std::fs::DirEntry::file_name);
        for item in items {
            let path = item.path();
            let meta = std::fs::symlink_metadata(&path).map_err(read_err(&path))?;
            // A socket belongs to a running program, not to an image (and no tar holds one).
            if meta.file_type().is_socket() {
                continue;
            }
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

/// Cut `reader`'s contents into chunks, seal them and store those `store` lacks (counted in
/// `summary.new_*`); the chunks in order. All chunking goes through here, so the chunk size and
/// method live in one place. `what` names the reader in errors.
pub(crate) fn store_chunks(
    reader: &mut impl Read,
    what: &dyn std::fmt::Display,
    store: &DirStore,
    summary: &mut PackSummary,
) -> Result<Vec<ChunkRef>, PackError> {
    let mut chunks = Vec::new();
    for piece in fastcdc::v2020::StreamCDC::new(reader, MIN_CHUNK, AVG_CHUNK, MAX_CHUNK) {
        let piece = piece.map_err(|e| PackError::Read { path: what.to_string(), source: e.into() })?;
        let sealed = chunk::seal(&piece.data);
        if store.put(&sealed.id, &sealed.bytes).map_err(PackError::Store)? {
            summary.new_chunks += 1;
            summary.new_bytes += sealed.bytes.len() as u64;
        }
        chunks.push(ChunkRef { id: sealed.id, key: sealed.key, size: piece.length as u64 });
    }
    Ok(chunks)
}

/// Record `chunks` as the contents of file `ino` (counted in `summary.chunks` and `.bytes`).
pub(crate) fn put_chunks(
    flist: &Flist,
    ino: u64,
    chunks: &[ChunkRef],
    summary: &mut PackSummary,
) -> Result<(), MetaError> {
    for (idx, c) in (0u64..).zip(chunks) {
        flist.put_chunk(ino, idx, c)?;
        summary.chunks += 1;
        summary.bytes += c.size;
    }
    Ok(())
}
