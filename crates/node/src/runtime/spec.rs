//! The OCI runtime spec (`config.json`) runc runs a container from. Mounts, masked and read-only
//! paths mirror `runc spec`; capabilities are what a service needs (no raw sockets, no device
//! nodes); the system-call filter is [`super::seccomp`]; with an id range, a user namespace maps
//! the container's ids into it; resources carry the container's CPU, memory and pids limits. No
//! rlimits are set: containers inherit the agent's (raising a hard limit would need
//! CAP_SYS_RESOURCE, which not every host grants).

use std::path::Path;

use serde_json::{Value, json};

use super::ContainerConfig;
use super::config::{Bind, HOST_INIT};
use super::idmap::IdRange;
use super::image::Process;
use super::seccomp;

/// CFS period, µs; the quota is `cpu` periods.
pub const CFS_PERIOD_US: u64 = 100_000;

/// Capabilities a container's processes keep: running a service as root and dropping to
/// other users. Left out beside everything administrative: `CAP_NET_RAW` (raw sockets, forged
/// packets; a ping using ICMP datagram sockets works without it) and `CAP_MKNOD` (device nodes).
const CAPABILITIES: [&str; 12] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Paths hidden from the container (as `runc spec`).
const MASKED_PATHS: [&str; 10] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
];

/// Paths the container sees read-only (as `runc spec`).
const READONLY_PATHS: [&str; 5] = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// Where the container's limits are enforced.
pub(crate) struct Placement<'a> {
    /// The merged root filesystem.
    pub rootfs: &'a Path,
    /// `linux.cgroupsPath`, e.g. `/zgrid/<id>`.
    pub cgroups_path: &'a str,
    /// Whether the kernel accounts swap (`memory.memsw.*` on cgroup v1); without it no swap
    /// limit is set (and there is no swap to limit).
    pub swap_accounting: bool,
    /// The container's volumes as runc mounts them (their sources may be idmapped copies).
    pub binds: &'a [Bind],
    /// The container's id range and its pinned user namespace (which owns its network
    /// namespace), when it runs in one.
    pub user: Option<(IdRange, &'a Path)>,
}

/// The runtime spec for `cfg` running `process`.
pub(crate) fn build(cfg: &ContainerConfig, process: &Process, at: &Placement<'_>) -> Value {
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": { "uid": 0, "gid": 0 },
            "args": process.args,
            "env": process.env,
            "cwd": process.cwd,
            "capabilities": {
                "bounding": CAPABILITIES,
                "effective": CAPABILITIES,
                "permitted": CAPABILITIES,
            },
            "noNewPrivileges": true,
        },
        "root": { "path": at.rootfs, "readonly": false },
        "hostname": cfg.hostname,
        "mounts": mounts(cfg, at),
        "linux": linux(cfg, at),
    })
}

/// `linux`: cgroups and limits, namespaces and id maps, the system-call filter, hidden paths.
fn linux(cfg: &ContainerConfig, at: &Placement<'_>) -> Value {
    let mut linux = json!({
        "cgroupsPath": at.cgroups_path,
        "resources": resources(cfg, at.swap_accounting),
        "namespaces": namespaces(cfg, at.user.map(|(_, pin)| pin)),
        "seccomp": seccomp::profile(),
        "maskedPaths": MASKED_PATHS,
        "readonlyPaths": READONLY_PATHS,
    });
    if let Some((ids, _)) = at.user {
        linux["uidMappings"] = ids.oci();
        linux["gidMappings"] = ids.oci();
    }
    linux
}

/// Memory (swap included), CPU quota and pids limits; every device denied but runc's defaults.
fn resources(cfg: &ContainerConfig, swap_accounting: bool) -> Value {
    let memory = cfg.memory_mib * (1 << 20);
    let mut resources = json!({
        "devices": [{ "allow": false, "access": "rwm" }],
        "memory": { "limit": memory },
    });
    if swap_accounting {
        resources["memory"]["swap"] = json!(memory);
    }
    if cfg.cpu > 0 {
        resources["cpu"] = json!({ "quota": u64::from(cfg.cpu) * CFS_PERIOD_US, "period": CFS_PERIOD_US });
    }
    if cfg.pids_limit > 0 {
        resources["pids"] = json!({ "limit": cfg.pids_limit });
    }
    resources
}

/// New pid, ipc, uts and mount namespaces; the network namespace given, or a new one; and the
/// user namespace pinned at `user`, if any.
fn namespaces(cfg: &ContainerConfig, user: Option<&Path>) -> Value {
    let network = match &cfg.netns {
        Some(path) => json!({ "type": "network", "path": path }),
        None => json!({ "type": "network" }),
    };
    let mut all = vec![
        json!({ "type": "pid" }),
        network,
        json!({ "type": "ipc" }),
        json!({ "type": "uts" }),
        json!({ "type": "mount" }),
    ];
    if let Some(pin) = user {
        all.push(json!({ "type": "user", "path": pin }));
    }
    Value::Array(all)
}

/// The standard mounts of `runc spec`, then the container's volumes.
fn mounts(cfg: &ContainerConfig, at: &Placement<'_>) -> Value {
    let binds = at.binds.iter().map(|b| {
        json!({ "destination": b.destination, "type": "bind", "source": b.source, "options": ["rbind", "rw", "nosuid", "nodev"] })
    });
    let standard = json!([
        { "destination": "/proc", "type": "proc", "source": "proc" },
        {
            "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts", "type": "devpts", "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        },
        {
            "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        },
        { "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"] },
        { "destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"] },
        {
            "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
            "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
        },
    ]);
    let mut all = standard.as_array().cloned().unwrap_or_default();
    all.extend(binds);
    if let Some(init) = &cfg.host_init {
        all.push(json!({ "destination": HOST_INIT, "type": "bind", "source": init, "options": ["bind", "ro", "nosuid", "nodev"] }));
    }
    Value::Array(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_namespaces() {
        let cfg = ContainerConfig {
            id: "spec-test".into(),
            image: "/img".into(),
            image_config: None,
            env: vec![],
            args: vec![],
            hostname: "h1".into(),
            cpu: 2,
            memory_mib: 32,
            disk_mib: 64,
            pids_limit: 50,
            netns: Some("/var/run/netns/n1".into()),
            binds: vec![Bind { source: "/vol/data".into(), destination: "/data".into() }],
            host_init: None,
        };
        let process = Process { args: vec!["/bin/sh".into()], env: vec!["A=b".into()], cwd: "/".into() };
        let mapped = [Bind { source: "/r/volumes/0".into(), destination: "/data".into() }];
        let at = Placement {
            rootfs: Path::new("/r/rootfs"),
            cgroups_path: "/zgrid/spec-test",
            swap_accounting: true,
            binds: &mapped,
            user: Some((IdRange::from_base(1 << 30), Path::new("/r/userns"))),
        };
        let spec = build(&cfg, &process, &at);
        let r = &spec["linux"]["resources"];
        assert_eq!(r["memory"]["limit"], 32 << 20);
        assert_eq!(r["memory"]["swap"], 32 << 20);
        assert_eq!(r["cpu"]["quota"], 200_000);
        assert_eq!(r["pids"]["limit"], 50);
        assert_eq!(spec["linux"]["cgroupsPath"], "/zgrid/spec-test");
        assert_eq!(spec["linux"]["namespaces"][1]["path"], "/var/run/netns/n1");
        assert_eq!(spec["linux"]["namespaces"][5], json!({ "type": "user", "path": "/r/userns" }));
        assert_eq!(spec["linux"]["uidMappings"][0]["hostID"], 1 << 30);
        assert_eq!(spec["linux"]["gidMappings"][0]["size"], 65536);
        assert_eq!(spec["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(spec["root"]["path"], "/r/rootfs");
        assert_eq!(spec["process"]["noNewPrivileges"], true);
        let caps = spec["process"]["capabilities"]["bounding"].as_array().unwrap();
        for dropped in ["CAP_NET_RAW", "CAP_MKNOD", "CAP_SYS_ADMIN", "CAP_NET_ADMIN"] {
            assert!(!caps.iter().any(|c| c == dropped), "{dropped} is granted");
        }
        let mounts = spec["mounts"].as_array().unwrap();
        let last = mounts.last().unwrap();
        assert_eq!((last["source"].as_str(), last["destination"].as_str()), (Some("/r/volumes/0"), Some("/data")));
        assert!(mounts.iter().any(|m| m["destination"] == "/sys" && m["type"] == "sysfs"));

        let plain = Placement { user: None, ..at };
        let without = build(&ContainerConfig { cpu: 0, pids_limit: 0, netns: None, ..cfg }, &process, &plain);
        assert!(without["linux"]["resources"].get("cpu").is_none());
        assert!(without["linux"]["resources"].get("pids").is_none());
        assert!(without["linux"]["namespaces"][1].get("path").is_none());
        assert_eq!(without["linux"]["namespaces"].as_array().unwrap().len(), 5, "no user namespace");
        assert!(without["linux"].get("uidMappings").is_none());
    }
}
