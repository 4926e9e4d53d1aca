//! Clusters as the explorer holds them, with no local state: every workload `zgrid k8s` makes
//! carries a [`Mark`] in its metadata (`{"k8s": {"cluster": ..., "role": ..., "created": ...}}`),
//! so a cluster is the owner's active workloads marked with its name.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use zgrid_types::api::{WorkloadRecord, WorkloadState};
use zgrid_types::{NodeId, ResultState, WorkloadData, WorkloadId};

use crate::cmd::network::Session;
use crate::cmd::submit::Notes;
use crate::output;

/// What a workload is to its cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The VM running the control plane (and a kubelet).
    Master,
    /// A VM that joined the master.
    Worker,
    /// A network resource `zgrid k8s` made for the cluster.
    Network,
}

impl Role {
    /// The role's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Master => "master",
            Self::Worker => "worker",
            Self::Network => "network",
        }
    }
}

/// The mark `zgrid k8s` leaves in the metadata of what it makes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    /// The cluster's name.
    pub cluster: String,
    /// What the workload is to it.
    pub role: Role,
    /// When the cluster was made (Unix time): its secret is derived from it.
    pub created: i64,
    /// Whether `zgrid k8s up` made the cluster's network (so `down` removes it).
    #[serde(default)]
    pub network_created: bool,
}

/// The metadata's JSON: the mark under `k8s`, so other tools can add their own keys.
#[derive(Serialize, Deserialize)]
struct Metadata {
    k8s: Mark,
}

impl Mark {
    /// The mark of `record`, if `zgrid k8s` made it.
    pub fn of(record: &WorkloadRecord) -> Option<Self> {
        serde_json::from_str::<Metadata>(&record.workload.payload.metadata).ok().map(|m| m.k8s)
    }

    /// This mark as another role.
    pub fn as_role(&self, role: Role) -> Self {
        Self { role, ..self.clone() }
    }

    /// The description and metadata of a workload with this mark.
    pub fn notes(&self) -> Notes {
        let what = match self.role {
            Role::Master => "master",
            Role::Worker => "worker",
            Role::Network => "network resource",
        };
        Notes {
            description: format!("Kubernetes {what} of cluster {} (zgrid k8s)", self.cluster),
            metadata: serde_json::to_string(&Metadata { k8s: self.clone() }).expect("a mark serialises"),
        }
    }
}

/// One VM of a cluster.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterVm {
    /// Master or worker.
    pub role: Role,
    /// Its workload.
    pub workload_id: WorkloadId,
    /// Its node.
    pub node_id: NodeId,
    /// Its address in the network.
    pub ip: Ipv4Addr,
    /// Its size.
    pub size: u8,
    /// When its reservation ends.
    pub expires_at: i64,
    /// The node's latest result: `pending`, `ok` or `error: why`.
    pub result: String,
    /// Whether the node reported it running (its guest said it is in the cluster).
    pub ok: bool,
}

impl ClusterVm {
    /// The VM of `record`, a kubernetes workload marked `role`.
    pub fn of(record: &WorkloadRecord, role: Role) -> Option<Self> {
        let spec = &record.workload.payload;
        let WorkloadData::Kubernetes(k) = &spec.data else { return None };
        let ok = record
            .result
            .as_ref()
            .is_some_and(|r| r.payload.state == ResultState::Ok && r.payload.version >= spec.version);
        Some(Self {
            role,
            workload_id: spec.id.clone(),
            node_id: spec.node_id,
            ip: k.ipaddress,
            size: k.size,
            expires_at: spec.expires_at,
            result: output::result(record),
            ok,
        })
    }

    /// How progress and errors name it: `master 10.20.1.2`.
    pub fn label(&self) -> String {
        format!("{} {}", self.role.as_str(), self.ip)
    }

    /// How failures name it: role, address, workload and node.
    pub fn describe(&self) -> String {
        format!("{} {} (workload {} on node {})", self.role.as_str(), self.ip, self.workload_id, self.node_id)
    }
}

/// A cluster: its VMs and the network resources made for it.
#[derive(Debug, Clone, Serialize)]
pub struct Cluster {
    /// Its name.
    pub name: String,
    /// The network its VMs are on.
    pub network: String,
    /// When it was made (Unix time).
    pub created: i64,
    /// Whether `zgrid k8s up` made the network (and `down` removes it).
    pub network_created: bool,
    /// The master, unless it is gone.
    pub master: Option<ClusterVm>,
    /// The workers.
    pub workers: Vec<ClusterVm>,
    /// When the first of its VMs expires.
    pub expires_at: Option<i64>,
    /// Its workloads, VMs and network resources made for it.
    #[serde(skip)]
    pub records: Vec<WorkloadRecord>,
}

impl Cluster {
    /// Every VM, the master first.
    pub fn vms(&self) -> Vec<ClusterVm> {
        self.master.iter().chain(&self.workers).cloned().collect()
    }

    /// The master's record, which the workers copy their image and keys from.
    pub fn master_record(&self) -> Option<&WorkloadRecord> {
        let id = &self.master.as_ref()?.workload_id;
        self.records.iter().find(|r| r.workload.payload.id == *id)
    }

    /// The master, or why there is none.
    pub fn master(&self) -> Result<&ClusterVm> {
        self.master.as_ref().with_context(|| {
            format!(
                "cluster {} has no master (it failed before one was made, or it was deleted): remove the rest with \
                 `zgrid k8s down {}`",
                self.name, self.name
            )
        })
    }
}

/// The clusters in `records` (an owner's workloads), by name: those with a VM, or with the
/// network `up` made for them.
pub fn clusters(records: &[WorkloadRecord]) -> Vec<Cluster> {
    let mut found: BTreeMap<String, Cluster> = BTreeMap::new();
    for record in records.iter().filter(|r| r.state == WorkloadState::Active) {
        let Some(mark) = Mark::of(record) else { continue };
        let network = match &record.workload.payload.data {
            WorkloadData::Kubernetes(k) => k.network_id.clone(),
            WorkloadData::NetworkResource(nr) => nr.name.clone(),
            _ => continue,
        };
        let cluster = found.entry(mark.cluster.clone()).or_insert_with(|| Cluster {
            name: mark.cluster.clone(),
            network,
            created: mark.created,
            network_created: false,
            master: None,
            workers: Vec::new(),
            expires_at: None,
            records: Vec::new(),
        });
        cluster.network_created |= mark.network_created;
        match (mark.role, ClusterVm::of(record, mark.role)) {
            (Role::Master, Some(vm)) => cluster.master = Some(vm),
            (Role::Worker, Some(vm)) => cluster.workers.push(vm),
            _ => {}
        }
        if matches!(mark.role, Role::Master | Role::Worker) {
            let expires = record.workload.payload.expires_at;
            cluster.expires_at = Some(cluster.expires_at.map_or(expires, |e| e.min(expires)));
        }
        cluster.records.push(record.clone());
    }
    // Network resources `up` added to a network it did not make stay after `down`: alone,
    // they are no cluster.
    let mut clusters: Vec<Cluster> =
        found.into_values().filter(|c| c.network_created || c.master.is_some() || !c.workers.is_empty()).collect();
    for cluster in &mut clusters {
        cluster.workers.sort_by_key(|w| w.ip);
    }
    clusters
}

/// The owner's clusters, as the explorer has them now.
pub async fn load_all(s: &Session) -> Result<Vec<Cluster>> {
    let records = s.client.all_workloads(s.owner, Some(WorkloadState::Active.as_str())).await?;
    Ok(clusters(&records))
}

/// The owner's cluster `name`, if there is one.
pub async fn load(s: &Session, name: &str) -> Result<Option<Cluster>> {
    Ok(load_all(s).await?.into_iter().find(|c| c.name == name))
}

/// The owner's cluster `name`, which must exist.
pub async fn existing(s: &Session, name: &str) -> Result<Cluster> {
    load(s, name).await?.with_context(|| {
        format!(
            "you have no cluster {name:?}: list yours with `zgrid k8s ls`, make one with `zgrid k8s up --name {name}`"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::{kubernetes, record};
    use super::*;

    fn mark(cluster: &str, role: Role) -> Mark {
        Mark { cluster: cluster.into(), role, created: 1_700_000_000, network_created: role == Role::Network }
    }

    #[test]
    fn marks_round_trip_through_the_metadata_and_fit_its_limit() {
        let long = Mark { cluster: "k".repeat(64), ..mark("x", Role::Worker) };
        let notes = long.notes();
        assert!(notes.metadata.len() < zgrid_types::workload::MAX_METADATA);
        let value: serde_json::Value = serde_json::from_str(&notes.metadata).unwrap();
        assert_eq!((&value["k8s"]["role"], &value["k8s"]["created"]), (&"worker".into(), &1_700_000_000.into()));
        assert!(notes.description.contains("worker of cluster"));
        let marked = record(1, kubernetes("10.20.1.2", &[]), Some(&long));
        assert_eq!(Mark::of(&marked), Some(long));
        assert_eq!(Mark::of(&record(1, kubernetes("10.20.1.2", &[]), None)), None);
    }

    #[test]
    fn clusters_gather_the_marked_workloads_by_name() {
        let records = vec![
            record(2, kubernetes("10.20.2.2", &["10.20.1.2"]), Some(&mark("kube", Role::Worker))),
            record(1, kubernetes("10.20.1.2", &[]), Some(&mark("kube", Role::Master))),
            record(1, kubernetes("10.20.1.3", &["10.20.1.2"]), Some(&mark("kube", Role::Worker))),
            record(1, super::super::testing::resource("kube"), Some(&mark("kube", Role::Network))),
            record(3, kubernetes("10.30.1.2", &[]), Some(&mark("other", Role::Master))),
            record(3, kubernetes("10.30.1.3", &[]), None),
            // left by `up` in a network it did not make, after `down`
            record(
                3,
                super::super::testing::resource("lab"),
                Some(&Mark { network_created: false, ..mark("left", Role::Network) }),
            ),
        ];
        let found = clusters(&records);
        assert_eq!(found.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["kube", "other"]);
        let kube = &found[0];
        assert_eq!((kube.network.as_str(), kube.created, kube.network_created), ("kube", 1_700_000_000, true));
        assert_eq!(kube.master().unwrap().ip.to_string(), "10.20.1.2");
        let workers: Vec<String> = kube.workers.iter().map(|w| w.ip.to_string()).collect();
        assert_eq!(workers, ["10.20.1.3", "10.20.2.2"]);
        assert_eq!((kube.records.len(), kube.vms().len()), (4, 3));
        assert_eq!(kube.master_record().unwrap().workload.payload.id, kube.master.as_ref().unwrap().workload_id);
        assert!(!found[1].network_created);
        assert_eq!(kube.vms()[0].result, "pending");
        assert!(!kube.vms()[0].ok);
    }
}
