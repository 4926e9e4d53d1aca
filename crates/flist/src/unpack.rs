//! Reading an flist back: a file's contents from its chunks (each checked before use), a path
//! looked up in the tree, and the whole tree written out to a directory, with modes, owners,
//! times, symlinks, hardlinks, device nodes and extended attributes.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::sys::stat::{Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;

use crate::chunk::{self, ChunkError};
use crate::meta::{Flist, Inode, MetaError, ROOT};
use crate::store::DirStore;

/// Why reading failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The flist is unreadable.
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// A chunk is missing from the store.
    #[error("chunk {id} is not in the store: {source}")]
    Missing {
        /// The chunk.
        id: String,
        /// Why.
        source: std::io::Error,
    },
    /// A chunk failed its checks.
    #[error(transparent)]
    Chunk(#[from] ChunkError),
    /// No such path in the flist.
    #[error("{0}: no such file in the flist")]
    NotFound(String),
    /// Writing the output failed.
    #[error("{path}: {source}")]
    Write {
        /// Where.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Write the contents of regular file `ino` to `out`, chunk by chunk.
pub fn copy_file(flist: &Flist, store: &DirStore, ino: u64, out: &mut impl Write) -> Result<(), ReadError> {
    for c in flist.chunks(ino)? {
        let bytes = store.get(&c.id).map_err(|source| ReadError::Missing { id: hex::encode(c.id), source })?;
        let plain = chunk::open(&c.id, &c.key, usize::try_from(c.size).unwrap_or(usize::MAX), &bytes)?;
        out.write_all(&plain).map_err(|source| ReadError::Write { path: "output".into(), source })?;
    }
    Ok(())
}

/// The inode at `path` (absolute or relative to the root; symlinks are not followed).
pub fn resolve(flist: &Flist, path: &str) -> Result<u64, ReadError> {
    let mut ino = ROOT;
    for part in path.split('/').filter(|p| !p.is_empty() && *p != ".") {
        ino = flist.lookup(ino, part.as_bytes())?.ok_or_else(|| ReadError::NotFound(path.to_owned()))?;
    }
    Ok(ino)
}

/// Write the whole tree of `flist` into `dest` (which must be empty or absent). Owners and
/// device nodes need root.
pub fn unpack(flist: &Flist, store: &DirStore, dest: &Path) -> Result<(), ReadError> {
    let werr = |path: &Path| {
        let path = path.display().to_string();
        move |source: std::io::Error| ReadError::Write { path, source }
    };
    std::fs::create_dir_all(dest).map_err(werr(dest))?;
    let mut done: HashMap<u64, PathBuf> = HashMap::new();
    let mut dirs = vec![(ROOT, dest.to_path_buf())];
    let mut order = Vec::new();
    while let Some((dir, at)) = dirs.pop() {
        for (name, ino) in flist.entries(dir)? {
            let path = at.join(OsStr::from_bytes(&name));
            if let Some(first) = done.get(&ino) {
                std::fs::hard_link(first, &path).map_err(werr(&path))?;
                continue;
            }
            let inode =
                flist.inode(ino)?.ok_or_else(|| MetaError::Corrupt(format!("entry for missing inode {ino}")))?;
            create(flist, store, &inode, &path)?;
            if inode.mode & libc_type_mask() == SFlag::S_IFDIR.bits() {
                dirs.push((ino, path.clone()));
            }
            done.insert(ino, path.clone());
            order.push((inode, path));
        }
    }
    // Attributes last, deepest first, so a read-only directory or a set time is not undone.
    let root = flist.inode(ROOT)?.ok_or_else(|| MetaError::Corrupt("no root inode".into()))?;
    order.insert(0, (root, dest.to_path_buf()));
    for (inode, path) in order.iter().rev() {
        attributes(flist, inode, path).map_err(werr(path))?;
    }
    Ok(())
}

fn libc_type_mask() -> u32 {
    SFlag::S_IFMT.bits()
}

fn create(flist: &Flist, store: &DirStore, inode: &Inode, path: &Path) -> Result<(), ReadError> {
    let werr = |source: std::io::Error| ReadError::Write { path: path.display().to_string(), source };
    let kind = inode.mode & libc_type_mask();
    if kind == SFlag::S_IFDIR.bits() {
        std::fs::create_dir(path).map_err(werr)?;
    } else if kind == SFlag::S_IFREG.bits() {
        let mut file = std::fs::File::create(path).map_err(werr)?;
        copy_file(flist, store, inode.ino, &mut file)?;
    } else if kind == SFlag::S_IFLNK.bits() {
        let target = inode.target.clone().unwrap_or_default();
        std::os::unix::fs::symlink(OsStr::from_bytes(&target), path).map_err(werr)?;
    } else {
        let sflag = SFlag::from_bits_truncate(kind);
        nix::sys::stat::mknod(path, sflag, Mode::from_bits_truncate(inode.mode & 0o7777), inode.rdev)
            .map_err(|e| werr(e.into()))?;
    }
    Ok(())
}

fn attributes(flist: &Flist, inode: &Inode, path: &Path) -> std::io::Result<()> {
    let is_link = inode.mode & libc_type_mask() == SFlag::S_IFLNK.bits();
    std::os::unix::fs::lchown(path, Some(inode.uid), Some(inode.gid))?;
    for (name, value) in flist.xattrs(inode.ino).map_err(std::io::Error::other)? {
        xattr::set(path, OsStr::from_bytes(&name), &value)?;
    }
    if !is_link {
        nix::sys::stat::fchmodat(
            nix::fcntl::AT_FDCWD,
            path,
            Mode::from_bits_truncate(inode.mode & 0o7777),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )?;
    }
    let time = TimeSpec::new(inode.mtime, i64::from(inode.mtime_nsec));
    nix::sys::stat::utimensat(nix::fcntl::AT_FDCWD, path, &time, &time, UtimensatFlags::NoFollowSymlink)?;
    Ok(())
}
