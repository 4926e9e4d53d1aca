//! The cluster's API server, reached at the master's address on the private network, its
//! certificate checked against the cluster's CA alone (pinned after discovery), as the admin:
//! which nodes are Ready, and waiting until every VM of the cluster is.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::cluster::ClusterVm;

/// The API server's port on the master (the guest's `API_PORT`).
pub const API_PORT: u16 = 6443;
/// How long a connection to the master may take to open.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait for every VM to be a Ready node, once their nodes reported them running.
const READY_LIMIT: Duration = Duration::from_secs(15 * 60);
/// How many times the first request is tried before the master counts as unreachable.
const FIRST_TRIES: u32 = 3;
/// Most bytes of a node list read.
const MAX_NODE_LIST: usize = 16 << 20;

/// This machine cannot reach the master: no route to the private network, or no answer.
#[derive(Debug, thiserror::Error)]
#[error("this machine cannot reach the master's API at {url}: {why}")]
pub struct Unreachable {
    /// The URL tried.
    pub url: String,
    /// What the connection attempt said.
    pub why: String,
}

/// The server answered with an error status.
#[derive(Debug, thiserror::Error)]
#[error("the master at {master} answered {url} with {status}: {text}")]
pub struct Answered {
    /// The server's address.
    pub master: Ipv4Addr,
    /// The URL asked.
    pub url: String,
    /// The status.
    pub status: reqwest::StatusCode,
    /// The start of the body.
    pub text: String,
}

/// Run `attempt` until it succeeds, fails otherwise than with [`Unreachable`], or has been
/// tried a few times: a WireGuard tunnel just brought up may need a handshake or two.
pub async fn patiently<T, F: Future<Output = Result<T>>>(mut attempt: impl FnMut() -> F) -> Result<T> {
    let mut tries = 0;
    loop {
        tries += 1;
        match attempt().await {
            Err(e) if e.is::<Unreachable>() && tries < FIRST_TRIES => tokio::time::sleep(CONNECT_TIMEOUT).await,
            answer => return answer,
        }
    }
}

/// The cause chain of `error`, one line.
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// Send `request` to the master at `master` (for `url`) and read its successful answer, refused
/// past `limit` bytes. Failing to connect is [`Unreachable`]; an error status, [`Answered`].
pub async fn read(request: reqwest::RequestBuilder, master: Ipv4Addr, url: &str, limit: usize) -> Result<Vec<u8>> {
    let mut response = request.send().await.map_err(|e| {
        if e.is_connect() || e.is_timeout() {
            anyhow::Error::new(Unreachable { url: url.to_owned(), why: causes(&e) })
        } else {
            anyhow::anyhow!("the master at {master} did not answer {url}: {}", causes(&e))
        }
    })?;
    let status = response.status();
    let mut body = Vec::new();
    while let Some(piece) = response.chunk().await.with_context(|| format!("the master at {master} broke off {url}"))? {
        if body.len() + piece.len() > limit {
            bail!("the master at {master} sent more than {limit} bytes for {url}");
        }
        body.extend_from_slice(&piece);
    }
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body[..body.len().min(300)]).trim().to_owned();
        return Err(Answered { master, url: url.to_owned(), status, text }.into());
    }
    Ok(body)
}

/// A node as the API server has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeStatus {
    /// Its name (the VM's host name).
    pub name: String,
    /// Its InternalIP: the VM's address in the private network.
    pub ip: Option<Ipv4Addr>,
    /// Whether its Ready condition is True.
    pub ready: bool,
    /// Its Ready condition's reason and message, when not Ready.
    pub why: String,
}

/// The parts of a NodeList read here.
#[derive(Deserialize)]
struct NodeList {
    #[serde(default)]
    items: Vec<Node>,
}

#[derive(Deserialize)]
struct Node {
    metadata: Metadata,
    #[serde(default)]
    status: Status,
}

#[derive(Deserialize)]
struct Metadata {
    name: String,
}

#[derive(Default, Deserialize)]
struct Status {
    #[serde(default)]
    addresses: Vec<Address>,
    #[serde(default)]
    conditions: Vec<Condition>,
}

#[derive(Deserialize)]
struct Address {
    #[serde(rename = "type")]
    kind: String,
    address: String,
}

#[derive(Deserialize)]
struct Condition {
    #[serde(rename = "type")]
    kind: String,
    status: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    message: String,
}

/// The nodes in a NodeList's JSON.
fn nodes_of(body: &[u8]) -> Result<Vec<NodeStatus>> {
    let list: NodeList = serde_json::from_slice(body).context("the master's node list is not a NodeList")?;
    Ok(list
        .items
        .into_iter()
        .map(|node| {
            let ip = node.status.addresses.iter().find(|a| a.kind == "InternalIP").and_then(|a| a.address.parse().ok());
            let ready = node.status.conditions.iter().find(|c| c.kind == "Ready");
            NodeStatus {
                name: node.metadata.name,
                ip,
                ready: ready.is_some_and(|c| c.status == "True"),
                why: ready.map_or_else(
                    || "no Ready condition yet".into(),
                    |c| if c.status == "True" { String::new() } else { format!("{}: {}", c.reason, c.message) },
                ),
            }
        })
        .collect())
}

/// The cluster's API server, as its admin.
pub struct Api {
    client: reqwest::Client,
    master: Ipv4Addr,
    token: String,
}

impl Api {
    /// The API server on `master`, trusted only with a certificate the CA `ca_pem` signed,
    /// called with the bearer `token`.
    pub fn new(master: Ipv4Addr, ca_pem: &[u8], token: &str) -> Result<Self> {
        let ca = reqwest::Certificate::from_pem(ca_pem).context("the cluster's CA is not a PEM certificate")?;
        let client = reqwest::Client::builder()
            .tls_certs_only([ca])
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(Duration::from_secs(30))
            .build()
            .context("cannot set up an HTTP client")?;
        Ok(Self { client, master, token: token.to_owned() })
    }

    /// The admin's bearer token.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The API's URL: `https://<master>:6443`.
    pub fn server(&self) -> String {
        format!("https://{}:{API_PORT}", self.master)
    }

    /// Every node the API server knows.
    pub async fn nodes(&self) -> Result<Vec<NodeStatus>> {
        let url = format!("{}/api/v1/nodes", self.server());
        let request = self.client.get(&url).bearer_auth(&self.token);
        nodes_of(&read(request, self.master, &url, MAX_NODE_LIST).await?)
    }

    /// Wait until every VM of `vms` is a Ready node (found by its address), calling `ready`
    /// once for each as it becomes so; the nodes then. Fails naming the VMs still not Ready
    /// after a while, and why the API server says so.
    pub async fn wait_ready(
        &self,
        vms: &[ClusterVm],
        mut ready: impl FnMut(&ClusterVm, &NodeStatus),
    ) -> Result<Vec<NodeStatus>> {
        let deadline = tokio::time::Instant::now() + READY_LIMIT;
        let mut told = vec![false; vms.len()];
        let mut nodes = self.nodes().await?;
        loop {
            let by_ip: BTreeMap<Ipv4Addr, &NodeStatus> = nodes.iter().filter_map(|n| Some((n.ip?, n))).collect();
            for (vm, told) in vms.iter().zip(&mut told) {
                if let Some(node) = by_ip.get(&vm.ip).filter(|n| n.ready && !*told) {
                    ready(vm, node);
                    *told = true;
                }
            }
            if told.iter().all(|t| *t) {
                return Ok(nodes);
            }
            if tokio::time::Instant::now() > deadline {
                let late: Vec<String> = vms
                    .iter()
                    .zip(&told)
                    .filter(|(_, told)| !**told)
                    .map(|(vm, _)| match by_ip.get(&vm.ip) {
                        Some(node) => format!("{} is node {} but not Ready ({})", vm.describe(), node.name, node.why),
                        None => format!("{} never registered as a node", vm.describe()),
                    })
                    .collect();
                bail!("not every VM became a Ready node within {} s: {}", READY_LIMIT.as_secs(), late.join("; "));
            }
            tokio::time::sleep(Duration::from_secs(3)).await;
            // A poll that fails now (the master restarting a component) is tried again.
            if let Ok(now) = self.nodes().await {
                nodes = now;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_lists_give_each_nodes_address_and_readiness() {
        let list = serde_json::json!({
            "kind": "NodeList",
            "items": [
                {"metadata": {"name": "m"}, "status": {
                    "addresses": [{"type": "Hostname", "address": "m"}, {"type": "InternalIP", "address": "10.20.1.2"}],
                    "conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}]}},
                {"metadata": {"name": "w"}, "status": {
                    "addresses": [{"type": "InternalIP", "address": "10.20.2.2"}],
                    "conditions": [{"type": "Ready", "status": "False", "reason": "KubeletNotReady", "message": "cni not ready"}]}},
                {"metadata": {"name": "new"}}
            ]
        });
        let nodes = nodes_of(&serde_json::to_vec(&list).unwrap()).unwrap();
        assert_eq!(
            nodes[0],
            NodeStatus { name: "m".into(), ip: Some("10.20.1.2".parse().unwrap()), ready: true, why: String::new() }
        );
        assert_eq!((nodes[1].ready, nodes[1].why.as_str()), (false, "KubeletNotReady: cni not ready"));
        assert_eq!((nodes[2].ip, nodes[2].ready), (None, false));
        assert!(nodes_of(b"{\"kind\": \"Status\", \"items\": 3}").is_err());
    }
}
