//! Why a network could not be read, planned or changed: each error names the node, subnet or
//! address involved and what would be accepted.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use zgrid_types::{NodeId, WorkloadId};

use crate::ClientError;

/// Why a network could not be read, planned or changed as asked.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// The explorer could not be asked.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The network's range is not a /16.
    #[error("{0} is not a /16 network address such as 10.20.0.0/16")]
    NotSlash16(Ipv4Net),
    /// Two members name different ranges (the explorer refuses this; the ledger is damaged).
    #[error("the members of network {network} disagree on its range: {first} and {second}")]
    MixedRanges {
        /// The network.
        network: String,
        /// One range.
        first: Ipv4Net,
        /// Another.
        second: Ipv4Net,
    },
    /// The node is not a member.
    #[error("node {node} is not a member of network {network}")]
    NotMember {
        /// The network.
        network: String,
        /// The node's id.
        node: String,
    },
    /// The node is a member already.
    #[error("node {node} is already a member of network {network}")]
    AlreadyMember {
        /// The network.
        network: String,
        /// The node's id.
        node: String,
    },
    /// A subnet that is not a /24 network address.
    #[error("{subnet} is not a /24 network address such as {example}")]
    NotSlash24 {
        /// What was given.
        subnet: Ipv4Net,
        /// A /24 of the network.
        example: Ipv4Net,
    },
    /// A subnet outside the network.
    #[error("{subnet} is outside the network {network}")]
    OutsideNetwork {
        /// What was given.
        subnet: Ipv4Net,
        /// The network's /16.
        network: Ipv4Net,
    },
    /// A subnet used by a member or an access point.
    #[error("{subnet} is already used in the network: leave the subnet out to get a free one")]
    SubnetTaken {
        /// What was given.
        subnet: Ipv4Net,
    },
    /// No /24 left.
    #[error("every /24 of {0} is in use")]
    Full(Ipv4Net),
    /// A public member below the relay would take its place and change live routes.
    #[error(
        "{subnet} is below {relay}, the relay's subnet; a public node there would become the relay of the hidden \
         members and change their routes: choose a subnet above {relay} or leave it out"
    )]
    BelowRelay {
        /// What was given.
        subnet: Ipv4Net,
        /// The relay's subnet.
        relay: Ipv4Net,
    },
    /// Hidden members that cannot reach each other.
    #[error(
        "network {network} has no member with a public endpoint, so its hidden members ({}) cannot reach each \
         other: add a node that has a public endpoint first",
        list(hidden)
    )]
    NoPublicMember {
        /// The network.
        network: String,
        /// Its members, all hidden.
        hidden: Vec<NodeId>,
    },
    /// An address a workload may not have.
    #[error("{0}")]
    BadIp(String),
    /// An address another workload has.
    #[error("{ip} is already used by workload {by}")]
    IpTaken {
        /// The address.
        ip: Ipv4Addr,
        /// The workload using it.
        by: WorkloadId,
    },
    /// A full /24.
    #[error("every address of {subnet} on node {node} is in use")]
    NoFreeIp {
        /// The node's subnet.
        subnet: Ipv4Net,
        /// The node's id.
        node: String,
    },
    /// An access point needs a node it can reach.
    #[error("node {0} has no public endpoint, so an access point cannot reach it: choose a member that has one")]
    HiddenAccessNode(String),
    /// The node has not said which port it listens on.
    #[error("node {0} has not reported its WireGuard port yet: wait until its network resource is ok and retry")]
    PortUnknown(String),
    /// No access point has that subnet or key.
    #[error(
        "network {network} has no access point {which}: name one by its subnet or public key ({})",
        if known.is_empty() { "it has none".to_owned() } else { format!("it has {}", known.join(", ")) }
    )]
    NoAccessPoint {
        /// The network.
        network: String,
        /// What was asked for.
        which: String,
        /// The access points it has, for the message.
        known: Vec<String>,
    },
    /// A wg-quick file name wg-quick would refuse.
    #[error("{0}")]
    BadFileName(String),
}

fn list(nodes: &[NodeId]) -> String {
    nodes.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}
