//! Statistics to Redis (seed `004`): every 2 seconds, a container with `stats` endpoints has its
//! cgroup figures PUBLISHed to each endpoint's channel as JSON: `timestamp` (Unix seconds),
//! `memory_usage`, `memory_limit` and `memory_cache` (bytes), `cpu_usage` (CPU time since the
//! start, in units of 10 µs) and `pids_current`.
//!
//! Each container's publisher is a task of the agent, started when the container is provisioned
//! (again after an agent restart) and stopped when it is removed. A Redis that is down or slow
//! never touches the container: the publisher drops that tick's message and connects again on
//! the next one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::runtime::Runtime;

/// Time between two messages.
pub const INTERVAL: Duration = Duration::from_secs(2);
/// Longest wait for Redis to connect or take a message.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// A Redis server and a channel on it, from `redis://[user:pass@]host:port/channel`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    /// The server, without the channel.
    server: String,
    /// The channel.
    name: String,
}

impl Channel {
    /// Parse `redis://[user:pass@]host[:port]/channel`.
    pub fn parse(url: &str) -> Result<Self, String> {
        let mut parsed = url::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
        let name = parsed.path().trim_start_matches('/').to_owned();
        if parsed.scheme() != "redis" || parsed.host().is_none() || name.is_empty() {
            return Err(format!("{url:?} is not a redis://host:port/channel URL"));
        }
        parsed.set_path("");
        Ok(Self { server: parsed.to_string(), name })
    }

    /// The server's URL with any password hidden, for messages.
    fn shown(&self) -> String {
        url::Url::parse(&self.server)
            .map(|mut u| {
                let _ = u.set_password(None);
                format!("{u}{}", self.name)
            })
            .unwrap_or_else(|_| "(unparsable)".into())
    }
}

/// The running publishers, one per container.
#[derive(Debug, Default)]
pub struct Publishers {
    tasks: Mutex<HashMap<String, JoinHandle<()>>>,
}

impl Publishers {
    /// Publish container `id`'s figures to `channels` from now on, replacing what it had.
    pub fn start(&self, runtime: Runtime, id: &str, channels: Vec<Channel>) {
        let task = tokio::spawn(publish(runtime, id.to_owned(), channels));
        if let Some(old) = self.tasks.lock().expect("lock").insert(id.to_owned(), task) {
            old.abort();
        }
    }

    /// Stop publishing for container `id`.
    pub fn stop(&self, id: &str) {
        if let Some(task) = self.tasks.lock().expect("lock").remove(id) {
            task.abort();
        }
    }
}

impl Drop for Publishers {
    fn drop(&mut self) {
        for task in self.tasks.lock().expect("lock").values() {
            task.abort();
        }
    }
}

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

async fn publish(runtime: Runtime, id: String, channels: Vec<Channel>) {
    let mut connections: Vec<Option<redis::aio::MultiplexedConnection>> = vec![None; channels.len()];
    let mut failing = vec![false; channels.len()];
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
        for (i, channel) in channels.iter().enumerate() {
            match send(&mut connections[i], channel, &text).await {
                Ok(()) if failing[i] => {
                    tracing::info!(container = %id, channel = %channel.shown(), "statistics reach Redis again");
                    failing[i] = false;
                }
                Ok(()) => {}
                Err(e) => {
                    connections[i] = None;
                    if !failing[i] {
                        tracing::warn!(container = %id, channel = %channel.shown(), error = %e, "cannot publish statistics; retrying every 2 s");
                        failing[i] = true;
                    }
                }
            }
        }
    }
}

/// PUBLISH `text` on `channel`, connecting first when there is no connection.
async fn send(
    connection: &mut Option<redis::aio::MultiplexedConnection>,
    channel: &Channel,
    text: &str,
) -> Result<(), String> {
    if connection.is_none() {
        let client = redis::Client::open(channel.server.as_str()).map_err(|e| e.to_string())?;
        let connect = client.get_multiplexed_async_connection();
        let made =
            tokio::time::timeout(REDIS_TIMEOUT, connect).await.map_err(|_| "connection timed out".to_string())?;
        *connection = Some(made.map_err(|e| e.to_string())?);
    }
    let conn = connection.as_mut().expect("connected above");
    let mut command = redis::cmd("PUBLISH");
    command.arg(&channel.name).arg(text);
    let publish = command.query_async::<i64>(conn);
    tokio::time::timeout(REDIS_TIMEOUT, publish)
        .await
        .map_err(|_| "publish timed out".to_string())?
        .map(drop)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_split_into_server_and_name_and_hide_passwords() {
        let c = Channel::parse("redis://user:pw@10.0.0.1:6380/container-stats").unwrap();
        assert_eq!(c.name, "container-stats");
        assert!(!c.shown().contains("pw") && c.shown().ends_with("container-stats"), "{}", c.shown());
        assert!(Channel::parse("redis://10.0.0.1:6379/").is_err());
        assert!(Channel::parse("http://10.0.0.1/x").is_err());
    }

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
