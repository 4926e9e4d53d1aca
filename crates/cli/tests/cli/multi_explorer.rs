//! Several explorers on one PostgreSQL database: a node agent following one explorer gets the
//! workloads deployed through another, and when its explorer is killed with SIGKILL it resumes
//! its feed on the other from its cursor, missing no change; the CLI takes several explorers.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use zgrid_devnet::{Devnet, DevnetConfig, NodeOptions};
use zgrid_explorer::testing::{Backend, TempDatabase};
use zgrid_node::store::{Entry, Phase};

use crate::common::{ServerProcess, ZGRID, zgrid, zgrid_json};
use crate::grid::{id_of, wait_until};

/// Workloads deployed while the node's explorer is killed.
const DURING: usize = 6;

/// How long a change may take to reach the node and its result to come back.
const LIMIT: Duration = Duration::from_secs(90);

/// Deploy a 32 MiB volume on `node` through the explorer(s) `explorer`; its id.
fn volume(home: &Path, explorer: &str, node: &str) -> String {
    id_of(&zgrid_json(home, explorer, &["deploy", "volume", "--node", node, "--size", "32"]))
}

/// The ids of the workloads the node's store holds as running. The entries are read, not the
/// store opened: opening it would remove the agent's temporary files mid-write.
fn running(state_dir: &Path) -> BTreeSet<String> {
    let dir = std::fs::read_dir(state_dir.join("workloads")).into_iter().flatten().flatten();
    let files = dir.map(|f| f.path()).filter(|p| p.extension().is_some_and(|e| e == "json"));
    // An entry is replaced by a rename, so a file read is whole; one removed meanwhile is gone.
    let entries = files.filter_map(|p| std::fs::read(p).ok()).map(|b| serde_json::from_slice::<Entry>(&b).unwrap());
    entries.filter(|e| e.phase == Phase::Running).map(|e| e.id().to_string()).collect()
}

/// The ids of the node's active workloads in the ledger, and of those whose latest result is
/// `ok`, read through `explorer`.
fn ledger(home: &Path, explorer: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let listed = zgrid_json(home, explorer, &["live", "--state", "active", "--size", "100"]);
    let items = listed["items"].as_array().expect("a page of workloads");
    let id = |r: &serde_json::Value| r["workload"]["payload"]["id"].as_str().expect("an id").to_owned();
    let ok = items.iter().filter(|r| r["result"]["payload"]["state"] == "ok").map(id).collect();
    (items.iter().map(id).collect(), ok)
}

#[test]
fn multi_explorer_a_node_resumes_on_another_explorer_when_its_own_is_killed_and_misses_nothing() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let db = runtime.block_on(TempDatabase::create(Backend::Postgres));
    let dir = tempfile::tempdir().unwrap();
    let mut config = DevnetConfig::new(ZGRID, dir.path());
    config.database = Some(db.url.clone());
    config.log_level = "info,zgrid_node=debug".into();
    // Explorer A is the devnet's; B is a second process on the same database and bridge.
    let mut devnet = Devnet::start(config).expect("devnet (needs root, iproute2, util-linux)");
    let a = devnet.explorer_url().to_owned();
    let listen = format!("{}:0", devnet.underlay().gateway());
    let b = ServerProcess::run(&["explorer", "--listen", &listen, "--db", &db.url]);
    let both = format!("{a},{}", b.url);
    let node = devnet.add_node(NodeOptions { explorers: Some(both.clone()), ..NodeOptions::default() }).expect("node");

    // The deployer talks to B only; the node streams from A, the first it was given.
    let home = tempfile::tempdir().unwrap();
    zgrid_json(home.path(), &b.url, &["id", "new", "deployer", "--register"]);
    let mut created: Vec<String> = (0..3).map(|_| volume(home.path(), &b.url, node.id())).collect();
    let reached = wait_until(LIMIT, || {
        let have = running(node.state_dir());
        created.iter().all(|id| have.contains(id)).then_some(())
    });
    assert!(reached.is_some(), "workloads deployed through B never reached the node following A:\n{}", node.log());
    let log = node.log();
    let following = log.lines().filter(|l| l.contains("following the explorer feed")).collect::<Vec<_>>();
    assert!(following.len() == 1 && following[0].contains(&a), "the node follows A: {following:?}");

    // Deploy through B while A is killed: the kill lands between deployments.
    let deployed = AtomicUsize::new(0);
    let during = std::thread::scope(|s| {
        let deployer = s.spawn(|| {
            (0..DURING)
                .map(|_| {
                    let id = volume(home.path(), &b.url, node.id());
                    deployed.fetch_add(1, Ordering::SeqCst);
                    id
                })
                .collect::<Vec<_>>()
        });
        wait_until(LIMIT, || (deployed.load(Ordering::SeqCst) >= 2).then_some(())).expect("deployments go on");
        devnet.kill_explorer();
        deployer.join().expect("the deployer thread")
    });
    created.extend(during);
    // After: one workload deleted and two more created, still through B.
    let gone = created.remove(0);
    let out = zgrid(home.path(), &b.url, &["delete", &gone]);
    assert!(out.status.success(), "zgrid delete: {}", String::from_utf8_lossy(&out.stderr));
    created.extend((0..2).map(|_| volume(home.path(), &b.url, node.id())));

    // The node ends up with exactly the ledger's set, every workload reported made.
    let want: BTreeSet<String> = created.iter().cloned().collect();
    let settled = wait_until(LIMIT, || {
        let (active, ok) = ledger(home.path(), &b.url);
        (active == want && ok == want && running(node.state_dir()) == want).then_some(())
    });
    assert!(
        settled.is_some(),
        "the node's workloads {:?} are not the ledger's {:?} (ok: {:?}):\n{}",
        running(node.state_dir()),
        ledger(home.path(), &b.url).0,
        ledger(home.path(), &b.url).1,
        node.log()
    );
    // It resumed on B from its cursor; the whole set was listed only once, at the start.
    let log = node.log();
    let resumed = log.lines().any(|l| l.contains("resumed the explorer feed") && l.contains(&b.url));
    assert!(resumed, "the node did not resume its feed on B:\n{log}");
    assert_eq!(log.matches("following the explorer feed").count(), 1, "the node listed its set again:\n{log}");

    // The CLI takes both explorers too, and reads through B while A is down.
    let (active, _) = ledger(home.path(), &both);
    assert_eq!(active, want);
    let bad = zgrid(home.path(), &format!("{},ftp://nowhere", b.url), &["live"]);
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && stderr.contains("\"ftp://nowhere\" is not a base URL"), "{stderr}");
    let set = zgrid_json(home.path(), &b.url, &["config", "set", "explorer", &format!("{a}, {}", b.url)]);
    assert_eq!(set["value"], format!("{a},{}", b.url));
    let bad = zgrid(home.path(), &b.url, &["config", "set", "explorer", &format!("{a},explorer.example")]);
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && stderr.contains("\"explorer.example\" is not a base URL"), "{stderr}");
    drop(node);
}
