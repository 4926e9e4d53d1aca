//! The explorer killed with SIGKILL during a burst of concurrent creates loses no workload it
//! acknowledged, on SQLite and on PostgreSQL.

use futures::StreamExt;
use zgrid_client::{ExplorerClient, new_workload_id};
use zgrid_explorer::testing::{Backend, TempDatabase};
use zgrid_types::directory::{Capacity, FarmRegistration, NodeRegistration};
use zgrid_types::invitation::invite;
use zgrid_types::workload::{DiskType, Volume};
use zgrid_types::{Keypair, Signed, WorkloadData, WorkloadSpec};

use crate::common::ServerProcess;

const BURST: usize = 400;
const CONCURRENCY: usize = 24;
/// Kill after this many acknowledgements, so the kill lands mid-burst.
const KILL_AFTER: usize = 60;

async fn acknowledged_workloads_survive_sigkill(backend: Backend) {
    let db = TempDatabase::create(backend).await;
    let mut explorer = ServerProcess::start(&db.url);
    let owner_key = Keypair::from_seed(&rand::random());
    let client = ExplorerClient::new(&explorer.url).unwrap().with_key(owner_key.clone());
    let owner = client.register_user("alice", "").await.unwrap().id;
    let farm = client.create_farm(&FarmRegistration { name: "f".into(), public_ips: vec![] }).await.unwrap().id;
    let node = Keypair::from_seed(&rand::random());
    let reg = NodeRegistration {
        farm_id: farm,
        hostname: "n".into(),
        total: Capacity { cru: 4, mru: 4096, sru: 1 << 20, hru: 0 },
        location: Default::default(),
        public_endpoint: None,
        api_url: None,
        version: "test".into(),
        farm_invitation: Some(invite(&owner_key, farm, Some(node.public()), zgrid_types::unix_now() + 3600)),
    };
    ExplorerClient::new(&explorer.url).unwrap().with_key(node.clone()).register_node(&reg).await.unwrap();

    let signed: Vec<Signed<WorkloadSpec>> = (0..BURST)
        .map(|i| {
            let spec = WorkloadSpec {
                id: new_workload_id(),
                version: 1,
                owner,
                owner_key: owner_key.public(),
                node_id: node.public(),
                expires_at: zgrid_types::unix_now() + 3600,
                description: format!("burst {i}"),
                metadata: String::new(),
                data: WorkloadData::Volume(Volume { size: 64 + i as u64, disk_type: DiskType::Ssd }),
            };
            Signed::sign(spec, &owner_key)
        })
        .collect();

    let mut results = futures::stream::iter(signed.iter().map(|w| {
        let client = client.clone();
        async move { client.create_workload(w).await.map(|_| w) }
    }))
    .buffer_unordered(CONCURRENCY);
    let mut acked = Vec::new();
    let mut failed = 0;
    while let Some(r) = results.next().await {
        match r {
            Ok(w) => {
                acked.push(w);
                if acked.len() == KILL_AFTER {
                    explorer.kill();
                }
            }
            Err(_) => failed += 1,
        }
    }
    assert!(failed > 0, "the kill landed after the burst; nothing was in flight");
    assert!(acked.len() >= KILL_AFTER);

    let restarted = ServerProcess::start(&db.url);
    let reader = ExplorerClient::new(&restarted.url).unwrap();
    for w in &acked {
        let record =
            reader.workload(&w.payload.id).await.unwrap_or_else(|e| panic!("acknowledged {} lost: {e}", w.payload.id));
        assert_eq!(&record.workload, *w, "workload {} changed across the crash", w.payload.id);
        assert!(record.workload.verify(&owner_key.public()).is_ok());
    }
    // Nothing half-written: every stored workload is one we sent, intact.
    let all = reader.desired_set(&node.public()).await.unwrap();
    assert!(all.workloads.len() >= acked.len());
    assert!(all.workloads.iter().all(|r| signed.contains(&r.workload)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_workloads_survive_sigkill_on_sqlite() {
    acknowledged_workloads_survive_sigkill(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_workloads_survive_sigkill_on_postgres() {
    acknowledged_workloads_survive_sigkill(Backend::Postgres).await;
}
