//! Readiness and liveness probes of a container, as Kubernetes has them: checks the node runs
//! against the running container (a TCP connection, an HTTP GET or a command inside it) that
//! say whether it takes traffic and whether it must be restarted.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::validate::{Valid, ensure};

/// Longest wait before the first probe, and longest period, in seconds.
pub const MAX_PROBE_SECONDS: u32 = 3600;
/// Most consecutive failures or successes a probe may ask for.
pub const MAX_PROBE_THRESHOLD: u32 = 100;
/// Longest HTTP path of an `http_get` probe, in bytes.
pub const MAX_PROBE_PATH: usize = 1024;
/// Most words of an `exec` probe's command.
pub const MAX_PROBE_WORDS: usize = 64;
/// Most bytes of an `exec` probe's command, all words together.
pub const MAX_PROBE_COMMAND: usize = 4096;

/// The probes of a container; none by default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Probes {
    /// Whether the container is ready: the node reports `"ready": true|false` in its result.
    /// Without it a running container is ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness: Option<Probe>,
    /// Whether the container is alive: after `failure_threshold` failures in a row the node
    /// stops it and starts it again, as it does when the container exits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness: Option<Probe>,
}

/// One probe and its timing, with Kubernetes' meaning and defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Probe {
    /// What one attempt does.
    pub action: ProbeAction,
    /// Seconds after the container starts before the first attempt (default 0).
    #[serde(default)]
    pub initial_delay_seconds: u32,
    /// Seconds between attempts (default 10).
    #[serde(default = "default_period")]
    pub period_seconds: u32,
    /// Seconds one attempt may take before it counts as failed (default 1).
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u32,
    /// Failures in a row that make the probe fail (default 3).
    #[serde(default = "default_failure_threshold")]
    pub failure_threshold: u32,
    /// Successes in a row that make a failed probe pass again (default 1; 1 for liveness).
    #[serde(default = "default_success_threshold")]
    pub success_threshold: u32,
}

fn default_period() -> u32 {
    10
}

fn default_timeout() -> u32 {
    1
}

fn default_failure_threshold() -> u32 {
    3
}

fn default_success_threshold() -> u32 {
    1
}

/// What one attempt of a probe does, inside the container's network namespace or the container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ProbeAction {
    /// Succeeds when a TCP connection to `127.0.0.1:port` in the container's network opens.
    TcpSocket {
        /// The port.
        #[schema(maximum = 65535)]
        port: u16,
    },
    /// Succeeds when `GET path` on `127.0.0.1:port` in the container's network answers with a
    /// status from 200 to 399.
    HttpGet {
        /// The port.
        #[schema(maximum = 65535)]
        port: u16,
        /// The path and query, starting with `/`.
        path: String,
    },
    /// Succeeds when the command, run inside the container, exits with status 0.
    Exec {
        /// The program and its arguments.
        command: Vec<String>,
    },
}

impl Probe {
    /// A probe doing `action` with Kubernetes' default timing.
    pub fn new(action: ProbeAction) -> Self {
        Self {
            action,
            initial_delay_seconds: 0,
            period_seconds: default_period(),
            timeout_seconds: default_timeout(),
            failure_threshold: default_failure_threshold(),
            success_threshold: default_success_threshold(),
        }
    }

    /// Check the timing's ranges and the action; `liveness` also asks for a success threshold of 1.
    fn validate(&self, liveness: bool) -> Valid {
        let period = self.period_seconds;
        ensure((1..=MAX_PROBE_SECONDS).contains(&period), "period_seconds", || {
            format!("{period} is out of range: probe every 1 to {MAX_PROBE_SECONDS} seconds")
        })?;
        ensure(self.initial_delay_seconds <= MAX_PROBE_SECONDS, "initial_delay_seconds", || {
            format!("{} is out of range: wait at most {MAX_PROBE_SECONDS} seconds", self.initial_delay_seconds)
        })?;
        ensure((1..=period).contains(&self.timeout_seconds), "timeout_seconds", || {
            format!("{} is out of range: give an attempt 1 to {period} seconds (the period)", self.timeout_seconds)
        })?;
        for (field, value) in
            [("failure_threshold", self.failure_threshold), ("success_threshold", self.success_threshold)]
        {
            ensure((1..=MAX_PROBE_THRESHOLD).contains(&value), field, || {
                format!("{value} is out of range: use 1 to {MAX_PROBE_THRESHOLD}")
            })?;
        }
        ensure(!liveness || self.success_threshold == 1, "success_threshold", || {
            format!("{} must be 1 for a liveness probe", self.success_threshold)
        })?;
        self.action.validate().map_err(|e| e.within("action"))
    }
}

impl ProbeAction {
    /// Read the command-line form: `tcp:PORT`, `http:PORT/PATH` or `exec:COMMAND WORDS` (split
    /// into words like a container's entrypoint: POSIX shell rules). Errors say what to write.
    pub fn parse(text: &str) -> Result<Self, String> {
        const FORMS: &str =
            "write tcp:PORT, http:PORT/PATH or exec:COMMAND (e.g. tcp:8080, http:8080/healthz, exec:'cat /tmp/ok')";
        let port = |p: &str| match p.parse::<u16>() {
            Ok(port @ 1..) => Ok(port),
            _ => Err(format!("{p:?} in {text:?} is not a port (1 to 65535): {FORMS}")),
        };
        let action = match text.split_once(':') {
            Some(("tcp", p)) => Self::TcpSocket { port: port(p)? },
            Some(("http", rest)) => {
                let (p, path) = rest.find('/').map_or((rest, "/"), |at| rest.split_at(at));
                Self::HttpGet { port: port(p)?, path: path.to_owned() }
            }
            Some(("exec", words)) => {
                let command = shlex::split(words)
                    .ok_or_else(|| format!("{text:?} has unbalanced quotes or ends in a backslash: {FORMS}"))?;
                Self::Exec { command }
            }
            _ => return Err(format!("{text:?} is not a probe: {FORMS}")),
        };
        action.validate().map_err(|e| format!("{text:?}: {}", e.message))?;
        Ok(action)
    }

    fn validate(&self) -> Valid {
        match self {
            Self::TcpSocket { port } => check_port(*port),
            Self::HttpGet { port, path } => {
                check_port(*port)?;
                ensure(path.starts_with('/'), "path", || format!("{path:?} must start with /"))?;
                ensure(path.len() <= MAX_PROBE_PATH, "path", || {
                    format!("is {} bytes; the limit is {MAX_PROBE_PATH}", path.len())
                })?;
                ensure(path.bytes().all(|b| b.is_ascii_graphic()), "path", || {
                    format!("{path:?} must be visible ASCII without spaces (percent-encode the rest)")
                })
            }
            Self::Exec { command } => {
                ensure(!command.is_empty(), "command", || "names no program to run".into())?;
                ensure(command.len() <= MAX_PROBE_WORDS, "command", || {
                    format!("has {} words; the limit is {MAX_PROBE_WORDS}", command.len())
                })?;
                let bytes: usize = command.iter().map(String::len).sum();
                ensure(bytes <= MAX_PROBE_COMMAND, "command", || {
                    format!("is {bytes} bytes; the limit is {MAX_PROBE_COMMAND}")
                })?;
                ensure(!command[0].is_empty(), "command[0]", || "names no program to run".into())?;
                for (i, word) in command.iter().enumerate() {
                    ensure(!word.contains('\0'), &format!("command[{i}]"), || "contains NUL".into())?;
                }
                Ok(())
            }
        }
    }
}

fn check_port(port: u16) -> Valid {
    ensure(port != 0, "port", || "must be 1 to 65535".into())
}

impl Probes {
    /// Whether there are no probes (then the field is left out of the JSON, so specs signed
    /// before probes existed verify as they were signed).
    pub fn is_empty(&self) -> bool {
        self.readiness.is_none() && self.liveness.is_none()
    }

    /// Check each probe; errors name `readiness.…` or `liveness.…`.
    pub(super) fn validate(&self) -> Valid {
        if let Some(p) = &self.readiness {
            p.validate(false).map_err(|e| e.within("readiness"))?;
        }
        if let Some(p) = &self.liveness {
            p.validate(true).map_err(|e| e.within("liveness"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp() -> Probe {
        Probe::new(ProbeAction::TcpSocket { port: 8080 })
    }

    /// The field `change` makes validation name, or `None` when it passes.
    fn refused(change: impl FnOnce(&mut Probes)) -> Option<String> {
        let mut probes = Probes { readiness: Some(tcp()), liveness: Some(tcp()) };
        change(&mut probes);
        probes.validate().err().map(|e| e.field)
    }

    fn readiness(change: impl FnOnce(&mut Probe)) -> Option<String> {
        refused(|p| change(p.readiness.as_mut().unwrap()))
    }

    #[test]
    fn defaults_are_kubernetes_ones() {
        let p: Probe = serde_json::from_str(r#"{"action": {"type": "tcp_socket", "port": 80}}"#).unwrap();
        assert_eq!(p, Probe::new(ProbeAction::TcpSocket { port: 80 }));
        assert_eq!(
            (p.initial_delay_seconds, p.period_seconds, p.timeout_seconds, p.failure_threshold, p.success_threshold),
            (0, 10, 1, 3, 1)
        );
        let exec = r#"{"type": "exec", "command": ["cat", "/ok"]}"#;
        assert_eq!(
            serde_json::from_str::<ProbeAction>(exec).unwrap(),
            ProbeAction::Exec { command: vec!["cat".into(), "/ok".into()] }
        );
        let http = r#"{"type": "http_get", "port": 80, "path": "/healthz"}"#;
        assert!(serde_json::from_str::<ProbeAction>(http).is_ok());
        for unknown in [
            r#"{"type": "tcp_socket", "port": 80, "host": "x"}"#,
            r#"{"type": "grpc", "port": 80}"#,
            r#"{"type": "http_get", "port": 80}"#,
        ] {
            assert!(serde_json::from_str::<ProbeAction>(unknown).is_err(), "{unknown}");
        }
        assert!(serde_json::from_str::<Probes>(r#"{"startup": null}"#).is_err());
    }

    #[test]
    fn timing_and_thresholds_are_in_range() {
        assert_eq!(refused(|_| {}), None);
        assert_eq!(readiness(|p| p.period_seconds = 0).as_deref(), Some("readiness.period_seconds"));
        assert_eq!(readiness(|p| p.period_seconds = 3601).as_deref(), Some("readiness.period_seconds"));
        assert_eq!(readiness(|p| p.initial_delay_seconds = 3600), None);
        assert_eq!(readiness(|p| p.initial_delay_seconds = 3601).as_deref(), Some("readiness.initial_delay_seconds"));
        assert_eq!(readiness(|p| p.timeout_seconds = 0).as_deref(), Some("readiness.timeout_seconds"));
        assert_eq!(readiness(|p| p.timeout_seconds = 10), None, "up to the period");
        assert_eq!(readiness(|p| p.timeout_seconds = 11).as_deref(), Some("readiness.timeout_seconds"));
        assert_eq!(readiness(|p| p.failure_threshold = 0).as_deref(), Some("readiness.failure_threshold"));
        assert_eq!(readiness(|p| p.failure_threshold = 101).as_deref(), Some("readiness.failure_threshold"));
        assert_eq!(readiness(|p| p.success_threshold = 100), None);
        assert_eq!(readiness(|p| p.success_threshold = 0).as_deref(), Some("readiness.success_threshold"));
        let live = |p: &mut Probes| p.liveness.as_mut().unwrap().success_threshold = 2;
        assert_eq!(refused(live).as_deref(), Some("liveness.success_threshold"));
    }

    #[test]
    fn actions_are_checked() {
        let with = |action: ProbeAction| readiness(|p| p.action = action);
        assert_eq!(with(ProbeAction::TcpSocket { port: 0 }).as_deref(), Some("readiness.action.port"));
        let http = |path: &str| with(ProbeAction::HttpGet { port: 80, path: path.into() });
        assert_eq!(http("/healthz?full=1"), None);
        assert_eq!(http(&format!("/{}", "a".repeat(MAX_PROBE_PATH - 1))), None);
        for bad in ["healthz", "/a b", "/é", "/a\n", &format!("/{}", "a".repeat(MAX_PROBE_PATH))] {
            assert_eq!(http(bad).as_deref(), Some("readiness.action.path"), "{bad:?}");
        }
        let exec = |words: Vec<String>| with(ProbeAction::Exec { command: words });
        assert_eq!(exec(vec!["true".into()]), None);
        assert_eq!(exec(vec![]).as_deref(), Some("readiness.action.command"));
        assert_eq!(exec(vec![String::new()]).as_deref(), Some("readiness.action.command[0]"));
        assert_eq!(exec(vec!["x".into(); MAX_PROBE_WORDS + 1]).as_deref(), Some("readiness.action.command"));
        assert_eq!(exec(vec!["x".repeat(MAX_PROBE_COMMAND + 1)]).as_deref(), Some("readiness.action.command"));
        assert_eq!(exec(vec!["sh".into(), "a\0".into()]).as_deref(), Some("readiness.action.command[1]"));
    }

    #[test]
    fn the_command_line_form_parses() {
        assert_eq!(ProbeAction::parse("tcp:8080").unwrap(), ProbeAction::TcpSocket { port: 8080 });
        assert_eq!(
            ProbeAction::parse("http:80/healthz?x=1").unwrap(),
            ProbeAction::HttpGet { port: 80, path: "/healthz?x=1".into() }
        );
        assert_eq!(ProbeAction::parse("http:80").unwrap(), ProbeAction::HttpGet { port: 80, path: "/".into() });
        assert_eq!(
            ProbeAction::parse("exec:sh -c 'test -e /ok'").unwrap(),
            ProbeAction::Exec { command: vec!["sh".into(), "-c".into(), "test -e /ok".into()] }
        );
        for bad in ["tcp:0", "tcp:http", "tcp:70000", "udp:53", "8080", "http:/x", "exec:", "exec:'a", "http:80/a b"] {
            let err = ProbeAction::parse(bad).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
        assert!(ProbeAction::parse("udp:53").unwrap_err().contains("tcp:PORT, http:PORT/PATH or exec:COMMAND"));
    }
}
