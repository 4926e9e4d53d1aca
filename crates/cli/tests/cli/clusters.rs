//! `zgrid k8s` against a real explorer process, without VMs: nodes that register through the
//! SDK and answer for their workloads as a node agent would (the end-to-end test with real VMs is
//! `k8s.rs`). What a user gets wrong is refused before anything is made; a whole cluster's
//! workloads are made, found again from the explorer alone, and removed.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use zgrid_client::ExplorerClient;
use zgrid_explorer::testing::{Backend, TempDatabase};
use zgrid_types::api::WorkloadState;
use zgrid_types::directory::{Capacity, Location, NodeHeartbeat, NodeRegistration};
use zgrid_types::{Keypair, ResultState, Signed, WorkloadData, WorkloadResult};

use crate::common::{ServerProcess, ZGRID, zgrid, zgrid_json};

/// A node registered in farm `farm` (invited by its owner, the deployer in `h`), with a public
/// address when `public`, that says it runs VMs with `hypervisor`.
async fn node(h: &Path, url: &str, farm: u64, public: bool, hypervisor: &str) -> Keypair {
    let key = Keypair::from_seed(&rand::random());
    let id = key.public().to_string();
    let invited = zgrid_json(h, url, &["farm", "invite", "--farm", &farm.to_string(), "--node", &id]);
    let reg = NodeRegistration {
        farm_id: farm,
        hostname: id[..8].to_lowercase(),
        total: Capacity { cru: 4, mru: 8192, sru: 200_000, hru: 0 },
        location: Location::default(),
        public_endpoint: public.then(|| "192.0.2.7".parse().unwrap()),
        api_url: None,
        version: "test".into(),
        farm_invitation: Some(Signed::from_token(invited["token"].as_str().unwrap()).unwrap()),
    };
    let client = ExplorerClient::new(url).unwrap().with_key(key.clone());
    client.register_node(&reg).await.unwrap();
    let beat = NodeHeartbeat { used: Capacity::default(), hypervisor: Some(hypervisor.into()), ..Default::default() };
    client.heartbeat(&beat).await.unwrap();
    key
}

/// Answer for `node`'s workloads of `owner` as its agent would, until aborted: each version
/// `ok` (a network resource with a WireGuard port), each deleted workload `deleted`.
async fn answer(url: String, node: Keypair, owner: u64) {
    let client = ExplorerClient::new(&url).unwrap().with_key(node.clone());
    let mut ports = HashMap::new();
    loop {
        for record in client.all_workloads(owner, None).await.unwrap() {
            let spec = &record.workload.payload;
            if spec.node_id != node.public() {
                continue;
            }
            let (state, data) = match (record.state, &spec.data) {
                (WorkloadState::Active, WorkloadData::NetworkResource(_)) => {
                    let next = 51820 + ports.len() as u64;
                    (
                        ResultState::Ok,
                        serde_json::json!({ "listen_port": *ports.entry(spec.id.clone()).or_insert(next) }),
                    )
                }
                (WorkloadState::Active, _) => (ResultState::Ok, serde_json::json!({ "accelerator": "kvm" })),
                _ => (ResultState::Deleted, serde_json::Value::Null),
            };
            let reported = record.result.as_ref().map(|r| &r.payload);
            if reported.is_some_and(|r| r.version == spec.version && r.state == state) {
                continue;
            }
            let result = WorkloadResult {
                workload_id: spec.id.clone(),
                version: spec.version,
                node_id: node.public(),
                state,
                message: String::new(),
                data,
                timestamp: zgrid_types::unix_now(),
            };
            client.post_result(&Signed::sign(result, &node)).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Run `zgrid k8s args` (`--json` may come first) as the deployer in `h`, with `HOME` there too
/// (for ~/.kube).
fn k8s(h: &Path, url: &str, args: &[&str]) -> Output {
    let (json, args) = match args.split_first() {
        Some((&"--json", rest)) => (true, rest),
        _ => (false, args),
    };
    let mut command = zgrid_devnet::cli(Path::new(ZGRID), h, url);
    command.env("HOME", h).args(json.then_some("--json")).arg("k8s").args(args);
    command.output().expect("run zgrid")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_are_refused_before_anything_is_made_when_they_cannot_work() {
    let db = TempDatabase::create(Backend::Sqlite).await;
    let explorer = ServerProcess::start(&db.url);
    let home = tempfile::tempdir().unwrap();
    let (h, url) = (home.path(), explorer.url.as_str());
    zgrid_json(h, url, &["id", "new", "alice", "--register"]);
    let farm = zgrid_json(h, url, &["farm", "create", "k8s-farm"])["id"].as_u64().unwrap();
    node(h, url, farm, true, "tcg: no usable KVM on this node, expect it to be slow").await;
    let no_vms = node(h, url, farm, true, "none: no kernel for VMs (scripts/vm-kernel)").await.public().to_string();

    let refused = |args: &[&str], expected: &str| {
        let out = k8s(h, url, args);
        let err = stderr(&out);
        assert!(!out.status.success() && err.contains(expected), "{args:?}: expected {expected:?} in {err}");
    };
    refused(&["up", "--name", "kube", "--nodes", "1"], "scripts/k8s-image --hub URL");
    fn up<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec!["up", "--name", "kube", "--flist", "/srv/images/k8s"];
        args.extend_from_slice(extra);
        args
    }
    refused(
        &up(&["--nodes", "1", "--cidr", "10.42.0.0/16"]),
        "--cidr 10.42.0.0/16 overlaps 10.42.0.0/16, the cluster's pod range",
    );
    refused(&up(&["--nodes", "1", "--cidr", "10.43.0.0/16"]), "the cluster's service range");
    refused(&up(&["--nodes", "1", "--cidr", "10.20.5.0/24"]), "/16");
    refused(&up(&["--nodes", "1", "--size", "19"]), "--size 19 is not a VM size: use 1 to 18");
    refused(&up(&["--nodes", "5"]), "only 4 of 5 VM(s)");
    refused(&up(&["--node", &no_vms]), "cannot run VMs: no kernel for VMs");
    refused(&up(&["--nodes", "1", "--registry", "http://10.20.1.9:5000"]), "registries[0]");
    refused(&up(&["--nodes", "1", "--ssh-key", "/nonexistent.pub"]), "--ssh-key /nonexistent.pub: cannot read");
    refused(&["up", "--name", "Kube", "--nodes", "1"], "--name: \"Kube\" is not a valid name");
    std::fs::write(h.join("mine.yaml"), "apiVersion: v1\nkind: Config\n").unwrap();
    refused(&up(&["--nodes", "1", "--kubeconfig", h.join("mine.yaml").to_str().unwrap()]), "--kubeconfig");
    refused(&["kubeconfig", "nope"], "you have no cluster \"nope\"");
    refused(&["down", "nope"], "zgrid k8s ls");
    let usage = k8s(h, url, &["up", "--name", "kube"]);
    assert_eq!(usage.status.code(), Some(2), "--nodes or --node is needed: {}", stderr(&usage));
    assert_eq!(zgrid_json(h, url, &["live", "--state", "all"])["total"], 0, "something was made");
    assert_eq!(zgrid_json(h, url, &["k8s", "ls"]), serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clusters_workloads_are_made_found_again_and_removed_from_the_explorer_alone() {
    let db = TempDatabase::create(Backend::Sqlite).await;
    let explorer = ServerProcess::start(&db.url);
    let home = tempfile::tempdir().unwrap();
    let (h, url) = (home.path(), explorer.url.as_str());
    let owner = zgrid_json(h, url, &["id", "new", "alice", "--register"])["user_id"].as_u64().unwrap();
    let farm = zgrid_json(h, url, &["farm", "create", "k8s-farm"])["id"].as_u64().unwrap();
    let (a, b) = (node(h, url, farm, true, "kvm").await, node(h, url, farm, false, "kvm").await);
    let agents: Vec<_> = [&a, &b].map(|n| tokio::spawn(answer(url.to_owned(), n.clone(), owner))).into();
    std::fs::write(h.join("id.pub"), "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBW3o1Pq6Fq0aDrYbU3NgP9cLzX1qQ me@laptop\n")
        .unwrap();

    // 10.199/16 is routed nowhere here: the CLI cannot reach the master, says how to, and the
    // cluster is made all the same.
    let key = h.join("id.pub");
    let mut up = vec!["--json", "up", "--name", "kube", "--nodes", "3", "--cidr", "10.199.0.0/16", "--duration", "2h"];
    up.extend(["--flist", "/srv/images/k8s", "--ssh-key", key.to_str().unwrap(), "--registry", "10.199.1.9:5000"]);
    let out = k8s(h, url, &up);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["reachable"], false);
    assert!(
        stderr(&out).contains("zgrid k8s kubeconfig kube") && stderr(&out).contains("wg-quick up"),
        "{}",
        stderr(&out)
    );
    let wg = report["wg_config"].as_str().unwrap();
    assert_eq!(wg, h.join("wireguard/kube.conf").to_str().unwrap());
    assert_eq!(std::fs::metadata(wg).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(std::fs::read_to_string(wg).unwrap().contains("AllowedIPs = 10.199.0.0/16"));
    let cluster = &report["cluster"];
    assert_eq!(
        (&cluster["name"], &cluster["network"], &cluster["network_created"]),
        (&"kube".into(), &"kube".into(), &true.into())
    );
    let master = &cluster["master"];
    assert_eq!(master["node_id"], a.public().to_string(), "the master goes on the public node");
    assert_eq!(cluster["workers"].as_array().unwrap().len(), 2);
    assert_eq!(report["api"], format!("https://{}:6443", master["ip"].as_str().unwrap()));

    // What the explorer holds: marked workloads, each VM's secret sealed to its node, the same
    // secret for all, workers joining the master.
    let records = ExplorerClient::new(url).unwrap().all_workloads(owner, Some("active")).await.unwrap();
    let mut secrets = Vec::new();
    for record in &records {
        let spec = &record.workload.payload;
        let mark: serde_json::Value = serde_json::from_str(&spec.metadata).unwrap();
        assert_eq!(mark["k8s"]["cluster"], "kube");
        let WorkloadData::Kubernetes(k) = &spec.data else {
            assert_eq!(mark["k8s"]["role"], "network");
            continue;
        };
        let key = if spec.node_id == a.public() { &a } else { &b };
        secrets.push(key.unseal_secret(&k.cluster_secret).unwrap());
        assert_eq!((k.registries.len(), k.ssh_keys.len(), k.network_id.as_str()), (1, 1, "kube"));
        let role = mark["k8s"]["role"].as_str().unwrap();
        let masters: Vec<String> = k.master_ips.iter().map(|ip| ip.to_string()).collect();
        match role {
            "master" => assert!(masters.is_empty()),
            _ => assert_eq!(masters, [master["ip"].as_str().unwrap()]),
        }
    }
    assert_eq!(secrets.len(), 3);
    assert!(secrets.iter().all(|s| *s == secrets[0] && s.len() == 64), "one secret per cluster");
    let ips: std::collections::HashSet<_> =
        records.iter().filter_map(|r| r.workload.payload.data.network_attachment()).collect();
    assert_eq!(ips.len(), 3, "each VM its own address");

    // Found again from the explorer: by `ls`, and by a second machine holding the same identity.
    let listed = zgrid_json(h, url, &["k8s", "ls"]);
    assert_eq!(listed[0]["name"], "kube");
    assert_eq!(listed[0]["master"]["ip"], master["ip"]);
    let table = String::from_utf8_lossy(&zgrid(h, url, &["k8s", "ls"]).stdout).into_owned();
    assert!(table.contains("kube") && table.contains(master["ip"].as_str().unwrap()), "{table}");
    let words = zgrid_json(h, url, &["id", "show", "--mnemonic"])["mnemonic"].as_str().unwrap().to_owned();
    let laptop2 = tempfile::tempdir().unwrap();
    zgrid_json(laptop2.path(), url, &["id", "import", "alice", "--mnemonic", &words]);
    assert_eq!(zgrid_json(laptop2.path(), url, &["k8s", "ls"])[0]["name"], "kube");
    let unreachable = k8s(laptop2.path(), url, &["kubeconfig", "kube"]);
    assert!(!unreachable.status.success());
    assert!(stderr(&unreachable).contains("then run `zgrid k8s kubeconfig kube`"), "{}", stderr(&unreachable));
    assert!(!laptop2.path().join(".kube/zgrid-kube.yaml").exists(), "no kubeconfig without the CA");
    let again = k8s(h, url, &["up", "--name", "kube", "--nodes", "1", "--flist", "/srv/images/k8s"]);
    assert!(stderr(&again).contains("you already have a cluster kube"), "{}", stderr(&again));

    // A worker added later goes where the cluster has fewest VMs, made like the others.
    let added = k8s(h, url, &["--json", "add-worker", "kube"]);
    assert!(added.status.success(), "{}", stderr(&added));
    let added: serde_json::Value = serde_json::from_slice(&added.stdout).unwrap();
    assert_eq!((&added["worker"]["node_id"], &added["reachable"]), (&b.public().to_string().into(), &false.into()));
    assert_eq!(added["cluster"]["workers"].as_array().unwrap().len(), 3);
    let id = added["worker"]["workload_id"].as_str().unwrap().parse().unwrap();
    let WorkloadData::Kubernetes(k) =
        ExplorerClient::new(url).unwrap().workload(&id).await.unwrap().workload.payload.data
    else {
        panic!("the worker is a kubernetes workload")
    };
    assert_eq!(b.unseal_secret(&k.cluster_secret).unwrap(), secrets[0], "the cluster's secret, derived again");
    assert_eq!((k.master_ips[0].to_string().as_str(), k.registries.len()), (master["ip"].as_str().unwrap(), 1));

    // Removed: the VMs, then the network `up` made, each reported gone by its node.
    let down = zgrid_json(h, url, &["k8s", "down", "kube"]);
    assert_eq!((&down["network_deleted"], &down["gone"]), (&true.into(), &true.into()));
    assert_eq!(down["deleted"].as_array().unwrap().len(), 6, "4 VMs and 2 network resources");
    assert_eq!(zgrid_json(h, url, &["live"])["total"], 0);
    assert_eq!(zgrid_json(h, url, &["k8s", "ls"]), serde_json::json!([]));

    // A network of mine is reused, given this machine's access, and kept by `down`.
    zgrid_json(
        h,
        url,
        &["network", "create", "--name", "lab", "--cidr", "10.198.0.0/16", "--node", &a.public().to_string()],
    );
    let refused =
        k8s(h, url, &["up", "--name", "lab", "--nodes", "1", "--flist", "/srv/images/k8s", "--cidr", "10.197.0.0/16"]);
    assert!(stderr(&refused).contains("your network lab exists with range 10.198.0.0/16"), "{}", stderr(&refused));
    let lab = k8s(h, url, &["--json", "up", "--name", "lab", "--nodes", "1", "--flist", "/srv/images/k8s"]);
    assert!(lab.status.success(), "{}", stderr(&lab));
    let lab: serde_json::Value = serde_json::from_slice(&lab.stdout).unwrap();
    assert_eq!((&lab["cluster"]["network_created"], &lab["cidr"]), (&false.into(), &"10.198.0.0/16".into()));
    let down = zgrid_json(h, url, &["k8s", "down", "lab"]);
    assert_eq!(down["network_deleted"], false);
    assert!(down["network_kept"].as_str().unwrap().contains("was there before the cluster"), "{down}");
    let network = zgrid_json(h, url, &["network", "show", "--name", "lab"]);
    assert_eq!(network["access_points"].as_array().unwrap().len(), 1, "this machine's access stays too");
    assert_eq!(zgrid_json(h, url, &["k8s", "ls"]), serde_json::json!([]));
    agents.iter().for_each(|a| a.abort());
}
