//! Readiness and liveness probes end to end: busybox containers deployed with `--readiness` and
//! `--liveness`, probed by real node agents (a TCP connection or an HTTP GET in the container's
//! network namespace, `runc exec` inside it), with what they find read back from the results.

use std::time::Duration;

use serde_json::Value;
use zgrid_devnet::Node;

use crate::grid::{Grid, id_of, wait_until};

const LIMIT: Duration = Duration::from_secs(90);

/// Wait until the latest result of workload `id` satisfies `done` (a description of it for the
/// failure); returns that result's payload.
fn wait_for(grid: &Grid, node: &Node, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    wait_until(LIMIT, || {
        last = grid.record(id)?["result"]["payload"].clone();
        done(&last).then(|| last.clone())
    })
    .unwrap_or_else(|| panic!("workload {id}: never {what}; last result: {last}\nagent log:\n{}", node.log()))
}

fn is_ok(result: &Value) -> bool {
    result["state"] == "ok"
}

#[test]
fn a_tcp_readiness_probe_makes_a_container_ready_while_its_port_listens() {
    let grid = Grid::new();
    let node = grid.node(60);
    // Listens after 8 s, for 15 s, and then never again; the container runs on.
    let script = "/bin/sh -c 'sleep 8; busybox httpd -f -p 8080 & sleep 15; kill $!; sleep 1000'";
    let probe = ["--readiness", "tcp:8080", "--probe-period", "1", "--wait"];
    let id = id_of(&grid.deploy(&node, script, &probe));
    let record = grid.record(&id).unwrap();
    let container = &record["workload"]["payload"]["data"]["probes"];
    assert_eq!(container["readiness"]["action"], serde_json::json!({"type": "tcp_socket", "port": 8080}));
    assert_eq!(container["readiness"]["period_seconds"], 1);
    assert!(container.get("liveness").is_none(), "{container}");

    let unready = wait_for(&grid, &node, &id, "ok and not ready", |r| is_ok(r) && r["data"]["ready"] == false);
    assert_eq!(unready["data"]["restarts"], 0, "{unready}");
    let ready = wait_for(&grid, &node, &id, "ready", |r| is_ok(r) && r["data"]["ready"] == true);
    assert_eq!((&ready["message"], &ready["version"]), (&"".into(), &unready["version"]), "{ready}");
    // Once the listener is gone, 3 failed attempts in a row make it not ready again.
    let gone = wait_for(&grid, &node, &id, "not ready again", |r| is_ok(r) && r["data"]["ready"] == false);
    let message = gone["message"].as_str().unwrap();
    assert!(message.starts_with("readiness probe failed: cannot connect to port 8080"), "{gone}");
    assert_eq!(gone["data"]["restarts"], 0, "readiness never restarts a container: {gone}");
}

#[test]
fn a_container_failing_its_liveness_probe_is_restarted_and_the_result_says_why() {
    let grid = Grid::new();
    let node = grid.node(60);
    let script = "/bin/sh -c 'trap \"exit 0\" TERM; echo started; while true; do sleep 1; done'";
    let id = id_of(&grid.deploy(&node, script, &["--liveness", "exec:cat /alive", "--probe-period", "1"]));

    let restarting = wait_for(&grid, &node, &id, "restarted for its liveness probe", |r| {
        r["message"].as_str().is_some_and(|m| m.contains("restarting (2/"))
    });
    assert_eq!(restarting["state"], "error");
    let message = restarting["message"].as_str().unwrap();
    assert!(message.starts_with("liveness probe failed: `cat /alive` ended with exit status: 1"), "{message}");
    assert!(message.contains("No such file or directory") && message.contains("(3 times in a row)"), "{message}");
    let running =
        wait_for(&grid, &node, &id, "running again", |r| is_ok(r) && r["data"]["restarts"].as_u64() >= Some(2));
    assert_eq!(running["data"]["ready"], true, "no readiness probe: ready while running: {running}");
    let logs = String::from_utf8_lossy(&grid.cli_raw(&["logs", &id]).stdout).into_owned();
    assert!(logs.matches("started").count() >= 3, "not started again: {logs}");
}

#[test]
fn a_container_on_a_private_network_is_probed_over_http_and_by_command_in_its_user_namespace() {
    let grid = Grid::new();
    let node = grid.node(60);
    crate::network::create(&grid, "probed", "10.61.0.0/16", &[&node]);
    // Serves /healthz at once; after 20 s the page its liveness probe reads goes: it is
    // restarted, and the script (on the same writable layer) puts it back.
    let script = "/bin/sh -c 'mkdir -p /www; echo ok > /www/healthz; echo yes > /www/alive; \
                  busybox httpd -f -p 8080 -h /www & sleep 20; rm /www/alive; sleep 1000'";
    let flags = [
        "--network",
        "probed",
        "--readiness",
        "http:8080/healthz",
        "--liveness",
        "http:8080/alive",
        "--probe-period",
        "1",
    ];
    let id = id_of(&grid.deploy(&node, script, &flags));
    let ready = wait_for(&grid, &node, &id, "ready", |r| is_ok(r) && r["data"]["ready"] == true);
    assert_eq!(ready["data"]["restarts"], 0, "{ready}");
    assert!(ready["data"]["ipv4"].as_str().is_some_and(|ip| ip.starts_with("10.61.")), "{ready}");
    let runtime = node.runtime().unwrap();
    assert!(
        runtime.user_namespaces() && runtime.id_range(&id).unwrap().is_some(),
        "the probed container lost its user namespace"
    );
    let restarting = wait_for(&grid, &node, &id, "restarted", |r| {
        r["message"].as_str().is_some_and(|m| m.starts_with("liveness probe failed:"))
    });
    let message = restarting["message"].as_str().unwrap();
    assert!(message.contains("404") && message.contains("restarting (1/"), "{message}");
    let again = wait_for(&grid, &node, &id, "ready after its restart", |r| {
        is_ok(r) && r["data"]["restarts"] == 1 && r["data"]["ready"] == true
    });
    assert_eq!(again["message"], "", "{again}");

    // A command probe enters it there too, with its user namespace kept.
    let flags = ["--network", "probed", "--readiness", "exec:cat /tmp/ready", "--probe-period", "1"];
    let probed = id_of(&grid.deploy(&node, "sh -c 'sleep 2; touch /tmp/ready; exec sleep 1000'", &flags));
    let ready = wait_for(&grid, &node, &probed, "ready by a command", |r| is_ok(r) && r["data"]["ready"] == true);
    assert_eq!(ready["data"]["restarts"], 0, "{ready}");
    assert!(runtime.id_range(&probed).unwrap().is_some());
}

#[test]
fn a_probe_command_that_overruns_its_timeout_is_killed() {
    let grid = Grid::new();
    let node = grid.node(60);
    let flags = ["--readiness", "exec:sleep 30", "--probe-period", "1", "--wait"];
    let id = id_of(&grid.deploy(&node, "sleep 1000", &flags));
    std::thread::sleep(Duration::from_secs(8));
    // Without the kill, a new `sleep 30` would pile up every second.
    let processes = node.runtime().unwrap().processes(&id).unwrap();
    assert!(processes.len() <= 3, "{} processes in the container: {processes:?}", processes.len());
    let result = grid.record(&id).unwrap()["result"]["payload"].clone();
    assert_eq!((&result["state"], &result["data"]["ready"]), (&"ok".into(), &false.into()), "{result}");
}
