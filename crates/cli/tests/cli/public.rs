//! Addresses outside private networks. Public IPv6: a node started with a public prefix (the
//! underlay's documentation /64, on its uplink) gives containers that ask for it an address
//! there; "the internet" is a namespace on the underlay with an address of the same /64.
//! Yggdrasil: nodes running Debian's yggdrasil, peered statically over the underlay, give
//! containers addresses of their Yggdrasil subnets; a namespace running its own yggdrasil,
//! peered with one node only, reaches containers on another.

use std::process::Command;
use std::time::Duration;

use zgrid_devnet::{Node, NodeOptions};

use crate::grid::{Grid, id_of, wait_until};
use crate::network::{create, delete, host, node_links_and_routes, wait_for_logs};

const LIMIT: Duration = Duration::from_secs(120);

/// Deploy `script` on `node` in network `name` with a public IPv6 address and `extra` flags;
/// returns its id and its public address once the node reports it running.
fn public_container(grid: &Grid, node: &Node, name: &str, script: &str, extra: &[&str]) -> (String, String) {
    let mut args = vec!["--network", name, "--public-ipv6"];
    args.extend_from_slice(extra);
    let id = id_of(&grid.deploy(node, &format!("/bin/sh -c '{script}'"), &args));
    let record = grid.wait_for_result(node, &id, "ok", LIMIT);
    let address = record["result"]["payload"]["data"]["public_ipv6"].as_str().expect("the result's address");
    (id, address.to_owned())
}

/// What `busybox nc` in `netns` gets from `address` port `port` within 3 s.
fn fetch(netns: &zgrid_devnet::Netns, address: &str, port: u16) -> String {
    let out = netns.command("busybox").args(["nc", "-w", "3", address, &port.to_string()]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Keep answering `word` on `port` (dual stack), in `netns`; killed on drop.
struct Listener(std::process::Child);

impl Listener {
    fn start(netns: &zgrid_devnet::Netns, port: u16, word: &str) -> Self {
        let script = format!("while true; do echo {word} | busybox nc -l -p {port}; done");
        Self(netns.command("sh").args(["-c", &script]).spawn().unwrap())
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The node's outside-address state: proxy neighbour entries, IPv6 routes and nftables tables.
fn public_state(node: &Node) -> String {
    let proxies = node.netns().ip(&["-6", "neigh", "show", "proxy"]).unwrap();
    let routes = node.netns().ip(&["-6", "route", "show"]).unwrap();
    let tables = Command::new("ip")
        .args(["netns", "exec", node.netns().name(), "nft", "list", "tables"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap();
    format!(
        "{proxies}\n{routes}\n{}",
        tables.lines().filter(|l| l.contains("zgp_") || l.contains("zgy_")).collect::<Vec<_>>().join("\n")
    )
}

#[test]
fn a_public_ipv6_address_answers_on_open_ports_only_reaches_no_node_service_and_goes_with_its_container() {
    let grid = Grid::new();
    let node = grid.devnet.add_node(NodeOptions { public_ipv6: true, ..NodeOptions::default() }).expect("node");
    let plain = grid.node(60);
    let internet = grid.devnet.underlay().add_netns(&format!("in{}", std::process::id() % 10000)).unwrap();
    internet.add_ipv6().unwrap();
    let (node6, internet6) = (node.netns().ipv6_address().to_string(), internet.ipv6_address().to_string());
    let before = (node_links_and_routes(&node), public_state(&node));
    // Deployers find the node by its prefix (it says so with its heartbeats).
    let found = wait_until(LIMIT, || {
        let nodes = grid.cli(&["nodes", "--public-ipv6"]);
        let ids: Vec<&str> = nodes["items"].as_array()?.iter().filter_map(|n| n["node_id"].as_str()).collect();
        (ids == [node.id()]).then(|| nodes["items"][0]["public_ipv6"].clone())
    });
    assert_eq!(found, Some(grid.devnet.underlay().ipv6_prefix().into()), "zgrid nodes --public-ipv6");
    create(&grid, "pub", "10.97.0.0/16", &[&node, &plain]);

    // What a container must not reach: a service on the node's own address. What it may: the
    // internet.
    let _node_service = Listener::start(node.netns(), 7001, "NODE");
    let _internet_service = Listener::start(&internet, 7002, "INTERNET");

    // A, open on 8080 only, tries the node's service and the internet every second. B opens
    // nothing.
    let a_script = format!(
        "(while true; do echo OPEN | nc -l -p 8080; done) & (while true; do echo CLOSED | nc -l -p 9090; done) & \
         while true; do echo \"node:$(nc -w 2 {node6} 7001 </dev/null) internet:$(nc -w 2 {internet6} 7002 </dev/null)\"; sleep 1; done"
    );
    let (a, a6) = public_container(&grid, &node, "pub", &a_script, &["--open", "8080,53/udp"]);
    let (b, b6) = public_container(&grid, &node, "pub", "while true; do echo B | nc -l -p 8080; done", &[]);
    let prefix: ipnet::Ipv6Net = grid.devnet.underlay().ipv6_prefix().parse().unwrap();
    for address in [&a6, &b6] {
        assert!(prefix.contains(&address.parse::<std::net::Ipv6Addr>().unwrap()), "{address} is not in {prefix}");
    }
    assert_ne!(a6, b6);
    let live = String::from_utf8_lossy(&grid.cli_raw(&["live"]).stdout).into_owned();
    assert!(live.contains(&a6) && live.contains(&b6), "zgrid live does not show the public addresses:\n{live}");

    // From the internet: A's open port answers, its closed one and B's do not.
    let opened = wait_until(LIMIT, || (fetch(&internet, &a6, 8080) == "OPEN").then_some(()));
    assert!(opened.is_some(), "A's open port never answered the internet\nagent log:\n{}", node.log());
    assert_eq!(fetch(&internet, &a6, 9090), "", "A's closed port answered the internet");
    assert_eq!(fetch(&internet, &b6, 8080), "", "B opened nothing, yet answered the internet");

    // From A: the internet answers, the node's own service never does.
    let logs = wait_for_logs(&grid, &node, &a, LIMIT, |l| l.matches("internet:INTERNET").count() >= 3);
    assert!(!logs.contains("node:NODE"), "a container reached a service of its node:\n{logs}");

    // A node without a prefix is refused before anything is submitted; ports need a public
    // address; a bad port says what to give.
    let image = grid.image.to_str().unwrap().to_owned();
    let submitted = || grid.cli(&["live", "--state", "all"])["total"].clone();
    let before_deploy = submitted();
    let out = grid.cli_raw(&[
        "deploy",
        "container",
        "--node",
        plain.id(),
        "--flist",
        &image,
        "--network",
        "pub",
        "--public-ipv6",
    ]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && said.contains("no public IPv6 addresses"), "{said}");
    assert!(said.contains("zgrid nodes --public-ipv6"), "{said}");
    assert_eq!(submitted(), before_deploy, "a refused deploy submitted a workload");
    let ip = host(&grid, "pub", &node, 50);
    let bad = ["deploy", "container", "--node", node.id(), "--flist", &image, "--network", "pub", "--ip", &ip];
    let out = grid.cli_raw(&[&bad[..], &["--open", "80"]].concat());
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--public-ipv6"));
    let out = grid.cli_raw(&[&bad[..], &["--public-ipv6", "--open", "80/sctp"]].concat());
    assert!(String::from_utf8_lossy(&out.stderr).contains("tcp or udp"), "{}", String::from_utf8_lossy(&out.stderr));

    // Deleting them takes their addresses, links, routes and rules away at once.
    delete(&grid, &node, &[&a, &b]);
    assert_eq!(fetch(&internet, &a6, 8080), "", "A's address still answers after its deletion");
    let out = grid.cli_raw(&["network", "delete", "--name", "pub"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let clean = wait_until(LIMIT, || ((node_links_and_routes(&node), public_state(&node)) == before).then_some(()));
    assert!(
        clean.is_some(),
        "left behind: {:?}\nbefore: {before:?}",
        (node_links_and_routes(&node), public_state(&node))
    );
}

/// A Yggdrasil daemon in `netns` peering with `peer`, configured in `dir`; killed on drop.
struct YggdrasilPeer {
    child: std::process::Child,
    address: String,
}

impl YggdrasilPeer {
    fn start(netns: &zgrid_devnet::Netns, dir: &std::path::Path, peer: &str) -> Self {
        let generated = Command::new("yggdrasil").args(["-genconf", "-json"]).output().expect("Debian's yggdrasil");
        let mut config: serde_json::Value = serde_json::from_slice(&generated.stdout).unwrap();
        config["Peers"] = serde_json::json!([peer]);
        config["AdminListen"] = "none".into();
        config["MulticastInterfaces"] = serde_json::json!([]);
        config["IfName"] = "ygg0".into();
        let file = dir.join("yggdrasil.json");
        std::fs::write(&file, config.to_string()).unwrap();
        let address = Command::new("yggdrasil").arg("-useconffile").arg(&file).arg("-address").output().unwrap();
        let log = std::fs::File::create(dir.join("yggdrasil.log")).unwrap();
        let child = netns
            .command("yggdrasil")
            .arg("-useconffile")
            .arg(&file)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Self { child, address: String::from_utf8_lossy(&address.stdout).trim().to_owned() }
    }
}

impl Drop for YggdrasilPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_container_is_reached_on_its_yggdrasil_address_through_another_node_on_open_ports_only() {
    let grid = Grid::new();
    let yggdrasil = |peers: Vec<String>| NodeOptions { yggdrasil: Some(peers), ..NodeOptions::default() };
    let mut a = grid.devnet.add_node(yggdrasil(vec![])).expect("node A");
    let b = grid.devnet.add_node(yggdrasil(vec![a.yggdrasil_uri()])).expect("node B");
    let plain = grid.node(60);
    // Deployers find both nodes, and their subnets, in the directory.
    let subnets = wait_until(LIMIT, || {
        let nodes = grid.cli(&["nodes", "--yggdrasil"]);
        let items = nodes["items"].as_array()?;
        let subnet =
            |node: &Node| items.iter().find(|n| n["node_id"] == node.id())?["yggdrasil"].as_str().map(str::to_owned);
        Some((subnet(&a)?, subnet(&b)?)).filter(|_| items.len() == 2)
    });
    let (a_subnet, _) = subnets.expect("zgrid nodes --yggdrasil lists both nodes with their subnets");
    let a_subnet: ipnet::Ipv6Net = a_subnet.parse().unwrap();
    let before = (node_links_and_routes(&a), public_state(&a));

    // "A laptop" on the Yggdrasil network, peered with B only.
    let laptop = grid.devnet.underlay().add_netns(&format!("yg{}", std::process::id() % 10000)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let peer = YggdrasilPeer::start(&laptop, dir.path(), &b.yggdrasil_uri());

    // What the container must not reach: a service on its node's own Yggdrasil address. What
    // it may: the laptop.
    let a_own = a.netns().ip(&["-6", "-o", "addr", "show", "dev", "zgy0", "scope", "global"]).unwrap();
    let a_own = a_own.split_whitespace().nth(3).and_then(|a| a.split('/').next()).expect("A's address").to_owned();
    let _node_service = Listener::start(a.netns(), 7001, "NODE");
    let _laptop_service = Listener::start(&laptop, 7002, "LAPTOP");

    create(&grid, "ygg", "10.96.0.0/16", &[&a]);
    let script = format!(
        "(while true; do echo OPEN | nc -l -p 8080; done) & (while true; do echo CLOSED | nc -l -p 9090; done) & \
         while true; do echo \"node:$(nc -w 2 {a_own} 7001 </dev/null) laptop:$(nc -w 2 {} 7002 </dev/null)\"; sleep 1; done",
        peer.address
    );
    let id = id_of(&grid.deploy(
        &a,
        &format!("/bin/sh -c '{script}'"),
        &["--network", "ygg", "--yggdrasil", "--open", "8080"],
    ));
    let record = grid.wait_for_result(&a, &id, "ok", LIMIT);
    let address = record["result"]["payload"]["data"]["yggdrasil_ip"].as_str().expect("the result's Yggdrasil address");
    assert!(a_subnet.contains(&address.parse::<std::net::Ipv6Addr>().unwrap()), "{address} is not in A's {a_subnet}");
    let live = String::from_utf8_lossy(&grid.cli_raw(&["live"]).stdout).into_owned();
    assert!(live.contains(address), "zgrid live does not show the Yggdrasil address:\n{live}");

    // From the laptop, through B: the open port answers, the closed one does not.
    let opened = wait_until(LIMIT, || (fetch(&laptop, address, 8080) == "OPEN").then_some(()));
    assert!(
        opened.is_some(),
        "the open port never answered over Yggdrasil\nlaptop's yggdrasil:\n{}\nA's log:\n{}",
        std::fs::read_to_string(dir.path().join("yggdrasil.log")).unwrap_or_default(),
        a.log()
    );
    assert_eq!(fetch(&laptop, address, 9090), "", "the closed port answered over Yggdrasil");
    assert_eq!(fetch(&laptop, &a_own, 7001), "", "the node's own service answered over Yggdrasil");
    // A Yggdrasil daemon that exits is started again; one left by a killed agent is replaced by
    // the next agent's, with the same key and so the same addresses.
    let config = a.state_dir().join("yggdrasil/yggdrasil.json");
    let killed = Command::new("pkill").args(["-KILL", "-f", &config.to_string_lossy()]).status().unwrap();
    assert!(killed.success(), "no yggdrasil daemon ran with {}", config.display());
    let back = wait_until(LIMIT, || (fetch(&laptop, address, 8080) == "OPEN").then_some(()));
    assert!(back.is_some(), "the open port did not answer again once yggdrasil was killed\nA's log:\n{}", a.log());
    a.restart().expect("A's agent starts again");
    let back = wait_until(LIMIT, || (fetch(&laptop, address, 8080) == "OPEN").then_some(()));
    assert!(
        back.is_some(),
        "the open port did not answer after A's agent was killed and restarted\nA's log:\n{}",
        a.log()
    );
    let daemons = Command::new("pgrep").args(["-c", "-f", &config.to_string_lossy()]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&daemons.stdout).trim(), "1", "one yggdrasil daemon per node");

    // From the container: the laptop answers, its node's own service never does.
    let logs = wait_for_logs(&grid, &a, &id, LIMIT, |l| l.matches("laptop:LAPTOP").count() >= 3);
    assert!(!logs.contains("node:NODE"), "a container reached a service of its node over Yggdrasil:\n{logs}");

    // A node without Yggdrasil is refused before anything is submitted.
    let image = grid.image.to_str().unwrap().to_owned();
    let args = ["deploy", "container", "--node", plain.id(), "--flist", &image, "--network", "ygg", "--yggdrasil"];
    let out = grid.cli_raw(&args);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && said.contains("zgrid nodes --yggdrasil"), "{said}");

    // Deleting the container takes its address, link, routes and rules away at once.
    delete(&grid, &a, &[&id]);
    assert_eq!(fetch(&laptop, address, 8080), "", "the address still answers after its deletion");
    let out = grid.cli_raw(&["network", "delete", "--name", "ygg"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let clean = wait_until(LIMIT, || ((node_links_and_routes(&a), public_state(&a)) == before).then_some(()));
    assert!(clean.is_some(), "left behind: {:?}\nbefore: {before:?}", (node_links_and_routes(&a), public_state(&a)));
}
