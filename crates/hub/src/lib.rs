//! The zgrid hub: stores flists under each user's namespace (the user's public key) and the
//! chunks they reference, shared by everyone. Uploads are signed by their owner; downloads are
//! public. Chunks and flists by hash are immutable HTTP objects, so any cache or mirror can sit
//! in front; names are mutable pointers to hashes.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let hub = zgrid_hub::Hub::open(zgrid_hub::Config::new("/var/lib/zgrid-hub"))?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8090").await?;
//! zgrid_hub::run(listener, hub, std::future::pending()).await
//! # }
//! ```

mod auth;
mod error;
mod limits;
mod routes;
mod store;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

pub use crate::limits::UploadLimits;
pub use crate::store::Repos;

/// Hub settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Directory of chunks, flists and their names (created if missing).
    pub data: PathBuf,
    /// How far a request's timestamp may be from the hub's clock, in seconds.
    pub request_window_secs: i64,
    /// Largest chunk accepted.
    pub max_chunk_bytes: usize,
    /// Largest flist file accepted.
    pub max_flist_bytes: u64,
    /// Largest archive accepted for import.
    pub max_import_bytes: u64,
    /// How many uploads, and how many bytes of them, may be in progress at once.
    pub uploads: UploadLimits,
}

impl Config {
    /// Defaults with data in `data`.
    pub fn new(data: impl Into<PathBuf>) -> Self {
        Self {
            data: data.into(),
            request_window_secs: 300,
            max_chunk_bytes: 32 << 20,
            max_flist_bytes: 512 << 20,
            max_import_bytes: 16 << 30,
            uploads: UploadLimits::default(),
        }
    }
}

/// A running hub's shared state.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    repos: Repos,
    auth: auth::Nonces,
    uploads: limits::Uploads,
    stats: Counters,
}

/// What the hub counts since it started.
#[derive(Default)]
struct Counters {
    chunks_served: AtomicU64,
    chunk_bytes_served: AtomicU64,
    flists_served: AtomicU64,
    chunks_received: AtomicU64,
}

impl Hub {
    /// Open (creating if needed) the hub's data directory.
    pub fn open(config: Config) -> std::io::Result<Self> {
        let repos = Repos::open(&config.data)?;
        let auth = auth::Nonces::open(&config.data.join("nonces"), config.request_window_secs)?;
        let uploads = limits::Uploads::new(config.uploads.clone());
        Ok(Self { inner: Arc::new(Inner { config, repos, auth, uploads, stats: Counters::default() }) })
    }

    /// The stored flists and chunks.
    pub fn repos(&self) -> &Repos {
        &self.inner.repos
    }
}

/// Serve the hub on `listener` (a [`tokio::net::TcpListener`] for plain HTTP, or a
/// [`zgrid_serve::Listener`] for TLS) until `shutdown` completes.
pub async fn run(
    listener: impl Into<zgrid_serve::Listener>,
    hub: Hub,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    zgrid_serve::serve(listener.into(), routes::app(hub), shutdown).await
}
