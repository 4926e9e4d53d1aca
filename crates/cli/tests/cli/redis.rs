//! Publishing to Redis end to end: a node agent in its namespace, a busybox container, and
//! Debian's redis-server on the underlay's host address, started and stopped by the tests.

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::grid::{Grid, id_of, wait_until};

/// A redis-server process on `address:port`, killed on drop.
struct Redis {
    child: Option<Child>,
    address: Ipv4Addr,
    port: u16,
}

impl Redis {
    /// Start one on a free port of `address`.
    fn start(address: Ipv4Addr) -> Self {
        let port = std::net::TcpListener::bind((address, 0)).unwrap().local_addr().unwrap().port();
        let mut redis = Self { child: None, address, port };
        redis.restart();
        redis
    }

    /// Start it (again) on the same port and wait until it answers.
    fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .args(["--bind", &self.address.to_string(), "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server)");
        self.child = Some(child);
        let up = wait_until(Duration::from_secs(10), || std::net::TcpStream::connect((self.address, self.port)).ok());
        assert!(up.is_some(), "redis-server did not start on {}:{}", self.address, self.port);
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `redis://address:port/channel`.
    fn url(&self, channel: &str) -> String {
        format!("redis://{}:{}/{channel}", self.address, self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Deploy a busybox container running `script` on `node`, with `extra` flags, and wait for it.
fn deploy(grid: &Grid, node: &zgrid_devnet::Node, script: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["deploy", "container", "--node", node.id(), "--flist", grid.image.to_str().unwrap()];
    args.extend(["--entrypoint", script, "--wait"]);
    args.extend_from_slice(extra);
    grid.cli(&args)
}

/// The pid of container `id`'s init process on `node`, if it runs.
fn running_pid(node: &zgrid_devnet::Node, id: &str) -> Option<u32> {
    let runtime = node.runtime().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    match rt.block_on(runtime.state(id)) {
        Ok(zgrid_node::runtime::ContainerState::Running { pid }) => Some(pid),
        _ => None,
    }
}

/// The next `n` messages `zgrid --json stats id` prints.
fn stats(grid: &Grid, id: &str, n: usize) -> Vec<serde_json::Value> {
    let mut child = grid
        .cli_command()
        .args(["--json", "stats", id, "--count", &n.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let out: Vec<serde_json::Value> = lines.map(|l| serde_json::from_str(&l.unwrap()).unwrap()).collect();
    assert!(child.wait().unwrap().success());
    out
}

#[test]
fn statistics_arrive_every_two_seconds_follow_memory_and_survive_a_redis_outage() {
    let grid = Grid::new();
    let node = grid.node(60);
    let mut redis = Redis::start(grid.devnet.underlay().gateway());
    let endpoint = redis.url(&format!("stats-{}", std::process::id()));
    // dd fills a 40 MiB buffer and holds it while blocked on a pipe nobody reads.
    let script = "/bin/sh -c 'sleep 5; dd if=/dev/zero bs=40M count=1 | sleep 1000'";
    let deployed = deploy(&grid, &node, script, &["--memory", "128", "--stats", &endpoint]);
    let id = id_of(&deployed);

    let messages = stats(&grid, &id, 7);
    let at: Vec<i64> = messages.iter().map(|m| m["timestamp"].as_i64().unwrap()).collect();
    // Every 2 s, never in bursts; a loaded machine may delay one.
    assert!(at.windows(2).all(|w| (1..=10).contains(&(w[1] - w[0]))), "not periodic: {at:?}");
    for m in &messages {
        assert_eq!(m["memory_limit"], 128u64 << 20, "{m}");
        assert!(m["pids_current"].as_u64().unwrap() >= 1, "{m}");
        assert!(m["cpu_usage"].is_u64() && m["memory_cache"].is_u64(), "{m}");
    }
    let memory: Vec<u64> = messages.iter().map(|m| m["memory_usage"].as_u64().unwrap()).collect();
    assert!(memory[0] < 20 << 20, "before the allocation: {memory:?}");
    assert!(*memory.last().unwrap() > 38_000_000, "after allocating 40 MB: {memory:?}");

    // Redis goes away: the container runs on; statistics resume when Redis is back.
    redis.kill();
    let noticed = wait_until(Duration::from_secs(30), || {
        node.log().contains("cannot publish statistics; dropping them until Redis answers").then_some(())
    });
    assert!(noticed.is_some(), "the agent did not notice Redis was gone:\n{}", node.log());
    assert!(running_pid(&node, &id).is_some(), "the container stopped while Redis was away");
    let out = grid.cli_raw(&["stats", &id, "--count", "1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    let address = endpoint.trim_start_matches("redis://").split('/').next().unwrap();
    assert!(!out.status.success() && err.contains(&format!("cannot reach Redis at {address},")), "{err}");
    redis.restart();
    let again = stats(&grid, &id, 2);
    assert!(again[1]["timestamp"].as_i64() > at.last().copied(), "{again:?}");
    let back =
        wait_until(Duration::from_secs(10), || node.log().contains("statistics reach Redis again").then_some(()));
    assert!(back.is_some(), "{}", node.log());
}

/// Lines published on `channels` of `redis`, gathered by a subscriber thread until `done` says
/// so (or 60 s pass): `(channel, line)` in arrival order. Subscribed when this returns.
fn subscribe(
    redis: &Redis,
    channels: &[String],
    done: impl Fn(&[(String, String)]) -> bool + Send + 'static,
) -> std::thread::JoinHandle<Vec<(String, String)>> {
    let client = redis::Client::open(format!("redis://{}:{}", redis.address, redis.port)).unwrap();
    let mut connection = client.get_connection().unwrap();
    connection.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let channels = channels.to_vec();
    let (ready, subscribed) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let mut pubsub = connection.as_pubsub();
        for channel in &channels {
            pubsub.subscribe(channel).unwrap();
        }
        ready.send(()).unwrap();
        let (mut got, start) = (Vec::new(), std::time::Instant::now());
        while !done(&got) && start.elapsed() < Duration::from_secs(60) {
            if let Ok(message) = pubsub.get_message() {
                got.push((message.get_channel_name().to_owned(), message.get_payload::<String>().unwrap()));
            }
        }
        got
    });
    subscribed.recv().unwrap();
    thread
}

#[test]
fn output_lines_arrive_on_their_redis_channels_in_order_and_resume_after_a_redis_outage() {
    let grid = Grid::new();
    let node = grid.node(60);
    let mut redis = Redis::start(grid.devnet.underlay().gateway());
    let prefix = format!("logs-{}", std::process::id());
    let channels = [format!("{prefix}-stdout"), format!("{prefix}-stderr")];
    let first =
        subscribe(&redis, &channels, |got| got.iter().filter(|(_, l)| l == "out 49" || l == "err 49").count() == 2);
    let script = "/bin/sh -c 'sleep 1; i=0; while [ $i -lt 50 ]; do echo out $i; echo err $i >&2; i=$((i+1)); done; \
                  while true; do echo tick $i; i=$((i+1)); sleep 0.2; done'";
    let url = redis.url(&prefix);
    let deployed = deploy(&grid, &node, script, &["--memory", "32", "--logs", &url, "--seal-logs"]);
    let id = id_of(&deployed);
    assert!(!serde_json::to_string(&deployed).unwrap().contains(&url), "the sealed URL is in the ledger in clear");

    let got = first.join().unwrap();
    let on = |channel: &str| -> Vec<String> {
        got.iter().filter(|(c, l)| c == channel && !l.starts_with("tick")).map(|(_, l)| l.clone()).collect()
    };
    let expected = |stream: &str| -> Vec<String> { (0..50).map(|i| format!("{stream} {i}")).collect() };
    assert_eq!(on(&channels[0]), expected("out"), "stdout, in order, on its channel");
    assert_eq!(on(&channels[1]), expected("err"), "stderr, in order, on its channel");
    let logs = grid.cli_raw(&["logs", &id]);
    let (out, err) = (String::from_utf8_lossy(&logs.stdout), String::from_utf8_lossy(&logs.stderr));
    assert!(out.contains("out 49\n") && err.contains("err 49\n"), "`zgrid logs` still has the output:\n{out}\n{err}");

    // Redis goes away: the container runs on, the owner hears of it; lines flow again once
    // Redis is back.
    redis.kill();
    let reported = wait_until(Duration::from_secs(30), || {
        let record = grid.record(&id)?;
        let message = record["result"]["payload"]["message"].as_str()?.to_owned();
        message.contains("cannot publish stdout lines").then_some(message)
    });
    let reported = reported.unwrap_or_else(|| panic!("the outage was not reported: {:?}", grid.record(&id)));
    assert!(reported.contains(&format!(":{}/{prefix}-stdout", redis.port)), "{reported}");
    assert!(running_pid(&node, &id).is_some(), "the container stopped while Redis was away");
    redis.restart();
    let again = subscribe(&redis, &channels[..1], |got| got.len() >= 3).join().unwrap();
    assert!(again.len() >= 3 && again.iter().all(|(_, l)| l.starts_with("tick ")), "{again:?}\n{}", node.log());

    // The forwarder lives in the agent: after a SIGKILL and restart of the agent, lines flow
    // again and the container was never restarted.
    let mut node = node;
    let before = running_pid(&node, &id);
    node.kill();
    node.restart().unwrap();
    let after_restart = subscribe(&redis, &channels[..1], |got| got.len() >= 3).join().unwrap();
    assert!(after_restart.len() >= 3, "no lines after the agent restarted:\n{}", node.log());
    assert_eq!(running_pid(&node, &id), before, "the container was restarted");
}
