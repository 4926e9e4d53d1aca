//! The node-wide chunk cache: chunks fetched from hubs on first use, kept in a directory
//! (`<id[0..2]>/<id>`) bounded in size, least recently used evicted first. A chunk is checked
//! against its id before it is cached or used, so a corrupt answer is never kept. Concurrent
//! requests for one missing chunk share one download.

use std::collections::{BTreeSet, HashMap};
use std::io::ErrorKind;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use zgrid_client::HttpOptions;
use zgrid_flist::DirStore;
use zgrid_flist::chunk::Hash;

/// Attempts at downloading a chunk before giving up.
const ATTEMPTS: u32 = 4;
/// Limit for one chunk download.
const FETCH_TIMEOUT: Duration = Duration::from_secs(60);

/// What one fetch ended with: the bytes, or why not (shared by everyone who waited).
type Fetched = Result<Arc<[u8]>, String>;

/// A download in progress that other readers wait for.
#[derive(Default)]
struct Flight {
    done: Mutex<Option<Fetched>>,
    ready: Condvar,
}

/// Which chunks are cached, their sizes, and their recency.
#[derive(Default)]
struct Index {
    /// Chunk id -> (size, last use).
    entries: HashMap<Hash, (u64, u64)>,
    /// (last use, id), oldest first.
    order: BTreeSet<(u64, Hash)>,
    total: u64,
    clock: u64,
}

impl Index {
    fn touch(&mut self, id: &Hash) -> bool {
        self.clock += 1;
        let clock = self.clock;
        let Some(entry) = self.entries.get_mut(id) else { return false };
        self.order.remove(&(entry.1, *id));
        entry.1 = clock;
        self.order.insert((clock, *id));
        true
    }

    fn insert(&mut self, id: Hash, size: u64) {
        if self.touch(&id) {
            return;
        }
        self.entries.insert(id, (size, self.clock));
        self.order.insert((self.clock, id));
        self.total += size;
    }

    fn remove(&mut self, id: &Hash) {
        if let Some((size, used)) = self.entries.remove(id) {
            self.order.remove(&(used, *id));
            self.total -= size;
        }
    }

    /// The least recently used chunk while the total is above `limit`.
    fn victim(&self, limit: u64) -> Option<Hash> {
        (self.total > limit).then(|| self.order.first().map(|(_, id)| *id)).flatten()
    }
}

/// Chunks from hubs, cached on disk.
pub struct ChunkCache {
    store: DirStore,
    limit: u64,
    index: Mutex<Index>,
    flights: Mutex<HashMap<Hash, Arc<Flight>>>,
    http: reqwest::blocking::Client,
    downloaded: AtomicU64,
}

impl ChunkCache {
    /// The cache in `dir`, holding at most `limit` bytes, fetching with `http`'s trusted CAs and
    /// time limits; what is already there is indexed (oldest files first in line for eviction)
    /// and trimmed to the limit.
    pub fn open(dir: impl Into<PathBuf>, limit: u64, http: &HttpOptions) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        let mut found = Vec::new();
        for shard in std::fs::read_dir(&dir)? {
            let shard = shard?;
            if !shard.file_type()?.is_dir() {
                continue;
            }
            for file in std::fs::read_dir(shard.path())? {
                let file = file?;
                let meta = file.metadata()?;
                let name = file.file_name();
                match hex::decode(name.as_encoded_bytes()).ok().and_then(|b| Hash::try_from(b).ok()) {
                    Some(id) => found.push((meta.modified()?, id, meta.len())),
                    // Left by a download cut short.
                    None => std::fs::remove_file(file.path())?,
                }
            }
        }
        found.sort();
        let mut index = Index::default();
        for (_, id, size) in found {
            index.insert(id, size);
        }
        let http = http.blocking_client(FETCH_TIMEOUT).map_err(std::io::Error::other)?;
        let cache = Self {
            store: DirStore::new(dir),
            limit,
            index: Mutex::new(index),
            flights: Mutex::default(),
            http,
            downloaded: AtomicU64::new(0),
        };
        cache.evict();
        Ok(cache)
    }

    /// Bytes held now.
    pub fn size(&self) -> u64 {
        self.index.lock().expect("cache index").total
    }

    /// Bytes downloaded from hubs since the cache was opened.
    pub fn downloaded(&self) -> u64 {
        self.downloaded.load(Ordering::Relaxed)
    }

    /// The stored bytes of chunk `id`, from the cache or else from `hub`
    /// (`<hub>/chunks/<id>`), checked against the id.
    pub fn get(&self, hub: &str, id: &Hash) -> std::io::Result<Arc<[u8]>> {
        if let Some(bytes) = self.cached(id)? {
            return Ok(bytes);
        }
        let (flight, leader) = {
            let mut flights = self.flights.lock().expect("flights");
            match flights.get(id) {
                Some(f) => (f.clone(), false),
                None => {
                    let f = Arc::new(Flight::default());
                    flights.insert(*id, f.clone());
                    (f, true)
                }
            }
        };
        if leader {
            // It may have been cached between the first look and the flight.
            let result = match self.cached(id) {
                Ok(Some(bytes)) => Ok(bytes),
                Ok(None) => self.fetch(hub, id),
                Err(e) => Err(e.to_string()),
            };
            self.flights.lock().expect("flights").remove(id);
            *flight.done.lock().expect("flight") = Some(result.clone());
            flight.ready.notify_all();
            return result.map_err(std::io::Error::other);
        }
        let mut done = flight.done.lock().expect("flight");
        while done.is_none() {
            done = flight.ready.wait(done).expect("flight");
        }
        done.clone().expect("set before notify").map_err(std::io::Error::other)
    }

    /// The cached bytes of `id`, if any.
    fn cached(&self, id: &Hash) -> std::io::Result<Option<Arc<[u8]>>> {
        if !self.index.lock().expect("cache index").touch(id) {
            return Ok(None);
        }
        match self.store.get(id) {
            Ok(bytes) => Ok(Some(bytes.into())),
            // Evicted meanwhile, or removed by hand: fetch again.
            Err(e) if e.kind() == ErrorKind::NotFound => {
                self.index.lock().expect("cache index").remove(id);
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Forget chunk `id` (it failed a check after it was cached).
    pub fn forget(&self, id: &Hash) {
        self.index.lock().expect("cache index").remove(id);
        let _ = std::fs::remove_file(self.store.path(id));
    }

    /// Download, check and cache one chunk.
    fn fetch(&self, hub: &str, id: &Hash) -> Fetched {
        let name = hex::encode(id);
        let url = format!("{}/chunks/{name}", hub.trim_end_matches('/'));
        let mut last = String::new();
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(200 << attempt));
            }
            let resp = match self.http.get(&url).send() {
                Ok(resp) => resp,
                Err(e) => {
                    last = format!("cannot fetch chunk {name} from {hub}: {e}");
                    continue;
                }
            };
            let status = resp.status();
            if !status.is_success() {
                last = format!("hub {hub} answered {status} for chunk {name}");
                if status.is_client_error() {
                    break;
                }
                continue;
            }
            let bytes = match resp.bytes() {
                Ok(bytes) => bytes,
                Err(e) => {
                    last = format!("chunk {name} from {hub} broke off: {e}");
                    continue;
                }
            };
            self.downloaded.fetch_add(bytes.len() as u64, Ordering::Relaxed);
            if blake3::hash(&bytes).as_bytes() != id {
                // Not retried: a hub that stores a damaged chunk serves it the same way again.
                return Err(format!("hub {hub} served corrupt data for chunk {name}: it does not match its hash"));
            }
            if let Err(e) = self.store.put_cached(id, &bytes) {
                tracing::warn!(chunk = %name, error = %e, "cannot cache a chunk; serving it uncached");
            } else {
                self.index.lock().expect("cache index").insert(*id, bytes.len() as u64);
                self.evict();
            }
            return Ok(Arc::from(bytes.as_ref()));
        }
        Err(last)
    }

    /// Remove least recently used chunks until the cache is within its limit.
    fn evict(&self) {
        loop {
            let mut index = self.index.lock().expect("cache index");
            let Some(victim) = index.victim(self.limit) else { return };
            index.remove(&victim);
            drop(index);
            if let Err(e) = std::fs::remove_file(self.store.path(&victim))
                && e.kind() != ErrorKind::NotFound
            {
                tracing::warn!(chunk = %hex::encode(victim), error = %e, "cannot evict a cached chunk");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Barrier;
    use std::time::SystemTime;

    use zgrid_types::hub::HubStats;

    use super::*;

    #[test]
    fn least_recently_used_goes_first() {
        let mut index = Index::default();
        let (a, b, c) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        index.insert(a, 10);
        index.insert(b, 10);
        index.insert(c, 10);
        assert!(index.touch(&a));
        assert_eq!(index.victim(30), None);
        assert_eq!(index.victim(25), Some(b));
        index.remove(&b);
        assert_eq!(index.victim(15), Some(c));
        assert_eq!(index.total, 20);
    }

    /// A real hub on loopback, served from its own runtime thread (the cache's blocking client
    /// must not run inside a runtime); stopped when dropped.
    struct TestHub {
        url: String,
        data: tempfile::TempDir,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl TestHub {
        fn start() -> Self {
            let data = tempfile::tempdir().expect("tempdir");
            let hub = zgrid_hub::Hub::open(zgrid_hub::Config::new(data.path())).expect("open the hub");
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.set_nonblocking(true).expect("non-blocking listener");
            let url = format!("http://{}", listener.local_addr().expect("addr"));
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let thread = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                    zgrid_hub::run(listener, hub, async { stopped.await.unwrap_or(()) }).await.expect("serve");
                });
            });
            Self { url, data, stop: Some(stop), thread: Some(thread) }
        }

        /// The hub's own chunk store.
        fn store(&self) -> DirStore {
            DirStore::new(self.data.path().join("chunks"))
        }

        /// Store a chunk of `len` bytes made from `seed` on the hub; its id and bytes.
        fn chunk(&self, seed: &str, len: usize) -> (Hash, Vec<u8>) {
            let mut bytes = vec![0; len];
            blake3::Hasher::new().update(seed.as_bytes()).finalize_xof().fill(&mut bytes);
            let id = *blake3::hash(&bytes).as_bytes();
            self.store().put(&id, &bytes).expect("store a chunk on the hub");
            (id, bytes)
        }

        fn stats(&self) -> HubStats {
            let resp = reqwest::blocking::get(format!("{}/api/v1/stats", self.url)).expect("stats");
            resp.json().expect("stats json")
        }
    }

    impl Drop for TestHub {
        fn drop(&mut self) {
            if let Some(stop) = self.stop.take() {
                let _ = stop.send(());
            }
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }

    /// Get chunk `id` through `cache` and check it is `bytes`.
    fn get(cache: &ChunkCache, hub: &TestHub, (id, bytes): &(Hash, Vec<u8>)) {
        let got = cache.get(&hub.url, id).unwrap_or_else(|e| panic!("get {}: {e}", hex::encode(id)));
        assert_eq!(&*got, bytes.as_slice());
    }

    /// Which of `chunks` (by position) are in the cache's directory.
    fn on_disk(cache: &ChunkCache, chunks: &[(Hash, Vec<u8>)]) -> Vec<usize> {
        (0..chunks.len()).filter(|&i| cache.store.path(&chunks[i].0).exists()).collect()
    }

    #[test]
    fn concurrent_gets_of_one_chunk_share_one_download() {
        let hub = TestHub::start();
        let (id, bytes) = hub.chunk("shared", 200_000);
        let dir = tempfile::tempdir().unwrap();
        let cache = ChunkCache::open(dir.path(), 1 << 20, &HttpOptions::default()).unwrap();
        let start = Barrier::new(8);
        let got: Vec<Arc<[u8]>> = std::thread::scope(|s| {
            let readers: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        start.wait();
                        cache.get(&hub.url, &id).expect("get")
                    })
                })
                .collect();
            readers.into_iter().map(|r| r.join().expect("reader")).collect()
        });
        assert!(got.iter().all(|g| **g == *bytes), "every reader gets the chunk's bytes");
        let stats = hub.stats();
        assert_eq!((stats.chunks_served, stats.chunk_bytes_served), (1, bytes.len() as u64), "one download");
        assert_eq!(cache.downloaded(), bytes.len() as u64);
        assert_eq!(cache.size(), bytes.len() as u64);
    }

    #[test]
    fn least_recently_used_chunks_are_evicted_and_fetched_again() {
        let hub = TestHub::start();
        let chunks: Vec<_> = (0..5).map(|i| hub.chunk(&format!("chunk {i}"), 1000)).collect();
        let dir = tempfile::tempdir().unwrap();
        let limit = 2500;
        let cache = ChunkCache::open(dir.path(), limit, &HttpOptions::default()).unwrap();
        for (i, expect) in [
            (0, vec![0]),
            (1, vec![0, 1]),
            (2, vec![1, 2]),
            (1, vec![1, 2]), // cached: now more recent than 2
            (3, vec![1, 3]),
            (1, vec![1, 3]),
            (4, vec![1, 4]),
        ] {
            get(&cache, &hub, &chunks[i]);
            assert!(cache.size() <= limit, "after chunk {i}: {} bytes cached", cache.size());
            assert_eq!(on_disk(&cache, &chunks), expect, "after chunk {i}");
        }
        assert_eq!(cache.size(), 2000);
        assert_eq!(hub.stats().chunks_served, 5, "cached chunks are not downloaded again");

        // An evicted chunk is downloaded again.
        get(&cache, &hub, &chunks[0]);
        assert_eq!(hub.stats().chunks_served, 6);
        assert_eq!(on_disk(&cache, &chunks), [0, 4]);
        assert_eq!(cache.downloaded(), 6000);
    }

    #[test]
    fn reopening_indexes_the_directory_and_trims_it() {
        let hub = TestHub::start();
        let chunks: Vec<_> = (0..3).map(|i| hub.chunk(&format!("chunk {i}"), 1000)).collect();
        let dir = tempfile::tempdir().unwrap();
        {
            let cache = ChunkCache::open(dir.path(), 1 << 20, &HttpOptions::default()).unwrap();
            for chunk in &chunks {
                get(&cache, &hub, chunk);
            }
            // Oldest files go first on reopening: chunk 1, then 2, then 0.
            let now = SystemTime::now();
            for (i, age) in [(1, 300), (2, 200), (0, 100)] {
                let file = std::fs::File::options().write(true).open(cache.store.path(&chunks[i].0)).unwrap();
                file.set_modified(now - Duration::from_secs(age)).unwrap();
            }
            // A download cut short.
            let shard = cache.store.path(&chunks[0].0).parent().unwrap().to_owned();
            std::fs::write(shard.join(".tmpHalf01"), b"half").unwrap();
        }
        assert_eq!(hub.stats().chunks_served, 3);

        let cache = ChunkCache::open(dir.path(), 2500, &HttpOptions::default()).unwrap();
        assert_eq!(cache.size(), 2000);
        assert_eq!(on_disk(&cache, &chunks), [0, 2], "the oldest is trimmed");
        let shard = cache.store.path(&chunks[0].0).parent().unwrap().to_owned();
        assert!(!shard.join(".tmpHalf01").exists(), "partial downloads are removed");
        get(&cache, &hub, &chunks[0]);
        get(&cache, &hub, &chunks[2]);
        assert_eq!((hub.stats().chunks_served, cache.downloaded()), (3, 0), "served from the directory");
        get(&cache, &hub, &chunks[1]);
        assert_eq!((hub.stats().chunks_served, cache.downloaded()), (4, 1000));
    }

    #[test]
    fn corrupt_or_unknown_chunks_are_refused_and_not_cached() {
        let hub = TestHub::start();
        let (id, bytes) = hub.chunk("damaged", 1000);
        let mut damaged = bytes.clone();
        damaged[500] ^= 0x80;
        std::fs::write(hub.store().path(&id), &damaged).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cache = ChunkCache::open(dir.path(), 1 << 20, &HttpOptions::default()).unwrap();

        let err = cache.get(&hub.url, &id).expect_err("a corrupt chunk").to_string();
        assert!(err.contains(&hex::encode(id)) && err.contains("corrupt"), "{err}");
        assert_eq!(cache.size(), 0);
        assert!(!cache.store.has(&id));
        let shard = cache.store.path(&id).parent().unwrap().to_owned();
        let leftovers = std::fs::read_dir(&shard).map(|d| d.count()).unwrap_or(0);
        assert_eq!(leftovers, 0, "nothing is written to the cache directory");
        assert_eq!(hub.stats().chunks_served, 1, "not retried: the hub would serve the same bytes");

        // Not remembered: once the hub has the right bytes, the chunk is fetched and cached.
        std::fs::write(hub.store().path(&id), &bytes).unwrap();
        get(&cache, &hub, &(id, bytes.clone()));
        assert!(cache.store.has(&id));

        let unknown = [7u8; 32];
        let err = cache.get(&hub.url, &unknown).expect_err("an unknown chunk").to_string();
        assert!(err.contains(&hex::encode(unknown)) && err.contains("404"), "{err}");
        assert_eq!(cache.size(), bytes.len() as u64);
    }

    #[test]
    fn forget_removes_a_chunk() {
        let hub = TestHub::start();
        let chunk = hub.chunk("forgotten", 1000);
        let dir = tempfile::tempdir().unwrap();
        let cache = ChunkCache::open(dir.path(), 1 << 20, &HttpOptions::default()).unwrap();
        get(&cache, &hub, &chunk);
        assert!(cache.store.has(&chunk.0));

        cache.forget(&chunk.0);
        assert!(!cache.store.has(&chunk.0));
        assert_eq!(cache.size(), 0);
        get(&cache, &hub, &chunk);
        assert_eq!(hub.stats().chunks_served, 2, "a forgotten chunk is downloaded again");
        assert_eq!(cache.size(), 1000);
    }
}
