//! qemu's command line for a zgrid VM, and its control over QMP.
//!
//! The guest's root is a directory shared by virtiofsd (vhost-user), so its memory is a shared
//! memfd; its network is a tap on the owner's network bridge; its serial console a socket the
//! agent reads into a bounded log (qemu drops what the guest prints while nobody reads). qemu
//! daemonises once the VM is set up, starts paused so the agent joins it to its cgroups and
//! connects the console before the guest runs a single instruction, exits when the guest
//! panics (through the pvpanic device) instead of rebooting in a loop, and runs as a user of
//! its own under qemu's system-call filter once it has opened what it needs.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use qapi::qmp;
use tokio::net::UnixStream;

use super::accel::Accelerator;

/// TCG's translation cache for a guest of `memory_mib`, in MiB: qemu's own default, a quarter of
/// the guest's memory up to 1 GiB (at least 64 MiB). A cache smaller than the guest's hot code
/// is flushed and filled again over and over: a Kubernetes master's Go binaries translate to
/// nearly 1 GiB in their first minutes.
pub(crate) fn tcg_cache_mib(memory_mib: u64) -> u64 {
    (memory_mib / 4).clamp(64, 1024)
}

/// Limit for one QMP exchange.
const QMP_TIMEOUT: Duration = Duration::from_secs(10);

/// What qemu is started with.
#[derive(Debug, Clone)]
pub(crate) struct Machine<'a> {
    /// The workload id, in the process name.
    pub id: &'a str,
    /// Virtual CPUs.
    pub cpu: u32,
    /// Guest memory, MiB.
    pub memory_mib: u64,
    /// The accelerator.
    pub accel: &'a Accelerator,
    /// The kernel.
    pub kernel: &'a Path,
    /// The initramfs.
    pub initramfs: &'a Path,
    /// The kernel command line.
    pub cmdline: &'a str,
    /// The vhost-user sockets of the shared directories and their tags (the root first).
    pub shares: Vec<(PathBuf, String)>,
    /// The tap device of its network.
    pub tap: &'a str,
    /// Its MAC address.
    pub mac: &'a str,
    /// The QMP socket.
    pub qmp: &'a Path,
    /// The console socket.
    pub console: &'a Path,
    /// The pid file.
    pub pid_file: &'a Path,
    /// `-fw_cfg` arguments with the guest's configuration.
    pub fw_cfg: Vec<OsString>,
    /// The host user and group id qemu drops to once set up.
    pub uid: u32,
}

/// The CPU TCG emulates: one without AVX. Debian's qemu 7.2 was the first to emulate AVX and
/// AVX2 (`-cpu max` offers them), and Go programs that use them, kube-apiserver among them,
/// die there of faults in their runtime's memory copies.
const TCG_CPU: &str = "Westmere";

impl Machine<'_> {
    /// qemu's arguments.
    pub(crate) fn args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = Vec::new();
        let mut push = |items: &[&str]| args.extend(items.iter().map(OsString::from));
        let name = format!("zgrid-{},debug-threads=on", self.id);
        push(&["-name", &name, "-nodefaults", "-no-user-config", "-display", "none"]);
        match self.accel {
            Accelerator::Kvm => push(&["-machine", "q35", "-accel", "kvm", "-cpu", "host"]),
            Accelerator::Tcg(_) => {
                let tcg = format!("tcg,thread=multi,tb-size={}", tcg_cache_mib(self.memory_mib));
                push(&["-machine", "q35", "-accel", &tcg, "-cpu", TCG_CPU]);
            }
        }
        let memory = format!("memory-backend-memfd,id=mem,size={}M,share=on", self.memory_mib);
        push(&["-smp", &self.cpu.to_string(), "-m", &format!("{}M", self.memory_mib)]);
        push(&["-object", &memory, "-numa", "node,memdev=mem"]);
        for (n, (socket, tag)) in self.shares.iter().enumerate() {
            let chardev = format!("socket,id=fs{n},path={}", socket.display());
            let device = format!("vhost-user-fs-pci,chardev=fs{n},tag={tag}");
            push(&["-chardev", &chardev, "-device", &device]);
        }
        let netdev = format!("tap,id=net0,ifname={},script=no,downscript=no", self.tap);
        // The overlay's MTU, so the guest's packets fit the WireGuard tunnels; no option ROM: the
        // guest never boots from the network, and it saves boot time.
        let nic = format!("virtio-net-pci,netdev=net0,mac={},host_mtu={},romfile=", self.mac, crate::network::MTU);
        push(&["-netdev", &netdev, "-device", &nic]);
        let console = format!("socket,id=console,path={},server=on,wait=off", self.console.display());
        push(&["-chardev", &console, "-serial", "chardev:console"]);
        let qmp = format!("unix:{},server=on,wait=off", self.qmp.display());
        push(&["-qmp", &qmp]);
        push(&["-device", "pvpanic-pci", "-action", "panic=exit-failure"]);
        push(&["-device", "virtio-rng-pci"]);
        push(&["-kernel"]);
        args.push(self.kernel.into());
        args.push("-initrd".into());
        args.push(self.initramfs.into());
        args.extend(["-append".into(), self.cmdline.into()]);
        args.extend(self.fw_cfg.iter().cloned());
        args.extend(["-pidfile".into(), self.pid_file.into()]);
        args.extend(["-runas".into(), format!("{0}:{0}", self.uid).into()]);
        args.extend(
            // Not spawn=deny: daemonising forks.
            ["-sandbox", "on,obsolete=deny,resourcecontrol=deny", "-daemonize", "-S"].map(OsString::from),
        );
        args
    }
}

/// The MAC address of workload `id`'s VM: locally administered, from the id's last 40 bits.
pub(crate) fn mac(id: &str) -> String {
    let tail = &id[id.len().saturating_sub(10)..];
    let bytes: Vec<String> = tail.as_bytes().chunks(2).map(|c| String::from_utf8_lossy(c).into_owned()).collect();
    format!("02:{}", bytes.join(":"))
}

/// A QMP failure, as text for messages.
fn failed(socket: &Path, what: &str, e: impl std::fmt::Display) -> String {
    format!("QMP {what} on {}: {e}", socket.display())
}

/// Run one QMP `command` on the socket at `socket` (connecting, negotiating, and closing again,
/// so the socket is free for the next caller).
pub(crate) async fn execute<C: qmp::QmpCommand>(socket: &Path, command: C) -> Result<C::Ok, String> {
    let exchange = async {
        let stream = UnixStream::connect(socket).await.map_err(|e| failed(socket, "connect", e))?;
        let qmp = qapi::futures::QmpStreamTokio::open(stream).await.map_err(|e| failed(socket, "greeting", e))?;
        let mut qmp = qmp.negotiate().await.map_err(|e| failed(socket, "negotiation", e))?;
        qmp.execute(command).await.map_err(|e| failed(socket, C::NAME, e))
    };
    tokio::time::timeout(QMP_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| Err(failed(socket, C::NAME, format!("no answer in {} s", QMP_TIMEOUT.as_secs()))))
}

/// The guest's run state as QMP reports it (`running`, `paused`, `shutdown`, `guest-panicked`…).
pub(crate) async fn status(socket: &Path) -> Result<qmp::RunState, String> {
    Ok(execute(socket, qmp::query_status {}).await?.status)
}

/// Let a paused VM run.
pub(crate) async fn cont(socket: &Path) -> Result<(), String> {
    execute(socket, qmp::cont {}).await.map(drop)
}

/// Press the VM's power button (ACPI).
pub(crate) async fn powerdown(socket: &Path) -> Result<(), String> {
    execute(socket, qmp::system_powerdown {}).await.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_are_local_unicast_and_follow_the_id() {
        assert_eq!(mac("00112233445566ff"), "02:33:44:55:66:ff");
        assert_ne!(mac("0011223344556677"), mac("0011223344556678"));
    }
}
