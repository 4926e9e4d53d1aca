//! Test support (feature `testing`): proptest strategies for valid signed workloads with every
//! optional field filled in, and a JSON mutator that changes one field at a time.
//!
//! Tests of every component that verifies workloads (this crate, the explorer, the node) use the
//! same generator, so "changing any field breaks the signature" is checked the same way in each.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use serde_json::Value;

use crate::ids::WorkloadId;
use crate::workload::*;

fn wg_key() -> impl Strategy<Value = String> {
    any::<[u8; 32]>().prop_map(|b| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(b)
    })
}

fn name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_-]{0,15}"
}

fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 .,:/-]{1,40}"
}

fn disk_type() -> impl Strategy<Value = DiskType> {
    prop_oneof![Just(DiskType::Hdd), Just(DiskType::Ssd)]
}

/// One to two volume mounts at distinct mountpoints.
fn mounts() -> impl Strategy<Value = Vec<VolumeMount>> {
    vec((any::<u64>(), "/[a-z]{1,8}"), 1..3).prop_map(|vols| {
        vols.into_iter()
            .enumerate()
            .map(|(i, (id, m))| VolumeMount { volume_id: WorkloadId::from_u64(id), mountpoint: format!("{m}{i}") })
            .collect()
    })
}

/// A probe doing `action` with any valid timing (a success threshold of 1 when `liveness`).
fn probe(action: impl Strategy<Value = ProbeAction>, liveness: bool) -> impl Strategy<Value = Probe> {
    (action, 0u32..=3600, 1u32..=3600, 1u32..=100, 1u32..=100).prop_flat_map(
        move |(action, initial_delay_seconds, period_seconds, failure_threshold, success)| {
            (1..=period_seconds).prop_map(move |timeout_seconds| Probe {
                action: action.clone(),
                initial_delay_seconds,
                period_seconds,
                timeout_seconds,
                failure_threshold,
                success_threshold: if liveness { 1 } else { success },
            })
        },
    )
}

/// A readiness probe of any kind and an exec liveness probe.
fn probes() -> impl Strategy<Value = Probes> {
    let readiness = prop_oneof![
        (1u16..).prop_map(|port| ProbeAction::TcpSocket { port }),
        (1u16.., "/[a-z0-9?=]{0,20}").prop_map(|(port, path)| ProbeAction::HttpGet { port, path }),
    ];
    let liveness = vec("[a-z/]{1,10}", 1..4).prop_map(|command| ProbeAction::Exec { command });
    (probe(readiness, false), probe(liveness, true)).prop_map(|(r, l)| Probes { readiness: Some(r), liveness: Some(l) })
}

fn container(node: crate::NodeId) -> impl Strategy<Value = Container> {
    (
        (
            text(),
            btree_map("[A-Z][A-Z0-9_]{0,8}", text(), 1..4),
            text().prop_map(move |secret| crate::sealed::seal_secret(&node, &secret)),
            text(),
            any::<bool>(),
        ),
        (mounts(), (1u32..64, 32u64..65536, 64u64..1 << 20, disk_type())),
        (name(), 2u8..255, any::<bool>(), any::<bool>(), name()),
        probes(),
    )
        .prop_map(move |((flist, environment, secret, entrypoint, interactive), (volumes, cap), net, probes)| {
            let secret_environment: BTreeMap<_, _> =
                environment.keys().map(|k| (format!("SECRET_{k}"), secret.clone())).collect();
            let (network_id, host, public_ipv6, yggdrasil_ip, channel) = net;
            Container {
                flist: format!("https://hub.example/{}.flist", flist.replace(' ', "_")),
                hub_url: "https://hub.example/".into(),
                flist_hash: String::new(),
                environment,
                secret_environment,
                entrypoint,
                interactive,
                volumes,
                capacity: ContainerCapacity { cpu: cap.0, memory: cap.1, disk_size: cap.2, disk_type: cap.3 },
                network_connection: vec![NetworkConnection {
                    network_id,
                    ipaddress: Ipv4Addr::new(10, 20, 1, host),
                    public_ipv6,
                    yggdrasil_ip,
                }],
                logs: vec![LogEndpoint::Redis(RedisLogs {
                    stdout: format!("redis://10.20.1.9:6379/{channel}-out"),
                    stderr: format!("redis://10.20.1.9:6379/{channel}-err"),
                    secret_stdout: crate::sealed::seal_secret(&node, &format!("redis://10.20.1.9:6379/{channel}-o")),
                    secret_stderr: crate::sealed::seal_secret(&node, &format!("redis://10.20.1.9:6379/{channel}-e")),
                })],
                stats: vec![StatsEndpoint::Redis(RedisStats {
                    endpoint: format!("redis://10.20.1.9:6379/{channel}-stats"),
                })],
                probes,
                open_ports: if public_ipv6 {
                    vec![
                        OpenPort { port: 8000 + u16::from(host), protocol: Protocol::Tcp },
                        OpenPort { port: 53, protocol: Protocol::Udp },
                    ]
                } else {
                    vec![]
                },
            }
        })
}

fn network_resource(node: crate::NodeId) -> impl Strategy<Value = NetworkResource> {
    (
        name(),
        1u8..=250,
        any::<[u8; 32]>().prop_map(move |key| hex::encode(crate::sealed::seal(&node, &key))),
        wg_key(),
        1u16..,
        vec((wg_key(), 1u16.., any::<bool>()), 1..3),
        any::<bool>(),
    )
        .prop_map(|(name, b, secret, public, port, peers, egress)| {
            let network: ipnet::Ipv4Net = "10.20.0.0/16".parse().unwrap();
            let peers = peers
                .into_iter()
                .enumerate()
                .map(|(i, (key, port, endpoint))| Peer {
                    public_key: key,
                    endpoint: if endpoint { format!("192.0.2.{}:{port}", i + 1) } else { String::new() },
                    iprange: format!("10.20.{}.0/24", 251 + i).parse().unwrap(),
                    allowed_iprange: vec![format!("100.64.20.{}/32", 251 + i).parse().unwrap()],
                })
                .collect();
            NetworkResource {
                name,
                network_iprange: network,
                iprange: format!("10.20.{b}.0/24").parse().unwrap(),
                wireguard_private_key_encrypted: secret,
                wireguard_public_key: public,
                wireguard_listen_port: port,
                peers,
                egress,
            }
        })
}

fn volume() -> impl Strategy<Value = Volume> {
    (1u64..1 << 20, disk_type()).prop_map(|(size, disk_type)| Volume { size, disk_type })
}

fn kubernetes() -> impl Strategy<Value = Kubernetes> {
    (1u8..=18, name(), 2u8..200, text(), vec(200u8..255, 0..3), vec("[A-Za-z0-9+/]{20,40}", 1..3)).prop_map(
        |(size, network_id, host, secret, masters, keys)| Kubernetes {
            size,
            flist: "https://hub.example/me/zgrid-kubernetes.flist".into(),
            hub_url: String::new(),
            flist_hash: String::new(),
            network_id,
            ipaddress: Ipv4Addr::new(10, 20, 1, host),
            cluster_secret: secret,
            ssh_keys: keys.into_iter().map(|k| format!("ssh-ed25519 {k} me@laptop")).collect(),
            // A master's setting.
            datastore_endpoint: if masters.is_empty() { "http://10.20.3.4:2379".into() } else { String::new() },
            master_ips: masters.into_iter().map(|m| Ipv4Addr::new(10, 20, 2, m)).collect(),
            disable_default_ingress: true,
            registries: vec!["10.20.1.9:5000".into()],
        },
    )
}

fn vm(node: crate::NodeId) -> impl Strategy<Value = Vm> {
    (
        (text(), any::<[u8; 32]>(), btree_map("[A-Z][A-Z0-9_]{0,8}", text(), 1..4), text()),
        (1u32..64, 256u64..65536, 64u64..1 << 20, disk_type()),
        (name(), 2u8..255, vec("[A-Za-z0-9+/]{20,40}", 1..3), "opt_[a-z]{1,8}=[a-z0-9]{1,8}"),
        mounts(),
    )
        .prop_map(
            move |((flist, hash, environment, secret), cap, (network_id, host, keys, kernel_args), volumes)| Vm {
                flist: format!("https://hub.example/{}.flist", flist.replace(' ', "_")),
                hub_url: "https://hub.example/".into(),
                flist_hash: blake3::hash(&hash).to_hex().to_string(),
                capacity: ContainerCapacity { cpu: cap.0, memory: cap.1, disk_size: cap.2, disk_type: cap.3 },
                network_id,
                ipaddress: Ipv4Addr::new(10, 20, 1, host),
                ssh_keys: keys.into_iter().map(|k| format!("ssh-ed25519 {k} me@laptop")).collect(),
                kernel_args: format!("quiet {kernel_args}"),
                secret_environment: environment
                    .keys()
                    .map(|k| (format!("SECRET_{k}"), crate::sealed::seal_secret(&node, &secret)))
                    .collect(),
                environment,
                volumes,
            },
        )
}

/// Any workload data for `node`, of every kind, with every optional field set (secrets sealed
/// to `node`).
pub fn workload_data(node: crate::NodeId) -> impl Strategy<Value = WorkloadData> {
    prop_oneof![
        network_resource(node).prop_map(WorkloadData::NetworkResource),
        container(node).prop_map(WorkloadData::Container),
        volume().prop_map(WorkloadData::Volume),
        kubernetes().prop_map(WorkloadData::Kubernetes),
        vm(node).prop_map(WorkloadData::Vm),
    ]
}

/// A valid spec (expiring after `now`) owned by user `owner` with key `owner_key`, for `node`,
/// with every field set.
pub fn workload_spec(
    owner: u64,
    owner_key: crate::PublicKey,
    node: crate::NodeId,
    now: i64,
) -> impl Strategy<Value = WorkloadSpec> {
    (any::<u64>(), 1u32..1000, 60i64..10_000_000, text(), text(), workload_data(node)).prop_map(
        move |(id, version, ttl, description, metadata, data)| WorkloadSpec {
            id: WorkloadId::from_u64(id),
            version,
            owner,
            owner_key,
            node_id: node,
            expires_at: now + ttl,
            description,
            metadata,
            data,
        },
    )
}

/// Every single-field change of a JSON document, each with the path it changed: each scalar
/// altered (numbers +1, booleans flipped, strings with their last character changed), each
/// object key removed, each array shortened and lengthened.
pub fn mutations(doc: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    mutate_at(doc, String::new(), &mut |path, replacement| {
        out.push((path.clone(), replace_at(doc, &path, replacement)));
    });
    out
}

/// Where a mutation applies: `None` removes the value at the path, `Some` replaces it.
type Replacement = Option<Value>;

fn mutate_at(value: &Value, path: String, emit: &mut dyn FnMut(String, Replacement)) {
    match value {
        Value::Null => emit(path, Some(Value::Bool(true))),
        Value::Bool(b) => emit(path, Some(Value::Bool(!b))),
        Value::Number(n) => {
            let changed = n.as_u64().map(|u| Value::from(u.wrapping_add(1))).unwrap_or_else(|| {
                n.as_i64()
                    .map(|i| Value::from(i.wrapping_add(1)))
                    .unwrap_or_else(|| Value::from(n.as_f64().unwrap_or(0.0) + 1.0))
            });
            emit(path, Some(changed));
        }
        Value::String(s) => emit(path, Some(Value::String(change_last_char(s)))),
        Value::Array(items) => {
            if let Some(last) = items.last() {
                let mut longer = items.clone();
                longer.push(last.clone());
                emit(path.clone(), Some(Value::Array(longer)));
                emit(path.clone(), Some(Value::Array(items[..items.len() - 1].to_vec())));
            }
            for (i, item) in items.iter().enumerate() {
                mutate_at(item, format!("{path}[{i}]"), emit);
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                let child = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                emit(child.clone(), None);
                mutate_at(v, child, emit);
            }
        }
    }
}

/// The same string with its last character replaced by another of the same class, so that
/// numbers stay numbers and names stay names where possible.
fn change_last_char(s: &str) -> String {
    let mut chars: Vec<char> = s.chars().collect();
    match chars.last_mut() {
        None => return "x".into(),
        Some(c) => {
            *c = match *c {
                '0'..='8' | 'a'..='y' | 'A'..='Y' => char::from(*c as u8 + 1),
                '9' => '0',
                'z' => 'a',
                'Z' => 'A',
                _ => 'x',
            }
        }
    }
    chars.into_iter().collect()
}

fn replace_at(doc: &Value, path: &str, replacement: Replacement) -> Value {
    let mut doc = doc.clone();
    let steps = parse_path(path);
    let (last, parents) = steps.split_last().expect("mutations always have a path");
    let mut cur = &mut doc;
    for step in parents {
        cur = match step {
            Step::Key(k) => &mut cur[k.as_str()],
            Step::Index(i) => &mut cur[*i],
        };
    }
    match (last, replacement) {
        (Step::Key(k), None) => {
            cur.as_object_mut().expect("object").remove(k);
        }
        (Step::Index(i), None) => {
            cur.as_array_mut().expect("array").remove(*i);
        }
        (Step::Key(k), Some(v)) => cur[k.as_str()] = v,
        (Step::Index(i), Some(v)) => cur[*i] = v,
    }
    doc
}

enum Step {
    Key(String),
    Index(usize),
}

fn parse_path(path: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    for part in path.split('.') {
        let (key, indexes) = part.split_once('[').map_or((part, ""), |(k, rest)| (k, rest));
        if !key.is_empty() {
            steps.push(Step::Key(key.to_string()));
        }
        for index in indexes.split('[').filter(|s| !s.is_empty()) {
            steps.push(Step::Index(index.trim_end_matches(']').parse().expect("index")));
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_change_exactly_one_place() {
        let doc = serde_json::json!({"a": {"b": [1, true]}, "c": "x9"});
        let muts = mutations(&doc);
        let paths: Vec<_> = muts.iter().map(|(p, _)| p.as_str()).collect();
        assert!(paths.contains(&"a.b[0]") && paths.contains(&"c") && paths.contains(&"a.b"));
        let c = muts.iter().find(|(p, v)| p == "c" && v.get("c").is_some()).unwrap();
        assert_eq!(c.1["c"], "x0");
        assert!(muts.iter().all(|(_, v)| *v != doc));
    }
}
