//! The README's first command, verbatim: it installs what is missing, builds zgrid, brings up a
//! grid with `zgrid up` and deploys the main job (a private network across two nodes, a
//! container on each, a wg-quick access config). Then, as a user would: a "laptop" namespace
//! joins with the config and reaches the containers over WireGuard; `zgrid up` again, and after
//! its processes crash, converges to a working grid; everything is deleted and `zgrid down`
//! leaves no namespace, interface, mount, process or cgroup behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::grid::wait_until;

const LIMIT: Duration = Duration::from_secs(90);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// The commands in the README's "Try it" block: (run it, test it).
fn readme_commands() -> (String, String) {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let block = readme.split("## Try it").nth(1).and_then(|s| s.split("```sh\n").nth(1)).expect("a Try it block");
    let lines: Vec<&str> = block.split("```").next().unwrap().lines().collect();
    let command = |l: &str| l.split('#').next().unwrap().trim().to_owned();
    (command(lines[0]), command(lines[1]))
}

/// Everything a grid named `prefix` has on this machine: namespaces, interfaces, mounts under
/// `dir`, processes mentioning `dir`, cgroups.
fn leftovers(prefix: &str, dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let run =
        |args: &[&str]| String::from_utf8_lossy(&Command::new("ip").args(args).output().unwrap().stdout).into_owned();
    found.extend(run(&["netns", "list"]).lines().filter(|l| l.starts_with(prefix)).map(|l| format!("netns {l}")));
    found.extend(
        run(&["-o", "link", "show"])
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .filter(|name| name.starts_with(prefix))
            .map(|name| format!("interface {name}")),
    );
    let dir_text = dir.to_string_lossy().into_owned();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    found.extend(
        mountinfo
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&dir_text))
            .map(|m| format!("mount {m}")),
    );
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline"))
            && String::from_utf8_lossy(&cmdline).contains(&dir_text)
        {
            found.push(format!(
                "process {} {}",
                entry.file_name().to_string_lossy(),
                String::from_utf8_lossy(&cmdline).replace('\0', " ")
            ));
        }
    }
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        for cgroup in std::fs::read_dir(hierarchy.path()).into_iter().flatten().flatten() {
            if cgroup.file_name().to_string_lossy().starts_with(&format!("{prefix}-")) {
                found.push(format!("cgroup {}", cgroup.path().display()));
            }
        }
    }
    found
}

/// A namespace on the grid's bridge at `.250`, where a laptop would be.
struct Laptop {
    name: String,
    config: PathBuf,
}

impl Laptop {
    fn join(prefix: &str, gateway: &str, config: &Path) -> Self {
        let name = format!("zglt{}", std::process::id() % 100_000);
        let veth = format!("zglv{}", std::process::id() % 100_000);
        let ip = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().unwrap();
            assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        let laptop = Self { name: name.clone(), config: config.to_owned() };
        ip(&["netns", "add", &name]);
        ip(&["link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &name]);
        ip(&["link", "set", &veth, "master", &format!("{prefix}br"), "up"]);
        let address = format!("{}.250/24", gateway.rsplit_once('.').unwrap().0);
        ip(&["-n", &name, "addr", "add", &address, "dev", "eth0"]);
        ip(&["-n", &name, "link", "set", "eth0", "up"]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        let out = laptop.run("wg-quick", &["up", config.to_str().unwrap()]);
        assert!(out.status.success(), "wg-quick up: {}", String::from_utf8_lossy(&out.stderr));
        laptop
    }

    /// Run `program` in the laptop's network namespace only: `ip netns exec` would also give
    /// it a copy of the host's mounts, containers' included, and a daemon left there (wireguard-go)
    /// would keep their devices busy.
    fn run(&self, program: &str, args: &[&str]) -> Output {
        zgrid_devnet::nsenter(&Path::new("/run/netns").join(&self.name), program)
            .args(args)
            .env("WG_QUICK_USERSPACE_IMPLEMENTATION", "wireguard-go")
            .output()
            .unwrap()
    }

    /// What the container at `ip` says on port 8080.
    fn hello(&self, ip: &str) -> Option<String> {
        wait_until(LIMIT, || {
            let out = self.run("busybox", &["nc", "-w", "3", ip, "8080"]);
            let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            text.starts_with("hello from").then_some(text)
        })
    }
}

impl Drop for Laptop {
    fn drop(&mut self) {
        let _ = self.run("wg-quick", &["down", self.config.to_str().unwrap()]);
        let pids = Command::new("ip").args(["netns", "pids", &self.name]).output().unwrap();
        for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
            let _ = Command::new("kill").args(["-9", pid]).status();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// `zgrid down` on the grid in `dir` when the test ends, whatever happened.
struct Down<'a> {
    zgrid: &'a Path,
    env: &'a [(&'a str, &'a Path)],
}

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = Command::new(self.zgrid).arg("down").envs(self.env.iter().copied()).output();
    }
}

#[test]
fn readme_the_main_job_runs_reaches_its_containers_over_wireguard_and_leaves_nothing_behind() {
    let (run_it, test_it) = readme_commands();
    assert_eq!(test_it, "scripts/test", "the CI runs scripts/test (.ci/run)");
    assert!(std::fs::read_to_string(repo().join(".ci/run")).unwrap().contains("exec scripts/test"));
    let scratch = tempfile::tempdir().unwrap();
    let (grid_dir, home) = (scratch.path().join("grid"), scratch.path().join("home"));
    let env: [(&str, &Path); 2] = [("ZGRID_GRID_DIR", &grid_dir), ("ZGRID_HOME", &home)];
    let zgrid = repo().join("target/release/zgrid");
    let _down = Down { zgrid: &zgrid, env: &env };

    let out = Command::new("bash").arg("-c").arg(&run_it).current_dir(repo()).envs(env).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "`{run_it}` failed:\n{stdout}\n{stderr}");
    for step in ["starting the explorer", "starting node agent n2", "creating the private network demo", "wg-quick"] {
        assert!(stdout.contains(step) || stderr.contains(step), "no {step:?} in:\n{stdout}\n{stderr}");
    }
    let cli = |args: &[&str]| {
        let out = Command::new(&zgrid).arg("--json").args(args).envs(env).output().unwrap();
        assert!(out.status.success(), "zgrid {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let status = cli(&["status"]);
    let prefix = status["nodes"][0]["netns"].as_str().unwrap().trim_end_matches("-n1").to_owned();
    let gateway = status["explorer"]["address"]
        .as_str()
        .unwrap()
        .trim_start_matches("http://")
        .split(':')
        .next()
        .unwrap()
        .to_owned();
    let ips: Vec<String> = cli(&["live"])["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| {
            r["workload"]["payload"]["data"]["network_connection"][0]["ipaddress"].as_str().map(str::to_owned)
        })
        .collect();
    assert_eq!(ips.len(), 2, "a container on each node: {ips:?}");
    for ip in &ips {
        assert!(stdout.contains(ip.as_str()), "the script prints how to reach {ip}:\n{stdout}");
    }

    // A laptop joins the network with the config the script wrote and reaches both containers.
    let config = grid_dir.join("demo.conf");
    let laptop = Laptop::join(&prefix, &gateway, &config);
    for ip in &ips {
        assert!(laptop.hello(ip).is_some(), "no answer from {ip} over WireGuard");
    }

    // The grid's consoles have their browser terminal: the script installs xterm.js where
    // `zgrid up` gives it to the nodes.
    let hub = status["hub"]["address"].as_str().unwrap();
    let flists = cli(&["hub", "ls", "me"]);
    let busybox = flists.as_array().unwrap().iter().find(|f| f["name"] == "busybox.flist").unwrap();
    let image = format!("{hub}{}", busybox["path"].as_str().unwrap());
    let node = status["nodes"][0]["id"].as_str().unwrap();
    let mut deploy = vec!["deploy", "container", "--node", node, "--flist", &image, "--network", "demo"];
    deploy.extend(["--interactive", "--memory", "32", "--disk", "64", "--wait"]);
    let deployed = cli(&deploy);
    let console = deployed["workload"]["payload"]["data"]["network_connection"][0]["ipaddress"].as_str().unwrap();
    let xterm = format!("http://{console}:7681/assets/xterm.js");
    let served = wait_until(LIMIT, || {
        laptop.run("busybox", &["wget", "-q", "-O", "/dev/null", &xterm]).status.success().then_some(())
    });
    assert!(served.is_some(), "{xterm} is not served (404?) on a `zgrid up` grid");

    // `zgrid up` again changes nothing; after the hub and an agent are killed it starts them
    // again and the grid works.
    let again = Command::new(&zgrid).args(["up", "--nodes", "2"]).envs(env).output().unwrap();
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert!(!String::from_utf8_lossy(&again.stderr).contains("starting node agent"), "nothing restarted");
    for (pid_file, role) in [(grid_dir.join("hub.pid"), "hub"), (grid_dir.join("n2/agent.pid"), "agent")] {
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        assert!(Command::new("kill").args(["-9", pid.trim()]).status().unwrap().success(), "kill the {role}");
    }
    let down_now = wait_until(LIMIT, || {
        (!Command::new(&zgrid).arg("status").envs(env).output().unwrap().status.success()).then_some(())
    });
    assert!(down_now.is_some(), "`zgrid status` fails while parts are down");
    let again = Command::new(&zgrid).args(["up", "--nodes", "2"]).envs(env).output().unwrap();
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert!(String::from_utf8_lossy(&again.stderr).contains("starting node agent n2"));
    let healthy = Command::new(&zgrid).arg("status").envs(env).output().unwrap();
    assert!(healthy.status.success(), "{}", String::from_utf8_lossy(&healthy.stdout));
    assert_eq!(cli(&["hub", "ls", "me"])[0]["name"], "busybox.flist", "the hub kept its flists");
    for ip in &ips {
        assert!(laptop.hello(ip).is_some(), "no answer from {ip} after the restarts");
    }

    // Delete everything, then `zgrid down` leaves nothing.
    let ids: Vec<String> = cli(&["live"])["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["workload"]["payload"]["data"]["type"] == "container")
        .map(|r| r["workload"]["payload"]["id"].as_str().unwrap().to_owned())
        .collect();
    let mut delete = vec!["delete"];
    delete.extend(ids.iter().map(String::as_str));
    cli(&delete);
    let deleted = wait_until(LIMIT, || {
        let live = cli(&["live", "--state", "all"]);
        let all = live["items"].as_array().unwrap();
        ids.iter()
            .all(|id| {
                all.iter().any(|r| {
                    r["workload"]["payload"]["id"] == id.as_str() && r["result"]["payload"]["state"] == "deleted"
                })
            })
            .then_some(())
    });
    let logs = |n: &str| {
        let log = std::fs::read_to_string(grid_dir.join(n).join("agent.log")).unwrap_or_default();
        log.lines().filter(|l| !l.contains("DEBUG")).collect::<Vec<_>>().join("\n")
    };
    assert!(deleted.is_some(), "the containers were not deleted:\nn1:\n{}\nn2:\n{}", logs("n1"), logs("n2"));
    drop(laptop);
    let out = Command::new("bash").arg("-c").arg("scripts/devnet down").current_dir(repo()).envs(env).output().unwrap();
    assert!(out.status.success(), "scripts/devnet down: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(leftovers(&prefix, &grid_dir), Vec::<String>::new());
    assert!(!grid_dir.exists(), "the grid's directory is removed");
    let config = std::fs::read_to_string(home.join("config.toml")).unwrap_or_default();
    assert!(!config.contains(&gateway), "the CLI no longer points at the grid: {config}");
}
