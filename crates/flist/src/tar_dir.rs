//! Writing a directory as a tar that imports into the same flist as packing the directory
//! itself (see "Canonical form" in `docs/flist.md`): entries depth first in name order, the root
//! as `./`, hardlinks as links to their first name, extended attributes as PAX `SCHILY.xattr.*`
//! records, times before 1970 as PAX `mtime` records, device numbers, fifos; sockets are left
//! out, as packing leaves them. Used to send a directory to a hub for import.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Write directory `source` as a tar into `out` (finished); `out` back.
pub fn tar_dir<W: Write>(source: &Path, out: W) -> std::io::Result<W> {
    let mut writer = TarWriter { builder: tar::Builder::new(out), links: HashMap::new() };
    let root = std::fs::symlink_metadata(source).map_err(at(source))?;
    if !root.is_dir() {
        return Err(at(source)(std::io::ErrorKind::NotADirectory.into()));
    }
    writer.append(source, Path::new("."), &root)?;
    writer.walk(source, Path::new("."))?;
    writer.builder.into_inner()
}

/// `error`, saying which path it is about.
fn at(path: &Path) -> impl FnOnce(std::io::Error) -> std::io::Error + '_ {
    move |error| std::io::Error::new(error.kind(), format!("{}: {error}", path.display()))
}

struct TarWriter<W: Write> {
    builder: tar::Builder<W>,
    /// The name in the tar of each hardlinked inode written, by (device, inode) on the host.
    links: HashMap<(u64, u64), PathBuf>,
}

impl<W: Write> TarWriter<W> {
    fn walk(&mut self, dir: &Path, name: &Path) -> std::io::Result<()> {
        let mut items: Vec<_> = std::fs::read_dir(dir).and_then(Iterator::collect).map_err(at(dir))?;
        items.sort_by_key(std::fs::DirEntry::file_name);
        for item in items {
            let path = item.path();
            let meta = std::fs::symlink_metadata(&path).map_err(at(&path))?;
            let inner = name.join(item.file_name());
            self.append(&path, &inner, &meta)?;
            if meta.is_dir() {
                self.walk(&path, &inner)?;
            }
        }
        Ok(())
    }

    /// Append the entry at `path` (with `meta`) as `name`.
    fn append(&mut self, path: &Path, name: &Path, meta: &std::fs::Metadata) -> std::io::Result<()> {
        let kind = meta.file_type();
        if kind.is_socket() {
            return Ok(());
        }
        let mut header = tar::Header::new_gnu();
        header.set_metadata(meta);
        let key = (meta.dev(), meta.ino());
        if !meta.is_dir() && meta.nlink() > 1 {
            if let Some(first) = self.links.get(&key) {
                header.set_entry_type(tar::EntryType::Link);
                header.set_size(0);
                return self.builder.append_link(&mut header, name, first);
            }
            self.links.insert(key, name.to_owned());
        }
        let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
        if meta.mtime() < 0 {
            header.set_mtime(0);
            pax.push(("mtime".into(), meta.mtime().to_string().into_bytes()));
        }
        let mut names: Vec<_> = xattr::list(path).map_err(at(path))?.collect();
        names.sort();
        for xattr in names {
            let text = xattr.to_str().ok_or_else(|| {
                let shown = String::from_utf8_lossy(xattr.as_bytes());
                at(path)(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("xattr name {shown:?} is not UTF-8"),
                ))
            })?;
            if let Some(value) = xattr::get(path, &xattr).map_err(at(path))? {
                pax.push((format!("SCHILY.xattr.{text}"), value));
            }
        }
        self.builder.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))?;
        if kind.is_symlink() {
            let target = std::fs::read_link(path).map_err(at(path))?;
            return self.builder.append_link(&mut header, name, target);
        }
        if kind.is_char_device() || kind.is_block_device() {
            let rdev = meta.rdev();
            header.set_device_major(u32::try_from(nix::sys::stat::major(rdev)).unwrap_or(u32::MAX))?;
            header.set_device_minor(u32::try_from(nix::sys::stat::minor(rdev)).unwrap_or(u32::MAX))?;
        }
        if kind.is_file() {
            let file = std::fs::File::open(path).map_err(at(path))?;
            return self.builder.append_data(&mut header, name, file);
        }
        self.builder.append_data(&mut header, name, std::io::empty())
    }
}
