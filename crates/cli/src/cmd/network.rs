//! `zgrid network`: private WireGuard networks over several nodes. Each verb plans the change
//! with `zgrid_client::network`, which refuses what cannot work before anything is sent, then
//! submits the network resources, waits for every node's verdict, and updates the peer lists
//! of the other members. Progress goes to stderr; the result to stdout (`--json` too).

pub(crate) mod access;
pub(crate) mod members;
mod view;

use std::fmt::Display;
use std::net::IpAddr;

use anyhow::{Context, Result, bail};
use zgrid_client::network::{Network, reported_port};
use zgrid_client::{ExplorerClient, Identity};
use zgrid_types::api::WorkloadRecord;
use zgrid_types::{NodeId, ResultState, UserId, WorkloadData};

use super::submit::{self, Notes};
use crate::args::NetworkCommand;
use crate::config::Ctx;

pub async fn run(ctx: &Ctx, cmd: NetworkCommand) -> Result<()> {
    let s = Session::new(ctx)?;
    match cmd {
        NetworkCommand::Create { network, cidr, nodes, egress, common } => {
            members::create(&s, &network.name, cidr, &nodes, egress, &common).await
        }
        NetworkCommand::AddNode { target, subnet, duration } => members::add_node(&s, &target, subnet, duration).await,
        NetworkCommand::RemoveNode { target } => members::remove_node(&s, &target).await,
        NetworkCommand::Delete { network } => members::delete(&s, &network.name).await,
        NetworkCommand::AddAccess { target, subnet, output, force } => {
            access::add(&s, &target, subnet, output, force).await
        }
        NetworkCommand::RemoveAccess { network, access } => access::remove(&s, &network.name, &access).await,
        NetworkCommand::Graph { network } => view::graph(&s, &network.name).await,
        NetworkCommand::Show { network } => view::show(&s, &network.name).await,
    }
}

/// What every verb works with: the explorer, signing as the owner, and where output goes.
pub(crate) struct Session {
    pub(crate) client: ExplorerClient,
    pub(crate) identity: Identity,
    pub(crate) owner: UserId,
    pub(crate) json: bool,
}

impl Session {
    pub(crate) fn new(ctx: &Ctx) -> Result<Self> {
        let (client, identity) = ctx.signed_client()?;
        let owner = Ctx::user_id(&identity)?;
        Ok(Self { client, identity, owner, json: ctx.json })
    }

    /// Print a progress line on stderr (not with `--json`).
    pub(crate) fn progress(&self, line: impl Display) {
        if !self.json {
            eprintln!("{line}");
        }
    }

    /// The owner's network `name`, if it exists.
    pub(crate) async fn load(&self, name: &str) -> Result<Option<Network>> {
        Network::load(&self.client, self.owner, name).await.with_context(|| format!("cannot read network {name}"))
    }

    /// The owner's network `name`, which must exist.
    pub(crate) async fn existing(&self, name: &str) -> Result<Network> {
        self.load(name).await?.with_context(|| {
            format!(
                "you have no network {name:?}: create it with \
                 `zgrid network create --name {name} --cidr 10.20.0.0/16 --node ID`"
            )
        })
    }

    /// The node's public address from the directory; `None` when it is hidden.
    pub(crate) async fn public_ip(&self, node: &NodeId) -> Result<Option<IpAddr>> {
        let entry = self
            .client
            .node(node)
            .await
            .with_context(|| format!("cannot find node {node}; list nodes with `zgrid nodes`"))?;
        Ok(entry.public_endpoint)
    }

    /// Submit the network resource of planned member `node`.
    async fn create_member(
        &self,
        network: &Network,
        node: &NodeId,
        expires_at: i64,
        notes: &Notes,
    ) -> Result<WorkloadRecord> {
        let data = WorkloadData::NetworkResource(network.resource(node)?);
        let spec = submit::new_spec(&self.identity, *node, expires_at, notes, data)?;
        submit::submit_new(&self.client, &self.identity, spec)
            .await
            .with_context(|| format!("cannot create the network resource on node {node}"))
    }

    /// Update every submitted member whose peer list differs from what `network` says, then
    /// wait for those nodes.
    pub(crate) async fn update_peers(&self, network: &Network) -> Result<()> {
        let mut updated = Vec::new();
        for member in network.members() {
            let (Some(record), Some(nr)) = (&member.record, network.pending_update(&member.node_id)?) else { continue };
            let data = WorkloadData::NetworkResource(nr);
            let record = submit::update(&self.client, &self.identity, record, data)
                .await
                .with_context(|| format!("cannot update the peers of node {}", member.node_id))?;
            updated.push(record);
        }
        if !updated.is_empty() {
            self.progress(format!("updating the peers of {} node(s)", updated.len()));
        }
        self.await_nodes(&updated).await
    }

    /// Reload network `name` and bring every member's peers up to date with what the nodes
    /// reported (ports, hence endpoints).
    async fn connect(&self, name: &str) -> Result<()> {
        self.update_peers(&self.existing(name).await?).await
    }

    /// Wait for the nodes' verdicts on these network resource versions, showing each node as it
    /// becomes ready; fail with every node's reason.
    async fn await_nodes(&self, records: &[WorkloadRecord]) -> Result<()> {
        let waits = records.iter().map(|record| async move {
            let spec = &record.workload.payload;
            let node = spec.node_id;
            let done = submit::verdict(&self.client, &spec.id, spec.version, |_, _| {})
                .await
                .with_context(|| format!("node {node}"))?;
            match done.result.as_ref().map(|r| &r.payload) {
                Some(r) if r.state == ResultState::Ok => {
                    let port = reported_port(&done).map_or("no port reported".into(), |p| format!("port {p}"));
                    self.progress(format!("  node {node} ready: {port}"));
                    Ok(())
                }
                r => bail!("node {node}: {}", r.map_or("no result", |r| r.message.as_str())),
            }
        });
        let failures: Vec<String> = futures::future::join_all(waits)
            .await
            .into_iter()
            .filter_map(Result::err)
            .map(|e| format!("{e:#}"))
            .collect();
        if failures.is_empty() { Ok(()) } else { bail!("{}", failures.join("; ")) }
    }
}
