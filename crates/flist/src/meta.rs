//! The flist file: one SQLite database holding the whole tree (entries, inodes with modes,
//! owners, times, device numbers and symlink targets, extended attributes), each regular file's
//! chunks, and the image config. See `docs/flist.md`.

use std::path::Path;

use nix::sys::stat::SFlag;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::chunk::Hash;

/// The format written in `meta.format`.
pub const FORMAT: &str = "zgrid-flist/1";
/// The root directory's inode.
pub const ROOT: u64 = 1;

const SCHEMA: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE inode (ino INTEGER PRIMARY KEY, mode INTEGER NOT NULL, uid INTEGER NOT NULL, gid INTEGER NOT NULL,
                    size INTEGER NOT NULL, mtime INTEGER NOT NULL, mtime_nsec INTEGER NOT NULL,
                    rdev INTEGER NOT NULL, target BLOB);
CREATE TABLE entry (parent INTEGER NOT NULL, name BLOB NOT NULL, ino INTEGER NOT NULL, PRIMARY KEY (parent, name));
CREATE INDEX entry_ino ON entry (ino);
CREATE TABLE xattr (ino INTEGER NOT NULL, name BLOB NOT NULL, value BLOB NOT NULL, PRIMARY KEY (ino, name));
CREATE TABLE chunk (ino INTEGER NOT NULL, idx INTEGER NOT NULL, id BLOB NOT NULL, key BLOB NOT NULL,
                    size INTEGER NOT NULL, PRIMARY KEY (ino, idx));
";

/// Why an flist could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// SQLite failed.
    #[error("flist database: {0}")]
    Db(#[from] rusqlite::Error),
    /// The file is not an flist this version reads.
    #[error("not a {FORMAT} file (format {0:?})")]
    Format(String),
    /// A stored value is malformed.
    #[error("corrupt flist: {0}")]
    Corrupt(String),
}

/// What runs when a container starts from the image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// The program and its first arguments.
    #[serde(default)]
    pub entrypoint: Vec<String>,
    /// Arguments after the entrypoint.
    #[serde(default)]
    pub cmd: Vec<String>,
    /// `KEY=VALUE` pairs.
    #[serde(default)]
    pub env: Vec<String>,
    /// Working directory.
    #[serde(default)]
    pub workdir: String,
}

/// One inode's attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inode {
    /// Inode number inside the flist.
    pub ino: u64,
    /// `st_mode`: file type and permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes (a symlink: its target's length).
    pub size: u64,
    /// Modification time, whole seconds.
    pub mtime: i64,
    /// Modification time, nanoseconds part: always 0 in the flists this version writes (see
    /// [`Inode::canonical`]); flists written before may have it, and readers show it.
    pub mtime_nsec: u32,
    /// Device number of a device node.
    pub rdev: u64,
    /// A symlink's target.
    pub target: Option<Vec<u8>>,
}

impl Inode {
    /// This inode as every flist records it, whatever it was packed from (a directory, a tar
    /// in any format, a tar.gz, an image, a merge), so the same tree always gives the same
    /// flist: times in whole seconds (floored; a tar in the GNU format has no more, and a
    /// directory's nanoseconds would make it differ from its own tar), the size of a directory,
    /// device node or fifo 0 and a symlink's its target's length (a host filesystem's directory
    /// sizes say nothing about the image), a device number only on block and character devices,
    /// and a symlink's permission bits 0777 (Linux ignores them).
    pub fn canonical(self) -> Self {
        let kind = self.mode & SFlag::S_IFMT.bits();
        let is = |flag: SFlag| kind == flag.bits();
        let mode = if is(SFlag::S_IFLNK) { kind | 0o777 } else { self.mode };
        let size = if is(SFlag::S_IFREG) {
            self.size
        } else if is(SFlag::S_IFLNK) {
            self.target.as_ref().map_or(0, |t| t.len() as u64)
        } else {
            0
        };
        let rdev = if is(SFlag::S_IFCHR) || is(SFlag::S_IFBLK) { self.rdev } else { 0 };
        Self { mode, size, mtime_nsec: 0, rdev, ..self }
    }
}

/// An extended attribute: name and value.
pub type Xattr = (Vec<u8>, Vec<u8>);

/// One piece of a regular file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkRef {
    /// Stored bytes' hash.
    pub id: Hash,
    /// Plaintext's hash.
    pub key: Hash,
    /// Plaintext length.
    pub size: u64,
}

/// An open flist.
pub struct Flist {
    db: Connection,
}

fn hash(bytes: Vec<u8>) -> Result<Hash, MetaError> {
    bytes.try_into().map_err(|_| MetaError::Corrupt("a chunk hash is not 32 bytes".into()))
}

impl Flist {
    /// Create a new, empty flist file at `path` (replacing one there).
    pub fn create(path: &Path) -> Result<Self, MetaError> {
        let _ = std::fs::remove_file(path);
        let db = Connection::open(path)?;
        db.execute_batch("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; BEGIN;")?;
        db.execute_batch(SCHEMA)?;
        db.execute("INSERT INTO meta (key, value) VALUES ('format', ?1)", [FORMAT])?;
        Ok(Self { db })
    }

    /// Open the flist at `path` read-only.
    pub fn open(path: &Path) -> Result<Self, MetaError> {
        let db = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
        let format: Option<String> =
            db.query_row("SELECT value FROM meta WHERE key = 'format'", [], |r| r.get(0)).optional().unwrap_or(None);
        match format {
            Some(f) if f == FORMAT => Ok(Self { db }),
            other => Err(MetaError::Format(other.unwrap_or_default())),
        }
    }

    /// Finish writing: commit and compact.
    pub fn finish(self) -> Result<(), MetaError> {
        self.db.execute_batch("COMMIT; VACUUM;")?;
        Ok(())
    }

    /// Record an inode, made [`Inode::canonical`] first.
    pub fn put_inode(&self, inode: &Inode) -> Result<(), MetaError> {
        let i = inode.clone().canonical();
        self.db.execute(
            "INSERT INTO inode (ino, mode, uid, gid, size, mtime, mtime_nsec, rdev, target) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![i.ino as i64, i.mode, i.uid, i.gid, i.size as i64, i.mtime, i.mtime_nsec, i.rdev as i64, i.target],
        )?;
        Ok(())
    }

    /// Record directory entry `name` in `parent` for inode `ino`.
    pub fn put_entry(&self, parent: u64, name: &[u8], ino: u64) -> Result<(), MetaError> {
        self.db.execute(
            "INSERT INTO entry (parent, name, ino) VALUES (?1, ?2, ?3)",
            params![parent as i64, name, ino as i64],
        )?;
        Ok(())
    }

    /// Record an extended attribute.
    pub fn put_xattr(&self, ino: u64, name: &[u8], value: &[u8]) -> Result<(), MetaError> {
        self.db
            .execute("INSERT INTO xattr (ino, name, value) VALUES (?1, ?2, ?3)", params![ino as i64, name, value])?;
        Ok(())
    }

    /// Record chunk number `idx` of file `ino`.
    pub fn put_chunk(&self, ino: u64, idx: u64, chunk: &ChunkRef) -> Result<(), MetaError> {
        self.db.execute(
            "INSERT INTO chunk (ino, idx, id, key, size) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![ino as i64, idx as i64, &chunk.id[..], &chunk.key[..], chunk.size as i64],
        )?;
        Ok(())
    }

    /// Record the image config.
    pub fn put_config(&self, config: &ImageConfig) -> Result<(), MetaError> {
        let text = serde_json::to_string(config).expect("configs serialize");
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('config', ?1)", [text])?;
        Ok(())
    }

    /// The image config (empty when none was recorded).
    pub fn config(&self) -> Result<ImageConfig, MetaError> {
        let text: Option<String> =
            self.db.query_row("SELECT value FROM meta WHERE key = 'config'", [], |r| r.get(0)).optional()?;
        text.map_or(Ok(ImageConfig::default()), |t| {
            serde_json::from_str(&t).map_err(|e| MetaError::Corrupt(e.to_string()))
        })
    }

    /// Inode `ino`.
    pub fn inode(&self, ino: u64) -> Result<Option<Inode>, MetaError> {
        let row = self
            .db
            .query_row(
                "SELECT ino, mode, uid, gid, size, mtime, mtime_nsec, rdev, target FROM inode WHERE ino = ?1",
                [ino as i64],
                |r| {
                    Ok(Inode {
                        ino: r.get::<_, i64>(0)? as u64,
                        mode: r.get(1)?,
                        uid: r.get(2)?,
                        gid: r.get(3)?,
                        size: r.get::<_, i64>(4)? as u64,
                        mtime: r.get(5)?,
                        mtime_nsec: r.get(6)?,
                        rdev: r.get::<_, i64>(7)? as u64,
                        target: r.get(8)?,
                    })
                },
            )
            .optional()?;
        Ok(row)
    }

    /// The inode named `name` in directory `parent`.
    pub fn lookup(&self, parent: u64, name: &[u8]) -> Result<Option<u64>, MetaError> {
        let ino: Option<i64> = self
            .db
            .query_row("SELECT ino FROM entry WHERE parent = ?1 AND name = ?2", params![parent as i64, name], |r| {
                r.get(0)
            })
            .optional()?;
        Ok(ino.map(|i| i as u64))
    }

    /// The entries of directory `parent`, by name: `(name, ino)`.
    pub fn entries(&self, parent: u64) -> Result<Vec<(Vec<u8>, u64)>, MetaError> {
        let mut stmt = self.db.prepare_cached("SELECT name, ino FROM entry WHERE parent = ?1 ORDER BY name")?;
        let rows = stmt.query_map([parent as i64], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)? as u64)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// How many entries name inode `ino` (its link count, for files).
    pub fn links(&self, ino: u64) -> Result<u32, MetaError> {
        Ok(self.db.query_row("SELECT COUNT(*) FROM entry WHERE ino = ?1", [ino as i64], |r| r.get(0))?)
    }

    /// The directory holding inode `ino` (one of them, for a hardlinked file; none for the root).
    pub fn parent(&self, ino: u64) -> Result<Option<u64>, MetaError> {
        let parent: Option<i64> = self
            .db
            .query_row("SELECT parent FROM entry WHERE ino = ?1 LIMIT 1", [ino as i64], |r| r.get(0))
            .optional()?;
        Ok(parent.map(|p| p as u64))
    }

    /// How many subdirectories directory `ino` holds (its link count is two more).
    pub fn subdirs(&self, ino: u64) -> Result<u32, MetaError> {
        Ok(self.db.query_row(
            "SELECT COUNT(*) FROM entry JOIN inode ON inode.ino = entry.ino WHERE entry.parent = ?1 AND inode.mode & ?2 = ?3",
            params![ino as i64, SFlag::S_IFMT.bits(), SFlag::S_IFDIR.bits()],
            |r| r.get(0),
        )?)
    }

    /// The extended attributes of inode `ino`.
    pub fn xattrs(&self, ino: u64) -> Result<Vec<Xattr>, MetaError> {
        let mut stmt = self.db.prepare_cached("SELECT name, value FROM xattr WHERE ino = ?1 ORDER BY name")?;
        let rows = stmt.query_map([ino as i64], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The chunks of regular file `ino`, in order.
    pub fn chunks(&self, ino: u64) -> Result<Vec<ChunkRef>, MetaError> {
        let mut stmt = self.db.prepare_cached("SELECT id, key, size FROM chunk WHERE ino = ?1 ORDER BY idx")?;
        let rows = stmt
            .query_map([ino as i64], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?, r.get::<_, i64>(2)?)))?;
        rows.map(|row| {
            let (id, key, size) = row?;
            Ok(ChunkRef { id: hash(id)?, key: hash(key)?, size: size as u64 })
        })
        .collect()
    }

    /// Totals: `(inodes, regular file bytes, chunk references, distinct chunks)`.
    pub fn totals(&self) -> Result<(u64, u64, u64, u64), MetaError> {
        let inodes: i64 = self.db.query_row("SELECT COUNT(*) FROM inode", [], |r| r.get(0))?;
        let (refs, bytes): (i64, Option<i64>) =
            self.db.query_row("SELECT COUNT(*), SUM(size) FROM chunk", [], |r| Ok((r.get(0)?, r.get(1)?)))?;
        let distinct: i64 = self.db.query_row("SELECT COUNT(DISTINCT id) FROM chunk", [], |r| r.get(0))?;
        Ok((inodes as u64, bytes.unwrap_or(0) as u64, refs as u64, distinct as u64))
    }

    /// Every distinct chunk the flist references, with its plaintext length.
    pub fn chunk_sizes(&self) -> Result<Vec<(Hash, u64)>, MetaError> {
        let mut stmt = self.db.prepare("SELECT id, MAX(size) FROM chunk GROUP BY id ORDER BY id")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?)))?;
        rows.map(|row| {
            let (id, size) = row?;
            Ok((hash(id)?, size as u64))
        })
        .collect()
    }

    /// Every distinct chunk the flist references.
    pub fn chunk_ids(&self) -> Result<Vec<Hash>, MetaError> {
        let mut stmt = self.db.prepare("SELECT DISTINCT id FROM chunk ORDER BY id")?;
        let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
        rows.map(|row| hash(row?)).collect()
    }
}
