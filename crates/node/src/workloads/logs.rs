//! Logs to Redis (seed `004`): when a container's workload names Redis channels for its stdout
//! and stderr, the container writes each stream into a pipe of its own
//! ([`crate::runtime::ContainerConfig::log_pipes`]). The agent reads both, appends everything
//! to the container's log (so `zgrid logs` works as for any container) and PUBLISHes each line
//! to its stream's channels, in order.
//!
//! Reading never waits for Redis: lines go to the publisher through a bounded queue and are
//! dropped when it is full or Redis is down ([`super::redis::Sink`]). While the agent is away
//! the pipes hold up to 1 MiB each; the forwarder is started again with the agent.

use std::path::PathBuf;

use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use super::redis::{Channel, Problems, Sink};
use crate::runtime::Runtime;

/// Lines waiting for the publisher before new ones are dropped.
const QUEUE: usize = 10_000;

/// Forward container `id`'s output from `pipes` (stdout, stderr) to its log and to `channels`
/// (stdout's, stderr's), until aborted; outages go to `problems`.
pub async fn forward(
    runtime: Runtime,
    id: String,
    pipes: [PathBuf; 2],
    channels: [Vec<Channel>; 2],
    problems: Problems,
) {
    let open = |path: &PathBuf| tokio::net::unix::pipe::OpenOptions::new().read_write(true).open_receiver(path);
    let (mut out, mut err) = match (open(&pipes[0]), open(&pipes[1])) {
        (Ok(out), Ok(err)) => (out, err),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(container = %id, error = %e, "cannot open the container's output pipes");
            return;
        }
    };
    let (lines, queue) = mpsc::channel::<(usize, String)>(QUEUE);
    let publisher = tokio::spawn(publish(id.clone(), queue, channels, problems));
    let (mut partial, mut dropped) = ([Vec::new(), Vec::new()], 0u64);
    let (mut out_buf, mut err_buf) = (vec![0u8; 64 << 10], vec![0u8; 64 << 10]);
    loop {
        let (stream, read) = tokio::select! {
            n = out.read(&mut out_buf) => (0, n.map(|n| &out_buf[..n])),
            n = err.read(&mut err_buf) => (1, n.map(|n| &err_buf[..n])),
        };
        let bytes = match read {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::warn!(container = %id, error = %e, "cannot read the container's output");
                break;
            }
        };
        if let Err(e) = runtime.append_log(&id, bytes) {
            tracing::warn!(container = %id, error = %e, "cannot append to the container's log");
        }
        partial[stream].extend_from_slice(bytes);
        while let Some(end) = partial[stream].iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = partial[stream].drain(..=end).collect();
            let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            if lines.try_send((stream, text)).is_err() {
                dropped += 1;
                if dropped.is_power_of_two() {
                    tracing::warn!(container = %id, dropped, "Redis is not keeping up; dropping log lines");
                }
            }
        }
    }
    publisher.abort();
}

async fn publish(
    id: String,
    mut queue: mpsc::Receiver<(usize, String)>,
    channels: [Vec<Channel>; 2],
    problems: Problems,
) {
    let [out, err] = channels;
    let sinks = |channels: Vec<Channel>, what| {
        channels.into_iter().map(|c| Sink::new(c, what, &id, problems.clone())).collect::<Vec<_>>()
    };
    let mut sinks = [sinks(out, "stdout lines"), sinks(err, "stderr lines")];
    while let Some((stream, line)) = queue.recv().await {
        for sink in &mut sinks[stream] {
            sink.publish(&line).await;
        }
    }
}
