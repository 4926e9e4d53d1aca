//! Private networks on this node. Each network resource gets its own network namespace
//! (`zgn-<workload id>`) holding a bridge `br0` with the node's gateway address (`.1` of its
//! /24), a WireGuard interface `wg0` routing the rest of the network's /16 to the other nodes,
//! and IPv4 forwarding between the two. Containers that join get their own namespace
//! (`zgc-<workload id>`) with a veth pair whose inside end `eth0` carries their static address.
//!
//! Namespaces are named after workload ids, not network names, so two owners' networks never
//! share anything (even with the same CIDR on the same node), and removing one network resource
//! can never take down another of the same network. A small record per network resource
//! (`<dir>/<id>.json`, written before any side effect) remembers its owner, name, subnet and UDP
//! port, so the port stays the same across agent restarts and reboots and leftovers of a crash
//! are found and removed.

mod egress;
mod netns;
mod outside;
mod wireguard;
mod yggdrasil;

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine;
use ipnet::{IpNet, Ipv4Net};
use serde::{Deserialize, Serialize};
use zgrid_types::workload::{NetworkResource, OpenPort, check_host_ip};
use zgrid_types::{Keypair, PublicKey, WorkloadId};

use crate::provision::ProvisionError;
use crate::runtime::RuntimeError;
use netns::{Helpers, Netns};
pub(crate) use netns::{in_netns, in_netns_of};
pub use outside::{OutsideIpv6, Reach};
use wireguard::{Backend, PeerConfig, Tunnel};
pub use yggdrasil::Yggdrasil;

/// UDP ports network resources listen on unless the owner asks for one.
pub const DEFAULT_PORTS: RangeInclusive<u16> = 51820..=52819;
/// MTU inside networks: 1500 less WireGuard's worst-case overhead (IPv6 underlay).
pub(crate) const MTU: &str = "1420";
/// The bridge inside a network's namespace.
const BRIDGE: &str = "br0";
/// The WireGuard interface inside a network's namespace.
const WG: &str = "wg0";
/// A container's interface inside its namespace.
const ETH: &str = "eth0";

/// What this node remembers of one network resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Record {
    id: WorkloadId,
    owner_key: PublicKey,
    name: String,
    network: Ipv4Net,
    subnet: Ipv4Net,
    /// The bound UDP port; 0 until one is bound.
    port: u16,
    /// Set when removal starts: containers no longer join it.
    #[serde(default)]
    removing: bool,
    /// Its uplink's number when it has egress ([`egress`]).
    #[serde(default)]
    uplink: Option<u16>,
}

/// The failure of a network step.
fn transient(e: impl std::fmt::Display) -> ProvisionError {
    ProvisionError::Transient(e.to_string())
}

/// The networks of this node.
pub struct Networks {
    /// Opens the private keys sealed to this node.
    key: Keypair,
    /// Records, one file per network resource.
    dir: PathBuf,
    /// Ports to pick from.
    ports: RangeInclusive<u16>,
    /// The `ip` program.
    ip: PathBuf,
    /// The `nft` program, needed for egress only.
    nft: Option<PathBuf>,
    /// What makes containers' namespaces inside their user namespaces.
    helpers: Helpers,
    /// Live WireGuard devices by network resource id.
    tunnels: Mutex<HashMap<WorkloadId, Arc<Mutex<Tunnel>>>>,
    /// Which WireGuard the devices are.
    backend: Backend,
    /// The public IPv6 prefix containers get addresses from, if the node has one.
    public: Option<OutsideIpv6>,
    /// The Yggdrasil subnet containers get addresses from, if the node runs Yggdrasil.
    yggdrasil: Option<OutsideIpv6>,
}

impl std::fmt::Debug for Networks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Networks").field("dir", &self.dir).field("ports", &self.ports).finish()
    }
}

impl Networks {
    /// Networks recorded in `dir` (created if missing), opening keys sealed to `key` and
    /// picking UDP ports from `ports`. Checks that iproute2's `ip` is installed.
    pub fn new(dir: impl Into<PathBuf>, key: Keypair, ports: RangeInclusive<u16>) -> Result<Self, RuntimeError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| RuntimeError::host_io("create directory", &dir, e))?;
        let ip = crate::runtime::command::find_program("ip", "iproute2")?;
        let backend = Backend::detect(&ip);
        tracing::info!(
            ports = %format!("{}-{}", ports.start(), ports.end()),
            backend = %backend.describe(),
            "WireGuard"
        );
        let nft = crate::runtime::command::find_program("nft", "nftables").ok();
        let helpers = Helpers::find()?;
        Ok(Self {
            key,
            dir,
            ports,
            ip,
            nft,
            helpers,
            tunnels: Mutex::default(),
            backend,
            public: None,
            yggdrasil: None,
        })
    }

    /// Give containers that ask for one an address of `outside` (needs nftables, which keeps
    /// them closed but for the ports their owners open).
    pub fn with_outside(mut self, outside: OutsideIpv6) -> Result<Self, RuntimeError> {
        if self.nft.is_none() {
            crate::runtime::command::find_program("nft", "nftables")?;
        }
        tracing::info!(prefix = %outside.prefix(), reach = ?outside.reach(), "outside addresses for containers");
        match outside.reach() {
            Reach::PublicIpv6 => self.public = Some(outside),
            Reach::Yggdrasil => self.yggdrasil = Some(outside),
        }
        Ok(self)
    }

    /// Where containers get addresses reaching `reach` from, if this node gives them.
    pub fn outside(&self, reach: Reach) -> Option<&OutsideIpv6> {
        match reach {
            Reach::PublicIpv6 => self.public.as_ref(),
            Reach::Yggdrasil => self.yggdrasil.as_ref(),
        }
    }

    /// The namespace of network resource `id`.
    fn netns(&self, id: &WorkloadId) -> Netns {
        Netns::new(format!("zgn-{id}"), id.as_str(), &self.ip)
    }

    /// The namespace of container `id`.
    fn container_netns(&self, id: &WorkloadId) -> Netns {
        Netns::new(format!("zgc-{id}"), id.as_str(), &self.ip)
    }

    /// Make network resource `id` of `owner_key` real or bring it up to date in place: the
    /// namespace, bridge and WireGuard device are kept, and only peers that changed are touched,
    /// so traffic between unchanged peers goes on. Returns the result data (port, public key).
    pub async fn provision(
        &self,
        id: &WorkloadId,
        owner_key: &PublicKey,
        nr: &NetworkResource,
    ) -> Result<serde_json::Value, ProvisionError> {
        let private = self.private_key(nr)?;
        let peers = peer_configs(nr)?;
        let mut record = match self.read(id).map_err(transient)? {
            Some(r) if r.subnet != nr.iprange => {
                return Err(ProvisionError::Permanent(format!(
                    "this node's subnet of the network cannot change from {} to {}; remove the node from the network and add it again",
                    r.subnet, nr.iprange
                )));
            }
            Some(r) => r,
            None => Record {
                id: id.clone(),
                owner_key: *owner_key,
                name: nr.name.clone(),
                network: nr.network_iprange,
                subnet: nr.iprange,
                port: 0,
                removing: false,
                uplink: None,
            },
        };
        record.network = nr.network_iprange;
        record.removing = false;
        self.write(&record).map_err(transient)?;

        let ns = self.netns(id);
        ns.ensure(true).await.map_err(transient)?;
        if !ns.has_link(BRIDGE).await.map_err(transient)? {
            ns.ip(&["link", "add", BRIDGE, "type", "bridge"]).await.map_err(transient)?;
        }
        let gateway = format!("{}/{}", gateway(nr.iprange), nr.iprange.prefix_len());
        ns.ip(&["addr", "replace", &gateway, "dev", BRIDGE]).await.map_err(transient)?;
        ns.ip(&["link", "set", BRIDGE, "mtu", MTU, "up"]).await.map_err(transient)?;

        let tunnel = self.tunnel(id, &ns, &private).await?;
        let want = if nr.wireguard_listen_port != 0 { nr.wireguard_listen_port } else { record.port };
        let port = self.bind(&tunnel, want, nr.wireguard_listen_port != 0, id).await?;
        blocking(&tunnel, move |t| t.set_peers(peers)).await?;
        ns.ip(&["route", "replace", &nr.network_iprange.to_string(), "dev", WG]).await.map_err(transient)?;
        record.port = port;
        self.write(&record).map_err(transient)?;
        self.egress(&ns, &mut record, nr.egress).await?;
        Ok(serde_json::json!({ "listen_port": port, "public_key": nr.wireguard_public_key, "egress": nr.egress }))
    }

    /// Give the network an uplink (`wanted`) or take it away.
    async fn egress(&self, ns: &Netns, record: &mut Record, wanted: bool) -> Result<(), ProvisionError> {
        let outside = host_name("zu", &record.id);
        if !wanted {
            if record.uplink.take().is_some() {
                egress::disable(ns, &outside).await.map_err(transient)?;
                self.write(record).map_err(transient)?;
                self.forget_unused_rules().await.map_err(transient)?;
            }
            return Ok(());
        }
        let nft = self.nft.as_ref().ok_or_else(|| {
            ProvisionError::Permanent(
                "egress needs nftables on this node (apt-get install nftables); deploy the network without egress or on another node".into(),
            )
        })?;
        if record.uplink.is_none() {
            let taken: Vec<u16> = self.records().map_err(transient)?.iter().filter_map(|r| r.uplink).collect();
            let free = (1..=egress::MAX_UPLINKS).find(|i| !taken.contains(i));
            record.uplink = Some(free.ok_or_else(|| transient("every uplink address of this node is in use"))?);
            self.write(record).map_err(transient)?;
        }
        let index = record.uplink.expect("set above");
        egress::enable(ns, &outside, index, nft, &self.dir).await.map_err(transient)
    }

    /// Remove the node's egress rules once no network has an uplink.
    async fn forget_unused_rules(&self) -> Result<(), RuntimeError> {
        if let Some(nft) = &self.nft
            && self.records()?.iter().all(|r| r.uplink.is_none())
        {
            egress::forget_node_rules(nft).await;
        }
        Ok(())
    }

    /// The device of `id`, created and moved into `ns` if this process has none yet (first
    /// provisioning, or the agent restarted), or with `private` set as its key.
    async fn tunnel(
        &self,
        id: &WorkloadId,
        ns: &Netns,
        private: &[u8; 32],
    ) -> Result<Arc<Mutex<Tunnel>>, ProvisionError> {
        let live = self.tunnels.lock().expect("lock").get(id).cloned();
        if let Some(tunnel) = live {
            if ns.has_link(WG).await.map_err(transient)? {
                let key = *private;
                blocking(&tunnel, move |t| t.set_key(&key)).await?;
                return Ok(tunnel);
            }
            // The namespace was remade underneath the device: start over.
            self.tunnels.lock().expect("lock").remove(id);
        }
        if ns.has_link(WG).await.map_err(transient)? {
            ns.ip(&["link", "delete", WG]).await.map_err(transient)?;
        }
        let name = host_name("zw", id);
        let (key, create_name, backend, ip) = (*private, name.clone(), self.backend.clone(), self.ip.clone());
        // Created on a blocking thread of the agent's namespace: the UDP socket stays here.
        let mut tunnel = tokio::task::spawn_blocking(move || Tunnel::create(&backend, &ip, &create_name, &key))
            .await
            .map_err(transient)?
            .map_err(transient)?;
        ns.host(&["link", "set", &name, "netns", ns.name()]).await.map_err(transient)?;
        ns.ip(&["link", "set", &name, "name", WG]).await.map_err(transient)?;
        tunnel.moved(&ns.path(), WG).map_err(transient)?;
        ns.ip(&["link", "set", WG, "mtu", MTU, "up"]).await.map_err(transient)?;
        let tunnel = Arc::new(Mutex::new(tunnel));
        self.tunnels.lock().expect("lock").insert(id.clone(), tunnel.clone());
        Ok(tunnel)
    }

    /// Bind `want` (the recorded or requested port) or, when 0, the first free port of the
    /// range that no other network resource of this node holds. Binding is the test: the
    /// node sees collisions the client cannot.
    async fn bind(
        &self,
        tunnel: &Arc<Mutex<Tunnel>>,
        want: u16,
        requested: bool,
        id: &WorkloadId,
    ) -> Result<u16, ProvisionError> {
        let current = tunnel.lock().expect("lock").port();
        if want != 0 {
            if current == want || blocking(tunnel, move |t| t.listen(want)).await? {
                return Ok(want);
            }
            let message = format!("UDP port {want} is in use on this node");
            return Err(if requested {
                ProvisionError::Permanent(format!(
                    "{message}; leave wireguard_listen_port at 0 and the node picks a free one"
                ))
            } else {
                ProvisionError::Transient(format!("{message} (taken by another program since this network bound it)"))
            });
        }
        let taken: Vec<u16> =
            self.records().map_err(transient)?.iter().filter(|r| r.id != *id).map(|r| r.port).collect();
        for port in self.ports.clone().filter(|p| !taken.contains(p)) {
            if blocking(tunnel, move |t| t.listen(port)).await? {
                return Ok(port);
            }
        }
        Err(ProvisionError::Permanent(format!(
            "no free UDP port in {}-{} for WireGuard on this node",
            self.ports.start(),
            self.ports.end()
        )))
    }

    /// The WireGuard private key sealed to this node, checked against the public key.
    fn private_key(&self, nr: &NetworkResource) -> Result<[u8; 32], ProvisionError> {
        let refuse = |m: &str| ProvisionError::Permanent(format!("wireguard_private_key_encrypted: {m}"));
        let sealed = zgrid_types::sealed::sealed_key_bytes(&nr.wireguard_private_key_encrypted)
            .map_err(|e| refuse(&e.to_string()))?;
        let open = self.key.unseal(&sealed).map_err(|e| refuse(&e.to_string()))?;
        let private: [u8; 32] = open.try_into().map_err(|_| refuse("is not a 32-byte key"))?;
        let public = base64::engine::general_purpose::STANDARD
            .decode(&nr.wireguard_public_key)
            .map_err(|_| refuse("wireguard_public_key is not base64"))?;
        if zgrid_types::sealed::wireguard_public(&private).as_slice() != public.as_slice() {
            return Err(refuse("does not belong to wireguard_public_key"));
        }
        Ok(private)
    }

    /// Remove everything of network resource `id`; nothing to do when nothing is there.
    pub async fn remove(&self, id: &WorkloadId) -> Result<(), RuntimeError> {
        if let Some(mut record) = self.read(id)? {
            record.removing = true;
            self.write(&record)?;
        }
        let tunnel = self.tunnels.lock().expect("lock").remove(id);
        drop(tunnel);
        self.netns(id).delete().await?;
        let path = self.path(id);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(RuntimeError::host_io("remove", path, e)),
            _ => {}
        }
        self.forget_unused_rules().await
    }

    /// Which WireGuard the node's networks use, as its log and directory entry say: `kernel`,
    /// or `userspace: <why not the kernel's>`.
    pub fn wireguard(&self) -> String {
        self.backend.describe()
    }

    /// Whether `id` is a network resource of this node.
    pub fn has(&self, id: &WorkloadId) -> bool {
        self.path(id).exists()
    }

    /// Whether network resource `id` is up: its namespace and its device in this process.
    pub fn is_up(&self, id: &WorkloadId) -> bool {
        self.netns(id).exists() && self.tunnels.lock().expect("lock").contains_key(id)
    }

    /// Ids of the network resources with a record.
    pub fn list(&self) -> Result<Vec<WorkloadId>, RuntimeError> {
        Ok(self.records()?.into_iter().map(|r| r.id).collect())
    }

    /// Attach container `id` to `owner_key`'s network `name` with address `ip`: a namespace
    /// (inside the container's user namespace pinned at `userns`, if it has one) with `eth0` on
    /// the network's bridge and a default route through the gateway. Returns the namespace for
    /// the container to join. Idempotent.
    pub async fn attach(
        &self,
        id: &WorkloadId,
        userns: Option<&Path>,
        owner_key: &PublicKey,
        name: &str,
        ip: Ipv4Addr,
    ) -> Result<PathBuf, ProvisionError> {
        let (record, network) = self.member(owner_key, name, ip)?;
        let inside = self.container_netns(id);
        match userns {
            Some(userns) => inside.ensure_in(userns, &self.helpers).await,
            None => inside.ensure(false).await,
        }
        .map_err(transient)?;
        inside.allow_ping().await.map_err(transient)?;
        let outside = veth_name(id);
        if !inside.has_link(ETH).await.map_err(transient)? {
            if network.has_link(&outside).await.map_err(transient)? {
                network.ip(&["link", "delete", &outside]).await.map_err(transient)?;
            }
            network
                .ip(&[
                    "link",
                    "add",
                    &outside,
                    "mtu",
                    MTU,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    ETH,
                    "mtu",
                    MTU,
                    "netns",
                    inside.name(),
                ])
                .await
                .map_err(transient)?;
        }
        network.ip(&["link", "set", &outside, "master", BRIDGE, "up"]).await.map_err(transient)?;
        let address = format!("{ip}/{}", record.subnet.prefix_len());
        inside.ip(&["addr", "replace", &address, "dev", ETH]).await.map_err(transient)?;
        inside.ip(&["link", "set", ETH, "up"]).await.map_err(transient)?;
        inside
            .ip(&["route", "replace", "default", "via", &gateway(record.subnet).to_string()])
            .await
            .map_err(transient)?;
        Ok(inside.path())
    }

    /// The record and namespace of `owner_key`'s network `name` on this node, once `ip` is
    /// known to be a host address of it.
    fn member(&self, owner_key: &PublicKey, name: &str, ip: Ipv4Addr) -> Result<(Record, Netns), ProvisionError> {
        let records = self.records().map_err(transient)?;
        let record = records
            .into_iter()
            .find(|r| r.owner_key == *owner_key && r.name == name && !r.removing)
            .ok_or_else(|| ProvisionError::Transient(format!("network {name:?} is not on this node yet")))?;
        check_host_ip(ip, record.subnet).map_err(ProvisionError::Permanent)?;
        let network = self.netns(&record.id);
        if !network.exists() {
            return Err(ProvisionError::Transient(format!("network {name:?} is not up on this node yet")));
        }
        Ok((record, network))
    }

    /// Put a tap for VM `id` on `owner_key`'s network `name`, where it will have address `ip`:
    /// a persistent tap device on the network's bridge, for qemu to open from the network's
    /// namespace. Returns the tap and the guest's address settings. Idempotent.
    pub async fn attach_tap(
        &self,
        id: &WorkloadId,
        owner_key: &PublicKey,
        name: &str,
        ip: Ipv4Addr,
    ) -> Result<Tap, ProvisionError> {
        let (record, network) = self.member(owner_key, name, ip)?;
        let tap = tap_name(id);
        if !network.has_link(&tap).await.map_err(transient)? {
            network.ip(&["tuntap", "add", "dev", &tap, "mode", "tap"]).await.map_err(transient)?;
        }
        network.ip(&["link", "set", &tap, "mtu", MTU, "master", BRIDGE, "up"]).await.map_err(transient)?;
        Ok(Tap {
            netns: network.name().to_owned(),
            tap,
            address: Ipv4Net::new(ip, record.subnet.prefix_len())
                .map_err(|e| ProvisionError::Permanent(e.to_string()))?,
            gateway: gateway(record.subnet),
        })
    }

    /// Remove VM `id`'s tap from whichever network has it, if any.
    pub async fn detach_tap(&self, id: &WorkloadId) -> Result<(), RuntimeError> {
        let tap = tap_name(id);
        for record in self.records()? {
            let network = self.netns(&record.id);
            if network.exists() && network.has_link(&tap).await? {
                network.ip(&["link", "delete", &tap]).await?;
            }
        }
        Ok(())
    }

    /// Where containers get addresses reaching `reach` from and the `nft` program that closes
    /// them, or why this node gives none (checked before a container's first side effect).
    pub fn outside_or_why(&self, reach: Reach) -> Result<(&OutsideIpv6, &Path), ProvisionError> {
        match (self.outside(reach), &self.nft) {
            (Some(outside), Some(nft)) => Ok((outside, nft)),
            _ => Err(ProvisionError::Permanent(match reach {
                Reach::PublicIpv6 => "this node has no public IPv6 addresses to give: deploy on one that has (find them with `zgrid nodes --public-ipv6`)",
                Reach::Yggdrasil => "this node runs no Yggdrasil: deploy on one that does (find them with `zgrid nodes --yggdrasil`)",
            }
            .into())),
        }
    }

    /// Give container `id`, attached to its network ([`Self::attach`]), its address reaching
    /// `reach`, closed from outside but for `open`. Idempotent.
    pub async fn attach_outside(&self, id: &WorkloadId, reach: Reach, open: &[OpenPort]) -> Result<(), ProvisionError> {
        let (outside, nft) = self.outside_or_why(reach)?;
        outside.attach(id, &self.container_netns(id), open, nft, &self.dir).await.map_err(transient)
    }

    /// Remove container `id`'s namespace (and with it its veth pairs) and its outside
    /// addresses' rules, if any.
    pub async fn detach(&self, id: &WorkloadId) -> Result<(), RuntimeError> {
        self.container_netns(id).delete().await?;
        for reach in [Reach::PublicIpv6, Reach::Yggdrasil] {
            if let Ok((outside, nft)) = self.outside_or_why(reach) {
                outside.detach(id, &self.ip, nft).await;
            }
        }
        Ok(())
    }

    fn path(&self, id: &WorkloadId) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    fn read(&self, id: &WorkloadId) -> Result<Option<Record>, RuntimeError> {
        read_record(&self.path(id))
    }

    fn records(&self) -> Result<Vec<Record>, RuntimeError> {
        let entries = std::fs::read_dir(&self.dir).map_err(|e| RuntimeError::host_io("read", &self.dir, e))?;
        let mut out = Vec::new();
        for entry in entries.flatten() {
            if entry.path().extension().is_some_and(|e| e == "json") {
                out.extend(read_record(&entry.path())?);
            }
        }
        Ok(out)
    }

    fn write(&self, record: &Record) -> Result<(), RuntimeError> {
        let path = self.path(&record.id);
        let text = serde_json::to_vec_pretty(record).expect("records serialize");
        crate::store::write_durably(&path, &text).map_err(|e| RuntimeError::host_io("write", path, e))
    }
}

fn read_record(path: &Path) -> Result<Option<Record>, RuntimeError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| RuntimeError::host_io("parse", path, std::io::Error::other(e))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(RuntimeError::host_io("read", path, e)),
    }
}

/// Run `f` on the tunnel on a blocking thread (the device is configured over a socket).
async fn blocking<T: Send + 'static>(
    tunnel: &Arc<Mutex<Tunnel>>,
    f: impl FnOnce(&mut Tunnel) -> Result<T, wireguard::TunnelError> + Send + 'static,
) -> Result<T, ProvisionError> {
    let tunnel = tunnel.clone();
    tokio::task::spawn_blocking(move || f(&mut tunnel.lock().expect("lock")))
        .await
        .map_err(transient)?
        .map_err(transient)
}

/// The peers of `nr` as the device takes them: each routes its /24 and its extra prefixes.
fn peer_configs(nr: &NetworkResource) -> Result<BTreeMap<[u8; 32], PeerConfig>, ProvisionError> {
    let mut out = BTreeMap::new();
    for (i, peer) in nr.peers.iter().enumerate() {
        let bad = |m: String| ProvisionError::Permanent(format!("peers[{i}]: {m}"));
        let key: [u8; 32] = base64::engine::general_purpose::STANDARD
            .decode(&peer.public_key)
            .ok()
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| bad("public_key is not a base64 key of 32 bytes".into()))?;
        let endpoint = match peer.endpoint.as_str() {
            "" => None,
            text => Some(text.parse().map_err(|_| bad(format!("endpoint {text:?} is not ip:port")))?),
        };
        let mut allowed = vec![IpNet::V4(peer.iprange)];
        allowed.extend(peer.allowed_iprange.iter().filter(|p| **p != IpNet::V4(peer.iprange)).copied());
        out.insert(key, PeerConfig { endpoint, allowed });
    }
    Ok(out)
}

/// The gateway of a node's subnet: its `.1`.
fn gateway(subnet: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.network()) + 1)
}

/// The name of an interface of network resource `id` in the agent's namespace: a two-letter
/// `prefix` (`zw` for the WireGuard device before it moves, `zu` for the uplink) and the id's
/// 64 bits in base32, unique on the node and within the 15 characters Linux allows.
fn host_name(prefix: &str, id: &WorkloadId) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let bits = u64::from_str_radix(id.as_str(), 16).unwrap_or_default();
    let mut name = String::from(prefix);
    for i in (0..13).rev() {
        name.push(char::from(ALPHABET[((bits >> (i * 5)) & 31) as usize]));
    }
    name
}

/// A VM's tap on a network, and the address settings its guest takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tap {
    /// The network's namespace (`ip netns` name).
    pub netns: String,
    /// The tap device, in that namespace.
    pub tap: String,
    /// The guest's address with the network's prefix length, e.g. `10.1.3.5/24`.
    pub address: Ipv4Net,
    /// The guest's default gateway (the network's `.1` on this node).
    pub gateway: Ipv4Addr,
}

/// VM `id`'s tap, in the network's namespace.
fn tap_name(id: &WorkloadId) -> String {
    format!("t{}", &id.as_str()[..14])
}

/// Time limit of one `nft` run.
const NFT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// Load nftables `rules` in the agent's namespace through `file`, removed afterwards.
async fn load_rules(label: &str, nft: &Path, file: &Path, rules: &str) -> Result<(), RuntimeError> {
    std::fs::write(file, rules).map_err(|e| RuntimeError::host_io("write", file, e))?;
    let loaded =
        crate::runtime::command::Cmd::new(label, nft, [std::ffi::OsStr::new("-f"), file.as_os_str()], NFT_TIMEOUT)
            .run()
            .await;
    let _ = std::fs::remove_file(file);
    loaded.map(drop)
}

/// Set `key` (a file under `/proc/sys`) to `value` in the agent's namespace.
fn sysctl(key: &str, value: &str) -> Result<(), RuntimeError> {
    std::fs::write(key, value).map_err(|e| RuntimeError::host_io("write", key, e))
}

/// The outside end of container `id`'s veth pair, in the network's namespace.
fn veth_name(id: &WorkloadId) -> String {
    format!("v{}", &id.as_str()[..14])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_fit_linux_and_differ_per_workload() {
        let a: WorkloadId = "00000000000000ff".parse().unwrap();
        let b: WorkloadId = "ff00000000000000".parse().unwrap();
        for id in [&a, &b] {
            assert!(host_name("zw", id).len() <= 15 && veth_name(id).len() <= 15 && tap_name(id).len() <= 15);
        }
        assert_ne!(host_name("zw", &a), host_name("zw", &b));
        assert_eq!(gateway("10.20.3.0/24".parse().unwrap()), Ipv4Addr::new(10, 20, 3, 1));
    }
}
