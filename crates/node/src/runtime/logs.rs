//! The container's log. The container writes stdout and stderr into two named pipes in its
//! directory; the agent reads them ([`pump`]) and appends what they carry to one file, as
//! records that keep the two apart (`zgrid_types::logs`), which it
//! cuts down to its last [`LOG_KEEP_BYTES`] whenever it passes [`LOG_TRIM_BYTES`]: a container's
//! log never takes more than [`LOG_TRIM_BYTES`] plus one read ([`READ_BYTES`]) of disk, however
//! much it writes. While the agent is away the pipes hold up to 1 MiB each and the container
//! then waits. Reads return the tail; a [`LogFollower`] also follows across the cuts.
//!
//! Containers started by an agent before output went through pipes write the file themselves;
//! their log is trimmed from outside ([`trim`]).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe::Receiver;

use zgrid_types::logs::LogStream;

use super::RuntimeError;

/// Most bytes [`tail`] returns and [`trim`] keeps.
pub const LOG_KEEP_BYTES: u64 = 1 << 20;

/// Size above which [`trim`] cuts the log down to [`LOG_KEEP_BYTES`].
pub const LOG_TRIM_BYTES: u64 = 2 << 20;

/// Most bytes read from a pipe at once.
pub const READ_BYTES: usize = 64 << 10;

/// Bytes a log pipe holds while nobody reads it (the agent restarting); a container writing
/// more waits.
const PIPE_BYTES: i32 = 1 << 20;

/// The named pipes at `paths` (made if missing), opened for reading and writing so the
/// container never sees a pipe without a reader, each holding up to [`PIPE_BYTES`]. A pipe
/// keeps what it holds only while someone has it open: the runtime holds copies of these from
/// the start until the output is pumped, so a container that ends at once loses nothing.
pub(crate) fn open_pipes(id: &str, paths: &[PathBuf; 2]) -> Result<[File; 2], RuntimeError> {
    let open = |path: &PathBuf| -> Result<File, RuntimeError> {
        if !path.exists() {
            nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600))
                .map_err(|e| RuntimeError::io(id, "make the pipe", path, e.into()))?;
        }
        let file =
            OpenOptions::new().read(true).write(true).open(path).map_err(|e| RuntimeError::io(id, "open", path, e))?;
        // A smaller buffer only means the container waits sooner while the agent is away.
        let _ = nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_BYTES));
        Ok(file)
    };
    Ok([open(&paths[0])?, open(&paths[1])?])
}

/// Container `id`'s stdout and stderr pipes at `paths`, opened for [`pump`].
pub(crate) fn receivers(id: &str, paths: &[PathBuf; 2]) -> Result<[Receiver; 2], RuntimeError> {
    let open = |path: &PathBuf| {
        tokio::net::unix::pipe::OpenOptions::new()
            .read_write(true)
            .open_receiver(path)
            .map_err(|e| RuntimeError::io(id, "open", path, e))
    };
    Ok([open(&paths[0])?, open(&paths[1])?])
}

/// Read container `id`'s output from `pipes` (stdout, stderr, at `paths`) until reading fails,
/// append it to the log at `log`, keeping it within [`LOG_TRIM_BYTES`], and hand each piece read
/// to `observe` with its stream (0 for stdout, 1 for stderr), in order. The only writer of the
/// log while it runs, so its cuts lose nothing.
pub(crate) async fn pump(
    id: &str,
    pipes: [Receiver; 2],
    paths: &[PathBuf; 2],
    log: &Path,
    mut observe: impl FnMut(usize, &[u8]),
) -> Result<(), RuntimeError> {
    let [mut out, mut err] = pipes;
    let mut file = open_log(id, log)?;
    let (mut out_buf, mut err_buf) = (vec![0u8; READ_BYTES], vec![0u8; READ_BYTES]);
    let mut records = Vec::with_capacity(2 * READ_BYTES);
    loop {
        let (stream, read) = tokio::select! {
            n = out.read(&mut out_buf) => (0, n.map(|n| &out_buf[..n])),
            n = err.read(&mut err_buf) => (1, n.map(|n| &err_buf[..n])),
        };
        let bytes = read.map_err(|e| RuntimeError::io(id, "read", &paths[stream], e))?;
        records.clear();
        encode(stream, bytes, &mut records);
        append_bounded(id, &mut file, log, &records)?;
        observe(stream, bytes);
    }
}

/// Append what the container wrote on pipe `stream` (0 stdout, 1 stderr) to `records`.
pub(crate) fn encode(stream: usize, bytes: &[u8], records: &mut Vec<u8>) {
    let stream = if stream == 0 { LogStream::Stdout } else { LogStream::Stderr };
    zgrid_types::logs::encode(stream, bytes, records);
}

/// Read `source` (at `path`, for messages) until it ends or fails, appending what it carries
/// to the log at `log` within [`LOG_TRIM_BYTES`]: a VM's serial console. The only writer of the
/// log while it runs.
pub(crate) async fn pump_one(
    id: &str,
    mut source: impl tokio::io::AsyncRead + Unpin,
    path: &Path,
    log: &Path,
) -> Result<(), RuntimeError> {
    let mut file = open_log(id, log)?;
    let mut buf = vec![0u8; READ_BYTES];
    loop {
        let n = source.read(&mut buf).await.map_err(|e| RuntimeError::io(id, "read", path, e))?;
        if n == 0 {
            return Ok(());
        }
        append_bounded(id, &mut file, log, &buf[..n])?;
    }
}

/// Append `bytes` to the log `file` at `log`, then cut it to its tail if it grew beyond
/// [`LOG_TRIM_BYTES`].
fn append_bounded(id: &str, file: &mut File, log: &Path, bytes: &[u8]) -> Result<(), RuntimeError> {
    file.write_all(bytes).map_err(|e| RuntimeError::io(id, "append to", log, e))?;
    if file.metadata().map_err(|e| RuntimeError::io(id, "inspect", log, e))?.len() > LOG_TRIM_BYTES {
        trim(id, log)?;
    }
    Ok(())
}

/// A reader of the named pipe at `path` that never waits, for [`drain`].
pub(crate) fn pipe_reader(id: &str, path: &Path) -> Result<File, RuntimeError> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)
        .map_err(|e| RuntimeError::io(id, "open", path, e))
}

/// What is waiting in the named pipe at `path`, read through its `reader` without waiting.
pub(crate) fn drain(id: &str, path: &Path, reader: &mut File) -> Result<Vec<u8>, RuntimeError> {
    let mut bytes = Vec::new();
    match reader.read_to_end(&mut bytes) {
        Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => Err(RuntimeError::io(id, "read", path, e)),
        _ => Ok(bytes),
    }
}

/// Append `bytes` to the log at `path`.
pub(crate) fn append(id: &str, path: &Path, bytes: &[u8]) -> Result<(), RuntimeError> {
    open_log(id, path)?.write_all(bytes).map_err(|e| RuntimeError::io(id, "append to", path, e))
}

/// Open (creating) the log at `path` for appending.
fn open_log(id: &str, path: &Path) -> Result<File, RuntimeError> {
    OpenOptions::new().create(true).append(true).open(path).map_err(|e| RuntimeError::io(id, "open", path, e))
}

/// The current length of the log (0 when it does not exist yet).
pub(crate) fn len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// The bytes of the log from offset `from`, at most `max` of them (the last ones).
pub(crate) fn read_from(id: &str, path: &Path, from: u64, max: u64) -> Result<Vec<u8>, RuntimeError> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(RuntimeError::io(id, "open", path, e)),
    };
    let io = |e| RuntimeError::io(id, "read", path, e);
    let end = file.metadata().map_err(io)?.len();
    let start = from.max(end.saturating_sub(max));
    file.seek(SeekFrom::Start(start)).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(max).read_to_end(&mut bytes).map_err(io)?;
    Ok(bytes)
}

/// The last [`LOG_KEEP_BYTES`] of the log, starting at a line boundary when there is one.
pub(crate) fn tail(id: &str, path: &Path) -> Result<Vec<u8>, RuntimeError> {
    let bytes = read_from(id, path, 0, LOG_KEEP_BYTES)?;
    if len(path) <= LOG_KEEP_BYTES {
        return Ok(bytes);
    }
    Ok(match bytes.iter().position(|&b| b == b'\n') {
        Some(nl) if nl + 1 < bytes.len() => bytes[nl + 1..].to_vec(),
        _ => bytes,
    })
}

/// When the log exceeds [`LOG_TRIM_BYTES`], keep only its [`tail`].
///
/// The tail is copied aside, the file truncated and the tail written back. A container that
/// writes the file itself (started before output went through pipes) keeps appending meanwhile
/// (its file descriptor is `O_APPEND`), so its output written between the copy and the
/// truncation is lost, and output written between the truncation and the write-back lands
/// before the kept tail. Both windows last microseconds.
pub(crate) fn trim(id: &str, path: &Path) -> Result<(), RuntimeError> {
    if len(path) <= LOG_TRIM_BYTES {
        return Ok(());
    }
    let kept = tail(id, path)?;
    let io = |e| RuntimeError::io(id, "trim", path, e);
    let mut file = OpenOptions::new().append(true).open(path).map_err(io)?;
    file.set_len(0).map_err(io)?;
    file.write_all(&kept).map_err(io)
}

/// Reads a log as it grows: first its [`tail`], then whatever is appended, also across a [`trim`].
#[derive(Debug)]
pub struct LogFollower {
    id: String,
    path: std::path::PathBuf,
    /// How far the log has been read.
    offset: u64,
    /// The last bytes handed out, to find the resume point after a trim.
    recent: Vec<u8>,
}

/// How many of the last bytes read are remembered to resynchronise after a trim.
const RESYNC_BYTES: usize = 256;

impl LogFollower {
    /// A follower of the log at `path` that has read nothing yet.
    pub(crate) fn new(id: &str, path: std::path::PathBuf) -> Self {
        Self { id: id.to_owned(), path, offset: 0, recent: Vec::new() }
    }

    /// The bytes not read yet: the tail on the first call, what was appended since on later ones.
    pub fn read_new(&mut self) -> Result<Vec<u8>, RuntimeError> {
        let now = len(&self.path);
        let bytes = if self.offset == 0 {
            tail(&self.id, &self.path)?
        } else if now < self.offset {
            // Trimmed: resume after the last bytes handed out, or at the start if they are gone.
            let all = read_from(&self.id, &self.path, 0, LOG_KEEP_BYTES * 2)?;
            let resume = find_last(&all, &self.recent).map_or(0, |at| at + self.recent.len());
            all[resume..].to_vec()
        } else {
            read_from(&self.id, &self.path, self.offset, now - self.offset)?
        };
        self.offset = now.max(bytes.len() as u64);
        if !bytes.is_empty() {
            self.recent.extend_from_slice(&bytes);
            let excess = self.recent.len().saturating_sub(RESYNC_BYTES);
            self.recent.drain(..excess);
        }
        Ok(bytes)
    }
}

/// Where `needle` last occurs in `haystack`.
fn find_last(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || needle.len() > haystack.len() {
        return None;
    }
    (0..=haystack.len() - needle.len()).rev().find(|&i| &haystack[i..i + needle.len()] == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_and_trim_bound_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        assert!(tail("t", &path).unwrap().is_empty());
        let mut file = open_log("t", &path).unwrap();
        let line = [b'x'; 99].iter().copied().chain([b'\n']).collect::<Vec<u8>>();
        for _ in 0..30_000 {
            file.write_all(&line).unwrap();
        }
        file.write_all(b"last\n").unwrap();
        let t = tail("t", &path).unwrap();
        assert!(t.len() as u64 <= LOG_KEEP_BYTES && t.starts_with(b"xxx") && t.ends_with(b"last\n"));
        trim("t", &path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), t);
        file.write_all(b"after\n").unwrap();
        assert!(std::fs::read(&path).unwrap().ends_with(b"last\nafter\n"));
        assert_eq!(read_from("t", &path, len(&path) - 6, 100).unwrap(), b"after\n");
    }

    #[test]
    fn a_follower_sees_every_new_byte_once_even_across_a_trim() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut file = open_log("t", &path).unwrap();
        let mut follower = LogFollower::new("t", path.clone());
        assert!(follower.read_new().unwrap().is_empty());
        file.write_all(b"one\n").unwrap();
        assert_eq!(follower.read_new().unwrap(), b"one\n");
        assert!(follower.read_new().unwrap().is_empty());
        let mut seen = b"one\n".to_vec();
        for i in 0..40_000 {
            writeln!(file, "line {i:08} {}", "y".repeat(60)).unwrap();
            if i % 997 == 0 {
                trim("t", &path).unwrap();
                seen.extend(follower.read_new().unwrap());
            }
        }
        seen.extend(follower.read_new().unwrap());
        let text = String::from_utf8(seen).unwrap();
        let numbers: Vec<u32> = text.lines().skip(1).map(|l| l.split(' ').nth(1).unwrap().parse().unwrap()).collect();
        assert_eq!(numbers, (0..40_000).collect::<Vec<_>>());
    }
}
