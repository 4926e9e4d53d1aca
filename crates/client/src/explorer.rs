//! A typed client of the explorer's `/v1` API that signs state-changing requests.

use std::time::Duration;

use crate::http::{ClientError, ClientResult, Http};
use crate::transport::{HttpClient, HttpOptions};

use futures::{Stream, StreamExt};
use reqwest::Method;
use zgrid_types::api::{
    DesiredSet, FEED_KEEPALIVE_SECS, FeedEvent, MAX_PAGE_SIZE, NodeFilter, Page, WorkloadFilter, WorkloadRecord,
};
use zgrid_types::directory::{Farm, FarmRegistration, Node, NodeHeartbeat, NodeRegistration, User, UserRegistration};
use zgrid_types::{DeleteRequest, Keypair, NodeId, Signed, UserId, WorkloadId, WorkloadResult, WorkloadSpec};

/// A connection to one explorer, optionally with a key to sign with.
#[derive(Clone)]
pub struct ExplorerClient {
    http: Http,
}

/// A fresh random workload id.
pub fn new_workload_id() -> WorkloadId {
    WorkloadId::from_u64(rand::random())
}

impl ExplorerClient {
    /// A client of the explorer at `base` (e.g. `https://explorer.example`) with the default
    /// [`HttpOptions`].
    pub fn new(base: &str) -> ClientResult<Self> {
        Self::with_http(base, &HttpOptions::default().client()?)
    }

    /// A client of the explorer at `base` over `http` (its trusted CAs and time limits).
    pub fn with_http(base: &str, http: &HttpClient) -> ClientResult<Self> {
        Ok(Self { http: Http::new(base, "explorer", http)? })
    }

    /// The same client, signing with `key`.
    pub fn with_key(mut self, key: Keypair) -> Self {
        self.http.key = Some(key);
        self
    }

    /// The key this client signs with.
    pub fn signer(&self) -> ClientResult<zgrid_types::PublicKey> {
        self.http.key.as_ref().map(Keypair::public).ok_or(ClientError::NoKey)
    }

    /// The explorer's base URL.
    pub fn base_url(&self) -> &str {
        self.http.base()
    }

    /// Register the signing key as user `name`.
    pub async fn register_user(&self, name: &str, email: &str) -> ClientResult<User> {
        let key = self.http.key.as_ref().ok_or(ClientError::NoKey)?;
        let reg = UserRegistration { name: name.into(), email: email.into(), public_key: key.public() };
        self.http.call(Method::POST, "/v1/users", Some(&reg), true).await
    }

    /// User `id`.
    pub async fn user(&self, id: UserId) -> ClientResult<User> {
        self.http.get(&format!("/v1/users/{id}")).await
    }

    /// The user registered with the signing key, if any.
    pub async fn whoami(&self) -> ClientResult<Option<User>> {
        let key = self.http.key.as_ref().ok_or(ClientError::NoKey)?;
        match self.http.get(&format!("/v1/users?public_key={}", key.public())).await {
            Ok(u) => Ok(Some(u)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Create a farm owned by the signing user.
    pub async fn create_farm(&self, reg: &FarmRegistration) -> ClientResult<Farm> {
        self.http.call(Method::POST, "/v1/farms", Some(reg), true).await
    }

    /// One farm.
    pub async fn farm(&self, id: zgrid_types::FarmId) -> ClientResult<Farm> {
        self.http.get(&format!("/v1/farms/{id}")).await
    }

    /// A page of farms.
    pub async fn farms(&self, page: u32, size: u32) -> ClientResult<Page<Farm>> {
        self.http.get(&format!("/v1/farms?page={page}&size={size}")).await
    }

    /// Register (or refresh) the signing key as a node.
    pub async fn register_node(&self, reg: &NodeRegistration) -> ClientResult<Node> {
        self.http.call(Method::POST, "/v1/nodes", Some(reg), true).await
    }

    /// Report the signing node's used capacity.
    pub async fn heartbeat(&self, beat: &NodeHeartbeat) -> ClientResult<()> {
        let key = self.http.key.as_ref().ok_or(ClientError::NoKey)?;
        self.http.call(Method::POST, &format!("/v1/nodes/{}/heartbeat", key.public()), Some(beat), true).await
    }

    /// Nodes matching `filter`.
    pub async fn nodes(&self, filter: &NodeFilter) -> ClientResult<Page<Node>> {
        let query = serde_urlencoded::to_string(filter).map_err(|e| ClientError::Decode(e.to_string()))?;
        self.http.get(&format!("/v1/nodes?{query}")).await
    }

    /// One node.
    pub async fn node(&self, id: &NodeId) -> ClientResult<Node> {
        self.http.get(&format!("/v1/nodes/{id}")).await
    }

    /// Submit a new signed workload.
    pub async fn create_workload(&self, w: &Signed<WorkloadSpec>) -> ClientResult<WorkloadRecord> {
        self.http.call(Method::POST, "/v1/workloads", Some(w), true).await
    }

    /// Submit a newer signed version of a workload.
    pub async fn update_workload(&self, w: &Signed<WorkloadSpec>) -> ClientResult<WorkloadRecord> {
        self.http.call(Method::PUT, &format!("/v1/workloads/{}", w.payload.id), Some(w), true).await
    }

    /// Sign and send a delete request for workload `id` owned by `owner`.
    pub async fn delete_workload(&self, id: &WorkloadId, owner: UserId) -> ClientResult<WorkloadRecord> {
        let key = self.http.key.as_ref().ok_or(ClientError::NoKey)?;
        let request =
            Signed::sign(DeleteRequest { workload_id: id.clone(), owner, requested_at: zgrid_types::unix_now() }, key);
        self.http.call(Method::POST, &format!("/v1/workloads/{id}/delete"), Some(&request), true).await
    }

    /// Report a node-signed result.
    pub async fn post_result(&self, r: &Signed<WorkloadResult>) -> ClientResult<()> {
        self.http.call(Method::POST, &format!("/v1/workloads/{}/results", r.payload.workload_id), Some(r), true).await
    }

    /// One workload.
    pub async fn workload(&self, id: &WorkloadId) -> ClientResult<WorkloadRecord> {
        self.http.get(&format!("/v1/workloads/{id}")).await
    }

    /// Workloads matching `filter`.
    pub async fn workloads(&self, filter: &WorkloadFilter) -> ClientResult<Page<WorkloadRecord>> {
        let query = serde_urlencoded::to_string(filter).map_err(|e| ClientError::Decode(e.to_string()))?;
        self.http.get(&format!("/v1/workloads?{query}")).await
    }

    /// Every workload of `owner` (in `state`, when given), reading page after page.
    pub async fn all_workloads(&self, owner: UserId, state: Option<&str>) -> ClientResult<Vec<WorkloadRecord>> {
        let mut all = Vec::new();
        for page in 1.. {
            let filter = WorkloadFilter {
                owner: Some(owner),
                state: state.map(str::to_owned),
                page: Some(page),
                size: Some(MAX_PAGE_SIZE),
            };
            let listed = self.workloads(&filter).await?;
            let last = listed.items.is_empty();
            all.extend(listed.items);
            if last || all.len() as u64 >= listed.total {
                break;
            }
        }
        Ok(all)
    }

    /// A node's whole desired set and the cursor to stream from.
    pub async fn desired_set(&self, node: &NodeId) -> ClientResult<DesiredSet> {
        self.http.get(&format!("/v1/nodes/{node}/workloads")).await
    }

    /// The signing node's feed of desired-set changes after `cursor`. The stream ends when the
    /// connection does, or with an error when the explorer sends nothing, not even its
    /// keep-alive, for the time limit (at least three keep-alive intervals); reconnect with the
    /// last event's cursor.
    pub async fn feed(&self, cursor: i64) -> ClientResult<impl Stream<Item = ClientResult<FeedEvent>> + use<>> {
        use eventsource_stream::{EventStreamError, Eventsource};
        let key = self.http.key.as_ref().ok_or(ClientError::NoKey)?;
        let path = format!("/v1/nodes/{}/feed?cursor={cursor}", key.public());
        let answer = self.http.request(Method::GET, &path, None, true).await?;
        let idle = self.http.timeout().max(Duration::from_secs(3 * FEED_KEEPALIVE_SECS));
        Ok(answer.stream(Some(idle)).eventsource().filter_map(|ev| async move {
            match ev {
                Ok(ev) if ev.event == "workload" => {
                    Some(serde_json::from_str(&ev.data).map_err(|e| ClientError::Decode(e.to_string())))
                }
                Ok(_) => None,
                Err(EventStreamError::Transport(e)) => Some(Err(e)),
                Err(e) => Some(Err(ClientError::Decode(e.to_string()))),
            }
        }))
    }
}
