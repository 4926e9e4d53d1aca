//! The OCI runtime spec (`config.json`) runc runs a container from. Mounts, masked and read-only
//! paths mirror `runc spec`; capabilities are the usual minimal container set; resources carry
//! the container's CPU, memory and pids limits. No rlimits are set: containers inherit the
//! agent's (raising a hard limit would need CAP_SYS_RESOURCE, which not every host grants).

use std::path::Path;

use serde_json::{Value, json};

use super::ContainerConfig;
#[cfg(test)]
use super::config::Bind;
use super::config::HOST_INIT;
use super::image::Process;

/// CFS period, µs; the quota is `cpu` periods.
pub const CFS_PERIOD_US: u64 = 100_000;

/// Capabilities a container's processes keep.
const CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
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
        "mounts": mounts(cfg),
        "linux": {
            "cgroupsPath": at.cgroups_path,
            "resources": resources(cfg, at.swap_accounting),
            "namespaces": namespaces(cfg),
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": READONLY_PATHS,
        },
    })
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

/// New pid, ipc, uts and mount namespaces; the network namespace given, or a new one.
fn namespaces(cfg: &ContainerConfig) -> Value {
    let network = match &cfg.netns {
        Some(path) => json!({ "type": "network", "path": path }),
        None => json!({ "type": "network" }),
    };
    json!([{ "type": "pid" }, network, { "type": "ipc" }, { "type": "uts" }, { "type": "mount" }])
}

/// The standard mounts of `runc spec`, then the container's volumes.
fn mounts(cfg: &ContainerConfig) -> Value {
    let binds = cfg.binds.iter().map(|b| {
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
            log_pipes: false,
            host_init: None,
        };
        let process = Process { args: vec!["/bin/sh".into()], env: vec!["A=b".into()], cwd: "/".into() };
        let at = Placement { rootfs: Path::new("/r/rootfs"), cgroups_path: "/zgrid/spec-test", swap_accounting: true };
        let spec = build(&cfg, &process, &at);
        let r = &spec["linux"]["resources"];
        assert_eq!(r["memory"]["limit"], 32 << 20);
        assert_eq!(r["memory"]["swap"], 32 << 20);
        assert_eq!(r["cpu"]["quota"], 200_000);
        assert_eq!(r["pids"]["limit"], 50);
        assert_eq!(spec["linux"]["cgroupsPath"], "/zgrid/spec-test");
        assert_eq!(spec["linux"]["namespaces"][1]["path"], "/var/run/netns/n1");
        assert_eq!(spec["root"]["path"], "/r/rootfs");
        assert_eq!(spec["process"]["noNewPrivileges"], true);
        let last = spec["mounts"].as_array().unwrap().last().unwrap().clone();
        assert_eq!((last["source"].as_str(), last["destination"].as_str()), (Some("/vol/data"), Some("/data")));
        let without = build(&ContainerConfig { cpu: 0, pids_limit: 0, netns: None, ..cfg }, &process, &at);
        assert!(without["linux"]["resources"].get("cpu").is_none());
        assert!(without["linux"]["resources"].get("pids").is_none());
        assert!(without["linux"]["namespaces"][1].get("path").is_none());
    }
}
