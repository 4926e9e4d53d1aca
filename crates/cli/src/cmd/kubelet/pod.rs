//! What a Pod asks of the grid: one container's image, command, environment and resources,
//! and where it may run. Whatever a grid container cannot honour is refused here with a reason
//! the Pod's status shows, before anything is made.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container as PodContainer, Pod, Probe as PodProbe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use zgrid_types::workload::{Probe, ProbeAction, Probes};

/// Annotation naming the grid node a Pod must run on.
pub const NODE_ANNOTATION: &str = "zgrid.io/node";
/// Annotation naming the farm a Pod must run in.
pub const FARM_ANNOTATION: &str = "zgrid.io/farm";
/// Annotation naming the country a Pod must run in.
pub const COUNTRY_ANNOTATION: &str = "zgrid.io/country";

/// Memory a container gets when its Pod asks for none, MiB.
const DEFAULT_MEMORY_MIB: u64 = 256;
/// Writable root filesystem a container gets when its Pod asks for no ephemeral storage, MiB.
const DEFAULT_DISK_MIB: u64 = 256;
/// Size of an `emptyDir` volume without a `sizeLimit`, MiB.
const DEFAULT_EMPTY_DIR_MIB: u64 = 256;
/// Where Kubernetes mounts a Pod's service account token; the grid container has no way to
/// reach the API server, so the volume is left out rather than refused.
const SERVICE_ACCOUNT_MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// A Pod's one container as the grid runs it, before its image is resolved and its
/// environment references are read.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The container's name in the Pod.
    pub name: String,
    /// The `image` field: an flist URL, a node-local path, or a name on the hub.
    pub image: String,
    /// Program and arguments, shell-quoted; empty: the image's default.
    pub entrypoint: String,
    /// Plain environment variables.
    pub environment: BTreeMap<String, String>,
    /// Variables read from Secrets (sealed to the node) or ConfigMaps.
    pub references: Vec<EnvReference>,
    /// CPUs (whole, at least 1).
    pub cpu: u32,
    /// Memory, MiB.
    pub memory: u64,
    /// Writable root filesystem, MiB.
    pub disk: u64,
    /// Where the Pod may run.
    pub placement: Placement,
    /// Readiness and liveness probes, run by the grid node.
    pub probes: Probes,
    /// `emptyDir` volumes, each a grid volume on the container's node.
    pub volumes: Vec<ScratchVolume>,
}

impl Plan {
    /// Disk the container and its volumes take on the node, MiB.
    pub fn disk_needed(&self) -> u64 {
        self.disk + self.volumes.iter().map(|v| v.size).sum::<u64>()
    }
}

/// An `emptyDir` volume of the Pod and where the container mounts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScratchVolume {
    /// Its name in the Pod.
    pub name: String,
    /// Size, MiB (its `sizeLimit`, else the default).
    pub size: u64,
    /// Where the container mounts it.
    pub mount_path: String,
}

/// An environment variable whose value lives in a Secret or a ConfigMap of the Pod's namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvReference {
    /// The variable.
    pub variable: String,
    /// Where its value is.
    pub source: RefSource,
    /// The Secret or ConfigMap.
    pub object: String,
    /// The key in it.
    pub key: String,
    /// Whether a missing object or key leaves the variable out instead of holding the Pod.
    pub optional: bool,
}

/// Kinds of object an environment variable may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefSource {
    /// A Secret: the value is sealed to the node.
    Secret,
    /// A ConfigMap: the value is plain.
    ConfigMap,
}

/// Constraints on the grid node, from the Pod's annotations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    /// Exactly this node.
    pub node: Option<String>,
    /// A node of this farm.
    pub farm: Option<u64>,
    /// A node in this country (case-insensitive).
    pub country: Option<String>,
}

/// Why a Pod cannot become a grid container, as the Pod's status says it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

fn refuse<T>(why: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal(why.into()))
}

/// The grid container `pod` asks for, or why there cannot be one.
pub fn plan(pod: &Pod) -> Result<Plan, Refusal> {
    let Some(spec) = &pod.spec else { return refuse("the Pod has no spec") };
    let [container] = spec.containers.as_slice() else {
        return refuse(format!(
            "the Pod has {} containers; a grid Pod runs exactly one (sidecars are not supported)",
            spec.containers.len()
        ));
    };
    if spec.init_containers.as_ref().is_some_and(|c| !c.is_empty()) {
        return refuse("init containers are not supported on the grid");
    }
    if let Some(policy) = spec.restart_policy.as_deref().filter(|p| *p != "Always") {
        return refuse(format!(
            "restartPolicy {policy} is not supported: grid containers are restarted whenever they stop (use Always)"
        ));
    }
    if spec.host_network == Some(true) || spec.host_pid == Some(true) || spec.host_ipc == Some(true) {
        return refuse("hostNetwork, hostPID and hostIPC are not available on the grid");
    }
    let volumes = scratch_volumes(spec, container)?;
    check_container(container)?;
    let annotations = pod.metadata.annotations.clone().unwrap_or_default();
    let farm = match annotations.get(FARM_ANNOTATION) {
        Some(f) => {
            Some(f.parse().map_err(|_| Refusal(format!("annotation {FARM_ANNOTATION}={f:?} is not a farm id")))?)
        }
        None => None,
    };
    let placement = Placement {
        node: annotations.get(NODE_ANNOTATION).cloned(),
        farm,
        country: annotations.get(COUNTRY_ANNOTATION).cloned(),
    };
    let (environment, references) = environment(container)?;
    let resources = container.resources.as_ref();
    let pick = |name: &'static str| {
        let limit = resources.and_then(|r| r.limits.as_ref()).and_then(|l| l.get(name));
        let request = resources.and_then(|r| r.requests.as_ref()).and_then(|l| l.get(name));
        limit.or(request).map(|q| (name, q.0.as_str()))
    };
    let cpu = match pick("cpu") {
        Some((name, q)) => (quantity(name, q)?.ceil() as u32).max(1),
        None => 1,
    };
    let mebibytes = |name: &'static str, default: u64| -> Result<u64, Refusal> {
        match pick(name) {
            Some((name, q)) => Ok((quantity(name, q)? / f64::from(1u32 << 20)).ceil() as u64),
            None => Ok(default),
        }
    };
    let memory = mebibytes("memory", DEFAULT_MEMORY_MIB)?.max(zgrid_types::workload::MIN_MEMORY_MIB);
    let disk = mebibytes("ephemeral-storage", DEFAULT_DISK_MIB)?.max(zgrid_types::workload::MIN_DISK_MIB);
    let Some(image) = container.image.clone().filter(|i| !i.is_empty()) else {
        return refuse(format!("container {:?} names no image", container.name));
    };
    Ok(Plan {
        name: container.name.clone(),
        image,
        entrypoint: entrypoint(container)?,
        environment,
        references,
        cpu,
        memory,
        disk,
        placement,
        volumes,
        probes: Probes {
            readiness: container.readiness_probe.as_ref().map(|p| probe(container, "readinessProbe", p)).transpose()?,
            liveness: container.liveness_probe.as_ref().map(|p| probe(container, "livenessProbe", p)).transpose()?,
        },
    })
}

/// A Kubernetes probe as the grid node runs it.
fn probe(c: &PodContainer, field: &str, p: &PodProbe) -> Result<Probe, Refusal> {
    let named = |what: String| Refusal(format!("container {:?}: {field}: {what}", c.name));
    let port = |port: &IntOrString| match port {
        IntOrString::Int(n) => {
            u16::try_from(*n).ok().filter(|n| *n != 0).ok_or_else(|| named(format!("port {n} is not a port")))
        }
        IntOrString::String(name) => c
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .ok_or_else(|| named(format!("no container port is named {name:?}"))),
    };
    let action = if let Some(t) = &p.tcp_socket {
        if t.host.as_ref().is_some_and(|h| !h.is_empty()) {
            return Err(named("host is not supported: the node probes the container itself".into()));
        }
        ProbeAction::TcpSocket { port: port(&t.port)? }
    } else if let Some(h) = &p.http_get {
        if h.host.as_ref().is_some_and(|h| !h.is_empty()) || h.scheme.as_deref().is_some_and(|s| s != "HTTP") {
            return Err(named("only plain HTTP to the container itself is supported (no host, no HTTPS)".into()));
        }
        if h.http_headers.as_ref().is_some_and(|h| !h.is_empty()) {
            return Err(named("httpHeaders are not supported".into()));
        }
        ProbeAction::HttpGet { port: port(&h.port)?, path: h.path.clone().unwrap_or_else(|| "/".into()) }
    } else if let Some(e) = &p.exec {
        ProbeAction::Exec { command: e.command.clone().unwrap_or_default() }
    } else {
        return Err(named("only tcpSocket, httpGet and exec probes are supported".into()));
    };
    let seconds = |value: Option<i32>, default: u32| value.and_then(|v| u32::try_from(v).ok()).unwrap_or(default);
    let defaults = Probe::new(action);
    Ok(Probe {
        initial_delay_seconds: seconds(p.initial_delay_seconds, defaults.initial_delay_seconds),
        period_seconds: seconds(p.period_seconds, defaults.period_seconds),
        timeout_seconds: seconds(p.timeout_seconds, defaults.timeout_seconds),
        failure_threshold: seconds(p.failure_threshold, defaults.failure_threshold),
        success_threshold: seconds(p.success_threshold, defaults.success_threshold),
        ..defaults
    })
}

/// The Pod's `emptyDir` volumes with where the container mounts them; the service account
/// token is left out; other volumes and mount options are refused.
fn scratch_volumes(
    spec: &k8s_openapi::api::core::v1::PodSpec,
    c: &PodContainer,
) -> Result<Vec<ScratchVolume>, Refusal> {
    let mut out = Vec::new();
    for m in c.volume_mounts.iter().flatten() {
        let Some(v) = spec.volumes.iter().flatten().find(|v| v.name == m.name) else {
            return refuse(format!("volume mount {:?} names no volume of the Pod", m.name));
        };
        if m.mount_path == SERVICE_ACCOUNT_MOUNT || is_service_account_token(v) {
            continue;
        }
        let Some(empty) = &v.empty_dir else {
            return refuse(format!("volume {:?}: only emptyDir volumes are supported on the grid", v.name));
        };
        if empty.medium.as_deref().is_some_and(|m| !m.is_empty()) {
            return refuse(format!(
                "volume {:?}: emptyDir medium {:?} is not supported (only disk)",
                v.name, empty.medium
            ));
        }
        if m.sub_path.as_ref().is_some_and(|p| !p.is_empty()) || m.read_only == Some(true) {
            return refuse(format!("volume mount {:?}: subPath and readOnly are not supported on the grid", m.name));
        }
        let size = match &empty.size_limit {
            Some(q) => (quantity("sizeLimit", &q.0)? / f64::from(1u32 << 20)).ceil().max(1.0) as u64,
            None => DEFAULT_EMPTY_DIR_MIB,
        };
        out.push(ScratchVolume { name: v.name.clone(), size, mount_path: m.mount_path.clone() });
    }
    Ok(out)
}

/// The volume the ServiceAccount admission plugin adds (a Secret named `<account>-token-…`
/// in 1.20, a projected volume later).
fn is_service_account_token(v: &k8s_openapi::api::core::v1::Volume) -> bool {
    v.projected.is_some() && v.name.starts_with("kube-api-access-")
        || v.secret.as_ref().and_then(|s| s.secret_name.as_deref()).is_some_and(|n| n.contains("-token-"))
}

/// Refuse the container fields a grid container cannot honour.
fn check_container(c: &PodContainer) -> Result<(), Refusal> {
    let named = |what: &str| format!("container {:?}: {what}", c.name);
    if c.ports.iter().flatten().any(|p| p.host_port.is_some_and(|h| h != 0)) {
        return refuse(named("hostPort is not available on the grid; reach the Pod at its IP on the private network"));
    }
    if c.env_from.as_ref().is_some_and(|e| !e.is_empty()) {
        return refuse(named("envFrom is not supported yet; list the variables under env with valueFrom"));
    }
    if c.security_context.as_ref().is_some_and(|s| s.privileged == Some(true)) {
        return refuse(named("privileged containers are not available on the grid"));
    }
    if c.lifecycle.is_some() || c.startup_probe.is_some() {
        return refuse(named("lifecycle hooks and startup probes are not supported yet"));
    }
    if c.stdin == Some(true) || c.tty == Some(true) {
        return refuse(named("stdin and tty are not supported; use `kubectl exec -it` instead"));
    }
    Ok(())
}

/// `command` and `args` as one shell-quoted entrypoint.
fn entrypoint(c: &PodContainer) -> Result<String, Refusal> {
    let command = c.command.clone().unwrap_or_default();
    let args = c.args.clone().unwrap_or_default();
    if command.is_empty() && !args.is_empty() {
        return refuse(format!(
            "container {:?}: args without command: the grid cannot add arguments to an image's default \
             entrypoint; give the whole command",
            c.name
        ));
    }
    let words: Vec<&str> = command.iter().chain(&args).map(String::as_str).collect();
    shlex::try_join(words).map_err(|e| Refusal(format!("container {:?}: command: {e}", c.name)))
}

/// Plain variables, and those to read from Secrets and ConfigMaps.
fn environment(c: &PodContainer) -> Result<(BTreeMap<String, String>, Vec<EnvReference>), Refusal> {
    let mut plain = BTreeMap::new();
    let mut references = Vec::new();
    for var in c.env.iter().flatten() {
        let Some(from) = &var.value_from else {
            plain.insert(var.name.clone(), var.value.clone().unwrap_or_default());
            continue;
        };
        let reference = |source, object: &str, key: &str, optional: Option<bool>| EnvReference {
            variable: var.name.clone(),
            source,
            object: object.to_owned(),
            key: key.to_owned(),
            optional: optional.unwrap_or(false),
        };
        if let Some(s) = &from.secret_key_ref {
            references.push(reference(RefSource::Secret, &s.name, &s.key, s.optional));
        } else if let Some(m) = &from.config_map_key_ref {
            references.push(reference(RefSource::ConfigMap, &m.name, &m.key, m.optional));
        } else {
            return refuse(format!(
                "env {}: only value, secretKeyRef and configMapKeyRef are supported on the grid",
                var.name
            ));
        }
    }
    Ok((plain, references))
}

/// A Kubernetes quantity (`128Mi`, `1G`, `500m`, `2`) as a number of units.
pub fn quantity(name: &str, text: &str) -> Result<f64, Refusal> {
    let bad = || Refusal(format!("resource {name}: {text:?} is not a quantity (write it like 512Mi, 2Gi or 500m)"));
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-')).unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| bad())?;
    let factor = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exponent if exponent.starts_with(['e', 'E']) => 10f64.powi(exponent[1..].parse::<i32>().map_err(|_| bad())?),
        _ => return Err(bad()),
    };
    let value = number * factor;
    if !value.is_finite() || value < 0.0 {
        return Err(bad());
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    fn one(container: serde_json::Value) -> Pod {
        pod(serde_json::json!({ "metadata": { "name": "p" }, "spec": { "containers": [container] } }))
    }

    #[test]
    fn quantities_read_like_kubernetes() {
        assert_eq!(quantity("memory", "128Mi").unwrap(), 128.0 * 1024.0 * 1024.0);
        assert_eq!(quantity("memory", "1G").unwrap(), 1e9);
        assert_eq!(quantity("cpu", "500m").unwrap(), 0.5);
        assert_eq!(quantity("cpu", "2").unwrap(), 2.0);
        assert_eq!(quantity("memory", "1e3").unwrap(), 1000.0);
        let bad = quantity("memory", "12 parsecs").unwrap_err().to_string();
        assert!(bad.contains("resource memory") && bad.contains("512Mi"), "{bad}");
    }

    #[test]
    fn a_deployments_container_becomes_a_plan_with_its_resources_command_and_environment() {
        let p = one(serde_json::json!({
            "name": "web",
            "image": "https://hub.example/flists/me/web.flist",
            "command": ["sh", "-c"],
            "args": ["echo 'hi there' && sleep 1d"],
            "env": [
                { "name": "PLAIN", "value": "1" },
                { "name": "TOKEN", "valueFrom": { "secretKeyRef": { "name": "creds", "key": "token" } } },
                { "name": "MODE", "valueFrom": { "configMapKeyRef": { "name": "cfg", "key": "mode", "optional": true } } }
            ],
            "resources": { "requests": { "cpu": "250m", "memory": "100Mi" }, "limits": { "memory": "1Gi" } },
            "ports": [{ "name": "web", "containerPort": 8080 }],
            "readinessProbe": { "tcpSocket": { "port": "web" }, "periodSeconds": 2 },
            "livenessProbe": { "httpGet": { "port": 8080, "path": "/healthz" }, "failureThreshold": 5 }
        }));
        let plan = plan(&p).unwrap();
        // The node splits the entrypoint back into exactly the Pod's words.
        assert_eq!(shlex::split(&plan.entrypoint).unwrap(), ["sh", "-c", "echo 'hi there' && sleep 1d"]);
        assert_eq!((plan.cpu, plan.memory, plan.disk), (1, 1024, DEFAULT_DISK_MIB));
        assert_eq!(plan.environment, BTreeMap::from([("PLAIN".into(), "1".into())]));
        assert_eq!(plan.references.len(), 2);
        assert_eq!(plan.references[0].source, RefSource::Secret);
        assert!(plan.references[1].optional);
        let readiness = plan.probes.readiness.unwrap();
        assert_eq!((readiness.action, readiness.period_seconds), (ProbeAction::TcpSocket { port: 8080 }, 2));
        let liveness = plan.probes.liveness.unwrap();
        assert_eq!(liveness.action, ProbeAction::HttpGet { port: 8080, path: "/healthz".into() });
        assert_eq!((liveness.failure_threshold, liveness.period_seconds), (5, 10));
    }

    #[test]
    fn what_a_grid_container_cannot_do_is_refused_saying_why() {
        let two = pod(serde_json::json!({ "metadata": { "name": "p" }, "spec": { "containers": [
            { "name": "a", "image": "x" }, { "name": "b", "image": "y" }
        ] } }));
        assert!(plan(&two).unwrap_err().0.contains("sidecars are not supported"));
        let cases = [
            (serde_json::json!({ "name": "a", "image": "x", "args": ["-v"] }), "give the whole command"),
            (
                serde_json::json!({ "name": "a", "image": "x", "ports": [{ "containerPort": 80, "hostPort": 80 }] }),
                "hostPort",
            ),
            (serde_json::json!({ "name": "a" }), "names no image"),
            (
                serde_json::json!({ "name": "a", "image": "x", "resources": { "limits": { "memory": "lots" } } }),
                "not a quantity",
            ),
            (
                serde_json::json!({ "name": "a", "image": "x", "env": [{ "name": "N", "valueFrom": { "fieldRef": { "fieldPath": "status.podIP" } } }] }),
                "only value, secretKeyRef",
            ),
            (
                serde_json::json!({ "name": "a", "image": "x", "livenessProbe": { "tcpSocket": { "port": "nope" } } }),
                "no container port is named \"nope\"",
            ),
        ];
        for (container, why) in cases {
            let refused = plan(&one(container.clone())).unwrap_err().0;
            assert!(refused.contains(why), "{container}: {refused}");
        }
    }

    #[test]
    fn the_service_account_token_volume_is_left_out_and_placement_annotations_are_read() {
        let p = pod(serde_json::json!({
            "metadata": { "name": "p", "annotations": { "zgrid.io/farm": "3", "zgrid.io/country": "BE" } },
            "spec": {
                "containers": [{ "name": "a", "image": "x", "volumeMounts": [
                    { "name": "default-token-abcde", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount" }
                ] }],
                "volumes": [{ "name": "default-token-abcde", "secret": { "secretName": "default-token-abcde" } }]
            }
        }));
        let plan = plan(&p).unwrap();
        assert_eq!(plan.placement, Placement { node: None, farm: Some(3), country: Some("BE".into()) });
        assert!(plan.volumes.is_empty());
    }

    #[test]
    fn empty_dirs_become_grid_volumes_and_other_volumes_are_refused() {
        let with = |volume: serde_json::Value, mount: serde_json::Value| {
            pod(serde_json::json!({ "metadata": { "name": "p" }, "spec": {
                "containers": [{ "name": "a", "image": "x", "volumeMounts": [mount] }],
                "volumes": [volume]
            } }))
        };
        let scratch = with(
            serde_json::json!({ "name": "s", "emptyDir": { "sizeLimit": "64Mi" } }),
            serde_json::json!({ "name": "s", "mountPath": "/scratch" }),
        );
        let plan = plan(&scratch).unwrap();
        assert_eq!(plan.volumes, [ScratchVolume { name: "s".into(), size: 64, mount_path: "/scratch".into() }]);
        assert_eq!(plan.disk_needed(), DEFAULT_DISK_MIB + 64);
        let host = with(
            serde_json::json!({ "name": "h", "hostPath": { "path": "/etc" } }),
            serde_json::json!({ "name": "h", "mountPath": "/host" }),
        );
        assert!(super::plan(&host).unwrap_err().0.contains("only emptyDir"));
        let memory = with(
            serde_json::json!({ "name": "m", "emptyDir": { "medium": "Memory" } }),
            serde_json::json!({ "name": "m", "mountPath": "/m" }),
        );
        assert!(super::plan(&memory).unwrap_err().0.contains("medium"));
    }
}
