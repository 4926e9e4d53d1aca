//! The node's WireGuard devices, one per network resource, created in the agent's own network
//! namespace (where its UDP socket stays, reachable on the node's public address) and then
//! moved into the network's namespace.
//!
//! Two backends ([`Backend`]): the kernel's WireGuard where the kernel has the module
//! ([`kernel`]), otherwise an embedded userspace implementation, so farmers install nothing:
//! boringtun's `noise` state machine with a data path of our own ([`datapath`]), built for
//! throughput with the kernel's segmentation offloads on the TUN device and the UDP socket.
//!
//! A userspace device lives as long as the agent process; the agent provisions every device
//! again after a restart. Peers are changed one by one, so a peer that did not change keeps
//! its session.

mod burst;
mod datapath;
mod kernel;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
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

/// Which WireGuard the node's devices are.
#[derive(Debug, Clone)]
pub(crate) enum Backend {
    /// The kernel's, configured with the `wg` program at this path.
    Kernel(PathBuf),
    /// The embedded one, for this reason.
    Userspace(String),
}

impl Backend {
    /// The kernel's where it works, found by trying with the `ip` program at `ip`; otherwise
    /// the embedded one.
    pub(crate) fn detect(ip: &Path) -> Self {
        kernel::probe(ip).map_or_else(Self::Userspace, Self::Kernel)
    }

    /// How the node's log and directory entry name it: `kernel`, or `userspace: <why not the
    /// kernel's>`.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Kernel(_) => "kernel".into(),
            Self::Userspace(why) => format!("userspace: {why}"),
        }
    }
}

/// A running WireGuard device.
pub(crate) struct Tunnel {
    device: Device,
    /// Peers as last configured, by public key.
    peers: BTreeMap<[u8; 32], PeerConfig>,
    /// The bound UDP port.
    port: u16,
}

enum Device {
    Userspace {
        shared: Arc<Shared>,
        /// Stops the device's threads when dropped; the interface goes with them.
        handle: Handle,
    },
    Kernel(kernel::Device),
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
    /// A step of configuring the device failed.
    #[error("cannot {what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The system's error.
        source: std::io::Error,
    },
}

impl Tunnel {
    /// Create device `name` of `backend` in the calling thread's network namespace with
    /// `private_key`. It listens on a random port until [`Tunnel::listen`] binds another.
    /// Blocking.
    pub(crate) fn create(
        backend: &Backend,
        ip: &Path,
        name: &str,
        private_key: &[u8; 32],
    ) -> Result<Self, TunnelError> {
        let device = match backend {
            Backend::Kernel(wg) => Device::Kernel(kernel::Device::create(wg, ip, name, private_key)?),
            Backend::Userspace(_) => {
                let create = |source| TunnelError::Create { name: name.to_owned(), source };
                let tun = tun_rs::DeviceBuilder::new().name(name).offload(true).build_sync().map_err(create)?;
                let udp = Udp::bind(0).map_err(create)?;
                let (shared, mut handle) = Shared::new(tun, Config::new(private_key), udp).map_err(create)?;
                handle.start(&shared, name).map_err(create)?;
                Device::Userspace { shared, handle }
            }
        };
        Ok(Self { device, peers: BTreeMap::new(), port: 0 })
    }

    /// The interface was moved to the namespace at `netns` and renamed `name` there.
    pub(crate) fn moved(&mut self, netns: &Path, name: &str) -> Result<(), TunnelError> {
        match &mut self.device {
            Device::Kernel(device) => device
                .moved(netns, name)
                .map_err(|source| TunnelError::Io { what: format!("open {}", netns.display()), source }),
            Device::Userspace { .. } => Ok(()),
        }
    }

    /// The bound UDP port (0 before [`Tunnel::listen`]).
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Replace the private key (a new version of the network resource may bring a new one).
    /// Sessions start over only when the key changed.
    pub(crate) fn set_key(&mut self, private_key: &[u8; 32]) -> Result<(), TunnelError> {
        match &self.device {
            Device::Userspace { shared, .. } => {
                shared.config.write().expect("lock").set_key(private_key);
                Ok(())
            }
            Device::Kernel(device) => device.set_key(private_key),
        }
    }

    /// Bind UDP `port` (IPv4 and IPv6). `Ok(false)` when another socket holds it.
    pub(crate) fn listen(&mut self, port: u16) -> Result<bool, TunnelError> {
        let bound = match &self.device {
            Device::Kernel(device) => device.listen(port)?,
            Device::Userspace { shared, handle } => match Udp::bind(port) {
                Ok(udp) => {
                    *shared.udp.write().expect("lock") = Arc::new(udp);
                    handle.rebound();
                    true
                }
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => false,
                Err(source) => return Err(TunnelError::Io { what: format!("listen on UDP port {port}"), source }),
            },
        };
        if bound {
            self.port = port;
        }
        Ok(bound)
    }

    /// Make the device's peers exactly `wanted`: peers no longer wanted are removed, changed
    /// ones replaced, new ones added; unchanged ones are not touched and keep their sessions.
    pub(crate) fn set_peers(&mut self, wanted: BTreeMap<[u8; 32], PeerConfig>) -> Result<(), TunnelError> {
        let stale: Vec<[u8; 32]> =
            self.peers.iter().filter(|(k, v)| wanted.get(*k) != Some(*v)).map(|(k, _)| *k).collect();
        let added: Vec<([u8; 32], PeerConfig)> =
            wanted.into_iter().filter(|(k, v)| self.peers.get(k) != Some(v)).collect();
        match &self.device {
            Device::Kernel(device) => {
                for key in &stale {
                    device.remove_peer(key)?;
                    self.peers.remove(key);
                }
                for (key, peer) in added {
                    device.add_peer(&key, peer.endpoint, &peer.allowed)?;
                    self.peers.insert(key, peer);
                }
            }
            Device::Userspace { shared, .. } => {
                let mut initiations = Vec::new();
                let mut config = shared.config.write().expect("lock");
                for key in &stale {
                    config.remove(key);
                    self.peers.remove(key);
                }
                for (key, peer) in added {
                    initiations.extend(config.add(key, peer.endpoint, peer.allowed.clone(), KEEPALIVE_SECS));
                    self.peers.insert(key, peer);
                }
                drop(config);
                for (to, initiation) in initiations {
                    shared.send_one(to, &initiation);
                }
            }
        }
        Ok(())
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        if let Device::Userspace { shared, handle } = &mut self.device {
            handle.stop(shared);
        }
    }
}
