//! The CLI verbs against a real explorer process: identities, farms, node search, deploy, live
//! and delete, in human and `--json` forms, and the errors a user meets first.

use std::os::unix::fs::PermissionsExt;

use zgrid_client::ExplorerClient;
use zgrid_explorer::testing::{Backend, TempDatabase};
use zgrid_types::directory::{Capacity, Location, NodeRegistration};
use zgrid_types::{Keypair, Signed};

use crate::common::{ServerProcess, zgrid, zgrid_json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployer_registers_finds_a_node_deploys_and_deletes() {
    let db = TempDatabase::create(Backend::Sqlite).await;
    let explorer = ServerProcess::start(&db.url);
    let home = tempfile::tempdir().unwrap();
    let (h, url) = (home.path(), explorer.url.as_str());

    let me = zgrid_json(h, url, &["id", "new", "alice", "--register", "--email", "alice@example.com"]);
    let user_id = me["user_id"].as_u64().expect("registered");
    let seed = me["seed_file"].as_str().unwrap();
    assert_eq!(std::fs::metadata(seed).unwrap().permissions().mode() & 0o777, 0o600);
    let shown = zgrid_json(h, url, &["id", "show", "--mnemonic"]);
    assert_eq!(shown["user_id"], user_id);
    let words = shown["mnemonic"].as_str().unwrap().to_string();
    assert_eq!(words.split_whitespace().count(), 24);

    // The same words restore the same identity, and its registration is found again.
    let other_home = tempfile::tempdir().unwrap();
    let restored = zgrid_json(other_home.path(), url, &["id", "import", "restored", "--mnemonic", &words]);
    assert_eq!(restored["public_key"], shown["public_key"]);
    assert_eq!(restored["user_id"], user_id);

    let farm = zgrid_json(h, url, &["farm", "create", "home-farm", "--public-ip", "192.0.2.10/24=192.0.2.1"]);
    let farm_id = farm["id"].as_u64().unwrap();

    // A node registers itself (the node agent does this; here the SDK stands in for it) with
    // the farm owner's invitation.
    let node = Keypair::from_seed(&rand::random());
    let node_id = node.public().to_string();
    let invited = zgrid_json(h, url, &["farm", "invite", "--farm", &farm_id.to_string(), "--node", &node_id]);
    let token = invited["token"].as_str().unwrap();
    let reg = NodeRegistration {
        farm_id,
        hostname: "n1".into(),
        total: Capacity { cru: 4, mru: 8192, sru: 100_000, hru: 0 },
        location: Location { country: "BE".into(), city: "Ghent".into(), ..Default::default() },
        public_endpoint: None,
        api_url: None,
        version: "test".into(),
        farm_invitation: Some(Signed::from_token(token).unwrap()),
    };
    ExplorerClient::new(url).unwrap().with_key(node.clone()).register_node(&reg).await.unwrap();

    let found = zgrid_json(h, url, &["nodes", "--country", "be", "--free-mru", "4096", "--alive"]);
    assert_eq!(found["total"], 1);
    assert_eq!(found["items"][0]["node_id"], node_id.as_str());
    let none = zgrid_json(h, url, &["nodes", "--free-cru", "64"]);
    assert_eq!(none["total"], 0);
    let table = zgrid(h, url, &["nodes"]);
    assert!(String::from_utf8_lossy(&table.stdout).contains(&node_id));

    // What the node would refuse is refused before anything reaches it, with the field named
    // (the explorer refuses each too: crates/explorer/tests/api/input.rs).
    let busybox = "/srv/images/busybox";
    let wide: Vec<String> = (0..5).map(|i| format!("V{i}={}", "x".repeat(120 * 1024))).collect();
    let wide: Vec<&str> = wide.iter().flat_map(|v| ["--env", v.as_str()]).collect();
    let malformed: Vec<(&str, Vec<&str>, &str)> = vec![
        (busybox, vec!["--entrypoint", "/bin/sh -c 'echo hi"], "entrypoint"),
        ("ftp://hub.example/busybox.flist", vec![], "flist"),
        ("busybox.tar", vec![], "flist"),
        (busybox, vec!["--env", "MY VAR=1"], "environment.MY VAR"),
        (busybox, vec!["--duration", "300years"], "expires_at"),
        (busybox, wide, "environment"),
    ];
    for (flist, extra, field) in malformed {
        let mut args = vec!["deploy", "container", "--node", &node_id, "--flist", flist];
        args.extend(extra);
        let out = zgrid(h, url, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(&format!("{field}: ")), "{field}: {err}");
    }
    assert_eq!(zgrid_json(h, url, &["live", "--state", "all"])["total"], 0, "a malformed workload was stored");

    let deployed = zgrid_json(h, url, &["deploy", "volume", "--node", &node_id, "--size", "128", "--duration", "2h"]);
    let id = deployed["workload"]["payload"]["id"].as_str().unwrap().to_string();
    let live = zgrid_json(h, url, &["live"]);
    assert_eq!(live["items"][0]["workload"]["payload"]["id"], id.as_str());
    let human = String::from_utf8_lossy(&zgrid(h, url, &["live"]).stdout).to_string();
    assert!(human.contains(&id) && human.contains("pending"), "{human}");

    let out = zgrid(h, url, &["delete", &id]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(zgrid_json(h, url, &["live"])["total"], 0);
    let deleted = zgrid_json(h, url, &["live", "--state", "deleted"]);
    assert_eq!(deleted["items"][0]["deletion"]["by"], user_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mistakes_get_an_error_that_says_what_to_do() {
    let db = TempDatabase::create(Backend::Sqlite).await;
    let explorer = ServerProcess::start(&db.url);
    let home = tempfile::tempdir().unwrap();
    let (h, url) = (home.path(), explorer.url.as_str());
    let fail = |args: &[&str], explorer: &str, hint: &str| {
        let out = zgrid(h, explorer, args);
        assert_eq!(out.status.code(), Some(1), "{args:?} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(hint), "{args:?}: expected {hint:?} in {err}");
    };
    fail(&["id", "show"], url, "zgrid id new");
    zgrid_json(h, url, &["id", "new", "bob"]);
    fail(&["farm", "create", "f"], url, "zgrid id register");
    fail(&["deploy", "volume", "--node", "nope", "--size", "1"], url, "zgrid nodes");
    fail(
        &[
            "deploy",
            "volume",
            "--node",
            &Keypair::from_seed(&[1; 32]).public().to_string(),
            "--size",
            "1",
            "--duration",
            "soon",
        ],
        url,
        "--duration",
    );
    fail(&["id", "import", "x", "--mnemonic", "not words"], url, "mnemonic");
    fail(&["nodes"], "http://127.0.0.1:9", "cannot reach the explorer");
    let usage = zgrid(h, url, &["deploy", "volume"]);
    assert_eq!(usage.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_come_from_flags_then_environment_then_the_config_file() {
    let db = TempDatabase::create(Backend::Sqlite).await;
    let explorer = ServerProcess::start(&db.url);
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let dead = "http://127.0.0.1:9";
    let run = |args: &[&str], env_explorer: Option<&str>| {
        let mut cmd = std::process::Command::new(crate::common::ZGRID);
        cmd.args(args).env("ZGRID_HOME", h).env_remove("ZGRID_IDENTITY").env("ZGRID_LOG", "warn");
        match env_explorer {
            Some(url) => cmd.env("ZGRID_EXPLORER", url),
            None => cmd.env_remove("ZGRID_EXPLORER"),
        };
        cmd.output().unwrap()
    };
    let ok = |out: std::process::Output| assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let err = run(&["nodes"], None);
    assert!(String::from_utf8_lossy(&err.stderr).contains("zgrid config set explorer"));
    ok(run(&["config", "set", "explorer", &explorer.url], None));
    ok(run(&["nodes"], None)); // config file
    assert!(!run(&["nodes"], Some(dead)).status.success()); // environment beats config
    ok(run(&["--explorer", &explorer.url, "nodes"], Some(dead))); // flag beats environment

    ok(run(&["id", "new", "first"], None));
    ok(run(&["id", "new", "second"], None));
    let name = |out: std::process::Output| -> String {
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["name"].as_str().unwrap().to_string()
    };
    assert_eq!(name(run(&["--json", "id", "show"], None)), "first"); // the store's default
    ok(run(&["config", "set", "identity", "second"], None));
    assert_eq!(name(run(&["--json", "id", "show"], None)), "second"); // config file
    assert_eq!(name(run(&["--json", "--identity", "first", "id", "show"], None)), "first"); // flag
    assert!(!run(&["config", "set", "identity", "nobody"], None).status.success());
}
