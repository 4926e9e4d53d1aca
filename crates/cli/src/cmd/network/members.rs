//! `zgrid network create | add-node | remove-node | delete`: which nodes a network spans.

use anyhow::{Context, Result, bail};
use ipnet::Ipv4Net;
use zgrid_client::network::{Attachment, Member, Network};
use zgrid_types::NodeId;
use zgrid_types::api::WorkloadRecord;

use super::{Session, view};
use crate::args::{DeployCommon, Lifetime, NetworkNode};
use crate::cmd::submit::{self, Notes};
use crate::output;

/// Create network `name` over `cidr` on `nodes`: the resources first, then, once every node
/// reported its port, the peer lists with endpoints.
pub async fn create(
    s: &Session,
    name: &str,
    cidr: Ipv4Net,
    nodes: &[String],
    egress: bool,
    common: &DeployCommon,
) -> Result<()> {
    if let Some(existing) = s.load(name).await? {
        bail!(
            "you already have a network {name} ({}, {} members): add nodes with \
             `zgrid network add-node --name {name} --node ID`",
            existing.cidr(),
            existing.members().len()
        );
    }
    let expires_at = submit::expiry(common.duration);
    let mut ids = Vec::with_capacity(nodes.len());
    for node in nodes {
        ids.push(submit::resolve_node(&s.client, node).await?);
    }
    let nodes = ids;
    let network = Network::new(name, cidr).context("--cidr")?.with_egress(egress);
    build(s, network, &nodes, expires_at, &Notes::described(&common.description)).await?;
    view::finish(s, name).await
}

/// Submit the new network `network` (empty yet) on `nodes` until `expires_at`: the resources
/// first, then, once every node reported its port, the peer lists with endpoints.
pub(crate) async fn build(
    s: &Session,
    mut network: Network,
    nodes: &[NodeId],
    expires_at: i64,
    notes: &Notes,
) -> Result<()> {
    let (name, cidr) = (network.name().to_owned(), network.cidr());
    for node in nodes {
        if network.member(node).is_ok() {
            bail!("--node {node} is given twice");
        }
        let public_ip = s.public_ip(node).await?;
        let subnet = network.member_subnet(public_ip.is_some(), None)?;
        network.add_member(Member::generate(*node, public_ip, subnet))?;
    }
    network.check()?;
    s.progress(format!("creating network {name} ({cidr}) on {} node(s)", nodes.len()));
    let partial = || {
        format!(
            "network {name} is only partly set up: see it with `zgrid network show --name {name}`, take a failing node \
             out with `zgrid network remove-node`, or remove it all with `zgrid network delete --name {name}`"
        )
    };
    let mut created = Vec::new();
    for member in network.members() {
        let record = s.create_member(&network, &member.node_id, expires_at, notes).await;
        created.push(if created.is_empty() { record? } else { record.with_context(partial)? });
    }
    s.await_nodes(&created).await.with_context(partial)?;
    s.connect(&name).await.with_context(partial)
}

/// Add `target.node` to the network with `subnet` (default: the lowest free one) until the end
/// of `duration` (default: when the last member expires); the others only gain a peer.
pub async fn add_node(
    s: &Session,
    target: &NetworkNode,
    subnet: Option<Ipv4Net>,
    duration: Option<Lifetime>,
) -> Result<()> {
    let name = &target.network.name;
    let network = s.existing(name).await?;
    let node = submit::resolve_node(&s.client, &target.node).await?;
    let expires_at = match duration {
        Some(d) => submit::expiry(d),
        None => network.latest_expiry().context("the network's members have no expiry: pass --duration")?,
    };
    let notes = network.members().iter().find_map(|m| m.record.as_ref()).map(Notes::of).unwrap_or_default();
    join(s, network, node, subnet, expires_at, &notes).await?;
    view::finish(s, name).await
}

/// Add `node` to `network` with `subnet` (default: the lowest free one) until `expires_at`; the
/// others only gain a peer.
pub(crate) async fn join(
    s: &Session,
    mut network: Network,
    node: NodeId,
    subnet: Option<Ipv4Net>,
    expires_at: i64,
    notes: &Notes,
) -> Result<()> {
    let name = network.name().to_owned();
    let public_ip = s.public_ip(&node).await?;
    let chosen = network.member_subnet(public_ip.is_some(), subnet);
    let subnet = match subnet {
        Some(given) => chosen.with_context(|| format!("--subnet {given}"))?,
        None => chosen?,
    };
    network.add_member(Member::generate(node, public_ip, subnet))?;
    network.check()?;
    s.progress(format!("adding node {node} to network {name} with subnet {subnet}"));
    let record = s.create_member(&network, &node, expires_at, notes).await?;
    s.await_nodes(&[record]).await.with_context(|| {
        format!(
            "node {node} did not join network {name}; take it out with \
             `zgrid network remove-node --name {name} --node {node}`"
        )
    })?;
    s.connect(&name).await
}

/// Refuse while workloads still join the network (all of them, or those on one node).
fn refuse_in_use(name: &str, users: &[&Attachment]) -> Result<()> {
    if users.is_empty() {
        return Ok(());
    }
    let listed: Vec<String> =
        users.iter().map(|a| format!("{} {} on node {} at {}", a.kind, a.workload_id, a.node_id, a.ip)).collect();
    let ids: Vec<String> = users.iter().map(|a| a.workload_id.to_string()).collect();
    bail!(
        "{} workload(s) still use network {name}: {}; delete them first with `zgrid delete {}`",
        users.len(),
        listed.join(", "),
        ids.join(" ")
    )
}

/// Take `target.node` out of the network and drop it from the other members' peers.
pub async fn remove_node(s: &Session, target: &NetworkNode) -> Result<()> {
    let name = &target.network.name;
    let mut network = s.existing(name).await?;
    let node = submit::resolve_node(&s.client, &target.node).await?;
    refuse_in_use(name, &network.attachments_on(&node).collect::<Vec<_>>())?;
    let (member, lost) = network.remove_member(&node)?;
    network.check().context("the rest of the network would not work without it")?;
    for access in &lost {
        eprintln!("warning: access point {} reached network {name} through node {node}; it goes too", access.subnet);
    }
    if let Some(record) = &member.record {
        let id = &record.workload.payload.id;
        s.client.delete_workload(id, s.owner).await.with_context(|| format!("cannot delete network resource {id}"))?;
        s.progress(format!("deleted the network resource {id} on node {node}"));
    }
    s.update_peers(&network).await?;
    view::finish(s, name).await
}

/// Delete every network resource of the network.
pub async fn delete(s: &Session, name: &str) -> Result<()> {
    let deleted = remove(s, &s.existing(name).await?).await?;
    output::report(s.json, &deleted, || {
        println!("network {name} deleted: {} network resource(s); its nodes remove them now", deleted.len())
    })
}

/// Delete every network resource of `network`, refused while workloads still join it.
pub(crate) async fn remove(s: &Session, network: &Network) -> Result<Vec<WorkloadRecord>> {
    refuse_in_use(network.name(), &network.attachments().iter().collect::<Vec<_>>())?;
    let mut deleted = Vec::new();
    for record in network.members().iter().filter_map(|m| m.record.as_ref()) {
        let id = &record.workload.payload.id;
        deleted.push(
            s.client
                .delete_workload(id, s.owner)
                .await
                .with_context(|| format!("cannot delete network resource {id}"))?,
        );
    }
    Ok(deleted)
}
