//! An flist made from a directory and unpacked again gives the same tree: contents, modes,
//! owners, times, symlinks, hardlinks, device nodes, fifos and extended attributes (as root).
//! A second version that changes one file stores only that file's new chunks, and a corrupted
//! chunk is refused, never returned as data.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::tree::{describe, sample};
use zgrid_flist::{DirStore, Flist, pack, unpack};

#[test]
fn a_tree_survives_the_round_trip_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (source, dest, store) =
        (dir.path().join("src"), dir.path().join("dest"), DirStore::new(dir.path().join("store")));
    sample(&source);
    let out = dir.path().join("image.flist");
    let summary = pack(&source, &store, &out).unwrap();
    assert_eq!(summary.bytes, (5 << 19) + 12, "the hardlinked file counts once");
    let flist = Flist::open(&out).unwrap();
    let big = flist.chunks(zgrid_flist::resolve(&flist, "/bin/big").unwrap()).unwrap();
    assert_eq!(big.iter().map(|c| c.size).sum::<u64>(), 5 << 19, "the chunks cover the file");
    assert_eq!(summary.chunks, big.len() as u64 + 1, "the big file's chunks, plus one for the config");
    unpack(&flist, &store, &dest).unwrap();
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
