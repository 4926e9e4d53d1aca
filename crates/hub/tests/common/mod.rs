//! What the hub's test binaries share: a hub served in process on loopback, signed requests
//! made by hand, and test data.

#![allow(dead_code)] // shared by test binaries that each use a part

pub mod raw;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::oneshot;
use zgrid_client::{ClientError, HubClient};
use zgrid_flist::DirStore;
use zgrid_hub::{Config, Hub};
use zgrid_types::Keypair;
use zgrid_types::auth::{BodyDigest, CONTENT_HASH_HEADER, RequestAuth};

/// A hub serving a data directory on loopback; stopped when dropped.
pub struct TestHub {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// Its data directory.
    pub data: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestHub {
    /// Open the hub on `data`, with the default settings, and serve it on a free port.
    pub async fn start(data: &Path) -> Self {
        Self::start_with(Config::new(data)).await
    }

    /// Open the hub with `config` and serve it on a free port.
    pub async fn start_with(config: Config) -> Self {
        let data = config.data.clone();
        let hub = Hub::open(config).expect("open the hub");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(zgrid_hub::run(listener, hub, async { stopped.await.unwrap_or(()) }));
        Self { url: format!("http://{addr}"), addr, data, stop: Some(stop), task: Some(task) }
    }

    /// Shut down gracefully and wait until the server has stopped.
    pub async fn stop(mut self) {
        let _ = self.stop.take().expect("running").send(());
        let task = self.task.take().expect("running");
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the hub stops within 10 s")
            .expect("the hub task")
            .expect("the hub ends cleanly");
    }

    /// An unsigned client.
    pub fn client(&self) -> HubClient {
        HubClient::new(&self.url).expect("client")
    }

    /// A client signing with `key`.
    pub fn signed(&self, key: &Keypair) -> HubClient {
        self.client().with_key(key.clone())
    }

    /// The hub's own chunk store.
    pub fn chunks(&self) -> DirStore {
        DirStore::new(self.data.join("chunks"))
    }

    /// The files in the hub's spool (`tmp/`), the uploads being received.
    pub fn spooled(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.data.join("tmp")).expect("read tmp/").map(|e| e.expect("entry").path()).collect()
    }

    /// An unsigned `GET`.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        reqwest::get(format!("{}{path}", self.url)).await.expect("GET")
    }

    /// `GET` that must succeed; the body.
    pub async fn get_ok(&self, path: &str) -> Vec<u8> {
        let resp = self.get(path).await;
        assert_eq!(resp.status(), 200, "GET {path}");
        resp.bytes().await.expect("body").to_vec()
    }

    /// Send `body`, declaring its hash, with the `Authorization` value `auth` (none: unsigned);
    /// status and body text.
    pub async fn send(&self, method: &str, path: &str, auth: Option<&str>, body: Vec<u8>) -> (u16, String) {
        let hash = blake3::hash(&body).to_hex().to_string();
        self.send_declaring(method, path, auth, &hash, body).await
    }

    /// [`TestHub::send`], declaring `hash` as the body's hash.
    pub async fn send_declaring(
        &self,
        method: &str,
        path: &str,
        auth: Option<&str>,
        hash: &str,
        body: Vec<u8>,
    ) -> (u16, String) {
        let mut req = reqwest::Client::new()
            .request(method.parse().expect("method"), format!("{}{path}", self.url))
            .header("content-type", "application/octet-stream")
            .header(CONTENT_HASH_HEADER, hash)
            .body(body);
        if let Some(auth) = auth {
            req = req.header("authorization", auth);
        }
        let resp = req.send().await.expect("send");
        (resp.status().as_u16(), resp.text().await.expect("body"))
    }
}

impl Drop for TestHub {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A fresh nonce.
pub fn nonce() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = format!("{}/{:?}", COUNTER.fetch_add(1, Ordering::Relaxed), std::time::SystemTime::now());
    hex::encode(&blake3::hash(seed.as_bytes()).as_bytes()[..16])
}

/// An `Authorization` value for one request with `body`, with a fresh nonce.
pub fn sign(key: &Keypair, method: &str, path: &str, timestamp: i64, body: &[u8]) -> String {
    RequestAuth::sign(key, method, path, timestamp, nonce(), body).to_string()
}

/// A key made from `seed`.
pub fn key(seed: u8) -> Keypair {
    Keypair::from_seed(&[seed; 32])
}

/// The status and message of a refusal.
pub fn refusal(result: Result<impl std::fmt::Debug, ClientError>) -> (u16, String) {
    match result {
        Err(ClientError::Api { status, message, .. }) => (status, message),
        other => panic!("expected the hub to refuse, got {other:?}"),
    }
}

/// `n` bytes that differ with `seed` (distinct contents make distinct chunks).
pub fn bytes(seed: &str, n: usize) -> Vec<u8> {
    let mut out = vec![0; n];
    blake3::Hasher::new().update(seed.as_bytes()).finalize_xof().fill(&mut out);
    out
}

/// The headers of a request signed by `key` over a body of `len` bytes hashing to `hash`,
/// as a client declares them: `Authorization` and the hash (the length goes in
/// `Content-Length`).
pub fn signed_headers(
    key: &Keypair,
    method: &str,
    path: &str,
    len: u64,
    hash: &blake3::Hash,
) -> Vec<(&'static str, String)> {
    let digest = BodyDigest { len, hash: *hash };
    let auth = RequestAuth::sign_digest(key, method, path, zgrid_types::unix_now(), nonce(), &digest);
    vec![("authorization", auth.to_string()), (CONTENT_HASH_HEADER, hash.to_hex().to_string())]
}

/// Wait until `done` holds (checked every 20 ms, for at most 30 s, then the test fails).
pub async fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "waited 30 s for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
