//! `zgrid console ID` on a terminal: this terminal, in raw mode, attached to a process on a
//! terminal inside the container. Keystrokes go to it, its output comes here, and its terminal
//! size follows this one's. It ends when the process ends, or on [`DETACH`] (Ctrl-]), which
//! leaves the process running for `zgrid console ID --attach N` or the web page. The terminal
//! is put back as it was on every way out.

use std::io::{Read, Write};

use anyhow::{Context, Result};
use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::cmd::exec::RawTerminal;

/// The key that detaches: Ctrl-] (as in telnet).
pub const DETACH: u8 = 0x1d;

/// How the session ended.
pub enum Ended {
    /// The process ended (or the console closed the connection).
    Exited,
    /// The user pressed [`DETACH`]; the process runs on.
    Detached,
}

/// Attach this terminal to console process `process` at `base` (`host:port`) until it ends or
/// the user detaches.
pub async fn attach(base: &str, process: u64) -> Result<Ended> {
    let url = format!("ws://{base}/api/process/{process}/attach");
    let (socket, _) =
        tokio_tungstenite::connect_async(&url).await.with_context(|| format!("cannot attach at {url}"))?;
    let (mut to_console, mut from_console) = socket.split();
    let raw = RawTerminal::new()?;
    let (keys, mut typed) = mpsc::channel::<Vec<u8>>(16);
    // A thread of its own, not the runtime's: a read that never returns must not hold up the exit.
    std::thread::spawn(move || read_keys(&keys));
    let mut resized = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
        .context("cannot follow the terminal's size")?;
    to_console.send(size()).await?;
    let (mut out, mut typing) = (std::io::stdout(), true);
    let ended = loop {
        tokio::select! {
            message = from_console.next() => match message {
                Some(Ok(Message::Binary(bytes))) => { out.write_all(&bytes)?; out.flush()?; }
                Some(Ok(Message::Text(text))) => { out.write_all(text.as_bytes())?; out.flush()?; }
                Some(Ok(Message::Close(_))) | None => break Ended::Exited,
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e).context("the console's connection broke"),
            },
            keys = typed.recv(), if typing => match keys {
                Some(keys) => match keys.iter().position(|&k| k == DETACH) {
                    Some(at) => {
                        if at > 0 {
                            to_console.send(Message::Binary(keys[..at].to_vec().into())).await?;
                        }
                        break Ended::Detached;
                    }
                    None => to_console.send(Message::Binary(keys.into())).await?,
                },
                // This terminal's input ended: the process's output is still shown until it ends.
                None => typing = false,
            },
            _ = resized.recv() => to_console.send(size()).await?,
        }
    };
    drop(raw);
    let _ = to_console.close().await;
    Ok(ended)
}

/// This terminal's size, as the console's resize message.
fn size() -> Message {
    let size = rustix::termios::tcgetwinsize(std::io::stdout()).unwrap_or(rustix::termios::Winsize {
        ws_row: 24,
        ws_col: 80,
        ws_xpixel: 0,
        ws_ypixel: 0,
    });
    Message::Text(serde_json::json!({ "resize": [size.ws_col, size.ws_row] }).to_string().into())
}

/// Send what is typed as it comes, until stdin ends.
fn read_keys(keys: &mpsc::Sender<Vec<u8>>) {
    let mut stdin = std::io::stdin().lock();
    let mut buf = vec![0u8; 4096];
    while let Ok(n @ 1..) = stdin.read(&mut buf) {
        if keys.blocking_send(buf[..n].to_vec()).is_err() {
            return;
        }
    }
}
