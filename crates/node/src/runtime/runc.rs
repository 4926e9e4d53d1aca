//! The runc command line: `run --detach`, `state`, `exec`, `kill` and `delete`, each with a
//! time limit, all against the runtime's own runc state directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::command::{Cmd, excerpt, failed};
use super::{RuntimeError, logs};

/// Limit for `runc run --detach` (creating namespaces, cgroups and mounts, then exec).
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// Limit for `runc state` and `runc kill`.
const QUICK_TIMEOUT: Duration = Duration::from_secs(10);

/// Limit for `runc delete --force`.
const DELETE_TIMEOUT: Duration = Duration::from_secs(30);

/// Most bytes of a process's stdout (and as many of its stderr) that [`Runc::exec`] keeps.
const EXEC_OUTPUT: usize = 1024;

/// How long [`Runc::exec`] reads a process's output after it exited.
const OUTPUT_WAIT: Duration = Duration::from_millis(200);

/// How a process started with [`Runc::exec`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exited {
    /// Whether it exited with status 0.
    pub success: bool,
    /// Its exit status as text (`exit status: 1`, `signal: 9 (SIGKILL)`).
    pub status: String,
    /// The start of what it (or runc, when it could not start it) wrote on stderr, else on
    /// stdout, as trimmed text.
    pub output: String,
}

/// What `runc state` reports.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct RuncState {
    /// `creating`, `created`, `running`, `paused` or `stopped`.
    pub status: String,
    /// Host pid of the init process (0 once stopped).
    pub pid: u32,
}

/// runc, with `--root` set.
#[derive(Debug, Clone)]
pub(crate) struct Runc {
    /// The runc binary.
    bin: PathBuf,
    /// runc's state directory.
    root: PathBuf,
}

impl Runc {
    /// runc at `bin`, keeping its state in `root`.
    pub(crate) fn new(bin: PathBuf, root: PathBuf) -> Self {
        Self { bin, root }
    }

    /// `runc --root <root> <args…>` on behalf of container `id`.
    fn cmd<'a>(&self, id: &'a str, args: &[&str], timeout: Duration) -> Cmd<'a> {
        let root = self.root.to_string_lossy();
        let argv: Vec<String> = ["--root", &root].iter().chain(args).map(|a| (*a).to_owned()).collect();
        Cmd::new(id, &self.bin, argv, timeout)
    }

    /// The container's state, or `None` when runc knows no container `id`.
    pub(crate) async fn state(&self, id: &str) -> Result<Option<RuncState>, RuntimeError> {
        let cmd = self.cmd(id, &["state", id], QUICK_TIMEOUT);
        let line = cmd.line();
        let output = cmd.output().await?;
        if !output.status.success() {
            if String::from_utf8_lossy(&output.stderr).contains("does not exist") {
                return Ok(None);
            }
            return Err(failed(id, line, &output));
        }
        serde_json::from_slice(&output.stdout).map(Some).map_err(|e| RuntimeError::Parse {
            id: id.to_owned(),
            command: line,
            reason: e.to_string(),
        })
    }

    /// Create and start the container from `bundle`, detached, with its stdout and stderr (and
    /// runc's own) written to `pipes`, the named pipes at `pipe_paths`, and its init's host pid
    /// to `pid_file`. When runc fails, what it wrote there is moved to `log` (nobody reads the
    /// pipes yet) and quoted in the error.
    pub(crate) async fn run(
        &self,
        id: &str,
        bundle: &Path,
        pid_file: &Path,
        log: &Path,
        pipe_paths: &[PathBuf; 2],
        pipes: [std::fs::File; 2],
    ) -> Result<(), RuntimeError> {
        let [out, err] = pipes;
        // Opened before runc runs: a pipe nobody holds open any more loses what it carries.
        let mut readers = Vec::new();
        for path in pipe_paths {
            readers.push(logs::pipe_reader(id, path)?);
        }
        let (bundle, pid_file) = (bundle.to_string_lossy(), pid_file.to_string_lossy());
        let args = ["run", "--detach", "--pid-file", &pid_file, "--bundle", &bundle, id];
        let cmd = self.cmd(id, &args, RUN_TIMEOUT).stdio(out, err);
        let line = cmd.line();
        let output = cmd.output().await?;
        if output.status.success() {
            return Ok(());
        }
        let (mut said, mut records) = (Vec::new(), Vec::new());
        for (stream, (reader, path)) in readers.iter_mut().zip(pipe_paths).enumerate() {
            let drained = logs::drain(id, path, reader)?;
            logs::encode(stream, &drained, &mut records);
            said.extend(drained);
        }
        logs::append(id, log, &records)?;
        Err(RuntimeError::Command {
            id: id.to_owned(),
            command: line,
            status: output.status.to_string(),
            stderr: excerpt(&said),
        })
    }

    /// Start `args` inside running container `id` on a new terminal, detached. runc hands the
    /// terminal's master end over `socket` (a path for a Unix socket it connects to); returns
    /// the process's host pid and the master.
    pub(crate) async fn exec_tty(
        &self,
        id: &str,
        args: &[String],
        socket: &Path,
        pid_file: &Path,
    ) -> Result<(u32, std::os::fd::OwnedFd), RuntimeError> {
        let _ = std::fs::remove_file(socket);
        let listener =
            std::os::unix::net::UnixListener::bind(socket).map_err(|e| RuntimeError::io(id, "listen on", socket, e))?;
        let (sock, pid) = (socket.to_string_lossy(), pid_file.to_string_lossy());
        let mut argv = vec!["exec", "--detach", "--tty", "--console-socket", &sock, "--pid-file", &pid, id];
        argv.extend(args.iter().map(String::as_str));
        let receive = tokio::task::spawn_blocking(move || receive_fd(&listener));
        let ran = self.cmd(id, &argv, RUN_TIMEOUT).run().await;
        let _ = std::fs::remove_file(socket);
        if let Err(e) = ran {
            receive.abort();
            return Err(e);
        }
        let master = tokio::time::timeout(QUICK_TIMEOUT, receive)
            .await
            .map_err(|_| {
                RuntimeError::io(id, "receive the terminal from", socket, std::io::ErrorKind::TimedOut.into())
            })?
            .map_err(|e| RuntimeError::io(id, "receive the terminal from", socket, std::io::Error::other(e)))?
            .map_err(|e| RuntimeError::io(id, "receive the terminal from", socket, e))?;
        let text = std::fs::read_to_string(pid_file).map_err(|e| RuntimeError::io(id, "read", pid_file, e))?;
        let _ = std::fs::remove_file(pid_file);
        let pid = text
            .trim()
            .parse()
            .map_err(|_| RuntimeError::io(id, "parse", pid_file, std::io::ErrorKind::InvalidData.into()))?;
        Ok((pid, master))
    }

    /// Run `args` inside running container `id` without a terminal (with the container's
    /// environment, limits and namespaces) and wait for it to end, at most `limit`: then the
    /// process (its pid is in `pid_file`, written by runc) is killed, and runc with it.
    pub(crate) async fn exec(
        &self,
        id: &str,
        args: &[String],
        pid_file: &Path,
        limit: Duration,
    ) -> Result<Exited, RuntimeError> {
        use std::process::Stdio;
        let (mut child, line) =
            self.spawn_exec(id, args, pid_file, false, [Stdio::null(), Stdio::piped(), Stdio::piped()])?;
        let readers = [
            child.stdout.take().map(|p| tokio::spawn(read_start(p))),
            child.stderr.take().map(|p| tokio::spawn(read_start(p))),
        ];
        let result = match tokio::time::timeout(limit, child.wait()).await {
            Ok(Ok(status)) => {
                // What it left running in the background may hold the pipes open: read what is there.
                let [out, err] = readers.map(|r| async move {
                    let r = r?;
                    let abort = r.abort_handle();
                    let read = tokio::time::timeout(OUTPUT_WAIT, r).await.ok().and_then(Result::ok);
                    abort.abort();
                    read
                });
                let (out, err) = tokio::join!(out, err);
                let (out, err) = (out.unwrap_or_default(), err.unwrap_or_default());
                let said = if err.iter().any(|b| !b.is_ascii_whitespace()) { err } else { out };
                let output = if said.is_empty() { String::new() } else { excerpt(&said) };
                Ok(Exited { success: status.success(), status: status.to_string(), output })
            }
            Ok(Err(source)) => Err(RuntimeError::Spawn { id: id.to_owned(), command: line, source }),
            Err(_) => {
                // runc has not reaped the process yet, so its pid is still its own.
                let started = std::fs::read_to_string(pid_file).ok().and_then(|p| p.trim().parse::<i32>().ok());
                if let Some(pid) = started.filter(|p| *p > 0) {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
                }
                let _ = child.kill().await;
                readers.into_iter().flatten().for_each(|r| r.abort());
                Err(RuntimeError::Timeout { id: id.to_owned(), command: line, timeout: limit })
            }
        };
        let _ = std::fs::remove_file(pid_file);
        result
    }

    /// Start `runc exec` of `args` in running container `id` in the foreground, with `stdio` as
    /// its stdin, stdout and stderr (runc hands them to the process; with `tty`, stdin must be
    /// a terminal, which runc relays to a new one inside the container and resizes on
    /// SIGWINCH). runc writes the process's host pid to `pid_file` and exits with its status.
    /// Returns runc and its command line.
    pub(crate) fn spawn_exec(
        &self,
        id: &str,
        args: &[String],
        pid_file: &Path,
        tty: bool,
        stdio: [std::process::Stdio; 3],
    ) -> Result<(tokio::process::Child, String), RuntimeError> {
        let pid = pid_file.to_string_lossy();
        let mut argv = vec!["exec", "--pid-file", &pid];
        if tty {
            argv.push("--tty");
        }
        argv.push(id);
        argv.extend(args.iter().map(String::as_str));
        // The caller enforces its own limit.
        let cmd = self.cmd(id, &argv, Duration::MAX);
        let line = cmd.line();
        let mut command = cmd.into_command();
        let [stdin, stdout, stderr] = stdio;
        command.stdin(stdin).stdout(stdout).stderr(stderr);
        let child = command.spawn().map_err(|source| RuntimeError::Spawn {
            id: id.to_owned(),
            command: line.clone(),
            source,
        })?;
        Ok((child, line))
    }

    /// Send `signal` (e.g. `TERM`) to the container's init process; a container that is not
    /// running (any more) is not an error.
    pub(crate) async fn kill(&self, id: &str, signal: &str) -> Result<(), RuntimeError> {
        let cmd = self.cmd(id, &["kill", id, signal], QUICK_TIMEOUT);
        let line = cmd.line();
        let output = cmd.output().await?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        if output.status.success() || stderr.contains("not running") || stderr.contains("does not exist") {
            Ok(())
        } else {
            Err(failed(id, line, &output))
        }
    }

    /// Delete the container (killing it if needed); a container runc does not know is fine.
    pub(crate) async fn delete(&self, id: &str) -> Result<(), RuntimeError> {
        self.cmd(id, &["delete", "--force", id], DELETE_TIMEOUT).run().await.map(drop)
    }
}

/// The first [`EXEC_OUTPUT`] bytes `pipe` carries; the rest is read and dropped, so the writer
/// never blocks on a full pipe.
async fn read_start(mut pipe: impl tokio::io::AsyncRead + Unpin) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let (mut kept, mut buf) = (Vec::new(), [0u8; 4096]);
    while let Ok(n @ 1..) = pipe.read(&mut buf).await {
        let room = EXEC_OUTPUT.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
    kept
}

/// Accept runc's connection on `listener` and take the file descriptor it sends.
fn receive_fd(listener: &std::os::unix::net::UnixListener) -> std::io::Result<std::os::fd::OwnedFd> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    let (stream, _) = listener.accept()?;
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut ancillary = RecvAncillaryBuffer::new(&mut space);
    let mut name = [0u8; 4096];
    rustix::net::recvmsg(&stream, &mut [std::io::IoSliceMut::new(&mut name)], &mut ancillary, RecvFlags::empty())?;
    let received = ancillary.drain().find_map(|message| match message {
        RecvAncillaryMessage::ScmRights(mut fds) => fds.next(),
        _ => None,
    });
    received.ok_or_else(|| std::io::Error::other("runc sent no terminal"))
}
