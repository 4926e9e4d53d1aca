//! Mounting an flist: a read-only FUSE filesystem that serves the tree from the flist's SQLite
//! file and file contents chunk by chunk, each chunk fetched only when a read needs it and
//! checked before a byte of it is returned. See `docs/flist.md` ("Mounting").
//!
//! Threads: fuser's session thread answers every metadata request (lookup, getattr, readdir,
//! xattrs, open) from SQLite, which is fast and never waits on the network. Reads go to a small
//! pool of worker threads that fetch and open chunks; a read that needs a chunk another worker
//! is already fetching is parked on it and holds no thread.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ffi::OsStr;
use std::io;
use std::ops::Range;
use std::os::unix::ffi::OsStrExt;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, UNIX_EPOCH};

use fuser::{
    BackgroundSession, Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    InitFlags, KernelConfig, LockOwner, MountOption, OpenAccMode, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyXattr, Request, Session, SessionACL,
};
use nix::sys::stat::SFlag;
use tracing::warn;

use crate::chunk::{self, ChunkError, Hash};
use crate::meta::{ChunkRef, Flist, MetaError, ROOT};
use crate::store::DirStore;

/// How long the kernel may keep names and attributes: an flist's tree never changes.
const TTL: Duration = Duration::from_secs(24 * 3600);
/// Bytes of opened (plaintext) chunks kept in memory, so the kernel's reads of a chunk's
/// pieces open it once.
const CACHE_BYTES: usize = 32 << 20;
/// Threads fetching and opening chunks: up to this many distinct chunks are fetched at once.
const WORKERS: usize = 8;
/// Block size reported by `stat` and `statfs`.
const BLOCK: u32 = 4096;
/// A lookup of a name that does not exist: inode 0 tells the kernel to cache the miss.
const NEGATIVE: FileAttr = FileAttr {
    ino: INodeNo(0),
    size: 0,
    blocks: 0,
    atime: UNIX_EPOCH,
    mtime: UNIX_EPOCH,
    ctime: UNIX_EPOCH,
    crtime: UNIX_EPOCH,
    kind: FileType::RegularFile,
    perm: 0,
    nlink: 0,
    uid: 0,
    gid: 0,
    rdev: 0,
    blksize: BLOCK,
    flags: 0,
};
/// File types by their `S_IFMT` bits.
const KINDS: [(SFlag, FileType); 7] = [
    (SFlag::S_IFDIR, FileType::Directory),
    (SFlag::S_IFREG, FileType::RegularFile),
    (SFlag::S_IFLNK, FileType::Symlink),
    (SFlag::S_IFCHR, FileType::CharDevice),
    (SFlag::S_IFBLK, FileType::BlockDevice),
    (SFlag::S_IFIFO, FileType::NamedPipe),
    (SFlag::S_IFSOCK, FileType::Socket),
];

/// Where a mount gets the stored bytes of chunks.
pub trait ChunkSource: Send + Sync + 'static {
    /// The stored (sealed) bytes of chunk `id`; may block (fetch over the network).
    fn fetch(&self, id: &Hash) -> io::Result<Arc<[u8]>>;
    /// Chunk `id` failed its checks (`why`): forget any copy of it. Called before the read
    /// fails with EIO.
    fn reject(&self, id: &Hash, why: &ChunkError);
}

impl ChunkSource for DirStore {
    fn fetch(&self, id: &Hash) -> io::Result<Arc<[u8]>> {
        Ok(self.get(id)?.into())
    }

    /// Deletes the stored copy, so a later read fails as missing (or a cache refetches it).
    fn reject(&self, id: &Hash, _why: &ChunkError) {
        if let Err(e) = std::fs::remove_file(self.path(id)) {
            warn!(chunk = %hex::encode(id), "cannot remove a rejected chunk: {e}");
        }
    }
}

/// A mounted flist. Dropping it unmounts (lazily, if the mount is busy).
#[derive(Debug)]
pub struct Mount {
    session: Option<BackgroundSession>,
    mountpoint: PathBuf,
}

/// Mount `flist` read-only at `mountpoint`, reading chunks from `source`. Needs root (or
/// `CAP_SYS_ADMIN`) and `/dev/fuse`.
pub fn mount(flist: &Path, source: Arc<dyn ChunkSource>, mountpoint: &Path) -> io::Result<Mount> {
    let meta =
        Flist::open(flist).map_err(|e| io::Error::other(format!("cannot open flist {}: {e}", flist.display())))?;
    let mountpoint = mountpoint
        .canonicalize()
        .map_err(|e| io::Error::new(e.kind(), format!("mountpoint {}: {e}", mountpoint.display())))?;
    let fs = FlistFs::new(meta, source)?;
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName("zgrid-flist".into()),
        MountOption::RO,
        MountOption::DefaultPermissions,
        MountOption::Dev,
        MountOption::Suid,
    ];
    config.acl = SessionACL::All;
    let session = Session::new(fs, &mountpoint, &config).and_then(Session::spawn).map_err(|e| {
        let hint = match e.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied => {
                " (mounting needs root and /dev/fuse; try `modprobe fuse`)"
            }
            _ => "",
        };
        io::Error::new(
            e.kind(),
            format!("cannot mount flist {} at {}: {e}{hint}", flist.display(), mountpoint.display()),
        )
    })?;
    Ok(Mount { session: Some(session), mountpoint })
}

impl Mount {
    /// Where the flist is mounted.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Whether the filesystem is still being served: false once it was unmounted (also from
    /// outside, with `umount`) or its session failed.
    pub fn is_alive(&self) -> bool {
        self.session.as_ref().is_some_and(|s| !s.guard.is_finished())
    }

    /// Unmount and wait for the session to end; if the mount is busy, detach it lazily instead
    /// (it goes away when its last user leaves).
    pub fn unmount(mut self) -> io::Result<()> {
        self.stop()
    }

    fn stop(&mut self) -> io::Result<()> {
        let Some(session) = self.session.take() else { return Ok(()) };
        match session.umount_and_join() {
            Err(e) if e.raw_os_error() == Some(nix::errno::Errno::EBUSY as i32) => {
                nix::mount::umount2(&self.mountpoint, nix::mount::MntFlags::MNT_DETACH)?;
                Ok(())
            }
            result => result,
        }
        .map_err(|e| io::Error::new(e.kind(), format!("cannot unmount {}: {e}", self.mountpoint.display())))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            warn!("{e}");
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn eio(e: MetaError) -> Errno {
    warn!("{e}");
    Errno::EIO
}

/// What is open, by handle: files' chunk layouts or directories' listings.
struct Handles<T> {
    next: AtomicU64,
    open: Mutex<HashMap<u64, Arc<T>>>,
}

impl<T> Handles<T> {
    fn new() -> Self {
        Self { next: AtomicU64::new(1), open: Mutex::new(HashMap::new()) }
    }

    fn insert(&self, value: T) -> FileHandle {
        let fh = self.next.fetch_add(1, Ordering::Relaxed);
        lock(&self.open).insert(fh, Arc::new(value));
        FileHandle(fh)
    }

    fn get(&self, fh: FileHandle) -> Result<Arc<T>, Errno> {
        lock(&self.open).get(&fh.0).cloned().ok_or(Errno::EBADF)
    }

    fn remove(&self, fh: FileHandle) {
        lock(&self.open).remove(&fh.0);
    }
}

/// A directory's entries as listed, `.` and `..` first: `(name, inode)`.
type Listing = Vec<(Vec<u8>, u64)>;

/// The filesystem: the tree from SQLite (one connection, used by the session thread), contents
/// through the [`Reader`].
struct FlistFs {
    meta: Mutex<Flist>,
    /// `(inodes, bytes of file contents)`, for `statfs`.
    totals: (u64, u64),
    files: Handles<Layout>,
    dirs: Handles<Listing>,
    reader: Arc<Reader>,
}

impl FlistFs {
    fn new(meta: Flist, source: Arc<dyn ChunkSource>) -> io::Result<Self> {
        let (inodes, bytes, _, _) = meta.totals().map_err(io::Error::other)?;
        let fs = Self {
            meta: Mutex::new(meta),
            totals: (inodes, bytes),
            files: Handles::new(),
            dirs: Handles::new(),
            reader: Arc::new(Reader::new(source)),
        };
        for i in 0..WORKERS {
            let reader = Arc::clone(&fs.reader);
            std::thread::Builder::new().name(format!("flist-read-{i}")).spawn(move || reader.work())?;
        }
        Ok(fs)
    }

    fn db(&self) -> MutexGuard<'_, Flist> {
        lock(&self.meta)
    }

    fn listing(&self, ino: u64) -> Result<Listing, MetaError> {
        let db = self.db();
        let parent = db.parent(ino)?.unwrap_or(ROOT);
        let mut listing = vec![(b".".to_vec(), ino), (b"..".to_vec(), parent)];
        listing.extend(db.entries(ino)?);
        Ok(listing)
    }

    /// Hand the entries of open directory `fh` from `offset` on, with their attributes and the
    /// offset after each, to `add` until it says the reply is full.
    fn list(
        &self,
        fh: FileHandle,
        offset: u64,
        mut add: impl FnMut(u64, &OsStr, &FileAttr) -> bool,
    ) -> Result<(), Errno> {
        let listing = self.dirs.get(fh)?;
        let db = self.db();
        for (next, (name, ino)) in (1..).zip(listing.iter()).skip(usize::try_from(offset).unwrap_or(usize::MAX)) {
            if add(next, OsStr::from_bytes(name), &attr(&db, *ino)?) {
                break;
            }
        }
        Ok(())
    }
}

impl Drop for FlistFs {
    fn drop(&mut self) {
        self.reader.close();
    }
}

/// The attributes of inode `ino`, as `stat` shows them.
fn attr(db: &Flist, ino: u64) -> Result<FileAttr, Errno> {
    let inode = db.inode(ino).map_err(eio)?.ok_or(Errno::ENOENT)?;
    let kind = KINDS
        .iter()
        .find(|(flag, _)| flag.bits() == inode.mode & SFlag::S_IFMT.bits())
        .map(|(_, kind)| *kind)
        .ok_or(Errno::EIO)?;
    let nlink = if kind == FileType::Directory { db.subdirs(ino).map(|n| n + 2) } else { db.links(ino) };
    let secs = Duration::from_secs(inode.mtime.unsigned_abs());
    let time = if inode.mtime < 0 { UNIX_EPOCH - secs } else { UNIX_EPOCH + secs }
        + Duration::from_nanos(inode.mtime_nsec.into());
    Ok(FileAttr {
        ino: INodeNo(ino),
        size: inode.size,
        blocks: inode.size.div_ceil(512),
        atime: time,
        mtime: time,
        ctime: time,
        crtime: time,
        kind,
        perm: (inode.mode & 0o7777) as u16,
        nlink: nlink.map_err(eio)?,
        uid: inode.uid,
        gid: inode.gid,
        rdev: kernel_dev(inode.rdev),
        blksize: BLOCK,
        flags: 0,
    })
}

/// A device number as FUSE carries it (the kernel's 32-bit encoding: 12-bit major, 20-bit
/// minor) from the C library's.
fn kernel_dev(rdev: u64) -> u32 {
    let (major, minor) = (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev));
    ((minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12)) as u32
}

/// Answer an xattr request: the size when asked for it (`size` 0), else the data if it fits.
fn xattr_reply(reply: ReplyXattr, size: u32, data: &[u8]) {
    let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
    if size == 0 {
        reply.size(len);
    } else if len > size {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(data);
    }
}

impl Filesystem for FlistFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        for wanted in [InitFlags::FUSE_DO_READDIRPLUS, InitFlags::FUSE_READDIRPLUS_AUTO, InitFlags::FUSE_CACHE_SYMLINKS]
        {
            // Optimizations only: an older kernel without one works without it.
            let _ = config.add_capabilities(wanted);
        }
        // Lets the node give each container an idmapped view of its image (Linux 6.12 and
        // later; the tree is read-only and permissions are the kernel's, so owners need no
        // translating here). An older kernel refuses the flag, and the mount works unmapped.
        let _ = config.add_capabilities(InitFlags::FUSE_ALLOW_IDMAP);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let db = self.db();
        match db
            .lookup(parent.0, name.as_bytes())
            .map_err(eio)
            .and_then(|ino| ino.map(|ino| attr(&db, ino)).transpose())
        {
            Ok(Some(attr)) => reply.entry(&TTL, &attr, Generation(0)),
            Ok(None) => reply.entry(&TTL, &NEGATIVE, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match attr(&self.db(), ino.0) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.db().inode(ino.0) {
            Ok(Some(inode)) => match inode.target {
                Some(target) => reply.data(&target),
                None => reply.error(Errno::EINVAL),
            },
            Ok(None) => reply.error(Errno::ENOENT),
            Err(e) => reply.error(eio(e)),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.acc_mode() != OpenAccMode::O_RDONLY {
            return reply.error(Errno::EROFS);
        }
        match self.db().chunks(ino.0) {
            Ok(chunks) => reply.opened(self.files.insert(Layout::new(chunks)), FopenFlags::FOPEN_KEEP_CACHE),
            Err(e) => reply.error(eio(e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.files.get(fh) {
            Ok(layout) => self.reader.push(Read { layout, offset, size, reply }),
            Err(e) => reply.error(e),
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.files.remove(fh);
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.listing(ino.0) {
            Ok(listing) => {
                reply.opened(self.dirs.insert(listing), FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_CACHE_DIR)
            }
            Err(e) => reply.error(eio(e)),
        }
    }

    fn readdir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        match self.list(fh, offset, |next, name, attr| reply.add(attr.ino, next, attr.kind, name)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn readdirplus(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectoryPlus) {
        match self.list(fh, offset, |next, name, attr| reply.add(attr.ino, next, name, &TTL, attr, Generation(0))) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn releasedir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        self.dirs.remove(fh);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let (inodes, bytes) = self.totals;
        reply.statfs(bytes.div_ceil(BLOCK.into()), 0, 0, inodes, 0, BLOCK, 255, BLOCK);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        match self.db().xattrs(ino.0) {
            Ok(xattrs) => match xattrs.into_iter().find(|(n, _)| n == name.as_bytes()) {
                Some((_, value)) => xattr_reply(reply, size, &value),
                None => reply.error(Errno::ENODATA),
            },
            Err(e) => reply.error(eio(e)),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.db().xattrs(ino.0) {
            Ok(xattrs) => {
                let names: Vec<u8> = xattrs
                    .into_iter()
                    .flat_map(|(mut name, _)| {
                        name.push(0);
                        name
                    })
                    .collect();
                xattr_reply(reply, size, &names);
            }
            Err(e) => reply.error(eio(e)),
        }
    }
}

/// A regular file's chunks and the offset where each ends.
struct Layout {
    chunks: Vec<ChunkRef>,
    ends: Vec<u64>,
}

impl Layout {
    fn new(chunks: Vec<ChunkRef>) -> Self {
        let ends = chunks
            .iter()
            .scan(0, |end, c| {
                *end += c.size;
                Some(*end)
            })
            .collect();
        Self { chunks, ends }
    }

    fn len(&self) -> u64 {
        self.ends.last().copied().unwrap_or(0)
    }

    fn start(&self, idx: usize) -> u64 {
        idx.checked_sub(1).map_or(0, |prev| self.ends[prev])
    }

    /// The chunks holding bytes `from..to` (a non-empty range within the file).
    fn covering(&self, from: u64, to: u64) -> Range<usize> {
        self.ends.partition_point(|&end| end <= from)..self.ends.partition_point(|&end| end < to) + 1
    }
}

/// A read waiting to be served.
struct Read {
    layout: Arc<Layout>,
    offset: u64,
    size: u32,
    reply: ReplyData,
}

/// A chunk as cached: its id and key (the plaintext's hash, which the cached bytes match).
type Key = (Hash, Hash);

/// Opened chunks: those in memory and those being fetched, with the reads waiting for each.
struct Chunks {
    cache: Lru,
    fetching: HashMap<Key, Vec<Read>>,
}

/// Serves reads on worker threads: fetches chunks from the source, opens (checks) them, keeps
/// the plaintext in an LRU and copies out the asked range.
struct Reader {
    source: Arc<dyn ChunkSource>,
    chunks: Mutex<Chunks>,
    /// Reads to serve; `None` once the filesystem is gone.
    queue: Mutex<Option<VecDeque<Read>>>,
    ready: Condvar,
}

impl Reader {
    fn new(source: Arc<dyn ChunkSource>) -> Self {
        Self {
            source,
            chunks: Mutex::new(Chunks { cache: Lru::new(CACHE_BYTES), fetching: HashMap::new() }),
            queue: Mutex::new(Some(VecDeque::new())),
            ready: Condvar::new(),
        }
    }

    /// Queue `read` for a worker (after [`close`](Self::close) it is dropped, which fuser
    /// answers with EIO).
    fn push(&self, read: Read) {
        if let Some(queue) = lock(&self.queue).as_mut() {
            queue.push_back(read);
            self.ready.notify_one();
        }
    }

    /// Stop the workers.
    fn close(&self) {
        *lock(&self.queue) = None;
        self.ready.notify_all();
    }

    /// A worker: serve reads until closed.
    fn work(&self) {
        let mut queue = lock(&self.queue);
        while let Some(jobs) = queue.as_mut() {
            match jobs.pop_front() {
                Some(read) => {
                    drop(queue);
                    self.serve(read);
                    queue = lock(&self.queue);
                }
                None => queue = self.ready.wait(queue).unwrap_or_else(PoisonError::into_inner),
            }
        }
    }

    /// Answer `read`, unless it has to wait for a chunk another worker is fetching: then it is
    /// parked there and served again once that chunk is in.
    fn serve(&self, read: Read) {
        let layout = Arc::clone(&read.layout);
        let to = read.offset.saturating_add(read.size.into()).min(layout.len());
        if read.offset >= to {
            return read.reply.data(&[]);
        }
        let mut data = Vec::with_capacity(usize::try_from(to - read.offset).unwrap_or(0));
        for idx in layout.covering(read.offset, to) {
            let c = &layout.chunks[idx];
            let key = (c.id, c.key);
            let cached = {
                let mut chunks = lock(&self.chunks);
                match chunks.cache.get(&key) {
                    Some(plain) => Some(plain),
                    None => match chunks.fetching.entry(key) {
                        Entry::Occupied(mut waiting) => return waiting.get_mut().push(read),
                        Entry::Vacant(slot) => {
                            slot.insert(Vec::new());
                            None
                        }
                    },
                }
            };
            let Some(plain) = cached.or_else(|| self.load(c)) else { return read.reply.error(Errno::EIO) };
            let start = layout.start(idx);
            let from = usize::try_from(read.offset.max(start) - start).unwrap_or(usize::MAX);
            let until = usize::try_from(to.min(layout.ends[idx]) - start).unwrap_or(usize::MAX);
            data.extend_from_slice(&plain[from..until]);
        }
        read.reply.data(&data);
    }

    /// Fetch and open chunk `c` (whose entry in `fetching` this worker made), cache it, and
    /// requeue the reads that waited for it, or fail them.
    fn load(&self, c: &ChunkRef) -> Option<Arc<[u8]>> {
        // A panicking source must not leave the waiting reads unanswered.
        let plain = std::panic::catch_unwind(AssertUnwindSafe(|| self.open(c))).ok().flatten();
        let key = (c.id, c.key);
        let waiting = {
            let mut chunks = lock(&self.chunks);
            if let Some(plain) = &plain {
                chunks.cache.insert(key, Arc::clone(plain));
            }
            chunks.fetching.remove(&key).unwrap_or_default()
        };
        for read in waiting {
            match plain {
                Some(_) => self.push(read),
                None => read.reply.error(Errno::EIO),
            }
        }
        plain
    }

    /// The checked plaintext of chunk `c`, or `None` (logged; a chunk failing its checks is
    /// rejected at the source).
    fn open(&self, c: &ChunkRef) -> Option<Arc<[u8]>> {
        let stored = self
            .source
            .fetch(&c.id)
            .inspect_err(|e| warn!(chunk = %hex::encode(c.id), "cannot fetch chunk: {e}"))
            .ok()?;
        match chunk::open(&c.id, &c.key, usize::try_from(c.size).ok()?, &stored) {
            Ok(plain) => Some(plain.into()),
            Err(why) => {
                warn!("{why}: rejected");
                self.source.reject(&c.id, &why);
                None
            }
        }
    }
}

/// Plaintext chunks, the least recently used dropped once they exceed a byte budget (the newest
/// is always kept).
struct Lru {
    budget: usize,
    used: usize,
    tick: u64,
    entries: HashMap<Key, (Arc<[u8]>, u64)>,
    order: BTreeMap<u64, Key>,
}

impl Lru {
    fn new(budget: usize) -> Self {
        Self { budget, used: 0, tick: 0, entries: HashMap::new(), order: BTreeMap::new() }
    }

    fn get(&mut self, key: &Key) -> Option<Arc<[u8]>> {
        let (plain, used) = self.entries.get_mut(key)?;
        self.order.remove(used);
        self.tick += 1;
        *used = self.tick;
        self.order.insert(self.tick, *key);
        Some(Arc::clone(plain))
    }

    fn insert(&mut self, key: Key, plain: Arc<[u8]>) {
        self.tick += 1;
        self.used += plain.len();
        if let Some((old, used)) = self.entries.insert(key, (plain, self.tick)) {
            self.order.remove(&used);
            self.used -= old.len();
        }
        self.order.insert(self.tick, key);
        while self.used > self.budget && self.entries.len() > 1 {
            let Some((_, oldest)) = self.order.pop_first() else { break };
            if let Some((plain, _)) = self.entries.remove(&oldest) {
                self.used -= plain.len();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> Key {
        ([n; 32], [n; 32])
    }

    #[test]
    fn the_lru_drops_the_least_recently_used_beyond_its_budget() {
        let mut lru = Lru::new(30);
        for n in 0..3 {
            lru.insert(key(n), vec![n; 10].into());
        }
        assert!(lru.get(&key(0)).is_some(), "touch 0: 1 is now the oldest");
        lru.insert(key(3), vec![3; 10].into());
        assert!(lru.get(&key(1)).is_none());
        assert!([0, 2, 3].iter().all(|&n| lru.get(&key(n)).is_some()));
        assert_eq!(lru.used, 30);
        lru.insert(key(4), vec![4; 100].into());
        assert_eq!((lru.entries.len(), lru.used), (1, 100), "the newest stays even when over budget");
    }

    #[test]
    fn a_range_maps_to_the_chunks_covering_it_whatever_their_sizes() {
        let sizes = [10, 1, 5, 20];
        let layout = Layout::new(sizes.iter().map(|&size| ChunkRef { id: [0; 32], key: [0; 32], size }).collect());
        assert_eq!((layout.len(), layout.start(2), layout.start(3)), (36, 11, 16));
        assert_eq!(layout.covering(0, 1), 0..1);
        assert_eq!(layout.covering(9, 11), 0..2);
        assert_eq!(layout.covering(10, 11), 1..2);
        assert_eq!(layout.covering(10, 12), 1..3);
        assert_eq!(layout.covering(15, 17), 2..4);
        assert_eq!(layout.covering(0, 36), 0..4);
        assert_eq!(layout.covering(35, 36), 3..4);
    }

    #[test]
    fn device_numbers_use_the_kernel_encoding() {
        assert_eq!(kernel_dev(nix::sys::stat::makedev(1, 3)), 0x103);
        assert_eq!(kernel_dev(nix::sys::stat::makedev(259, 0x12345)), 0x1231_0345);
    }
}
