//! VMs end to end: the Debian image of `scripts/vm-image` pushed to the devnet's hub, booted by
//! a real node agent with qemu (TCG on machines without usable KVM) from its flist, lazily,
//! over virtiofs; reached with `ssh` from a laptop namespace joined with `wg-quick`; kept across
//! a guest reboot and an agent restart; removed without leftovers.
//!
//! Needs the kernel of `scripts/vm-kernel` and the image tree of `scripts/vm-image --tree`
//! (`scripts/test` makes both), qemu-system-x86, openssh-client and busybox-static.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use zgrid_devnet::{Node, NodeOptions};

use crate::grid::{Grid, id_of, wait_until};
use crate::hub::{push, served, tree_bytes};
use crate::network::{Laptop, create, host};

/// Boots under TCG take tens of seconds; a systemd guest's sshd a little more.
const BOOT_LIMIT: Duration = Duration::from_secs(600);

/// A node that boots VMs, its accelerator chosen as asked (`auto` when `None`).
pub(crate) fn vm_node(grid: &Grid, accel: Option<&str>) -> Node {
    let options = NodeOptions {
        step_timeout: Duration::from_secs(600),
        vm_accel: accel.map(str::to_owned),
        ..NodeOptions::default()
    };
    grid.devnet.add_node(options).expect("node")
}

/// The Debian VM image's root tree, built by `scripts/vm-image --tree` (cached between runs).
fn debian_tree() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/vm-image");
    let out = Command::new(&script).arg("--tree").output().expect("scripts/vm-image");
    assert!(out.status.success(), "scripts/vm-image --tree failed:\n{}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// An SSH key pair made with `ssh-keygen` in `dir`: the private key's path.
pub(crate) fn ssh_key(dir: &Path) -> PathBuf {
    let key = dir.join("id_ed25519");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .output()
        .expect("ssh-keygen (apt-get install openssh-client)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    key
}

/// Run `script` in the guest at `ip` as root over SSH from `laptop`.
pub(crate) fn ssh(laptop: &Laptop, key: &Path, ip: &str, script: &str) -> std::process::Output {
    let target = format!("root@{ip}");
    let args = [
        "-i",
        key.to_str().unwrap(),
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "ConnectTimeout=5",
        "-o",
        "BatchMode=yes",
        &target,
        script,
    ];
    laptop.run("ssh", &args)
}

/// Wait until `script` succeeds in the guest; returns its output.
pub(crate) fn ssh_when_up(laptop: &Laptop, key: &Path, ip: &str, script: &str, node: &Node) -> String {
    let mut last = String::new();
    wait_until(BOOT_LIMIT, || {
        let out = ssh(laptop, key, ip, script);
        last = String::from_utf8_lossy(&out.stderr).into_owned();
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    })
    .unwrap_or_else(|| panic!("ssh to {ip} never worked; last error: {last}\nagent log:\n{}", node.log()))
}

/// Deploy a VM from `flist` on `node` in network `net` at `ip`, letting in the public key at
/// `key`; extra flags follow.
fn deploy_vm(grid: &Grid, node: &Node, flist: &str, (net, ip): (&str, &str), key: &str, extra: &[&str]) -> String {
    let mut args = vec!["deploy", "vm", "--node", node.id(), "--flist", flist, "--network", net, "--ip", ip];
    args.extend(["--ssh-key", key, "--duration", "1h"]);
    args.extend_from_slice(extra);
    id_of(&grid.cli(&args))
}

/// qemu's pid of VM `id` on `node`, as its pid file says.
fn qemu_pid(node: &Node, id: &str) -> Option<u32> {
    let file = node.state_dir().join("vms/vms").join(id).join("qemu.pid");
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

/// The real user id qemu of VM `id` on `node` runs as.
fn qemu_uid(node: &Node, id: &str) -> String {
    let pid = qemu_pid(node, id).expect("qemu's pid file");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uids = status.lines().find_map(|l| l.strip_prefix("Uid:")).expect("a Uid line");
    uids.split_whitespace().next().unwrap().to_owned()
}

/// What is left on the machine of VM `id` on `node`: processes, taps, sockets and files,
/// mounts and cgroups, each named.
pub(crate) fn leftovers(node: &Node, id: &str) -> Vec<String> {
    let mut left = Vec::new();
    for proc in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(proc.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(id) {
            left.push(format!("process {}: {}", proc.file_name().to_string_lossy(), String::from_utf8_lossy(&cmdline)));
        }
    }
    let tap = format!("t{}", &id[..14]);
    for netns in crate::network::namespaces() {
        let out = Command::new("ip").args(["-n", &netns, "link", "show", &tap]).output().unwrap();
        if out.status.success() {
            left.push(format!("tap {tap} in {netns}"));
        }
    }
    let dir = node.state_dir().join("vms/vms").join(id);
    if dir.exists() {
        left.push(format!("directory {} (sockets, disk)", dir.display()));
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    left.extend(mounts.lines().filter(|l| l.contains(id)).map(|l| format!("mount {l}")));
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let cgroup = hierarchy.path().join(node.cgroup_parent()).join(id);
        if cgroup.exists() {
            left.push(format!("cgroup {}", cgroup.display()));
        }
    }
    left
}

/// Delete workload `id` and wait until its node reports it deleted.
pub(crate) fn delete(grid: &Grid, node: &Node, id: &str) {
    let out = grid.cli_raw(&["delete", id]);
    assert!(out.status.success(), "delete failed: {}", String::from_utf8_lossy(&out.stderr));
    grid.wait_for_result(node, id, "deleted", BOOT_LIMIT);
}

#[test]
fn a_debian_vm_boots_lazily_from_the_hub_answers_ssh_keeps_its_files_and_leaves_nothing_when_deleted() {
    let grid = Grid::new();
    let node = vm_node(&grid, None);
    let dir = tempfile::tempdir().unwrap();
    let pushed = push(&grid, dir.path(), &debian_tree(), "debian-vm.flist");
    let url = pushed["url"].as_str().unwrap().to_owned();
    let image_bytes = tree_bytes(&dir.path().join("store"));
    create(&grid, "vms", "10.70.0.0/16", &[&node]);
    let (laptop, _) = Laptop::join(&grid, "vms", &node);
    let key = ssh_key(dir.path());
    let public = format!("{}.pub", key.display());

    let before = served(&grid);
    let ip = host(&grid, "vms", &node, 10);
    let id = deploy_vm(&grid, &node, &url, ("vms", &ip), &public, &["--cpu", "2", "--memory", "768"]);
    let record = grid.wait_for_result(&node, &id, "ok", BOOT_LIMIT);
    let data = &record["result"]["payload"]["data"];
    let accelerator = data["accelerator"].as_str().unwrap_or_else(|| panic!("no accelerator in {data}"));
    assert!(["kvm", "tcg"].contains(&accelerator), "{data}");
    if accelerator == "tcg" {
        let note = data["note"].as_str().unwrap_or_default();
        assert!(note.starts_with("booted with TCG: no usable KVM on this node"), "{data}");
    }

    // The deployer's key logs in; the guest has the CPUs and memory asked for.
    let seen = ssh_when_up(&laptop, &key, &ip, "uname -a; nproc; cat /proc/meminfo; hostname", &node);
    assert!(seen.starts_with("Linux "), "{seen}");
    let mut lines = seen.lines().skip(1);
    assert_eq!(lines.next(), Some("2"), "CPUs: {seen}");
    let total_kib: u64 = seen
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no MemTotal in {seen}"));
    assert!((600 * 1024..=768 * 1024).contains(&total_kib), "MemTotal {total_kib} kB for 768 MiB: {seen}");
    assert_eq!(seen.lines().last(), Some(id.as_str()), "hostname: {seen}");
    let fetched = served(&grid) - before;
    assert!(fetched * 4 < image_bytes, "the boot fetched {fetched} of the image's {image_bytes} bytes");
    // Its packets fit the overlay's WireGuard tunnels.
    assert_eq!(ssh_when_up(&laptop, &key, &ip, "cat /sys/class/net/eth0/mtu", &node).trim(), "1420");

    // A file written in the guest survives a guest reboot…
    ssh_when_up(&laptop, &key, &ip, "echo kept > /root/kept && sync", &node);
    let _ = ssh(&laptop, &key, &ip, "systemctl reboot");
    std::thread::sleep(Duration::from_secs(2));
    let after_reboot = ssh_when_up(&laptop, &key, &ip, "cat /root/kept; cat /proc/sys/kernel/random/boot_id", &node);
    assert!(after_reboot.starts_with("kept\n"), "{after_reboot}");

    // …and an agent killed and restarted, which adopts the VM rather than restarting it.
    let pid = qemu_pid(&node, &id).expect("qemu's pid file");
    let mut node = node;
    node.restart().unwrap();
    let still = ssh_when_up(&laptop, &key, &ip, "cat /root/kept; cat /proc/sys/kernel/random/boot_id", &node);
    assert_eq!(still, after_reboot, "the guest was restarted or lost its file");
    assert_eq!(qemu_pid(&node, &id), Some(pid), "qemu was restarted:\n{}", node.log());
    let console = String::from_utf8_lossy(&grid.cli_raw(&["logs", &id]).stdout).into_owned();
    assert!(console.contains("zgrid: starting /sbin/init"), "the console log: {console}");

    // A second VM from the same image on the same node fetches almost nothing.
    let before = served(&grid);
    let ip2 = host(&grid, "vms", &node, 11);
    let id2 = deploy_vm(&grid, &node, &url, ("vms", &ip2), &public, &["--memory", "512"]);
    grid.wait_for_result(&node, &id2, "ok", BOOT_LIMIT);
    ssh_when_up(&laptop, &key, &ip2, "true", &node);
    let fetched = served(&grid) - before;
    assert!(fetched * 100 < image_bytes, "the second VM fetched {fetched} of the image's {image_bytes} bytes");
    // Each qemu runs as an unprivileged user of its own.
    let uids: Vec<String> = [&id, &id2].map(|id| qemu_uid(&node, id)).to_vec();
    assert!(uids.iter().all(|u| u != "0") && uids[0] != uids[1], "qemu user ids: {uids:?}");

    for id in [&id, &id2] {
        delete(&grid, &node, id);
        let left = leftovers(&node, id);
        assert!(left.is_empty(), "VM {id} left:\n{}", left.join("\n"));
    }
}

#[test]
fn vms_that_cannot_run_are_refused_with_reasons_forced_tcg_says_so_and_a_reboot_boots_them_again() {
    let grid = Grid::new();
    let node = vm_node(&grid, Some("tcg"));
    let busybox = grid.image.to_str().unwrap().to_owned();
    create(&grid, "small", "10.71.0.0/16", &[&node]);
    let dir = tempfile::tempdir().unwrap();
    let public = format!("{}.pub", ssh_key(dir.path()).display());

    // More memory than the node has: refused before anything starts, saying what is free.
    let ip = host(&grid, "small", &node, 20);
    let id = deploy_vm(&grid, &node, &busybox, ("small", &ip), &public, &["--memory", "16000000"]);
    let record = grid.wait_for_result(&node, &id, "error", BOOT_LIMIT);
    let message = record["result"]["payload"]["message"].as_str().unwrap();
    assert!(message.contains("not enough memory on this node: asked 16000000 MiB,"), "{message}");
    assert!(message.contains("MiB free"), "{message}");

    // An image without an init: reported with the reason and the console's last lines.
    let ip = host(&grid, "small", &node, 21);
    let id = deploy_vm(&grid, &node, &busybox, ("small", &ip), &public, &["--memory", "256"]);
    let record = grid.wait_for_result(&node, &id, "error", BOOT_LIMIT);
    let message = record["result"]["payload"]["message"].as_str().unwrap();
    assert!(message.contains("the image has no executable /sbin/init"), "{message}");
    assert!(message.contains("console:"), "{message}");
    delete(&grid, &node, &id);
    assert!(leftovers(&node, &id).is_empty(), "{:?}", leftovers(&node, &id));

    // An image that boots: the result and the node's directory entry say TCG was forced.
    let image = grid.image.parent().unwrap().join("busybox-init");
    copy_tree(&grid.image, &image);
    std::fs::create_dir_all(image.join("sbin")).unwrap();
    let init = "#!/bin/sh\necho boot >> /boots\necho \"guest up, boots: $(wc -l < /boots)\"\nexec sleep 100000\n";
    std::fs::write(image.join("sbin/init"), init).unwrap();
    let executable = std::os::unix::fs::PermissionsExt::from_mode(0o755);
    std::fs::set_permissions(image.join("sbin/init"), executable).unwrap();
    let url = push(&grid, dir.path(), &image, "busybox-init.flist")["url"].as_str().unwrap().to_owned();
    let ip = host(&grid, "small", &node, 22);
    let id = deploy_vm(&grid, &node, &url, ("small", &ip), &public, &["--memory", "256"]);
    let record = grid.wait_for_result(&node, &id, "ok", BOOT_LIMIT);
    let data = &record["result"]["payload"]["data"];
    assert_eq!(data["accelerator"], "tcg", "{data}");
    let note = data["note"].as_str().unwrap_or_default();
    assert!(note.contains("--vm-accel tcg"), "{data}");
    // The node's next heartbeat carries it to its directory entry.
    let hypervisor = wait_until(BOOT_LIMIT, || {
        let nodes = grid.cli(&["nodes"]);
        let listed = nodes["items"].as_array()?.iter().find(|n| n["node_id"] == node.id())?.clone();
        listed["hypervisor"].as_str().map(str::to_owned)
    });
    let hypervisor = hypervisor.expect("the node's directory entry never named its hypervisor");
    assert!(hypervisor.starts_with("tcg: no usable KVM on this node"), "{hypervisor}");
    let console = |text: &str| {
        wait_until(BOOT_LIMIT, || {
            let out = String::from_utf8_lossy(&grid.cli_raw(&["logs", &id]).stdout).into_owned();
            out.contains(text).then_some(out)
        })
    };
    assert!(console("guest up, boots: 1").is_some(), "the guest's console never showed its init:\n{}", node.log());

    // After the machine restarts, the VM boots again on the disk it had.
    let mut node = node;
    node.kill();
    crate::node::power_loss_at(&node, &id, &node.state_dir().join("vms/vms").join(&id));
    let pid = qemu_pid(&node, &id).expect("qemu's pid file");
    let dead = || std::fs::read(format!("/proc/{pid}/cmdline")).map_or(true, |c| c.is_empty());
    assert!(wait_until(BOOT_LIMIT, || dead().then_some(())).is_some(), "qemu {pid} survived the power loss");
    std::fs::write(node.state_dir().join("workloads/boot_id"), "a-previous-boot\n").unwrap();
    node.restart().unwrap();
    assert!(console("guest up, boots: 2").is_some(), "the VM did not boot again on its disk:\n{}", node.log());

    // Its image's mount service dies: the VM boots again over a new mount, on the same disk.
    let service = node.state_dir().join("flist/mounts.sock");
    let pid = crate::hub::peer_pid(&service);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    let record = grid.wait_for_result(&node, &id, "error", BOOT_LIMIT);
    let message = record["result"]["payload"]["message"].as_str().unwrap();
    assert!(message.contains("FUSE mount is gone") && message.contains("restarting"), "{message}");
    assert!(console("guest up, boots: 3").is_some(), "the VM did not boot over a new mount:\n{}", node.log());
    grid.wait_for_result(&node, &id, "ok", BOOT_LIMIT);
    delete(&grid, &node, &id);
    assert!(leftovers(&node, &id).is_empty(), "{:?}", leftovers(&node, &id));
}

/// Copy the tree at `from` to `to` (`cp -a`).
fn copy_tree(from: &Path, to: &Path) {
    let status = Command::new("cp").arg("-a").arg(from).arg(to).status().unwrap();
    assert!(status.success());
}
