//! How containers that cannot start or that stop are reported: a program missing from the image
//! fails at once, cause first, without the node's paths; `--wait` catches a container that exits
//! at once and shows its exit code and last output; `zgrid live` shows exit codes, the restart
//! history of a container running again, and short node ids, which `--node` takes.

use std::time::{Duration, Instant};

use crate::grid::{Grid, id_of, wait_until};

const LIMIT: Duration = Duration::from_secs(90);

/// Deploy a container running `entrypoint` from the busybox image on `node` with `--wait`, in
/// human output; returns the CLI's output.
fn deploy_and_wait(grid: &Grid, node: &zgrid_devnet::Node, entrypoint: &str) -> std::process::Output {
    let image = grid.image.to_str().unwrap();
    let args = ["deploy", "container", "--node", node.id(), "--flist", image, "--entrypoint", entrypoint];
    grid.cli_raw(&[&args[..], &["--memory", "32", "--disk", "64", "--wait"]].concat())
}

#[test]
fn a_missing_entrypoint_fails_after_one_attempt_with_the_cause_once_and_no_host_paths() {
    let grid = Grid::new();
    let node = grid.node(60);
    let started = Instant::now();
    let out = deploy_and_wait(&grid, &node, "/bin/nosuchprog --flag");
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let failure = stderr.lines().find(|l| l.contains("failed on its node")).unwrap_or_else(|| panic!("{stderr}"));
    let cause = failure.split_once("failed on its node: ").unwrap().1;
    assert!(cause.starts_with(r#"the entrypoint "/bin/nosuchprog" is not in the image"#), "{failure}");
    assert!(cause.contains("--entrypoint"), "says what to change: {failure}");
    assert_eq!(cause.matches("nosuchprog").count(), 1, "the cause once: {failure}");
    for internal in ["/var/lib", "runc", "attempts", node.state_dir().to_str().unwrap()] {
        assert!(!stderr.contains(internal), "{internal:?} in what the deployer sees: {stderr}");
    }
    // One attempt: no retries with backoff (the node's log has the details, once).
    let log = node.log();
    assert_eq!(log.matches("the container did not start").count(), 1, "{log}");
    assert!(took < Duration::from_secs(15), "took {took:?}");
    let id = stderr.lines().find_map(|l| l.strip_prefix("workload ")).unwrap().trim().to_owned();
    let record = grid.record(&id).unwrap();
    assert_eq!(record["result"]["payload"]["state"], "error");
    assert_eq!(record["result"]["payload"]["message"], cause);
}

#[test]
fn wait_fails_with_the_exit_code_and_last_output_of_a_container_that_exits_at_once() {
    let grid = Grid::new();
    let node = grid.node(60);
    let out = deploy_and_wait(&grid, &node, "/bin/sh -c 'echo starting; echo boom; exit 3'");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "--wait succeeded for a container that exited: {stderr}");
    assert!(stderr.contains("exited with code 3"), "{stderr}\nagent log:\n{}", node.log());
    let output = stderr.split_once("its last output:").map(|(_, o)| o).unwrap_or_else(|| panic!("{stderr}"));
    assert!(output.lines().any(|l| l.trim() == "boom"), "{stderr}");
    assert!(!stderr.contains("[4/4] running"), "said running of a container that did not stay up: {stderr}");

    // A healthy container still returns promptly, once the node calls it stable.
    let started = Instant::now();
    let out = deploy_and_wait(&grid, &node, "sleep 1000");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.contains("[4/4] running"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
}

#[test]
fn live_shows_exit_codes_short_node_ids_and_the_restart_history_of_a_container_running_again() {
    let grid = Grid::new();
    let node = grid.node(60);
    // Fails on its first run, runs on the next (its writable layer is kept across restarts).
    let script = "/bin/sh -c 'if [ -e /ran ]; then echo again; sleep 1000; fi; touch /ran; echo once; exit 7'";
    let id = id_of(&grid.deploy(&node, script, &[]));
    let live = || String::from_utf8_lossy(&grid.cli_raw(&["live"]).stdout).into_owned();
    let row = |text: &str| text.lines().find(|l| l.starts_with(&id)).map(str::to_owned);
    let crashed = wait_until(LIMIT, || row(&live()).filter(|r| r.contains("restarting")));
    let crashed = crashed.unwrap_or_else(|| panic!("no restart shown: {}\nagent log:\n{}", live(), node.log()));
    assert!(crashed.contains("error: the container exited with code 7; restarting (1/"), "{crashed}");
    let record = grid.record(&id).unwrap();
    let data = &record["result"]["payload"]["data"];
    assert_eq!(data["last_stop"]["exit_code"], 7, "{record}");
    assert!(data["last_stop"]["output"].as_array().unwrap().iter().any(|l| l == "once"), "{record}");

    // Running again, it keeps saying why it was restarted.
    let again = wait_until(LIMIT, || row(&live()).filter(|r| r.contains(" ok")));
    let again = again.unwrap_or_else(|| panic!("not running again: {}\nagent log:\n{}", live(), node.log()));
    assert!(again.contains("ok (restarted once, last: the container exited with code 7)"), "{again}");
    let short = &node.id()[..8];
    assert!(again.contains(&format!(" {short} ")) && !again.contains(node.id()), "{again}");
    let record = grid.record(&id).unwrap();
    assert_eq!(record["result"]["payload"]["data"]["restarts"], 1, "{record}");
    assert_eq!(record["workload"]["payload"]["node_id"], node.id(), "--json keeps the whole id");

    // The short id names the node where a node is asked for.
    let volume = grid.cli(&["deploy", "volume", "--node", short, "--size", "64"]);
    assert_eq!(volume["workload"]["payload"]["node_id"], node.id(), "{volume}");
    let unknown = grid.cli_raw(&["deploy", "volume", "--node", "zzzz", "--size", "64"]);
    let said = String::from_utf8_lossy(&unknown.stderr);
    assert!(!unknown.status.success() && said.contains("no node's id starts with it"), "{said}");
    let tiny = grid.cli_raw(&["deploy", "volume", "--node", &node.id()[..3], "--size", "64"]);
    let said = String::from_utf8_lossy(&tiny.stderr);
    assert!(!tiny.status.success() && said.contains("too short") && said.contains("first 4 characters"), "{said}");
}

#[test]
fn an_image_whose_program_is_corrupt_on_the_hub_fails_at_once_naming_each_bad_chunk_once() {
    let grid = Grid::new();
    let node = grid.node(60);
    let dir = tempfile::tempdir().unwrap();
    let rootfs = zgrid_devnet::busybox_rootfs(dir.path()).unwrap();
    let pushed = crate::hub::push(&grid, dir.path(), &rootfs, "corrupt.flist");
    // Flip a byte of the program's first chunk where the hub keeps it.
    let flist = zgrid_flist::Flist::open(&dir.path().join("corrupt.flist")).unwrap();
    let ino = zgrid_flist::resolve(&flist, "/bin/busybox").unwrap();
    let victim = hex::encode(flist.chunks(ino).unwrap()[0].id);
    let stored = grid.devnet.hub_data().join("chunks").join(&victim[..2]).join(&victim);
    let mut bytes = std::fs::read(&stored).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&stored, bytes).unwrap();

    let url = pushed["url"].as_str().unwrap();
    let args = ["deploy", "container", "--node", node.id(), "--flist", url, "--entrypoint", "/bin/sh -c 'sleep 1000'"];
    let out = grid.cli_raw(&[&args[..], &["--memory", "32", "--disk", "64", "--wait"]].concat());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let failure = stderr.lines().find(|l| l.contains("failed on its node")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(failure.contains("failed on its node: the image is corrupt: "), "{failure}");
    assert_eq!(failure.matches(&victim).count(), 1, "each bad chunk once: {failure}");
    assert!(failure.ends_with("not restarted"), "started once: {failure}");
    assert!(!failure.contains("attempts") && !failure.contains("runc"), "{failure}");
    let log = node.log();
    assert!(!log.contains("restarting ("), "started once: {log}");
}
