//! Every container's output: the agent keeps it in the container's bounded log
//! ([`Runtime::pump_logs`]), so `zgrid logs` works for any container, and, when the workload
//! names Redis channels for its stdout and stderr (seed `004`), PUBLISHes each line to its
//! stream's channels, in order.
//!
//! Reading never waits for Redis: lines go to the publisher through a bounded queue and are
//! dropped when it is full or Redis is down ([`super::redis::Sink`]). While the agent is away
//! the pipes hold up to 1 MiB each; the forwarder is started again with the agent.

use tokio::sync::mpsc;

use super::redis::{Channel, Problems, Sink};
use crate::runtime::Runtime;

/// Lines waiting for the publisher before new ones are dropped.
const QUEUE: usize = 10_000;

/// Keep container `id`'s output in its log and publish its lines to `channels` (stdout's,
/// stderr's; none for a container without Redis logs), until aborted; outages go to `problems`.
pub async fn forward(runtime: Runtime, id: String, channels: [Vec<Channel>; 2], problems: Problems) {
    let publishing = channels.iter().any(|c| !c.is_empty());
    let (lines, queue) = mpsc::channel::<(usize, String)>(QUEUE);
    let publisher = publishing.then(|| tokio::spawn(publish(id.clone(), queue, channels, problems)));
    let (mut partial, mut dropped) = ([Vec::new(), Vec::new()], 0u64);
    let split = |stream: usize, bytes: &[u8]| {
        if !publishing {
            return;
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
    };
    if let Err(e) = runtime.pump_logs(&id, split).await {
        tracing::warn!(container = %id, error = %e, "cannot keep the container's output");
    }
    if let Some(publisher) = publisher {
        publisher.abort();
    }
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
