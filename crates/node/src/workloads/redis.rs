//! Publishing to Redis channels (seed `004`: logs and statistics), for containers whose
//! workload names `redis://host:port/channel` endpoints. A sink never waits long on Redis: each
//! connect or PUBLISH has a short time limit, and after a failure the sink stays quiet for a
//! second before it tries again, dropping what it is given meanwhile. Outages and recoveries
//! are logged once each, without passwords.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use zgrid_types::workload::redis_channel;

/// Longest wait for Redis to connect or take a message.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);
/// Quiet time after a failure.
const RETRY_AFTER: Duration = Duration::from_secs(1);

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
        let (server, name) = redis_channel(url).ok_or_else(|| "is not a redis://host:port/channel URL".to_string())?;
        Ok(Self { server, name })
    }

    /// The URL with any password hidden, for messages.
    fn shown(&self) -> String {
        url::Url::parse(&self.server)
            .map(|mut u| {
                let _ = u.set_password(None);
                format!("{}/{}", u.as_str().trim_end_matches('/'), self.name)
            })
            .unwrap_or_else(|_| "(unparsable)".into())
    }
}

/// Publishing problems per container, for the owner to hear about once each.
#[derive(Debug, Clone, Default)]
pub struct Problems(Arc<Mutex<HashMap<String, (String, bool)>>>);

impl Problems {
    fn set(&self, container: &str, message: String) {
        self.0.lock().expect("lock").entry(container.to_owned()).or_insert((message, false));
    }

    fn clear(&self, container: &str) {
        self.0.lock().expect("lock").remove(container);
    }

    /// The container's current problem, if it was not handed out yet.
    pub fn take_new(&self, container: &str) -> Option<String> {
        let mut all = self.0.lock().expect("lock");
        let (message, reported) = all.get_mut(container)?;
        (!std::mem::replace(reported, true)).then(|| message.clone())
    }
}

/// One channel being published to, with its connection.
pub struct Sink {
    channel: Channel,
    connection: Option<redis::aio::MultiplexedConnection>,
    /// When the last failure allows the next try.
    quiet_until: Option<Instant>,
    /// What is published and for which container, for messages.
    what: &'static str,
    container: String,
    problems: Problems,
}

impl Sink {
    /// A sink publishing `what` (e.g. "statistics") of `container` to `channel`, noting an
    /// outage in `problems`.
    pub fn new(channel: Channel, what: &'static str, container: &str, problems: Problems) -> Self {
        Self { channel, connection: None, quiet_until: None, what, container: container.to_owned(), problems }
    }

    /// PUBLISH `text`, or drop it while Redis is failing.
    pub async fn publish(&mut self, text: &str) {
        if self.quiet_until.is_some_and(|t| Instant::now() < t) {
            return;
        }
        match self.send(text).await {
            Ok(()) => {
                if self.quiet_until.take().is_some() {
                    self.problems.clear(&self.container);
                    tracing::info!(container = %self.container, channel = %self.channel.shown(), "{} reach Redis again", self.what);
                }
            }
            Err(e) => {
                self.connection = None;
                if self.quiet_until.replace(Instant::now() + RETRY_AFTER).is_none() {
                    let message = format!(
                        "cannot publish {} to {}: {e}; dropping them until Redis answers",
                        self.what,
                        self.channel.shown()
                    );
                    self.problems.set(&self.container, message);
                    tracing::warn!(container = %self.container, channel = %self.channel.shown(), error = %e, "cannot publish {}; dropping them until Redis answers", self.what);
                }
            }
        }
    }

    async fn send(&mut self, text: &str) -> Result<(), String> {
        if self.connection.is_none() {
            let client = redis::Client::open(self.channel.server.as_str()).map_err(|e| e.to_string())?;
            let connect = client.get_multiplexed_async_connection();
            let made =
                tokio::time::timeout(REDIS_TIMEOUT, connect).await.map_err(|_| "connection timed out".to_string())?;
            self.connection = Some(made.map_err(|e| e.to_string())?);
        }
        let connection = self.connection.as_mut().expect("connected above");
        let mut command = redis::cmd("PUBLISH");
        command.arg(&self.channel.name).arg(text);
        let publish = command.query_async::<i64>(connection);
        let sent = tokio::time::timeout(REDIS_TIMEOUT, publish).await.map_err(|_| "publish timed out".to_string())?;
        sent.map(drop).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_is_handed_out_once_until_it_clears() {
        let problems = Problems::default();
        problems.set("c1", "down".into());
        problems.set("c1", "still down".into());
        assert_eq!(problems.take_new("c1").as_deref(), Some("down"));
        assert_eq!(problems.take_new("c1"), None);
        problems.clear("c1");
        problems.set("c1", "down again".into());
        assert_eq!(problems.take_new("c1").as_deref(), Some("down again"));
    }

    #[test]
    fn channels_split_into_server_and_name_and_hide_passwords() {
        let c = Channel::parse("redis://user:pw@10.0.0.1:6380/container-stats").unwrap();
        assert_eq!(c.name, "container-stats");
        assert_eq!(c.shown(), "redis://user@10.0.0.1:6380/container-stats");
        assert!(Channel::parse("redis://10.0.0.1:6379/").is_err());
        assert!(Channel::parse("http://10.0.0.1/x").is_err());
    }
}
