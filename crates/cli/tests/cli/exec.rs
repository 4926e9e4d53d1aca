//! `zgrid exec` end to end: commands run in real runc containers on a devnet node through the
//! node API's WebSocket, with their streams, stdin, terminal and exit codes; refusals.

use std::io::Write;
use std::process::{Output, Stdio};
use std::time::Duration;

use crate::grid::{Grid, id_of, wait_until};

const LIMIT: Duration = Duration::from_secs(120);

/// `zgrid exec` as the deployer with `args`, `input` on its stdin.
fn exec(grid: &Grid, args: &[&str], input: &[u8]) -> Output {
    let mut child = grid
        .cli_command()
        .arg("exec")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn exec_runs_a_command_in_a_container_with_its_streams_stdin_terminal_and_exit_code() {
    let grid = Grid::new();
    let node = grid.node(60);
    let id = id_of(&grid.deploy(&node, "sleep 1000", &[]));
    grid.wait_for_result(&node, &id, "ok", LIMIT);

    let out = exec(&grid, &[&id, "--", "sh", "-c", "echo out; echo err >&2; exit 3"], b"");
    assert_eq!((text(&out.stdout), text(&out.stderr)), ("out\n".into(), "err\n".into()));
    assert_eq!(out.status.code(), Some(3));

    // `echo hello | zgrid exec ID -i -- cat`; without -i the command's stdin is empty.
    let out = exec(&grid, &[&id, "-i", "--", "cat"], b"hello\n");
    assert_eq!((text(&out.stdout), out.status.code()), ("hello\n".into(), Some(0)), "{}", text(&out.stderr));
    let out = exec(&grid, &[&id, "--", "cat"], b"not sent\n");
    assert_eq!((text(&out.stdout), out.status.code()), (String::new(), Some(0)), "{}", text(&out.stderr));

    // Output larger than any buffer on the way arrives whole.
    let out = exec(&grid, &[&id, "--", "sh", "-c", "yes 0123456789abcdef | head -c 5000000"], b"");
    assert_eq!((out.stdout.len(), out.status.code()), (5_000_000, Some(0)), "{}", text(&out.stderr));

    // -t: a terminal, input included, and still the exit code.
    let out = exec(
        &grid,
        &[&id, "-t", "-i", "--", "sh", "-c", "[ -t 0 ] && [ -t 1 ] && read x && echo got $x; exit 2"],
        b"word\n",
    );
    assert!(text(&out.stdout).contains("got word"), "{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(2));

    // The process is confined like the container's own: its user namespace, no new
    // privileges, the system-call filter, the container's cgroup.
    let out = exec(&grid, &[&id, "--", "sh", "-c", "cat /proc/self/status /proc/self/uid_map /proc/self/cgroup"], b"");
    let status = text(&out.stdout);
    assert!(status.contains("NoNewPrivs:\t1") && status.contains("Seccomp:\t2"), "{status}");
    let range = node.runtime().unwrap().id_range(&id).unwrap().expect("an id range");
    assert!(status.contains(&format!(" {} ", range.base())), "uid_map of {range:?} not in {status}");
    // In the container's cgroup while it runs; killed when the client goes away.
    let mut client = grid.cli_command().args(["exec", &id, "--", "sleep", "77"]).spawn().unwrap();
    let runtime = node.runtime().unwrap();
    let sleeping = || {
        let pids = runtime.processes(&id).unwrap();
        pids.into_iter()
            .find(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default() == b"sleep\x0077\x00")
    };
    let pid = wait_until(LIMIT, sleeping).unwrap_or_else(|| panic!("no `sleep 77` in the container's cgroup"));
    client.kill().unwrap();
    client.wait().unwrap();
    let gone = wait_until(LIMIT, || (!std::path::Path::new(&format!("/proc/{pid}")).exists()).then_some(()));
    assert!(gone.is_some(), "the process outlived its client");

    // Only the owner.
    let mallory = tempfile::tempdir().unwrap();
    let explorer = grid.devnet.explorer_url();
    crate::common::zgrid_json(mallory.path(), explorer, &["id", "new", "mallory", "--register"]);
    let out = crate::common::zgrid(mallory.path(), explorer, &["exec", &id, "--", "echo", "hi"]);
    let err = text(&out.stderr);
    assert!(!out.status.success() && err.contains("403") && err.contains("only the owner"), "{err}");
    assert!(!text(&out.stdout).contains("hi"));
}

#[test]
fn exec_enters_containers_on_a_private_network_in_their_own_user_namespaces() {
    let grid = Grid::new();
    let node = grid.node(60);
    crate::network::create(&grid, "execnet", "10.62.0.0/16", &[&node]);
    let runtime = node.runtime().unwrap();
    for flags in [&["--interactive"][..], &[]] {
        let command = if flags.is_empty() { "sleep 1000" } else { "true" };
        let deployed = grid.deploy(&node, command, &[&["--network", "execnet", "--wait"], flags].concat());
        let id = id_of(&deployed);
        let range = runtime.id_range(&id).unwrap().unwrap_or_else(|| panic!("{flags:?}: no user namespace"));
        // Its network, its own ids: container root is the range's first host id, not host root.
        let out = exec(&grid, &[&id, "--", "sh", "-c", "cat /proc/net/dev /proc/self/uid_map; ls /sys/class/net"], b"");
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert!(out.status.success(), "{flags:?}: {stdout}{stderr}");
        assert!(stdout.contains("eth0:"), "{flags:?}: not in its network namespace: {stdout}");
        let map: Vec<&str> =
            stdout.lines().find(|l| l.trim_start().starts_with('0')).unwrap().split_whitespace().collect();
        assert_eq!(map, ["0", &range.base().to_string(), "65536"], "{flags:?}: {stdout}");
        assert!(stdout.lines().any(|l| l == "eth0"), "{flags:?}: its /sys shows other devices: {stdout}");
    }
}
