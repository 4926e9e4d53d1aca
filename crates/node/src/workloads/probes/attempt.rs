//! One attempt of a probe: a TCP connection or an HTTP GET to `127.0.0.1:port` inside the
//! container's network namespace, or a command run inside the container.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::OnceCell;
use zgrid_types::workload::{Probe, ProbeAction};

use crate::runtime::{ContainerState, Runtime, RuntimeError};

/// Most bytes of an HTTP answer read to find its status line.
const MAX_ANSWER: usize = 4096;
/// Longest description of a failed attempt, in bytes.
const MAX_REASON: usize = 512;

/// Where a container's probes run: its network namespace and the container itself.
pub(super) struct Target {
    runtime: Runtime,
    id: String,
    /// The network namespace it joined, if any.
    netns_path: Option<PathBuf>,
    /// Its network namespace, once opened (held open, so it stays the one of this container).
    netns: OnceCell<std::fs::File>,
}

impl Target {
    /// Container `id`, which joined network namespace `netns` or has its own.
    pub(super) fn new(runtime: Runtime, id: &str, netns: Option<PathBuf>) -> Self {
        Self { runtime, id: id.to_owned(), netns_path: netns, netns: OnceCell::new() }
    }

    /// One attempt of `probe`: `Ok` when it passed, else what it found.
    pub(super) async fn attempt(&self, probe: &Probe) -> Result<(), String> {
        let limit = Duration::from_secs(probe.timeout_seconds.max(1).into());
        let answered = |port: u16| move |_| format!("port {port} did not answer within {}s", limit.as_secs());
        let found = match &probe.action {
            ProbeAction::TcpSocket { port } => tokio::time::timeout(limit, self.connect(*port))
                .await
                .map_err(answered(*port))
                .and_then(|r| r.map(drop)),
            ProbeAction::HttpGet { port, path } => {
                let get = async {
                    let mut stream = self.connect(*port).await?;
                    http_get(&mut stream, *port, path).await
                };
                tokio::time::timeout(limit, get).await.map_err(answered(*port)).and_then(|r| r)
            }
            // Killed at the limit by the runtime, inside the container too.
            ProbeAction::Exec { command } => self.exec(command, limit).await,
        };
        found.map_err(|why| shorten(why, MAX_REASON))
    }

    /// A connection to `127.0.0.1:port` in the container's network namespace.
    async fn connect(&self, port: u16) -> Result<tokio::net::TcpStream, String> {
        connect_in(self.netns().await?, port).await
    }

    /// The container's network namespace (a new handle of it).
    async fn netns(&self) -> Result<std::fs::File, String> {
        let file = self
            .netns
            .get_or_try_init(|| async {
                let path = match &self.netns_path {
                    Some(path) => path.clone(),
                    None => match self.runtime.state(&self.id).await {
                        Ok(ContainerState::Running { pid }) => PathBuf::from(format!("/proc/{pid}/ns/net")),
                        Ok(_) => return Err("the container is not running".to_owned()),
                        Err(e) => return Err(e.to_string()),
                    },
                };
                std::fs::File::open(&path)
                    .map_err(|e| format!("cannot open the container's network namespace {}: {e}", path.display()))
            })
            .await?;
        file.try_clone().map_err(|e| format!("cannot open the container's network namespace again: {e}"))
    }

    /// Run `command` in the container, killed after `limit`; `Ok` when it exits with status 0.
    async fn exec(&self, command: &[String], limit: Duration) -> Result<(), String> {
        let shown = shorten(command.join(" "), 80);
        match self.runtime.exec(&self.id, command, limit).await {
            Ok(exited) if exited.success => Ok(()),
            Ok(exited) if exited.output.is_empty() => Err(format!("`{shown}` ended with {}", exited.status)),
            Ok(exited) => Err(format!("`{shown}` ended with {}: {}", exited.status, exited.output)),
            Err(RuntimeError::Timeout { .. }) => {
                Err(format!("`{shown}` did not end within {}s and was killed", limit.as_secs()))
            }
            Err(e) => Err(format!("`{shown}` could not run: {e}")),
        }
    }
}

/// A connection to `127.0.0.1:port` in network namespace `netns`: the socket is made there,
/// then connected from the agent's own threads.
async fn connect_in(netns: std::fs::File, port: u16) -> Result<tokio::net::TcpStream, String> {
    let socket = tokio::task::spawn_blocking(move || crate::network::in_netns_of(netns, tokio::net::TcpSocket::new_v4))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| format!("cannot make a socket in the container's network namespace: {e}")))?;
    let to = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    socket.connect(to).await.map_err(|e| format!("cannot connect to port {port}: {e}"))
}

/// `GET path` over `stream` (to `127.0.0.1:port`): `Ok` when the status is 200 to 399. Reads at
/// most [`MAX_ANSWER`] bytes, enough for the status line.
async fn http_get(stream: &mut (impl AsyncRead + AsyncWrite + Unpin), port: u16, path: &str) -> Result<(), String> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: zgrid-probe\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    let failed = |e: std::io::Error| format!("GET {path} on port {port}: {e}");
    stream.write_all(request.as_bytes()).await.map_err(failed)?;
    let (mut answer, mut buf) = (Vec::new(), [0u8; 1024]);
    while !answer.contains(&b'\n') && answer.len() < MAX_ANSWER {
        let n = stream.read(&mut buf).await.map_err(failed)?;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n.min(MAX_ANSWER - answer.len())]);
    }
    let line = answer.split(|b| *b == b'\n').next().unwrap_or_default();
    match status_of(line) {
        Some(200..=399) => Ok(()),
        Some(status) => Err(format!("GET {path} on port {port} answered {status}")),
        None => Err(format!("GET {path} on port {port}: the answer is not HTTP")),
    }
}

/// The status code of an HTTP status line (`HTTP/1.1 200 OK`).
fn status_of(line: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.trim_end().splitn(3, ' ');
    let (version, code) = (parts.next()?, parts.next()?);
    let valid = version.starts_with("HTTP/") && code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit());
    valid.then(|| code.parse().ok()).flatten()
}

/// `text` cut to at most `max` bytes (at a character boundary), with `…` when cut.
fn shorten(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_are_read() {
        assert_eq!(status_of(b"HTTP/1.1 200 OK\r"), Some(200));
        assert_eq!(status_of(b"HTTP/1.0 302 Found"), Some(302));
        assert_eq!(status_of(b"HTTP/1.1 503"), Some(503));
        for bad in [&b"SSH-2.0-OpenSSH_9.2"[..], b"HTTP/1.1 20 OK", b"HTTP/1.1 abc", b"", b"\xff\xfe"] {
            assert_eq!(status_of(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    /// What `http_get` says of a server that answers `answer` (and the request it sent).
    async fn get(answer: &'static [u8]) -> (Result<(), String>, String) {
        let (mut client, mut server) = tokio::io::duplex(64 << 10);
        let serve = tokio::spawn(async move {
            let mut request = vec![0u8; 4096];
            let n = server.read(&mut request).await.unwrap();
            server.write_all(answer).await.unwrap();
            String::from_utf8_lossy(&request[..n]).into_owned()
        });
        let found = http_get(&mut client, 8080, "/healthz?x=1").await;
        (found, serve.await.unwrap())
    }

    #[tokio::test]
    async fn http_probes_pass_on_200_to_399_and_read_little() {
        let (found, request) = get(b"HTTP/1.1 204 No Content\r\nServer: x\r\n\r\n").await;
        assert_eq!(found, Ok(()));
        assert!(request.starts_with("GET /healthz?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"), "{request}");
        assert!(request.contains("Connection: close\r\n") && request.ends_with("\r\n\r\n"), "{request}");
        assert_eq!(get(b"HTTP/1.1 301 Moved\r\nLocation: /\r\n\r\n").await.0, Ok(()));
        let (found, _) = get(b"HTTP/1.1 500 Internal Server Error\r\n\r\n").await;
        assert_eq!(found.unwrap_err(), "GET /healthz?x=1 on port 8080 answered 500");
        let (found, _) = get(b"HTTP/1.1 404 Not Found\r\n\r\n").await;
        assert!(found.unwrap_err().contains("answered 404"));
        assert!(get(b"hello\n").await.0.unwrap_err().contains("not HTTP"));
        assert!(get(b"").await.0.unwrap_err().contains("not HTTP"));
        // An endless first line is given up on after MAX_ANSWER bytes.
        static ENDLESS: [u8; 32 << 10] = [b'x'; 32 << 10];
        assert!(get(&ENDLESS).await.0.unwrap_err().contains("not HTTP"));
    }

    #[tokio::test]
    async fn tcp_probes_connect_inside_a_network_namespace() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: entering a network namespace needs root");
            return;
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let own = || std::fs::File::open("/proc/self/ns/net").unwrap();
        assert!(connect_in(own(), port).await.is_ok());
        drop(listener);
        let refused = connect_in(own(), port).await.unwrap_err();
        assert!(refused.starts_with(&format!("cannot connect to port {port}: ")), "{refused}");
    }

    #[test]
    fn long_reasons_are_cut_at_a_character() {
        assert_eq!(shorten("short".into(), 10), "short");
        assert_eq!(shorten("ééé".into(), 3), "é…");
    }
}
