//! The embedded userspace WireGuard implementation, so farmers install nothing: one device
//! per network resource, created in the agent's own network namespace (where its UDP socket
//! stays, reachable on the node's public address) and then moved into the network's namespace.
//!
//! The protocol is boringtun's `noise` state machine; the data path around it is ours
//! ([`datapath`]), built for throughput with the kernel's segmentation offloads on the TUN
//! device and the UDP socket.
//!
//! The device lives as long as the agent process; the agent provisions it again after a
//! restart. Peers are changed one by one, so a peer that did not change keeps its session.

mod burst;
mod datapath;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use ipnet::IpNet;

use datapath::{Config, Handle, Shared, Udp};

/// Seconds between keepalives to each peer, so NAT mappings and sessions stay warm.
pub(crate) const KEEPALIVE_SECS: u16 = 20;

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
    shared: Arc<Shared>,
    /// Stops the device's threads when the tunnel is dropped; the interface goes with them.
    handle: Handle,
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

/// Why the device could not be created or configured.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TunnelError {
    /// The device could not be created.
    #[error("cannot create the WireGuard device {name}: {source}")]
    Create {
        /// Interface name.
        name: String,
        /// The system's error.
        source: std::io::Error,
    },
    /// A socket could not be bound or set up.
    #[error("cannot {what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The system's error.
        source: std::io::Error,
    },
}

impl Tunnel {
    /// Create device `name` in the calling thread's network namespace with `private_key`. It
    /// listens on a random port until [`Tunnel::listen`] binds another. Blocking.
    pub(crate) fn create(name: &str, private_key: &[u8; 32]) -> Result<Self, TunnelError> {
        let create = |source| TunnelError::Create { name: name.to_owned(), source };
        let tun = tun_rs::DeviceBuilder::new().name(name).offload(true).build_sync().map_err(create)?;
        let udp = Udp::bind(0).map_err(create)?;
        let (shared, mut handle) = Shared::new(tun, Config::new(private_key), udp).map_err(create)?;
        handle.start(&shared, name).map_err(create)?;
        Ok(Self { shared, handle, peers: BTreeMap::new(), port: 0 })
    }

    /// The bound UDP port (0 before [`Tunnel::listen`]).
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Replace the private key (a new version of the network resource may bring a new one).
    /// Sessions start over only when the key changed.
    pub(crate) fn set_key(&mut self, private_key: &[u8; 32]) {
        self.shared.config.write().expect("lock").set_key(private_key);
    }

    /// Bind UDP `port` (IPv4 and IPv6). `Ok(false)` when another socket holds it.
    pub(crate) fn listen(&mut self, port: u16) -> Result<bool, TunnelError> {
        let udp = match Udp::bind(port) {
            Ok(udp) => udp,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => return Ok(false),
            Err(source) => return Err(TunnelError::Io { what: format!("listen on UDP port {port}"), source }),
        };
        *self.shared.udp.write().expect("lock") = Arc::new(udp);
        self.handle.rebound();
        self.port = port;
        Ok(true)
    }

    /// Make the device's peers exactly `wanted`: peers no longer wanted are removed, changed
    /// ones replaced, new ones added; unchanged ones are not touched and keep their sessions.
    pub(crate) fn set_peers(&mut self, wanted: BTreeMap<[u8; 32], PeerConfig>) {
        let mut initiations = Vec::new();
        {
            let mut config = self.shared.config.write().expect("lock");
            self.peers.retain(|key, peer| {
                let keep = wanted.get(key) == Some(peer);
                if !keep {
                    config.remove(key);
                }
                keep
            });
            for (key, peer) in wanted {
                if self.peers.contains_key(&key) {
                    continue;
                }
                initiations.extend(config.add(key, peer.endpoint, peer.allowed.clone(), KEEPALIVE_SECS));
                self.peers.insert(key, peer);
            }
        }
        for (to, initiation) in initiations {
            self.shared.send_one(to, &initiation);
        }
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        self.handle.stop(&self.shared);
    }
}
