//! A mounted flist (as root, over FUSE) shows exactly the tree it was made from and refuses
//! writes; reads fetch only the chunks they need, a chunk failing its checks is an EIO and is
//! rejected at its source, and a slow fetch holds up neither metadata nor other reads.

mod common;

use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use common::tree::{describe, sample};
use nix::errno::Errno;
use zgrid_flist::chunk::{ChunkError, Hash};
use zgrid_flist::meta::ChunkRef;
use zgrid_flist::{ChunkSource, DirStore, Flist, Mount, mount, pack, resolve};

const MIB: usize = 1 << 20;
/// How long an operation that must not be held up may take.
const PROMPT: Duration = Duration::from_secs(10);

/// `len` bytes that differ for each `seed` and do not compress.
fn noise(seed: &str, len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    blake3::Hasher::new().update(seed.as_bytes()).finalize_xof().fill(&mut bytes);
    bytes
}

/// A tree packed into an flist and a store in a temporary directory, where it is also mounted.
struct Packed {
    dir: tempfile::TempDir,
    flist: PathBuf,
    store: DirStore,
}

fn packed(build: impl FnOnce(&Path)) -> Packed {
    let dir = tempfile::tempdir().unwrap();
    let (flist, store) = (dir.path().join("image.flist"), DirStore::new(dir.path().join("store")));
    std::fs::create_dir(dir.path().join("src")).unwrap();
    build(&dir.path().join("src"));
    pack(&dir.path().join("src"), &store, &flist).unwrap();
    Packed { dir, flist, store }
}

impl Packed {
    fn source(&self) -> PathBuf {
        self.dir.path().join("src")
    }

    /// The chunks of the file at `path` in the image.
    fn chunks(&self, path: &str) -> Vec<ChunkRef> {
        let flist = Flist::open(&self.flist).unwrap();
        flist.chunks(resolve(&flist, path).unwrap()).unwrap()
    }

    /// Mount the image at `<tempdir>/mnt`; dropping the [`Mount`] (before `self`) unmounts.
    fn mount(&self, source: Arc<dyn ChunkSource>) -> Mount {
        let at = self.dir.path().join("mnt");
        std::fs::create_dir_all(&at).unwrap();
        let mounted = mount(&self.flist, source, &at).unwrap();
        assert!(mounted.is_alive());
        mounted
    }
}

/// Holds back the fetch of chunk `id` until released (or until the test drops its sender).
struct Gate {
    id: Hash,
    entered: mpsc::Sender<()>,
    release: Mutex<mpsc::Receiver<()>>,
}

/// A directory store that records the chunks fetched and rejected.
struct Recording {
    store: DirStore,
    fetched: Mutex<Vec<Hash>>,
    rejected: Mutex<Vec<Hash>>,
    gate: Option<Gate>,
}

impl Recording {
    fn new(store: &DirStore, gate: Option<Gate>) -> Arc<Self> {
        Arc::new(Self { store: store.clone(), fetched: Mutex::default(), rejected: Mutex::default(), gate })
    }

    fn fetched(&self) -> Vec<Hash> {
        self.fetched.lock().unwrap().clone()
    }
}

impl ChunkSource for Recording {
    fn fetch(&self, id: &Hash) -> io::Result<Arc<[u8]>> {
        self.fetched.lock().unwrap().push(*id);
        if let Some(gate) = self.gate.as_ref().filter(|g| g.id == *id) {
            let _ = gate.entered.send(());
            let _ = gate.release.lock().unwrap().recv();
        }
        self.store.fetch(id)
    }

    fn reject(&self, id: &Hash, why: &ChunkError) {
        self.rejected.lock().unwrap().push(*id);
        self.store.reject(id, why);
    }
}

/// Wait until thread `tid` of this process is blocked in read(2).
fn blocked_in_read(tid: nix::unistd::Pid) {
    let task = format!("/proc/self/task/{tid}");
    loop {
        let syscall = std::fs::read_to_string(format!("{task}/syscall")).unwrap_or_default();
        let stat = std::fs::read_to_string(format!("{task}/stat")).unwrap_or_default();
        let state = stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next());
        if syscall.split_whitespace().next() == Some("0") && matches!(state, Some('S' | 'D')) {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Run `f` on another thread; panics unless it finishes within [`PROMPT`].
fn promptly<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || tx.send(f()));
    rx.recv_timeout(PROMPT).unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Read `len` bytes at `offset` (fewer at the end of the file).
fn read_at(file: &std::fs::File, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0; len];
    let mut n = 0;
    while n < len {
        match file.read_at(&mut buf[n..], offset + n as u64)? {
            0 => break,
            k => n += k,
        }
    }
    buf.truncate(n);
    Ok(buf)
}

/// Every path under `root`, each `lstat`ed, its link read and its xattrs listed.
fn walk(root: &Path) -> usize {
    let mut seen = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for item in std::fs::read_dir(&dir).unwrap() {
            let path = item.unwrap().path();
            let m = std::fs::symlink_metadata(&path).unwrap();
            if m.is_dir() {
                stack.push(path.clone());
            } else if m.is_symlink() {
                std::fs::read_link(&path).unwrap();
            }
            xattr::list(&path).unwrap().for_each(drop);
            seen += 1;
        }
    }
    seen
}

#[test]
fn a_mounted_image_shows_the_tree_exactly() {
    let image = packed(sample);
    let mounted = image.mount(Arc::new(image.store.clone()));
    let mnt = mounted.mountpoint().to_path_buf();
    assert_eq!(describe(&mnt), describe(&image.source()));
    let meta = |p: &Path| std::fs::symlink_metadata(p).unwrap();
    assert_eq!(meta(&mnt).mode(), meta(&image.source()).mode());
    assert_eq!(meta(&mnt.join("bin/big")).ino(), meta(&mnt.join("bin/big-again")).ino(), "hardlinks share st_ino");
    for dir in ["", "bin", "etc", "etc/app"] {
        let subdirs = std::fs::read_dir(mnt.join(dir)).unwrap().filter(|e| e.as_ref().unwrap().path().is_dir()).count();
        assert_eq!(meta(&mnt.join(dir)).nlink(), 2 + subdirs as u64, "nlink of /{dir}");
    }
    for _ in 0..2 {
        let missing = std::fs::symlink_metadata(mnt.join("etc/missing")).unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound, "also when the kernel caches the miss");
    }
    let stat = nix::sys::statvfs::statvfs(&mnt).unwrap();
    assert!(stat.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY));
    assert_eq!(stat.files(), 11);
    mounted.unmount().unwrap();
    assert_eq!(std::fs::read_dir(&mnt).unwrap().count(), 0, "unmounted");
}

#[test]
fn writes_are_refused_as_on_a_read_only_filesystem() {
    let image = packed(sample);
    let mounted = image.mount(Arc::new(image.store.clone()));
    let at = |p: &str| mounted.mountpoint().join(p);
    let erofs = |r: io::Result<()>| assert_eq!(r.unwrap_err().raw_os_error(), Some(Errno::EROFS as i32));
    erofs(std::fs::write(at("new"), "x"));
    erofs(std::fs::OpenOptions::new().write(true).open(at("etc/app/config")).map(drop));
    erofs(std::fs::create_dir(at("bin/dir")));
    erofs(std::fs::remove_file(at("empty")));
    erofs(std::fs::rename(at("empty"), at("full")));
    erofs(std::fs::hard_link(at("empty"), at("other")));
    erofs(std::os::unix::fs::symlink("x", at("link")));
    erofs(std::fs::set_permissions(at("empty"), std::fs::Permissions::from_mode(0o777)));
    erofs(xattr::set(at("empty"), "user.x", b"y"));
    assert_eq!(std::fs::read(at("etc/app/config")).unwrap(), b"key = value\n", "reads still work");
}

#[test]
fn a_big_file_reads_right_at_odd_offsets() {
    let data = noise("big", 5 * MIB + 12_345);
    let image = packed(|src| std::fs::write(src.join("big"), &data).unwrap());
    let chunks = image.chunks("/big");
    assert!(chunks.len() >= 3, "several chunks: {}", chunks.len());
    // Every boundary between chunks, whatever their sizes.
    let bounds: Vec<usize> = chunks
        .iter()
        .scan(0, |end, c| {
            *end += c.size as usize;
            Some(*end)
        })
        .collect();
    let mounted = image.mount(Arc::new(image.store.clone()));
    let path = mounted.mountpoint().join("big");
    let buffered = std::fs::File::open(&path).unwrap();
    // O_DIRECT sends the reads to the filesystem at exactly these offsets, not page-aligned.
    let direct =
        std::fs::OpenOptions::new().read(true).custom_flags(nix::fcntl::OFlag::O_DIRECT.bits()).open(&path).unwrap();
    let len = data.len();
    let offsets = [0, 1].into_iter().chain(bounds.iter().flat_map(|&b| [b - 1, b, (b + 1).min(len)])).chain([len - 1]);
    for offset in offsets {
        for size in [1, 2, 4097, MIB + 3] {
            let want = &data[offset..(offset + size).min(len)];
            for file in [&buffered, &direct] {
                assert!(read_at(file, offset as u64, size).unwrap() == want, "{size} bytes at {offset}");
            }
        }
    }
    assert!(read_at(&direct, len as u64 + 10, 10).unwrap().is_empty(), "past the end");
}

#[test]
fn reading_fetches_only_the_chunks_needed() {
    let data = noise("five", 5 * MIB);
    let image = packed(|src| {
        sample(src);
        std::fs::write(src.join("five"), &data).unwrap();
    });
    let chunks = image.chunks("/five");
    assert!(chunks.len() >= 3, "several chunks: {}", chunks.len());
    let source = Recording::new(&image.store, None);
    let mounted = image.mount(source.clone());
    assert_eq!(walk(mounted.mountpoint()), 12);
    assert!(source.fetched().is_empty(), "listing and stat'ing fetch nothing");
    let file = std::fs::File::open(mounted.mountpoint().join("five")).unwrap();
    // Ten bytes in the middle of the second chunk.
    let middle = (chunks[0].size + chunks[1].size / 2) as usize;
    assert_eq!(read_at(&file, middle as u64, 10).unwrap(), data[middle..middle + 10]);
    assert_eq!(source.fetched(), [chunks[1].id], "only the chunk holding those bytes");
}

#[test]
fn a_tampered_chunk_is_an_eio_and_is_rejected() {
    let image = packed(|src| {
        std::fs::write(src.join("good"), noise("good", MIB + 10)).unwrap();
        std::fs::write(src.join("bad"), noise("bad", 1000)).unwrap();
    });
    let bad = image.chunks("/bad")[0].id;
    let stored = image.store.path(&bad);
    let mut bytes = std::fs::read(&stored).unwrap();
    bytes[100] ^= 0x08;
    std::fs::write(&stored, bytes).unwrap();
    let source = Recording::new(&image.store, None);
    let mounted = image.mount(source.clone());
    let err = std::fs::read(mounted.mountpoint().join("bad")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(Errno::EIO as i32), "{err}");
    assert_eq!(*source.rejected.lock().unwrap(), [bad]);
    assert!(!image.store.has(&bad), "the directory store forgets a rejected chunk");
    let again = std::fs::read(mounted.mountpoint().join("bad")).unwrap_err();
    assert_eq!(again.raw_os_error(), Some(Errno::EIO as i32), "a missing chunk is an EIO too");
    assert_eq!(std::fs::read(mounted.mountpoint().join("good")).unwrap(), noise("good", MIB + 10));
}

#[test]
fn a_slow_fetch_holds_up_neither_metadata_nor_other_reads() {
    let (slow, fast) = (noise("slow", 1000), noise("fast", 1000));
    let image = packed(|src| {
        std::fs::write(src.join("slow"), &slow).unwrap();
        std::fs::write(src.join("twin"), &slow).unwrap();
        std::fs::write(src.join("fast"), &fast).unwrap();
        std::fs::create_dir(src.join("dir")).unwrap();
    });
    let held = image.chunks("/slow")[0].id;
    assert_eq!(image.chunks("/twin")[0].id, held, "identical files share their chunk");
    let (entered, is_held) = mpsc::channel();
    let (release, released) = mpsc::channel();
    let gate = Gate { id: held, entered, release: Mutex::new(released) };
    let source = Recording::new(&image.store, Some(gate));
    let mounted = image.mount(source.clone());
    let mnt = mounted.mountpoint().to_path_buf();
    let (results, result) = mpsc::channel();
    let (tids, tid) = mpsc::channel();
    for name in ["slow", "twin"] {
        let (path, results, tids) = (mnt.join(name), results.clone(), tids.clone());
        std::thread::spawn(move || {
            tids.send(nix::unistd::gettid()).unwrap();
            results.send(std::fs::read(path).map_err(|e| e.to_string()))
        });
        if name == "slow" {
            is_held.recv_timeout(PROMPT).expect("the slow read reaches the source");
        }
    }
    // The twin's read must reach the filesystem while the fetch is held, or the memory cache
    // would serve it afterwards and prove nothing: wait until its thread blocks in read(2).
    let twin = tid.recv().and_then(|_| tid.recv()).unwrap();
    promptly("the twin's read reaches the mount", move || blocked_in_read(twin));
    // The kernel hands requests to the filesystem in order, so once these later ones are
    // answered the twin's read has been taken up, and parks on the fetch under way.
    let (m, r) = (mnt.clone(), fast.clone());
    promptly("metadata and another read while a fetch is held", move || {
        assert!(std::fs::metadata(m.join("slow")).unwrap().is_file());
        assert_eq!(std::fs::read_dir(&m).unwrap().count(), 4);
        assert!(std::fs::metadata(m.join("dir")).unwrap().is_dir());
        assert_eq!(std::fs::read(m.join("fast")).unwrap(), r);
    });
    release.send(()).unwrap();
    for _ in 0..2 {
        assert_eq!(result.recv_timeout(PROMPT).expect("the held reads finish").unwrap(), slow);
    }
    assert_eq!(source.fetched().iter().filter(|id| **id == held).count(), 1, "one fetch serves both files");
}

#[test]
fn a_mount_unmounted_from_outside_is_no_longer_alive() {
    let image = packed(|src| std::fs::write(src.join("file"), "x").unwrap());
    let mounted = image.mount(Arc::new(image.store.clone()));
    nix::mount::umount(mounted.mountpoint()).unwrap();
    let deadline = std::time::Instant::now() + PROMPT;
    while mounted.is_alive() {
        assert!(std::time::Instant::now() < deadline, "the session did not end");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_busy_mount_is_detached_and_still_serves_its_open_files() {
    let data = noise("open", 3 * MIB);
    let image = packed(|src| std::fs::write(src.join("file"), &data).unwrap());
    let mounted = image.mount(Arc::new(image.store.clone()));
    let mnt = mounted.mountpoint().to_path_buf();
    let file = std::fs::File::open(mnt.join("file")).unwrap();
    mounted.unmount().unwrap();
    assert_eq!(std::fs::read_dir(&mnt).unwrap().count(), 0, "detached from the tree");
    assert_eq!(read_at(&file, MIB as u64 - 5, MIB).unwrap(), data[MIB - 5..2 * MIB - 5]);
}
