//! Private networks end to end: real node agents in their own namespaces on the devnet
//! underlay, joined by the agents' embedded WireGuard, busybox containers on them talking over
//! the overlay, and a "laptop" namespace on the underlay joining with Debian's `wg-quick`
//! (userspace wireguard-go). Everything is driven through the CLI.

use std::net::Ipv4Addr;
use std::time::Duration;

use zgrid_devnet::Node;

use crate::grid::{Grid, id_of, wait_until};

const LIMIT: Duration = Duration::from_secs(120);

/// `zgrid network create` over `nodes` (named by the first 8 characters of their ids, as
/// `zgrid live` shows them), with progress on stderr.
pub(crate) fn create(grid: &Grid, name: &str, cidr: &str, nodes: &[&Node]) {
    let mut args = vec!["network", "create", "--name", name, "--cidr", cidr];
    for node in nodes {
        args.extend(["--node", &node.id()[..8]]);
    }
    let out = grid.cli_raw(&args);
    assert!(out.status.success(), "network create failed:\n{}", String::from_utf8_lossy(&out.stderr));
}

/// Host `n` of the /24 `node` has in network `name`.
pub(crate) fn host(grid: &Grid, name: &str, node: &Node, n: u8) -> String {
    let shown = grid.cli(&["network", "show", "--name", name]);
    let members = shown["members"].as_array().unwrap_or_else(|| panic!("no members in {shown}"));
    let member =
        members.iter().find(|m| m["node_id"] == node.id()).unwrap_or_else(|| panic!("{} not in {shown}", node.id()));
    let subnet: ipnet::Ipv4Net = member["subnet"].as_str().unwrap().parse().unwrap();
    Ipv4Addr::from(u32::from(subnet.network()) + u32::from(n)).to_string()
}

/// Run `script` in a busybox container on `node` joined to network `name` at `ip`; returns
/// once the node reports it running.
pub(crate) fn run_on(grid: &Grid, node: &Node, name: &str, ip: &str, script: &str) -> String {
    let entrypoint = format!("/bin/sh -c '{script}'");
    let deployed = grid.deploy(node, &entrypoint, &["--network", name, "--ip", ip]);
    let id = id_of(&deployed);
    grid.wait_for_result(node, &id, "ok", LIMIT);
    id
}

/// Wait until container `id`'s output satisfies `done`; returns the output.
pub(crate) fn wait_for_logs(
    grid: &Grid,
    node: &Node,
    id: &str,
    limit: Duration,
    done: impl Fn(&str) -> bool,
) -> String {
    let mut last = String::new();
    wait_until(limit, || {
        let out = grid.cli_raw(&["logs", id]);
        last = String::from_utf8_lossy(&out.stdout).into_owned();
        done(&last).then(|| last.clone())
    })
    .unwrap_or_else(|| {
        panic!("container {id} never printed what was expected; it printed:\n{last}\nagent log:\n{}", node.log())
    })
}

/// Delete workloads `ids` and wait until their nodes report them deleted.
pub(crate) fn delete(grid: &Grid, node: &Node, ids: &[&str]) {
    for id in ids {
        let out = grid.cli_raw(&["delete", id]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    for id in ids {
        grid.wait_for_result(node, id, "deleted", LIMIT);
    }
}

/// Names of the network namespaces on the machine.
pub(crate) fn namespaces() -> Vec<String> {
    std::fs::read_dir("/run/netns").unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()
}

/// Open `/dev/net/tun` handles of the node's agent: its WireGuard devices.
fn tun_handles(node: &Node) -> usize {
    let fds = std::fs::read_dir(format!("/proc/{}/fd", node.pid().unwrap())).unwrap();
    fds.flatten()
        .filter(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l == std::path::Path::new("/dev/net/tun")))
        .count()
}

/// Interfaces and routes of the node's own namespace.
pub(crate) fn node_links_and_routes(node: &Node) -> (String, String) {
    let links = node.netns().ip(&["-o", "link", "show"]).unwrap();
    let names = links
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap())
        .collect::<Vec<_>>()
        .join(" ");
    (names, node.netns().ip(&["route", "show"]).unwrap())
}

#[test]
fn containers_on_three_nodes_reach_each_other_move_100_mb_intact_and_leave_nothing_when_deleted() {
    let grid = Grid::new();
    let nodes = [grid.node(60), grid.node(60), grid.node(60)];
    let before: Vec<(String, String)> = nodes.iter().map(node_links_and_routes).collect();
    // Each node's directory entry says which WireGuard its networks use (the kernel's where the
    // module exists, the embedded one otherwise, with why).
    for node in &nodes {
        let said = wait_until(LIMIT, || {
            let listed = grid.cli(&["nodes"]);
            let entry = listed["items"].as_array()?.iter().find(|n| n["node_id"] == node.id())?.clone();
            entry["wireguard"].as_str().map(str::to_owned)
        })
        .expect("no heartbeat said which WireGuard the node uses");
        assert!(said == "kernel" || said.starts_with("userspace: "), "{said}");
    }
    create(&grid, "net", "10.50.0.0/16", &[&nodes[0], &nodes[1], &nodes[2]]);
    let ips: Vec<String> = nodes.iter().map(|n| host(&grid, "net", n, 2)).collect();

    // Containers have no raw sockets, and busybox ping needs them: each answers on port 7001.
    let answer = |who: &str| format!("(while true; do echo {who} is up | nc -l -p 7001; done) & ");
    let receiver =
        run_on(&grid, &nodes[1], "net", &ips[1], &format!("{}sleep 100000 | nc -l -p 5000 | sha256sum", answer("b")));
    let sender = run_on(
        &grid,
        &nodes[2],
        "net",
        &ips[2],
        &format!(
            "{}until nc -w 1 {r} 7001 | grep -q up; do sleep 0.5; done; mkfifo /tmp/p; sha256sum </tmp/p & hash=$!; \
             head -c 104857600 /dev/urandom | tee /tmp/p | nc {r} 5000; wait $hash; echo SENT; sleep 100000",
            answer("c"),
            r = ips[1]
        ),
    );
    let pinger = run_on(
        &grid,
        &nodes[0],
        "net",
        &ips[0],
        &format!(
            "for ip in {} {}; do until nc -w 2 $ip 7001; do sleep 0.5; done; done; echo REACHED BOTH; sleep 100000",
            ips[1], ips[2]
        ),
    );
    let pings = wait_for_logs(&grid, &nodes[0], &pinger, LIMIT, |l| l.contains("REACHED BOTH"));
    assert!(pings.contains("b is up") && pings.contains("c is up") && pings.contains("REACHED BOTH"), "{pings}");

    let sent = wait_for_logs(&grid, &nodes[2], &sender, Duration::from_secs(300), |l| l.contains("SENT"));
    let received = wait_for_logs(&grid, &nodes[1], &receiver, LIMIT, |l| l.contains("  -"));
    let hash = |text: &str| text.lines().find(|l| l.ends_with("  -")).map(str::to_owned);
    assert!(hash(&sent).is_some(), "{sent}");
    assert_eq!(hash(&received), hash(&sent), "the 100 MB arrived altered");
    assert_ne!(
        hash(&received).unwrap(),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  -",
        "nothing arrived"
    );

    // Deleting the containers and the network leaves nothing on any node.
    let shown = grid.cli(&["network", "show", "--name", "net"]);
    let resources: Vec<String> =
        shown["members"].as_array().unwrap().iter().map(|m| m["workload_id"].as_str().unwrap().to_owned()).collect();
    assert!(nodes.iter().all(|n| tun_handles(n) == 1), "one WireGuard device per node");
    delete(&grid, &nodes[0], &[&pinger]);
    delete(&grid, &nodes[1], &[&receiver]);
    delete(&grid, &nodes[2], &[&sender]);
    let out = grid.cli_raw(&["network", "delete", "--name", "net"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for (node, id) in nodes.iter().zip(&resources) {
        grid.wait_for_result(node, id, "deleted", LIMIT);
    }
    let left: Vec<String> = namespaces()
        .into_iter()
        .filter(|ns| [&pinger, &receiver, &sender].into_iter().chain(&resources).any(|id| ns.ends_with(id.as_str())))
        .collect();
    assert_eq!(left, Vec::<String>::new(), "namespaces left behind");
    for (node, before) in nodes.iter().zip(&before) {
        assert_eq!(&node_links_and_routes(node), before, "interfaces or routes left in the node's namespace");
        assert_eq!(tun_handles(node), 0, "a WireGuard device is still open in the agent");
        assert_eq!(std::fs::read_dir(node.state_dir().join("networks")).unwrap().count(), 0, "network records left");
    }
}

/// A namespace on `grid`'s underlay, next to `node`, that routes `ranges` through it.
pub(crate) fn neighbour(grid: &Grid, node: &Node, ranges: &[&str]) -> zgrid_devnet::Netns {
    let neighbour = grid.devnet.underlay().add_netns(&format!("nb{}", std::process::id() % 10000)).unwrap();
    for range in ranges {
        neighbour.ip(&["route", "add", range, "via", &node.address().to_string()]).unwrap();
    }
    neighbour
}

/// A "laptop" namespace on the underlay with a wg-quick interface up; brought down, its
/// wireguard-go stopped and the namespace removed on drop.
pub(crate) struct Laptop {
    pub(crate) netns: zgrid_devnet::Netns,
    config: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Laptop {
    /// `zgrid network add-access` to network `name` through `node` (its output returned too),
    /// then `wg-quick up` of the config inside a new namespace on `grid`'s underlay.
    pub(crate) fn join(grid: &Grid, name: &str, node: &Node) -> (Self, std::process::Output) {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join(Self::config_name());
        let path = config.to_str().unwrap();
        let out = grid.cli_raw(&["network", "add-access", "--name", name, "--node", node.id(), "--output", path]);
        assert!(out.status.success(), "add-access failed:\n{}", String::from_utf8_lossy(&out.stderr));
        (Self::up(grid, config, dir), out)
    }

    /// A file name for a wg-quick config, unique on the machine and short enough for an
    /// interface name.
    pub(crate) fn config_name() -> String {
        static LAPTOPS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = LAPTOPS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 100;
        format!("zl{}x{n}.conf", std::process::id() % 100_000)
    }

    /// `wg-quick up` of `config` (named by [`Laptop::config_name`]) inside a new namespace on
    /// `grid`'s underlay; `dir` is kept as long as the laptop.
    pub(crate) fn up(grid: &Grid, config: std::path::PathBuf, dir: tempfile::TempDir) -> Self {
        let name = config.file_stem().unwrap().to_string_lossy().replace("zl", "lt").replace(".conf", "");
        let netns = grid.devnet.underlay().add_netns(&name).unwrap();
        let laptop = Self { netns, config, _dir: dir };
        let out = laptop.netns.command("wg-quick").arg("up").arg(&laptop.config).output().unwrap();
        assert!(out.status.success(), "wg-quick up failed:\n{}", String::from_utf8_lossy(&out.stderr));
        laptop
    }

    /// The CLI as `grid`'s deployer, run in the laptop's namespace.
    pub(crate) fn cli(&self, grid: &Grid, args: &[&str]) -> std::process::Output {
        let mut command = self.netns.command(crate::common::ZGRID);
        command.env("ZGRID_HOME", grid.home.path()).env("ZGRID_EXPLORER", grid.devnet.explorer_url());
        command.env_remove("ZGRID_IDENTITY").env("ZGRID_LOG", "warn").args(args).output().unwrap()
    }

    /// Run `program args…` in the laptop's namespace.
    pub(crate) fn run(&self, program: &str, args: &[&str]) -> std::process::Output {
        self.netns.command(program).args(args).output().unwrap()
    }

    /// The access point's subnet, from the `Address` of its config.
    fn subnet(&self) -> String {
        let text = std::fs::read_to_string(&self.config).unwrap();
        let address = text.lines().find_map(|l| l.strip_prefix("Address = ")).unwrap();
        let net: ipnet::Ipv4Net = address.parse().unwrap();
        net.trunc().to_string()
    }

    /// Whether one ping to `ip` comes back within 2 s.
    fn pings(&self, ip: &str) -> bool {
        self.run("busybox", &["ping", "-c", "1", "-W", "2", ip]).status.success()
    }
}

impl Drop for Laptop {
    fn drop(&mut self) {
        let _ = self.netns.command("wg-quick").arg("down").arg(&self.config).output();
    }
}

#[test]
fn a_laptop_joins_with_wg_quick_and_reaches_a_container_by_its_overlay_ip_also_after_an_agent_restart() {
    let grid = Grid::new();
    let (a, b) = (grid.node(60), grid.node(60));
    create(&grid, "office", "10.60.0.0/16", &[&a, &b]);
    let ip = host(&grid, "office", &b, 7);
    let server = run_on(&grid, &b, "office", &ip, "while true; do echo hello from $(hostname) | nc -l -p 8080; done");

    // The access point goes through node a; the container is on node b, one hop further.
    let (laptop, out) = Laptop::join(&grid, "office", &a);
    let config = laptop.config.clone();
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("[Interface]") && text.contains("PrivateKey = ") && text.contains("Endpoint = "), "{text}");
    let private_key = text.lines().find_map(|l| l.strip_prefix("PrivateKey = ")).unwrap();
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(private_key)
            && !String::from_utf8_lossy(&out.stderr).contains(private_key)
    );
    assert!(!a.log().contains(private_key), "the access key reached the node's log");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&config).unwrap().permissions().mode() & 0o777, 0o600);

    let ping = wait_until(LIMIT, || {
        let out = laptop.run("busybox", &["ping", "-c", "1", "-W", "2", &ip]);
        out.status.success().then_some(())
    });
    assert!(ping.is_some(), "the laptop cannot ping {ip}; agent logs:\n{}\n{}", a.log(), b.log());
    let out = laptop.run("busybox", &["nc", "-w", "5", &ip, "8080"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("hello from {server}"));

    // The WireGuard devices live in the agents: after a SIGKILL and restart of node b's agent,
    // its network is made again on the same port, and the path works again.
    let mut b = b;
    b.kill();
    b.restart().unwrap();
    let again = wait_until(LIMIT, || {
        laptop.run("busybox", &["ping", "-c", "1", "-W", "2", &ip]).status.success().then_some(())
    });
    assert!(again.is_some(), "no path to {ip} after node b's agent restarted; agent log:\n{}", b.log());
}

#[test]
fn a_removed_access_point_cannot_reach_the_network_while_another_laptop_still_can() {
    let grid = Grid::new();
    let (a, b) = (grid.node(60), grid.node(60));
    create(&grid, "roam", "10.80.0.0/16", &[&a, &b]);
    let ip = host(&grid, "roam", &b, 7);
    let server = run_on(&grid, &b, "roam", &ip, "while true; do echo hello from $(hostname) | nc -l -p 8080; done");
    let (lost, _) = Laptop::join(&grid, "roam", &a);
    let (kept, _) = Laptop::join(&grid, "roam", &a);
    for laptop in [&lost, &kept] {
        let reached = wait_until(LIMIT, || laptop.pings(&ip).then_some(()));
        assert!(
            reached.is_some(),
            "laptop {} never reached {ip}; agent logs:\n{}\n{}",
            laptop.subnet(),
            a.log(),
            b.log()
        );
    }

    // Revoke the lost laptop; the command returns once every node reported the new version ok.
    let subnet = lost.subnet();
    let removed = grid.cli(&["network", "remove-access", "--name", "roam", "--access", &subnet]);
    assert_eq!(removed["removed"]["subnet"], subnet.as_str(), "{removed}");
    let shown = grid.cli(&["network", "show", "--name", "roam"]);
    let points: Vec<&str> =
        shown["access_points"].as_array().unwrap().iter().map(|p| p["subnet"].as_str().unwrap()).collect();
    assert_eq!(points, [kept.subnet()], "network show still lists the removed access point");
    for member in shown["members"].as_array().unwrap() {
        let (record, result) = (&member["record"], &member["record"]["result"]["payload"]);
        assert_eq!(result["state"], "ok", "{member}");
        assert_eq!(result["version"], record["workload"]["payload"]["version"], "not applied yet: {member}");
        let peers = record["workload"]["payload"]["data"]["peers"].as_array().unwrap();
        assert!(peers.iter().all(|p| p["iprange"] != subnet.as_str()), "{member}");
    }

    // Every node applied it: the lost laptop's packets are dropped, the other one still gets through.
    let pings = lost.run("busybox", &["ping", "-c", "3", "-W", "2", &ip]);
    assert!(!pings.status.success(), "the removed laptop still pings {ip}: {}", String::from_utf8_lossy(&pings.stdout));
    let tcp = lost.run("busybox", &["nc", "-w", "3", &ip, "8080"]);
    assert!(!String::from_utf8_lossy(&tcp.stdout).contains("hello"), "the removed laptop still connects");
    let still = wait_until(LIMIT, || kept.pings(&ip).then_some(()));
    assert!(still.is_some(), "the other laptop lost the network; agent log:\n{}", a.log());
    let out = kept.run("busybox", &["nc", "-w", "5", &ip, "8080"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("hello from {server}"));

    // An access point the network does not have is named in a clear error, and nothing changes.
    let again = grid.cli_raw(&["network", "remove-access", "--name", "roam", "--access", &subnet]);
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success() && err.contains(&format!("has no access point {subnet}")), "{err}");
    assert!(err.contains(&kept.subnet()), "the error lists the access points there are: {err}");
}

#[test]
fn two_owners_with_the_same_cidr_on_the_same_nodes_cannot_reach_each_other() {
    let grid = Grid::new();
    let (one, two) = (grid.node(60), grid.node(60));
    let other = tempfile::tempdir().unwrap();
    crate::common::zgrid_json(other.path(), grid.devnet.explorer_url(), &["id", "new", "other", "--register"]);
    let as_other = |args: &[&str]| crate::common::zgrid(other.path(), grid.devnet.explorer_url(), args);

    create(&grid, "net", "10.70.0.0/16", &[&one, &two]);
    let out = as_other(&[
        "network",
        "create",
        "--name",
        "net",
        "--cidr",
        "10.70.0.0/16",
        "--node",
        one.id(),
        "--node",
        two.id(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let subnets = |out: std::process::Output| {
        let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let mut all: Vec<(String, String)> = shown["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["node_id"].as_str().unwrap().to_owned(), m["subnet"].as_str().unwrap().to_owned()))
            .collect();
        all.sort();
        all
    };
    let show = ["--json", "network", "show", "--name", "net"];
    assert_eq!(
        subnets(as_other(&show)),
        subnets(grid.cli_raw(&show)),
        "both networks use the same subnets on the same nodes"
    );
    let (client_ip, server_ip, only_theirs) =
        (host(&grid, "net", &one, 2), host(&grid, "net", &two, 2), host(&grid, "net", &two, 3));

    // Each owner has a server at the same address on node two, saying whose it is.
    let serve = |who: &str| format!("while true; do echo I am {who} | nc -l -p 7000; done");
    let ours = run_on(&grid, &two, "net", &server_ip, &serve("ours"));
    let deploy_theirs = |node: &Node, ip: &str, script: &str| {
        let mut args =
            vec!["--json", "deploy", "container", "--node", node.id(), "--flist", grid.image.to_str().unwrap()];
        let entrypoint = format!("/bin/sh -c '{script}'");
        args.extend([
            "--entrypoint",
            &entrypoint,
            "--memory",
            "32",
            "--disk",
            "64",
            "--network",
            "net",
            "--ip",
            ip,
            "--wait",
        ]);
        let out = as_other(&args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        id_of(&serde_json::from_slice(&out.stdout).unwrap())
    };
    deploy_theirs(&two, &server_ip, &serve("theirs"));
    deploy_theirs(&two, &only_theirs, &serve("theirs too"));

    // Our client reaches our server, never theirs, and not their address we do not have. (The
    // servers listen again after each answer, so a connection may be refused in between.)
    let client = run_on(
        &grid,
        &one,
        "net",
        &client_ip,
        &format!(
            "n=0; while [ $n -lt 5 ]; do nc -w 3 {server_ip} 7000 && n=$((n+1)); sleep 0.3; done; \
             nc -w 3 {only_theirs} 7000 || echo NO ROUTE TO THEIRS; echo DONE; sleep 100000"
        ),
    );
    let out = wait_for_logs(&grid, &one, &client, LIMIT, |l| l.contains("DONE"));
    assert_eq!(out.matches("I am ours").count(), 5, "{out}");
    assert!(!out.contains("theirs\n") && !out.contains("I am theirs"), "packets crossed between owners:\n{out}");
    assert!(out.contains("NO ROUTE TO THEIRS"), "{out}");
    let _ = ours;
}

#[test]
fn a_node_joins_a_live_network_without_breaking_a_stream_and_its_containers_become_reachable() {
    let grid = Grid::new();
    let (a, b, c) = (grid.node(60), grid.node(60), grid.node(60));
    create(&grid, "live", "10.80.0.0/16", &[&a, &b]);
    let (ip_a, ip_b) = (host(&grid, "live", &a, 2), host(&grid, "live", &b, 2));
    let up = "(while true; do echo up | nc -l -p 7001; done) & ";
    let receiver = run_on(&grid, &b, "live", &ip_b, &format!("{up}sleep 100000 | nc -l -p 5000"));
    let sender = run_on(
        &grid,
        &a,
        "live",
        &ip_a,
        &format!(
            "until nc -w 1 {ip_b} 7001 | grep -q up; do sleep 0.5; done; \
             i=0; while [ $i -lt 400 ]; do echo line $i; i=$((i+1)); sleep 0.05; done | nc {ip_b} 5000; \
             echo SENT; sleep 100000"
        ),
    );
    wait_for_logs(&grid, &b, &receiver, LIMIT, |l| l.contains("line 20\n"));

    // Node c joins while lines flow; a and b get a new peer and keep their sessions.
    let out = grid.cli_raw(&["network", "add-node", "--name", "live", "--node", c.id()]);
    assert!(out.status.success(), "add-node failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let ip_c = host(&grid, "live", &c, 2);
    run_on(&grid, &c, "live", &ip_c, "while true; do echo I am c | nc -l -p 7000; done");
    assert!(wait_for_logs(&grid, &a, &sender, LIMIT, |l| l.contains("SENT")).contains("SENT"));
    let streamed = wait_for_logs(&grid, &b, &receiver, LIMIT, |l| l.contains("line 399\n"));
    let lines: Vec<&str> = streamed.lines().filter(|l| l.starts_with("line ")).collect();
    let expected: Vec<String> = (0..400).map(|i| format!("line {i}")).collect();
    assert_eq!(lines, expected, "the stream lost or broke lines while the node joined");

    let probe = run_on(
        &grid,
        &a,
        "live",
        &host(&grid, "live", &a, 3),
        &format!("until nc -w 5 {ip_c} 7000; do sleep 0.5; done; echo PROBED; sleep 100000"),
    );
    let out = wait_for_logs(&grid, &a, &probe, LIMIT, |l| l.contains("PROBED"));
    assert!(out.contains("I am c") && out.contains("PROBED"), "{out}");
}

#[test]
fn nodes_without_a_public_endpoint_reach_each_other_through_one_that_has_one() {
    let grid = Grid::new();
    let relay = grid.node(60);
    let hidden = |_| grid.devnet.add_node(zgrid_devnet::NodeOptions { public: false, ..Default::default() }).unwrap();
    let (h1, h2) = (hidden(1), hidden(2));
    create(&grid, "nat", "10.90.0.0/16", &[&relay, &h1, &h2]);
    let (ip1, ip2) = (host(&grid, "nat", &h1, 2), host(&grid, "nat", &h2, 2));
    run_on(&grid, &h2, "nat", &ip2, "while true; do echo behind nat | nc -l -p 7000; done");
    let client = run_on(
        &grid,
        &h1,
        "nat",
        &ip1,
        &format!("until nc -w 2 {ip2} 7000; do sleep 1; done; echo DONE; sleep 100000"),
    );
    let out = wait_for_logs(&grid, &h1, &client, LIMIT, |l| l.contains("DONE"));
    assert!(out.contains("behind nat"), "{out}");
}

#[test]
fn after_a_reboot_a_node_rejoins_its_networks_on_the_same_port_and_its_containers_are_reachable_again() {
    let grid = Grid::new();
    let (a, mut b) = (grid.node(60), grid.node(60));
    create(&grid, "boot", "10.85.0.0/16", &[&a, &b]);
    let (ip_a, ip_b) = (host(&grid, "boot", &a, 2), host(&grid, "boot", &b, 2));
    let server = run_on(&grid, &b, "boot", &ip_b, "while true; do echo up | nc -l -p 7000; done");
    let client = run_on(
        &grid,
        &a,
        "boot",
        &ip_a,
        &format!("while true; do nc -w 2 {ip_b} 7000 && echo REACHED; sleep 0.5; done"),
    );
    wait_for_logs(&grid, &a, &client, LIMIT, |l| l.contains("REACHED"));
    let shown = grid.cli(&["network", "show", "--name", "boot"]);
    let member = shown["members"].as_array().unwrap().iter().find(|m| m["node_id"] == b.id()).unwrap().clone();
    let (resource, port) = (member["workload_id"].as_str().unwrap().to_owned(), member["listen_port"].clone());

    // A reboot of b: its agent and container die, every namespace and mount is gone, files stay.
    b.kill();
    crate::node::power_loss(&b, &server);
    for ns in [format!("zgn-{resource}"), format!("zgc-{server}")] {
        assert!(std::process::Command::new("ip").args(["netns", "delete", &ns]).status().unwrap().success());
    }
    std::fs::write(b.state_dir().join("workloads/boot_id"), "a-previous-boot\n").unwrap();
    let reached_before = grid.cli_raw(&["logs", &client]).stdout.len();
    b.restart().unwrap();
    grid.wait_for_result(&b, &server, "ok", LIMIT);
    wait_for_logs(&grid, &a, &client, LIMIT, |l| l.len() > reached_before && l[reached_before..].contains("REACHED"));
    let shown = grid.cli(&["network", "show", "--name", "boot"]);
    let member = shown["members"].as_array().unwrap().iter().find(|m| m["node_id"] == b.id()).unwrap().clone();
    assert_eq!(member["listen_port"], port, "the port changed across the reboot");
}

#[test]
fn with_egress_containers_reach_outside_through_their_node_and_without_it_they_do_not() {
    let grid = Grid::new();
    let node = grid.node(60);
    let before = node_links_and_routes(&node);
    let out = grid.cli_raw(&[
        "network",
        "create",
        "--name",
        "out",
        "--cidr",
        "10.95.0.0/16",
        "--node",
        node.id(),
        "--egress",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    create(&grid, "closed", "10.96.0.0/16", &[&node]);
    // The explorer listens on the underlay, outside every private network. (busybox's static
    // wget crashes in a bare image, so HTTP is spoken with nc.)
    let explorer = grid.devnet.explorer_url().trim_start_matches("http://").replace(':', " ");
    let fetch = format!(
        "(printf \"GET /v1/nodes HTTP/1.0\\r\\n\\r\\n\"; sleep 3) | nc -w 5 {explorer}; echo END; sleep 100000"
    );
    let open = run_on(&grid, &node, "out", &host(&grid, "out", &node, 2), &fetch);
    let closed = run_on(&grid, &node, "closed", &host(&grid, "closed", &node, 2), &fetch);
    let out = wait_for_logs(&grid, &node, &open, LIMIT, |l| l.contains("END"));
    assert!(out.contains("200 OK") && out.contains(node.id()), "{out}\nagent log:\n{}", node.log());
    let out = wait_for_logs(&grid, &node, &closed, LIMIT, |l| l.contains("END"));
    assert!(!out.contains("200 OK"), "a network without egress reached outside:\n{out}");

    // A machine next to the node that routes the network (and the uplinks) through it still
    // cannot open a connection into it.
    let listener =
        run_on(&grid, &node, "out", &host(&grid, "out", &node, 3), "while true; do echo INSIDE | nc -l -p 7000; done");
    let neighbour = neighbour(&grid, &node, &["10.95.0.0/16", "100.127.0.0/16"]);
    let target = host(&grid, "out", &node, 3);
    let probe = neighbour.command("busybox").args(["nc", "-w", "3", &target, "7000"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&probe.stdout).contains("INSIDE"), "a neighbour connected into the network");

    // Deleting everything takes the uplink and the node's egress rules away.
    delete(&grid, &node, &[&open, &closed, &listener]);
    for name in ["out", "closed"] {
        let out = grid.cli_raw(&["network", "delete", "--name", name]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let clean = wait_until(LIMIT, || (node_links_and_routes(&node) == before).then_some(()));
    assert!(clean.is_some(), "interfaces or routes left: {:?}", node_links_and_routes(&node));
    let tables = || {
        String::from_utf8_lossy(&node.netns().command("nft").args(["list", "tables"]).output().unwrap().stdout)
            .into_owned()
    };
    let gone = wait_until(LIMIT, || (!tables().contains("zgrid")).then_some(()));
    assert!(gone.is_some(), "nftables rules left behind: {}", tables());
}
