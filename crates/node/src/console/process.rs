//! A process the console started on a terminal inside the container: its output is kept (the
//! last 64 KiB, for whoever attaches later) and broadcast to attached clients; input and size
//! changes go to the terminal.

use std::fs::File;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::runtime::{Runtime, RuntimeError};

/// Output kept for clients that attach later.
const BACKLOG: usize = 64 << 10;

/// Output so far (its tail) and the sender of new output, gone once the process ended.
type Output = Mutex<(Vec<u8>, Option<broadcast::Sender<Vec<u8>>>)>;

/// A started process.
pub struct Process {
    /// The console's id for it.
    pub id: u32,
    /// Host pid.
    pub pid: u32,
    /// The terminal's master end, for input and size changes.
    terminal: File,
    output: Arc<Output>,
}

impl Process {
    /// Start `args` in `container` on a new terminal.
    pub async fn start(runtime: &Runtime, container: &str, id: u32, args: Vec<String>) -> Result<Self, RuntimeError> {
        let (pid, master) = runtime.exec_tty(container, &args).await?;
        let terminal = File::from(master);
        let reader = terminal
            .try_clone()
            .map_err(|e| RuntimeError::io(container, "duplicate the terminal of", "/dev/ptmx", e))?;
        let output: Arc<Output> = Arc::new(Mutex::new((Vec::new(), Some(broadcast::channel(256).0))));
        let pumped = output.clone();
        std::thread::spawn(move || pump(reader, &pumped));
        Ok(Self { id, pid, terminal, output })
    }

    /// The output so far, and a receiver of what follows (closed once the process ended).
    pub fn subscribe(&self) -> (Vec<u8>, broadcast::Receiver<Vec<u8>>) {
        let output = self.output.lock().expect("lock");
        let receiver = match &output.1 {
            Some(tx) => tx.subscribe(),
            None => broadcast::channel(1).1,
        };
        (output.0.clone(), receiver)
    }

    /// Type `bytes` on the terminal.
    pub async fn write(&self, bytes: Vec<u8>) {
        let Ok(mut terminal) = self.terminal.try_clone() else { return };
        let _ = tokio::task::spawn_blocking(move || terminal.write_all(&bytes)).await;
    }

    /// Set the terminal's size; 0 leaves a dimension as it is.
    pub fn resize(&self, cols: u16, rows: u16) {
        let Ok(mut size) = rustix::termios::tcgetwinsize(&self.terminal) else { return };
        if cols > 0 {
            size.ws_col = cols;
        }
        if rows > 0 {
            size.ws_row = rows;
        }
        let _ = rustix::termios::tcsetwinsize(&self.terminal, size);
    }
}

/// Read the terminal until the process (and everything else on the terminal) ends.
fn pump(mut reader: File, output: &Output) {
    let mut buf = [0u8; 8192];
    while let Ok(n @ 1..) = reader.read(&mut buf) {
        let mut output = output.lock().expect("lock");
        output.0.extend_from_slice(&buf[..n]);
        let excess = output.0.len().saturating_sub(BACKLOG);
        output.0.drain(..excess);
        if let Some(tx) = &output.1 {
            let _ = tx.send(buf[..n].to_vec());
        }
    }
    output.lock().expect("lock").1 = None;
}
