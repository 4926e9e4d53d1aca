//! A process started in a running container for someone to talk to (the node API's `exec`):
//! `runc exec` in the foreground, so runc reports the process's exit status, with pipes for
//! stdin, stdout and stderr, or with a terminal: a pseudo-terminal of the agent's that runc
//! relays to a new terminal inside the container (and resizes on SIGWINCH).
//!
//! Nothing is buffered here: the caller reads the outputs as they come. Dropping a session
//! kills its process.

use std::fs::File;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};

use rustix::pty::OpenptFlags;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::process::Child;

use super::{Runtime, RuntimeError};

/// A terminal's size before the client says otherwise.
const DEFAULT_SIZE: (u16, u16) = (80, 24);

/// An output of the process: its stream number (1 stdout or the terminal, 2 stderr) and a reader.
pub type ExecOutput = (u8, Box<dyn AsyncRead + Send + Unpin>);

/// A process started with [`Runtime::exec_session`].
pub struct ExecSession {
    id: String,
    /// `runc exec`, waiting for the process.
    runc: Child,
    /// Where runc wrote the process's host pid.
    pid_file: PathBuf,
    /// The agent's end of the terminal, with a tty.
    terminal: Option<File>,
    stdin: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    outputs: Vec<ExecOutput>,
    /// Whether it has been waited for.
    ended: bool,
}

impl Runtime {
    /// Start `args` in running container `id` with `runc exec` (with the container's
    /// environment, user, limits, namespaces, cgroups and system-call filter): on a terminal
    /// when `tty`, else on pipes; stdin is `/dev/null` unless `stdin` (with a terminal, it is
    /// the terminal, and input is simply not sent without `stdin`).
    pub fn exec_session(&self, id: &str, args: &[String], stdin: bool, tty: bool) -> Result<ExecSession, RuntimeError> {
        let paths = self.paths(id)?;
        let n: u32 = rand::random();
        let pid_file = paths.dir.join(format!("exec-{n:08x}.pid"));
        let io = |e| RuntimeError::io(id, "open a terminal for exec in", "/dev/ptmx", e);
        if tty {
            let master = rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)
                .map_err(|e| io(e.into()))?;
            rustix::pty::grantpt(&master).map_err(|e| io(e.into()))?;
            rustix::pty::unlockpt(&master).map_err(|e| io(e.into()))?;
            let slave = rustix::pty::ioctl_tiocgptpeer(&master, OpenptFlags::RDWR | OpenptFlags::NOCTTY)
                .map_err(|e| io(e.into()))?;
            let master = File::from(master);
            resize(&master, DEFAULT_SIZE.0, DEFAULT_SIZE.1);
            let slave = File::from(slave);
            let dup = |f: &File| f.try_clone().map(Stdio::from).map_err(io);
            let stdio = [dup(&slave)?, dup(&slave)?, dup(&slave)?];
            let (runc, _) = self.runc.spawn_exec(id, args, &pid_file, true, stdio)?;
            // Only runc holds the terminal now, so reading ends when it exits.
            drop(slave);
            let clone = || master.try_clone().map(tokio::fs::File::from_std).map_err(io);
            let stdin: Option<Box<dyn AsyncWrite + Send + Unpin>> = if stdin { Some(Box::new(clone()?)) } else { None };
            let outputs: Vec<ExecOutput> = vec![(1, Box::new(clone()?))];
            return Ok(ExecSession {
                id: id.to_owned(),
                runc,
                pid_file,
                terminal: Some(master),
                stdin,
                outputs,
                ended: false,
            });
        }
        let input = if stdin { Stdio::piped() } else { Stdio::null() };
        let (mut runc, _) =
            self.runc.spawn_exec(id, args, &pid_file, false, [input, Stdio::piped(), Stdio::piped()])?;
        let stdin = runc.stdin.take().map(|s| Box::new(s) as Box<dyn AsyncWrite + Send + Unpin>);
        let mut outputs: Vec<ExecOutput> = Vec::new();
        if let Some(out) = runc.stdout.take() {
            outputs.push((1, Box::new(out)));
        }
        if let Some(err) = runc.stderr.take() {
            outputs.push((2, Box::new(err)));
        }
        Ok(ExecSession { id: id.to_owned(), runc, pid_file, terminal: None, stdin, outputs, ended: false })
    }
}

impl ExecSession {
    /// The process's stdin (the terminal, with one), once; `None` without stdin.
    pub fn take_stdin(&mut self) -> Option<Box<dyn AsyncWrite + Send + Unpin>> {
        self.stdin.take()
    }

    /// The process's outputs, once: stdout and stderr, or the terminal.
    pub fn take_outputs(&mut self) -> Vec<ExecOutput> {
        std::mem::take(&mut self.outputs)
    }

    /// What resizes the terminal, when there is one.
    pub fn resizer(&self) -> Option<Resizer> {
        let terminal = self.terminal.as_ref()?.try_clone().ok()?;
        Some(Resizer { terminal, runc: self.runc.id() })
    }

    /// Wait for the process to end; its exit code (128 + the signal when a signal ended it, as
    /// a shell says). A code of runc's own (it could not start the process) is told on stderr.
    pub async fn wait(&mut self) -> Result<i32, RuntimeError> {
        let status = self.runc.wait().await.map_err(|e| RuntimeError::io(&self.id, "wait for", "runc exec", e))?;
        self.ended = true;
        Ok(exit_code(status))
    }

    /// SIGKILL the process (and runc).
    pub fn kill(&mut self) {
        let pid = std::fs::read_to_string(&self.pid_file).ok().and_then(|p| p.trim().parse::<i32>().ok());
        if let Some(pid) = pid.filter(|p| *p > 0) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        let _ = self.runc.start_kill();
    }
}

impl Drop for ExecSession {
    fn drop(&mut self) {
        if !self.ended {
            self.kill();
        }
        let _ = std::fs::remove_file(&self.pid_file);
    }
}

/// Resizes a session's terminal.
pub struct Resizer {
    terminal: File,
    runc: Option<u32>,
}

impl Resizer {
    /// Make the terminal `cols` x `rows`; runc passes it on to the container's.
    pub fn resize(&self, cols: u16, rows: u16) {
        resize(&self.terminal, cols, rows);
        if let Some(pid) = self.runc.and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGWINCH);
        }
    }
}

fn resize(terminal: &File, cols: u16, rows: u16) {
    let Ok(mut size) = rustix::termios::tcgetwinsize(terminal) else { return };
    if cols > 0 {
        size.ws_col = cols;
    }
    if rows > 0 {
        size.ws_row = rows;
    }
    let _ = rustix::termios::tcsetwinsize(terminal, size);
}

/// `status` as a shell reports it.
fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(255)
}
