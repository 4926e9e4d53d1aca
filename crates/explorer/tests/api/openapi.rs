//! The OpenAPI document, checked by outside tools (issue: "the OpenAPI document is invalid"):
//! `openapi-spec-validator` validates it, then schemathesis runs every operation with signed
//! requests against an explorer holding one workload of each kind, and fails on any 5xx,
//! undocumented status or response that does not match its schema.
//!
//! The tools live in a Python virtual environment built from `scripts/openapi/requirements.txt`
//! by `scripts/openapi/venv`, named by `ZGRID_OPENAPI_VENV` (`scripts/test` sets it); without
//! it the test says so and passes.

use std::path::{Path, PathBuf};

use tokio::process::Command;
use zgrid_types::directory::NodeHeartbeat;
use zgrid_types::workload::VolumeMount;
use zgrid_types::{NodeId, ResultState, Signed, WorkloadData, WorkloadId, WorkloadResult};

use crate::common::*;

/// The repository's `scripts/openapi`.
fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/openapi")
}

/// Run `program` of the venv in `dir` with `args` and `envs`, printing its output; panic unless
/// it succeeds.
async fn run(venv: &Path, dir: &Path, program: &str, args: &[&str], envs: &[(&str, String)]) {
    let path = venv.join("bin").join(program);
    let out = Command::new(&path)
        .current_dir(dir)
        // Python would cache the compiled hooks beside them, in the repository.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .args(args)
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; rebuild the venv with scripts/openapi/venv", path.display()));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{program} {}\n{text}", args.join(" "));
    assert!(out.status.success(), "{program} failed ({}):\n{text}", out.status);
}

/// One workload of each kind on `node`, a result, a heartbeat and a deleted workload, so
/// responses carry every kind of record.
async fn fill_ledger(w: &World) {
    let node = w.node.public();
    let mut made = Vec::new();
    let volume_id = create(w, &node, volume(), &mut made).await;
    let mount = VolumeMount { volume_id: volume_id.clone(), mountpoint: "/data".into() };
    for data in [
        network_resource("net", "10.20.1.0/24"),
        container("net", "10.20.1.5"),
        vm("net", "10.20.1.6", vec![mount]),
        kubernetes("net", "10.20.1.7"),
        volume(),
    ] {
        create(w, &node, data, &mut made).await;
    }
    let gone = made.last().expect("the second volume");
    w.alice.client.delete_workload(gone, w.alice.id).await.expect("delete");
    let result = WorkloadResult {
        workload_id: volume_id.clone(),
        version: 1,
        node_id: node,
        state: ResultState::Ok,
        message: "mounted".into(),
        data: serde_json::json!({"volume_id": volume_id}),
        timestamp: zgrid_types::unix_now(),
    };
    let by_node = w.ex.signed(&w.node);
    by_node.post_result(&Signed::sign(result, &w.node)).await.expect("result");
    let used = zgrid_types::directory::Capacity { cru: 2, mru: 2048, sru: 4096, hru: 0 };
    by_node
        .heartbeat(&NodeHeartbeat { used, hypervisor: Some("kvm".into()), ..Default::default() })
        .await
        .expect("heartbeat");
}

/// Create a workload of `data` on `node` owned by alice; its id is returned and added to `made`.
async fn create(w: &World, node: &NodeId, data: WorkloadData, made: &mut Vec<WorkloadId>) -> WorkloadId {
    let signed = w.signed(&w.alice, node, data);
    let kind = signed.payload.data.kind().as_str();
    w.alice.client.create_workload(&signed).await.unwrap_or_else(|e| panic!("create a {kind}: {e}"));
    made.push(signed.payload.id.clone());
    signed.payload.id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_is_valid_and_the_api_keeps_to_it() {
    let Some(venv) = std::env::var_os("ZGRID_OPENAPI_VENV").map(PathBuf::from) else {
        println!(
            "skipped: ZGRID_OPENAPI_VENV is unset; set it to the output of scripts/openapi/venv to validate the \
             document and fuzz the API (scripts/test does)"
        );
        return;
    };
    let w = World::new(Backend::Sqlite).await;
    fill_ledger(&w).await;
    // The document and the tools' state (Hypothesis', schemathesis') stay in here.
    let dir = tempfile::tempdir().expect("temporary directory");
    let doc = reqwest::get(format!("{}/openapi.json", w.ex.url)).await.expect("GET /openapi.json");
    let doc = doc.bytes().await.expect("the document");
    let path = dir.path().join("openapi.json");
    std::fs::write(&path, &doc).expect("write the document");
    let file = path.to_str().expect("a UTF-8 temporary path");
    run(&venv, dir.path(), "openapi-spec-validator", &[file], &[]).await;

    let config = scripts().join("schemathesis.toml");
    let config = config.to_str().expect("a UTF-8 repository path");
    let envs = [
        ("SCHEMATHESIS_HOOKS", scripts().join("zgrid_hooks.py").display().to_string()),
        ("ZGRID_FUZZ_USER_SEED", hex::encode(w.alice.key.seed())),
        ("ZGRID_FUZZ_NODE_SEED", hex::encode(w.node.seed())),
    ];
    let args = ["--config-file", config, "--no-color", "run", file, "--url", &w.ex.url];
    run(&venv, dir.path(), "schemathesis", &args, &envs).await;
    w.ex.stop().await;
}
