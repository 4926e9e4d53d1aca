//! Kubernetes VMs: a signed kubernetes workload becomes a VM (see [`super::vm`]) of its size,
//! booted from the grid's Kubernetes image with the deployment's settings in its environment;
//! the image's `zgrid-k8s` (images/kubernetes/zgrid-k8s) makes it a master or joins it to one,
//! and says on the console how that went. The workload is provisioned once the guest said
//! `zgrid-k8s: ready`, and fails with the guest's reason when it said `zgrid-k8s: failed: …`.

use std::collections::BTreeMap;
use std::time::Duration;

use zgrid_types::WorkloadSpec;
use zgrid_types::workload::{ContainerCapacity as Capacity, DiskType, Kubernetes, KubernetesSize, Vm};

use super::Workloads;
use crate::provision::{Health, Progress, ProvisionError};

/// How the guest's `zgrid-k8s` starts its console lines.
const GUEST_PREFIX: &str = "zgrid-k8s: ";

/// What it says when the node is in the cluster.
const READY: &str = "ready";

/// What it says before the reason when it gave up.
const FAILED: &str = "failed: ";

/// How long a Kubernetes VM may take from boot to being a Ready node: minutes under TCG, where
/// the API server alone starts in one or two.
pub(super) const TIME_LIMIT: Duration = Duration::from_secs(40 * 60);

/// Kernel parameters the image's kubelet needs: Kubernetes 1.20 manages cgroups v1.
const KERNEL_ARGS: &str = "systemd.unified_cgroup_hierarchy=0";

/// What the guest said of its node so far.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Still on its way; the stages it reported, oldest first.
    Pending(Vec<String>),
    /// In the cluster.
    Ready,
    /// It gave up, for this reason.
    Failed(String),
}

/// The verdict in what the console printed since the guest's init started.
fn verdict(console: &str) -> Verdict {
    let mut stages = Vec::new();
    for line in console.lines() {
        // The console may show it after a login prompt or the carriage return of another line.
        let Some(said) = line.split_once(GUEST_PREFIX).map(|(_, said)| said.trim_end()) else { continue };
        if said == READY {
            return Verdict::Ready;
        }
        if let Some(reason) = said.strip_prefix(FAILED) {
            return Verdict::Failed(reason.to_owned());
        }
        stages.push(said.to_owned());
    }
    Verdict::Pending(stages)
}

/// The VM that runs Kubernetes workload `k`, with the cluster secret opened as `secret`: its
/// size's resources, the image, the network and keys, and the settings `zgrid-k8s` reads.
fn vm_of(k: &Kubernetes, size: KubernetesSize, secret: String) -> Vm {
    let join = |items: Vec<String>| items.join(",");
    let environment = BTreeMap::from([
        ("ZGRID_K8S_SECRET".to_owned(), secret),
        ("ZGRID_K8S_MASTERS".to_owned(), join(k.master_ips.iter().map(ToString::to_string).collect())),
        ("ZGRID_K8S_DATASTORE".to_owned(), k.datastore_endpoint.clone()),
        ("ZGRID_K8S_REGISTRIES".to_owned(), join(k.registries.clone())),
    ]);
    Vm {
        flist: k.flist.clone(),
        hub_url: k.hub_url.clone(),
        flist_hash: k.flist_hash.clone(),
        capacity: Capacity {
            cpu: size.cpu,
            memory: size.memory_gib * 1024,
            // The table's disks are in GB, as the node's capacity accounting counts them.
            disk_size: size.disk_gb * 1000,
            disk_type: DiskType::Ssd,
        },
        network_id: k.network_id.clone(),
        ipaddress: k.ipaddress,
        ssh_keys: k.ssh_keys.clone(),
        kernel_args: KERNEL_ARGS.to_owned(),
        environment,
        secret_environment: BTreeMap::new(),
        volumes: Vec::new(),
    }
}

impl Workloads {
    /// Boot the Kubernetes VM (or adopt it) and wait until the guest says its node is in the
    /// cluster; report its address, role and accelerator.
    pub(super) async fn provision_kubernetes(
        &self,
        spec: &WorkloadSpec,
        k: &Kubernetes,
        progress: Progress<'_>,
    ) -> Result<serde_json::Value, ProvisionError> {
        let size = KubernetesSize::of(k.size)
            .ok_or_else(|| ProvisionError::Permanent(format!("size: {} is not a VM size", k.size)))?;
        let secret = self.key.unseal_secret(&k.cluster_secret).map_err(|e| {
            ProvisionError::Permanent(format!("cluster_secret: {e}; seal it to this node ({})", spec.node_id))
        })?;
        let mut data = self.provision_vm(spec, &vm_of(k, size, secret), progress).await?;
        let vms = self.vms.as_ref().expect("provision_vm checked that this node runs VMs");
        let id = spec.id.as_str();
        let mut told = 0;
        loop {
            let console = vms.console_since_init(id).map_err(|e| ProvisionError::Transient(e.to_string()))?;
            match verdict(&console) {
                Verdict::Ready => break,
                Verdict::Failed(reason) => return Err(ProvisionError::Permanent(reason)),
                Verdict::Pending(stages) => {
                    for stage in stages.iter().skip(told) {
                        progress(stage);
                    }
                    told = told.max(stages.len());
                }
            }
            if let Health::Stopped(how) = self.vm_health(&spec.id).await {
                return Err(ProvisionError::Transient(format!("the VM stopped before its node joined: {how}")));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        data["role"] = if k.master_ips.is_empty() { "master" } else { "worker" }.into();
        if k.master_ips.is_empty() {
            data["api"] = format!("https://{}:6443", k.ipaddress).into();
        }
        Ok(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guest_verdict_is_its_first_ready_or_failed_line() {
        let booting = "systemd[1]: Starting\nzgrid-k8s: starting etcd\r\nzgrid-k8s: starting the API server\n";
        let stages = vec!["starting etcd".to_owned(), "starting the API server".to_owned()];
        assert_eq!(verdict(booting), Verdict::Pending(stages));
        assert_eq!(verdict(&format!("{booting}[  OK  ] x\rzgrid-k8s: ready\n")), Verdict::Ready);
        let refused = "zgrid-k8s: failed: the master at 10.1.2.2 does not know this cluster secret\n";
        assert_eq!(
            verdict(refused),
            Verdict::Failed("the master at 10.1.2.2 does not know this cluster secret".to_owned())
        );
        assert_eq!(verdict("vm login: \rzgrid-k8s: ready\r\n"), Verdict::Ready);
    }

    #[test]
    fn the_vm_has_the_size_and_the_settings_of_the_deployment() {
        let k = Kubernetes {
            size: 2,
            flist: "https://hub.example/me/zgrid-kubernetes.flist".into(),
            hub_url: String::new(),
            flist_hash: String::new(),
            network_id: "kube".into(),
            ipaddress: "10.1.3.2".parse().unwrap(),
            cluster_secret: "v1:sealed".into(),
            master_ips: vec!["10.1.2.2".parse().unwrap(), "10.1.4.2".parse().unwrap()],
            ssh_keys: vec![],
            datastore_endpoint: String::new(),
            disable_default_ingress: true,
            registries: vec!["10.1.2.9:5000".into()],
        };
        let vm = vm_of(&k, KubernetesSize::of(2).unwrap(), "open".into());
        assert_eq!((vm.capacity.cpu, vm.capacity.memory), (2, 4096));
        assert_eq!(vm.environment["ZGRID_K8S_MASTERS"], "10.1.2.2,10.1.4.2");
        assert_eq!(vm.environment["ZGRID_K8S_SECRET"], "open");
        assert_eq!(vm.environment["ZGRID_K8S_REGISTRIES"], "10.1.2.9:5000");
        assert!(vm.kernel_args.contains("systemd.unified_cgroup_hierarchy=0"));
    }
}
