//! A Pod's status from what the grid says of its container: the node's signed result on the
//! workload (phase, container state, readiness, restarts, the node's own words on failures),
//! or why there is no workload yet.

use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};
use zgrid_types::ResultState;
use zgrid_types::api::{WorkloadRecord, WorkloadState};

/// Prefix of a Pod container's `containerID`: the grid workload behind it.
pub const CONTAINER_ID_PREFIX: &str = "zgrid://";

/// What the provider knows of a Pod's container.
#[derive(Debug, Clone, Copy)]
pub enum Observed<'a> {
    /// No workload yet, and why (a Kubernetes waiting reason such as `ErrImagePull`, and the
    /// cause); the provider tries again.
    Waiting {
        /// Kubernetes' reason word.
        reason: &'a str,
        /// The cause, for people.
        message: &'a str,
    },
    /// The grid cannot run this Pod at all.
    Refused(&'a str),
    /// Its workload, as the explorer has it.
    Workload(&'a WorkloadRecord),
}

/// The workload id a Pod's status names, once the provider made one.
pub fn workload_of(pod: &Pod) -> Option<String> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    let id = statuses.first()?.container_id.as_deref()?;
    id.strip_prefix(CONTAINER_ID_PREFIX).map(str::to_owned)
}

/// Whether the Pod reached a phase it never leaves.
pub fn is_final(pod: &Pod) -> bool {
    matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Failed" | "Succeeded"))
}

/// The status to write for `pod` (a merge patch's `status`), given what was observed and the
/// virtual node's address.
pub fn status(pod: &Pod, observed: Observed<'_>, host_ip: &str) -> Value {
    let name = pod.spec.as_ref().and_then(|s| s.containers.first()).map_or("", |c| c.name.as_str());
    let image = pod.spec.as_ref().and_then(|s| s.containers.first()).and_then(|c| c.image.clone()).unwrap_or_default();
    let mut container = json!({ "name": name, "image": image, "imageID": "", "ready": false, "restartCount": 0 });
    let (phase, ready, pod_ip, reason, message): (&str, bool, Option<String>, Option<&str>, Option<String>);
    match observed {
        Observed::Waiting { reason: why, message: text } => {
            container["state"] = json!({ "waiting": { "reason": why, "message": text } });
            (phase, ready, pod_ip, reason, message) = ("Pending", false, None, Some(why), Some(text.to_owned()));
        }
        Observed::Refused(text) => {
            container["state"] = json!({ "terminated": { "exitCode": 1, "reason": "Unsupported", "message": text } });
            (phase, ready, pod_ip, reason, message) =
                ("Failed", false, None, Some("Unsupported"), Some(text.to_owned()));
        }
        Observed::Workload(record) => {
            let spec = &record.workload.payload;
            container["containerID"] = json!(format!("{CONTAINER_ID_PREFIX}{}", spec.id));
            container["imageID"] = json!(flist_hash(record));
            let ip = container_ip(record);
            let result = record.result.as_ref().map(|r| &r.payload).filter(|r| r.version <= spec.version);
            let restarts = result.and_then(|r| r.data["restarts"].as_u64()).unwrap_or(0);
            container["restartCount"] = json!(restarts);
            match (record.state, result.map(|r| (r.state, r))) {
                (WorkloadState::Active, Some((ResultState::Ok, r))) => {
                    let is_ready = r.data["ready"].as_bool().unwrap_or(true);
                    container["ready"] = json!(is_ready);
                    container["started"] = json!(true);
                    container["state"] = json!({ "running": { "startedAt": rfc3339(r.timestamp) } });
                    (phase, ready, pod_ip, reason, message) = ("Running", is_ready, ip, None, None);
                }
                (WorkloadState::Active, Some((ResultState::Error, r))) if r.data["restarting"] == true => {
                    container["state"] = json!({ "waiting": { "reason": "CrashLoopBackOff", "message": r.message } });
                    (phase, ready, pod_ip, reason, message) = ("Running", false, ip, None, None);
                }
                (WorkloadState::Active, Some((ResultState::Error, r))) => {
                    let text = format!("grid node {}: {}", spec.node_id, r.message);
                    container["state"] = json!({ "terminated": { "exitCode": 1, "reason": "Error", "message": text } });
                    (phase, ready, pod_ip, reason, message) = ("Failed", false, ip, Some("GridError"), Some(text));
                }
                (WorkloadState::Active, other) => {
                    let text = other.map_or("accepted by the explorer", |(_, r)| r.message.as_str());
                    container["state"] = json!({ "waiting": { "reason": "ContainerCreating", "message": text } });
                    (phase, ready, pod_ip, reason, message) = ("Pending", false, None, None, None);
                }
                (gone, _) => {
                    let text = format!("its grid workload {} was {} outside Kubernetes", spec.id, gone.as_str());
                    container["state"] =
                        json!({ "terminated": { "exitCode": 137, "reason": "Error", "message": text } });
                    (phase, ready, pod_ip, reason, message) = ("Failed", false, None, Some("WorkloadGone"), Some(text));
                }
            }
        }
    }
    let mut status = json!({
        "phase": phase,
        "hostIP": host_ip,
        "conditions": conditions(pod, phase, ready),
        "containerStatuses": [container],
        "reason": reason,
        "message": message,
    });
    if let Some(ip) = pod_ip {
        status["podIP"] = json!(ip);
        status["podIPs"] = json!([{ "ip": ip }]);
    }
    status
}

/// The Pod's conditions, keeping each one's transition time while its status stays.
fn conditions(pod: &Pod, phase: &str, ready: bool) -> Value {
    let previous = pod.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    let now = rfc3339(zgrid_types::unix_now());
    let started = phase != "Pending";
    let list = [("PodScheduled", true), ("Initialized", started), ("ContainersReady", ready), ("Ready", ready)];
    list.iter()
        .map(|(kind, on)| {
            let status = if *on { "True" } else { "False" };
            let since = previous
                .iter()
                .find(|c| c.type_ == *kind && c.status == status)
                .and_then(|c| c.last_transition_time.as_ref())
                .map_or_else(|| now.clone(), |t| t.0.to_string());
            json!({ "type": kind, "status": status, "lastTransitionTime": since })
        })
        .collect()
}

fn container_ip(record: &WorkloadRecord) -> Option<String> {
    let zgrid_types::WorkloadData::Container(c) = &record.workload.payload.data else { return None };
    c.network_connection.first().map(|n| n.ipaddress.to_string())
}

fn flist_hash(record: &WorkloadRecord) -> String {
    let zgrid_types::WorkloadData::Container(c) = &record.workload.payload.data else { return String::new() };
    if c.flist_hash.is_empty() { c.flist.clone() } else { format!("flist://{}", c.flist_hash) }
}

/// Unix seconds as Kubernetes writes times.
pub fn rfc3339(unix: i64) -> String {
    k8s_openapi::jiff::Timestamp::from_second(unix).unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH).to_string()
}
