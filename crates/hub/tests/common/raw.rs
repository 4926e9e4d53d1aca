//! HTTP/1.1 requests written by hand on a TCP connection, for what a well-behaved client never
//! does: a body that comes late or never, one far larger than a test could hold (streamed from
//! one small buffer), and an answer read while the body is still being sent. The CLI's tests
//! include it too (`#[path = ".../hub/tests/common/raw.rs"] mod raw;`); it needs `tokio`.

#![allow(dead_code)] // shared by test binaries that each use a part

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// What [`RawRequest::stream_zeros`] sends, again and again.
static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

/// A request whose head has been sent; its body goes piece by piece.
pub struct RawRequest {
    read: OwnedReadHalf,
    write: OwnedWriteHalf,
}

/// An answer: its status and body.
#[derive(Debug)]
pub struct RawAnswer {
    /// HTTP status.
    pub status: u16,
    /// The body, as text.
    pub body: String,
}

impl RawRequest {
    /// Connect to `addr` (`host:port`) and send the head of `method path` with
    /// `Content-Length: len` and `headers`.
    pub async fn start(addr: &str, method: &str, path: &str, len: u64, headers: &[(&str, String)]) -> Self {
        let (read, mut write) = TcpStream::connect(addr).await.expect("connect").into_split();
        let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {len}\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        write.write_all(head.as_bytes()).await.expect("send the request head");
        Self { read, write }
    }

    /// Send `bytes` of the body.
    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.write.write_all(bytes).await
    }

    /// Wait for the answer, sending nothing more.
    pub async fn answer(mut self) -> RawAnswer {
        read_answer(&mut self.read).await
    }

    /// Send `len` zero bytes as the body while waiting for the answer, and stop sending when it
    /// comes (or when the server stops taking them). The answer, and how many bytes of the body
    /// the connection had taken by then.
    pub async fn stream_zeros(self, len: u64) -> (RawAnswer, u64) {
        let Self { mut read, mut write } = self;
        let sent = AtomicU64::new(0);
        let sending = async {
            while sent.load(Ordering::Relaxed) < len {
                let n = (len - sent.load(Ordering::Relaxed)).min(ZEROS.len() as u64) as usize;
                if write.write_all(&ZEROS[..n]).await.is_err() {
                    break;
                }
                sent.fetch_add(n as u64, Ordering::Relaxed);
            }
            // Keep the connection open: the answer may still be on its way.
            std::future::pending::<()>().await
        };
        let answer = tokio::select! {
            answer = read_answer(&mut read) => answer,
            () = sending => unreachable!("sending never ends"),
        };
        (answer, sent.load(Ordering::Relaxed))
    }
}

/// Read one answer: its head, then as much body as `Content-Length` says.
async fn read_answer(read: &mut OwnedReadHalf) -> RawAnswer {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let n = read.read(&mut buf).await.expect("read the answer");
        assert!(n > 0, "the connection closed before an answer: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&got[..end]).into_owned();
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status: {head}"));
    let len: usize = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .map_or(0, |(_, v)| v.trim().parse().expect("a Content-Length"));
    let mut body = got[end..].to_vec();
    while body.len() < len {
        let n = read.read(&mut buf).await.expect("read the answer's body");
        assert!(n > 0, "the connection closed in the answer's body");
        body.extend_from_slice(&buf[..n]);
    }
    RawAnswer { status, body: String::from_utf8_lossy(&body).into_owned() }
}
