//! A typed client of the explorer's `/v1` API that signs state-changing requests.

use std::time::Duration;

use crate::http::{ClientError, ClientResult, Http};
use crate::transport::{HttpClient, HttpOptions};

use futures::{Stream, StreamExt};
use reqwest::Method;
use zgrid_types::api::{
    DesiredSet, FEED_KEEPALIVE_SECS, FeedEvent, KeyPage, MAX_PAGE_SIZE, NodeFilter, Page, ResultsReceipt,
    WorkloadFilter, WorkloadRecord,
};
use zgrid_types::directory::{Farm, FarmRegistration, Node, NodeHeartbeat, NodeRegistration, User, UserRegistration};
use zgrid_types::{DeleteRequest, Keypair, NodeId, Signed, UserId, WorkloadId, WorkloadResult, WorkloadSpec};

/// A connection to an explorer, optionally with a key to sign with. It may know several
/// explorers sharing one database: a call that cannot reach the one in use is made again on
/// the next (see [`ExplorerClient::with_http`]).
#[derive(Clone)]
pub struct ExplorerClient {
    http: Http,
}

/// A fresh random workload id.
pub fn new_workload_id() -> WorkloadId {
    WorkloadId::from_u64(rand::random())
}

/// Every item of a keyset listing from `after` on, page after page (`fetch` reads the page after
/// a key), at most `limit` of them when given.
async fn every_page<T, F, Fut>(mut after: Option<String>, limit: Option<usize>, mut fetch: F) -> ClientResult<Vec<T>>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = ClientResult<KeyPage<T>>>,
{
    let mut all = Vec::new();
    loop {
        let listed = fetch(after).await?;
        all.extend(listed.items);
        if let Some(limit) = limit.filter(|l| all.len() >= *l) {
            all.truncate(limit);
            return Ok(all);
        }
        match listed.next {
            Some(next) => after = Some(next),
            None => return Ok(all),
        }
    }
}

impl ExplorerClient {
    /// A client of the explorer at `base` (e.g. `https://explorer.example`, or several URLs
    /// separated by commas, see [`ExplorerClient::with_http`]) with the default [`HttpOptions`].
    pub fn new(base: &str) -> ClientResult<Self> {
        Self::with_http(base, &HttpOptions::default().client()?)
    }

    /// A client of the explorer at `base` over `http` (its trusted CAs and time limits).
    ///
    /// `base` may list several explorers that share one database, separated by commas
    /// (`http://a:8080,http://b:8080`). The first is used until a call cannot reach it (the
    /// connection is refused, breaks or goes silent; not when it answers with an error): the
    /// call is then signed again and made on the next, which stays in use, for this client and
    /// its clones. A URL that is not usable is named in the error.
    pub fn with_http(base: &str, http: &HttpClient) -> ClientResult<Self> {
        let bases: Vec<&str> = base.split(',').map(str::trim).filter(|b| !b.is_empty()).collect();
        if bases.is_empty() {
            return Err(ClientError::BadUrl(base.to_string()));
        }
        Ok(Self { http: Http::with_bases(&bases, "explorer", http)? })
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

    /// The base URL of the explorer in use.
    pub fn base_url(&self) -> &str {
        self.http.base()
    }

    /// Every explorer's base URL, in the order they are tried.
    pub fn base_urls(&self) -> Vec<&str> {
        self.http.bases().collect()
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

    /// One page of the nodes matching `filter`, oldest registration first; `filter.after`
    /// (the previous page's `next`) says where it starts.
    pub async fn nodes(&self, filter: &NodeFilter) -> ClientResult<KeyPage<Node>> {
        let query = serde_urlencoded::to_string(filter).map_err(|e| ClientError::Decode(e.to_string()))?;
        self.http.get(&format!("/v1/nodes?{query}")).await
    }

    /// Every node matching `filter` (from `filter.after`, when given), reading page after page
    /// of `filter.size` (default: the largest), at most `limit` of them when given.
    pub async fn all_nodes(&self, filter: &NodeFilter, limit: Option<usize>) -> ClientResult<Vec<Node>> {
        let filter = NodeFilter { size: filter.size.or(Some(MAX_PAGE_SIZE)), ..filter.clone() };
        every_page(filter.after.clone(), limit, |after| {
            let page = NodeFilter { after, ..filter.clone() };
            async move { self.nodes(&page).await }
        })
        .await
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

    /// Report several results of the signing node in one request (at most
    /// [`zgrid_types::api::MAX_RESULTS`]); the receipt names those refused for good.
    pub async fn post_results(&self, results: &[Signed<WorkloadResult>]) -> ClientResult<ResultsReceipt> {
        let key = self.http.key.as_ref().ok_or(ClientError::NoKey)?;
        self.http.call(Method::POST, &format!("/v1/nodes/{}/results", key.public()), Some(&results), true).await
    }

    /// One workload.
    pub async fn workload(&self, id: &WorkloadId) -> ClientResult<WorkloadRecord> {
        self.http.get(&format!("/v1/workloads/{id}")).await
    }

    /// One page of the workloads matching `filter`, newest first; `filter.after` (the previous
    /// page's `next`) says where it starts.
    pub async fn workloads(&self, filter: &WorkloadFilter) -> ClientResult<KeyPage<WorkloadRecord>> {
        let query = serde_urlencoded::to_string(filter).map_err(|e| ClientError::Decode(e.to_string()))?;
        self.http.get(&format!("/v1/workloads?{query}")).await
    }

    /// Every workload of `owner` (in `state`, when given), newest first, reading page after page.
    pub async fn all_workloads(&self, owner: UserId, state: Option<&str>) -> ClientResult<Vec<WorkloadRecord>> {
        let filter = WorkloadFilter { owner: Some(owner), state: state.map(str::to_owned), after: None, size: None };
        self.all_workloads_matching(&filter, None).await
    }

    /// Every workload matching `filter` (from `filter.after`, when given), newest first, reading
    /// page after page of `filter.size` (default: the largest), at most `limit` when given.
    pub async fn all_workloads_matching(
        &self,
        filter: &WorkloadFilter,
        limit: Option<usize>,
    ) -> ClientResult<Vec<WorkloadRecord>> {
        let filter = WorkloadFilter { size: filter.size.or(Some(MAX_PAGE_SIZE)), ..filter.clone() };
        every_page(filter.after.clone(), limit, |after| {
            let page = WorkloadFilter { after, ..filter.clone() };
            async move { self.workloads(&page).await }
        })
        .await
    }

    /// A node's whole desired set and the cursor to stream from.
    pub async fn desired_set(&self, node: &NodeId) -> ClientResult<DesiredSet> {
        self.http.get(&format!("/v1/nodes/{node}/workloads")).await
    }

    /// The signing node's feed of desired-set changes after `cursor`. The stream ends when the
    /// connection does, or with an error when the explorer sends nothing, not even its
    /// keep-alive, for the time limit (at least three keep-alive intervals); reconnect with the
    /// last event's cursor. Cursors are positions in the explorers' shared database, so the
    /// next explorer (when the one in use cannot be reached) resumes where this one stopped.
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::http::HeaderMap;
    use axum::routing::post;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use zgrid_types::directory::NodeHeartbeat;

    use super::*;

    /// Serve `app` on loopback; its URL.
    async fn serve(app: axum::Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    /// An explorer that records the `Authorization` header of each heartbeat and answers
    /// `status` to it.
    async fn recording(status: u16) -> (String, Arc<Mutex<Vec<String>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let beat = move |headers: HeaderMap| async move {
            log.lock().unwrap().push(headers["authorization"].to_str().unwrap().to_owned());
            axum::http::StatusCode::from_u16(status).unwrap()
        };
        (serve(axum::Router::new().route("/v1/nodes/{id}/heartbeat", post(beat))).await, seen)
    }

    /// A URL nothing listens on.
    fn refused() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    }

    fn nonce(auth: &str) -> &str {
        auth.split(',').find_map(|part| part.strip_prefix("nonce=")).expect("a nonce")
    }

    fn beat() -> NodeHeartbeat {
        NodeHeartbeat::default()
    }

    #[tokio::test]
    async fn a_call_moves_on_to_the_next_explorer_signed_anew_and_stays_there() {
        // The first explorer takes the whole request, then drops the connection unanswered.
        let broken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let broken_url = format!("http://{}", broken.local_addr().unwrap());
        let first_request = tokio::spawn(async move {
            let (mut socket, _) = broken.accept().await.unwrap();
            let mut request = vec![0; 64 << 10];
            let n = socket.read(&mut request).await.unwrap();
            socket.shutdown().await.unwrap();
            String::from_utf8_lossy(&request[..n]).into_owned()
        });
        let (live, seen) = recording(204).await;
        let key = Keypair::from_seed(&rand::random());
        let bases = format!("{broken_url}, {live}");
        let client = ExplorerClient::new(&bases).unwrap().with_key(key);
        assert_eq!(client.base_urls(), [format!("{broken_url}/"), format!("{live}/")]);
        assert_eq!(client.base_url(), format!("{broken_url}/"));

        client.heartbeat(&beat()).await.expect("the second explorer answers");
        let sent_first = first_request.await.unwrap();
        let first_auth = sent_first.lines().find_map(|l| l.strip_prefix("authorization: ")).expect("signed");
        let second_auth = seen.lock().unwrap()[0].clone();
        assert_ne!(nonce(first_auth), nonce(&second_auth), "the retry is signed with a fresh nonce");
        assert_eq!(client.base_url(), format!("{live}/"));

        // Clones share the choice: the next call goes straight to the explorer that answered.
        client.clone().heartbeat(&beat()).await.unwrap();
        assert_eq!(seen.lock().unwrap().len(), 2);

        // A refused connection moves on too, and every explorer unreachable is an error.
        let client = ExplorerClient::new(&format!("{},{live}", refused())).unwrap().with_key(client.http.key.unwrap());
        client.heartbeat(&beat()).await.expect("the second explorer answers");
        assert_eq!(seen.lock().unwrap().len(), 3);
        let none = ExplorerClient::new(&format!("{},{}", refused(), refused())).unwrap();
        let error = none.farm(1).await.expect_err("nobody listens");
        assert!(error.is_unreachable(), "{error}");
    }

    #[tokio::test]
    async fn an_error_answer_from_a_live_explorer_is_not_retried_elsewhere() {
        let (failing, seen_failing) = recording(503).await;
        let (live, seen_live) = recording(204).await;
        let client = ExplorerClient::new(&format!("{failing},{live}")).unwrap().with_key(Keypair::from_seed(&[7; 32]));
        let error = client.heartbeat(&beat()).await.expect_err("503");
        assert_eq!(error.status(), Some(503));
        assert_eq!((seen_failing.lock().unwrap().len(), seen_live.lock().unwrap().len()), (1, 0));
        assert_eq!(client.base_url(), format!("{failing}/"));
    }

    #[test]
    fn a_bad_url_in_a_list_is_named() {
        let error = ExplorerClient::new("http://127.0.0.1:8080, ftp://explorer.example").err().expect("refused");
        assert!(error.to_string().starts_with("\"ftp://explorer.example\" is not a base URL"), "{error}");
        assert!(ExplorerClient::new(" , ").is_err());
    }
}
