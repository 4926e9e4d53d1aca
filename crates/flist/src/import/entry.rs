//! Reading one tar entry: what it adds to the tree (a node with its attributes, file contents
//! chunked into the store as they stream past) or which earlier path it hardlinks to.

use std::collections::BTreeMap;
use std::io::Read;

use nix::sys::stat::SFlag;

use super::tree::{Attrs, Body, Node};
use super::{ImportError, read_err, split};
use crate::pack::{PackSummary, store_chunks};
use crate::store::DirStore;

/// What a tar entry asks for.
pub(super) enum Action {
    /// A new node.
    Add(Node),
    /// Another name for the node at this path.
    Link(Vec<Vec<u8>>),
}

/// What tar `entry` of archive `what` holds, its contents chunked into `store`; None for entries
/// that describe nothing (global PAX headers).
pub(super) fn read(
    entry: &mut tar::Entry<impl Read>,
    what: &str,
    store: &DirStore,
    summary: &mut PackSummary,
) -> Result<Option<Action>, ImportError> {
    let node = |entry: &mut tar::Entry<_>, kind, body| {
        attrs(entry, kind).map(|attrs| Node { attrs, body }).map_err(read_err(what))
    };
    Ok(Some(match entry.header().entry_type() {
        tar::EntryType::XGlobalHeader => return Ok(None),
        tar::EntryType::Link => {
            let target = entry.link_name_bytes().unwrap_or_default();
            Action::Link(split(&target).ok_or_else(|| escape(what, &target))?)
        }
        tar::EntryType::Directory => Action::Add(node(entry, SFlag::S_IFDIR, Body::Dir(BTreeMap::new()))?),
        tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
            if pax_sparse(entry).map_err(read_err(what))? {
                // The tar reader expands GNU sparse entries but not PAX ones: refused rather than
                // imported as their raw map and data, under a made-up name.
                let reason = "a sparse file in the POSIX format (GNU tar -S --format=posix) cannot be read; \
                              make the tar without -S, or with -S in the default GNU format"
                    .into();
                return Err(entry_err(what, &entry.path_bytes(), reason));
            }
            let mut file = node(entry, SFlag::S_IFREG, Body::File(Vec::new()))?;
            let shown = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            file.body = Body::File(store_chunks(entry, &format_args!("{what}: {shown}"), store, summary)?);
            Action::Add(file)
        }
        tar::EntryType::Symlink => {
            let target = entry.link_name_bytes().unwrap_or_default().into_owned();
            Action::Add(node(entry, SFlag::S_IFLNK, Body::Symlink(target))?)
        }
        tar::EntryType::Char => Action::Add(node(entry, SFlag::S_IFCHR, Body::Special)?),
        tar::EntryType::Block => Action::Add(node(entry, SFlag::S_IFBLK, Body::Special)?),
        tar::EntryType::Fifo => Action::Add(node(entry, SFlag::S_IFIFO, Body::Special)?),
        other => {
            let reason =
                format!("tar entry type {other:?} is not supported; rebuild the archive with GNU or POSIX tar");
            return Err(entry_err(what, &entry.path_bytes(), reason));
        }
    }))
}

pub(super) fn entry_err(what: &str, path: &[u8], reason: String) -> ImportError {
    ImportError::Entry { archive: what.into(), path: String::from_utf8_lossy(path).into(), reason }
}

pub(super) fn escape(what: &str, path: &[u8]) -> ImportError {
    ImportError::Escape { archive: what.into(), path: String::from_utf8_lossy(path).into() }
}

/// The attributes of tar `entry`, a `kind`: its header, with PAX records for the time (whole
/// seconds, as every flist has them) and `SCHILY.xattr.*` extended attributes (owners from PAX
/// the tar crate applies).
fn attrs(entry: &mut tar::Entry<impl Read>, kind: SFlag) -> std::io::Result<Attrs> {
    let invalid = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("invalid {what}"));
    let header = entry.header();
    let rdev = match kind {
        SFlag::S_IFCHR | SFlag::S_IFBLK => nix::sys::stat::makedev(
            header.device_major()?.unwrap_or(0).into(),
            header.device_minor()?.unwrap_or(0).into(),
        ),
        _ => 0,
    };
    let mut attrs = Attrs {
        mode: kind.bits() | (header.mode()? & 0o7777),
        uid: u32::try_from(header.uid()?).map_err(|_| invalid("uid"))?,
        gid: u32::try_from(header.gid()?).map_err(|_| invalid("gid"))?,
        // GNU tar writes a time before 1970 in base 256, two's complement, which the tar reader
        // returns as the same 64 bits unsigned.
        mtime: header.mtime()?.cast_signed(),
        rdev,
        xattrs: BTreeMap::new(),
    };
    for record in entry.pax_extensions()?.into_iter().flatten() {
        let record = record?;
        if let Some(name) = record.key_bytes().strip_prefix(b"SCHILY.xattr.") {
            attrs.xattrs.insert(name.to_vec(), record.value_bytes().to_vec());
        } else if record.key_bytes() == b"mtime" {
            attrs.mtime = pax_time(record.value_bytes()).ok_or_else(|| invalid("PAX mtime"))?;
        }
    }
    Ok(attrs)
}

/// Whether tar `entry` is a sparse file in the PAX format (`GNU.sparse.*` records).
fn pax_sparse(entry: &mut tar::Entry<impl Read>) -> std::io::Result<bool> {
    for record in entry.pax_extensions()?.into_iter().flatten() {
        if record?.key_bytes().starts_with(b"GNU.sparse.") {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A PAX time (`[-]SECONDS[.FRACTION]`) in whole seconds, floored (as `st_mtime` is).
fn pax_time(value: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(value).ok()?;
    let (negative, text) = text.strip_prefix('-').map_or((false, text), |t| (true, t));
    let (secs, fraction) = text.split_once('.').unwrap_or((text, ""));
    let secs: i64 = secs.parse().ok()?;
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let fractional = fraction.bytes().any(|b| b != b'0');
    Some(match (negative, fractional) {
        (false, _) => secs,
        (true, false) => -secs,
        (true, true) => -secs - 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_times_are_floored_to_whole_seconds() {
        assert_eq!(pax_time(b"1600000000.123456789"), Some(1_600_000_000));
        assert_eq!(pax_time(b"1600000000.999999999"), Some(1_600_000_000));
        assert_eq!(pax_time(b"42"), Some(42));
        assert_eq!(pax_time(b"42.000"), Some(42));
        assert_eq!(pax_time(b"-1.25"), Some(-2));
        assert_eq!(pax_time(b"-3"), Some(-3));
        assert_eq!(pax_time(b"-3.0"), Some(-3));
        assert_eq!(pax_time(b"1.x"), None);
    }
}
