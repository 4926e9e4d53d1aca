//! A typed client of the explorer's `/v1` API that signs state-changing requests.

use futures::{Stream, StreamExt};
use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use zgrid_types::api::{ApiError, DesiredSet, FeedEvent, NodeFilter, Page, WorkloadFilter, WorkloadRecord};
use zgrid_types::auth::RequestAuth;
use zgrid_types::directory::{Farm, FarmRegistration, Node, NodeHeartbeat, NodeRegistration, User, UserRegistration};
use zgrid_types::{DeleteRequest, Keypair, NodeId, Signed, UserId, WorkloadId, WorkloadResult, WorkloadSpec};

/// What can go wrong talking to the explorer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The explorer answered with an error.
    #[error("explorer refused the request ({status}): {}{}", field.as_ref().map(|f| format!("{f}: ")).unwrap_or_default(), message)]
    Api {
        /// HTTP status.
        status: u16,
        /// The explorer's explanation.
        message: String,
        /// The field at fault, if any.
        field: Option<String>,
    },
    /// The explorer could not be reached or the connection broke.
    #[error("cannot reach the explorer at {url}: {source}")]
    Transport {
        /// The URL tried.
        url: String,
        /// The failure.
        source: reqwest::Error,
    },
    /// The answer was not what the API promises.
    #[error("unexpected answer from the explorer: {0}")]
    Decode(String),
    /// A signed call was made without a key.
    #[error("this call must be signed; load an identity first")]
    NoKey,
    /// The explorer URL is not usable.
    #[error("{0:?} is not an explorer URL such as http://127.0.0.1:8080")]
    BadUrl(String),
}

impl ClientError {
    /// The HTTP status the explorer answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Result alias for client calls.
pub type ClientResult<T> = Result<T, ClientError>;

/// A connection to one explorer, optionally with a key to sign with.
#[derive(Clone)]
pub struct ExplorerClient {
    base: url::Url,
    http: reqwest::Client,
    key: Option<Keypair>,
}

/// A fresh random workload id.
pub fn new_workload_id() -> WorkloadId {
    WorkloadId::from_u64(rand::random())
}

impl ExplorerClient {
    /// A client of the explorer at `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: &str) -> ClientResult<Self> {
        let base = url::Url::parse(base)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| ClientError::BadUrl(base.to_string()))?;
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| ClientError::Transport { url: base.to_string(), source: e })?;
        Ok(Self { base, http, key: None })
    }

    /// The same client, signing with `key`.
    pub fn with_key(mut self, key: Keypair) -> Self {
        self.key = Some(key);
        self
    }

    /// The explorer's base URL.
    pub fn base_url(&self) -> &str {
        self.base.as_str()
    }

    fn url(&self, path_and_query: &str) -> String {
        format!("{}{}", self.base.as_str().trim_end_matches('/'), path_and_query)
    }

    async fn request(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
        signed: bool,
    ) -> ClientResult<reqwest::Response> {
        let url = self.url(path_and_query);
        let body = body.unwrap_or_default();
        let mut req = self.http.request(method.clone(), &url);
        if signed {
            let key = self.key.as_ref().ok_or(ClientError::NoKey)?;
            let nonce = hex::encode(rand::random::<[u8; 16]>());
            let auth = RequestAuth::sign(key, method.as_str(), path_and_query, zgrid_types::unix_now(), nonce, &body);
            req = req.header(reqwest::header::AUTHORIZATION, auth.to_string());
        }
        if !body.is_empty() {
            req = req.header(reqwest::header::CONTENT_TYPE, "application/json").body(body);
        }
        let resp = req.send().await.map_err(|source| ClientError::Transport { url: url.clone(), source })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        Err(match serde_json::from_str::<ApiError>(&text) {
            Ok(e) => ClientError::Api { status, message: e.error, field: e.field },
            Err(_) => ClientError::Api { status, message: text, field: None },
        })
    }

    async fn call<B: Serialize, R: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        signed: bool,
    ) -> ClientResult<R> {
        let body = body.map(|b| serde_json::to_vec(b).expect("zgrid types serialise"));
        let resp = self.request(method, path, body, signed).await?;
        let bytes = resp.bytes().await.map_err(|e| ClientError::Decode(e.to_string()))?;
        let bytes: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
        serde_json::from_slice(bytes).map_err(|e| ClientError::Decode(e.to_string()))
    }

    async fn get<R: DeserializeOwned>(&self, path: &str) -> ClientResult<R> {
        self.call::<(), R>(Method::GET, path, None, false).await
    }

    /// Register the signing key as user `name`.
    pub async fn register_user(&self, name: &str, email: &str) -> ClientResult<User> {
        let key = self.key.as_ref().ok_or(ClientError::NoKey)?;
        let reg = UserRegistration { name: name.into(), email: email.into(), public_key: key.public() };
        self.call(Method::POST, "/v1/users", Some(&reg), true).await
    }

    /// User `id`.
    pub async fn user(&self, id: UserId) -> ClientResult<User> {
        self.get(&format!("/v1/users/{id}")).await
    }

    /// The user registered with the signing key, if any.
    pub async fn whoami(&self) -> ClientResult<Option<User>> {
        let key = self.key.as_ref().ok_or(ClientError::NoKey)?;
        match self.get(&format!("/v1/users?public_key={}", key.public())).await {
            Ok(u) => Ok(Some(u)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Create a farm owned by the signing user.
    pub async fn create_farm(&self, reg: &FarmRegistration) -> ClientResult<Farm> {
        self.call(Method::POST, "/v1/farms", Some(reg), true).await
    }

    /// A page of farms.
    pub async fn farms(&self, page: u32, size: u32) -> ClientResult<Page<Farm>> {
        self.get(&format!("/v1/farms?page={page}&size={size}")).await
    }

    /// Register (or refresh) the signing key as a node.
    pub async fn register_node(&self, reg: &NodeRegistration) -> ClientResult<Node> {
        self.call(Method::POST, "/v1/nodes", Some(reg), true).await
    }

    /// Report the signing node's used capacity.
    pub async fn heartbeat(&self, beat: &NodeHeartbeat) -> ClientResult<()> {
        let key = self.key.as_ref().ok_or(ClientError::NoKey)?;
        self.call(Method::POST, &format!("/v1/nodes/{}/heartbeat", key.public()), Some(beat), true).await
    }

    /// Nodes matching `filter`.
    pub async fn nodes(&self, filter: &NodeFilter) -> ClientResult<Page<Node>> {
        let query = serde_urlencoded::to_string(filter).map_err(|e| ClientError::Decode(e.to_string()))?;
        self.get(&format!("/v1/nodes?{query}")).await
    }

    /// One node.
    pub async fn node(&self, id: &NodeId) -> ClientResult<Node> {
        self.get(&format!("/v1/nodes/{id}")).await
    }

    /// Submit a new signed workload.
    pub async fn create_workload(&self, w: &Signed<WorkloadSpec>) -> ClientResult<WorkloadRecord> {
        self.call(Method::POST, "/v1/workloads", Some(w), true).await
    }

    /// Submit a newer signed version of a workload.
    pub async fn update_workload(&self, w: &Signed<WorkloadSpec>) -> ClientResult<WorkloadRecord> {
        self.call(Method::PUT, &format!("/v1/workloads/{}", w.payload.id), Some(w), true).await
    }

    /// Sign and send a delete request for workload `id` owned by `owner`.
    pub async fn delete_workload(&self, id: &WorkloadId, owner: UserId) -> ClientResult<WorkloadRecord> {
        let key = self.key.as_ref().ok_or(ClientError::NoKey)?;
        let request =
            Signed::sign(DeleteRequest { workload_id: id.clone(), owner, requested_at: zgrid_types::unix_now() }, key);
        self.call(Method::POST, &format!("/v1/workloads/{id}/delete"), Some(&request), true).await
    }

    /// Report a node-signed result.
    pub async fn post_result(&self, r: &Signed<WorkloadResult>) -> ClientResult<()> {
        self.call(Method::POST, &format!("/v1/workloads/{}/results", r.payload.workload_id), Some(r), true).await
    }

    /// One workload.
    pub async fn workload(&self, id: &WorkloadId) -> ClientResult<WorkloadRecord> {
        self.get(&format!("/v1/workloads/{id}")).await
    }

    /// Workloads matching `filter`.
    pub async fn workloads(&self, filter: &WorkloadFilter) -> ClientResult<Page<WorkloadRecord>> {
        let query = serde_urlencoded::to_string(filter).map_err(|e| ClientError::Decode(e.to_string()))?;
        self.get(&format!("/v1/workloads?{query}")).await
    }

    /// A node's whole desired set and the cursor to stream from.
    pub async fn desired_set(&self, node: &NodeId) -> ClientResult<DesiredSet> {
        self.get(&format!("/v1/nodes/{node}/workloads")).await
    }

    /// The signing node's feed of desired-set changes after `cursor`. The stream ends when the
    /// connection does; reconnect with the last event's cursor.
    pub async fn feed(&self, cursor: i64) -> ClientResult<impl Stream<Item = ClientResult<FeedEvent>> + use<>> {
        let key = self.key.as_ref().ok_or(ClientError::NoKey)?;
        let path = format!("/v1/nodes/{}/feed?cursor={cursor}", key.public());
        let resp = self.request(Method::GET, &path, None, true).await?;
        use eventsource_stream::Eventsource;
        Ok(resp.bytes_stream().eventsource().filter_map(|ev| async move {
            match ev {
                Ok(ev) if ev.event == "workload" => {
                    Some(serde_json::from_str(&ev.data).map_err(|e| ClientError::Decode(e.to_string())))
                }
                Ok(_) => None,
                Err(e) => Some(Err(ClientError::Decode(e.to_string()))),
            }
        }))
    }
}
