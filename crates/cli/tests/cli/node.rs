//! The node agent end to end: real `zgrid node` processes, each in its own network namespace on
//! the devnet underlay, running busybox containers with runc, driven through the CLI.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use zgrid_devnet::Node;
use zgrid_node::runtime::ContainerState;

use crate::grid::{Grid, id_of, wait_until};

const LIMIT: Duration = Duration::from_secs(60);

/// Mount points at or below `dir`.
fn mounts_under(dir: &std::path::Path) -> Vec<String> {
    let prefix = dir.to_string_lossy().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
        .filter(|m| m.starts_with(&prefix))
        .collect()
}

/// The container's cgroup directories, in every hierarchy.
fn cgroups_of(node: &Node, id: &str) -> Vec<std::path::PathBuf> {
    std::fs::read_dir("/sys/fs/cgroup")
        .unwrap()
        .flatten()
        .map(|c| c.path().join(node.cgroup_parent()).join(id))
        .filter(|p| p.exists())
        .collect()
}

/// Network interfaces in the node's namespace besides its underlay link and loopback.
fn extra_interfaces(node: &Node) -> Vec<String> {
    let links = node.netns().ip(&["-o", "link", "show"]).unwrap();
    links
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap().to_string())
        .filter(|name| name != "lo" && name != "eth0")
        .collect()
}

/// Assert nothing of container `id` is left on `node`: directory, mounts, cgroups, interfaces.
fn assert_gone(node: &Node, id: &str) {
    let dir = node.runtime_dir().join("containers").join(id);
    assert!(!dir.exists(), "{} remains", dir.display());
    assert!(!node.runtime_dir().join("runc").join(id).exists(), "runc state of {id} remains");
    assert_eq!(mounts_under(node.state_dir()), Vec::<String>::new(), "mounts remain");
    assert_eq!(cgroups_of(node, id), Vec::<std::path::PathBuf>::new(), "cgroups remain");
    assert_eq!(extra_interfaces(node), Vec::<String>::new(), "interfaces remain in the node's namespace");
}

/// The agent runs inside the node's own network namespace.
fn assert_in_own_netns(node: &Node) {
    let pids = Command::new("ip").args(["netns", "pids", node.netns().name()]).output().unwrap();
    let pids = String::from_utf8_lossy(&pids.stdout);
    let agent = pids.lines().any(|pid| {
        std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.split(|b| *b == 0).nth(1) == Some(b"node"))
    });
    assert!(agent, "no `zgrid node` process in namespace {}", node.netns().name());
}

#[test]
fn a_container_runs_with_its_env_and_entrypoint_and_its_logs_are_read_back() {
    let grid = Grid::new();
    let node = grid.node(60);
    assert_in_own_netns(&node);
    let script = "/bin/sh -c 'echo hello $NAME; echo oops >&2; i=0; \
                  while true; do i=$((i+1)); echo tick $i; echo tock $i >&2; sleep 0.2; done'";
    let out = grid.cli_raw(&[
        "deploy",
        "container",
        "--node",
        node.id(),
        "--flist",
        grid.image.to_str().unwrap(),
        "--entrypoint",
        script,
        "--env",
        "NAME=zgrid",
        "--cpu",
        "1",
        "--memory",
        "64",
        "--disk",
        "64",
        "--wait",
    ]);
    let progress = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{progress}");
    for stage in ["[1/4] accepted by the explorer", "[2/4] picked up by the node", "[3/4] image ready", "[4/4] running"]
    {
        assert!(progress.contains(stage), "no {stage:?} in:\n{progress}");
    }
    let id = String::from_utf8_lossy(&out.stdout).split_whitespace().nth(1).unwrap().to_string();
    assert_eq!(grid.record(&id).unwrap()["result"]["payload"]["state"], "ok");

    // `zgrid logs` reads the output back from the node, signed by the owner: what the
    // container wrote on stdout on stdout, on stderr on stderr, each in its order.
    let (logs, errors) = wait_until(LIMIT, || {
        let out = grid.cli_raw(&["logs", &id]);
        let (text, errors) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success() && text.contains("tick 2")).then(|| (text.to_string(), errors.to_string()))
    })
    .unwrap_or_else(|| panic!("no output from `zgrid logs`; agent log:\n{}", node.log()));
    assert!(
        logs.starts_with("hello zgrid\ntick 1\ntick 2\n") && !logs.contains("oops") && !logs.contains("tock"),
        "{logs}"
    );
    assert!(errors.starts_with("oops\ntock 1\n") && !errors.contains("tick"), "{errors}");

    // `--follow` streams new lines as they are written, and ends when the container goes;
    // stderr stays apart there too.
    let mut follow = grid
        .cli_command()
        .args(["logs", "--follow", &id])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let followed_errors = follow.stderr.take().unwrap();
    // Read to the end: a reader that went away would end the command (SIGPIPE).
    let followed_errors =
        std::thread::spawn(move || BufReader::new(followed_errors).lines().map_while(Result::ok).collect::<Vec<_>>());
    let mut lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    let last_logged = logs.lines().filter_map(|l| l.strip_prefix("tick ")).filter_map(|n| n.parse::<u32>().ok()).max();
    let fresh = lines
        .by_ref()
        .map_while(Result::ok)
        .filter_map(|l| l.strip_prefix("tick ").and_then(|n| n.parse::<u32>().ok()))
        .find(|n| Some(*n) > last_logged.map(|l| l + 2));
    assert!(fresh.is_some(), "`zgrid logs --follow` showed no new line");

    // The limits are in the container's cgroups.
    let runtime = node.runtime().unwrap();
    let cpu = runtime.cgroup_path(&id, "cpu");
    assert_eq!(std::fs::read_to_string(cpu.join("cpu.cfs_quota_us")).unwrap().trim(), "100000");
    let memory = runtime.cgroup_path(&id, "memory");
    assert_eq!(
        std::fs::read_to_string(memory.join("memory.limit_in_bytes")).unwrap().trim(),
        (64u64 << 20).to_string()
    );

    let out = grid.cli_raw(&["delete", &id]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    grid.wait_for_result(&node, &id, "deleted", LIMIT);
    assert_gone(&node, &id);
    let ended = wait_until(Duration::from_secs(10), || follow.try_wait().unwrap());
    assert!(ended.is_some_and(|s| s.success()), "`zgrid logs --follow` did not end with the container");
    let followed_errors = followed_errors.join().unwrap();
    let tocks = |lines: &[&str]| lines.iter().filter_map(|l| l.strip_prefix("tock ")?.parse::<u32>().ok()).max();
    let followed: Vec<&str> = followed_errors.iter().map(String::as_str).collect();
    let before: Vec<&str> = errors.lines().collect();
    assert!(tocks(&followed) > tocks(&before), "`zgrid logs --follow` showed no new stderr line: {followed:?}");
    assert!(!followed.iter().any(|l| l.starts_with("tick")), "stdout on stderr: {followed:?}");
}

#[test]
fn only_the_owner_reads_a_containers_logs() {
    let grid = Grid::new();
    let node = grid.node(60);
    let id = id_of(&grid.deploy(&node, "/bin/sh -c 'echo private; sleep 1000'", &["--wait"]));

    let mallory = tempfile::tempdir().unwrap();
    let explorer = grid.devnet.explorer_url();
    crate::common::zgrid_json(mallory.path(), explorer, &["id", "new", "mallory", "--register"]);
    let out = crate::common::zgrid(mallory.path(), explorer, &["logs", &id]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("403") && err.contains("only the owner"), "{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("private"));
}

#[test]
fn a_container_past_its_memory_limit_is_killed_and_the_result_says_so() {
    let grid = Grid::new();
    let node = grid.node(60);
    // dd fills a 200 MiB buffer under a 32 MiB limit.
    let script = "/bin/sh -c 'dd if=/dev/zero of=/dev/null bs=200M count=1; sleep 1000'";
    let id = id_of(&grid.deploy(&node, script, &[]));
    let record = wait_until(LIMIT, || {
        let r = grid.record(&id)?;
        r["result"]["payload"]["message"].as_str()?.contains("out of memory").then_some(r)
    });
    let record = record.unwrap_or_else(|| panic!("no out-of-memory result; agent log:\n{}", node.log()));
    assert_eq!(record["result"]["payload"]["state"], "error");
}

#[test]
fn a_fork_bomb_stops_at_its_pid_limit_the_result_says_so_and_other_containers_still_start() {
    let grid = Grid::new();
    let node = grid.node(60);
    let image = grid.image.to_str().unwrap();
    // The inner shell gives up when a fork fails; the outer one starts another. Enough memory
    // that the pids limit, not the memory limit, stops it.
    let bomb = "/bin/sh -c \"while true; do sh -c 'while true; do sleep 1000 & done'; done\"";
    let deploy = |entrypoint: &str, extra: &[&str]| {
        let mut args = vec!["deploy", "container", "--node", node.id(), "--flist", image, "--entrypoint", entrypoint];
        args.extend(["--memory", "1024", "--disk", "64"]);
        args.extend_from_slice(extra);
        id_of(&grid.cli(&args))
    };
    let id = deploy(bomb, &[]);
    let record = wait_until(LIMIT, || {
        let r = grid.record(&id)?;
        r["result"]["payload"]["message"].as_str()?.contains("process limit reached").then_some(r)
    });
    let record = record.unwrap_or_else(|| panic!("no pid-limit result; agent log:\n{}", node.log()));
    assert_eq!(record["result"]["payload"]["state"], "error");
    let pids = node.runtime().unwrap().cgroup_path(&id, "pids");
    let current: u64 = std::fs::read_to_string(pids.join("pids.current")).unwrap().trim().parse().unwrap();
    assert!(current <= 4096, "{current} pids");

    let other = deploy("/bin/sh -c 'echo alive; sh -c \"echo child\"; sleep 1000'", &["--wait"]);
    let logs = wait_until(LIMIT, || {
        let text = String::from_utf8_lossy(&grid.cli_raw(&["logs", &other]).stdout).to_string();
        text.contains("child").then_some(text)
    });
    assert!(logs.is_some_and(|l| l.contains("alive\nchild\n")), "agent log:\n{}", node.log());
}

#[test]
fn endless_output_keeps_the_log_within_its_bound_and_zgrid_logs_shows_the_latest() {
    let grid = Grid::new();
    let node = grid.node(60);
    let id = id_of(&grid.deploy(&node, "/bin/sh -c 'yes | head -c 30000000; echo end-of-output; sleep 1000'", &[]));
    let log = node.runtime_dir().join("containers").join(&id).join("log");
    let bound = zgrid_node::runtime::LOG_TRIM_BYTES + zgrid_node::runtime::READ_BYTES as u64;
    let logs = wait_until(LIMIT, || {
        let size = std::fs::metadata(&log).map_or(0, |m| m.len());
        assert!(size <= bound, "the log holds {size} bytes, more than {bound}");
        let out = grid.cli_raw(&["logs", &id]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        text.contains("end-of-output").then_some(text)
    })
    .unwrap_or_else(|| panic!("the output never ended; agent log:\n{}", node.log()));
    assert!(
        logs.ends_with("y\nend-of-output\n") && logs.len() as u64 > zgrid_node::runtime::LOG_KEEP_BYTES / 2,
        "{}",
        logs.len()
    );
    assert!(std::fs::metadata(&log).unwrap().len() <= bound);
}

#[test]
fn a_crashing_container_is_restarted_on_its_writable_layer_and_the_result_says_so() {
    let grid = Grid::new();
    let node = grid.node(60);
    // Each run appends to a file in the writable layer, then fails.
    let id = id_of(&grid.deploy(&node, "/bin/sh -c 'echo run >> /runs; cat /runs | wc -l; exit 3'", &[]));
    let record = wait_until(LIMIT, || {
        let r = grid.record(&id)?;
        r["result"]["payload"]["message"].as_str()?.contains("restarting (2/").then_some(r)
    });
    let record = record.unwrap_or_else(|| panic!("no restart result; agent log:\n{}", node.log()));
    assert_eq!(record["result"]["payload"]["state"], "error");
    let logs = grid.cli_raw(&["logs", &id]);
    let text = String::from_utf8_lossy(&logs.stdout);
    assert!(text.contains("1\n") && text.contains("2\n"), "the writable layer was not kept across restarts: {text}");
}

#[test]
fn an_expired_container_is_removed_by_the_node() {
    let grid = Grid::new();
    let node = grid.node(60);
    let id = id_of(&grid.deploy(&node, "sleep 1000", &["--duration", "20s", "--wait"]));
    assert!(node.runtime_dir().join("containers").join(&id).exists());
    grid.wait_for_result(&node, &id, "deleted", LIMIT);
    assert_gone(&node, &id);
}

#[test]
fn expiry_is_enforced_while_the_explorer_is_unreachable() {
    let mut grid = Grid::new();
    let node = grid.node(60);
    let id = id_of(&grid.deploy(&node, "sleep 1000", &["--duration", "20s", "--wait"]));
    grid.devnet.kill_explorer();
    let runtime = node.runtime().unwrap();
    let gone = wait_until(LIMIT, || (!runtime.exists(&id)).then_some(()));
    assert!(gone.is_some(), "the node kept an expired container while the explorer was down:\n{}", node.log());
    assert_gone(&node, &id);
}

#[test]
fn containers_survive_an_agent_killed_mid_provisioning_and_run_exactly_once() {
    const COUNT: usize = 20;
    let grid = Grid::new();
    let mut node = grid.node(120);
    let ids: Vec<String> = (0..COUNT).map(|_| id_of(&grid.deploy(&node, "sleep 1000", &[]))).collect();
    // Kill the agent once some containers exist and others are still being made.
    let containers = node.runtime_dir().join("containers");
    wait_until(LIMIT, || (std::fs::read_dir(&containers).ok()?.count() >= 3).then_some(()))
        .expect("provisioning started");
    node.kill();
    let runtime = node.runtime().unwrap();
    let mut before = std::collections::HashMap::new();
    for id in &ids {
        if let Ok(ContainerState::Running { pid }) = state(&runtime, id) {
            before.insert(id.clone(), pid);
        }
    }
    assert!(before.len() < COUNT, "the kill landed after provisioning finished");

    node.restart().unwrap();
    for id in &ids {
        grid.wait_for_result(&node, id, "ok", Duration::from_secs(180));
    }
    let mut pids = std::collections::HashSet::new();
    for id in &ids {
        match state(&runtime, id).unwrap() {
            ContainerState::Running { pid } => {
                if let Some(old) = before.get(id) {
                    assert_eq!(*old, pid, "{id} was restarted instead of adopted");
                }
                assert!(pids.insert(pid));
            }
            other => panic!("{id} is {other:?}"),
        }
    }
    assert_eq!(runtime.list().unwrap().len(), COUNT, "exactly one container per workload");
    assert_eq!(processes_in(&node), COUNT, "one `sleep` per workload in the node's cgroups");
}

/// The container's state, from synchronous test code.
fn state(
    runtime: &zgrid_node::runtime::Runtime,
    id: &str,
) -> Result<ContainerState, zgrid_node::runtime::RuntimeError> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(runtime.state(id))
}

/// What a power cut does to container `id`: its processes die, its mounts, loop device and
/// cgroups vanish; its files stay.
pub(crate) fn power_loss(node: &Node, id: &str) {
    power_loss_at(node, id, &node.runtime_dir().join("containers").join(id));
}

/// What a power loss does to workload `id` whose directory is `dir` (with `rootfs/` over
/// `layer/`): its processes die, its mounts and cgroups vanish, its files stay.
pub(crate) fn power_loss_at(node: &Node, id: &str, dir: &std::path::Path) {
    let cgroups = cgroups_of(node, id);
    for dir in &cgroups {
        for pid in std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default().lines() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid.parse().unwrap()), nix::sys::signal::SIGKILL);
        }
    }
    for point in [dir.join("rootfs"), dir.join("layer")] {
        let done = wait_until(Duration::from_secs(10), || {
            Command::new("umount").arg(&point).status().unwrap().success().then_some(())
        });
        assert!(done.is_some(), "cannot unmount {}", point.display());
    }
    for dir in &cgroups {
        assert!(wait_until(Duration::from_secs(10), || std::fs::remove_dir(dir).ok()).is_some(), "{}", dir.display());
    }
}

/// Processes in any cgroup of the node (in the pids hierarchy).
fn processes_in(node: &Node) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|p| std::fs::read_to_string(p.path().join("cgroup")).ok())
        .filter(|cg| cg.lines().any(|l| l.contains(":pids:") && l.contains(&format!("/{}/", node.cgroup_parent()))))
        .count()
}

#[test]
fn after_a_reboot_every_container_is_provisioned_again_with_its_writable_layer() {
    let grid = Grid::new();
    let mut node = grid.node(60);
    let script = "/bin/sh -c 'echo boot >> /boots; sleep 1000'";
    let ids: Vec<String> = (0..3).map(|_| id_of(&grid.deploy(&node, script, &["--wait"]))).collect();

    // A reboot: the agent and every container process die, mounts, loop devices and cgroups
    // vanish, files on disk stay, and the kernel has a new boot id.
    node.kill();
    let runtime = node.runtime().unwrap();
    for id in &ids {
        power_loss(&node, id);
        assert!(matches!(state(&runtime, id).unwrap(), ContainerState::Stopped { .. }));
    }
    std::fs::write(node.state_dir().join("workloads/boot_id"), "a-previous-boot\n").unwrap();

    node.restart().unwrap();
    for id in &ids {
        let running =
            wait_until(LIMIT, || matches!(state(&runtime, id), Ok(ContainerState::Running { .. })).then_some(()));
        assert!(running.is_some(), "{id} was not provisioned again:\n{}", node.log());
        let text = wait_until(LIMIT, || {
            let rootfs = node.runtime_dir().join("containers").join(id).join("rootfs/boots");
            std::fs::read_to_string(rootfs).ok().filter(|t| t.lines().count() == 2)
        });
        assert!(text.is_some(), "{id}'s writable layer was not kept across the reboot");
        grid.wait_for_result(&node, id, "ok", LIMIT);
    }
}

#[test]
fn a_volume_keeps_its_data_across_container_deletion_agent_restart_and_reboot() {
    let grid = Grid::new();
    let mut node = grid.node(60);
    // `--wait` follows a volume's own stages (no image) to the node's verdict.
    let made = grid.cli_raw(&["deploy", "volume", "--node", node.id(), "--size", "32", "--type", "ssd", "--wait"]);
    let (said, stages) = (String::from_utf8_lossy(&made.stdout), String::from_utf8_lossy(&made.stderr));
    assert!(made.status.success() && stages.contains("[3/3] made") && !stages.contains("image"), "{stages}");
    let volume = said.strip_prefix("volume ").and_then(|s| s.split(' ').next()).unwrap_or_default().to_owned();
    assert!(said.contains(&format!("is made; mount it with --volume {volume}:/PATH")), "{said}");
    let mount = format!("{volume}:/data");
    let script = "/bin/sh -c 'echo run >> /data/runs; wc -l < /data/runs; sleep 1000'";
    let first = id_of(&grid.deploy(&node, script, &["--volume", &mount, "--wait"]));
    assert!(grid.cli_raw(&["delete", &first]).status.success());
    grid.wait_for_result(&node, &first, "deleted", LIMIT);

    // The agent is killed and restarted: the volume stays mounted and keeps its data.
    node.kill();
    node.restart().unwrap();
    let second = id_of(&grid.deploy(&node, script, &["--volume", &mount, "--wait"]));
    let runs = |id: &str| {
        wait_until(LIMIT, || {
            let text = String::from_utf8_lossy(&grid.cli_raw(&["logs", id]).stdout).trim().to_string();
            (!text.is_empty()).then_some(text)
        })
    };
    assert_eq!(runs(&second).as_deref(), Some("2"), "agent log:\n{}", node.log());

    // A reboot: the volume is mounted again before the container that needs it starts.
    node.kill();
    power_loss(&node, &second);
    let data = node.runtime_dir().join("volumes").join(&volume).join("data");
    assert!(Command::new("umount").arg(&data).status().unwrap().success());
    std::fs::write(node.state_dir().join("workloads/boot_id"), "a-previous-boot\n").unwrap();
    node.restart().unwrap();
    let again = wait_until(LIMIT, || {
        let text = String::from_utf8_lossy(&grid.cli_raw(&["logs", &second]).stdout).to_string();
        text.lines().any(|l| l.trim() == "3").then_some(())
    });
    assert!(again.is_some(), "the container did not run again on its volume:\n{}", node.log());
    let out = grid.cli_raw(&["delete", &volume]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_container_that_hangs_while_starting_does_not_delay_the_others() {
    let grid = Grid::new();
    let node = grid.node(8);
    // An "image archive" that is a FIFO nobody writes to: unpacking it blocks forever.
    let images = tempfile::tempdir().unwrap();
    let stuck = images.path().join("stuck.tar");
    nix::unistd::mkfifo(&stuck, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let hung = id_of(&grid.deploy_from(&node, &stuck, "sleep 1000", &[]));
    let ok = grid.deploy(&node, "sleep 1000", &["--wait"]);
    assert_eq!(ok["result"]["payload"]["state"], "ok");
    assert_ne!(grid.record(&hung).unwrap()["result"]["payload"]["state"], "ok");
    // The stuck one is abandoned at its time limit, retried, and eventually reported failed.
    let failed = grid.wait_for_result(&node, &hung, "error", Duration::from_secs(120));
    assert!(failed["result"]["payload"]["message"].as_str().unwrap().contains("gave up"), "{failed}");
}

#[test]
fn a_workload_changed_behind_the_explorer_is_refused_by_the_node() {
    let mut grid = Grid::new();
    let mut node = grid.node(60);
    node.kill();
    let id = id_of(&grid.deploy(&node, "sleep 1000", &[]));

    // Someone with access to the explorer's database changes what the container runs.
    grid.devnet.kill_explorer();
    let db = grid.devnet.database();
    let sql =
        format!("UPDATE workloads SET signed = replace(signed, 'sleep 1000', 'cat /etc/shadow') WHERE id = '{id}'");
    tamper_sqlite(&db, &sql);
    grid.devnet.restart_explorer().unwrap();
    let tampered = grid.record(&id).unwrap();
    assert_eq!(tampered["workload"]["payload"]["data"]["entrypoint"], "cat /etc/shadow", "the tampering took");

    node.restart().unwrap();
    let refused = grid.wait_for_result(&node, &id, "error", LIMIT);
    assert!(refused["result"]["payload"]["message"].as_str().unwrap().contains("does not verify"), "{refused}");
    assert!(!node.runtime_dir().join("containers").join(&id).exists(), "the node ran a tampered workload");
}

#[test]
fn an_agent_without_the_farm_owners_consent_stops_saying_how_to_get_it() {
    let grid = Grid::new();
    let netns = grid.devnet.underlay().add_netns(&format!("nc{}", std::process::id() % 10000)).unwrap();
    let state = tempfile::tempdir().unwrap();
    let cgroup_parent = format!("zgnc{}", std::process::id());
    let farm = grid.devnet.farm().to_string();
    let start = |extra: &[&str]| {
        let mut agent = netns
            .command(crate::common::ZGRID)
            .args(["node", "--farm", &farm, "--state-dir"])
            .arg(state.path())
            .args(["--cgroup-parent", &cgroup_parent, "--api-listen", &format!("{}:7780", netns.address())])
            .args(extra)
            .env("ZGRID_EXPLORER", grid.devnet.explorer_url())
            .env("ZGRID_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let exited = wait_until(LIMIT, || agent.try_wait().unwrap());
        if exited.is_none() {
            let _ = agent.kill();
        }
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut agent.stderr.take().unwrap(), &mut stderr).unwrap();
        (exited, stderr)
    };

    let (exited, stderr) = start(&[]);
    assert!(exited.is_some_and(|s| !s.success()), "the agent kept running without consent:\n{stderr}");
    assert!(
        stderr.contains("refused to register this node in farm") && stderr.contains("zgrid farm invite"),
        "{stderr}"
    );

    // A token that is not an invitation is refused before anything else.
    let (exited, stderr) = start(&["--farm-invite", "not-a-token"]);
    assert!(exited.is_some_and(|s| !s.success()) && stderr.contains("not a farm invitation token"), "{stderr}");
    let node = zgrid_node::identity::load(state.path()).unwrap().unwrap().public();
    let listed = grid.cli(&["nodes", "--farm", &farm]);
    assert!(listed["items"].as_array().unwrap().iter().all(|n| n["node_id"] != node.to_string()), "{listed}");
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
        let _ = std::fs::remove_dir(hierarchy.path().join(&cgroup_parent));
    }
}

/// Run `sql` on the SQLite database at `db`.
fn tamper_sqlite(db: &std::path::Path, sql: &str) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display())).await.unwrap();
        let done = sqlx::query(sqlx::AssertSqlSafe(sql.to_string())).execute(&mut conn).await.unwrap();
        assert_eq!(done.rows_affected(), 1);
        conn.close().await.unwrap();
    });
}

#[test]
fn a_secret_env_var_reaches_the_container_and_nothing_else_in_clear() {
    let grid = Grid::new();
    let node = grid.node(60);
    let secret = format!("zgrid-secret-{}", std::process::id());
    let out = grid
        .cli_command()
        .args(["--json", "deploy", "container", "--node", node.id(), "--flist", grid.image.to_str().unwrap()])
        .args([
            "--entrypoint",
            "/bin/sh -c 'echo token=$TOKEN other=$OTHER; sleep 1000'",
            "--memory",
            "32",
            "--disk",
            "64",
        ])
        .args(["--secret-env", &format!("TOKEN={secret}"), "--secret-env", "OTHER", "--wait"])
        .env("OTHER", format!("{secret}-from-env"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let deployed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = id_of(&deployed);
    let logs = wait_until(LIMIT, || {
        let text = String::from_utf8_lossy(&grid.cli_raw(&["logs", &id]).stdout).to_string();
        text.contains("token=").then_some(text)
    })
    .unwrap();
    assert_eq!(logs.lines().next(), Some(format!("token={secret} other={secret}-from-env").as_str()));

    // In clear nowhere else: not in the CLI's output, the ledger, the explorer's database
    // files, or the node's log.
    let mut places = vec![("deploy output".to_string(), out.stdout.clone()), ("deploy errors".into(), out.stderr)];
    places.push(("zgrid live".into(), grid.cli_raw(&["--json", "live", "--state", "all"]).stdout));
    places.push(("node log".into(), node.log().into_bytes()));
    let db = grid.devnet.database();
    let dir = db.parent().unwrap();
    for file in std::fs::read_dir(dir).unwrap().flatten() {
        if file.file_name().to_string_lossy().starts_with(&*db.file_name().unwrap().to_string_lossy()) {
            places.push((file.path().display().to_string(), std::fs::read(file.path()).unwrap()));
        }
    }
    assert!(places.len() >= 5, "the explorer's database was not found next to {}", db.display());
    for (place, bytes) in places {
        let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
        assert!(!found, "the secret is in clear in {place}");
    }
}
