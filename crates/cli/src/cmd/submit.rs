//! Building, signing and submitting workloads, and waiting for the node's verdict on them:
//! shared by `zgrid deploy`, `zgrid network` and `zgrid k8s`.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use zgrid_client::{ExplorerClient, Identity};
use zgrid_types::api::{WorkloadRecord, WorkloadState};
use zgrid_types::{NodeId, ResultState, Signed, WorkloadData, WorkloadId, WorkloadResult, WorkloadSpec};

use crate::args::Lifetime;
use crate::config::Ctx;

/// How long to wait for a node's verdict.
pub const WAIT_LIMIT: Duration = Duration::from_secs(600);

/// A `--node` value as a node id.
pub fn node_id(text: &str) -> Result<NodeId> {
    text.parse().with_context(|| format!("--node {text:?} is not a node id; find one with `zgrid nodes`"))
}

/// A `--node` value as a node id: a whole id, or the start of exactly one node's id in the
/// directory (as `zgrid live` shows them, like git's short hashes).
pub async fn resolve_node(client: &ExplorerClient, text: &str) -> Result<NodeId> {
    if let Ok(id) = text.parse() {
        return Ok(id);
    }
    if !text.chars().all(|c| c.is_ascii_alphanumeric()) {
        return node_id(text);
    }
    if text.len() < MIN_PREFIX {
        bail!(
            "--node {text:?} is too short: give a node id or its first {MIN_PREFIX} characters or more (`zgrid nodes` lists them)"
        );
    }
    let listed = client.all_nodes(&zgrid_types::api::NodeFilter::default(), None).await?;
    let matches = listed.iter().map(|n| n.node_id).filter(|id| id.to_string().starts_with(text)).collect();
    pick_node(text, matches)
}

/// Fewest characters of a node id taken as its start.
const MIN_PREFIX: usize = 4;

/// The one node id starting with `text` among `matches`.
fn pick_node(text: &str, matches: Vec<NodeId>) -> Result<NodeId> {
    match matches.as_slice() {
        [one] => Ok(*one),
        [] => bail!("--node {text:?}: no node's id starts with it; find one with `zgrid nodes`"),
        many => {
            let ids: Vec<String> = many.iter().map(ToString::to_string).collect();
            bail!("--node {text:?} is the start of {} node ids ({}); give more of it", many.len(), ids.join(", "))
        }
    }
}

/// The Unix time `lifetime` from now ends.
pub fn expiry(lifetime: Lifetime) -> i64 {
    zgrid_types::unix_now().saturating_add(i64::try_from(lifetime.0.as_secs()).unwrap_or(i64::MAX / 2))
}

async fn send(client: &ExplorerClient, identity: &Identity, spec: WorkloadSpec, new: bool) -> Result<WorkloadRecord> {
    spec.validate(zgrid_types::unix_now()).map_err(|e| anyhow::anyhow!("invalid workload: {e}"))?;
    let signed = Signed::sign(spec, &identity.keypair);
    let record = if new { client.create_workload(&signed).await? } else { client.update_workload(&signed).await? };
    Ok(record)
}

/// What a workload says of itself besides what runs: its description for people and its
/// metadata for tools.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notes {
    /// Free text for people.
    pub description: String,
    /// Free text for tools (`zgrid k8s` keeps JSON there).
    pub metadata: String,
}

impl Notes {
    /// A description alone.
    pub fn described(description: &str) -> Self {
        Self { description: description.to_owned(), metadata: String::new() }
    }

    /// The notes of a submitted workload.
    pub fn of(record: &WorkloadRecord) -> Self {
        let spec = &record.workload.payload;
        Self { description: spec.description.clone(), metadata: spec.metadata.clone() }
    }
}

/// A new workload (version 1, a fresh id) of `identity` on `node_id` until `expires_at`.
pub fn new_spec(
    identity: &Identity,
    node_id: NodeId,
    expires_at: i64,
    notes: &Notes,
    data: WorkloadData,
) -> Result<WorkloadSpec> {
    Ok(WorkloadSpec {
        id: zgrid_client::new_workload_id(),
        version: 1,
        owner: Ctx::user_id(identity)?,
        owner_key: identity.keypair.public(),
        node_id,
        expires_at,
        description: notes.description.clone(),
        metadata: notes.metadata.clone(),
        data,
    })
}

/// Check, sign and submit a new workload (version 1) on `node_id` until `expires_at`.
pub async fn create(
    client: &ExplorerClient,
    identity: &Identity,
    node_id: NodeId,
    expires_at: i64,
    description: &str,
    data: WorkloadData,
) -> Result<WorkloadRecord> {
    let spec = new_spec(identity, node_id, expires_at, &Notes::described(description), data)?;
    submit_new(client, identity, spec).await
}

/// Check, sign and submit `spec`, a new workload ([`new_spec`]).
pub async fn submit_new(client: &ExplorerClient, identity: &Identity, spec: WorkloadSpec) -> Result<WorkloadRecord> {
    send(client, identity, spec, true).await
}

/// Check, sign and submit `spec`, a later version of a workload.
pub async fn submit_update(client: &ExplorerClient, identity: &Identity, spec: WorkloadSpec) -> Result<WorkloadRecord> {
    send(client, identity, spec, false).await
}

/// Check, sign and submit the next version of `record` with new `data`; the rest is kept.
pub async fn update(
    client: &ExplorerClient,
    identity: &Identity,
    record: &WorkloadRecord,
    data: WorkloadData,
) -> Result<WorkloadRecord> {
    let current = &record.workload.payload;
    let spec = WorkloadSpec { version: current.version + 1, data, ..current.clone() };
    send(client, identity, spec, false).await
}

/// Poll the explorer until the node reports `ok`, `error` or `deleted` on `version` (or a later
/// one) of workload `id`, and return the record then. An `ok` whose data says `"stable": false`
/// (a container that has just started) is not a verdict yet: the node says when it has kept
/// running through its settle window, or reports how it stopped. `progress` sees every polled record with
/// the node's result on that version so far.
pub async fn verdict(
    client: &ExplorerClient,
    id: &WorkloadId,
    version: u32,
    progress: impl FnMut(&WorkloadRecord, Option<&WorkloadResult>),
) -> Result<WorkloadRecord> {
    verdict_within(client, id, version, WAIT_LIMIT, progress).await
}

/// Whether `result` is the node's verdict (see [`verdict`]).
pub(super) fn is_verdict(result: &WorkloadResult) -> bool {
    match result.state {
        ResultState::Provisioning => false,
        ResultState::Ok => result.data.get("stable") != Some(&false.into()),
        ResultState::Error | ResultState::Deleted => true,
    }
}

/// [`verdict`], waiting at most `limit`.
pub async fn verdict_within(
    client: &ExplorerClient,
    id: &WorkloadId,
    version: u32,
    limit: Duration,
    mut progress: impl FnMut(&WorkloadRecord, Option<&WorkloadResult>),
) -> Result<WorkloadRecord> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let record = client.workload(id).await?;
        let result = record.result.as_ref().map(|r| &r.payload).filter(|r| r.version >= version);
        progress(&record, result);
        if result.is_some_and(is_verdict) {
            return Ok(record);
        }
        if record.state != WorkloadState::Active {
            bail!("workload {id} is {} now, so its node will not run it", record.state.as_str());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("no verdict from the node within {} s; check `zgrid live` later", limit.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use zgrid_types::{ResultState, WorkloadResult};

    fn result(state: ResultState, data: serde_json::Value) -> WorkloadResult {
        let node_id = zgrid_types::Keypair::from_seed(&[1; 32]).public();
        let workload_id = "0123456789abcdef".parse().unwrap();
        WorkloadResult { workload_id, version: 1, node_id, state, message: String::new(), data, timestamp: 0 }
    }

    #[test]
    fn a_short_node_id_names_one_node_or_says_what_is_wrong() {
        let [a, b] = [[1; 32], [2; 32]].map(|seed| zgrid_types::Keypair::from_seed(&seed).public());
        assert_eq!(super::pick_node("ab", vec![a]).unwrap(), a);
        let none = super::pick_node("abcd", vec![]).unwrap_err().to_string();
        assert!(none.contains("no node's id starts with it") && none.contains("zgrid nodes"), "{none}");
        let both = super::pick_node("abcd", vec![a, b]).unwrap_err().to_string();
        assert!(both.contains("the start of 2 node ids") && both.contains(&a.to_string()), "{both}");
    }

    #[test]
    fn a_container_that_has_just_started_is_not_a_verdict_until_the_node_calls_it_stable() {
        let verdict = |state, data| super::is_verdict(&result(state, data));
        assert!(!verdict(ResultState::Provisioning, serde_json::json!({})));
        assert!(!verdict(ResultState::Ok, serde_json::json!({ "stable": false })));
        assert!(verdict(ResultState::Ok, serde_json::json!({ "stable": true })));
        assert!(verdict(ResultState::Ok, serde_json::Value::Null), "other kinds say nothing of it");
        assert!(verdict(ResultState::Error, serde_json::json!({ "restarting": true })));
    }
}
