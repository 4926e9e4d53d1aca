//! TLS and time limits end to end: the `zgrid` binary against `zgrid explorer` and `zgrid hub
//! serve` serving HTTPS with certificates from a test CA (trusted through the config file, the
//! environment or a flag, and refused when not trusted), the SDK following a node feed over
//! TLS, a node agent serving its API (logs) over TLS, and a server that accepts connections and
//! never answers.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use zgrid_client::{ExplorerClient, HttpOptions};
use zgrid_devnet::NodeOptions;
use zgrid_serve::testing::TestCa;
use zgrid_types::Keypair;
use zgrid_types::directory::{Capacity, Location, NodeRegistration};

use crate::common::{ServerProcess, ZGRID, zgrid};
use crate::grid::{Grid, id_of, wait_until};

/// `zgrid explorer` on a new SQLite file in `dir`, serving TLS with `ca`'s server certificate.
fn tls_explorer(dir: &Path, ca: &TestCa) -> ServerProcess {
    let (tls, db) = (ca.server(), dir.join("explorer.sqlite"));
    let (cert, key, db) = (tls.cert.to_str().unwrap(), tls.key.to_str().unwrap(), db.to_str().unwrap());
    ServerProcess::run(&["explorer", "--listen", "127.0.0.1:0", "--db", db, "--tls-cert", cert, "--tls-key", key])
}

/// `zgrid hub serve` with its data in `dir`, serving TLS with `ca`'s server certificate.
fn tls_hub(dir: &Path, ca: &TestCa) -> ServerProcess {
    let (tls, data) = (ca.server(), dir.join("hub"));
    let (cert, key, data) = (tls.cert.to_str().unwrap(), tls.key.to_str().unwrap(), data.to_str().unwrap());
    ServerProcess::run(&[
        "hub",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data",
        data,
        "--tls-cert",
        cert,
        "--tls-key",
        key,
    ])
}

/// Run the CLI and parse its `--json` output; panics with stderr on failure.
fn json(home: &Path, explorer: &str, args: &[&str]) -> serde_json::Value {
    let out = zgrid(home, explorer, &[&["--json"], args].concat());
    assert!(out.status.success(), "zgrid {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The error a failed CLI run printed.
fn failure(out: &Output) -> String {
    assert!(!out.status.success(), "expected a failure: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_cli_registers_and_pushes_over_tls_to_servers_of_a_ca_it_trusts_and_refuses_others() {
    let (ca, stranger) = (TestCa::new("grid"), TestCa::new("stranger"));
    let dir = tempfile::tempdir().unwrap();
    let explorer = tls_explorer(dir.path(), &ca);
    let hub = tls_hub(dir.path(), &ca);
    assert!(explorer.url.starts_with("https://127.0.0.1:"), "{}", explorer.url);
    assert!(hub.url.starts_with("https://127.0.0.1:"), "{}", hub.url);
    let (ex, ca_cert) = (explorer.url.as_str(), ca.ca_cert());

    // Trusted through the config file: a signed write to the explorer, an upload to the hub.
    let home = dir.path().join("alice");
    let saved = zgrid(&home, ex, &["config", "set", "ca-cert", ca_cert.to_str().unwrap()]);
    assert!(saved.status.success(), "{}", String::from_utf8_lossy(&saved.stderr));
    let alice = json(&home, ex, &["id", "new", "alice", "--register"]);
    assert!(alice["user_id"].as_u64().is_some(), "{alice}");
    let (rootfs, flist, store) = (dir.path().join("rootfs"), dir.path().join("app.flist"), dir.path().join("store"));
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    std::fs::write(rootfs.join("etc/motd"), "hello over TLS\n".repeat(50_000)).unwrap();
    let (flist, store) = (flist.to_str().unwrap(), store.to_str().unwrap());
    json(&home, ex, &["flist", "create", rootfs.to_str().unwrap(), "-o", flist, "--store", store]);
    let pushed = json(&home, ex, &["flist", "push", flist, "--store", store, "--hub", &hub.url]);
    assert!(pushed["url"].as_str().unwrap().starts_with(&format!("{}/flists/", hub.url)), "{pushed}");
    assert!(pushed["stored"]["new_chunks"].as_u64().unwrap() >= 1, "{pushed}");
    let mine = json(&home, ex, &["hub", "ls", "me", "--hub", &hub.url]);
    assert_eq!(mine[0]["name"], "app.flist", "{mine}");

    // Without the CA: refused, with the server named and the way to trust it.
    let bob = dir.path().join("bob");
    let refused = failure(&zgrid(&bob, ex, &["nodes"]));
    assert!(refused.contains(&format!("the explorer at {ex}/v1/nodes")), "{refused}");
    assert!(refused.contains("TLS certificate that is not trusted") && refused.contains("--ca-cert FILE"), "{refused}");
    let refused = failure(&zgrid(&bob, ex, &["hub", "ls", "--hub", &hub.url]));
    assert!(refused.contains(&format!("the hub at {}/api/v1/flists", hub.url)), "{refused}");
    assert!(refused.contains("not trusted"), "{refused}");
    // Trusting another CA (with the flag) is no better.
    let other = stranger.ca_cert();
    let refused = failure(&zgrid(&bob, ex, &["nodes", "--ca-cert", other.to_str().unwrap()]));
    assert!(refused.contains("not trusted"), "{refused}");
    // Trusted through the environment.
    let listed = zgrid_devnet::cli(Path::new(ZGRID), &bob, ex)
        .env("ZGRID_CA_CERT", &ca_cert)
        .args(["--json", "hub", "ls", "--hub", &hub.url])
        .output()
        .unwrap();
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_follows_a_node_feed_over_tls_longer_than_the_time_limit() {
    let ca = TestCa::new("feed");
    let dir = tempfile::tempdir().unwrap();
    let explorer = tls_explorer(dir.path(), &ca);
    let home = dir.path().join("owner");
    let ca_cert = ca.ca_cert();
    let ca_flag = ["--ca-cert", ca_cert.to_str().unwrap()];
    json(&home, &explorer.url, &[&["id", "new", "owner", "--register"], &ca_flag[..]].concat());
    let farm = json(&home, &explorer.url, &[&["farm", "create", "tls-farm"], &ca_flag[..]].concat());

    // A one-second limit: the feed is quiet for longer (the explorer's keep-alive comes every
    // 15 s), and must stay open.
    let http = HttpOptions { ca_cert: Some(ca_cert.clone()), timeout: Duration::from_secs(1) }.client().unwrap();
    let node = Keypair::from_seed(&rand::random());
    let explorer_client = ExplorerClient::with_http(&explorer.url, &http).unwrap().with_key(node.clone());
    let farm_id = farm["id"].as_u64().unwrap();
    let invite = ["farm", "invite", "--farm", &farm_id.to_string(), "--node", &node.public().to_string()];
    let invitation = json(&home, &explorer.url, &[&invite[..], &ca_flag[..]].concat());
    let invitation = zgrid_types::Signed::from_token(invitation["token"].as_str().unwrap()).unwrap();
    let registration = NodeRegistration {
        farm_id,
        hostname: "tls-node".into(),
        total: Capacity { cru: 2, mru: 4096, sru: 10_000, hru: 0 },
        location: Location::default(),
        public_endpoint: None,
        api_url: None,
        version: "test".into(),
        farm_invitation: Some(invitation),
    };
    explorer_client.register_node(&registration).await.unwrap();
    let mut feed = Box::pin(explorer_client.feed(0).await.unwrap());
    let quiet = tokio::time::timeout(Duration::from_millis(2500), feed.next()).await;
    assert!(quiet.is_err(), "the feed must stay open while quiet, but gave {:?}", quiet.map(|e| e.map(|e| e.err())));

    let node_id = node.public().to_string();
    let deploy = ["deploy", "volume", "--node", &node_id, "--size", "64", "--duration", "1h"];
    let deployed = json(&home, &explorer.url, &[&deploy[..], &ca_flag[..]].concat());
    let id = deployed["workload"]["payload"]["id"].as_str().unwrap();
    let event = tokio::time::timeout(Duration::from_secs(30), feed.next())
        .await
        .expect("the workload arrives on the feed")
        .expect("the feed is open")
        .expect("a feed event");
    assert_eq!(event.record.workload.payload.id.as_str(), id);
}

#[test]
fn the_cli_gives_up_on_a_server_that_never_answers_and_names_it() {
    // Accepts connections and never says a word.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    std::thread::spawn(move || {
        let held: Vec<_> = silent.incoming().collect();
        drop(held);
    });
    let home = tempfile::tempdir().unwrap();

    let started = Instant::now();
    let explorer = failure(&zgrid(home.path(), &url, &["nodes", "--timeout", "1"]));
    assert!(explorer.contains(&format!("the explorer at {url}/v1/nodes")), "{explorer}");
    assert!(explorer.contains("did not answer within 1 s"), "{explorer}");

    // The limit from the config file, for the hub.
    let saved = zgrid(home.path(), &url, &["config", "set", "timeout", "2"]);
    assert!(saved.status.success(), "{}", String::from_utf8_lossy(&saved.stderr));
    let hub = failure(&zgrid(home.path(), &url, &["hub", "ls", "--hub", &url]));
    assert!(hub.contains(&format!("the hub at {url}/api/v1/flists")), "{hub}");
    assert!(hub.contains("did not answer within 2 s"), "{hub}");
    // Both gave up long before anything would have come.
    assert!(started.elapsed() < Duration::from_secs(60), "took {:?}", started.elapsed());
}

#[test]
fn a_node_serving_its_api_over_tls_registers_an_https_url_and_streams_logs_to_the_cli() {
    let grid = Grid::new();
    let ca = TestCa::new("node");
    // The node's address on the underlay is not known before it starts: cover the whole /24.
    let [a, b, c, _] = grid.devnet.underlay().gateway().octets();
    let hosts: Vec<String> = (1..=254).map(|d| format!("{a}.{b}.{c}.{d}")).collect();
    let options = NodeOptions { api_tls: Some(ca.server_for("node", &hosts)), ..NodeOptions::default() };
    let node = grid.devnet.add_node(options).expect("a node serving its API over TLS");
    let listed = grid.cli(&["nodes"]);
    let entry = listed["items"].as_array().unwrap().iter().find(|n| n["node_id"] == node.id()).unwrap().clone();
    let api = entry["api_url"].as_str().unwrap();
    assert_eq!(api, format!("https://{}:7780", node.address()), "{entry}");

    let script = "/bin/sh -c 'i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done'";
    let id = id_of(&grid.deploy(&node, script, &[]));
    let logs = |trust: bool| {
        let mut command = grid.cli_command();
        if trust {
            command.env("ZGRID_CA_CERT", ca.ca_cert());
        }
        command
    };
    let read = wait_until(Duration::from_secs(90), || {
        let out = logs(true).args(["logs", &id]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains("tick 2").then_some(text)
    });
    assert!(read.is_some(), "no logs over TLS; agent log:\n{}", node.log());

    // Followed logs keep streaming over TLS.
    let mut follow = logs(true).args(["logs", "--follow", &id]).stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    let ticks = lines.by_ref().map_while(Result::ok).filter(|l| l.starts_with("tick ")).take(20).count();
    let _ = follow.kill();
    let _ = follow.wait();
    assert_eq!(ticks, 20, "`zgrid logs --follow` stopped streaming over TLS");

    // `zgrid exec` opens its WebSocket over TLS with the same trust.
    let out = logs(true).args(["exec", &id, "--", "sh", "-c", "echo over-tls; exit 4"]).output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!((said.as_str(), out.status.code()), ("over-tls\n", Some(4)), "{}", failure(&out));
    let refused = failure(&logs(false).args(["exec", &id, "--", "true"]).output().unwrap());
    assert!(refused.contains("not trusted"), "{refused}");

    // Without the CA, the CLI refuses the node's certificate and says so.
    let refused = failure(&logs(false).args(["logs", &id]).output().unwrap());
    assert!(refused.contains(&format!("the node at {api}/v1/workloads/{id}/logs")), "{refused}");
    assert!(refused.contains("not trusted"), "{refused}");
}
