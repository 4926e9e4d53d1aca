//! The runc command line: `run --detach`, `state`, `kill` and `delete`, each with a time limit,
//! all against the runtime's own runc state directory.

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
    /// runc's own) appended to `log`, or written to `pipes` when given (whose reader appends
    /// them to `log`).
    pub(crate) async fn run(
        &self,
        id: &str,
        bundle: &Path,
        log: &Path,
        pipes: Option<[std::fs::File; 2]>,
    ) -> Result<(), RuntimeError> {
        let offset = logs::len(log);
        let [out, err] = match pipes {
            Some(pipes) => pipes,
            None => {
                let out = logs::open(id, log)?;
                let err = out.try_clone().map_err(|e| RuntimeError::io(id, "duplicate the descriptor of", log, e))?;
                [out, err]
            }
        };
        let bundle = bundle.to_string_lossy();
        let cmd = self.cmd(id, &["run", "--detach", "--bundle", &bundle, id], RUN_TIMEOUT).stdio(out, err);
        let line = cmd.line();
        let output = cmd.output().await?;
        if output.status.success() {
            return Ok(());
        }
        let stderr = excerpt(&logs::read_from(id, log, offset, 4096)?);
        Err(RuntimeError::Command { id: id.to_owned(), command: line, status: output.status.to_string(), stderr })
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
