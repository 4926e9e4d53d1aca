//! Reading what an import is given: compression recognised by magic bytes, and the members of
//! an image, whether it is a directory or a tar (indexed once, so each member can be read again
//! later straight from the tar, without extracting anything).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::{ImportError, read_err, split};

/// How many symlinks and hardlinks between tar members are followed before giving up.
const MAX_HOPS: usize = 16;

/// `reader`, decompressed if it starts with gzip or zstd magic bytes.
pub(super) fn decompress<'a>(reader: impl Read + 'a) -> std::io::Result<Box<dyn Read + 'a>> {
    let mut reader = BufReader::new(reader);
    let head = reader.fill_buf()?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(reader))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(reader)?)
    } else {
        Box::new(reader)
    })
}

/// Whether the file at `path` is compressed (its decompressed bytes differ from its bytes).
pub(super) fn is_compressed(path: &Path) -> Result<bool, ImportError> {
    let mut head = Vec::with_capacity(4);
    File::open(path).and_then(|f| f.take(4).read_to_end(&mut head)).map_err(read_err(path.display()))?;
    Ok(head.starts_with(&[0x1f, 0x8b]) || head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]))
}

/// Whether tar `reader` has an image's top-level marker (`manifest.json` or `oci-layout`).
pub(super) fn names_image(reader: impl Read, what: &str) -> Result<bool, ImportError> {
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(read_err(what))? {
        let entry = entry.map_err(read_err(what))?;
        let top = split(&entry.path_bytes());
        if top.is_some_and(|p| matches!(p.as_slice(), [name] if name == b"manifest.json" || name == b"oci-layout")) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The files of an image, by relative path (`index.json`, `blobs/sha256/…`).
pub(super) trait Members {
    /// Whether member `name` exists.
    fn has(&self, name: &str) -> bool;
    /// Member `name`'s contents.
    fn open(&self, name: &str) -> Result<Box<dyn Read>, ImportError>;
}

/// An image layout unpacked in a directory.
pub(super) struct DirMembers(pub PathBuf);

impl Members for DirMembers {
    fn has(&self, name: &str) -> bool {
        self.0.join(name).is_file()
    }

    fn open(&self, name: &str) -> Result<Box<dyn Read>, ImportError> {
        let path = self.0.join(name);
        match File::open(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ImportError::Missing { name: name.into() }),
            file => Ok(Box::new(file.map_err(read_err(path.display()))?)),
        }
    }
}

/// Where a tar member's contents are.
enum Member {
    /// At `offset` in the tar, `len` bytes.
    Data { offset: u64, len: u64 },
    /// The same as another member (a symlink or hardlink to it).
    Link(String),
}

/// An uncompressed tar, indexed by member name.
pub(super) struct TarMembers {
    path: PathBuf,
    members: HashMap<String, Member>,
}

impl TarMembers {
    /// Index the tar at `path`, reading only its headers.
    pub(super) fn read(path: &Path) -> Result<Self, ImportError> {
        let what = path.display();
        let mut archive = tar::Archive::new(File::open(path).map_err(read_err(&what))?);
        let mut members = HashMap::new();
        for entry in archive.entries_with_seek().map_err(read_err(&what))? {
            let entry = entry.map_err(read_err(&what))?;
            let Some(parts) = split(&entry.path_bytes()) else { continue };
            let name = String::from_utf8_lossy(&parts.join(&b'/')).into_owned();
            let member = match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    Member::Data { offset: entry.raw_file_position(), len: entry.size() }
                }
                tar::EntryType::Link => {
                    Member::Link(entry.link_name_bytes().and_then(|t| member(&t)).unwrap_or_default())
                }
                tar::EntryType::Symlink => {
                    let target = entry.link_name_bytes().unwrap_or_default();
                    Member::Link(resolve(&parts[..parts.len().saturating_sub(1)], &target).unwrap_or_default())
                }
                _ => continue,
            };
            members.insert(name, member);
        }
        Ok(Self { path: path.to_owned(), members })
    }

    /// Where member `name`'s contents are, following links.
    fn find(&self, name: &str) -> Option<(u64, u64)> {
        let mut name = name;
        for _ in 0..MAX_HOPS {
            match self.members.get(name)? {
                Member::Data { offset, len } => return Some((*offset, *len)),
                Member::Link(target) => name = target,
            }
        }
        None
    }
}

impl Members for TarMembers {
    fn has(&self, name: &str) -> bool {
        self.find(name).is_some()
    }

    fn open(&self, name: &str) -> Result<Box<dyn Read>, ImportError> {
        let (offset, len) = self.find(name).ok_or_else(|| ImportError::Missing { name: name.into() })?;
        let mut file = File::open(&self.path).map_err(read_err(self.path.display()))?;
        file.seek(SeekFrom::Start(offset)).map_err(read_err(self.path.display()))?;
        Ok(Box::new(file.take(len)))
    }
}

/// Archive path `path` as a member name (`a/b`); None if it climbs out with `..`.
pub(super) fn member(path: &[u8]) -> Option<String> {
    split(path).map(|parts| String::from_utf8_lossy(&parts.join(&b'/')).into_owned())
}

/// Symlink `target` found in directory `dir` of a tar, as a member name (`..` may climb back
/// towards the root but not above it).
fn resolve(dir: &[Vec<u8>], target: &[u8]) -> Option<String> {
    let mut parts: Vec<&[u8]> =
        if target.starts_with(b"/") { Vec::new() } else { dir.iter().map(Vec::as_slice).collect() };
    for part in target.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                parts.pop()?;
            }
            _ => parts.push(part),
        }
    }
    Some(String::from_utf8_lossy(&parts.join(&b'/')).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_between_members_resolve_inside_the_tar() {
        let dir = [b"abc".to_vec()];
        assert_eq!(resolve(&dir, b"../def/layer.tar").as_deref(), Some("def/layer.tar"));
        assert_eq!(resolve(&dir, b"/x/./y").as_deref(), Some("x/y"));
        assert_eq!(resolve(&dir, b"../../etc/passwd"), None, "not above the root");
    }
}
