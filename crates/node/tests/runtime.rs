//! The container runtime against the real thing: runc, loop devices, overlayfs and cgroups.
//!
//! Needs root and `apt-get install runc busybox-static e2fsprogs`; skipped (with a message) when
//! not root. Every test uses its own state directory and container ids, and its fixture removes
//! its containers when dropped, also when the test fails. The confinement tests that need a
//! Debian userland (python3, redis-server) also need `debootstrap` ([`debian_image`]).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tempfile::TempDir;
use tokio::task::JoinHandle;
use zgrid_node::runtime::{Bind, ContainerConfig, ContainerState, IDS_PER_CONTAINER, Runtime};

/// Upper bound for waiting on a container; tests assert behaviour, not speed.
const WAIT: Duration = Duration::from_secs(20);

/// Busybox applets linked into the test image.
const APPLETS: [&str; 22] = [
    "sh", "echo", "cat", "sleep", "dd", "head", "tail", "yes", "sort", "ls", "mkdir", "rm", "true", "hostname", "env",
    "df", "grep", "unshare", "mount", "mknod", "id", "touch",
];

/// A state directory, a busybox image and the containers a test made.
struct Fixture {
    runtime: Runtime,
    /// The cgroup parent, unique to this test process.
    parent: String,
    image: PathBuf,
    ids: Vec<String>,
    /// The tasks keeping the containers' output, as the agent runs them.
    pumps: Vec<JoinHandle<()>>,
    dir: TempDir,
}

impl Fixture {
    /// A fresh runtime, or `None` (the test skips) when not root.
    fn new() -> Option<Self> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: the runtime tests need root");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        // Container root, an unprivileged host user, resolves paths below it.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let image = dir.path().join("image");
        make_image(&image);
        let parent = format!("zgrid-test-{}", std::process::id());
        let runtime = Runtime::new(dir.path().join("state"), &parent)
            .expect("runtime (needs: apt-get install runc busybox-static e2fsprogs)")
            .with_stop_grace(Duration::from_secs(2));
        assert!(runtime.user_namespaces(), "this kernel makes idmapped mounts, so containers get user namespaces");
        Some(Self { runtime, parent, image, ids: Vec::new(), pumps: Vec::new(), dir })
    }

    /// Start the container and keep its output, as the agent does.
    async fn start(&mut self, cfg: &ContainerConfig) {
        self.runtime.start(cfg).await.unwrap();
        self.pump(&cfg.id);
    }

    /// Keep container `id`'s output in its log.
    fn pump(&mut self, id: &str) {
        let (runtime, id) = (self.runtime.clone(), id.to_owned());
        self.pumps.push(tokio::spawn(async move {
            if let Err(e) = runtime.pump_logs(&id, |_, _| {}).await {
                eprintln!("output of {id}: {e}");
            }
        }));
    }

    /// Wait until `id`'s log satisfies `done`, and return it.
    async fn wait_logs(&self, id: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let logs = self.logs(id);
            if done(&logs) {
                return logs;
            }
            assert!(tokio::time::Instant::now() < deadline, "container {id} logged only this after {WAIT:?}:\n{logs}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A config for a new container `name` running `sh -c script`, removed when the fixture drops.
    fn config(&mut self, name: &str, script: &str) -> ContainerConfig {
        let id = format!("t{}-{name}", std::process::id());
        self.ids.push(id.clone());
        ContainerConfig {
            id,
            image: self.image.clone(),
            image_config: None,
            env: vec![],
            args: vec!["/bin/sh".into(), "-c".into(), script.into()],
            hostname: "box1".into(),
            cpu: 1,
            memory_mib: 64,
            disk_mib: 64,
            pids_limit: 64,
            netns: None,
            binds: vec![],
            host_init: None,
        }
    }

    /// Wait until `id`'s state satisfies `done`, and return it.
    async fn wait(&self, id: &str, done: impl Fn(&ContainerState) -> bool) -> ContainerState {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let state = self.runtime.state(id).await.unwrap();
            if done(&state) {
                return state;
            }
            assert!(tokio::time::Instant::now() < deadline, "container {id} still {state:?} after {WAIT:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The container's log as text.
    fn logs(&self, id: &str) -> String {
        String::from_utf8_lossy(&self.runtime.logs(id).unwrap()).into_owned()
    }

    /// The container's directory.
    fn container_dir(&self, id: &str) -> PathBuf {
        self.runtime.root().join("containers").join(id)
    }

    /// Check that nothing of container `id` is left anywhere.
    fn assert_gone(&self, id: &str) {
        let dir = self.container_dir(id);
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let needle = dir.to_string_lossy().into_owned();
        assert!(!mountinfo.contains(&needle), "mounts left under {needle}:\n{mountinfo}");
        for entry in std::fs::read_dir("/sys/block").unwrap().flatten() {
            let backing = std::fs::read_to_string(entry.path().join("loop/backing_file")).unwrap_or_default();
            assert!(!backing.contains(&needle), "loop device {:?} still backed by {backing}", entry.file_name());
        }
        for hierarchy in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
            let cgroup = hierarchy.path().join(&self.parent).join(id);
            assert!(!cgroup.exists(), "cgroup {} left", cgroup.display());
        }
        assert!(!dir.exists(), "container directory {} left", dir.display());
        let runc_root = self.runtime.root().join("runc");
        let status = std::process::Command::new("runc").arg("--root").arg(&runc_root).args(["state", id]).output();
        assert!(!status.unwrap().status.success(), "runc still knows {id}");
        assert!(!self.runtime.list().unwrap().contains(&id.to_owned()), "list() still has {id}");
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for pump in &self.pumps {
            pump.abort();
        }
        // The test's own tokio runtime may be the one dropping us: clean up on a fresh thread.
        std::thread::scope(|s| {
            s.spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                for id in &self.ids {
                    if let Err(e) = rt.block_on(self.runtime.remove(id)) {
                        eprintln!("cleanup of {id} in {} failed: {e}", self.dir.path().display());
                    }
                }
            });
        });
        for hierarchy in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
            let _ = std::fs::remove_dir(hierarchy.path().join(&self.parent));
        }
    }
}

/// A root filesystem of busybox and symbolic links to its applets.
fn make_image(image: &Path) {
    for d in ["bin", "etc", "proc", "sys", "dev", "tmp"] {
        std::fs::create_dir_all(image.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", image.join("bin/busybox")).expect("/bin/busybox (apt-get install busybox-static)");
    for applet in APPLETS {
        std::os::unix::fs::symlink("busybox", image.join("bin").join(applet)).unwrap();
    }
}

/// Read a cgroup file as a trimmed string.
fn cgroup_file(dir: &Path, name: &str) -> String {
    let path = dir.join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).trim().to_owned()
}

#[tokio::test]
async fn env_args_and_logs() {
    let Some(mut f) = Fixture::new() else { return };
    let mut cfg = f.config("env", "echo hello $GREETING; echo err >&2; cat /etc/hostname; hostname");
    cfg.env.push(("GREETING".into(), "world".into()));
    f.start(&cfg).await;
    let state = f.wait(&cfg.id, |s| matches!(s, ContainerState::Stopped { .. })).await;
    assert_eq!(state, ContainerState::Stopped { oom_killed: false });
    let logs = f.wait_logs(&cfg.id, |l| l.matches("box1").count() >= 2).await;
    assert!(logs.contains("hello world") && logs.contains("err"), "logs: {logs}");
    assert_eq!(logs.matches("box1").count(), 2, "hostname in /etc/hostname and uts namespace: {logs}");
}

#[tokio::test]
async fn how_a_container_ended_is_recorded_with_its_code_or_signal() {
    use zgrid_node::runtime::Exit;
    let Some(mut f) = Fixture::new() else { return };
    let cfg = f.config("exit3", "echo bye; exit 3");
    f.start(&cfg).await;
    f.wait(&cfg.id, |s| matches!(s, ContainerState::Stopped { .. })).await;
    assert_eq!(f.runtime.exit(&cfg.id).unwrap(), Some(Exit { code: Some(3), signal: None }));
    // Started again, it has no end yet; stopped, it ended by the signal that stopped it.
    let cfg = f.config("stopped", "trap '' TERM; while :; do sleep 1; done");
    f.start(&cfg).await;
    assert_eq!(f.runtime.exit(&cfg.id).unwrap(), None, "still running");
    f.runtime.stop(&cfg.id).await.unwrap();
    assert_eq!(f.runtime.exit(&cfg.id).unwrap(), Some(Exit { code: None, signal: Some(9) }));
}

#[tokio::test]
async fn a_program_missing_from_the_image_is_refused_before_runc_runs_without_host_paths() {
    use zgrid_node::runtime::RuntimeError;
    let Some(mut f) = Fixture::new() else { return };
    std::fs::write(f.image.join("bin/notes"), "not a program").unwrap();
    for (program, problem) in [
        ("/bin/nosuchprog", "is not in the image"),
        ("nosuchprog", "is not in the image (looked in PATH /usr/local/sbin:"),
        ("/bin/notes", "cannot run: in the image it is not executable"),
        ("/tmp", "cannot run: in the image it is a directory"),
    ] {
        let mut cfg = f.config(&format!("missing{}", f.ids.len()), "");
        cfg.args = vec![program.to_owned(), "--flag".to_owned()];
        let error = f.runtime.start(&cfg).await.unwrap_err();
        assert!(matches!(error, RuntimeError::EntrypointMissing { .. }), "{error}");
        let told = error.for_owner(f.runtime.root());
        assert!(told.starts_with(&format!("the entrypoint {program:?} {problem}")), "{told}");
        assert!(told.contains("--entrypoint"), "says what to change: {told}");
        assert!(!told.contains(&*f.dir.path().to_string_lossy()) && !told.contains("runc"), "{told}");
        assert_eq!(f.runtime.state(&cfg.id).await.unwrap(), ContainerState::Stopped { oom_killed: false });
    }
    // Names are looked up in the container's PATH, and links resolved inside the image.
    let mut cfg = f.config("found", "");
    cfg.args = vec!["echo".to_owned(), "found".to_owned()];
    f.start(&cfg).await;
    f.wait_logs(&cfg.id, |l| l.contains("found")).await;
}

#[tokio::test]
async fn image_config_gives_the_default_process() {
    let Some(mut f) = Fixture::new() else { return };
    std::fs::create_dir(f.image.join(".zgrid")).unwrap();
    let json = r#"{"entrypoint":["/bin/sh","-c"],"cmd":["echo from-image $X in $(pwd)"],"env":["X=image-env"],"workdir":"/tmp"}"#;
    std::fs::write(f.image.join(".zgrid/config.json"), json).unwrap();
    let mut cfg = f.config("img", "");
    cfg.args.clear();
    f.start(&cfg).await;
    f.wait_logs(&cfg.id, |l| l.contains("from-image image-env in /tmp")).await;
}

#[tokio::test]
async fn limits_are_enforced() {
    let Some(mut f) = Fixture::new() else { return };
    let mut cfg = f.config("lim", "sleep 60");
    cfg.memory_mib = 32;
    f.start(&cfg).await;
    f.wait(&cfg.id, |s| matches!(s, ContainerState::Running { .. })).await;
    let cpu = f.runtime.cgroup_path(&cfg.id, "cpu");
    let memory = f.runtime.cgroup_path(&cfg.id, "memory");
    let pids = f.runtime.cgroup_path(&cfg.id, "pids");
    if cpu.join("cpu.max").exists() {
        assert_eq!(cgroup_file(&cpu, "cpu.max"), "100000 100000");
        assert_eq!(cgroup_file(&memory, "memory.max"), (32u64 << 20).to_string());
    } else {
        assert_eq!(cgroup_file(&cpu, "cpu.cfs_quota_us"), "100000");
        assert_eq!(cgroup_file(&cpu, "cpu.cfs_period_us"), "100000");
        assert_eq!(cgroup_file(&memory, "memory.limit_in_bytes"), (32u64 << 20).to_string());
        if memory.join("memory.memsw.limit_in_bytes").exists() {
            assert_eq!(cgroup_file(&memory, "memory.memsw.limit_in_bytes"), (32u64 << 20).to_string());
        }
    }
    assert_eq!(cgroup_file(&pids, "pids.max"), "64");

    // busybox sort holds every line in memory: 100 M short lines are far beyond 32 MiB.
    let mut hog = f.config("oom", "yes | head -c 200m | sort > /dev/null");
    hog.memory_mib = 32;
    f.start(&hog).await;
    let state = f.wait(&hog.id, |s| matches!(s, ContainerState::Stopped { .. })).await;
    assert_eq!(state, ContainerState::Stopped { oom_killed: true }, "logs: {}", f.logs(&hog.id));
    assert_eq!(f.runtime.state(&hog.id).await.unwrap(), ContainerState::Stopped { oom_killed: true });
}

#[tokio::test]
async fn writable_layer_is_size_limited() {
    let Some(mut f) = Fixture::new() else { return };
    let cfg = f.config("disk", "dd if=/dev/zero of=/big bs=1M count=100; echo dd-exit=$?");
    f.start(&cfg).await;
    let logs = f.wait_logs(&cfg.id, |l| l.contains("dd-exit=")).await;
    assert!(logs.contains("No space left on device"), "logs: {logs}");
    assert!(!logs.contains("dd-exit=0"), "logs: {logs}");
}

#[tokio::test]
async fn remove_leaves_nothing() {
    let Some(mut f) = Fixture::new() else { return };
    let cfg = f.config("rm", "trap 'echo bye; exit 0' TERM; while true; do sleep 1; done");
    f.start(&cfg).await;
    f.wait(&cfg.id, |s| matches!(s, ContainerState::Running { .. })).await;
    assert!(f.container_dir(&cfg.id).join("rootfs/bin/busybox").exists());
    f.runtime.remove(&cfg.id).await.unwrap();
    f.assert_gone(&cfg.id);
    assert_eq!(f.runtime.state(&cfg.id).await.unwrap(), ContainerState::Missing);
    f.runtime.remove(&cfg.id).await.unwrap();
    assert!(matches!(f.runtime.logs(&cfg.id), Err(zgrid_node::runtime::RuntimeError::NotFound { .. })));
}

#[tokio::test]
async fn start_is_idempotent_and_survives_an_agent_restart() {
    let Some(mut f) = Fixture::new() else { return };
    let cfg = f.config("idem", "echo up; sleep 60");
    f.start(&cfg).await;
    let first = f.wait(&cfg.id, |s| matches!(s, ContainerState::Running { .. })).await;
    f.runtime.start(&cfg).await.unwrap();
    assert_eq!(f.runtime.state(&cfg.id).await.unwrap(), first);
    // A new agent on the same state directory adopts the container.
    let restarted = Runtime::new(f.runtime.root(), &f.parent).unwrap();
    assert_eq!(restarted.list().unwrap(), std::slice::from_ref(&cfg.id));
    assert_eq!(restarted.state(&cfg.id).await.unwrap(), first);
    restarted.start(&cfg).await.unwrap();
    assert_eq!(restarted.state(&cfg.id).await.unwrap(), first);
    assert_eq!(f.wait_logs(&cfg.id, |l| l.contains("up")).await.matches("up").count(), 1);
}

#[tokio::test]
async fn half_created_containers_are_finished_or_removed() {
    let Some(mut f) = Fixture::new() else { return };
    // Crash after the root filesystem was prepared and runc made cgroups: start finishes the job.
    let cfg = f.config("half", "sleep 60");
    f.runtime.prepare(&cfg).await.unwrap();
    f.runtime.prepare(&cfg).await.unwrap();
    assert_eq!(f.runtime.state(&cfg.id).await.unwrap(), ContainerState::Stopped { oom_killed: false });
    std::fs::create_dir_all(f.runtime.cgroup_path(&cfg.id, "memory")).unwrap();
    f.start(&cfg).await;
    f.wait(&cfg.id, |s| matches!(s, ContainerState::Running { .. })).await;

    // The same leftovers, removed instead.
    let other = f.config("half2", "sleep 60");
    f.runtime.prepare(&other).await.unwrap();
    for controller in ["memory", "cpu", "pids"] {
        std::fs::create_dir_all(f.runtime.cgroup_path(&other.id, controller)).unwrap();
    }
    assert_eq!(f.runtime.list().unwrap().len(), 2);
    f.runtime.remove(&other.id).await.unwrap();
    f.assert_gone(&other.id);

    // A start refused after its root filesystem was made leaves a container that removes cleanly.
    let mut broken = f.config("broken", "");
    broken.args = vec!["/no/such/program".into()];
    let err = f.runtime.start(&broken).await.unwrap_err().to_string();
    assert!(err.contains("/no/such/program"), "{err}");
    f.runtime.remove(&broken.id).await.unwrap();
    f.assert_gone(&broken.id);
}

#[tokio::test]
async fn volumes_are_size_limited_outlive_containers_and_leave_nothing_when_removed() {
    let Some(mut f) = Fixture::new() else { return };
    let volume = format!("v{}", std::process::id());
    let data = f.runtime.create_volume(&volume, 16).await.unwrap();
    assert_eq!(f.runtime.volume(&volume).unwrap().as_deref(), Some(data.as_path()));

    let mut writer =
        f.config("volw", "echo kept > /data/file; dd if=/dev/zero of=/data/big bs=1M count=32; echo dd-exit=$?");
    writer.binds.push(Bind { source: data.clone(), destination: "/data".into() });
    f.start(&writer).await;
    let logs = f.wait_logs(&writer.id, |l| l.contains("dd-exit=")).await;
    assert!(logs.contains("No space left on device") && !logs.contains("dd-exit=0"), "logs: {logs}");
    f.runtime.remove(&writer.id).await.unwrap();

    // Unmounted (as by a reboot) and made again: the data is still there, for another container.
    let dir = data.parent().unwrap().to_owned();
    assert!(std::process::Command::new("umount").arg(&data).status().unwrap().success());
    assert_eq!(f.runtime.volume(&volume).unwrap(), None);
    assert_eq!(f.runtime.create_volume(&volume, 16).await.unwrap(), data);
    let mut reader = f.config("volr", "cat /data/file");
    reader.binds.push(Bind { source: data.clone(), destination: "/data".into() });
    f.start(&reader).await;
    assert_eq!(f.wait_logs(&reader.id, |l| !l.is_empty()).await.trim(), "kept");
    f.runtime.remove(&reader.id).await.unwrap();

    assert_eq!(f.runtime.list_volumes().unwrap(), std::slice::from_ref(&volume));
    f.runtime.remove_volume(&volume).await.unwrap();
    f.runtime.remove_volume(&volume).await.unwrap();
    assert!(!dir.exists(), "{} remains", dir.display());
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mountinfo.contains(&*dir.to_string_lossy()), "mounts remain:\n{mountinfo}");
    assert!(f.runtime.list_volumes().unwrap().is_empty());
}

/// The host ids of process `pid`: real uid and gid.
fn host_ids(pid: u32) -> (u32, u32) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u32 {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    (field("Uid:"), field("Gid:"))
}

/// Start `script` in a container of `f`'s busybox image and return its log once it printed
/// `end`.
async fn run_to_end(f: &mut Fixture, name: &str, script: &str) -> String {
    let cfg = f.config(name, &format!("{script}; echo end"));
    f.start(&cfg).await;
    f.wait_logs(&cfg.id, |l| l.contains("end\n")).await
}

#[tokio::test]
async fn containers_run_as_their_own_id_range_under_a_seccomp_filter() {
    let Some(mut f) = Fixture::new() else { return };
    let script = "grep Seccomp: /proc/self/status; cat /proc/self/uid_map; echo uid=$(id -u); touch /made-here; \
                  echo data > /data/file; echo ready; sleep 60";
    let volume = format!("v{}", std::process::id());
    let data = f.runtime.create_volume(&volume, 16).await.unwrap();
    let mut cfg = f.config("ids", script);
    cfg.binds.push(Bind { source: data.clone(), destination: "/data".into() });
    f.start(&cfg).await;
    let logs = f.wait_logs(&cfg.id, |l| l.contains("ready")).await;
    let range = f.runtime.id_range(&cfg.id).unwrap().expect("an id range");
    assert!(logs.contains("Seccomp:\t2"), "no seccomp filter: {logs}");
    let words: Vec<&str> = logs.split_whitespace().collect();
    let map = ["0".to_owned(), range.base().to_string(), IDS_PER_CONTAINER.to_string()];
    assert!(words.windows(3).any(|w| w == map), "uid_map: {logs}");
    assert!(logs.contains("uid=0"), "root inside: {logs}");
    let ContainerState::Running { pid } = f.runtime.state(&cfg.id).await.unwrap() else { panic!("not running") };
    assert_eq!(host_ids(pid), (range.base(), range.base()), "container root is the range's first id on the host");
    let made = f.container_dir(&cfg.id).join("layer/upper/made-here");
    assert_eq!(std::fs::metadata(&made).unwrap().uid(), range.base(), "the writable layer holds the range's ids");
    let file = std::fs::metadata(data.join("file")).unwrap();
    assert_eq!((file.uid(), file.gid()), (0, 0), "a volume keeps ids 0-65535 on disk (it is idmapped)");
    f.runtime.remove(&cfg.id).await.unwrap();

    // Ranges never overlap, and survive a new runtime (an agent restart).
    let other = f.config("ids2", "sleep 60");
    f.start(&other).await;
    let second = f.runtime.id_range(&other.id).unwrap().unwrap();
    let again = Runtime::new(f.runtime.root(), &f.parent).unwrap().id_range(&other.id).unwrap();
    assert_eq!(again, Some(second));
    f.runtime.remove(&other.id).await.unwrap();
    f.runtime.remove_volume(&volume).await.unwrap();
}

#[tokio::test]
async fn new_user_namespaces_are_refused() {
    let Some(mut f) = Fixture::new() else { return };
    let logs = run_to_end(&mut f, "userns", "unshare -U id; echo unshare=$?").await;
    assert!(logs.contains("Operation not permitted") && !logs.contains("unshare=0"), "{logs}");
}

#[tokio::test]
async fn mounts_are_refused() {
    let Some(mut f) = Fixture::new() else { return };
    let logs = run_to_end(
        &mut f,
        "mount",
        "mount -t tmpfs none /tmp; echo mount=$?; mount -o remount,rw /sys; echo remount=$?",
    )
    .await;
    assert!(!logs.contains("mount=0") && !logs.contains("remount=0"), "{logs}");
    assert!(logs.contains("permission denied"), "{logs}");
}

#[tokio::test]
async fn device_nodes_are_refused_but_fifos_work() {
    let Some(mut f) = Fixture::new() else { return };
    let logs =
        run_to_end(&mut f, "mknod", "mknod /tmp/mem c 1 1; echo mknod=$?; mknod /tmp/fifo p; echo fifo=$?").await;
    assert!(!logs.contains("mknod=0") && logs.contains("fifo=0"), "{logs}");
}

#[tokio::test]
async fn a_fork_bomb_stops_at_its_limit_and_other_containers_still_start_processes() {
    let Some(mut f) = Fixture::new() else { return };
    let pids_parent = f.runtime.cgroup_path("x", "pids").parent().unwrap().to_owned();
    assert_eq!(cgroup_file(&pids_parent, "pids.max"), f.runtime.node_pids_limit().to_string());
    // The inner shell gives up when a fork fails; the outer one starts another.
    let bomb = f.config("bomb", "while true; do sh -c 'while true; do sleep 1000 & done'; done");
    f.start(&bomb).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while f.runtime.pids_limit_hits(&bomb.id).unwrap() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "the fork bomb never reached its limit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pids = f.runtime.cgroup_path(&bomb.id, "pids");
    let current: u64 = cgroup_file(&pids, "pids.current").parse().unwrap();
    assert!(current <= 64, "the bomb holds {current} pids, beyond its limit");
    let other = f.config("alive", "echo alive; sh -c 'echo child'");
    f.start(&other).await;
    f.wait_logs(&other.id, |l| l.contains("alive\nchild\n")).await;
}

#[tokio::test]
async fn endless_output_keeps_the_log_bounded() {
    let Some(mut f) = Fixture::new() else { return };
    let cfg = f.config("yes", "yes");
    f.runtime.start(&cfg).await.unwrap();
    let passed = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (runtime, id, counter) = (f.runtime.clone(), cfg.id.clone(), passed.clone());
    f.pumps.push(tokio::spawn(async move {
        let count = |_, bytes: &[u8]| {
            counter.fetch_add(bytes.len() as u64, std::sync::atomic::Ordering::Relaxed);
        };
        runtime.pump_logs(&id, count).await.unwrap();
    }));
    let log = f.container_dir(&cfg.id).join("log");
    let bound = zgrid_node::runtime::LOG_TRIM_BYTES + zgrid_node::runtime::READ_BYTES as u64;
    let deadline = tokio::time::Instant::now() + WAIT * 3;
    while passed.load(std::sync::atomic::Ordering::Relaxed) < 8 * bound {
        let size = std::fs::metadata(&log).map_or(0, |m| m.len());
        assert!(size <= bound, "the log holds {size} bytes, more than {bound}");
        assert!(tokio::time::Instant::now() < deadline, "yes wrote too little in {:?}", WAIT * 3);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let tail = f.logs(&cfg.id);
    assert!(tail.len() as u64 >= zgrid_node::runtime::LOG_KEEP_BYTES / 2 && tail.starts_with("y\n"), "{}", tail.len());
}

/// How the Debian test image is made; its cache is keyed by these.
const DEBIAN: [&str; 5] =
    ["--variant=minbase", "--include=redis-server,python3", "bookworm", "", "http://deb.debian.org/debian"];

/// Where images built for tests are kept between runs, outside any clone.
const IMAGE_CACHE: &str = "/var/cache/zgrid";

/// A Debian bookworm root filesystem with redis-server and python3 (python3-minimal lacks
/// ctypes), made with `debootstrap` once per machine (about two minutes) and kept in
/// [`IMAGE_CACHE`] under the hash of its inputs; concurrent tests wait for one build.
fn debian_image() -> PathBuf {
    let key = hex::encode(&blake3::hash(DEBIAN.join(" ").as_bytes()).as_bytes()[..8]);
    let dir = Path::new(IMAGE_CACHE).join(format!("debian-{key}"));
    let (rootfs, done) = (dir.join("rootfs"), dir.join("complete"));
    std::fs::create_dir_all(&dir).unwrap();
    let lock = std::fs::File::create(dir.join("lock")).unwrap();
    let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).unwrap();
    if !done.exists() {
        let _ = std::fs::remove_dir_all(&rootfs);
        let [variant, include, suite, _, mirror] = DEBIAN;
        let out = std::process::Command::new("debootstrap")
            .args([variant, include, suite])
            .arg(&rootfs)
            .arg(mirror)
            .output()
            .expect("debootstrap (apt-get install debootstrap)");
        assert!(out.status.success(), "debootstrap failed: {}", String::from_utf8_lossy(&out.stderr));
        std::fs::write(&done, "").unwrap();
    }
    rootfs
}

/// Run `script` (sh) in a container of the Debian image; its log once it printed `end`.
async fn debian_run(f: &mut Fixture, name: &str, script: &str) -> String {
    let mut cfg = f.config(name, &format!("{script}; echo end"));
    cfg.image = tokio::task::spawn_blocking(debian_image).await.unwrap();
    f.start(&cfg).await;
    f.wait_logs(&cfg.id, |l| l.contains("end\n")).await
}

/// Python that makes system call `number` with `args` and prints `<name> ok` or
/// `<name> errno=<n>`.
fn syscall_script(name: &str, number: u32, args: &str) -> String {
    format!(
        "python3 -c 'import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\nr = libc.syscall({number}, {args})\n\
         print(\"{name}\", \"ok\" if r >= 0 else \"errno=%d\" % ctypes.get_errno())'"
    )
}

/// System call numbers of this architecture: keyctl, bpf, perf_event_open, clone3.
#[cfg(target_arch = "x86_64")]
const CALLS: [u32; 4] = [250, 321, 298, 435];
#[cfg(target_arch = "aarch64")]
const CALLS: [u32; 4] = [219, 280, 241, 435];

/// `EPERM`, the filter's answer.
const EPERM: &str = "errno=1";

#[tokio::test]
async fn keyrings_are_out_of_reach() {
    let Some(mut f) = Fixture::new() else { return };
    // KEYCTL_GET_KEYRING_ID of the session keyring: its id when allowed.
    let logs = debian_run(&mut f, "keyctl", &syscall_script("keyctl", CALLS[0], "0, -3, 0")).await;
    assert!(logs.contains(&format!("keyctl {EPERM}")), "{logs}");
}

#[tokio::test]
async fn bpf_is_out_of_reach() {
    let Some(mut f) = Fixture::new() else { return };
    // A size beyond a page: E2BIG before any permission check when allowed.
    let logs = debian_run(&mut f, "bpf", &syscall_script("bpf", CALLS[1], "0, None, 1 << 20")).await;
    assert!(logs.contains(&format!("bpf {EPERM}")), "{logs}");
}

#[tokio::test]
async fn perf_events_are_out_of_reach() {
    let Some(mut f) = Fixture::new() else { return };
    // Flags no kernel knows: EINVAL before anything else when allowed.
    let logs =
        debian_run(&mut f, "perf", &syscall_script("perf_event_open", CALLS[2], "None, 0, -1, -1, 1 << 20")).await;
    assert!(logs.contains(&format!("perf_event_open {EPERM}")), "{logs}");
}

#[tokio::test]
async fn clone3_says_it_does_not_exist_and_threads_still_start() {
    let Some(mut f) = Fixture::new() else { return };
    // A zero size: EINVAL when allowed. ENOSYS makes the C library fall back to clone.
    let script = format!(
        "{}; python3 -c 'import threading; t = threading.Thread(target=print, args=(\"thread ran\",)); t.start(); t.join()'",
        syscall_script("clone3", CALLS[3], "None, 0")
    );
    let logs = debian_run(&mut f, "clone3", &script).await;
    assert!(logs.contains("clone3 errno=38") && logs.contains("thread ran"), "{logs}");
}

#[tokio::test]
async fn raw_sockets_are_refused() {
    let Some(mut f) = Fixture::new() else { return };
    let script = "python3 -c 'import socket\ntry:\n    socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)\n    print(\"raw ok\")\nexcept OSError as e:\n    print(\"raw errno=%d\" % e.errno)'";
    let logs = debian_run(&mut f, "raw", script).await;
    assert!(logs.contains(&format!("raw {EPERM}")), "{logs}");
}

#[tokio::test]
async fn redis_and_python_run_unchanged_in_their_user_namespace() {
    let Some(mut f) = Fixture::new() else { return };
    let script = "redis-server --daemonize yes --save '' --appendonly no --logfile /tmp/redis.log; \
                  for i in $(seq 100); do redis-cli ping 2>/dev/null | grep PONG && break; sleep 0.1; done; \
                  printf 'import os, json\\nprint(\"python\", json.dumps(sum(range(10))), os.getuid())\\n' > /tmp/s.py; \
                  python3 /tmp/s.py; cat /proc/self/uid_map; grep Seccomp: /proc/self/status";
    let logs = debian_run(&mut f, "debian", script).await;
    assert!(logs.contains("PONG"), "redis-server did not answer: {logs}");
    assert!(logs.contains("python 45 0"), "{logs}");
    assert!(logs.contains("Seccomp:\t2"), "{logs}");
    let id = f.ids.last().unwrap().clone();
    let base = f.runtime.id_range(&id).unwrap().unwrap().base().to_string();
    assert!(logs.split_whitespace().any(|w| w == base), "not in its id range: {logs}");
}
