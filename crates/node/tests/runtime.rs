//! The container runtime against the real thing: runc, loop devices, overlayfs and cgroups.
//!
//! Needs root and `apt-get install runc busybox-static e2fsprogs`; skipped (with a message) when
//! not root. Every test uses its own state directory and container ids, and its fixture removes
//! its containers when dropped, also when the test fails.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tempfile::TempDir;
use zgrid_node::runtime::{Bind, ContainerConfig, ContainerState, Runtime};

/// Upper bound for waiting on a container; tests assert behaviour, not speed.
const WAIT: Duration = Duration::from_secs(20);

/// Busybox applets linked into the test image.
const APPLETS: [&str; 16] = [
    "sh", "echo", "cat", "sleep", "dd", "head", "tail", "yes", "sort", "ls", "mkdir", "rm", "true", "hostname", "env",
    "df",
];

/// A state directory, a busybox image and the containers a test made.
struct Fixture {
    runtime: Runtime,
    /// The cgroup parent, unique to this test process.
    parent: String,
    image: PathBuf,
    ids: Vec<String>,
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
        let image = dir.path().join("image");
        make_image(&image);
        let parent = format!("zgrid-test-{}", std::process::id());
        let runtime = Runtime::new(dir.path().join("state"), &parent)
            .expect("runtime (needs: apt-get install runc busybox-static e2fsprogs)")
            .with_stop_grace(Duration::from_secs(2));
        Some(Self { runtime, parent, image, ids: Vec::new(), dir })
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
            log_pipes: false,
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
    f.runtime.start(&cfg).await.unwrap();
    let state = f.wait(&cfg.id, |s| matches!(s, ContainerState::Stopped { .. })).await;
    assert_eq!(state, ContainerState::Stopped { oom_killed: false });
    let logs = f.logs(&cfg.id);
    assert!(logs.contains("hello world") && logs.contains("err"), "logs: {logs}");
    assert_eq!(logs.matches("box1").count(), 2, "hostname in /etc/hostname and uts namespace: {logs}");
}

#[tokio::test]
async fn image_config_gives_the_default_process() {
    let Some(mut f) = Fixture::new() else { return };
    std::fs::create_dir(f.image.join(".zgrid")).unwrap();
    let json = r#"{"entrypoint":["/bin/sh","-c"],"cmd":["echo from-image $X in $(pwd)"],"env":["X=image-env"],"workdir":"/tmp"}"#;
    std::fs::write(f.image.join(".zgrid/config.json"), json).unwrap();
    let mut cfg = f.config("img", "");
    cfg.args.clear();
    f.runtime.start(&cfg).await.unwrap();
    f.wait(&cfg.id, |s| matches!(s, ContainerState::Stopped { .. })).await;
    let logs = f.logs(&cfg.id);
    assert!(logs.contains("from-image image-env in /tmp"), "logs: {logs}");
}

#[tokio::test]
async fn limits_are_enforced() {
    let Some(mut f) = Fixture::new() else { return };
    let mut cfg = f.config("lim", "sleep 60");
    cfg.memory_mib = 32;
    f.runtime.start(&cfg).await.unwrap();
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
    f.runtime.start(&hog).await.unwrap();
    let state = f.wait(&hog.id, |s| matches!(s, ContainerState::Stopped { .. })).await;
    assert_eq!(state, ContainerState::Stopped { oom_killed: true }, "logs: {}", f.logs(&hog.id));
    assert_eq!(f.runtime.state(&hog.id).await.unwrap(), ContainerState::Stopped { oom_killed: true });
}

#[tokio::test]
async fn writable_layer_is_size_limited() {
    let Some(mut f) = Fixture::new() else { return };
    let cfg = f.config("disk", "dd if=/dev/zero of=/big bs=1M count=100; echo dd-exit=$?");
    f.runtime.start(&cfg).await.unwrap();
    f.wait(&cfg.id, |s| matches!(s, ContainerState::Stopped { .. })).await;
    let logs = f.logs(&cfg.id);
    assert!(logs.contains("No space left on device"), "logs: {logs}");
    assert!(!logs.contains("dd-exit=0"), "logs: {logs}");
}

#[tokio::test]
async fn remove_leaves_nothing() {
    let Some(mut f) = Fixture::new() else { return };
    let cfg = f.config("rm", "trap 'echo bye; exit 0' TERM; while true; do sleep 1; done");
    f.runtime.start(&cfg).await.unwrap();
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
    f.runtime.start(&cfg).await.unwrap();
    let first = f.wait(&cfg.id, |s| matches!(s, ContainerState::Running { .. })).await;
    f.runtime.start(&cfg).await.unwrap();
    assert_eq!(f.runtime.state(&cfg.id).await.unwrap(), first);
    // A new agent on the same state directory adopts the container.
    let restarted = Runtime::new(f.runtime.root(), &f.parent).unwrap();
    assert_eq!(restarted.list().unwrap(), std::slice::from_ref(&cfg.id));
    assert_eq!(restarted.state(&cfg.id).await.unwrap(), first);
    restarted.start(&cfg).await.unwrap();
    assert_eq!(restarted.state(&cfg.id).await.unwrap(), first);
    assert_eq!(f.logs(&cfg.id).matches("up").count(), 1);
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
    f.runtime.start(&cfg).await.unwrap();
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

    // A start that fails in runc leaves a container that removes cleanly.
    let mut broken = f.config("broken", "");
    broken.args = vec!["/no/such/program".into()];
    let err = f.runtime.start(&broken).await.unwrap_err().to_string();
    assert!(err.contains(&broken.id) && err.contains("/no/such/program"), "{err}");
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
    f.runtime.start(&writer).await.unwrap();
    f.wait(&writer.id, |s| matches!(s, ContainerState::Stopped { .. })).await;
    let logs = f.logs(&writer.id);
    assert!(logs.contains("No space left on device") && !logs.contains("dd-exit=0"), "logs: {logs}");
    f.runtime.remove(&writer.id).await.unwrap();

    // Unmounted (as by a reboot) and made again: the data is still there, for another container.
    let dir = data.parent().unwrap().to_owned();
    assert!(std::process::Command::new("umount").arg(&data).status().unwrap().success());
    assert_eq!(f.runtime.volume(&volume).unwrap(), None);
    assert_eq!(f.runtime.create_volume(&volume, 16).await.unwrap(), data);
    let mut reader = f.config("volr", "cat /data/file");
    reader.binds.push(Bind { source: data.clone(), destination: "/data".into() });
    f.runtime.start(&reader).await.unwrap();
    f.wait(&reader.id, |s| matches!(s, ContainerState::Stopped { .. })).await;
    assert_eq!(f.logs(&reader.id).trim(), "kept");
    f.runtime.remove(&reader.id).await.unwrap();

    assert_eq!(f.runtime.list_volumes().unwrap(), std::slice::from_ref(&volume));
    f.runtime.remove_volume(&volume).await.unwrap();
    f.runtime.remove_volume(&volume).await.unwrap();
    assert!(!dir.exists(), "{} remains", dir.display());
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mountinfo.contains(&*dir.to_string_lossy()), "mounts remain:\n{mountinfo}");
    assert!(f.runtime.list_volumes().unwrap().is_empty());
}
