//! The virtual node as Kubernetes sees it: a Node object with the grid's free capacity, the
//! labels and taint that keep ordinary Pods away, and a Lease renewed every few seconds so the
//! control plane knows the provider is alive.

use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use zgrid_types::directory::Capacity;

use super::status::rfc3339;

/// The taint Pods must tolerate to be scheduled here.
pub const TAINT_KEY: &str = "virtual-kubelet.io/provider";
/// How often the Node's status and Lease are renewed.
pub const HEARTBEAT: Duration = Duration::from_secs(10);
/// Pods the virtual node takes at most.
const MAX_PODS: u32 = 110;
/// How long the Lease holds without renewal.
const LEASE_SECONDS: i32 = 40;

/// Who the virtual node is.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Its Node name.
    pub name: String,
    /// The address the API server reaches its kubelet API at.
    pub address: String,
    /// The kubelet API's port.
    pub port: u16,
}

/// Create the Node (or take over one of the same name) and mark it Ready with `free`.
pub async fn register(kube: &kube::Client, me: &Identity, free: &Capacity) -> Result<()> {
    let nodes: Api<Node> = Api::all(kube.clone());
    let node: Node = serde_json::from_value(json!({
        "metadata": {
            "name": me.name,
            "labels": {
                "type": "virtual-kubelet",
                "kubernetes.io/role": "agent",
                "kubernetes.io/hostname": me.name,
                "kubernetes.io/os": "linux",
                "beta.kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
            },
        },
        "spec": { "taints": [{ "key": TAINT_KEY, "value": "zgrid", "effect": "NoSchedule" }] },
    }))?;
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let patch = json!({ "metadata": { "labels": node.metadata.labels }, "spec": node.spec });
            nodes
                .patch(&me.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .with_context(|| format!("cannot update Node {}", me.name))?;
        }
        Err(e) => return Err(e).with_context(|| format!("cannot create Node {}", me.name)),
    }
    heartbeat(kube, me, free).await
}

/// Renew the Node's Ready condition, capacity and Lease.
pub async fn heartbeat(kube: &kube::Client, me: &Identity, free: &Capacity) -> Result<()> {
    let nodes: Api<Node> = Api::all(kube.clone());
    let patch = json!({ "status": node_status(me, free) });
    nodes
        .patch_status(&me.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .with_context(|| format!("cannot update the status of Node {}", me.name))?;
    renew_lease(kube, me).await
}

async fn renew_lease(kube: &kube::Client, me: &Identity) -> Result<()> {
    let leases: Api<Lease> = Api::namespaced(kube.clone(), "kube-node-lease");
    // A MicroTime: the API server takes exactly six fractional digits.
    let now = k8s_openapi::jiff::Timestamp::now();
    let now = format!("{}.{:06}Z", rfc3339(now.as_second()).trim_end_matches('Z'), now.subsec_microsecond());
    let spec = json!({ "holderIdentity": me.name, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": now });
    let patched = leases.patch(&me.name, &PatchParams::default(), &Patch::Merge(&json!({ "spec": spec }))).await;
    match patched {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => {
            let lease: Lease = serde_json::from_value(json!({ "metadata": { "name": me.name }, "spec": spec }))?;
            leases.create(&PostParams::default(), &lease).await.context("cannot create the Node's Lease")?;
            Ok(())
        }
        Err(e) => Err(e).context("cannot renew the Node's Lease"),
    }
}

fn node_status(me: &Identity, free: &Capacity) -> Value {
    let now = rfc3339(zgrid_types::unix_now());
    let resources = json!({
        "cpu": free.cru.to_string(),
        "memory": format!("{}Mi", free.mru),
        "ephemeral-storage": format!("{}Mi", free.sru),
        "pods": MAX_PODS.to_string(),
    });
    let condition = |kind: &str, status: &str, reason: &str, message: &str| {
        json!({ "type": kind, "status": status, "reason": reason, "message": message,
                "lastHeartbeatTime": now, "lastTransitionTime": now })
    };
    json!({
        "capacity": resources,
        "allocatable": resources,
        "conditions": [
            condition("Ready", "True", "KubeletReady", "zgrid provider is ready"),
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "grid capacity as the explorer reports it"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "grid capacity as the explorer reports it"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID", "each grid container has its own limits"),
            condition("NetworkUnavailable", "False", "RouteCreated", "Pods are on the deployer's private network"),
        ],
        // No Hostname address: the API server would try it first, and the Node's name is not
        // a name that resolves.
        "addresses": [{ "type": "InternalIP", "address": me.address }],
        "daemonEndpoints": { "kubeletEndpoint": { "Port": me.port } },
        "nodeInfo": {
            "machineID": "", "systemUUID": "", "bootID": "",
            "kernelVersion": "", "osImage": "zgrid", "operatingSystem": "linux", "architecture": "amd64",
            "containerRuntimeVersion": "zgrid://runc",
            "kubeletVersion": format!("v1.20.2-zgrid-{}", env!("CARGO_PKG_VERSION")),
            "kubeProxyVersion": "",
        },
    })
}
