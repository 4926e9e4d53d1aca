//! `zgrid deploy`: build a workload from flags (a container may join one of the owner's networks,
//! a VM always joins one), sign it, submit it, and optionally wait for the node's verdict while
//! showing progress.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use zgrid_client::network::Network;
use zgrid_client::{ExplorerClient, Identity};
use zgrid_types::api::WorkloadRecord;
use zgrid_types::result::IMAGE_READY;
use zgrid_types::workload::{
    Container, ContainerCapacity, DiskType, Kubernetes, LogEndpoint, NetworkConnection, Probe, Probes, RedisLogs,
    RedisStats, StatsEndpoint, Vm, Volume, VolumeMount, is_ssh_public_key,
};
use zgrid_types::{NodeId, ResultState, WorkloadData};

use super::submit;
use crate::args::{DeployCommand, FlistArgs, ImageArgs, ProbeArgs};
use crate::config::Ctx;
use crate::output;

fn disk_type(text: &str) -> Result<DiskType> {
    match text.to_ascii_lowercase().as_str() {
        "ssd" => Ok(DiskType::Ssd),
        "hdd" => Ok(DiskType::Hdd),
        _ => bail!("disk type {text:?}: use ssd or hdd"),
    }
}

fn env_pairs(items: &[String]) -> Result<BTreeMap<String, String>> {
    items
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .with_context(|| format!("--env {kv:?}: write KEY=VALUE"))
        })
        .collect()
}

fn volume_mount(text: &str) -> Result<VolumeMount> {
    let (id, path) = text.split_once(':').with_context(|| format!("--volume {text:?}: write VOLUME_ID:/path"))?;
    let volume_id =
        id.parse().map_err(|e: zgrid_types::ids::BadWorkloadId| anyhow::anyhow!("--volume {text:?}: {e}"))?;
    Ok(VolumeMount { volume_id, mountpoint: path.to_string() })
}

/// `--secret-env` values sealed to `node`: `KEY=VALUE`, or `KEY` whose value is this process's
/// environment variable of that name.
fn secrets(items: &[String], node: &zgrid_types::NodeId) -> Result<BTreeMap<String, String>> {
    items
        .iter()
        .map(|item| {
            let (name, value) = match item.split_once('=') {
                Some((name, value)) => (name.to_string(), value.to_string()),
                None => {
                    let value = std::env::var(item).with_context(|| {
                        format!(
                            "--secret-env {item}: no variable {item} in this shell; write {item}=VALUE or export it"
                        )
                    })?;
                    (item.clone(), value)
                }
            };
            Ok((name, zgrid_types::sealed::seal_secret(node, &value)))
        })
        .collect()
}

/// A `--logs redis://HOST:PORT/PREFIX`: stdout to `PREFIX-stdout`, stderr to `PREFIX-stderr`,
/// sealed to `node` when asked.
fn log_endpoint(url: &str, seal: bool, node: &zgrid_types::NodeId) -> Result<LogEndpoint> {
    if zgrid_types::workload::redis_channel(url).is_none() {
        bail!("--logs {url:?}: write redis://HOST:PORT/PREFIX");
    }
    let (stdout, stderr) = (format!("{url}-stdout"), format!("{url}-stderr"));
    let logs = if seal {
        let seal = |u: &str| zgrid_types::sealed::seal_secret(node, u);
        RedisLogs {
            stdout: String::new(),
            stderr: String::new(),
            secret_stdout: seal(&stdout),
            secret_stderr: seal(&stderr),
        }
    } else {
        RedisLogs { stdout, stderr, secret_stdout: String::new(), secret_stderr: String::new() }
    };
    Ok(LogEndpoint::Redis(logs))
}

/// What [`ImageArgs`] make of a container's or VM's fields: the image (its hash pinned), the
/// environment (secrets sealed to the node) and the volume mounts.
struct Image {
    flist: String,
    hub_url: String,
    flist_hash: String,
    environment: BTreeMap<String, String>,
    secret_environment: BTreeMap<String, String>,
    volumes: Vec<VolumeMount>,
}

impl Image {
    /// The node the flags name, and the image fields for it; the flist's hash is what its hub
    /// serves now unless `--flist-hash` pins one.
    async fn from_args(ctx: &Ctx, a: ImageArgs) -> Result<(NodeId, Self)> {
        let (node, flist, hub_url, flist_hash) = flist_of(ctx, a.source).await?;
        let image = Self {
            environment: env_pairs(&a.env)?,
            secret_environment: secrets(&a.secret_env, &node)?,
            volumes: a.volumes.iter().map(|v| volume_mount(v)).collect::<Result<_>>()?,
            flist_hash,
            flist,
            hub_url,
        };
        Ok((node, image))
    }
}

/// The node, and the flist, hub and flist hash the flags name; the flist's hash is what its
/// hub serves now unless `--flist-hash` pins one.
async fn flist_of(ctx: &Ctx, a: FlistArgs) -> Result<(NodeId, String, String, String)> {
    let node = submit::resolve_node(&ctx.anonymous_client()?, &a.node).await?;
    let hash = if a.flist_hash.is_empty() { served_hash(ctx, &a.flist).await? } else { a.flist_hash };
    Ok((node, a.flist, a.hub_url, hash))
}

/// `--cpu`, `--memory`, `--disk` and `--disk-type` as the capacity a container or VM reserves.
fn capacity(cpu: u32, memory: u64, disk: u64, disk_type_flag: &str) -> Result<ContainerCapacity> {
    Ok(ContainerCapacity { cpu, memory, disk_size: disk, disk_type: disk_type(disk_type_flag)? })
}

/// The OpenSSH public keys in the `--ssh-key` files: every key line of each (blank lines and
/// `#` comments skipped), at least one per file.
pub(super) fn ssh_keys(files: &[PathBuf]) -> Result<Vec<String>> {
    let mut keys = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).with_context(|| {
            format!(
                "--ssh-key {}: cannot read the public key file (make a key pair with `ssh-keygen -t ed25519` \
                 and give its .pub file)",
                file.display()
            )
        })?;
        let Some(lines) = key_lines(&text) else {
            bail!(
                "--ssh-key {}: not an OpenSSH public key file; give the .pub file (a line such as \
                 \"ssh-ed25519 AAAA... me@host\"), not the private key",
                file.display()
            );
        };
        keys.extend(lines);
    }
    Ok(keys)
}

/// The OpenSSH public keys `text` lists, one a line (blank lines and `#` comments skipped);
/// `None` unless it lists at least one and every other line is a key too.
pub(super) fn key_lines(text: &str) -> Option<Vec<String>> {
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    (!lines.is_empty() && lines.iter().all(|l| is_ssh_public_key(l)))
        .then(|| lines.into_iter().map(str::to_owned).collect())
}

/// The probes the flags ask for, each with Kubernetes' defaults but for its period.
fn probes_of(args: ProbeArgs) -> Probes {
    let every = |action| Probe { period_seconds: args.probe_period, ..Probe::new(action) };
    Probes { readiness: args.readiness.map(every), liveness: args.liveness.map(every) }
}

pub async fn run(ctx: &Ctx, cmd: DeployCommand) -> Result<()> {
    let (client, identity) = ctx.signed_client()?;
    let (node, data, common, wait, joined) = match cmd {
        DeployCommand::Volume { node, size, disk_type: t, wait, common } => {
            let node = submit::resolve_node(&client, &node).await?;
            (node, WorkloadData::Volume(Volume { size, disk_type: disk_type(&t)? }), common, wait, None)
        }
        DeployCommand::Container {
            image,
            entrypoint,
            interactive,
            logs,
            seal_logs,
            stats,
            cpu,
            memory,
            disk,
            disk_type: t,
            network,
            ip,
            public_ipv6,
            yggdrasil,
            open,
            probes,
            wait,
            common,
        } => {
            let (node, image) = Image::from_args(ctx, image).await?;
            if public_ipv6 || yggdrasil {
                let directory = client.node(&node).await?;
                if public_ipv6 && directory.public_ipv6.is_none() {
                    bail!(
                        "--public-ipv6: node {node} has no public IPv6 addresses to give; \
                         find nodes that have with `zgrid nodes --public-ipv6`"
                    );
                }
                if yggdrasil && directory.yggdrasil.is_none() {
                    bail!(
                        "--yggdrasil: node {node} runs no Yggdrasil; find nodes that do with `zgrid nodes --yggdrasil`"
                    );
                }
            }
            let connection = match network {
                Some(name) => Some(NetworkConnection {
                    public_ipv6,
                    yggdrasil_ip: yggdrasil,
                    ..join(&client, &identity, &node, name, ip).await?
                }),
                None => None,
            };
            let joined = connection.clone().map(|c| (c, ip.is_none()));
            let container = Container {
                flist: image.flist,
                hub_url: image.hub_url,
                flist_hash: image.flist_hash,
                environment: image.environment,
                secret_environment: image.secret_environment,
                entrypoint,
                interactive,
                volumes: image.volumes,
                capacity: capacity(cpu, memory, disk, &t)?,
                network_connection: connection.iter().cloned().collect(),
                logs: logs.iter().map(|url| log_endpoint(url, seal_logs, &node)).collect::<Result<_>>()?,
                stats: stats.into_iter().map(|endpoint| StatsEndpoint::Redis(RedisStats { endpoint })).collect(),
                probes: probes_of(probes),
                open_ports: open,
            };
            (node, WorkloadData::Container(container), common, wait, joined)
        }
        DeployCommand::Kubernetes {
            source,
            network,
            ip,
            size,
            secret,
            master_ips,
            ssh_keys: key_files,
            datastore_endpoint,
            registries,
            wait,
            common,
        } => {
            let ssh_keys = ssh_keys(&key_files)?;
            let (node, flist, hub_url, flist_hash) = flist_of(ctx, source).await?;
            let connection = join(&client, &identity, &node, network, ip).await?;
            let kubernetes = Kubernetes {
                size,
                flist,
                hub_url,
                flist_hash,
                network_id: connection.network_id.clone(),
                ipaddress: connection.ipaddress,
                cluster_secret: zgrid_types::sealed::seal_secret(&node, &secret),
                master_ips,
                ssh_keys,
                datastore_endpoint,
                disable_default_ingress: true,
                registries,
            };
            (node, WorkloadData::Kubernetes(kubernetes), common, wait, Some((connection, ip.is_none())))
        }
        DeployCommand::Vm {
            image,
            network,
            ip,
            ssh_keys: key_files,
            cpu,
            memory,
            disk,
            disk_type: t,
            kernel_args,
            wait,
            common,
        } => {
            let ssh_keys = ssh_keys(&key_files)?;
            let (node, image) = Image::from_args(ctx, image).await?;
            let connection = join(&client, &identity, &node, network, ip).await?;
            let vm = Vm {
                flist: image.flist,
                hub_url: image.hub_url,
                flist_hash: image.flist_hash,
                capacity: capacity(cpu, memory, disk, &t)?,
                network_id: connection.network_id.clone(),
                ipaddress: connection.ipaddress,
                ssh_keys,
                kernel_args,
                environment: image.environment,
                secret_environment: image.secret_environment,
                volumes: image.volumes,
            };
            (node, WorkloadData::Vm(vm), common, wait, Some((connection, ip.is_none())))
        }
    };
    let expires_at = submit::expiry(common.duration);
    let (mut data, mut joined) = (data, joined);
    let mut tries = 1;
    let record = loop {
        let refused =
            match submit::create(&client, &identity, node, expires_at, &common.description, data.clone()).await {
                Ok(record) => break record,
                Err(e) => e,
            };
        // An address this command chose, taken meanwhile by another deploy: the next free one.
        let Some((taken, true)) = joined.take().filter(|_| tries < ADDRESS_TRIES && address_taken(&refused)) else {
            return Err(refused);
        };
        let fresh = join(&client, &identity, &node, taken.network_id.clone(), None).await?;
        if !ctx.json {
            eprintln!("{} was taken meanwhile by another workload; trying {}", taken.ipaddress, fresh.ipaddress);
        }
        set_address(&mut data, fresh.ipaddress);
        joined = Some((fresh, true));
        tries += 1;
    };
    let id = record.workload.payload.id.clone();
    if let Some((c, _)) = joined.as_ref().filter(|_| !ctx.json) {
        println!("workload {id} joins network {} at {}", c.network_id, c.ipaddress);
    }
    if !wait {
        let spec = &record.workload.payload;
        return output::report(ctx.json, &record, || {
            let when = output::time(spec.expires_at);
            println!("workload {} ({}) accepted for node {}; expires {when}", spec.id, spec.data.kind(), spec.node_id);
            if let Some(console) = console_of(&spec.data, id.as_str()) {
                println!("{console} once it runs");
            }
        });
    }
    if !ctx.json {
        eprintln!("workload {id}");
    }
    let record = wait_for_node(&client, &record, ctx.json, "", submit::WAIT_LIMIT).await?;
    let result = record.result.as_ref().map(|r| &r.payload);
    match result.map(|r| r.state) {
        Some(ResultState::Ok) => output::report(ctx.json, &record, || {
            match &record.workload.payload.data {
                WorkloadData::Volume(_) => println!("volume {id} is made; mount it with --volume {id}:/PATH"),
                _ => println!("workload {id} is running"),
            }
            if let Some(console) = console_of(&record.workload.payload.data, id.as_str()) {
                println!("{console}");
            }
            for (key, what) in [("public_ipv6", "public IPv6"), ("yggdrasil_ip", "Yggdrasil")] {
                if let Some(address) = result.and_then(|r| r.data[key].as_str()) {
                    println!("{what} address: {address}{}", open_ports_of(&record.workload.payload.data));
                }
            }
            // What the node wants the owner to know, such as the accelerator a VM runs with.
            if let Some(note) = result.and_then(|r| r.data["note"].as_str()) {
                println!("note: {note}");
            }
        }),
        _ => {
            if ctx.json {
                output::json(&record)?;
            }
            let why = result.map_or("no result".into(), |r| r.message.clone());
            let output = result.map(|r| last_output(&r.data)).unwrap_or_default();
            bail!("workload {id} failed on its node: {why}{output}")
        }
    }
}

/// Where an interactive container's console answers, as a line for the owner: its web page
/// (reached from the container's network) and the command for this terminal.
fn console_of(data: &WorkloadData, id: &str) -> Option<String> {
    let WorkloadData::Container(c) = data else { return None };
    let n = c.network_connection.first().filter(|_| c.interactive)?;
    let url = format!("http://{}:{}/", n.ipaddress, zgrid_node::console::PORT);
    Some(format!("console: {url} (from network {}), or `zgrid console {id}`", n.network_id))
}

/// The ports a container opened on its public address, as the end of a line.
fn open_ports_of(data: &WorkloadData) -> String {
    let WorkloadData::Container(c) = data else { return String::new() };
    if c.open_ports.is_empty() {
        return " (every port closed to the outside; open some with --open)".into();
    }
    let ports: Vec<String> = c.open_ports.iter().map(ToString::to_string).collect();
    format!(" (open: {})", ports.join(", "))
}

/// Times a deploy that chose its workload's address submits it, each time with the lowest
/// address still free, when other deploys take the one it chose first.
const ADDRESS_TRIES: usize = 8;

/// Whether the explorer refused a workload because its address in its network is taken.
fn address_taken(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<zgrid_client::ClientError>(),
        Some(zgrid_client::ClientError::Api { status: 409, field: Some(field), .. }) if field.ends_with("ipaddress")
    )
}

/// Put the workload in `data` at `ip` in its network.
fn set_address(data: &mut WorkloadData, ip: Ipv4Addr) {
    match data {
        WorkloadData::Container(c) => c.network_connection.iter_mut().for_each(|n| n.ipaddress = ip),
        WorkloadData::Vm(vm) => vm.ipaddress = ip,
        WorkloadData::Kubernetes(k) => k.ipaddress = ip,
        WorkloadData::Volume(_) | WorkloadData::NetworkResource(_) => {}
    }
}

/// The membership of network `name` on `node`: at `ip` after checking it, else at the lowest
/// free address of the node's subnet.
async fn join(
    client: &ExplorerClient,
    identity: &Identity,
    node: &NodeId,
    name: String,
    ip: Option<Ipv4Addr>,
) -> Result<NetworkConnection> {
    let network = Network::load(client, Ctx::user_id(identity)?, &name).await?.with_context(|| {
        format!("--network {name}: you have no network of that name; create it with `zgrid network create`")
    })?;
    if network.member(node).is_err() {
        bail!(
            "node {node} is not a member of network {name}: add it with \
             `zgrid network add-node --name {name} --node {node}`"
        );
    }
    let ipaddress = match ip {
        Some(ip) => network.check_ip(node, ip).map(|()| ip).with_context(|| format!("--ip {ip}"))?,
        None => network.free_ip(node).with_context(|| format!("--network {name}"))?,
    };
    Ok(NetworkConnection { network_id: name, ipaddress, public_ipv6: false, yggdrasil_ip: false })
}

/// What a result's data says the container last printed before it stopped, as lines to add to
/// an error (empty when it says nothing).
fn last_output(data: &serde_json::Value) -> String {
    let lines: Vec<&str> =
        data["last_stop"]["output"].as_array().into_iter().flatten().filter_map(|l| l.as_str()).collect();
    if lines.is_empty() {
        return String::new();
    }
    format!("\nits last output:\n{}", lines.iter().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n"))
}

/// The stages `--wait` shows for a workload with an image, in order.
const STAGES: [&str; 4] = ["accepted by the explorer", "picked up by the node", IMAGE_READY, "running"];

/// The stages `--wait` shows for a volume, which has no image.
const VOLUME_STAGES: [&str; 3] = ["accepted by the explorer", "picked up by the node", "made"];

/// The stages `--wait` shows for `data`, in order.
fn stages(data: &WorkloadData) -> &'static [&'static str] {
    if matches!(data, WorkloadData::Volume(_)) { &VOLUME_STAGES } else { &STAGES }
}

/// How far a result shows the workload got (an index into `stages`).
fn stage(stages: &[&str], result: Option<&zgrid_types::WorkloadResult>) -> usize {
    match result {
        None => 0,
        // Started, but not yet past the node's settle window: "running" is for after it.
        Some(r) if r.state == ResultState::Ok && !submit::is_verdict(r) => stages.len() - 2,
        Some(r) if r.state == ResultState::Ok => stages.len() - 1,
        Some(r) if r.message == IMAGE_READY => 2,
        Some(_) => 1,
    }
}

/// Wait (at most `limit`) for the node's verdict on a new workload, printing each stage reached
/// (also those passed between two polls) once, and what the node says it is doing, each line
/// after `label` (which names the workload when several are awaited at once).
pub(super) async fn wait_for_node(
    client: &ExplorerClient,
    record: &WorkloadRecord,
    quiet: bool,
    label: &str,
    limit: std::time::Duration,
) -> Result<WorkloadRecord> {
    let spec = &record.workload.payload;
    let (mut shown, mut said) = (None, String::new());
    let stages = stages(&spec.data);
    submit::verdict_within(client, &spec.id, spec.version, limit, |record, result| {
        let reached = stage(stages, result);
        for (n, name) in stages.iter().enumerate().take(reached + 1).skip(shown.map_or(0, |s| s + 1)) {
            if !quiet {
                let detail = if n == 1 { format!(" {}", record.workload.payload.node_id) } else { String::new() };
                eprintln!("{label}[{}/{}] {name}{detail}", n + 1, stages.len());
            }
            shown = Some(n);
        }
        let doing = result.and_then(|r| match r.state {
            ResultState::Provisioning if !stages.contains(&r.message.as_str()) => Some(r.message.as_str()),
            ResultState::Ok if !submit::is_verdict(r) => Some("started; checking that it keeps running"),
            _ => None,
        });
        if let Some(doing) = doing.filter(|d| *d != said) {
            if !quiet && !doing.is_empty() {
                eprintln!("{label}      {doing}");
            }
            said = doing.to_owned();
        }
    })
    .await
}

/// The hash a hub serves for the flist URL now (empty for other images): pinned, so the node
/// runs exactly what the deployer saw.
pub(super) async fn served_hash(ctx: &Ctx, flist: &str) -> Result<String> {
    if !flist.starts_with("http://") && !flist.starts_with("https://") {
        return Ok(String::new());
    }
    let resp = match ctx.http()?.fetch("flist server", reqwest::Method::HEAD, flist).await {
        // A HEAD answer has no body to give a reason in.
        Err(e) if e.status() == Some(404) => {
            bail!("there is no flist at {flist} (404); check the name and namespace (`zgrid hub ls me`)")
        }
        Err(e @ zgrid_client::ClientError::Api { .. }) => bail!("{e}; check the URL (`zgrid hub ls me`)"),
        answer => answer?,
    };
    let hash = resp.headers().get("x-zgrid-flist-hash").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if hash.is_empty() {
        eprintln!(
            "warning: {flist} does not say its hash (not a zgrid hub?); the node runs whatever it serves first. Pin it with --flist-hash (`zgrid flist inspect` prints it)"
        );
    }
    Ok(hash.to_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_last_output_of_a_stopped_container_follows_the_reason() {
        let data = serde_json::json!({ "last_stop": { "exit_code": 3, "output": ["starting", "boom"] } });
        assert_eq!(super::last_output(&data), "\nits last output:\n  starting\n  boom");
        assert_eq!(super::last_output(&serde_json::json!({ "restarts": 1 })), "");
        assert_eq!(super::last_output(&serde_json::Value::Null), "");
    }
}
