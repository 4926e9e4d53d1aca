//! An flist made from a directory and unpacked again gives the same tree: contents, modes,
//! owners, times, symlinks, hardlinks, device nodes, fifos and extended attributes (as root).
//! A second version that changes one file stores only that file's new chunks, and a corrupted
//! chunk is refused, never returned as data.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use nix::sys::stat::{Mode, SFlag};
use zgrid_flist::{DirStore, Flist, pack, unpack};

/// Everything the round trip must keep, per relative path.
fn describe(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<u64, String> = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for item in std::fs::read_dir(&dir).unwrap() {
            let path = item.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let m = std::fs::symlink_metadata(&path).unwrap();
            let mut d =
                format!("mode={:o} uid={} gid={} mtime={}.{}", m.mode(), m.uid(), m.gid(), m.mtime(), m.mtime_nsec());
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

/// A tree with one of everything.
fn sample(root: &Path) {
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

#[test]
fn a_tree_survives_the_round_trip_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (source, dest, store) =
        (dir.path().join("src"), dir.path().join("dest"), DirStore::new(dir.path().join("store")));
    sample(&source);
    let out = dir.path().join("image.flist");
    let summary = pack(&source, &store, &out).unwrap();
    assert_eq!(summary.bytes, (5 << 19) + 12, "the hardlinked file counts once");
    assert_eq!(summary.chunks, 4, "2.5 MiB in 1 MiB chunks, plus one for the config");
    unpack(&Flist::open(&out).unwrap(), &store, &dest).unwrap();
    assert_eq!(describe(&dest), describe(&source));
    let root = |p: &Path| std::fs::symlink_metadata(p).unwrap().mode();
    assert_eq!(root(&dest), root(&source));
}

#[test]
fn a_second_version_stores_only_the_changed_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let store = DirStore::new(dir.path().join("store"));
    let source = dir.path().join("src");
    sample(&source);
    let first = pack(&source, &store, &dir.path().join("v1.flist")).unwrap();
    assert_eq!(first.new_chunks, first.chunks);
    std::fs::write(source.join("etc/app/config"), "key = other value\n").unwrap();
    let second = pack(&source, &store, &dir.path().join("v2.flist")).unwrap();
    assert_eq!((second.chunks, second.new_chunks), (first.chunks, 1), "only the changed file's chunk is new");
}

#[test]
fn a_corrupted_chunk_is_refused_not_returned() {
    let dir = tempfile::tempdir().unwrap();
    let store = DirStore::new(dir.path().join("store"));
    let source = dir.path().join("src");
    std::fs::create_dir_all(&source).unwrap();
    std::fs::write(source.join("file"), "precious contents").unwrap();
    let out = dir.path().join("image.flist");
    pack(&source, &store, &out).unwrap();
    let flist = Flist::open(&out).unwrap();
    let ino = zgrid_flist::resolve(&flist, "/file").unwrap();
    let chunk = &flist.chunks(ino).unwrap()[0];
    let path = store.path(&chunk.id);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[3] ^= 0x40;
    std::fs::write(&path, bytes).unwrap();
    let mut got = Vec::new();
    let err = zgrid_flist::copy_file(&flist, &store, ino, &mut got).unwrap_err();
    assert!(err.to_string().contains("is corrupt"), "{err}");
    assert!(got.is_empty(), "corrupt data was returned");
}
