//! `exec` into a container through the node API: the query limits and the framing, which is
//! Kubernetes' `v4.channel.k8s.io` (and `v5.channel.k8s.io`) WebSocket protocol, so a virtual
//! kubelet can relay frames between `kubectl exec` and a node byte for byte.
//!
//! Every binary message starts with its channel byte: [`STDIN`] (client to node), [`STDOUT`]
//! and [`STDERR`] (node to client), [`ERROR`] (node to client, once, at the end: a JSON
//! [`ExecStatus`]), [`RESIZE`] (client to node, JSON [`TerminalSize`]), and [`CLOSE`] (client
//! to node, `[255, 0]`: no more stdin).

use serde::{Deserialize, Serialize};

/// The WebSocket subprotocol of Kubernetes' channel framing.
pub const PROTOCOL_V4: &str = "v4.channel.k8s.io";
/// The same framing plus [`CLOSE`].
pub const PROTOCOL_V5: &str = "v5.channel.k8s.io";

/// Channel of the process's stdin.
pub const STDIN: u8 = 0;
/// Channel of its stdout (its terminal, with a tty).
pub const STDOUT: u8 = 1;
/// Channel of its stderr.
pub const STDERR: u8 = 2;
/// Channel of the final [`ExecStatus`].
pub const ERROR: u8 = 3;
/// Channel of terminal size changes.
pub const RESIZE: u8 = 4;
/// `[CLOSE, STDIN]` closes the process's stdin (`v5.channel.k8s.io`).
pub const CLOSE: u8 = 255;

/// Most words in an exec command.
pub const MAX_COMMAND_WORDS: usize = 64;
/// Most bytes in all of an exec command's words.
pub const MAX_COMMAND_BYTES: usize = 4096;

/// Why a command cannot be run, or `None` when it fits the limits.
pub fn command_problem(command: &[String]) -> Option<String> {
    let bytes: usize = command.iter().map(String::len).sum();
    if command.is_empty() {
        Some("name the command to run: ?command=WORD&command=WORD...".into())
    } else if command.len() > MAX_COMMAND_WORDS {
        Some(format!("the command has {} words; at most {MAX_COMMAND_WORDS} are allowed", command.len()))
    } else if bytes > MAX_COMMAND_BYTES {
        Some(format!("the command has {bytes} bytes; at most {MAX_COMMAND_BYTES} are allowed"))
    } else if command.iter().any(|w| w.contains('\0')) {
        Some("a command word contains a NUL byte".into())
    } else {
        None
    }
}

/// A terminal size, as Kubernetes sends it on [`RESIZE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TerminalSize {
    /// Columns.
    #[serde(rename = "Width")]
    pub width: u16,
    /// Rows.
    #[serde(rename = "Height")]
    pub height: u16,
}

/// How the process ended: the part of Kubernetes' `metav1.Status` that `kubectl exec` reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecStatus {
    /// Always empty.
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// `Success` or `Failure`.
    pub status: String,
    /// `NonZeroExitCode`, or why it could not run (`InternalError`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// In words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The exit code, as a cause `{"reason":"ExitCode","message":"3"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<StatusDetails>,
}

/// `metav1.StatusDetails`, its causes only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusDetails {
    /// The causes.
    #[serde(default)]
    pub causes: Vec<StatusCause>,
}

/// `metav1.StatusCause`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusCause {
    /// `ExitCode`.
    #[serde(default)]
    pub reason: String,
    /// The code, in decimal.
    #[serde(default)]
    pub message: String,
}

impl ExecStatus {
    /// The status of a process that exited with `code`.
    pub fn exited(code: i32) -> Self {
        if code == 0 {
            return Self {
                metadata: Default::default(),
                status: "Success".into(),
                reason: None,
                message: None,
                details: None,
            };
        }
        Self {
            metadata: Default::default(),
            status: "Failure".into(),
            reason: Some("NonZeroExitCode".into()),
            message: Some(format!("command terminated with non-zero exit code: exit status {code}")),
            details: Some(StatusDetails {
                causes: vec![StatusCause { reason: "ExitCode".into(), message: code.to_string() }],
            }),
        }
    }

    /// The status of a command that could not be run, because of `message`.
    pub fn failed(message: impl Into<String>) -> Self {
        Self {
            metadata: Default::default(),
            status: "Failure".into(),
            reason: Some("InternalError".into()),
            message: Some(message.into()),
            details: None,
        }
    }

    /// The exit code: 0 on success, the `ExitCode` cause on failure, `None` when the command
    /// did not run (then [`ExecStatus::message`] says why).
    pub fn exit_code(&self) -> Option<i32> {
        if self.status == "Success" {
            return Some(0);
        }
        let causes = self.details.as_ref().map(|d| d.causes.as_slice()).unwrap_or_default();
        causes.iter().find(|c| c.reason == "ExitCode").and_then(|c| c.message.parse().ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_kubernetes_own_and_give_back_the_exit_code() {
        let ok = serde_json::to_string(&ExecStatus::exited(0)).unwrap();
        assert_eq!(ok, r#"{"metadata":{},"status":"Success"}"#);
        let three = serde_json::to_string(&ExecStatus::exited(3)).unwrap();
        assert_eq!(
            three,
            r#"{"metadata":{},"status":"Failure","reason":"NonZeroExitCode","message":"command terminated with non-zero exit code: exit status 3","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#
        );
        let back: ExecStatus = serde_json::from_str(&three).unwrap();
        assert_eq!(back.exit_code(), Some(3));
        assert_eq!(ExecStatus::failed("no").exit_code(), None);
        let size: TerminalSize = serde_json::from_str(r#"{"Width":80,"Height":24}"#).unwrap();
        assert_eq!(size, TerminalSize { width: 80, height: 24 });
    }

    #[test]
    fn commands_are_bounded() {
        let words = |n: usize, len: usize| vec!["x".repeat(len); n];
        assert!(command_problem(&[]).is_some());
        assert!(command_problem(&words(64, 64)).is_none());
        assert!(command_problem(&words(65, 1)).is_some_and(|m| m.contains("65 words")));
        assert!(command_problem(&words(2, 2049)).is_some_and(|m| m.contains("4098 bytes")));
    }
}
