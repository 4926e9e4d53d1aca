//! The mount service: one process per node (`zgrid flist-mounts`, started by the agent) that
//! serves every container's flist over FUSE from the node-wide [`ChunkCache`]. It is its own
//! process so that containers keep reading their images while the agent restarts or upgrades.
//!
//! The agent talks to it over a Unix socket in its directory, one JSON request and one JSON
//! answer per connection ([`Request`], [`Answer`]).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use zgrid_client::HttpOptions;
use zgrid_flist::chunk::{ChunkError, Hash};
use zgrid_flist::mount::{ChunkSource, Mount};

use super::cache::ChunkCache;

/// The socket's name in the service's directory.
pub const SOCKET: &str = "mounts.sock";
/// Where the mount points are, under the service's directory.
pub const MOUNTS: &str = "mnt";

/// What the agent asks.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// Mount the flist file `flist` for container `id`, fetching chunks from `hub`.
    Mount {
        /// The container.
        id: String,
        /// The flist file (on this node).
        flist: PathBuf,
        /// Base URL chunks are fetched from.
        hub: String,
    },
    /// Unmount container `id`'s image.
    Unmount {
        /// The container.
        id: String,
    },
    /// Whether container `id`'s image is mounted and served, and what went wrong reading it.
    Status {
        /// The container.
        id: String,
    },
}

/// The service's answer.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Answer {
    /// Why the request failed, if it did.
    pub error: Option<String>,
    /// The image is mounted and its FUSE session runs.
    pub alive: bool,
    /// Chunks that could not be read since the last status, each with the reason.
    pub problems: Vec<String>,
}

/// One mounted image's chunk source: the cache, the hub, and the failures seen.
struct HubSource {
    cache: Arc<ChunkCache>,
    hub: String,
    problems: Mutex<Vec<String>>,
}

impl HubSource {
    fn problem(&self, message: String) {
        tracing::warn!(hub = %self.hub, "{message}");
        let mut problems = self.problems.lock().expect("problems");
        if problems.len() < 16 {
            problems.push(message);
        }
    }
}

impl ChunkSource for HubSource {
    fn fetch(&self, id: &Hash) -> std::io::Result<Arc<[u8]>> {
        self.cache.get(&self.hub, id).inspect_err(|e| self.problem(e.to_string()))
    }

    fn reject(&self, id: &Hash, why: &ChunkError) {
        self.cache.forget(id);
        self.problem(format!("{why} (from hub {})", self.hub));
    }
}

struct Mounted {
    mount: Mount,
    source: Arc<HubSource>,
}

/// Serve mounts from `dir` with a chunk cache of `cache_bytes` until killed.
pub fn serve(dir: &Path, cache_bytes: u64, http: &HttpOptions) -> std::io::Result<()> {
    let cache = Arc::new(ChunkCache::open(dir.join("cache"), cache_bytes, http)?);
    let socket = dir.join(SOCKET);
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket)?;
    tracing::info!(socket = %socket.display(), cache_bytes, "flist mount service ready");
    let mounts: Arc<Mutex<HashMap<String, Mounted>>> = Arc::default();
    for conn in listener.incoming() {
        let conn = match conn {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(error = %e, "cannot accept a connection");
                continue;
            }
        };
        let (dir, cache, mounts) = (dir.to_owned(), cache.clone(), mounts.clone());
        std::thread::spawn(move || {
            if let Err(e) = answer(conn, &dir, &cache, &mounts) {
                tracing::warn!(error = %e, "a request broke off");
            }
        });
    }
    Ok(())
}

fn answer(
    conn: UnixStream,
    dir: &Path,
    cache: &Arc<ChunkCache>,
    mounts: &Mutex<HashMap<String, Mounted>>,
) -> std::io::Result<()> {
    let mut line = String::new();
    BufReader::new(&conn).read_line(&mut line)?;
    let answer = match serde_json::from_str::<Request>(&line) {
        Ok(request) => handle(request, dir, cache, mounts),
        Err(e) => Answer { error: Some(format!("bad request: {e}")), ..Answer::default() },
    };
    let mut out = serde_json::to_vec(&answer).expect("answers serialise");
    out.push(b'\n');
    (&conn).write_all(&out)
}

fn handle(request: Request, dir: &Path, cache: &Arc<ChunkCache>, mounts: &Mutex<HashMap<String, Mounted>>) -> Answer {
    let fail = |e: String| Answer { error: Some(e), ..Answer::default() };
    let (Request::Mount { id, .. } | Request::Unmount { id } | Request::Status { id }) = &request;
    // Ids name mount points: nothing else may be touched through them.
    if !valid_id(id) {
        return fail(format!("{id:?} is not a container id"));
    }
    let point = dir.join(MOUNTS).join(id);
    match request {
        Request::Mount { id, flist, hub } => {
            let mut mounts = mounts.lock().expect("mounts");
            if mounts.get(&id).is_some_and(|m| m.mount.is_alive()) {
                return Answer { alive: true, ..Answer::default() };
            }
            // A dead session of ours (dropping it unmounts), or a mount of an earlier service.
            mounts.remove(&id);
            detach(&point);
            if let Err(e) = std::fs::create_dir_all(&point) {
                return fail(format!("cannot create {}: {e}", point.display()));
            }
            let source = Arc::new(HubSource { cache: cache.clone(), hub, problems: Mutex::default() });
            match zgrid_flist::mount::mount(&flist, source.clone(), &point) {
                Ok(mount) => {
                    mounts.insert(id, Mounted { mount, source });
                    Answer { alive: true, ..Answer::default() }
                }
                Err(e) => fail(format!("cannot mount {} at {}: {e}", flist.display(), point.display())),
            }
        }
        Request::Unmount { id } => {
            mounts.lock().expect("mounts").remove(&id);
            detach(&point);
            match std::fs::remove_dir(&point) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    fail(format!("cannot remove {}: {e}", point.display()))
                }
                _ => Answer::default(),
            }
        }
        Request::Status { id } => match mounts.lock().expect("mounts").get(&id) {
            Some(m) => {
                let problems = std::mem::take(&mut *m.source.problems.lock().expect("problems"));
                Answer { alive: m.mount.is_alive(), problems, error: None }
            }
            None => Answer::default(),
        },
    }
}

/// Container ids name directories: no separators, no dots first.
fn valid_id(id: &str) -> bool {
    !id.is_empty() && !id.starts_with('.') && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// Lazily unmount whatever is mounted at `point` (a dead FUSE mount refuses a plain unmount
/// while an overlay above it is still open).
pub(crate) fn detach(point: &Path) {
    match nix::mount::umount2(point, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) => tracing::info!(mount = %point.display(), "detached a stale mount"),
        Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => {}
        Err(e) => tracing::warn!(mount = %point.display(), error = %e, "cannot detach"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_cannot_reach_outside_the_mount_points() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("victim");
        std::fs::create_dir(&outside).unwrap();
        let cache = Arc::new(ChunkCache::open(dir.path().join("cache"), 1 << 20, &HttpOptions::default()).unwrap());
        let mounts = Mutex::default();
        for id in ["../../victim", "..", "", ".hidden", "a/b"] {
            let answer = handle(Request::Unmount { id: id.into() }, &dir.path().join("svc"), &cache, &mounts);
            assert!(answer.error.is_some_and(|e| e.contains("not a container id")), "{id:?}");
        }
        assert!(outside.is_dir(), "nothing outside the mount points was removed");
    }
}
