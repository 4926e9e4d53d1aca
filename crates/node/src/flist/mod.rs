//! Container images from hubs: a container whose `flist` is an `http(s)://` URL gets that flist
//! downloaded once (checked against the reservation's pinned hash when there is one) and
//! mounted read-only through FUSE by the node's mount service ([`daemon`]), which fetches each
//! chunk on its first read into a node-wide cache ([`cache`]). The container's overlay puts
//! its writable layer on top.
//!
//! Layout under the node's `flist/` directory: `objects/<hash>.flist` (downloaded flists),
//! `objects/<hash>.config.json` (their image configs, for the runtime), `containers/<id>.json`
//! (which flist a container runs, so restarts never switch versions under its writable layer),
//! `cache/` (chunks), `mnt/<id>` (mount points), `mounts.sock`, `service.log`.

pub mod cache;
pub mod daemon;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use zgrid_client::HttpClient;

use self::daemon::{Answer, Request};
use crate::provision::ProvisionError;

/// Largest flist file downloaded.
const MAX_FLIST_BYTES: u64 = 512 << 20;
/// How long the mount service may take to come up.
const SERVICE_START: Duration = Duration::from_secs(10);

/// A container's image, as mounted.
#[derive(Debug, Clone)]
pub struct Image {
    /// The mounted root filesystem.
    pub root: PathBuf,
    /// The image config file (entrypoint, cmd, env, workdir) written from the flist.
    pub config: PathBuf,
}

/// Trouble with a container's mounted image.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageProblem {
    /// The mount is dead: the container must stop and start again over a new one.
    #[error("{0}")]
    Gone(String),
    /// Chunks failed to download or failed their checks; reads of them fail with EIO.
    #[error("{0}")]
    Damaged(String),
}

/// How [`ImageProblem::Damaged`] begins, before the causes.
pub(crate) const DAMAGED: &str = "its image is damaged or unreachable";

/// Which flist a container runs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Pinned {
    hash: String,
    hub: String,
}

/// The agent's side of flist images.
pub struct FlistImages {
    dir: PathBuf,
    /// The program that runs the mount service (`zgrid`), and its arguments before ours.
    service: Vec<String>,
    cache_bytes: u64,
    http: HttpClient,
    starting: tokio::sync::Mutex<()>,
}

fn transient(e: impl std::fmt::Display) -> ProvisionError {
    ProvisionError::Transient(e.to_string())
}

impl FlistImages {
    /// Images kept under `dir`, downloaded over `http`, mounted by a service started as
    /// `service` (program and arguments; `--dir` and `--cache-bytes` are added) with a cache of
    /// `cache_bytes`.
    pub fn new(dir: impl Into<PathBuf>, service: Vec<String>, cache_bytes: u64, http: HttpClient) -> Self {
        Self { dir: dir.into(), service, cache_bytes, http, starting: tokio::sync::Mutex::new(()) }
    }

    fn record(&self, id: &str) -> PathBuf {
        self.dir.join("containers").join(format!("{id}.json"))
    }

    fn object(&self, hash: &str, ext: &str) -> PathBuf {
        self.dir.join("objects").join(format!("{hash}.{ext}"))
    }

    /// Mount the image of container `id` from `url` (chunks from `hub`, or the flist's own
    /// server when empty), refusing any other content than `pin` when it is set.
    pub async fn mount(&self, id: &str, url: &str, hub: &str, pin: &str) -> Result<Image, ProvisionError> {
        let pinned = match read_record(&self.record(id)).map_err(transient)? {
            Some(p) => p,
            None => {
                let hub = if hub.is_empty() { origin(url)? } else { hub.trim_end_matches('/').to_owned() };
                let hash = self.download(url, pin).await?;
                let p = Pinned { hash, hub };
                write_durably(&self.record(id), &serde_json::to_vec(&p).expect("records serialise"))
                    .map_err(transient)?;
                p
            }
        };
        if !pin.is_empty() && pinned.hash != pin {
            return Err(ProvisionError::Permanent(format!(
                "this container runs flist {} but the reservation pins {pin}",
                pinned.hash
            )));
        }
        let flist = self.object(&pinned.hash, "flist");
        if !flist.exists() {
            // The record survived but the object did not (removed by hand): fetch it again,
            // refusing anything but what the container ran.
            self.download(url, &pinned.hash).await?;
        }
        let answer = self.ask(&Request::Mount { id: id.to_owned(), flist, hub: pinned.hub.clone() }).await?;
        if let Some(e) = answer.error {
            return Err(ProvisionError::Transient(e));
        }
        Ok(Image { root: self.dir.join(daemon::MOUNTS).join(id), config: self.object(&pinned.hash, "config.json") })
    }

    /// Download the flist at `url` into the objects (unless there), returning its hash; with
    /// `pin`, anything else is refused before it is kept.
    async fn download(&self, url: &str, pin: &str) -> Result<String, ProvisionError> {
        if !pin.is_empty() && self.object(pin, "flist").exists() {
            return Ok(pin.to_owned());
        }
        let answer = self.http.fetch("flist server", reqwest::Method::GET, url).await.map_err(|e| {
            let message = format!("cannot fetch flist {url}: {e}");
            match e.status() {
                Some(status) if (400..500).contains(&status) => ProvisionError::Permanent(message),
                _ => ProvisionError::Transient(message),
            }
        })?;
        if answer.content_length().is_some_and(|n| n > MAX_FLIST_BYTES) {
            return Err(ProvisionError::Permanent(format!("flist {url} is larger than {MAX_FLIST_BYTES} bytes")));
        }
        let bytes = answer.bytes().await.map_err(|e| transient(format!("flist {url} broke off: {e}")))?;
        let hash = blake3::hash(&bytes).to_hex().to_string();
        if !pin.is_empty() && hash != pin {
            return Err(ProvisionError::Permanent(format!(
                "flist {url} has hash {hash}, but the reservation pins {pin}: refusing other content"
            )));
        }
        let (dir, flist, config) =
            (self.dir.join("objects"), self.object(&hash, "flist"), self.object(&hash, "config.json"));
        let what = url.to_owned();
        tokio::task::spawn_blocking(move || keep(&what, &dir, &bytes, &flist, &config)).await.map_err(transient)??;
        Ok(hash)
    }

    /// Unmount container `id`'s image and forget which flist it ran.
    pub async fn unmount(&self, id: &str) -> Result<(), String> {
        if !self.uses_flist(id) {
            return Ok(());
        }
        let answer = self.ask(&Request::Unmount { id: id.to_owned() }).await.map_err(|e| e.to_string())?;
        if let Some(e) = answer.error {
            return Err(e);
        }
        match std::fs::remove_file(self.record(id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.to_string()),
            _ => Ok(()),
        }
    }

    /// Whether container `id` runs from an flist.
    fn uses_flist(&self, id: &str) -> bool {
        self.record(id).exists()
    }

    /// What is wrong with container `id`'s image, if anything (nothing when it has no flist).
    pub async fn problem(&self, id: &str) -> Option<ImageProblem> {
        if !self.uses_flist(id) {
            return None;
        }
        match self.ask(&Request::Status { id: id.to_owned() }).await {
            Ok(a) if !a.alive => {
                Some(ImageProblem::Gone("its image's FUSE mount is gone (the mount service stopped)".into()))
            }
            Ok(a) if !a.problems.is_empty() => {
                // Each read of a bad chunk fails the same way: say each cause once.
                let mut causes: Vec<&String> = Vec::new();
                for p in &a.problems {
                    if !causes.contains(&p) {
                        causes.push(p);
                    }
                }
                let causes: Vec<&str> = causes.into_iter().map(String::as_str).collect();
                Some(ImageProblem::Damaged(format!("{DAMAGED}: {}", causes.join("; "))))
            }
            Ok(_) => None,
            Err(e) => Some(ImageProblem::Gone(format!("the flist mount service does not answer: {e}"))),
        }
    }

    /// Send `request` to the mount service, starting it when it does not answer.
    async fn ask(&self, request: &Request) -> Result<Answer, ProvisionError> {
        if let Ok(answer) = self.send(request).await {
            return Ok(answer);
        }
        let _one = self.starting.lock().await;
        if let Ok(answer) = self.send(request).await {
            return Ok(answer);
        }
        self.start_service()?;
        let deadline = tokio::time::Instant::now() + SERVICE_START;
        loop {
            match self.send(request).await {
                Ok(answer) => return Ok(answer),
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    let log = self.dir.join("service.log");
                    return Err(transient(format!(
                        "the flist mount service did not start ({e}); see {}",
                        log.display()
                    )));
                }
                // It binds its socket within milliseconds of starting.
                Err(_) => tokio::time::sleep(Duration::from_millis(2)).await,
            }
        }
    }

    async fn send(&self, request: &Request) -> std::io::Result<Answer> {
        let mut conn = tokio::net::UnixStream::connect(self.dir.join(daemon::SOCKET)).await?;
        let mut line = serde_json::to_vec(request).expect("requests serialise");
        line.push(b'\n');
        conn.write_all(&line).await?;
        let mut answer = String::new();
        BufReader::new(conn).read_line(&mut answer).await?;
        serde_json::from_str(&answer).map_err(std::io::Error::other)
    }

    /// Start the mount service in its own session, so it outlives this agent.
    fn start_service(&self) -> Result<(), ProvisionError> {
        std::fs::create_dir_all(&self.dir).map_err(transient)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("service.log"))
            .map_err(transient)?;
        let (program, args) = self.service.split_first().expect("a service program is configured");
        let mut cmd = std::process::Command::new(program);
        cmd.args(args)
            .arg("--dir")
            .arg(&self.dir)
            .arg("--cache-bytes")
            .arg(self.cache_bytes.to_string())
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().map_err(transient)?)
            .stderr(log);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child =
            cmd.spawn().map_err(|e| transient(format!("cannot start the flist mount service {program}: {e}")))?;
        tracing::info!(pid = child.id(), "started the flist mount service");
        Ok(())
    }

    /// Stop the mount service and detach every mount it had (node teardown).
    pub fn stop_service(dir: &Path) {
        let socket = dir.join(daemon::SOCKET);
        if let Ok(creds) = std::os::unix::net::UnixStream::connect(&socket).and_then(|s| peer_pid(&s)) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(creds), nix::sys::signal::Signal::SIGKILL);
        }
        for entry in std::fs::read_dir(dir.join(daemon::MOUNTS)).into_iter().flatten().flatten() {
            daemon::detach(&entry.path());
        }
    }
}

fn peer_pid(stream: &std::os::unix::net::UnixStream) -> std::io::Result<i32> {
    let creds = rustix::net::sockopt::socket_peercred(stream).map_err(std::io::Error::from)?;
    Ok(creds.pid.as_raw_nonzero().get())
}

/// The scheme, host and port of `url`: where its chunks are when no hub is named.
fn origin(url: &str) -> Result<String, ProvisionError> {
    let parsed = url::Url::parse(url).map_err(|e| ProvisionError::Permanent(format!("flist {url:?}: {e}")))?;
    Ok(parsed.origin().ascii_serialization())
}

fn read_record(path: &Path) -> std::io::Result<Option<Pinned>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).map_err(std::io::Error::other)?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// [`crate::store::write_durably`], creating the directory first.
fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(path.parent().expect("records have a directory"))?;
    crate::store::write_durably(path, bytes)
}

/// Check that `bytes` (from `url`) is an flist, then keep it and its image config. Not an flist
/// is permanent; trouble writing it (a full disk) is not.
fn keep(url: &str, dir: &Path, bytes: &[u8], flist: &Path, config: &Path) -> Result<(), ProvisionError> {
    std::fs::create_dir_all(dir).map_err(transient)?;
    let tmp = tempfile::NamedTempFile::new_in(dir).map_err(transient)?;
    std::fs::write(tmp.path(), bytes).map_err(transient)?;
    let image = zgrid_flist::Flist::open(tmp.path())
        .and_then(|image| image.config())
        .map_err(|e| ProvisionError::Permanent(format!("flist {url} is not an flist: {e}")))?;
    write_durably(config, &serde_json::to_vec(&image).expect("configs serialise")).map_err(transient)?;
    tmp.as_file().sync_all().map_err(transient)?;
    tmp.persist(flist).map_err(|e| transient(e.error))?;
    Ok(())
}
