//! The explorer's directory: users, farms and nodes, as registered and as listed.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::{FarmId, NodeId, UserId};
use crate::invitation::FarmInvitation;
use crate::keys::PublicKey;
use crate::signing::Signed;
use crate::validate::{Valid, check_name, check_text, ensure};

/// A request to register a user; it must be signed by `public_key` itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserRegistration {
    /// Unique name: lowercase letters, digits, `-`, `_`.
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]{0,63}$")]
    pub name: String,
    /// Contact address.
    #[serde(default)]
    pub email: String,
    /// The user's ed25519 key.
    pub public_key: PublicKey,
}

impl UserRegistration {
    /// Check the fields.
    pub fn validate(&self) -> Valid {
        check_name(&self.name, "name")?;
        if !self.email.is_empty() {
            let ok = self.email.len() <= 254
                && self.email.split_once('@').is_some_and(|(a, b)| !a.is_empty() && !b.is_empty())
                && !self.email.chars().any(char::is_whitespace);
            ensure(ok, "email", || format!("{:?} is not an email address", self.email))?;
        }
        Ok(())
    }
}

/// A registered user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct User {
    /// Id assigned by the explorer.
    pub id: UserId,
    /// Unique name.
    pub name: String,
    /// Contact address.
    pub email: String,
    /// The key that signs this user's workloads and requests.
    pub public_key: PublicKey,
    /// Unix time of registration.
    pub created_at: i64,
}

/// A public IPv4 address a farm offers, with its gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FarmIp {
    /// Address with prefix, e.g. `185.69.166.10/24`.
    #[schema(value_type = String, format = "ipv4-network")]
    pub address: Ipv4Net,
    /// Gateway for that address.
    #[schema(value_type = String, format = Ipv4)]
    pub gateway: Ipv4Addr,
}

/// A request to create a farm owned by the signing user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FarmRegistration {
    /// Unique name: lowercase letters, digits, `-`, `_`.
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]{0,63}$")]
    pub name: String,
    /// Public IPv4 addresses the farm can hand to workloads.
    #[serde(default)]
    pub public_ips: Vec<FarmIp>,
}

impl FarmRegistration {
    /// Check the fields.
    pub fn validate(&self) -> Valid {
        check_name(&self.name, "name")?;
        for (i, ip) in self.public_ips.iter().enumerate() {
            ensure(ip.address.contains(&ip.gateway), &format!("public_ips[{i}].gateway"), || {
                format!("{} is not inside {}", ip.gateway, ip.address)
            })?;
            ensure(ip.address.addr() != ip.gateway, &format!("public_ips[{i}].address"), || {
                "is the gateway itself".into()
            })?;
        }
        Ok(())
    }
}

/// A farm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Farm {
    /// Id assigned by the explorer.
    pub id: FarmId,
    /// The user who owns it.
    pub owner: UserId,
    /// Unique name.
    pub name: String,
    /// Public IPv4 addresses.
    pub public_ips: Vec<FarmIp>,
    /// Unix time of creation.
    pub created_at: i64,
}

/// Resource units: CPU cores, memory, SSD and HDD storage (MiB). Named `NodeCapacity` in the
/// OpenAPI document, apart from a container's [`crate::workload::ContainerCapacity`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NodeCapacity)]
pub struct Capacity {
    /// CPU cores.
    pub cru: u64,
    /// Memory, MiB.
    pub mru: u64,
    /// SSD storage, MiB.
    pub sru: u64,
    /// HDD storage, MiB.
    pub hru: u64,
}

impl Capacity {
    /// Check that every amount fits the explorer's 64-bit signed columns (and the schema's
    /// `int64`); `field` names the capacity in errors.
    pub fn validate(&self, field: &str) -> Valid {
        for (name, value) in [("cru", self.cru), ("mru", self.mru), ("sru", self.sru), ("hru", self.hru)] {
            ensure(i64::try_from(value).is_ok(), &format!("{field}.{name}"), || {
                format!("{value} is larger than {}", i64::MAX)
            })?;
        }
        Ok(())
    }

    /// Component-wise `self - other`, floored at zero.
    pub fn saturating_sub(self, other: Self) -> Self {
        Self {
            cru: self.cru.saturating_sub(other.cru),
            mru: self.mru.saturating_sub(other.mru),
            sru: self.sru.saturating_sub(other.sru),
            hru: self.hru.saturating_sub(other.hru),
        }
    }
}

/// Where a node is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Location {
    /// Country name or ISO code.
    #[serde(default)]
    pub country: String,
    /// City.
    #[serde(default)]
    pub city: String,
    /// Degrees north.
    #[serde(default)]
    pub latitude: Option<f64>,
    /// Degrees east.
    #[serde(default)]
    pub longitude: Option<f64>,
}

/// A node's registration, signed with the node's key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeRegistration {
    /// The farm the node belongs to.
    pub farm_id: FarmId,
    /// Host name.
    pub hostname: String,
    /// Total capacity.
    pub total: Capacity,
    /// Location.
    #[serde(default)]
    pub location: Location,
    /// Public address WireGuard peers can reach, if any.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = "ip-address")]
    pub public_endpoint: Option<IpAddr>,
    /// Where the node agent's API (workload logs) answers, e.g. `http://10.0.0.2:7780`.
    #[serde(default)]
    pub api_url: Option<String>,
    /// Agent version.
    #[serde(default)]
    pub version: String,
    /// The farm owner's consent ([`crate::invitation`]); needed to enter a farm or move to
    /// another one, not to refresh the registration in the node's own farm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub farm_invitation: Option<Signed<FarmInvitation>>,
}

impl NodeRegistration {
    /// Check the fields.
    pub fn validate(&self) -> Valid {
        ensure(!self.hostname.is_empty(), "hostname", || "is empty".into())?;
        self.total.validate("total")?;
        check_text(&self.hostname, 253, "hostname")?;
        check_text(&self.location.country, 64, "location.country")?;
        check_text(&self.location.city, 64, "location.city")?;
        check_text(&self.version, 64, "version")?;
        if let Some(api) = &self.api_url {
            check_text(api, 256, "api_url")?;
            let parsed = url::Url::parse(api).ok();
            let usable = parsed.is_some_and(|u| {
                matches!(u.scheme(), "http" | "https") && u.has_host() && u.query().is_none() && u.path() == "/"
            });
            ensure(usable, "api_url", || format!("{api:?} is not a base URL such as http://10.0.0.2:7780"))?;
        }
        if let Some(lat) = self.location.latitude {
            ensure((-90.0..=90.0).contains(&lat), "location.latitude", || format!("{lat} is not between -90 and 90"))?;
        }
        if let Some(lon) = self.location.longitude {
            ensure((-180.0..=180.0).contains(&lon), "location.longitude", || {
                format!("{lon} is not between -180 and 180")
            })?;
        }
        Ok(())
    }
}

/// Longest [`NodeHeartbeat::hypervisor`] or [`NodeHeartbeat::wireguard`], in bytes.
pub const MAX_HYPERVISOR: usize = 256;

/// A node's periodic report: what it has in use right now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeHeartbeat {
    /// Capacity in use.
    pub used: Capacity,
    /// Which hypervisor the node's VMs use, e.g. `kvm`, or `tcg: no usable KVM on this node,
    /// expect it to be slow`, or `none: <why VMs cannot run>`; absent when the node has not
    /// decided yet (or its version has no VMs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hypervisor: Option<String>,
    /// Which WireGuard the node's networks use: `kernel`, or `userspace: <why not the
    /// kernel's>`; absent from nodes whose version does not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard: Option<String>,
    /// The public IPv6 prefix the node gives containers addresses from (e.g.
    /// `2001:db8:1::/64`); absent when it has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = "ipv6-network", example = "2001:db8:1::/64")]
    pub public_ipv6: Option<ipnet::Ipv6Net>,
    /// The node's Yggdrasil subnet, which it gives containers addresses from (e.g.
    /// `300:224b:7b9c:93fb::/64`); absent when it runs no Yggdrasil.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = "ipv6-network", example = "300:224b:7b9c:93fb::/64")]
    pub yggdrasil: Option<ipnet::Ipv6Net>,
}

impl NodeHeartbeat {
    /// Check the fields.
    pub fn validate(&self) -> Valid {
        self.used.validate("used")?;
        for (text, field) in [(&self.hypervisor, "hypervisor"), (&self.wireguard, "wireguard")] {
            if let Some(text) = text {
                check_text(text, MAX_HYPERVISOR, field)?;
            }
        }
        Ok(())
    }
}

/// A node as the directory lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Node {
    /// Node id (its public key).
    pub node_id: NodeId,
    /// Its farm.
    pub farm_id: FarmId,
    /// Host name.
    pub hostname: String,
    /// Total capacity.
    pub total: Capacity,
    /// Capacity in use, as last reported.
    pub used: Capacity,
    /// Location.
    pub location: Location,
    /// Public address, if any.
    #[schema(value_type = Option<String>, format = "ip-address")]
    pub public_endpoint: Option<IpAddr>,
    /// Where the node agent's API answers, if it has one.
    #[serde(default)]
    pub api_url: Option<String>,
    /// Agent version.
    pub version: String,
    /// Which hypervisor the node's VMs use, as its latest heartbeat said
    /// ([`NodeHeartbeat::hypervisor`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hypervisor: Option<String>,
    /// Which WireGuard the node's networks use, as its latest heartbeat said
    /// ([`NodeHeartbeat::wireguard`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard: Option<String>,
    /// The public IPv6 prefix the node gives containers addresses from, as its latest
    /// heartbeat said ([`NodeHeartbeat::public_ipv6`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = "ipv6-network", example = "2001:db8:1::/64")]
    pub public_ipv6: Option<ipnet::Ipv6Net>,
    /// The node's Yggdrasil subnet, which it gives containers addresses from, as its latest
    /// heartbeat said ([`NodeHeartbeat::yggdrasil`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = "ipv6-network", example = "300:224b:7b9c:93fb::/64")]
    pub yggdrasil: Option<ipnet::Ipv6Net>,
    /// Unix time of first registration.
    pub created_at: i64,
    /// Unix time of the last registration or heartbeat.
    pub last_seen: i64,
    /// Whether the node reported recently enough to count as up.
    pub alive: bool,
}

impl Node {
    /// Capacity not in use.
    pub fn free(&self) -> Capacity {
        self.total.saturating_sub(self.used)
    }
}
