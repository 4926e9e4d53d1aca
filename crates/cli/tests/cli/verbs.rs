//! The CLI verbs against a real explorer process: identities, farms, node search, deploy, live
//! and delete, in human and `--json` forms, and the errors a user meets first.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use zgrid_client::network::{Member, Network};
use zgrid_client::{ExplorerClient, Identity};
use zgrid_explorer::testing::{Backend, TempDatabase};
use zgrid_types::directory::{Capacity, Location, NodeHeartbeat, NodeRegistration};
use zgrid_types::{Keypair, Signed, WorkloadData, WorkloadSpec};

use crate::common::{ServerProcess, zgrid, zgrid_json};

/// A node that registers itself in a new farm of the deployer's (the node agent does this; here
/// the SDK stands in for it) with the farm owner's invitation.
async fn invited_node(h: &Path, url: &str) -> Keypair {
    let farm = zgrid_json(h, url, &["farm", "create", "home-farm", "--public-ip", "192.0.2.10/24=192.0.2.1"]);
    let farm_id = farm["id"].as_u64().unwrap();
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
    node
}

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

    let node_id = invited_node(h, url).await.public().to_string();

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

/// `zgrid deploy vm` against a real explorer (no node agent: the node's verdict is the end-to-end
/// test's): the deployer's key files, a free address on the network, sealed secrets, and the
/// mistakes refused before anything is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_is_deployed_on_a_network_with_the_deployers_ssh_keys() {
    let db = TempDatabase::create(Backend::Sqlite).await;
    let explorer = ServerProcess::start(&db.url);
    let home = tempfile::tempdir().unwrap();
    let (h, url) = (home.path(), explorer.url.as_str());
    zgrid_json(h, url, &["id", "new", "alice", "--register"]);
    let node_key = invited_node(h, url).await;
    let (node, node_id) = (node_key.public(), node_key.public().to_string());

    // `zgrid nodes` says which hypervisor the node's VMs use, as its heartbeat said.
    let tcg = "tcg: no usable KVM on this node, expect it to be slow";
    let beat = NodeHeartbeat { used: Capacity::default(), hypervisor: Some(tcg.into()), ..Default::default() };
    ExplorerClient::new(url).unwrap().with_key(node_key).heartbeat(&beat).await.unwrap();
    assert_eq!(zgrid_json(h, url, &["nodes"])["items"][0]["hypervisor"], tcg);
    let table = String::from_utf8_lossy(&zgrid(h, url, &["nodes"]).stdout).to_string();
    assert!(table.lines().any(|l| l.contains(&node_id) && l.split_whitespace().any(|cell| cell == "tcg")), "{table}");

    // The network's resource on the node, submitted with the deployer's key (`zgrid network
    // create` would wait for a node agent's verdict).
    let words = zgrid_json(h, url, &["id", "show", "--mnemonic"])["mnemonic"].as_str().unwrap().to_string();
    let me = Identity::from_mnemonic("alice", &words).unwrap();
    let owner = zgrid_json(h, url, &["id", "show"])["user_id"].as_u64().unwrap();
    let mut office = Network::new("office", "10.20.0.0/16".parse().unwrap()).unwrap();
    office.add_member(Member::generate(node, None, "10.20.1.0/24".parse().unwrap())).unwrap();
    let resource = WorkloadSpec {
        id: zgrid_client::new_workload_id(),
        version: 1,
        owner,
        owner_key: me.keypair.public(),
        node_id: node,
        expires_at: zgrid_types::unix_now() + 3600,
        description: String::new(),
        metadata: String::new(),
        data: WorkloadData::NetworkResource(office.resource(&node).unwrap()),
    };
    let client = ExplorerClient::new(url).unwrap().with_key(me.keypair.clone());
    client.create_workload(&Signed::sign(resource, &me.keypair)).await.unwrap();

    let key_line = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBW3o1Pq6Fq0aDrYbU3NgP9cLzX1qQ alice@laptop";
    let keys = home.path().join("id_ed25519.pub");
    std::fs::write(&keys, format!("{key_line}\n")).unwrap();
    let private = home.path().join("id_ed25519");
    std::fs::write(&private, "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk=\n").unwrap();
    let (keys, private) = (keys.to_str().unwrap(), private.to_str().unwrap());
    let vm = |extra: &[&str]| {
        let mut args = vec!["deploy", "vm", "--node", &node_id, "--flist", "/srv/images/debian", "--network", "office"];
        args.extend_from_slice(extra);
        zgrid(h, url, &args)
    };

    let missing = home.path().join("nope.pub");
    let malformed: Vec<(Vec<&str>, String)> = vec![
        (vec!["--ssh-key", missing.to_str().unwrap()], format!("--ssh-key {}: cannot read", missing.display())),
        (vec!["--ssh-key", private], format!("--ssh-key {private}: not an OpenSSH public key file")),
        (vec!["--ssh-key", keys, "--kernel-args", "quiet root=/dev/vda"], "kernel_args: \"root=/dev/vda\"".into()),
        (vec!["--ssh-key", keys, "--kernel-args", "zgrid.ip=1"], "kernel_args: ".into()),
        (vec!["--ssh-key", keys, "--memory", "128"], "capacity.memory: ".into()),
        (vec!["--ssh-key", keys, "--env", "MY VAR=1"], "environment.MY VAR: ".into()),
        (vec!["--ssh-key", keys, "--ip", "10.20.2.5"], "--ip 10.20.2.5".into()),
    ];
    for (extra, expected) in malformed {
        let out = vm(&extra);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(&expected), "{extra:?}: expected {expected:?} in {err}");
    }
    let elsewhere =
        zgrid(h, url, &["deploy", "vm", "--node", &node_id, "--flist", "/x", "--network", "lab", "--ssh-key", keys]);
    assert!(String::from_utf8_lossy(&elsewhere.stderr).contains("zgrid network create"));
    assert_eq!(zgrid_json(h, url, &["live", "--state", "all"])["total"], 1, "a malformed VM was stored");

    let mut args = vec!["--json", "deploy", "vm", "--node", &node_id, "--flist", "/srv/images/debian"];
    args.extend(["--network", "office", "--ssh-key", keys, "--env", "GREETING=hi", "--secret-env", "TOKEN=hunter2"]);
    args.extend(["--kernel-args", "quiet mitigations=off", "--duration", "2h"]);
    let out = zgrid(h, url, &args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let deployed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let data = &deployed["workload"]["payload"]["data"];
    assert_eq!(data["type"], "vm");
    assert_eq!(data["ipaddress"], "10.20.1.2", "the lowest free address of the node's subnet");
    assert_eq!(data["ssh_keys"], serde_json::json!([key_line]));
    assert_eq!(data["capacity"], serde_json::json!({"cpu": 1, "memory": 1024, "disk_size": 2048, "disk_type": "SSD"}));
    assert_eq!(
        (&data["kernel_args"], &data["environment"]["GREETING"]),
        (&"quiet mitigations=off".into(), &"hi".into())
    );
    let sealed = data["secret_environment"]["TOKEN"].as_str().unwrap();
    assert!(sealed.starts_with("v1:") && !sealed.contains("hunter2"), "{sealed}");

    // The next VM (or container) gets the next address; a taken one is refused by name.
    let second = zgrid_json(
        h,
        url,
        &["deploy", "vm", "--node", &node_id, "--flist", "/x", "--network", "office", "--ssh-key", keys],
    );
    assert_eq!(second["workload"]["payload"]["data"]["ipaddress"], "10.20.1.3");
    let taken = vm(&["--ssh-key", keys, "--ip", "10.20.1.2"]);
    assert!(String::from_utf8_lossy(&taken.stderr).contains("10.20.1.2"), "{}", String::from_utf8_lossy(&taken.stderr));
    assert!(!taken.status.success());
    let human = String::from_utf8_lossy(&zgrid(h, url, &["live"]).stdout).to_string();
    assert!(human.contains(" vm ") && human.contains(" office 10.20.1.3 "), "each VM's network and address: {human}");

    // Deploys at once each choose the lowest free address; those that lose it to another take
    // the next, and every one is deployed.
    let outcomes: Vec<_> = std::thread::scope(|s| {
        let deploys: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let args = ["--json", "deploy", "vm", "--node", &node_id, "--flist", "/x", "--network", "office"];
                    zgrid(h, url, &[&args[..], &["--ssh-key", keys]].concat())
                })
            })
            .collect();
        deploys.into_iter().map(|d| d.join().unwrap()).collect()
    });
    let mut addresses: Vec<String> = outcomes
        .iter()
        .map(|out| {
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let deployed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            deployed["workload"]["payload"]["data"]["ipaddress"].as_str().unwrap().to_owned()
        })
        .collect();
    addresses.sort();
    assert_eq!(addresses, ["10.20.1.4", "10.20.1.5", "10.20.1.6", "10.20.1.7"]);
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
    // A length of time without a unit is bad usage (2), said once with the fix.
    let node = Keypair::from_seed(&[1; 32]).public().to_string();
    let bare = zgrid(h, url, &["deploy", "volume", "--node", &node, "--size", "1", "--duration", "2"]);
    let err = String::from_utf8_lossy(&bare.stderr);
    assert_eq!(bare.status.code(), Some(2), "{err}");
    assert!(err.contains("'--duration") && err.contains("2m, 2h or 2d") && !err.contains("2sec"), "{err}");
    fail(&["id", "import", "x", "--mnemonic", "not words"], url, "mnemonic");
    // A mistyped workload id: what an id looks like and where to find one, said once.
    let typo = zgrid(h, url, &["stats", "nosuch"]);
    let err = String::from_utf8_lossy(&typo.stderr);
    assert!(err.contains("16 lowercase hex") && err.contains("zgrid live"), "{err}");
    assert_eq!(err.matches("is not a workload id").count(), 1, "{err}");
    // An explorer that is down: the cause once, the URL once, and what to check.
    let down = zgrid(h, "http://127.0.0.1:9", &["nodes"]);
    let err = String::from_utf8_lossy(&down.stderr);
    assert_eq!(down.status.code(), Some(1));
    assert!(err.contains("cannot reach the explorer at http://127.0.0.1:9"), "{err}");
    assert!(err.contains("refused") && err.contains("check that it is running"), "{err}");
    assert_eq!(err.matches("127.0.0.1:9").count(), 1, "the URL is said once: {err}");
    let usage = zgrid(h, url, &["deploy", "volume"]);
    assert_eq!(usage.status.code(), Some(2));
    // No grid where `status` and `down` look: status says how to start or find one; down has
    // nothing to stop, says so, and makes nothing.
    let nowhere = h.join("no-grid");
    let status = zgrid(h, url, &["status", "--dir", nowhere.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&status.stderr);
    assert_eq!(status.status.code(), Some(1), "{err}");
    assert!(err.contains("no grid in") && err.contains("zgrid up") && err.contains("--dir"), "{err}");
    let down = zgrid(h, url, &["down", "--dir", nowhere.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&down.stdout);
    assert!(down.status.success() && said.contains("nothing to stop") && !said.contains("removing"), "{said}");
    assert!(!nowhere.exists());

    // Output into a pipe nobody reads any more (`zgrid --json id show | head -c0`) ends the
    // command quietly, as Unix tools end, instead of a panic and its backtrace.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = std::process::Command::new(crate::common::ZGRID)
        .args(["--json", "id", "show"])
        .env("ZGRID_HOME", h)
        .stdout(writer)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked") && err.is_empty(), "{err}");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&out.status),
        Some(13),
        "killed by SIGPIPE: {:?}",
        out.status
    );
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
    let set = run(&["config", "set", "explorer", &explorer.url], None);
    assert_eq!(
        String::from_utf8_lossy(&set.stdout).trim(),
        format!("explorer = {}", explorer.url),
        "it says what it set"
    );
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

    // `zgrid status` looks for the grid `zgrid up` recorded (here, one that is gone).
    let gone = h.join("gone-grid");
    ok(run(&["config", "set", "grid", gone.to_str().unwrap()], None));
    let status = run(&["status"], None);
    let err = String::from_utf8_lossy(&status.stderr);
    assert!(err.contains(&format!("no grid in {}", gone.display())) && err.contains("--dir"), "{err}");

    // `id use` wins over the config file's choice, and `id list` stars the one that acts.
    ok(run(&["id", "use", "first"], None));
    assert_eq!(name(run(&["--json", "id", "show"], None)), "first");
    let listed: serde_json::Value = serde_json::from_slice(&run(&["--json", "id", "list"], None).stdout).unwrap();
    assert_eq!(listed["default"], "first", "{listed}");
    let listed: serde_json::Value =
        serde_json::from_slice(&run(&["--json", "--identity", "second", "id", "list"], None).stdout).unwrap();
    assert_eq!(listed["default"], "second", "the flag acts: {listed}");
}
