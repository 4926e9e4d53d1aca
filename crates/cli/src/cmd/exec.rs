//! `zgrid exec ID [-i] [-t] -- COMMAND...`: run a command in a container through its node's
//! API (a WebSocket in Kubernetes' channel framing), print what it writes, send it this
//! terminal's input with `-i`, and exit with its exit code. With `-t` it runs on a terminal;
//! with `-i` too, this terminal is raw meanwhile and its size follows this one's.

use std::io::{IsTerminal, Write};

use anyhow::{Context, Result, bail};
use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use zgrid_types::exec::{self, ExecStatus, TerminalSize};

use crate::args::ExecArgs;
use crate::config::Ctx;

pub async fn run(ctx: &Ctx, a: ExecArgs) -> Result<()> {
    let (node, id) = super::node_client(ctx, &a.id).await?;
    let stream = node.exec(&id, &a.command, a.stdin, a.tty).await?;
    let closes_stdin = stream.protocol() == exec::PROTOCOL_V5;
    let (mut to_node, mut from_node) = stream.split();
    let raw = (a.tty && a.stdin && std::io::stdin().is_terminal()).then(RawTerminal::new).transpose()?;
    let (frames, mut outgoing) = mpsc::channel::<Vec<u8>>(16);
    if a.tty {
        tokio::spawn(follow_size(frames.clone()));
    }
    if a.stdin {
        let frames = frames.clone();
        std::thread::spawn(move || send_stdin(frames, closes_stdin));
    }
    drop(frames);
    tokio::spawn(async move {
        while let Some(frame) = outgoing.recv().await {
            if to_node.send(frame).await.is_err() {
                break;
            }
        }
    });
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    let mut status = None;
    while let Some(frame) = from_node.next().await {
        let frame = frame?;
        match frame.split_first() {
            Some((&exec::STDOUT, data)) => {
                out.write_all(data)?;
                out.flush()?;
            }
            Some((&exec::STDERR, data)) => {
                err.write_all(data)?;
                err.flush()?;
            }
            Some((&exec::ERROR, json)) => {
                status = Some(
                    serde_json::from_slice::<ExecStatus>(json).context("the node sent a status that is not JSON")?,
                );
            }
            _ => {}
        }
    }
    drop(raw);
    let Some(status) = status else { bail!("the node closed the connection without the command's exit status") };
    match status.exit_code() {
        Some(0) => Ok(()),
        Some(code) => std::process::exit(code),
        None => bail!("the command did not run: {}", status.message.unwrap_or_default()),
    }
}

/// Send this terminal's size now and whenever it changes.
async fn follow_size(frames: mpsc::Sender<Vec<u8>>) {
    let Ok(mut changes) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()) else {
        return;
    };
    loop {
        if let Ok(size) = rustix::termios::tcgetwinsize(std::io::stdout()) {
            let mut frame = vec![exec::RESIZE];
            let size = TerminalSize { width: size.ws_col, height: size.ws_row };
            frame.extend(serde_json::to_vec(&size).expect("a size serialises"));
            if frames.send(frame).await.is_err() {
                return;
            }
        }
        if changes.recv().await.is_none() {
            return;
        }
    }
}

/// Send stdin as it comes; at its end, close the command's stdin (when the protocol can). A
/// thread of its own, not the runtime's: a read that never returns must not hold up the exit.
fn send_stdin(frames: mpsc::Sender<Vec<u8>>, closes_stdin: bool) {
    use std::io::Read;
    let mut stdin = std::io::stdin().lock();
    let mut buf = vec![0u8; 32 << 10];
    while let Ok(n @ 1..) = stdin.read(&mut buf) {
        let mut frame = Vec::with_capacity(n + 1);
        frame.push(exec::STDIN);
        frame.extend_from_slice(&buf[..n]);
        if frames.blocking_send(frame).is_err() {
            return;
        }
    }
    if closes_stdin {
        let _ = frames.blocking_send(vec![exec::CLOSE, exec::STDIN]);
    }
}

/// This terminal in raw mode, put back as it was when dropped.
pub(super) struct RawTerminal(rustix::termios::Termios);

impl RawTerminal {
    pub(super) fn new() -> Result<Self> {
        let stdin = std::io::stdin();
        let before = rustix::termios::tcgetattr(&stdin).context("cannot read the terminal's settings")?;
        let mut raw = before.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &raw)
            .context("cannot put the terminal in raw mode")?;
        Ok(Self(before))
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let _ = rustix::termios::tcsetattr(std::io::stdin(), rustix::termios::OptionalActions::Now, &self.0);
    }
}
