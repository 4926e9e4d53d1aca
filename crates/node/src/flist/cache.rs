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
    /// The cache in `dir`, holding at most `limit` bytes; what is already there is indexed
    /// (oldest files first in line for eviction) and trimmed to the limit.
    pub fn open(dir: impl Into<PathBuf>, limit: u64) -> std::io::Result<Self> {
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
        let http =
            reqwest::blocking::Client::builder().timeout(FETCH_TIMEOUT).build().map_err(std::io::Error::other)?;
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
            if let Err(e) = self.store.put(id, &bytes) {
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
}
