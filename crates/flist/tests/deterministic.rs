//! Flists are canonical: a root filesystem directory, its tar and its tar.gz, made by GNU tar
//! the way users make them (`tar -C DIR -cf X.tar .`, `-czf`, and the POSIX format, sparse
//! files, xattrs) or by `tar_dir` (how `zgrid hub import` sends a directory), give
//! byte-identical flists with the same address, on a generated tree of
//! many directories with every kind of entry and attribute an flist keeps. Run as root (owners,
//! device nodes, `trusted.*` xattrs).

#[path = "common/scratch.rs"]
mod scratch;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::sys::stat::{Mode, SFlag};
use scratch::Scratch;
use zgrid_flist::meta::ROOT;
use zgrid_flist::{Flist, import};

impl Scratch {
    /// Import `source` into `<name>.flist`: the flist's bytes.
    fn flist(&self, source: &Path, name: &str) -> Vec<u8> {
        std::fs::read(self.import(source, name)).unwrap()
    }

    /// Run GNU tar over `root` with `args` into `name` (in the scratch directory): its path.
    fn tar(&self, root: &Path, name: &str, args: &[&str]) -> PathBuf {
        let archive = self.path(name);
        let out = Command::new("tar").args(args).arg("-C").arg(root).arg("-f").arg(&archive).arg(".").output();
        let out = out.expect("GNU tar is installed");
        assert!(out.status.success(), "tar {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        archive
    }
}

fn set_time(path: &Path, secs: i64, nsec: i64) {
    let t = nix::sys::time::TimeSpec::new(secs, nsec);
    nix::sys::stat::utimensat(nix::fcntl::AT_FDCWD, path, &t, &t, nix::sys::stat::UtimensatFlags::NoFollowSymlink)
        .unwrap();
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `len` bytes no two chunks of which repeat, so a big file is cut into several chunks.
fn noise(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32).map(|i| (i.wrapping_add(seed).wrapping_mul(2_654_435_761) >> 13) as u8).collect()
}

/// Sizes of the generated files: empty, tiny, around the minimum chunk and a tar block, big.
const SIZES: [usize; 8] = [0, 1, 511, 512, 4097, 100_000, 256 << 10, (256 << 10) + 1];

/// Generate a root filesystem at `root`: 240 directories in two levels (varied modes, times
/// with nanoseconds, owners), files of many sizes (empty to several chunks), a sparse file,
/// relative, absolute, dangling and long symlinks, a hardlinked file with three names and a
/// hardlinked symlink, setuid, setgid and sticky bits, a fifo, a character and a block device,
/// large and small owners (on symlinks too), long and non-UTF-8 names, a directory with many
/// entries (bigger than a block on the host), a file from before 1970 and a socket (which no
/// tar holds, so it is not packed).
fn generate(root: &Path) {
    for top in 0..12u32 {
        for sub in 0..20u32 {
            let dir = root.join(format!("d{top:02}/s{sub:02}"));
            std::fs::create_dir_all(&dir).unwrap();
            let size = SIZES[((top + sub) % SIZES.len() as u32) as usize];
            let file = dir.join("file");
            std::fs::write(&file, noise(size, top * 100 + sub)).unwrap();
            std::os::unix::fs::lchown(&file, Some(top * 1000 + sub), Some(sub)).unwrap();
            set_time(&file, 1_600_000_000 + i64::from(top * 20 + sub), i64::from(sub) * 37_000_123);
            std::os::unix::fs::symlink(format!("../s{:02}/file", (sub + 1) % 20), dir.join("next")).unwrap();
        }
    }
    std::fs::write(root.join("d00/big"), noise(9 << 20, 7)).unwrap();
    let sparse = std::fs::File::create(root.join("d00/sparse")).unwrap();
    sparse.set_len(8 << 20).unwrap();
    std::os::unix::fs::FileExt::write_at(&sparse, &noise(5000, 3), 3 << 20).unwrap();
    drop(sparse);
    for n in 0..300 {
        std::fs::write(root.join(format!("d01/entry-with-a-long-name-{n:04}")), b"").unwrap();
    }
    // Hardlinks: a file with three names in different directories, and a symlink with two.
    std::fs::hard_link(root.join("d01/s01/file"), root.join("d02/linked")).unwrap();
    std::fs::hard_link(root.join("d01/s01/file"), root.join("d03/s05/linked-too")).unwrap();
    std::os::unix::fs::symlink("/etc/os-release", root.join("d02/absolute")).unwrap();
    std::fs::hard_link(root.join("d02/absolute"), root.join("d02/absolute-again")).unwrap();
    std::os::unix::fs::symlink("/nowhere/at/all", root.join("d02/dangling")).unwrap();
    std::os::unix::fs::lchown(root.join("d02/dangling"), Some(42), Some(43)).unwrap();
    // Long names: a path and a symlink target over 100 bytes, a name of 200.
    let deep = root.join("d04").join("a-rather-long-directory-name-".repeat(3)).join("and-another-one-".repeat(3));
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("x".repeat(200)), b"long").unwrap();
    std::os::unix::fs::symlink(deep.join("x".repeat(200)).strip_prefix(root).unwrap(), root.join("d04/long-link"))
        .unwrap();
    std::fs::write(root.join("d04").join(OsStr::from_bytes(b"not-utf8-\xff\xfe")), b"bytes").unwrap();
    // Special permissions and kinds, big and small owners.
    chmod(&root.join("d05/s00/file"), 0o4755);
    chmod(&root.join("d05/s01/file"), 0o2711);
    chmod(&root.join("d05/s02/file"), 0o600);
    std::fs::create_dir(root.join("tmp")).unwrap();
    chmod(&root.join("tmp"), 0o1777);
    nix::unistd::mkfifo(&root.join("d06/fifo"), Mode::from_bits_truncate(0o640)).unwrap();
    let dev = |name: &str, kind, major, minor| {
        let path = root.join("d06").join(name);
        nix::sys::stat::mknod(&path, kind, Mode::from_bits_truncate(0o660), nix::sys::stat::makedev(major, minor))
            .unwrap();
    };
    dev("null", SFlag::S_IFCHR, 1, 3);
    dev("loop0", SFlag::S_IFBLK, 7, 0);
    std::os::unix::fs::lchown(root.join("d06/fifo"), Some(3_000_000), Some(4_000_000)).unwrap();
    std::os::unix::fs::lchown(root.join("d07/s07/next"), Some(65_534), Some(65_534)).unwrap();
    std::fs::write(root.join("d07/old"), b"before 1970").unwrap();
    set_time(&root.join("d07/old"), -86_400 * 365, 250_000_000);
    std::fs::create_dir(root.join("empty")).unwrap();
    std::os::unix::net::UnixListener::bind(root.join("d08/socket")).unwrap();
    // Directory modes and times last: adding entries changes a directory's time.
    for top in 0..12u32 {
        for sub in 0..20u32 {
            let dir = root.join(format!("d{top:02}/s{sub:02}"));
            chmod(&dir, 0o700 + (sub % 8) * 0o10 + (top % 2) * 0o2000);
            set_time(&dir, 1_500_000_000 + i64::from(sub), 999_999_999);
        }
        set_time(&root.join(format!("d{top:02}")), 1_400_000_000, i64::from(top) * 1_000_000);
    }
    chmod(root, 0o755);
}

/// Give some of `root`'s entries extended attributes, set out of name order (`user.*` ones
/// only on files and directories, as Linux allows).
fn add_xattrs(root: &Path) {
    for path in ["d00/s03/file", "d05"] {
        let path = root.join(path);
        xattr::set(&path, "user.zz", b"last").unwrap();
        xattr::set(&path, "user.aa", b"first").unwrap();
        xattr::set(&path, "trusted.note", b"\x00\x01binary").unwrap();
    }
    xattr::set(root.join("d06/fifo"), "trusted.pipe", b"fifo").unwrap();
    // A file capability (revision 2, CAP_NET_BIND_SERVICE permitted), as images give ping.
    let cap: Vec<u8> = [0x0200_0001u32, 1 << 10, 0, 0, 0].iter().flat_map(|w| w.to_le_bytes()).collect();
    xattr::set(root.join("d00/s04/file"), "security.capability", &cap).unwrap();
}

/// Everything in `flist` by path: the inode's attributes, and which inode it is.
fn listing(flist: &Flist) -> BTreeMap<Vec<u8>, (u64, zgrid_flist::meta::Inode)> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![(ROOT, Vec::new())];
    while let Some((dir, prefix)) = dirs.pop() {
        for (name, ino) in flist.entries(dir).unwrap() {
            let path = [prefix.as_slice(), b"/", &name].concat();
            let inode = flist.inode(ino).unwrap().unwrap();
            if inode.mode & SFlag::S_IFMT.bits() == SFlag::S_IFDIR.bits() {
                dirs.push((ino, path.clone()));
            }
            out.insert(path, (ino, inode));
        }
    }
    out
}

#[test]
fn a_root_filesystem_gives_the_same_flist_as_a_directory_its_tar_and_its_tar_gz() {
    let s = Scratch::new();
    let root = s.path("rootfs");
    generate(&root);
    // As users make them: GNU format (whole seconds), gzip, POSIX (nanoseconds), sparse.
    let tars = [
        ("tar", s.tar(&root, "rootfs.tar", &["-c"])),
        ("tar.gz", s.tar(&root, "rootfs.tar.gz", &["-cz"])),
        ("posix tar", s.tar(&root, "posix.tar", &["--format=posix", "-c"])),
        ("sparse tar", s.tar(&root, "sparse.tar", &["-S", "-c"])),
    ];
    // And as `zgrid hub import DIR` sends a directory.
    zgrid_flist::tar_dir(&root, std::fs::File::create(s.path("own.tar")).unwrap()).unwrap();
    let tars = tars.into_iter().chain([("tar_dir", s.path("own.tar"))]);
    let dir = s.flist(&root, "dir");
    for (what, tar) in tars {
        assert!(s.flist(&tar, what) == dir, "the flist of the {what} differs from the directory's");
    }
    let address = zgrid_flist::address(&s.path("dir.flist")).unwrap();
    assert_eq!(zgrid_flist::address(&s.path("tar.gz.flist")).unwrap(), address);
    assert!(s.flist(&root, "again") == dir, "packing is repeatable");
    zgrid_flist::merge(&[s.path("dir.flist")], &s.path("merged.flist")).unwrap();
    assert!(std::fs::read(s.path("merged.flist")).unwrap() == dir, "a merge of one flist is that flist");

    // The flist holds the tree, canonically.
    let flist = Flist::open(&s.path("dir.flist")).unwrap();
    let all = listing(&flist);
    let get = |path: &str| all.get(path.as_bytes()).unwrap_or_else(|| panic!("{path} is packed")).clone();
    assert_eq!(all.len(), 12 + 12 * 20 * 3 + 2 + 300 + 4 + 1 + 5 + 1 + 3 + 1 + 1, "every entry but the socket");
    assert!(!all.contains_key(b"/d08/socket".as_slice()), "sockets are not packed");
    assert!(all.values().all(|(_, i)| i.mtime_nsec == 0), "whole seconds");
    let dirs = all.values().filter(|(_, i)| i.mode & SFlag::S_IFMT.bits() == SFlag::S_IFDIR.bits());
    assert!(dirs.clone().all(|(_, i)| i.size == 0), "directories have no size");
    assert_eq!(dirs.count(), 12 + 240 + 2 + 2);
    let (linked, file) = (get("/d02/linked"), get("/d01/s01/file"));
    assert_eq!((linked.0, get("/d03/s05/linked-too").0), (file.0, file.0), "one inode for a hardlink's names");
    assert_eq!(flist.links(file.0).unwrap(), 3);
    assert_eq!(get("/d02/absolute-again").0, get("/d02/absolute").0);
    assert_eq!(get("/d00/big").1.size, 9 << 20);
    assert!(flist.chunks(get("/d00/big").0).unwrap().len() > 2, "a big file is several chunks");
    assert_eq!(get("/d00/sparse").1.size, 8 << 20, "a sparse file with its holes");
    assert_eq!(get("/d05/s00/file").1.mode, 0o104755);
    assert_eq!(get("/d05/s01/file").1.mode, 0o102711);
    assert_eq!(get("/tmp").1.mode, 0o41777);
    let fifo = get("/d06/fifo").1;
    assert_eq!((fifo.mode, fifo.uid, fifo.gid, fifo.rdev), (0o10640, 3_000_000, 4_000_000, 0));
    assert_eq!(get("/d06/loop0").1.rdev, nix::sys::stat::makedev(7, 0));
    let old = get("/d07/old").1;
    assert_eq!(old.mtime, -86_400 * 365, "floored, before 1970 too");
    let link = get("/d02/dangling").1;
    assert_eq!((link.mode, link.uid, link.size), (0o120777, 42, 15));
    assert_eq!(get("/d00/s02").1.mtime, 1_500_000_002);

    // Extended attributes: in a tar only with --xattrs (GNU tar keeps user.* and trusted.*).
    add_xattrs(&root);
    let dir = s.flist(&root, "xattrs");
    for (what, args) in [("xattrs tar", &["--xattrs", "-c"][..]), ("xattrs tar.gz", &["--xattrs", "-cz"])] {
        let tar = s.tar(&root, what, args);
        assert!(s.flist(&tar, what) == dir, "the flist of the {what} differs from the directory's");
    }
    zgrid_flist::tar_dir(&root, std::fs::File::create(s.path("own-xattrs.tar")).unwrap()).unwrap();
    assert!(s.flist(&s.path("own-xattrs.tar"), "own-xattrs") == dir, "tar_dir keeps xattrs");
    let flist = Flist::open(&s.path("xattrs.flist")).unwrap();
    let names: Vec<_> = flist.xattrs(get("/d05").0).unwrap().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, [b"trusted.note".to_vec(), b"user.aa".to_vec(), b"user.zz".to_vec()]);
    let cap = flist.xattrs(get("/d00/s04/file").0).unwrap();
    assert_eq!(cap.first().map(|(n, _)| n.as_slice()), Some(b"security.capability".as_slice()));
}

#[test]
fn a_sparse_file_in_a_posix_tar_is_refused_by_name() {
    let s = Scratch::new();
    let root = s.path("rootfs");
    std::fs::create_dir(&root).unwrap();
    let sparse = std::fs::File::create(root.join("holes")).unwrap();
    sparse.set_len(1 << 20).unwrap();
    std::os::unix::fs::FileExt::write_at(&sparse, b"data", 1000).unwrap();
    let tar = s.tar(&root, "sparse.tar", &["-S", "--format=posix", "-c"]);
    let err = import(&tar, &s.store, &s.path("refused.flist")).expect_err("refused").to_string();
    assert!(err.contains("holes") && err.contains("without -S"), "{err}");
}
