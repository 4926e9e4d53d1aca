//! Statistics to Redis (seed `004`): every 2 seconds, a container with `stats` endpoints has its
//! cgroup figures PUBLISHed to each endpoint's channel as JSON: `timestamp` (Unix seconds),
//! `memory_usage`, `memory_limit` and `memory_cache` (bytes), `cpu_usage` (CPU time since the
//! start, in units of 10 µs) and `pids_current`.
//!
//! Each container's publisher is a task of the agent, started when the container is provisioned
//! (again after an agent restart) and stopped when it is removed. A Redis that is down or slow
//! never touches the container: the message of that tick is dropped ([`super::redis::Sink`]).

use std::time::Duration;

use super::redis::{Channel, Problems, Sink};
use crate::runtime::Runtime;

/// Time between two messages.
pub const INTERVAL: Duration = Duration::from_secs(2);
/// One container's figures as the seed's JSON.
fn message(usage: &crate::runtime::Usage, now: i64) -> String {
    serde_json::json!({
        "timestamp": now,
        "memory_usage": usage.memory_usage,
        "memory_limit": usage.memory_limit,
        "memory_cache": usage.memory_cache,
        "cpu_usage": usage.cpu_ns / 10_000,
        "pids_current": usage.pids,
    })
    .to_string()
}

/// Publish container `id`'s figures to `channels` every [`INTERVAL`], until aborted; outages go
/// to `problems`.
pub async fn publish(runtime: Runtime, id: String, channels: Vec<Channel>, problems: Problems) {
    let mut sinks: Vec<Sink> =
        channels.into_iter().map(|c| Sink::new(c, "statistics", &id, problems.clone())).collect();
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let usage = match runtime.usage(&id) {
            Ok(Some(usage)) => usage,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(container = %id, error = %e, "cannot read the container's statistics");
                continue;
            }
        };
        let text = message(&usage, zgrid_types::unix_now());
        for sink in &mut sinks {
            sink.publish(&text).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_follow_the_seed_format() {
        let usage =
            crate::runtime::Usage { memory_usage: 1, memory_limit: 2, memory_cache: 3, cpu_ns: 120_000, pids: 4 };
        let json: serde_json::Value = serde_json::from_str(&message(&usage, 1_586_221_435)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"timestamp": 1_586_221_435, "memory_usage": 1, "memory_limit": 2, "memory_cache": 3, "cpu_usage": 12, "pids_current": 4})
        );
    }
}
