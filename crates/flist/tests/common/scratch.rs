//! A temporary directory with a chunk store in it, for tests that import into flists. Include it
//! with `#[path = "common/scratch.rs"] mod scratch;`; a test adds its own methods in an `impl`
//! of its own.

use std::path::{Path, PathBuf};

use zgrid_flist::{DirStore, import};

/// A temporary directory with a chunk store in it.
pub struct Scratch {
    dir: tempfile::TempDir,
    /// The chunk store, in `store/` of the directory.
    pub store: DirStore,
}

impl Scratch {
    /// A new, empty directory and store.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = DirStore::new(dir.path().join("store"));
        Self { dir, store }
    }

    /// `name` in the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Import `source` into `<name>.flist`; the flist's path.
    pub fn import(&self, source: &Path, name: &str) -> PathBuf {
        let out = self.path(&format!("{name}.flist"));
        import(source, &self.store, &out).unwrap_or_else(|e| panic!("importing {}: {e}", source.display()));
        out
    }
}
