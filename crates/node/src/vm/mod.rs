//! The VM runtime: runs `vm` workloads with Debian's qemu, each booting from an flist through
//! a virtiofs root (the image below a size-limited writable layer), on a tap in the owner's
//! network, in cgroups of its own, with its serial console kept in a bounded log.
//!
//! qemu and its virtiofsd run outside the agent (daemonised, in their own session) and are
//! adopted after the agent restarts: a VM is found from its pid file and controlled over QMP.
//! Like the container runtime, every operation is idempotent and safe after a crash at any
//! point: [`Vms::start`] finishes what an earlier attempt began or adopts a running VM, and
//! [`Vms::remove`] removes any subset of what a VM left behind.

mod accel;
pub mod boot;
mod layout;
mod qemu;

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use accel::{Accelerator, AcceleratorChoice};
use boot::{BootError, GuestConfig};

use crate::network::Tap;
use crate::runtime::cgroup::{Cgroups, Limits};
use crate::runtime::command::{Cmd, Tools, find_program};
use crate::runtime::layout::LayeredRoot;
use crate::runtime::logs::{self, LogFollower};
use crate::runtime::{RuntimeError, disk, mounts, rootfs};
use layout::VmPaths;

/// Memory qemu and virtiofsd need beside the guest's, MiB (TCG adds its translation cache).
const OVERHEAD_MIB: u64 = 192;

/// Most processes and threads of one VM's qemu and virtiofsd.
const PIDS_LIMIT: u64 = 1024;

/// Limit for starting qemu or virtiofsd (each returns once set up).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a guest gets to boot into its own init before provisioning gives up.
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);

/// How long a guest gets to shut down after its power button is pressed.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Lines of the console quoted when a guest fails.
const CONSOLE_TAIL_LINES: usize = 15;

/// Joins the cgroups named before `--`, then runs the rest: how qemu and virtiofsd start inside
/// their VM's cgroups (the workspace has no `unsafe` for a pre-exec hook).
const JOIN_CGROUPS: &str = r#"while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@""#;

/// Where `scripts/vm-kernel` puts kernels, one directory per version.
pub const KERNEL_CACHE: &str = "/var/cache/zgrid/vm-kernel";

/// The kernel put last under [`KERNEL_CACHE`], if any.
pub fn default_kernel() -> Option<PathBuf> {
    let entries = std::fs::read_dir(KERNEL_CACHE).ok()?.flatten();
    let dirs = entries.filter_map(|e| Some((e.metadata().ok().filter(|m| m.is_dir())?.modified().ok()?, e.path())));
    dirs.max().map(|(_, path)| path)
}

/// The first host user id VMs' qemu processes run as: above the containers' id ranges (which
/// end at 2^31), far from the host's own users.
const FIRST_QEMU_UID: u32 = 1 << 31;

/// Where `ip netns` keeps named network namespaces.
const NETNS_DIR: &str = "/run/netns";

/// The programs VMs need.
#[derive(Debug, Clone)]
pub(crate) struct VmTools {
    /// `qemu-system-x86_64`.
    pub qemu: PathBuf,
    /// qemu's `virtiofsd`.
    pub virtiofsd: PathBuf,
    /// `nsenter`, to start qemu in the network's namespace.
    pub nsenter: PathBuf,
    /// `sh`, for [`JOIN_CGROUPS`].
    pub sh: PathBuf,
    /// `setsid`, to start virtiofsd detached.
    pub setsid: PathBuf,
}

impl VmTools {
    fn find() -> Result<Self, RuntimeError> {
        let virtiofsd = ["/usr/lib/qemu/virtiofsd", "/usr/libexec/virtiofsd"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .ok_or(RuntimeError::ProgramMissing { program: "virtiofsd", package: "qemu-system-x86" })?;
        Ok(Self {
            qemu: find_program("qemu-system-x86_64", "qemu-system-x86")?,
            virtiofsd,
            nsenter: find_program("nsenter", "util-linux")?,
            sh: find_program("sh", "dash")?,
            setsid: find_program("setsid", "util-linux")?,
        })
    }
}

/// What a VM is started with.
#[derive(Debug, Clone)]
pub struct VmConfig {
    /// The workload id.
    pub id: String,
    /// The image's root file system (an flist mount).
    pub image: PathBuf,
    /// Virtual CPUs.
    pub cpu: u32,
    /// Guest memory, MiB.
    pub memory_mib: u64,
    /// The writable layer's size, MiB.
    pub disk_mib: u64,
    /// Its network: the namespace holding the bridge, and the tap on it.
    pub network: Tap,
    /// Hostname, address, keys and environment for the guest.
    pub guest: GuestConfig,
    /// Extra kernel command line words.
    pub kernel_args: String,
    /// Directories shared with the guest besides its root (volumes), with the tags its
    /// configuration mounts them by.
    pub shares: Vec<(PathBuf, String)>,
}

/// A started (or adopted) VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    /// qemu's pid.
    pub pid: u32,
    /// Whether it was already running (after an agent restart).
    pub adopted: bool,
    /// The accelerator it runs with.
    pub accelerator: Accelerator,
}

/// How a VM is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmState {
    /// qemu runs the guest.
    Running,
    /// qemu stopped or the guest is stopped; the text says how, with the console's last lines.
    Stopped(String),
    /// Nothing of it exists.
    Missing,
}

/// Runs VMs under one state directory and one parent cgroup.
#[derive(Clone)]
pub struct Vms {
    root: PathBuf,
    tools: VmTools,
    runtime_tools: Tools,
    cgroups: Cgroups,
    /// The kernel for images without their own.
    kernel: Option<boot::Kernel>,
    choice: AcceleratorChoice,
    accelerator: Arc<tokio::sync::OnceCell<Accelerator>>,
    shutdown_grace: Duration,
    /// The running console readers, by VM id.
    consoles: Arc<Mutex<HashMap<String, tokio::task::JoinHandle<()>>>>,
    /// Serialises the assignment of qemu's user ids.
    uids: Arc<Mutex<()>>,
}

impl std::fmt::Debug for Vms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vms").field("root", &self.root).field("kernel", &self.kernel).finish()
    }
}

impl Vms {
    /// A VM runtime keeping its state in `root` (created if missing), putting VMs in cgroup
    /// `<cgroup_parent>/<id>`, with accelerator `choice`. It can inspect and remove VMs; to
    /// start them it needs a kernel ([`Vms::with_kernel`]).
    ///
    /// Checks that qemu, virtiofsd and util-linux are installed; the accelerator is
    /// probed on first use ([`Vms::accelerator`]).
    pub fn new(root: impl Into<PathBuf>, cgroup_parent: &str, choice: AcceleratorChoice) -> Result<Self, RuntimeError> {
        let root = root.into();
        let tools = VmTools::find()?;
        let runtime_tools = Tools::find()?;
        let cgroups = Cgroups::detect(cgroup_parent)?;
        let dir = layout::vms_dir(&root);
        std::fs::create_dir_all(&dir).map_err(|e| RuntimeError::host_io("create directory", &dir, e))?;
        let root = root.canonicalize().map_err(|e| RuntimeError::host_io("resolve", &root, e))?;
        Ok(Self {
            root,
            tools,
            runtime_tools,
            cgroups,
            kernel: None,
            choice,
            accelerator: Arc::default(),
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            consoles: Arc::default(),
            uids: Arc::default(),
        })
    }

    /// The same runtime, booting images without a kernel of their own with the kernel in
    /// `dir` (as `scripts/vm-kernel` lays it out).
    pub fn with_kernel(mut self, dir: &Path) -> Result<Self, RuntimeError> {
        let kernel = boot::Kernel::open(dir).map_err(|e| RuntimeError::InvalidSetting {
            setting: "VM kernel",
            value: dir.display().to_string(),
            reason: e.to_string(),
        })?;
        self.kernel = Some(kernel);
        Ok(self)
    }

    /// The same runtime, giving guests `grace` to shut down before qemu is killed.
    pub fn with_shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// The accelerator VMs run with, probed once (see [`accel`]).
    pub async fn accelerator(&self) -> Result<Accelerator, RuntimeError> {
        let (kernel, scratch) = (self.kernel()?, layout::probe_dir(&self.root));
        let probe = || accel::choose(&self.tools, &kernel.vmlinuz, &scratch, self.choice);
        let accelerator = self.accelerator.get_or_try_init(probe).await?.clone();
        Ok(accelerator)
    }

    /// Whether anything of VM `id` exists on this node.
    pub fn has(&self, id: &str) -> bool {
        self.paths(id).is_ok_and(|p| p.dir.exists())
    }

    /// Ids of the VMs with state on disk, sorted.
    pub fn list(&self) -> Result<Vec<String>, RuntimeError> {
        crate::runtime::layout::ids_in(&layout::vms_dir(&self.root))
    }

    /// A reader of VM `id`'s console log from its recent tail onwards, or `None` when the VM
    /// does not exist on this node.
    pub fn follow_console(&self, id: &str) -> Result<Option<LogFollower>, RuntimeError> {
        let paths = self.paths(id)?;
        Ok(paths.dir.exists().then(|| LogFollower::new(id, paths.console_log())))
    }

    /// Start VM `cfg` and wait until the guest runs its own init, or adopt it when it runs.
    pub async fn start(&self, cfg: &VmConfig) -> Result<Started, RuntimeError> {
        let id = cfg.id.as_str();
        let paths = self.paths(id)?;
        let accelerator = self.accelerator().await?;
        if let Some(pid) = running_pid(id, &paths) {
            self.read_console(id, &paths);
            // A crash between starting qemu and letting the guest run leaves it paused.
            if let Ok(qapi::qmp::RunState::prelaunch) = qemu::status(&paths.qmp()).await {
                qemu::cont(&paths.qmp()).await.map_err(|e| vm_error(id, e))?;
            }
            return Ok(Started { pid, adopted: true, accelerator });
        }
        let mkdir = |p: &Path| std::fs::create_dir_all(p).map_err(|e| RuntimeError::io(id, "create directory", p, e));
        mkdir(&paths.dir)?;

        // The disk: the writable layer over the image (and the node's kernel modules).
        let tools = &self.runtime_tools;
        disk::mount(tools, id, &paths.disk_image(), &paths.layer(), cfg.disk_mib, true).await?;
        mkdir(&paths.upper())?;
        mkdir(&paths.work())?;
        mkdir(&paths.rootfs())?;
        let image_kernel = boot::Kernel::in_image(&cfg.image);
        let kernel = match &image_kernel {
            Some(kernel) => kernel,
            None => self.kernel()?,
        };
        if !mounts::is_mounted(&paths.rootfs())? {
            let mut lowers: Vec<&Path> = Vec::new();
            if image_kernel.is_none() {
                lowers.push(&kernel.root);
            }
            lowers.push(&cfg.image);
            rootfs::mount_overlay(tools, id, &lowers, &paths.upper(), &paths.work(), &paths.rootfs()).await?;
        }
        let initramfs = boot::initramfs(kernel, &layout::boot_dir(&self.root)).map_err(|e| boot_error(id, e))?;
        let fw_cfg = cfg.guest.write_fw_cfg(&paths.fwcfg()).map_err(|e| boot_error(id, e))?;
        let cmdline = boot::kernel_cmdline(&cfg.kernel_args).map_err(|e| boot_error(id, e))?;

        // A fresh start: whatever ran before (a virtiofsd whose qemu died) goes.
        self.cgroups.remove(id).await?;
        for stale in [paths.qmp(), paths.console(), paths.pid_file()] {
            remove_file(id, &stale)?;
        }
        let tcg = if matches!(accelerator, Accelerator::Tcg(_)) { qemu::tcg_cache_mib(cfg.memory_mib) } else { 0 };
        let limits =
            Limits { cpu: cfg.cpu, memory_bytes: (cfg.memory_mib + OVERHEAD_MIB + tcg) << 20, pids: PIDS_LIMIT };
        let procs = self.cgroups.create(id, &limits)?;

        let mut shares = vec![(paths.rootfs(), boot::ROOT_TAG.to_owned())];
        shares.extend(cfg.shares.iter().cloned());
        let mut sockets = Vec::new();
        for (n, (dir, tag)) in shares.iter().enumerate() {
            let socket = paths.virtiofs_socket(n);
            remove_file(id, &socket)?;
            let args: Vec<OsString> = [
                format!("--socket-path={}", socket.display()).as_str(),
                "-o",
                &format!("source={}", dir.display()),
                // Only this guest changes its root: its kernel may cache what it read. A volume
                // may be a container's too, so the guest checks again.
                "-o",
                if n == 0 { "cache=always" } else { "cache=auto" },
                // File capabilities (ping's, say) and ACLs live in extended attributes.
                "-o",
                "xattr",
                "-o",
                "sandbox=namespace",
                "-o",
                "log_level=err",
            ]
            .map(OsString::from)
            .into();
            // It waits for qemu's connection before it would daemonise: start it detached.
            let log = paths.virtiofs_log(n);
            let mut line = vec![self.tools.setsid.as_os_str().to_owned(), "-f".into()];
            line.push(self.tools.virtiofsd.as_os_str().to_owned());
            line.extend(args);
            let output = std::fs::File::create(&log).map_err(|e| RuntimeError::io(id, "create", &log, e))?;
            self.run_joined(id, &procs, line, Some(output)).await?;
            wait_for(&socket).await.map_err(|e| {
                let said = std::fs::read_to_string(&log).unwrap_or_default();
                vm_error(id, format!("{e}; it said: {}", said.trim()))
            })?;
            sockets.push((socket, tag.clone()));
        }

        let uid = self.assign_uid(id, &paths)?;
        let mac = qemu::mac(id);
        let machine = qemu::Machine {
            id,
            cpu: cfg.cpu,
            memory_mib: cfg.memory_mib,
            accel: &accelerator,
            kernel: &kernel.vmlinuz,
            initramfs: &initramfs,
            cmdline: &cmdline,
            shares: sockets,
            tap: &cfg.network.tap,
            mac: &mac,
            qmp: &paths.qmp(),
            console: &paths.console(),
            pid_file: &paths.pid_file(),
            uid,
            fw_cfg: fw_cfg.into_iter().map(OsString::from).collect(),
        };
        let logged = logs::len(&paths.console_log());
        // Into the network's namespace only: `ip netns exec` would also give qemu a copy of the
        // node's mounts, keeping other VMs' disks busy for as long as it runs.
        let netns = Path::new(NETNS_DIR).join(&cfg.network.netns);
        let mut line = vec![self.tools.nsenter.as_os_str().to_owned()];
        line.extend([OsString::from(format!("--net={}", netns.display())), self.tools.qemu.as_os_str().to_owned()]);
        line.extend(machine.args());
        self.run_joined(id, &procs, line, None).await?;
        let pid = running_pid(id, &paths)
            .ok_or_else(|| vm_error(id, "qemu daemonised but its pid file names no running qemu".to_owned()))?;
        self.read_console(id, &paths);
        qemu::cont(&paths.qmp()).await.map_err(|e| vm_error(id, e))?;
        self.wait_booted(id, &paths, logged).await?;
        Ok(Started { pid, adopted: false, accelerator })
    }

    /// Run `command` (program and arguments) in VM `id`'s cgroups (the `cgroup.procs` files
    /// `procs`), its output going to `output` when given (else captured for errors). The
    /// program daemonises or detaches, so this returns once it is set up.
    async fn run_joined(
        &self,
        id: &str,
        procs: &[PathBuf],
        command: Vec<OsString>,
        output: Option<std::fs::File>,
    ) -> Result<(), RuntimeError> {
        let mut line: Vec<OsString> = vec!["-c".into(), JOIN_CGROUPS.into(), "zgrid-vm".into()];
        line.extend(procs.iter().map(|p| p.as_os_str().to_owned()));
        line.push("--".into());
        line.extend(command);
        let cmd = Cmd::new(id, &self.tools.sh, line, START_TIMEOUT);
        let cmd = match output {
            Some(file) => {
                let err = file.try_clone().map_err(|e| RuntimeError::io(id, "duplicate", "a log file", e))?;
                cmd.stdio(file, err)
            }
            None => cmd,
        };
        cmd.run().await.map(drop)
    }

    /// The host user (and group) id VM `id`'s qemu runs as once set up: recorded in its
    /// directory, or else the lowest of [`FIRST_QEMU_UID`] on that no other VM holds, recorded
    /// durably first. One per VM, so a guest that broke out into its qemu cannot signal, trace
    /// or read another VM's.
    fn assign_uid(&self, id: &str, paths: &VmPaths) -> Result<u32, RuntimeError> {
        let recorded = |p: &VmPaths| std::fs::read_to_string(p.uid()).ok().and_then(|t| t.trim().parse::<u32>().ok());
        if let Some(uid) = recorded(paths) {
            return Ok(uid);
        }
        let _guard = self.uids.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let ids = crate::runtime::layout::ids_in(&layout::vms_dir(&self.root))?;
        let taken: std::collections::BTreeSet<u32> =
            ids.iter().filter_map(|other| recorded(&VmPaths::new(&self.root, other))).collect();
        let uid = (FIRST_QEMU_UID..).find(|uid| !taken.contains(uid)).expect("fewer VMs than ids");
        crate::store::write_durably(&paths.uid(), format!("{uid}\n").as_bytes())
            .map_err(|e| RuntimeError::io(id, "record the user id in", paths.uid(), e))?;
        Ok(uid)
    }

    /// Keep VM `id`'s console in its log, unless that already happens.
    fn read_console(&self, id: &str, paths: &VmPaths) {
        let mut consoles = self.consoles.lock().expect("lock");
        if consoles.get(id).is_some_and(|task| !task.is_finished()) {
            return;
        }
        let (socket, log, id_owned) = (paths.console(), paths.console_log(), id.to_owned());
        let task = tokio::spawn(async move {
            let stream = match tokio::net::UnixStream::connect(&socket).await {
                Ok(stream) => stream,
                Err(e) => return tracing::warn!(vm = %id_owned, error = %e, "cannot read the VM's console"),
            };
            if let Err(e) = logs::pump_one(&id_owned, stream, &socket, &log).await {
                tracing::warn!(vm = %id_owned, error = %e, "stopped reading the VM's console");
            }
        });
        consoles.insert(id.to_owned(), task);
    }

    /// Wait until the guest hands over to its own init (the console, from byte `from` on, shows
    /// [`boot::STARTING_INIT`]); an error quotes the console when qemu stops first or time runs out.
    async fn wait_booted(&self, id: &str, paths: &VmPaths, from: u64) -> Result<(), RuntimeError> {
        let deadline = tokio::time::Instant::now() + BOOT_TIMEOUT;
        loop {
            let printed = logs::read_from(id, &paths.console_log(), from, logs::LOG_KEEP_BYTES)?;
            let printed = String::from_utf8_lossy(&printed);
            if printed.contains(boot::STARTING_INIT) {
                return Ok(());
            }
            if running_pid(id, paths).is_none() {
                // What qemu printed last may still be on its way through the socket.
                tokio::time::sleep(Duration::from_millis(200)).await;
                let printed = logs::read_from(id, &paths.console_log(), from, logs::LOG_KEEP_BYTES)?;
                let tail = self.console_tail(id);
                return Err(match guest_failure(&String::from_utf8_lossy(&printed)) {
                    Some(said) => RuntimeError::GuestRefused { id: id.to_owned(), reason: format!("{said}{tail}") },
                    None => vm_error(id, format!("the guest stopped before it booted{tail}")),
                });
            }
            if tokio::time::Instant::now() >= deadline {
                // Stopped, so that the next attempt boots it afresh rather than adopting it.
                if let Err(e) = self.cgroups.remove(id).await {
                    tracing::warn!(vm = id, error = %e, "cannot stop a VM that did not boot");
                }
                let waited = BOOT_TIMEOUT.as_secs();
                return Err(vm_error(id, format!("the guest did not boot in {waited} s{}", self.console_tail(id))));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// What VM `id`'s console printed since the guest last started its own init (all of the
    /// kept log when that is not in it).
    pub fn console_since_init(&self, id: &str) -> Result<String, RuntimeError> {
        let paths = self.paths(id)?;
        let bytes = logs::read_from(id, &paths.console_log(), 0, logs::LOG_KEEP_BYTES)?;
        let text = String::from_utf8_lossy(&bytes);
        let after = text.rfind(boot::STARTING_INIT).map_or(0, |at| at + boot::STARTING_INIT.len());
        Ok(text[after..].to_owned())
    }

    /// The console's last lines, as `"; console: …"` (empty when it printed nothing).
    pub fn console_tail(&self, id: &str) -> String {
        let Ok(paths) = self.paths(id) else { return String::new() };
        let bytes = logs::read_from(id, &paths.console_log(), 0, 8192).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = text.lines().map(str::trim_end).filter(|l| !l.is_empty()).collect();
        match lines.len() {
            0 => String::new(),
            n => format!("; console:\n{}", lines[n.saturating_sub(CONSOLE_TAIL_LINES)..].join("\n")),
        }
    }

    /// How VM `id` is doing.
    pub async fn state(&self, id: &str) -> VmState {
        let Ok(paths) = self.paths(id) else { return VmState::Missing };
        if !paths.dir.exists() {
            return VmState::Missing;
        }
        if running_pid(id, &paths).is_none() {
            return VmState::Stopped(format!("the VM stopped{}", self.console_tail(id)));
        }
        match qemu::status(&paths.qmp()).await {
            Ok(qapi::qmp::RunState::running | qapi::qmp::RunState::prelaunch) => VmState::Running,
            Ok(other) => VmState::Stopped(format!("the guest is {other:?}{}", self.console_tail(id))),
            Err(e) => {
                tracing::warn!(vm = id, error = %e, "cannot ask qemu how the VM is doing");
                VmState::Running
            }
        }
    }

    /// Kill VM `id` (its root is gone: the guest cannot shut down) and detach its root's
    /// overlay, so that the next [`Vms::start`] boots it over the image as it is then, on the
    /// same disk.
    pub async fn stop_for_new_image(&self, id: &str) -> Result<(), RuntimeError> {
        let paths = self.paths(id)?;
        if let Some(task) = self.consoles.lock().expect("lock").remove(id) {
            task.abort();
        }
        self.cgroups.remove(id).await?;
        rootfs::detach(id, &paths.rootfs())
    }

    /// Stop VM `id` (ACPI shutdown, then kill after the grace period) and remove everything of
    /// it here: processes, cgroups, sockets, mounts and disk (its tap is the network's, see
    /// [`crate::network::Networks::detach_tap`]).
    pub async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        let paths = self.paths(id)?;
        if let Some(pid) = running_pid(id, &paths) {
            if let Err(e) = qemu::powerdown(&paths.qmp()).await {
                tracing::warn!(vm = id, error = %e, "cannot ask the guest to shut down; killing it");
            }
            let deadline = tokio::time::Instant::now() + self.shutdown_grace;
            while running_pid(id, &paths).is_some() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            if running_pid(id, &paths).is_some() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX)),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        if let Some(task) = self.consoles.lock().expect("lock").remove(id) {
            task.abort();
        }
        self.cgroups.remove(id).await?;
        disk::release(&self.runtime_tools, id, &paths.dir, &paths.disk_image()).await?;
        match std::fs::remove_dir_all(&paths.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(RuntimeError::io(id, "remove", &paths.dir, e)),
            _ => Ok(()),
        }
    }

    /// The node's kernel, for images without their own.
    fn kernel(&self) -> Result<&boot::Kernel, RuntimeError> {
        self.kernel.as_ref().ok_or_else(|| RuntimeError::InvalidSetting {
            setting: "VM kernel",
            value: String::new(),
            reason: format!("none given: run scripts/vm-kernel (it fills {KERNEL_CACHE}) or pass --vm-kernel DIR"),
        })
    }

    /// The paths of VM `id`, once the id is known to be safe in paths.
    fn paths(&self, id: &str) -> Result<VmPaths, RuntimeError> {
        crate::runtime::check_id(id)?;
        Ok(VmPaths::new(&self.root, id))
    }
}

/// The pid of VM `id`'s qemu if it runs: the pid file names a live process started for it.
fn running_pid(id: &str, paths: &VmPaths) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(paths.pid_file()).ok()?.trim().parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let name = format!("zgrid-{id},");
    cmdline.split(|&b| b == 0).any(|arg| arg.starts_with(name.as_bytes())).then_some(pid)
}

/// What the guest's initramfs said when it gave up: its last `zgrid: ` line that is not the
/// hand-over to the image's init.
fn guest_failure(console: &str) -> Option<&str> {
    let said = console.lines().rev().filter(|l| !l.starts_with(boot::STARTING_INIT));
    said.into_iter().find_map(|l| l.trim_end().strip_prefix(boot::CONSOLE_PREFIX))
}

/// A boot preparation failure of VM `id`: what the deployment or image must change, or a
/// file the node could not read or write.
fn boot_error(id: &str, e: BootError) -> RuntimeError {
    match e {
        BootError::Invalid(reason) => RuntimeError::GuestRefused { id: id.to_owned(), reason },
        BootError::Io { .. } => vm_error(id, e.to_string()),
    }
}

/// Remove the file at `path` if it exists.
fn remove_file(id: &str, path: &Path) -> Result<(), RuntimeError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(RuntimeError::io(id, "remove", path, e)),
        _ => Ok(()),
    }
}

/// Wait (briefly) for the socket at `path` to appear.
async fn wait_for(path: &Path) -> Result<(), String> {
    for _ in 0..100 {
        if path.exists() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("virtiofsd did not make its socket {}", path.display()))
}

/// A VM failure that is not a command's or a file's.
fn vm_error(id: &str, reason: String) -> RuntimeError {
    RuntimeError::Vm { id: id.to_owned(), reason }
}
