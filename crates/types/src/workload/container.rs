//! The container workload (seed `004`): an flist root filesystem, environment, entrypoint,
//! volumes, capacity, network connection, where its logs and stats go, and its probes
//! ([`Probes`]).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::probe::Probes;
use crate::ids::WorkloadId;
use crate::validate::{Valid, check_http_url, check_name, ensure};

/// Smallest memory a container may ask for, in MiB.
pub const MIN_MEMORY_MIB: u64 = 32;
/// Smallest writable root filesystem, in MiB.
pub const MIN_DISK_MIB: u64 = 64;
/// Most virtual CPUs one container or VM may ask for.
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
    /// Checks the node runs against the container: readiness (reported in its result) and
    /// liveness (a container that fails it is restarted). Left out of the JSON when empty, so
    /// specs signed before probes existed still verify.
    #[serde(default, skip_serializing_if = "Probes::is_empty")]
    pub probes: Probes,
    /// Ports the container's public and Yggdrasil addresses (`public_ipv6`, `yggdrasil_ip`)
    /// take connections on from outside; every other port is closed to the outside (ICMP
    /// passes). Left out of the JSON when empty, so specs signed before the field existed still
    /// verify.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub open_ports: Vec<OpenPort>,
}

/// Most entries of [`Container::open_ports`].
pub const MAX_OPEN_PORTS: usize = 64;

/// A port opened on a container's public address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenPort {
    /// The port, 1 to 65535.
    #[schema(minimum = 1, maximum = 65535)]
    pub port: u16,
    /// Its transport protocol.
    pub protocol: Protocol,
}

/// A transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// Its lowercase name, as nftables and the CLI write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        }
    }
}

impl std::fmt::Display for OpenPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.port, self.protocol.as_str())
    }
}

impl std::str::FromStr for OpenPort {
    type Err = String;

    /// `PORT` (TCP), `PORT/tcp` or `PORT/udp`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (port, protocol) = s.split_once('/').unwrap_or((s, "tcp"));
        let protocol = match protocol {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            other => {
                return Err(format!("{s:?}: the protocol is tcp or udp, not {other:?} (e.g. 80, 443/tcp, 53/udp)"));
            }
        };
        match port.parse::<u16>() {
            Ok(port) if port > 0 => Ok(Self { port, protocol }),
            _ => Err(format!("{s:?}: give a port from 1 to 65535, with /tcp (the default) or /udp")),
        }
    }
}

/// A volume mounted into a container or a VM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeMount {
    /// The volume workload, owned by the same user, on the same node.
    pub volume_id: WorkloadId,
    /// Absolute path inside the container or the VM's guest.
    pub mountpoint: String,
}

/// Resources reserved for a container or a VM. Named `ContainerCapacity` in the OpenAPI
/// document, apart from a node's [`crate::directory::Capacity`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ContainerCapacity)]
pub struct Capacity {
    /// Virtual CPUs.
    pub cpu: u32,
    /// Memory in MiB.
    pub memory: u64,
    /// Writable root filesystem size in MiB (a VM's writable layer over its image).
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
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]{0,63}$")]
    pub network_id: String,
    /// Static address inside the node's /24 of that network.
    #[schema(value_type = String, format = Ipv4)]
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

/// Longest `NAME=value` of one environment variable, in bytes: the kernel's MAX_ARG_STRLEN
/// (128 KiB) less the terminating NUL; `execve` fails with E2BIG beyond it.
pub const MAX_ENV_ENTRY: usize = 128 * 1024 - 1;

/// Most bytes of a container's (or VM's) whole environment (every `NAME=value` with its NUL, secrets
/// counted by what they hold): a quarter of the kernel's usual limit on arguments and
/// environment together (2 MiB with an 8 MiB stack), so the entrypoint and what the image sets
/// still fit.
pub const MAX_ENVIRONMENT: usize = 512 * 1024;

/// Where a container's or VM's image comes from ([`flist_source`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlistSource<'a> {
    /// An flist on a hub: an `http://` or `https://` URL.
    Hub(&'a str),
    /// A directory or tar archive on the node: its absolute path (from a path or a `file://`
    /// URL).
    Local(&'a str),
}

/// Where an image comes from, as the node reads a workload's `flist`: an `http(s)://` URL of
/// an flist on a hub, or an absolute path (or `file://` URL) of a directory or archive on the
/// node, which `flist_hash` cannot pin. The explorer and the node decide with this one function,
/// for containers and VMs alike.
pub fn flist_source<'a>(flist: &'a str, flist_hash: &str) -> Result<FlistSource<'a>, crate::ValidationError> {
    ensure(!flist.trim().is_empty(), "flist", || "must name an flist".into())?;
    ensure(!flist.chars().any(|c| c.is_whitespace() || c.is_control()), "flist", || {
        "must not contain whitespace or control characters".into()
    })?;
    if flist.starts_with("http://") || flist.starts_with("https://") {
        check_http_url(flist, "flist")?;
        return Ok(FlistSource::Hub(flist));
    }
    let path = flist.strip_prefix("file://").unwrap_or(flist);
    ensure(path.starts_with('/'), "flist", || {
        format!(
            "{flist:?} is not supported: give an http(s):// URL of an flist on a hub, or an absolute path \
             (or file:// URL) of a directory or tar archive on the node"
        )
    })?;
    ensure(flist_hash.is_empty(), "flist_hash", || {
        "pins flists from hubs; a directory or archive on the node cannot be pinned: leave it empty".into()
    })?;
    Ok(FlistSource::Local(path))
}

/// The image fields a container and a VM share: `flist` ([`flist_source`]), `flist_hash` (a
/// BLAKE3 hash or empty) and `hub_url` (an http(s) URL or empty).
pub(super) fn check_image(flist: &str, hub_url: &str, flist_hash: &str) -> Valid {
    flist_source(flist, flist_hash)?;
    ensure(flist_hash.is_empty() || crate::hub::is_hash(flist_hash), "flist_hash", || {
        "must be the flist's 64-digit lowercase hex BLAKE3 hash (`zgrid flist inspect` prints it)".into()
    })?;
    if !hub_url.is_empty() {
        check_http_url(hub_url, "hub_url")?;
    }
    Ok(())
}

/// A variable name the kernel and runc pass on as it is: not empty, without `=`, whitespace or
/// control characters (NUL included).
fn check_env_name(name: &str, field: &str) -> Valid {
    let ok = !name.is_empty() && !name.contains('=') && !name.chars().any(|c| c.is_whitespace() || c.is_control());
    ensure(ok, field, || {
        format!("{name:?} is not a valid variable name: use no '=', spaces or control characters, such as MY_VAR")
    })
}

/// One variable whose value is `value_len` bytes: its name, and its `NAME=value` within
/// [`MAX_ENV_ENTRY`]. Returns the bytes it takes in the environment.
fn check_env_entry(name: &str, value_len: usize, field: &str) -> Result<usize, crate::ValidationError> {
    check_env_name(name, field)?;
    let entry = name.len() + 1 + value_len;
    ensure(entry <= MAX_ENV_ENTRY, field, || {
        format!("NAME=value is {entry} bytes; a process takes at most {MAX_ENV_ENTRY} per variable")
    })?;
    Ok(entry + 1)
}

/// Check the names and sizes of a workload's environment: each variable within
/// [`MAX_ENV_ENTRY`], all of them within [`MAX_ENVIRONMENT`], secrets sealed boxes
/// ([`crate::sealed::seal_secret`]) counted by what they hold and not also set in the clear.
pub(super) fn check_environment(
    environment: &BTreeMap<String, String>,
    secret_environment: &BTreeMap<String, String>,
) -> Valid {
    let mut total = 0;
    for (k, v) in environment {
        let field = format!("environment.{k}");
        ensure(!v.contains('\0'), &field, || "contains NUL".into())?;
        total += check_env_entry(k, v.len(), &field)?;
    }
    for (k, v) in secret_environment {
        let field = format!("secret_environment.{k}");
        let len = crate::sealed::secret_len(v).map_err(|e| crate::ValidationError::new(&field, e.to_string()))?;
        total += check_env_entry(k, len, &field)?;
        ensure(!environment.contains_key(k), &field, || "is also set in environment; keep one".into())?;
    }
    ensure(total <= MAX_ENVIRONMENT, "environment", || {
        format!(
            "the environment (secret_environment included) is {total} bytes; a workload takes at most {MAX_ENVIRONMENT}"
        )
    })
}

/// Check where volumes are mounted: absolute paths other than `/`, without `.` or `..`
/// components, each used once.
pub(super) fn check_mounts(volumes: &[VolumeMount]) -> Valid {
    let mut mountpoints = BTreeSet::new();
    for (i, v) in volumes.iter().enumerate() {
        let field = format!("volumes[{i}].mountpoint");
        let p = &v.mountpoint;
        ensure(p.starts_with('/') && p != "/", &field, || format!("{p:?} must be an absolute path other than /"))?;
        ensure(!p.split('/').any(|c| c == ".." || c == "."), &field, || {
            format!("{p:?} must not contain . or .. components")
        })?;
        ensure(mountpoints.insert(p.trim_end_matches('/')), &field, || format!("{p:?} is used by another volume"))?;
    }
    Ok(())
}

impl Container {
    /// Where the image comes from, as the node reads `flist` ([`flist_source`]).
    pub fn flist_source(&self) -> Result<FlistSource<'_>, crate::ValidationError> {
        flist_source(&self.flist, &self.flist_hash)
    }

    /// The entrypoint split into program and arguments the way a POSIX shell splits words
    /// (quotes and backslashes), which is how the node runs it; empty: the image's default.
    pub fn entrypoint_args(&self) -> Result<Vec<String>, crate::ValidationError> {
        ensure(!self.entrypoint.contains('\0'), "entrypoint", || "contains NUL".into())?;
        shlex::split(&self.entrypoint).ok_or_else(|| {
            crate::ValidationError::new(
                "entrypoint",
                format!("{:?} has unbalanced quotes or ends in a backslash", self.entrypoint),
            )
        })
    }

    pub(super) fn validate(&self) -> Valid {
        check_image(&self.flist, &self.hub_url, &self.flist_hash)?;
        check_environment(&self.environment, &self.secret_environment)?;
        self.entrypoint_args()?;
        check_mounts(&self.volumes)?;
        self.capacity.validate(MIN_MEMORY_MIB).map_err(|e| e.within("capacity"))?;
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
        self.probes.validate().map_err(|e| e.within("probes"))?;
        self.validate_open_ports()
    }

    /// Ports are opened on a public or Yggdrasil address only, at most [`MAX_OPEN_PORTS`] of
    /// them, each once.
    fn validate_open_ports(&self) -> Valid {
        if self.open_ports.is_empty() {
            return Ok(());
        }
        ensure(self.network_connection.iter().any(|n| n.public_ipv6 || n.yggdrasil_ip), "open_ports", || {
            "ports are opened on the container's public or Yggdrasil address: ask for one with public_ipv6 or yggdrasil_ip"
                .into()
        })?;
        ensure(self.open_ports.len() <= MAX_OPEN_PORTS, "open_ports", || {
            format!("{} ports: open at most {MAX_OPEN_PORTS}", self.open_ports.len())
        })?;
        let mut seen = BTreeSet::new();
        for (i, p) in self.open_ports.iter().enumerate() {
            let field = format!("open_ports[{i}]");
            ensure(p.port > 0, &format!("{field}.port"), || "0 is not a port: give 1 to 65535".into())?;
            ensure(seen.insert(*p), &field, || format!("{p} is listed twice"))?;
        }
        Ok(())
    }
}

impl Capacity {
    /// Check the ranges: 1 to [`MAX_CPU`] CPUs, at least `min_memory` MiB of memory (the
    /// workload kind's minimum) and [`MIN_DISK_MIB`] of disk.
    pub(super) fn validate(&self, min_memory: u64) -> Valid {
        ensure((1..=MAX_CPU).contains(&self.cpu), "cpu", || {
            format!("{} is out of range: ask for 1 to {MAX_CPU} CPUs", self.cpu)
        })?;
        ensure(self.memory >= min_memory, "memory", || {
            format!("{} MiB is below the minimum of {min_memory} MiB", self.memory)
        })?;
        ensure(self.disk_size >= MIN_DISK_MIB, "disk_size", || {
            format!("{} MiB is below the minimum of {MIN_DISK_MIB} MiB", self.disk_size)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Keypair;

    fn busybox() -> Container {
        Container {
            flist: "https://hub.example/busybox.flist".into(),
            hub_url: String::new(),
            flist_hash: String::new(),
            environment: BTreeMap::new(),
            secret_environment: BTreeMap::new(),
            entrypoint: "/bin/sh -c 'echo \"hi there\"'".into(),
            interactive: false,
            volumes: vec![],
            capacity: Capacity { cpu: 1, memory: 64, disk_size: 64, disk_type: DiskType::Ssd },
            network_connection: vec![],
            logs: vec![],
            stats: vec![],
            probes: Probes::default(),
            open_ports: vec![],
        }
    }

    /// The field `change` makes `validate` name, or `None` when it passes.
    fn refused(change: impl FnOnce(&mut Container)) -> Option<String> {
        let mut c = busybox();
        change(&mut c);
        c.validate().err().map(|e| e.field)
    }

    #[test]
    fn entrypoints_split_like_a_shell_and_unbalanced_quotes_are_refused() {
        assert_eq!(busybox().entrypoint_args().unwrap(), ["/bin/sh", "-c", "echo \"hi there\""]);
        for bad in ["/bin/sh -c 'echo", "echo \"a", "echo a\\"] {
            assert_eq!(refused(|c| c.entrypoint = bad.into()).as_deref(), Some("entrypoint"), "{bad}");
        }
    }

    #[test]
    fn flists_are_hub_urls_or_absolute_paths_on_the_node() {
        let source = |flist: &str| {
            let c = Container { flist: flist.into(), ..busybox() };
            c.flist_source().map(|s| format!("{s:?}"))
        };
        assert_eq!(source("https://hub.example/a.flist").unwrap(), "Hub(\"https://hub.example/a.flist\")");
        assert_eq!(source("file:///srv/img.tar").unwrap(), "Local(\"/srv/img.tar\")");
        assert_eq!(source("/srv/img").unwrap(), "Local(\"/srv/img\")");
        for bad in ["ftp://hub.example/a.flist", "s3://bucket/a", "img.tar", "file://img.tar", "http://", "HTTPS://x/a"]
        {
            assert_eq!(refused(|c| c.flist = bad.into()).as_deref(), Some("flist"), "{bad}");
        }
        let pinned_local = |c: &mut Container| {
            c.flist = "/srv/img".into();
            c.flist_hash = "a".repeat(64);
        };
        assert_eq!(refused(pinned_local).as_deref(), Some("flist_hash"));
    }

    #[test]
    fn environment_names_and_sizes_are_what_a_process_can_take() {
        for bad in ["MY VAR", "A=B", "A\0", "", "TAB\t"] {
            let field = format!("environment.{bad}");
            assert_eq!(refused(|c| _ = c.environment.insert(bad.into(), "x".into())), Some(field), "{bad:?}");
        }
        let fits = "x".repeat(MAX_ENV_ENTRY - 2);
        assert_eq!(refused(|c| _ = c.environment.insert("A".into(), fits.clone())), None);
        let one_more = "x".repeat(MAX_ENV_ENTRY - 1);
        assert_eq!(refused(|c| _ = c.environment.insert("A".into(), one_more)).as_deref(), Some("environment.A"));
        let many = |c: &mut Container| {
            for i in 0..5 {
                c.environment.insert(format!("V{i}"), "x".repeat(120 * 1024));
            }
        };
        assert_eq!(refused(many).as_deref(), Some("environment"));
        let node = Keypair::from_seed(&[5; 32]).public();
        let big_secret = crate::sealed::seal_secret(&node, &"x".repeat(MAX_ENV_ENTRY));
        assert_eq!(
            refused(|c| _ = c.secret_environment.insert("S".into(), big_secret)).as_deref(),
            Some("secret_environment.S"),
            "a secret counts by what it holds"
        );
    }

    #[test]
    fn a_container_without_probes_serialises_as_before_probes_existed() {
        // What a client without the field sent, in its field order; signatures cover its
        // canonical form, which the node and the explorer rebuild from the parsed value.
        let old = r#"{"flist":"https://hub.example/busybox.flist","hub_url":"","flist_hash":"","environment":{},"secret_environment":{},"entrypoint":"sh","interactive":false,"volumes":[],"capacity":{"cpu":1,"memory":64,"disk_size":64,"disk_type":"SSD"},"network_connection":[],"logs":[],"stats":[]}"#;
        let parsed: Container = serde_json::from_str(old).unwrap();
        assert_eq!(parsed.probes, Probes::default());
        assert_eq!(serde_json::to_string(&parsed).unwrap(), old);

        let owner = Keypair::from_seed(&[1; 32]);
        let spec = crate::WorkloadSpec {
            id: WorkloadId::from_u64(7),
            version: 1,
            owner: 7,
            owner_key: owner.public(),
            node_id: Keypair::from_seed(&[2; 32]).public(),
            expires_at: 1_900_000_000,
            description: String::new(),
            metadata: String::new(),
            data: crate::WorkloadData::Container(parsed),
        };
        let signed = serde_json::to_string(&crate::Signed::sign(spec, &owner)).unwrap();
        assert!(!signed.contains("probes"), "{signed}");
        let back: crate::Signed<crate::WorkloadSpec> = serde_json::from_str(&signed).unwrap();
        assert!(back.verify_owner().is_ok());
        assert_eq!(serde_json::to_string(&back).unwrap(), signed);
    }

    #[test]
    fn ports_open_on_a_public_address_only_once_each() {
        let port = |s: &str| s.parse::<OpenPort>().unwrap();
        let public = |c: &mut Container| {
            c.network_connection = vec![NetworkConnection {
                network_id: "n".into(),
                ipaddress: [10, 1, 1, 2].into(),
                public_ipv6: true,
                yggdrasil_ip: false,
            }];
        };
        assert_eq!(port("80"), OpenPort { port: 80, protocol: Protocol::Tcp });
        assert_eq!(port("53/udp").to_string(), "53/udp");
        for bad in ["0", "65536", "80/sctp", "http", "", "/tcp"] {
            assert!(bad.parse::<OpenPort>().is_err(), "{bad:?}");
        }
        assert_eq!(refused(|c| c.open_ports = vec![port("80")]).as_deref(), Some("open_ports"), "no public address");
        assert_eq!(refused(|c| (public(c), c.open_ports = vec![port("80"), port("80/udp")]).1), None);
        let yggdrasil = |c: &mut Container| {
            public(c);
            c.network_connection[0].public_ipv6 = false;
            c.network_connection[0].yggdrasil_ip = true;
            c.open_ports = vec![port("80")];
        };
        assert_eq!(refused(yggdrasil), None, "ports open on a Yggdrasil address too");
        let twice = |c: &mut Container| (public(c), c.open_ports = vec![port("80"), port("443"), port("80")]).1;
        assert_eq!(refused(twice).as_deref(), Some("open_ports[2]"));
        let zero =
            |c: &mut Container| (public(c), c.open_ports = vec![OpenPort { port: 0, protocol: Protocol::Udp }]).1;
        assert_eq!(refused(zero).as_deref(), Some("open_ports[0].port"));
        let many = |c: &mut Container| {
            public(c);
            c.open_ports = (1..=65).map(|p| OpenPort { port: p, protocol: Protocol::Tcp }).collect();
        };
        assert_eq!(refused(many).as_deref(), Some("open_ports"));
    }

    #[test]
    fn probes_are_checked_under_their_path() {
        let probe = super::super::Probe::new(super::super::ProbeAction::TcpSocket { port: 0 });
        let refusal = refused(|c| c.probes.liveness = Some(probe));
        assert_eq!(refusal.as_deref(), Some("probes.liveness.action.port"));
    }

    #[test]
    fn secret_values_must_be_sealed_boxes() {
        let node = Keypair::from_seed(&[5; 32]).public();
        let sealed = crate::sealed::seal_secret(&node, "hunter2");
        assert_eq!(refused(|c| _ = c.secret_environment.insert("S".into(), sealed)), None);
        for clear in ["v1:aHVudGVyMg==", "hunter2", "v1:"] {
            let refusal = refused(|c| _ = c.secret_environment.insert("S".into(), clear.into()));
            assert_eq!(refusal.as_deref(), Some("secret_environment.S"), "{clear}");
        }
    }
}
