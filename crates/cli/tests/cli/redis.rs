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
    let image = grid.image.to_str().unwrap();
    let deployed = grid.cli(&[
        "deploy",
        "container",
        "--node",
        node.id(),
        "--flist",
        image,
        "--entrypoint",
        script,
        "--memory",
        "128",
        "--stats",
        &endpoint,
        "--wait",
    ]);
    let id = id_of(&deployed);

    let messages = stats(&grid, &id, 7);
    let at: Vec<i64> = messages.iter().map(|m| m["timestamp"].as_i64().unwrap()).collect();
    assert!(at.windows(2).all(|w| (1..=3).contains(&(w[1] - w[0]))), "not every 2 s: {at:?}");
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
    std::thread::sleep(Duration::from_secs(5));
    let runtime = node.runtime().unwrap();
    let state =
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(runtime.state(&id));
    assert!(matches!(state, Ok(zgrid_node::runtime::ContainerState::Running { .. })), "{state:?}");
    redis.restart();
    let again = stats(&grid, &id, 2);
    assert!(again[1]["timestamp"].as_i64() > at.last().copied(), "{again:?}");
    let back =
        wait_until(Duration::from_secs(10), || node.log().contains("statistics reach Redis again").then_some(()));
    assert!(back.is_some(), "{}", node.log());
}
