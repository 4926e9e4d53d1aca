//! The system-call filter every container runs under: `seccomp.json` beside this file, the OCI
//! `linux.seccomp` object runc installs just before it starts the container's process.
//!
//! An allow-list: a call not named there fails with `EPERM`. It leaves out whatever reaches
//! the kernel on behalf of the whole machine rather than the container's own processes: new
//! namespaces (`unshare` and `clone` with a `CLONE_NEW*` flag, `setns`), keyrings (`keyctl`,
//! `add_key`, `request_key`), `bpf`, `perf_event_open`, `io_uring_*`, every mount call (`mount`,
//! `umount2`, `pivot_root`, `fsopen` and the rest of the new mount API, `open_tree`), module
//! loading, `kexec_*`, `reboot`, swap, quotas, clocks, `syslog`, other processes' memory
//! (`ptrace`, `process_vm_readv`, `process_vm_writev`, `kcmp`, `pidfd_getfd`,
//! `process_madvise`), `userfaultfd`, file handles (`open_by_handle_at`), NUMA policies,
//! `modify_ldt`, `personality` beyond the usual personas, and obsolete calls. `clone3` answers
//! `ENOSYS`: its flags sit in memory a filter cannot read, and on `ENOSYS` the C library falls
//! back to `clone`, whose flags the filter checks. Only the machine's native architecture is
//! allowed (runc's default when the profile names none), so 32-bit calls fail too; calls newer
//! than runc's libseccomp answer `ENOSYS` (runc adds that), which programs treat as "not
//! implemented here".

use std::sync::LazyLock;

use serde_json::Value;

/// The profile, parsed once.
static PROFILE: LazyLock<Value> =
    LazyLock::new(|| serde_json::from_str(include_str!("seccomp.json")).expect("seccomp.json is valid JSON"));

/// The `linux.seccomp` object of a container's runtime spec.
pub(crate) fn profile() -> &'static Value {
    &PROFILE
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The calls a rule of `action` names (with any condition).
    fn named(action: &str) -> Vec<&'static str> {
        let rules = profile()["syscalls"].as_array().unwrap();
        rules
            .iter()
            .filter(|r| r["action"] == action)
            .flat_map(|r| r["names"].as_array().unwrap().iter().map(|n| n.as_str().unwrap()))
            .collect()
    }

    /// The rules about `name`.
    fn rules(name: &str) -> Vec<&'static Value> {
        let rules = profile()["syscalls"].as_array().unwrap();
        rules.iter().filter(|r| r["names"].as_array().unwrap().iter().any(|n| n == name)).collect()
    }

    /// Calls no rule allows in any form: they fail with the default `EPERM`.
    fn refused(family: &[&str]) {
        assert_eq!(profile()["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(profile()["defaultErrnoRet"], 1);
        for name in family {
            assert!(rules(name).is_empty(), "{name} is allowed: {:?}", rules(name));
        }
    }

    /// `name` is allowed only when its first argument has none of the bits of `mask`.
    fn allowed_without_flags(name: &str, mask: u64) {
        let rules = rules(name);
        assert_eq!(rules.len(), 1, "{name}: {rules:?}");
        let arg = &rules[0]["args"][0];
        assert_eq!((rules[0]["action"].as_str(), arg["index"].as_u64()), (Some("SCMP_ACT_ALLOW"), Some(0)));
        assert_eq!(
            (arg["op"].as_str(), arg["value"].as_u64(), arg["valueTwo"].as_u64()),
            (Some("SCMP_CMP_MASKED_EQ"), Some(mask), Some(0))
        );
    }

    /// `CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET`.
    const CLONE_NEW: u64 =
        0x0002_0000 | 0x0200_0000 | 0x0400_0000 | 0x0800_0000 | 0x1000_0000 | 0x2000_0000 | 0x4000_0000;
    /// `CLONE_NEWTIME`, which only `unshare` takes.
    const CLONE_NEWTIME: u64 = 0x80;

    #[test]
    fn new_namespaces_are_refused() {
        allowed_without_flags("clone", CLONE_NEW);
        allowed_without_flags("unshare", CLONE_NEW | CLONE_NEWTIME);
        refused(&["setns"]);
        let clone3 = rules("clone3");
        assert_eq!(clone3.len(), 1);
        assert_eq!((clone3[0]["action"].as_str(), clone3[0]["errnoRet"].as_u64()), (Some("SCMP_ACT_ERRNO"), Some(38)));
    }

    #[test]
    fn keyrings_are_refused() {
        refused(&["keyctl", "add_key", "request_key"]);
    }

    #[test]
    fn bpf_perf_and_io_uring_are_refused() {
        refused(&["bpf", "perf_event_open", "io_uring_setup", "io_uring_enter", "io_uring_register"]);
    }

    #[test]
    fn mounts_are_refused() {
        refused(&[
            "mount",
            "umount2",
            "pivot_root",
            "move_mount",
            "open_tree",
            "open_tree_attr",
            "fsopen",
            "fsconfig",
            "fsmount",
            "fspick",
            "mount_setattr",
            "listmount",
            "statmount",
        ]);
    }

    #[test]
    fn the_kernel_itself_is_out_of_reach() {
        refused(&[
            "init_module",
            "finit_module",
            "delete_module",
            "kexec_load",
            "kexec_file_load",
            "reboot",
            "swapon",
            "swapoff",
            "acct",
            "quotactl",
            "quotactl_fd",
            "syslog",
            "settimeofday",
            "clock_settime",
            "clock_adjtime",
            "iopl",
            "ioperm",
            "modify_ldt",
            "lookup_dcookie",
            "_sysctl",
            "uselib",
            "vhangup",
        ]);
    }

    #[test]
    fn other_processes_memory_is_out_of_reach() {
        refused(&[
            "ptrace",
            "process_vm_readv",
            "process_vm_writev",
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "userfaultfd",
            "open_by_handle_at",
            "name_to_handle_at",
            "move_pages",
            "migrate_pages",
            "mbind",
            "set_mempolicy",
            "get_mempolicy",
        ]);
    }

    #[test]
    fn personality_takes_only_the_usual_personas() {
        let values: Vec<u64> = rules("personality").iter().map(|r| r["args"][0]["value"].as_u64().unwrap()).collect();
        assert_eq!(values, [0, 8, 0x20000, 0x20008, 0xffff_ffff]);
    }

    #[test]
    fn what_ordinary_programs_need_is_allowed_once() {
        let allowed = named("SCMP_ACT_ALLOW");
        for name in ["read", "execve", "openat", "faccessat2", "close_range", "mknodat", "socket", "futex", "rseq"] {
            assert!(allowed.contains(&name), "{name} is not allowed");
        }
        let mut unique = allowed.clone();
        unique.sort_unstable();
        unique.dedup();
        let conditional = ["clone", "unshare", "personality"];
        assert_eq!(allowed.len() - unique.len(), rules("personality").len() - 1, "a call is listed twice");
        assert!(conditional.iter().all(|c| allowed.contains(c)));
    }
}
