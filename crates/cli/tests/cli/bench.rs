//! `zgrid bench network` on a devnet of two nodes, and `zgrid bench scale` end to end at a
//! small scale: explorer processes of the binary, simulated nodes with open feeds, heartbeats
//! and batched results, and a report that adds up. On SQLite with one explorer, and, when
//! `ZGRID_TEST_POSTGRES` names a server, on PostgreSQL with two.

use std::process::Command;

use crate::common::ZGRID;

/// Nodes and workloads of the small run.
const NODES: u64 = 20;
const WORKLOADS: u64 = 100;
const SAMPLES: u64 = 20;

/// Run the bench small with `extra` arguments; its JSON report.
fn scale(extra: &[&str]) -> serde_json::Value {
    let home = tempfile::tempdir().unwrap();
    let (nodes, workloads, samples) = (NODES.to_string(), WORKLOADS.to_string(), SAMPLES.to_string());
    let mut args = vec!["--json", "bench", "scale", "--nodes", &nodes, "--workloads", &workloads];
    args.extend(["--samples", &samples, "--idle-seconds", "1", "--query-loads", "2"]);
    args.extend_from_slice(extra);
    let out = Command::new(ZGRID).args(&args).env("ZGRID_HOME", home.path()).output().expect("run zgrid bench scale");
    assert!(out.status.success(), "zgrid {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("non-JSON report ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// What every run must show: every node joined and stayed connected, every workload was
/// accepted, reached its node's feed and got its result back, every timed create arrived.
fn check(report: &serde_json::Value, explorers: u64) {
    assert_eq!(report["explorers"], explorers, "{report:#}");
    assert_eq!(report["join"]["joined"], NODES, "{report:#}");
    assert_eq!(report["deploy"]["accepted"], WORKLOADS, "{report:#}");
    assert_eq!(report["deploy"]["failures"], 0, "{report:#}");
    assert_eq!(report["deploy"]["delivered"], WORKLOADS, "{report:#}");
    assert_eq!(report["deploy"]["all_delivered"], true, "{report:#}");
    assert_eq!(report["deploy"]["result_failures"], 0, "{report:#}");
    assert_eq!(report["feed_latency"]["timed"], SAMPLES, "{report:#}");
    assert_eq!(report["feed_latency"]["missed"], 0, "{report:#}");
    assert!(report["feed_latency"]["acceptance_to_node"]["p99_ms"].as_f64().is_some(), "{report:#}");
    assert_eq!(report["idle"]["feeds_open"], NODES, "{report:#}");
    assert!(report["queries"].as_array().is_some_and(|q| !q.is_empty()), "{report:#}");
    let idle = report["idle"]["explorers"].as_array().expect("explorers");
    assert_eq!(idle.len() as u64, explorers, "{report:#}");
    assert!(idle.iter().all(|e| e["rss_mib"].as_f64().is_some_and(|m| m > 1.0)), "{report:#}");
    // Every explorer process is gone afterwards.
    for e in idle {
        let pid = e["pid"].as_u64().expect("pid");
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "explorer {pid} still runs");
    }
}

#[test]
fn bench_scale_runs_end_to_end_on_sqlite() {
    check(&scale(&[]), 1);
}

#[test]
fn bench_scale_runs_with_two_explorers_on_postgresql_and_refuses_them_on_sqlite() {
    let out = Command::new(ZGRID).args(["bench", "scale", "--explorers", "2"]).output().expect("run zgrid");
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("--db postgres://"), "{said}");
    let Ok(server) = std::env::var("ZGRID_TEST_POSTGRES") else {
        eprintln!("ZGRID_TEST_POSTGRES is not set: skipping the PostgreSQL half");
        return;
    };
    check(&scale(&["--explorers", "2", "--db", &server]), 2);
}

#[test]
fn bench_network_reports_throughput_round_trips_and_ratios_for_every_path() {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(ZGRID)
        .args(["--json", "bench", "network", "--seconds", "1"])
        .env("ZGRID_HOME", home.path())
        .output()
        .expect("run zgrid bench network");
    assert!(out.status.success(), "zgrid bench network failed: {}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for path in ["overlay_container_to_container", "underlay_node_to_node", "wireguard_go_node_to_node"] {
        for key in ["throughput_gbit_s", "throughput_4_streams_gbit_s"] {
            assert!(report[path][key].as_f64().is_some_and(|g| g > 0.0), "{path}.{key}: {report:#}");
        }
        for key in ["rtt_avg_ms", "rtt_max_ms", "rtt_under_load_avg_ms", "rtt_under_load_max_ms"] {
            assert!(report[path][key].as_f64().is_some_and(|ms| ms > 0.0), "{path}.{key}: {report:#}");
        }
    }
    for ratios in ["overlay_vs_wireguard_go", "overlay_vs_underlay"] {
        for key in ["one_stream", "four_streams"] {
            assert!(report[ratios][key].as_f64().is_some_and(|r| r > 0.0), "{ratios}.{key}: {report:#}");
        }
    }
}
