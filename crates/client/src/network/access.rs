//! Access points: a machine outside the grid (a deployer's laptop) that joins the network over
//! WireGuard through one public member, with a config file for `wg-quick`.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;

use base64::Engine;
use ipnet::Ipv4Net;
use zgrid_types::NodeId;

use super::{AccessPoint, Member, Network, NetworkError};

/// An access point's WireGuard private key. It goes only into the access point's config: its
/// `Debug` form does not show it.
pub struct AccessKey([u8; 32]);

impl fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessKey(<secret>)")
    }
}

impl AccessPoint {
    /// A new access point with subnet `subnet` that reaches the network through `node_id`, and
    /// its fresh private key.
    pub fn generate(node_id: NodeId, subnet: Ipv4Net) -> (Self, AccessKey) {
        let (private, public) = zgrid_types::sealed::wireguard_keypair();
        let public_key = base64::engine::general_purpose::STANDARD.encode(public);
        (Self { node_id, subnet, public_key }, AccessKey(private))
    }
}

/// Longest interface name Linux accepts, which `wg-quick` takes from the file name.
const MAX_INTERFACE: usize = 15;

/// Check that `wg-quick up <path>` accepts the file: its name is an interface name of at most
/// 15 letters, digits or `_=+.-`, followed by `.conf`.
pub fn check_wg_quick_file(path: &Path) -> Result<(), NetworkError> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let interface = name.strip_suffix(".conf").unwrap_or_default();
    let ok = !interface.is_empty()
        && interface.len() <= MAX_INTERFACE
        && interface.chars().all(|c| c.is_ascii_alphanumeric() || "_=+.-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(NetworkError::BadFileName(format!(
            "{name:?} cannot be used with wg-quick, which names the interface after the file: use a name of 1 to \
             {MAX_INTERFACE} letters, digits or _=+.- followed by .conf, such as wg-net.conf"
        )))
    }
}

impl Network {
    /// The member on `node` as an access node, with the endpoint access points connect to: it
    /// must be public and have reported its port.
    fn access_node(&self, node: &NodeId) -> Result<(&Member, SocketAddr), NetworkError> {
        let member = self.member(node)?;
        if !member.is_public() {
            return Err(NetworkError::HiddenAccessNode(node.to_string()));
        }
        let endpoint = member.endpoint().ok_or(NetworkError::PortUnknown(node.to_string()))?;
        Ok((member, endpoint))
    }

    /// Add an access point; its node must be a usable access node and its subnet free.
    pub fn add_access_point(&mut self, access: AccessPoint) -> Result<(), NetworkError> {
        self.access_node(&access.node_id)?;
        super::check_subnet(self.cidr, access.subnet, &self.used_subnets())?;
        self.access_points.push(access);
        self.access_points.sort_by_key(|a| a.subnet);
        Ok(())
    }

    /// Take out the access point whose subnet or WireGuard public key is `which`; the members'
    /// resources then no longer list its key ([`Network::pending_update`]).
    pub fn remove_access_point(&mut self, which: &str) -> Result<AccessPoint, NetworkError> {
        let subnet = which.parse::<Ipv4Net>().ok();
        let found = self.access_points.iter().position(|a| Some(a.subnet) == subnet || a.public_key == which);
        let Some(index) = found else {
            let known: Vec<String> =
                self.access_points.iter().map(|a| format!("{} (key {})", a.subnet, a.public_key)).collect();
            return Err(NetworkError::NoAccessPoint { network: self.name.clone(), which: which.to_owned(), known });
        };
        Ok(self.access_points.remove(index))
    }

    /// The `wg-quick` config of `access`: its key and the first address of its subnet, and its
    /// access node as the one peer, through which the whole network is routed.
    pub fn wg_quick_config(&self, access: &AccessPoint, key: &AccessKey) -> Result<String, NetworkError> {
        let (node, endpoint) = self.access_node(&access.node_id)?;
        let address = Ipv4Addr::from(u32::from(access.subnet.network()) + 1);
        let private = base64::engine::general_purpose::STANDARD.encode(key.0);
        Ok(format!(
            "[Interface]\nPrivateKey = {private}\nAddress = {address}/{}\n\n[Peer]\nPublicKey = {}\nAllowedIPs = {}\n\
             Endpoint = {endpoint}\nPersistentKeepalive = 25\n",
            access.subnet.prefix_len(),
            node.public_key,
            self.cidr,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn the_config_routes_the_network_through_the_access_node() {
        let mut network = planned(&[(1, Some("1.1.1.1"), Some(7001)), (2, None, None)]);
        let (access, key) = AccessPoint::generate(node(1), net("10.20.3.0/24"));
        network.add_access_point(access.clone()).unwrap();
        let config = network.wg_quick_config(&access, &key).unwrap();
        let private = base64::engine::general_purpose::STANDARD.encode(key.0);
        let node_key = &network.members()[0].public_key;
        assert_eq!(
            config,
            format!(
                "[Interface]\nPrivateKey = {private}\nAddress = 10.20.3.1/24\n\n[Peer]\nPublicKey = {node_key}\n\
                 AllowedIPs = 10.20.0.0/16\nEndpoint = 1.1.1.1:7001\nPersistentKeepalive = 25\n"
            )
        );
        let public = base64::engine::general_purpose::STANDARD.encode(zgrid_types::sealed::wireguard_public(&key.0));
        assert_eq!(access.public_key, public);
        assert!(!format!("{key:?}").contains(&private), "Debug hides the key");
    }

    #[test]
    fn access_nodes_must_be_reachable() {
        let mut network = planned(&[(1, Some("1.1.1.1"), None), (2, None, None)]);
        let (hidden, _) = AccessPoint::generate(node(2), net("10.20.3.0/24"));
        assert!(matches!(network.add_access_point(hidden), Err(NetworkError::HiddenAccessNode(_))));
        let (no_port, _) = AccessPoint::generate(node(1), net("10.20.3.0/24"));
        assert!(matches!(network.add_access_point(no_port), Err(NetworkError::PortUnknown(_))));
        network.members[0].listen_port = Some(7001);
        let (taken, _) = AccessPoint::generate(node(1), net("10.20.2.0/24"));
        assert!(matches!(network.add_access_point(taken), Err(NetworkError::SubnetTaken { .. })));
    }

    #[test]
    fn access_points_are_removed_by_subnet_or_key_and_leave_every_peer_list() {
        let mut network = planned(&[(1, Some("1.1.1.1"), Some(7001)), (2, Some("1.1.1.2"), Some(7002))]);
        let (kept, _) = AccessPoint::generate(node(1), net("10.20.3.0/24"));
        let (gone, _) = AccessPoint::generate(node(1), net("10.20.4.0/24"));
        network.add_access_point(kept.clone()).unwrap();
        network.add_access_point(gone.clone()).unwrap();
        let err = network.remove_access_point("10.20.9.0/24").unwrap_err();
        assert!(err.to_string().contains("10.20.3.0/24") && err.to_string().contains("10.20.4.0/24"), "{err}");
        assert_eq!(network.remove_access_point("10.20.4.0/24").unwrap(), gone);
        assert!(network.remove_access_point(&gone.public_key).is_err(), "already gone");
        for n in [1, 2] {
            let peers = network.peers_for(&node(n)).unwrap();
            assert!(peers.iter().all(|p| p.public_key != gone.public_key && p.iprange != gone.subnet), "node {n}");
            let routed = peers.iter().flat_map(|p| &p.allowed_iprange);
            assert!(routed.clone().all(|r| *r != gone.subnet.into()), "node {n} still routes it");
        }
        assert!(network.peers_for(&node(1)).unwrap().iter().any(|p| p.public_key == kept.public_key));
        assert_eq!(network.remove_access_point(&kept.public_key).unwrap(), kept);
        assert!(network.access_points().is_empty());
    }

    #[test]
    fn wg_quick_file_names_are_interface_names() {
        for ok in ["web.conf", "/tmp/x/wg-net_1.conf", "fifteen-chars-x.conf"] {
            assert!(check_wg_quick_file(Path::new(ok)).is_ok(), "{ok}");
        }
        for bad in ["web", "web.cfg", ".conf", "sixteen-chars-xx.conf", "a b.conf", "/tmp/"] {
            assert!(check_wg_quick_file(Path::new(bad)).is_err(), "{bad}");
        }
    }
}
