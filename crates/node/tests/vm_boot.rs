//! The VM boot path against the real thing: Debian's cloud kernel (fetched by
//! `scripts/vm-kernel`), the node's initramfs, virtiofsd and qemu (TCG).
//!
//! Needs root, `apt-get install qemu-system-x86 busybox-static cpio` and the Debian mirror the
//! first time (for the kernel); skipped (with a message) when not root. Each test boots a tiny
//! busybox root whose `/sbin/init` prints what the guest got on the console and powers off.
//! Every process a test starts is killed when its fixture drops, also when the test fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use zgrid_node::vm::boot::{GuestConfig, Kernel, ROOT_TAG, STARTING_INIT, initramfs, kernel_cmdline};

/// Upper bound for a boot to end; tests assert behaviour, not speed.
const WAIT: Duration = Duration::from_secs(120);

/// The guest's init in the test image: prints its configuration, then powers off.
const GUEST_INIT: &str = "#!/bin/sh
echo \"guest: hostname $(cat /etc/hostname) $(hostname)\"
echo \"guest: key $(cat /root/.ssh/authorized_keys)\"
echo \"guest: key mode $(stat -c %a /root/.ssh/authorized_keys) $(stat -c %a /root/.ssh)\"
ip -4 -o addr show dev eth0 | sed 's/^/guest: /'
ip route | sed 's/^/guest: /'
echo \"guest: $(cat /etc/resolv.conf)\"
echo \"guest: env $(cat /etc/environment)\"
echo \"guest: cpus $(grep -c ^processor /proc/cpuinfo)\"
poweroff -f
";

/// Kills what it holds when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The kernel bundle, fetched once into the shared cache by `scripts/vm-kernel`.
fn kernel() -> Kernel {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/vm-kernel");
    let out = Command::new(script).output().expect("run scripts/vm-kernel");
    assert!(out.status.success(), "scripts/vm-kernel: {}", String::from_utf8_lossy(&out.stderr));
    let dir = String::from_utf8(out.stdout).unwrap();
    Kernel::open(Path::new(dir.trim())).unwrap()
}

/// A busybox root in `dir`, with `init` as its `/sbin/init` when given.
fn busybox_root(dir: &Path, init: Option<&str>) -> PathBuf {
    let root = dir.join("root");
    for sub in ["bin", "sbin", "etc", "proc", "sys", "dev", "root", "tmp"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("apt-get install busybox-static");
    for applet in ["sh", "cat", "echo", "ip", "sed", "grep", "stat", "hostname", "poweroff"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    if let Some(init) = init {
        use std::os::unix::fs::PermissionsExt;
        let path = root.join("sbin/init");
        std::fs::write(&path, init).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    root
}

/// Boot `root` with `config` (2 CPUs, 256 MiB) until the guest powers off; the console.
fn boot(dir: &Path, root: &Path, config: &GuestConfig) -> String {
    let kernel = kernel();
    let initrd = initramfs(&kernel, &dir.join("cache")).unwrap();
    let fw_cfg = config.write_fw_cfg(&dir.join("fw_cfg")).unwrap();
    let socket = dir.join("virtiofs.sock");
    let _virtiofsd = Killed(
        Command::new("/usr/lib/qemu/virtiofsd")
            .arg(format!("--socket-path={}", socket.display()))
            .args(["-o", &format!("source={}", root.display()), "-o", "cache=auto", "-o", "sandbox=namespace"])
            .stderr(Stdio::null())
            .spawn()
            .expect("virtiofsd: apt-get install qemu-system-common"),
    );
    let start = Instant::now();
    while !socket.exists() {
        assert!(start.elapsed() < WAIT, "virtiofsd made no socket");
        std::thread::sleep(Duration::from_millis(20));
    }
    let console = dir.join("console.log");
    let mut qemu = Killed(
        Command::new("qemu-system-x86_64")
            .args(["-accel", "tcg,thread=multi", "-m", "256", "-smp", "2", "-nodefaults", "-display", "none"])
            .args(["-no-reboot", "-serial", &format!("file:{}", console.display())])
            .arg("-kernel")
            .arg(&kernel.vmlinuz)
            .arg("-initrd")
            .arg(&initrd)
            .args(["-append", &kernel_cmdline("").unwrap()])
            .args(["-object", "memory-backend-memfd,id=mem,size=256M,share=on", "-numa", "node,memdev=mem"])
            .args(["-chardev", &format!("socket,id=root,path={}", socket.display())])
            .args(["-device", &format!("vhost-user-fs-pci,chardev=root,tag={ROOT_TAG}")])
            .args(["-netdev", "user,id=net", "-device", "virtio-net-pci,netdev=net,romfile="])
            .args(fw_cfg)
            .stdout(Stdio::null())
            .spawn()
            .expect("qemu: apt-get install qemu-system-x86"),
    );
    while qemu.0.try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < WAIT,
            "the guest did not power off: {}",
            std::fs::read_to_string(&console).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::read_to_string(&console).unwrap()
}

#[test]
fn the_guest_gets_its_configuration_and_runs_the_images_init() {
    if !is_root() {
        eprintln!("skipped: needs root (virtiofsd)");
        return;
    }
    let dir = TempDir::new().unwrap();
    let root = busybox_root(dir.path(), Some(GUEST_INIT));
    let config = GuestConfig {
        hostname: "vm-test".into(),
        address: Some("10.1.3.5/24".parse().unwrap()),
        gateway: Some("10.1.3.1".parse().unwrap()),
        dns: vec!["10.1.3.1".parse().unwrap()],
        authorized_keys: vec!["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK alice@laptop".into()],
        environment: vec![("GREETING".into(), "hello".into())],
        volumes: vec![],
    };
    let console = boot(dir.path(), &root, &config);
    let guest: Vec<&str> = console.lines().filter_map(|l| l.trim_end().strip_prefix("guest: ")).collect();
    assert!(console.contains(STARTING_INIT), "{console}");
    assert!(guest.contains(&"hostname vm-test vm-test"), "{console}");
    assert!(guest.contains(&"key ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK alice@laptop"), "{console}");
    assert!(guest.contains(&"key mode 600 700"), "{console}");
    assert!(guest.iter().any(|l| l.contains("eth0") && l.contains("inet 10.1.3.5/24")), "{console}");
    assert!(guest.iter().any(|l| l.starts_with("default via 10.1.3.1 dev eth0")), "{console}");
    assert!(guest.contains(&"nameserver 10.1.3.1"), "{console}");
    assert!(guest.contains(&"env GREETING=hello"), "{console}");
    assert!(guest.contains(&"cpus 2"), "{console}");
    // The configuration went to the image's root, where the VM's disk layer keeps it.
    assert_eq!(std::fs::read_to_string(root.join("etc/hostname")).unwrap(), "vm-test\n");
}

#[test]
fn an_image_without_init_is_reported_on_the_console() {
    if !is_root() {
        eprintln!("skipped: needs root (virtiofsd)");
        return;
    }
    let dir = TempDir::new().unwrap();
    let root = busybox_root(dir.path(), None);
    let console = boot(dir.path(), &root, &GuestConfig { hostname: "vm-test".into(), ..GuestConfig::default() });
    assert!(console.contains("zgrid: the image has no executable /sbin/init"), "{console}");
    assert!(!console.contains(STARTING_INIT), "{console}");
}
