//! The workload model: what a deployer reserves on a node, signed by its owner.
//!
//! A [`WorkloadSpec`] carries the envelope every workload shares (id, version, owner, node,
//! expiry, description, metadata) and its typed [`WorkloadData`]. The owner signs the whole spec
//! (see [`crate::signing`]); nothing that changes what runs is left outside the signature, unlike
//! the seed system, which left logs, stats and the yggdrasil flag unsigned.

mod container;
mod kubernetes;
mod network;
mod probe;
mod schema;
mod vm;
mod volume;

pub use container::{
    Capacity as ContainerCapacity, Container, DiskType, FlistSource, LogEndpoint, MAX_CPU, MAX_ENV_ENTRY,
    MAX_ENVIRONMENT, MAX_OPEN_PORTS, MIN_DISK_MIB, MIN_MEMORY_MIB, NetworkConnection, OpenPort, Protocol, RedisLogs,
    RedisStats, StatsEndpoint, VolumeMount, flist_source, redis_channel,
};
pub use kubernetes::{Kubernetes, KubernetesSize};
pub use network::{NetworkResource, Peer, check_host_ip};
pub use probe::{
    MAX_PROBE_COMMAND, MAX_PROBE_PATH, MAX_PROBE_SECONDS, MAX_PROBE_THRESHOLD, MAX_PROBE_WORDS, Probe, ProbeAction,
    Probes,
};
pub use vm::{MAX_KERNEL_ARGS, MIN_VM_MEMORY_MIB, Vm, check_kernel_args, is_ssh_public_key};
pub use volume::Volume;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::{NodeId, UserId, WorkloadId};
use crate::keys::{KeyError, PublicKey};
use crate::signing::{Signable, Signed};
use crate::validate::{Valid, check_text, ensure};

/// Longest description, in bytes.
pub const MAX_DESCRIPTION: usize = 1024;
/// Longest metadata, in bytes (the seed system's limit).
pub const MAX_METADATA: usize = 1024;
/// Longest reservation, in seconds: a workload expires at most a year after it is signed in
/// (the seed system's reservations ran for a capacity pool's prepaid period, months at most).
/// Longer reservations are renewed with an update.
pub const MAX_RESERVATION_SECS: i64 = 365 * 86_400;

/// Everything the owner signs about one workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSpec {
    /// Id chosen by the client; stays the same across versions.
    pub id: WorkloadId,
    /// 1 for a new workload; each signed update raises it.
    pub version: u32,
    /// The user who owns and pays for the workload.
    pub owner: UserId,
    /// The owner's key. The signature must verify against it, so no one without that key (the
    /// explorer included) can make or change a workload in the owner's name, and a node can
    /// check a workload without trusting anyone's directory.
    pub owner_key: PublicKey,
    /// The node that runs it.
    pub node_id: NodeId,
    /// Unix time (seconds) after which the workload leaves the node.
    pub expires_at: i64,
    /// Free text for humans.
    #[serde(default)]
    pub description: String,
    /// Free text for tools.
    #[serde(default)]
    pub metadata: String,
    /// The typed part.
    pub data: WorkloadData,
}

impl Signable for WorkloadSpec {
    const DOMAIN: &'static str = "zgrid/workload/v1";
}

/// The kinds of workload and their fields. Its OpenAPI schema is written by hand (`schema.rs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WorkloadData {
    /// One node's share of a private network.
    NetworkResource(NetworkResource),
    /// A container started from an flist.
    Container(Container),
    /// A size-limited filesystem that outlives containers.
    Volume(Volume),
    /// A Kubernetes node in a VM.
    Kubernetes(Kubernetes),
    /// A virtual machine booted from an flist, on the owner's private network.
    Vm(Vm),
}

/// The kind of a workload, without its fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WorkloadKind {
    /// See [`WorkloadData::NetworkResource`].
    NetworkResource,
    /// See [`WorkloadData::Container`].
    Container,
    /// See [`WorkloadData::Volume`].
    Volume,
    /// See [`WorkloadData::Kubernetes`].
    Kubernetes,
    /// See [`WorkloadData::Vm`].
    Vm,
}

impl WorkloadKind {
    /// The snake_case name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NetworkResource => "network_resource",
            Self::Container => "container",
            Self::Volume => "volume",
            Self::Kubernetes => "kubernetes",
            Self::Vm => "vm",
        }
    }
}

impl std::fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for WorkloadKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        [Self::NetworkResource, Self::Container, Self::Volume, Self::Kubernetes, Self::Vm]
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                format!("unknown workload type {s:?}: use network_resource, container, volume, kubernetes or vm")
            })
    }
}

impl WorkloadData {
    /// Which kind this is.
    pub fn kind(&self) -> WorkloadKind {
        match self {
            Self::NetworkResource(_) => WorkloadKind::NetworkResource,
            Self::Container(_) => WorkloadKind::Container,
            Self::Volume(_) => WorkloadKind::Volume,
            Self::Kubernetes(_) => WorkloadKind::Kubernetes,
            Self::Vm(_) => WorkloadKind::Vm,
        }
    }

    /// The private network and address this workload joins, if any: `(network name, ip)`.
    pub fn network_attachment(&self) -> Option<(&str, std::net::Ipv4Addr)> {
        match self {
            Self::Container(c) => c.network_connection.first().map(|n| (n.network_id.as_str(), n.ipaddress)),
            Self::Kubernetes(k) => Some((k.network_id.as_str(), k.ipaddress)),
            Self::Vm(v) => Some((v.network_id.as_str(), v.ipaddress)),
            Self::NetworkResource(_) | Self::Volume(_) => None,
        }
    }

    /// The volumes this workload mounts (a container's or a VM's; none for other kinds).
    pub fn volume_mounts(&self) -> &[VolumeMount] {
        match self {
            Self::Container(c) => &c.volumes,
            Self::Vm(v) => &v.volumes,
            Self::NetworkResource(_) | Self::Volume(_) | Self::Kubernetes(_) => &[],
        }
    }

    fn validate(&self) -> Valid {
        match self {
            Self::NetworkResource(n) => n.validate(),
            Self::Container(c) => c.validate(),
            Self::Volume(v) => v.validate(),
            Self::Kubernetes(k) => k.validate(),
            Self::Vm(v) => v.validate(),
        }
    }
}

impl WorkloadSpec {
    /// Check every field that can be checked without knowing other workloads. `now` is the
    /// current Unix time in seconds; a spec that has already expired, or that expires more than
    /// [`MAX_RESERVATION_SECS`] from now, is refused.
    pub fn validate(&self, now: i64) -> Valid {
        ensure(self.expires_at > now, "expires_at", || {
            format!("{} is not in the future (now is {now})", self.expires_at)
        })?;
        ensure(self.expires_at <= now.saturating_add(MAX_RESERVATION_SECS), "expires_at", || {
            format!(
                "{} is more than {} days from now ({now}): reserve for at most {} days and extend later",
                self.expires_at,
                MAX_RESERVATION_SECS / 86_400,
                MAX_RESERVATION_SECS / 86_400
            )
        })?;
        self.validate_content()
    }

    /// Check every field but the expiry time: what a node checks again before it provisions
    /// (with this same code), whatever the explorer let through.
    pub fn validate_content(&self) -> Valid {
        ensure(self.version >= 1, "version", || "must be 1 or more".into())?;
        check_text(&self.description, MAX_DESCRIPTION, "description")?;
        check_text(&self.metadata, MAX_METADATA, "metadata")?;
        self.data.validate().map_err(|e| e.within("data"))
    }
}

impl Signed<WorkloadSpec> {
    /// Check the signature against the owner key the spec names.
    pub fn verify_owner(&self) -> Result<(), KeyError> {
        self.verify(&self.payload.owner_key)
    }
}
