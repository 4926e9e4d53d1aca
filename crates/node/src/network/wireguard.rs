//! The embedded userspace WireGuard implementation (boringtun), so farmers install nothing:
//! one device per network resource, created in the agent's own network namespace (where its
//! UDP socket stays, reachable on the node's public address) and then moved into the network's
//! namespace, and configured over a private socket pair with the cross-platform UAPI protocol.
//!
//! The device lives as long as the agent process; the agent provisions it again after a
//! restart. Peers are changed one by one, so a peer that did not change keeps its session.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::fd::IntoRawFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use boringtun::device::{DeviceConfig, DeviceHandle};
use ipnet::IpNet;

/// Worker threads per device.
const THREADS: usize = 2;
/// Seconds between keepalives to each peer, so NAT mappings and sessions stay warm.
pub(crate) const KEEPALIVE_SECS: u16 = 20;
/// Time limit of one configuration exchange.
const API_TIMEOUT: Duration = Duration::from_secs(10);

/// One peer as the device should have it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PeerConfig {
    /// Where to reach it, when known.
    pub endpoint: Option<SocketAddr>,
    /// Prefixes routed to it.
    pub allowed: Vec<IpNet>,
}

/// A running userspace WireGuard device.
pub(crate) struct Tunnel {
    /// Keeps the device's threads running; dropping it stops them and removes the interface.
    _device: DeviceHandle,
    /// Our end of the configuration socket.
    api: UnixStream,
    /// Peers as last configured, by public key.
    peers: BTreeMap<[u8; 32], PeerConfig>,
    /// The bound UDP port.
    port: u16,
}

impl std::fmt::Debug for Tunnel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tunnel").field("port", &self.port).field("peers", &self.peers.len()).finish()
    }
}

/// A configuration request the device refused; `errno` is its answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TunnelError {
    /// The device could not be created.
    #[error("cannot create the WireGuard device {name}: {reason}")]
    Create {
        /// Interface name.
        name: String,
        /// boringtun's error.
        reason: String,
    },
    /// The device answered a request with an error number.
    #[error("the WireGuard device refused to {what} (errno {errno})")]
    Refused {
        /// What was asked.
        what: String,
        /// The answer.
        errno: i32,
    },
    /// The configuration socket failed.
    #[error("cannot talk to the WireGuard device: {0}")]
    Io(#[from] std::io::Error),
}

/// `errno` of EADDRINUSE, as the device answers a port already taken.
const EADDRINUSE: i32 = 98;

impl Tunnel {
    /// Create device `name` in the calling thread's network namespace with `private_key`. It
    /// listens on a random port until [`Tunnel::listen`] binds another. Blocking.
    pub(crate) fn create(name: &str, private_key: &[u8; 32]) -> Result<Self, TunnelError> {
        let (ours, theirs) = UnixStream::pair()?;
        let config = DeviceConfig {
            n_threads: THREADS,
            use_connected_socket: true,
            // Extra queues would be opened by name from the device's threads, after the
            // interface has moved to another namespace.
            use_multi_queue: false,
            uapi_fd: theirs.into_raw_fd(),
        };
        let device = DeviceHandle::new(name, config)
            .map_err(|e| TunnelError::Create { name: name.to_owned(), reason: format!("{e:?}") })?;
        ours.set_read_timeout(Some(API_TIMEOUT))?;
        ours.set_write_timeout(Some(API_TIMEOUT))?;
        let mut tunnel = Self { _device: device, api: ours, peers: BTreeMap::new(), port: 0 };
        tunnel.set_key(private_key)?;
        Ok(tunnel)
    }

    /// The bound UDP port (0 before [`Tunnel::listen`]).
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Replace the private key (a new version of the network resource may bring a new one).
    pub(crate) fn set_key(&mut self, private_key: &[u8; 32]) -> Result<(), TunnelError> {
        self.set("set the private key", &format!("private_key={}\n", hex::encode(private_key)))
    }

    /// Bind UDP `port` (IPv4 and IPv6). `Ok(false)` when another socket holds it.
    pub(crate) fn listen(&mut self, port: u16) -> Result<bool, TunnelError> {
        match self.set(&format!("listen on UDP port {port}"), &format!("listen_port={port}\n")) {
            Ok(()) => {
                self.port = port;
                Ok(true)
            }
            Err(TunnelError::Refused { errno: EADDRINUSE, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Make the device's peers exactly `wanted`: peers no longer wanted are removed, changed
    /// ones replaced, new ones added; unchanged ones are not touched and keep their sessions.
    pub(crate) fn set_peers(&mut self, wanted: BTreeMap<[u8; 32], PeerConfig>) -> Result<(), TunnelError> {
        let stale: Vec<[u8; 32]> =
            self.peers.iter().filter(|(k, v)| wanted.get(*k) != Some(*v)).map(|(k, _)| *k).collect();
        for key in stale {
            // One peer per request: the device carries a peer's settings over to the next.
            self.set("remove a peer", &format!("public_key={}\nremove=true\n", hex::encode(key)))?;
            self.peers.remove(&key);
        }
        for (key, peer) in wanted {
            if self.peers.contains_key(&key) {
                continue;
            }
            let mut body = format!("public_key={}\npersistent_keepalive_interval={KEEPALIVE_SECS}\n", hex::encode(key));
            if let Some(endpoint) = peer.endpoint {
                let _ = writeln!(body, "endpoint={endpoint}");
            }
            for prefix in &peer.allowed {
                let _ = writeln!(body, "allowed_ip={prefix}");
            }
            self.set("add a peer", &body)?;
            self.peers.insert(key, peer);
        }
        Ok(())
    }

    fn set(&mut self, what: &str, body: &str) -> Result<(), TunnelError> {
        self.exchange(&format!("set=1\n{body}\n"), what).map(drop)
    }

    /// Send one request and read its answer up to the blank line; fail on a non-zero errno.
    /// Requests are never pipelined: the device reads each through a fresh buffer.
    fn exchange(&mut self, request: &str, what: &str) -> Result<Vec<String>, TunnelError> {
        self.api.write_all(request.as_bytes())?;
        let mut reader = BufReader::new(&self.api);
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Err(TunnelError::Io(std::io::Error::other("the device closed its configuration socket")));
            }
            let line = line.trim_end().to_owned();
            if line.is_empty() {
                break;
            }
            lines.push(line);
        }
        match lines.last().and_then(|l| l.strip_prefix("errno=")).map(str::parse::<i32>) {
            Some(Ok(0)) => {
                lines.pop();
                Ok(lines)
            }
            Some(Ok(errno)) => Err(TunnelError::Refused { what: what.to_owned(), errno }),
            _ => Err(TunnelError::Io(std::io::Error::other(format!("unexpected answer to {what:?}: {lines:?}")))),
        }
    }
}
