//! A sample tree with one of everything an flist keeps, and a description of a tree that two
//! trees share exactly when they hold the same contents, modes, owners, times (in whole seconds,
//! as flists keep them), symlinks, hardlinks, device nodes, fifos and extended attributes.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use nix::sys::stat::{Mode, SFlag};

/// Everything a copy of a tree must keep, per relative path. Directories are walked in name
/// order, so a hardlink group is named after the same first path in any two trees.
pub fn describe(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<u64, String> = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut paths: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|item| item.unwrap().path()).collect();
        paths.sort();
        for path in paths {
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let m = std::fs::symlink_metadata(&path).unwrap();
            let mut d = format!("mode={:o} uid={} gid={} mtime={}", m.mode(), m.uid(), m.gid(), m.mtime());
            if m.is_file() {
                d += &format!(" size={} hash={}", m.len(), blake3::hash(&std::fs::read(&path).unwrap()).to_hex());
                if m.nlink() > 1 {
                    let first = inodes.entry(m.ino()).or_insert_with(|| rel.clone());
                    d += &format!(" link-of={first}");
                }
            } else if m.file_type().is_symlink() {
                d += &format!(" -> {}", std::fs::read_link(&path).unwrap().display());
            } else if m.is_dir() {
                stack.push(path.clone());
            } else {
                d += &format!(" rdev={}", m.rdev());
            }
            let mut names: Vec<_> = xattr::list(&path).unwrap().collect();
            names.sort();
            for name in names {
                d += &format!(" xattr {}={:?}", name.to_string_lossy(), xattr::get(&path, &name).unwrap());
            }
            out.insert(rel, d);
        }
    }
    out
}

fn set_time(path: &Path, secs: i64, nsec: i64) {
    let t = nix::sys::time::TimeSpec::new(secs, nsec);
    nix::sys::stat::utimensat(nix::fcntl::AT_FDCWD, path, &t, &t, nix::sys::stat::UtimensatFlags::NoFollowSymlink)
        .unwrap();
}

/// A tree with one of everything (as root: owners, a device node, `trusted.*` xattrs).
pub fn sample(root: &Path) {
    std::fs::create_dir_all(root.join("etc/app")).unwrap();
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::write(root.join("etc/app/config"), "key = value\n").unwrap();
    std::fs::write(root.join("empty"), "").unwrap();
    let big: Vec<u8> = (0..(5u32 << 19)).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(root.join("bin/big"), &big).unwrap();
    std::fs::set_permissions(root.join("bin/big"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    std::fs::hard_link(root.join("bin/big"), root.join("bin/big-again")).unwrap();
    std::os::unix::fs::symlink("../etc/app/config", root.join("bin/relative")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target", root.join("dangling")).unwrap();
    nix::unistd::mkfifo(&root.join("pipe"), Mode::from_bits_truncate(0o640)).unwrap();
    nix::sys::stat::mknod(
        &root.join("null"),
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 3),
    )
    .unwrap();
    xattr::set(root.join("etc/app/config"), "user.origin", b"zgrid test").unwrap();
    xattr::set(root.join("bin"), "trusted.note", b"\x00\x01binary").unwrap();
    std::os::unix::fs::lchown(root.join("etc/app/config"), Some(1234), Some(5678)).unwrap();
    std::os::unix::fs::lchown(root.join("bin/relative"), Some(42), Some(43)).unwrap();
    std::fs::set_permissions(root.join("etc/app"), std::fs::Permissions::from_mode(0o750)).unwrap();
    set_time(&root.join("etc/app/config"), 1_600_000_000, 123_456_789);
    set_time(&root.join("bin/relative"), 1_500_000_000, 0);
    set_time(&root.join("etc/app"), 1_400_000_000, 5);
}
