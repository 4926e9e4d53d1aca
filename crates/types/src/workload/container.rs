//! The container workload (seed `004`): an flist root filesystem, environment, entrypoint,
//! volumes, capacity, network connection, and where its logs and stats go.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::WorkloadId;
use crate::validate::{Valid, check_http_url, check_name, ensure};

/// Smallest memory a container may ask for, in MiB.
pub const MIN_MEMORY_MIB: u64 = 32;
/// Smallest writable root filesystem, in MiB.
pub const MIN_DISK_MIB: u64 = 64;
/// Most virtual CPUs one container may ask for.
pub const MAX_CPU: u32 = 256;

/// A container started from an flist image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Container {
    /// URL (or node-local path) of the flist image.
    pub flist: String,
    /// Hub that serves the flist's chunks, when not the flist's own.
    #[serde(default)]
    pub hub_url: String,
    /// The flist's address (BLAKE3 of its file, 64 hex digits): the node refuses any other
    /// content. Empty: whatever the URL serves when the container is first started.
    #[serde(default)]
    pub flist_hash: String,
    /// Environment variables.
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// Environment variables whose values are sealed to the node's key
    /// ([`crate::sealed::seal_secret`]: `v1:<base64>`).
    #[serde(default)]
    pub secret_environment: BTreeMap<String, String>,
    /// Program and arguments to start; empty means the image's default.
    #[serde(default)]
    pub entrypoint: String,
    /// Start the web console instead of the entrypoint.
    #[serde(default)]
    pub interactive: bool,
    /// Volumes to mount.
    #[serde(default)]
    pub volumes: Vec<VolumeMount>,
    /// Resources reserved.
    pub capacity: Capacity,
    /// Private network to join (at most one).
    #[serde(default)]
    pub network_connection: Vec<NetworkConnection>,
    /// Where stdout and stderr are published.
    #[serde(default)]
    pub logs: Vec<LogEndpoint>,
    /// Where statistics are published every 2 seconds.
    #[serde(default)]
    pub stats: Vec<StatsEndpoint>,
}

/// A volume mounted into a container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeMount {
    /// The volume workload, owned by the same user, on the same node.
    pub volume_id: WorkloadId,
    /// Absolute path inside the container.
    pub mountpoint: String,
}

/// Resources reserved for a container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Capacity {
    /// Virtual CPUs.
    pub cpu: u32,
    /// Memory in MiB.
    pub memory: u64,
    /// Writable root filesystem size in MiB.
    pub disk_size: u64,
    /// Disk class for the root filesystem.
    pub disk_type: DiskType,
}

/// Disk class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum DiskType {
    /// Spinning disk.
    #[serde(rename = "HDD", alias = "hdd")]
    Hdd,
    /// Solid state.
    #[serde(rename = "SSD", alias = "ssd")]
    Ssd,
}

/// Membership of a private network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkConnection {
    /// Name of the owner's network.
    pub network_id: String,
    /// Static address inside the node's /24 of that network.
    #[schema(value_type = String)]
    pub ipaddress: Ipv4Addr,
    /// Also give the container a public IPv6 address.
    #[serde(default)]
    pub public_ipv6: bool,
    /// Also give the container a yggdrasil address.
    #[serde(default)]
    pub yggdrasil_ip: bool,
}

/// A log sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum LogEndpoint {
    /// PUBLISH each line to Redis channels.
    Redis(RedisLogs),
}

/// Redis channels for stdout and stderr, as `redis://host:port/channel` URLs. The `secret_`
/// forms are encrypted to the node's key and replace the plain ones when set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedisLogs {
    /// Channel for stdout.
    #[serde(default)]
    pub stdout: String,
    /// Channel for stderr.
    #[serde(default)]
    pub stderr: String,
    /// Channel for stdout sealed to the node ([`crate::sealed::seal_secret`]); replaces `stdout`.
    #[serde(default)]
    pub secret_stdout: String,
    /// Channel for stderr sealed to the node ([`crate::sealed::seal_secret`]); replaces `stderr`.
    #[serde(default)]
    pub secret_stderr: String,
}

/// A statistics sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum StatsEndpoint {
    /// PUBLISH a JSON document to a Redis channel every 2 seconds.
    Redis(RedisStats),
}

/// A Redis channel for statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedisStats {
    /// `redis://host:port/channel`.
    pub endpoint: String,
}

/// A `redis://[user:pass@]host[:port]/channel` URL split into the server's URL (without the
/// channel) and the channel, which must not be empty; `None` for anything else.
pub fn redis_channel(value: &str) -> Option<(String, String)> {
    let mut url = url::Url::parse(value).ok().filter(|u| u.scheme() == "redis" && u.host().is_some())?;
    let channel = url.path().trim_start_matches('/').to_owned();
    if channel.is_empty() {
        return None;
    }
    url.set_path("");
    Some((url.to_string(), channel))
}

/// `redis://[user:pass@]host:port/channel` with a non-empty channel.
fn check_redis_url(value: &str, field: &str) -> Valid {
    ensure(redis_channel(value).is_some(), field, || format!("{value:?} is not a redis://host:port/channel URL"))
}

fn check_env_name(name: &str, field: &str) -> Valid {
    let ok = !name.is_empty() && !name.contains('=') && !name.contains('\0');
    ensure(ok, field, || format!("{name:?} is not a valid variable name"))
}

impl Container {
    pub(super) fn validate(&self) -> Valid {
        ensure(!self.flist.trim().is_empty(), "flist", || "must name an flist".into())?;
        ensure(!self.flist.chars().any(char::is_whitespace), "flist", || "must not contain whitespace".into())?;
        ensure(self.flist_hash.is_empty() || crate::hub::is_hash(&self.flist_hash), "flist_hash", || {
            "must be the flist's 64-digit lowercase hex BLAKE3 hash (`zgrid flist inspect` prints it)".into()
        })?;
        if !self.hub_url.is_empty() {
            check_http_url(&self.hub_url, "hub_url")?;
        }
        for (k, v) in &self.environment {
            check_env_name(k, &format!("environment.{k}"))?;
            ensure(!v.contains('\0'), &format!("environment.{k}"), || "contains NUL".into())?;
        }
        for (k, v) in &self.secret_environment {
            check_env_name(k, &format!("secret_environment.{k}"))?;
            let field = format!("secret_environment.{k}");
            crate::sealed::secret_bytes(v).map_err(|e| crate::ValidationError::new(&field, e.to_string()))?;
            ensure(!self.environment.contains_key(k), &format!("secret_environment.{k}"), || {
                "is also set in environment; keep one".into()
            })?;
        }
        ensure(!self.entrypoint.contains('\0'), "entrypoint", || "contains NUL".into())?;
        let mut mountpoints = BTreeSet::new();
        for (i, v) in self.volumes.iter().enumerate() {
            let field = format!("volumes[{i}].mountpoint");
            let p = &v.mountpoint;
            ensure(p.starts_with('/') && p != "/", &field, || format!("{p:?} must be an absolute path other than /"))?;
            ensure(!p.split('/').any(|c| c == ".." || c == "."), &field, || {
                format!("{p:?} must not contain . or .. components")
            })?;
            ensure(mountpoints.insert(p.trim_end_matches('/')), &field, || format!("{p:?} is used by another volume"))?;
        }
        self.capacity.validate().map_err(|e| e.within("capacity"))?;
        ensure(self.network_connection.len() <= 1, "network_connection", || {
            "a container joins at most one network".into()
        })?;
        for (i, n) in self.network_connection.iter().enumerate() {
            check_name(&n.network_id, &format!("network_connection[{i}].network_id"))?;
        }
        for (i, l) in self.logs.iter().enumerate() {
            let LogEndpoint::Redis(r) = l;
            let at = |f: &str| format!("logs[{i}].data.{f}");
            for (name, value) in [("stdout", &r.stdout), ("stderr", &r.stderr)] {
                if !value.is_empty() {
                    check_redis_url(value, &at(name))?;
                }
            }
            for (name, value) in [("secret_stdout", &r.secret_stdout), ("secret_stderr", &r.secret_stderr)] {
                if !value.is_empty() {
                    crate::sealed::secret_bytes(value)
                        .map_err(|e| crate::ValidationError::new(at(name), e.to_string()))?;
                }
            }
            let any = [&r.stdout, &r.stderr, &r.secret_stdout, &r.secret_stderr].iter().any(|s| !s.is_empty());
            ensure(any, &format!("logs[{i}].data"), || "names no stdout or stderr channel".into())?;
        }
        for (i, s) in self.stats.iter().enumerate() {
            let StatsEndpoint::Redis(r) = s;
            check_redis_url(&r.endpoint, &format!("stats[{i}].data.endpoint"))?;
        }
        Ok(())
    }
}

impl Capacity {
    fn validate(&self) -> Valid {
        ensure((1..=MAX_CPU).contains(&self.cpu), "cpu", || {
            format!("{} is out of range: ask for 1 to {MAX_CPU} CPUs", self.cpu)
        })?;
        ensure(self.memory >= MIN_MEMORY_MIB, "memory", || {
            format!("{} MiB is below the minimum of {MIN_MEMORY_MIB} MiB", self.memory)
        })?;
        ensure(self.disk_size >= MIN_DISK_MIB, "disk_size", || {
            format!("{} MiB is below the minimum of {MIN_DISK_MIB} MiB", self.disk_size)
        })
    }
}
