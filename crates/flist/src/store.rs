//! Where chunks are kept: a directory today (`<dir>/<id[0..2]>/<id>`); the hub serves the same
//! names over HTTP.

use std::io::Write;
use std::path::PathBuf;

use crate::chunk::Hash;

/// A directory of chunks named by their id.
#[derive(Debug, Clone)]
pub struct DirStore {
    root: PathBuf,
}

impl DirStore {
    /// The store in `root` (created when first written to).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Where chunk `id` lives.
    pub fn path(&self, id: &Hash) -> PathBuf {
        let name = hex::encode(id);
        self.root.join(&name[..2]).join(name)
    }

    /// Whether chunk `id` is stored.
    pub fn has(&self, id: &Hash) -> bool {
        self.path(id).exists()
    }

    /// Store chunk `id` unless it is there; written aside and renamed, so a reader never sees
    /// half a chunk, and synced, so it survives a crash once this returns. Returns whether it
    /// was new.
    pub fn put(&self, id: &Hash, bytes: &[u8]) -> std::io::Result<bool> {
        self.write(id, bytes, true)
    }

    /// [`DirStore::put`] without the sync, for a cache: after a crash a chunk may be missing or
    /// damaged, which its check on every read catches (it is then fetched again).
    pub fn put_cached(&self, id: &Hash, bytes: &[u8]) -> std::io::Result<bool> {
        self.write(id, bytes, false)
    }

    /// Store chunk `id` from `file`, a temporary file holding its bytes on the store's file
    /// system (moved into place, not copied), unless it is there; synced, like
    /// [`DirStore::put`]. Returns whether it was new.
    pub fn put_file(&self, id: &Hash, file: tempfile::NamedTempFile) -> std::io::Result<bool> {
        self.place(id, |_| {
            file.as_file().sync_all()?;
            Ok(file)
        })
    }

    fn write(&self, id: &Hash, bytes: &[u8], durable: bool) -> std::io::Result<bool> {
        self.place(id, |dir| {
            let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
            tmp.write_all(bytes)?;
            if durable {
                tmp.as_file().sync_all()?;
            }
            Ok(tmp)
        })
    }

    /// Unless chunk `id` is there, rename the file `make` writes (given the chunk's directory)
    /// into place; whether it was new.
    fn place(
        &self,
        id: &Hash,
        make: impl FnOnce(&std::path::Path) -> std::io::Result<tempfile::NamedTempFile>,
    ) -> std::io::Result<bool> {
        let path = self.path(id);
        if path.exists() {
            return Ok(false);
        }
        let dir = path.parent().expect("chunk paths have a parent");
        std::fs::create_dir_all(dir)?;
        make(dir)?.persist(&path).map_err(|e| e.error)?;
        Ok(true)
    }

    /// The stored bytes of chunk `id`.
    pub fn get(&self, id: &Hash) -> std::io::Result<Vec<u8>> {
        std::fs::read(self.path(id))
    }
}
