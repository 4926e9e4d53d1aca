//! Public IPv6 addresses: a node started with a public prefix (the underlay's documentation /64,
//! on its uplink) gives containers that ask for it an address there. "The internet" is a
//! namespace on the underlay with an address of the same /64.

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

/// The node's public-address state: proxy neighbour entries, IPv6 routes and nftables tables.
fn public_state(node: &Node) -> String {
    let proxies = node.netns().ip(&["-6", "neigh", "show", "proxy"]).unwrap();
    let routes = node.netns().ip(&["-6", "route", "show"]).unwrap();
    let tables = Command::new("ip")
        .args(["netns", "exec", node.netns().name(), "nft", "list", "tables"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap();
    format!("{proxies}\n{routes}\n{}", tables.lines().filter(|l| l.contains("zgp_")).collect::<Vec<_>>().join("\n"))
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
