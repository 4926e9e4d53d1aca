//! `zgrid k8s down`: signed deletes of everything a cluster has, the VMs first, then its network
//! if `up` made it (and nothing else uses it); waits until the nodes report them removed.

use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;
use zgrid_types::api::WorkloadRecord;
use zgrid_types::{ResultState, WorkloadData, WorkloadId};

use super::cluster;
use crate::cmd::network::{Session, members};
use crate::output;

/// How long to wait for the nodes to report what was deleted removed.
const GONE_LIMIT: Duration = Duration::from_secs(5 * 60);

/// What `down` did (`--json`).
#[derive(Serialize)]
struct Report {
    /// The cluster.
    name: String,
    /// Its network.
    network: String,
    /// The workloads deleted: the VMs, then the network resources.
    deleted: Vec<WorkloadId>,
    /// Whether the network was deleted.
    network_deleted: bool,
    /// Why not, when it was not.
    network_kept: Option<String>,
    /// Whether every node reported its workloads removed in time.
    gone: bool,
}

pub async fn run(s: &Session, name: &str) -> Result<()> {
    let cluster = cluster::existing(s, name).await?;
    let vms: Vec<&WorkloadRecord> =
        cluster.records.iter().filter(|r| matches!(r.workload.payload.data, WorkloadData::Kubernetes(_))).collect();
    let mut deleted = delete(s, &vms).await?;
    s.progress(format!("deleted {} VM(s) of cluster {name}; waiting for their nodes to remove them", deleted.len()));
    let mut gone = wait_gone(s, &deleted).await;
    let network_kept = if !cluster.network_created {
        Some(format!("network {} was there before the cluster, so it stays", cluster.network))
    } else {
        match s.load(&cluster.network).await? {
            None => None,
            Some(network) => match members::remove(s, &network).await {
                Ok(resources) => {
                    let ids: Vec<WorkloadId> = resources.iter().map(|r| r.workload.payload.id.clone()).collect();
                    s.progress(format!("deleted network {}; waiting for its nodes to remove it", cluster.network));
                    gone &= wait_gone(s, &ids).await;
                    deleted.extend(ids);
                    None
                }
                Err(e) => Some(format!("{e:#}")),
            },
        }
    };
    if let Some(why) = network_kept.as_ref().filter(|_| cluster.network_created) {
        eprintln!("warning: network {} is kept: {why}", cluster.network);
    }
    if !gone {
        eprintln!(
            "warning: not every node reported its workloads removed within {} s; see `zgrid live --state deleted`",
            GONE_LIMIT.as_secs()
        );
    }
    let report = Report {
        name: name.to_owned(),
        network: cluster.network.clone(),
        network_deleted: network_kept.is_none(),
        network_kept,
        deleted,
        gone,
    };
    output::report(s.json, &report, || {
        println!("cluster {name} deleted: {} VM(s)", vms.len());
        match &report.network_kept {
            None => println!("network {} deleted", report.network),
            Some(why) => println!("{why}"),
        }
    })
}

/// Send the signed delete of each of `records`.
async fn delete(s: &Session, records: &[&WorkloadRecord]) -> Result<Vec<WorkloadId>> {
    let mut deleted = Vec::new();
    for record in records {
        let id = &record.workload.payload.id;
        s.client.delete_workload(id, s.owner).await.with_context(|| format!("cannot delete workload {id}"))?;
        deleted.push(id.clone());
    }
    Ok(deleted)
}

/// Wait until the node of each of `ids` reports it removed; whether all did in time.
async fn wait_gone(s: &Session, ids: &[WorkloadId]) -> bool {
    let waits = ids.iter().map(|id| async move {
        let deadline = tokio::time::Instant::now() + GONE_LIMIT;
        while tokio::time::Instant::now() < deadline {
            let removed = s
                .client
                .workload(id)
                .await
                .is_ok_and(|r| r.result.as_ref().is_some_and(|res| res.payload.state == ResultState::Deleted));
            if removed {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        false
    });
    futures::future::join_all(waits).await.into_iter().all(|gone| gone)
}
