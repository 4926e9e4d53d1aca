//! Running external programs (runc, mount, mkfs.ext4, losetup, unshare) with a time limit. A program
//! that overruns is killed, and every error names the container, the command line and what the
//! program printed on stderr.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use tokio::process::Command;

use super::RuntimeError;

/// Longest stderr excerpt kept in an error message.
const MAX_STDERR: usize = 2048;

/// A command about to run on behalf of container `id`.
pub(crate) struct Cmd<'a> {
    id: &'a str,
    command: Command,
    timeout: Duration,
    /// Whether stdout and stderr go somewhere else than back to us.
    redirected: bool,
}

impl<'a> Cmd<'a> {
    /// `program args…` for container `id`, killed after `timeout`. Stdin is `/dev/null`;
    /// stdout and stderr are captured unless [`Cmd::stdio`] redirects them.
    pub(crate) fn new<S: AsRef<std::ffi::OsStr>>(
        id: &'a str,
        program: impl AsRef<Path>,
        args: impl IntoIterator<Item = S>,
        timeout: Duration,
    ) -> Self {
        let mut command = Command::new(program.as_ref());
        command.args(args).stdin(Stdio::null()).kill_on_drop(true);
        Self { id, command, timeout, redirected: false }
    }

    /// Send stdout and stderr to `out` and `err` instead of capturing them.
    pub(crate) fn stdio(mut self, out: impl Into<Stdio>, err: impl Into<Stdio>) -> Self {
        self.command.stdout(out).stderr(err);
        self.redirected = true;
        self
    }

    /// The command as it is set up (stdin `/dev/null`, killed when dropped), to spawn by hand.
    pub(crate) fn into_command(self) -> Command {
        self.command
    }

    /// The command line, for messages.
    pub(crate) fn line(&self) -> String {
        let std = self.command.as_std();
        let mut parts = vec![std.get_program().to_string_lossy().into_owned()];
        parts.extend(std.get_args().map(|a| a.to_string_lossy().into_owned()));
        parts.join(" ")
    }

    /// Run to completion whatever the exit status; errors only when the program cannot be
    /// started or overruns its time limit. Redirected output is not in the result.
    pub(crate) async fn output(mut self) -> Result<Output, RuntimeError> {
        let line = self.line();
        let id = self.id.to_owned();
        let redirected = self.redirected;
        let command = &mut self.command;
        let child = async move {
            if redirected {
                // `Command::output` would capture stdout and stderr whatever was set.
                let status = command.spawn()?.wait().await?;
                Ok(Output { status, stdout: Vec::new(), stderr: Vec::new() })
            } else {
                command.output().await
            }
        };
        match tokio::time::timeout(self.timeout, child).await {
            Ok(Ok(output)) => Ok(output),
            Ok(Err(source)) => Err(RuntimeError::Spawn { id, command: line, source }),
            Err(_) => Err(RuntimeError::Timeout { id, command: line, timeout: self.timeout }),
        }
    }

    /// Run to completion and fail unless the program exits with status 0.
    pub(crate) async fn run(self) -> Result<Output, RuntimeError> {
        let line = self.line();
        let id = self.id.to_owned();
        let output = self.output().await?;
        if output.status.success() { Ok(output) } else { Err(failed(&id, line, &output)) }
    }
}

/// The error for a command that exited unsuccessfully.
pub(crate) fn failed(id: &str, command: String, output: &Output) -> RuntimeError {
    RuntimeError::Command {
        id: id.to_owned(),
        command,
        status: output.status.to_string(),
        stderr: excerpt(&output.stderr),
    }
}

/// The last [`MAX_STDERR`] bytes of `bytes` as trimmed text; runc's logrus lines are reduced to
/// their message.
pub(crate) fn excerpt(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(MAX_STDERR);
    let text = String::from_utf8_lossy(&bytes[start..]);
    let lines: Vec<&str> = text.lines().map(|l| runc_message(l).unwrap_or(l)).filter(|l| !l.is_empty()).collect();
    if lines.is_empty() { "(no error output)".to_owned() } else { lines.join("; ") }
}

/// The `msg="…"` part of a logrus line such as `time=… level=error msg="container not running"`.
fn runc_message(line: &str) -> Option<&str> {
    let (_, rest) = line.split_once("msg=\"")?;
    Some(rest.strip_suffix('"').unwrap_or(rest))
}

/// `s` as an `OsStr`, to mix literal arguments with paths.
pub(crate) fn os(s: &str) -> &std::ffi::OsStr {
    std::ffi::OsStr::new(s)
}

/// The programs the runtime runs, found once at start-up.
#[derive(Debug, Clone)]
pub(crate) struct Tools {
    /// `runc`.
    pub runc: PathBuf,
    /// `mkfs.ext4`.
    pub mkfs: PathBuf,
    /// `mount`.
    pub mount: PathBuf,
    /// `umount`.
    pub umount: PathBuf,
    /// `losetup`.
    pub losetup: PathBuf,
    /// `unshare`, whose child holds a new user namespace while its maps are written.
    pub unshare: PathBuf,
    /// `sleep`, that child.
    pub sleep: PathBuf,
}

impl Tools {
    /// Find every program, or say which package to install.
    pub(crate) fn find() -> Result<Self, RuntimeError> {
        Ok(Self {
            runc: find_program("runc", "runc")?,
            mkfs: find_program("mkfs.ext4", "e2fsprogs")?,
            mount: find_program("mount", "mount")?,
            umount: find_program("umount", "mount")?,
            losetup: find_program("losetup", "mount")?,
            unshare: find_program("unshare", "util-linux")?,
            sleep: find_program("sleep", "coreutils")?,
        })
    }
}

/// Find `program` in `PATH` or the usual system directories.
pub(crate) fn find_program(program: &'static str, package: &'static str) -> Result<PathBuf, RuntimeError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let fallback = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from);
    std::env::split_paths(&path)
        .chain(fallback)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .ok_or(RuntimeError::ProgramMissing { program, package })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_keeps_runc_messages() {
        let err = b"time=\"2026-01-01T00:00:00Z\" level=error msg=\"container does not exist\"\n";
        assert_eq!(excerpt(err), "container does not exist");
        assert_eq!(excerpt(b"mount: /x: wrong fs type.\n"), "mount: /x: wrong fs type.");
        assert_eq!(excerpt(b""), "(no error output)");
    }

    #[tokio::test]
    async fn overrunning_commands_are_killed() {
        let err = Cmd::new("c1", "/bin/sleep", ["5"], Duration::from_millis(50)).run().await.unwrap_err();
        assert!(matches!(err, RuntimeError::Timeout { .. }), "{err}");
        assert!(err.to_string().contains("c1") && err.to_string().contains("sleep 5"), "{err}");
    }

    #[tokio::test]
    async fn failures_carry_stderr() {
        let err =
            Cmd::new("c2", "/bin/sh", ["-c", "echo boom >&2; exit 3"], Duration::from_secs(5)).run().await.unwrap_err();
        assert!(err.to_string().contains("boom") && err.to_string().contains("c2"), "{err}");
    }
}
