//! Child processes: `zgrid` itself (the explorer and the hub, CLI calls with `--json`) and
//! other programs logging to a file ([`Process`]).

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A server `zgrid` runs (`explorer` or `hub`); killed on drop.
#[derive(Debug)]
pub(crate) struct Server {
    child: Child,
    pub(crate) url: String,
    pub(crate) listen: SocketAddr,
}

impl Server {
    /// Start `zgrid <what> --listen <listen> <args>`, logging to `log`, and wait until it
    /// prints `<what> listening on <url>`.
    pub(crate) fn start(
        zgrid: &Path,
        what: &str,
        listen: SocketAddr,
        args: &[&OsStr],
        log: &Path,
        level: &str,
    ) -> Result<Self> {
        let stderr = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
        let command: Vec<&str> = what.split(' ').collect();
        let mut child = Command::new(zgrid)
            .args(&command)
            .args(["--listen", &listen.to_string()])
            .args(args)
            .env("ZGRID_LOG", level)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("cannot start {}", zgrid.display()))?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("server stdout")?).read_line(&mut line)?;
        let banner = format!("{} listening on ", command[0]);
        let Some(url) = line.trim().strip_prefix(&banner) else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("`zgrid {what}` did not start; see {}", log.display());
        };
        let listen = url.trim_start_matches("http://").parse().context("the server's listen address")?;
        Ok(Self { url: url.to_owned(), listen, child })
    }

    /// SIGKILL the server and reap it.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A child process with its stdout and stderr appended to a log file; killed (SIGKILL) and
/// reaped when dropped.
#[derive(Debug)]
pub(crate) struct Process {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Process {
    /// Start `command` as `name` (for messages), appending its output to `log`.
    pub(crate) fn spawn(name: &str, mut command: Command, log: &Path) -> Result<Self> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("cannot open {}", log.display()))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("cannot start {name} ({})", command.get_program().to_string_lossy()))?;
        Ok(Self { name: name.to_owned(), child, log: log.to_owned() })
    }

    /// Fail, with the end of its log, if the process has exited.
    pub(crate) fn check(&mut self) -> Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => {
                bail!("{} exited ({status}); the end of {}:\n{}", self.name, self.log.display(), self.tail())
            }
        }
    }

    /// The last lines of the process's log.
    pub(crate) fn tail(&self) -> String {
        log_tail(&self.log, 20)
    }

    /// SIGKILL the process and reap it.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last `lines` lines of the file at `path` (empty when it cannot be read).
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The CLI `zgrid` acting as the default identity in `home` against `explorer`; add arguments
/// and run it.
pub fn cli(zgrid: &Path, home: &Path, explorer: &str) -> Command {
    let mut command = Command::new(zgrid);
    command
        .env("ZGRID_HOME", home)
        .env("ZGRID_EXPLORER", explorer)
        .env_remove("ZGRID_IDENTITY")
        .env("ZGRID_LOG", "warn");
    command
}

/// Run `zgrid --json args…` as the identity in `home` against `explorer` and parse its output.
pub fn cli_json(zgrid: &Path, home: &Path, explorer: &str, args: &[&str]) -> Result<serde_json::Value> {
    let out = cli(zgrid, home, explorer)
        .arg("--json")
        .args(args)
        .output()
        .with_context(|| format!("cannot run {}", zgrid.display()))?;
    if !out.status.success() {
        bail!("`zgrid {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    serde_json::from_slice(&out.stdout).with_context(|| format!("`zgrid {}` printed no JSON", args.join(" ")))
}

/// Poll `f` every 50 ms until it returns `Some`, for at most `limit`.
pub(crate) fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Result<Option<T>>) -> Result<Option<T>> {
    let start = Instant::now();
    loop {
        if let Some(v) = f()? {
            return Ok(Some(v));
        }
        if start.elapsed() > limit {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
