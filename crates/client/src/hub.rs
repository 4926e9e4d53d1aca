//! A client of a hub: upload chunks and flists into the caller's namespace (signed), import
//! archives, merge flists, list what is stored, and download chunks.

use std::path::Path;
use std::time::Duration;

use reqwest::Method;
use zgrid_types::Keypair;
use zgrid_types::hub::{FlistInfo, HubStats, MAX_MISSING_QUERY, MergeRequest, MissingQuery, Repository, Stored};

use crate::http::{ClientError, ClientResult, Http};
use crate::transport::{HttpClient, HttpOptions, Payload};

const OCTETS: &str = "application/octet-stream";

/// How long a hub may work on an import or a merge before it answers (it converts the whole
/// archive, or reads every source, first).
const CONVERSION_PATIENCE: Duration = Duration::from_secs(30 * 60);

/// A connection to one hub.
#[derive(Clone)]
pub struct HubClient {
    http: Http,
}

impl HubClient {
    /// A client of the hub at `url` with the default [`HttpOptions`].
    pub fn new(url: &str) -> ClientResult<Self> {
        Self::with_http(url, &HttpOptions::default().client()?)
    }

    /// A client of the hub at `url` over `http` (its trusted CAs and time limits).
    pub fn with_http(url: &str, http: &HttpClient) -> ClientResult<Self> {
        Ok(Self { http: Http::new(url, "hub", http)? })
    }

    /// Sign uploads with `key`; they go to its namespace.
    pub fn with_key(mut self, key: Keypair) -> Self {
        self.http.key = Some(key);
        self
    }

    /// The hub's base URL.
    pub fn url(&self) -> &str {
        self.http.base()
    }

    fn namespace(&self) -> ClientResult<String> {
        Ok(self.http.key.as_ref().ok_or(ClientError::NoKey)?.public().to_string())
    }

    /// Which of `chunks` (hex ids) the hub lacks.
    pub async fn missing(&self, chunks: &[String]) -> ClientResult<Vec<String>> {
        let mut out = Vec::new();
        for part in chunks.chunks(MAX_MISSING_QUERY) {
            let query = MissingQuery { chunks: part.to_vec() };
            let answer: MissingQuery =
                self.http.call(Method::POST, "/api/v1/chunks/missing", Some(&query), false).await?;
            out.extend(answer.chunks);
        }
        Ok(out)
    }

    /// Store a chunk; true when the hub did not have it.
    pub async fn put_chunk(&self, id: &str, bytes: Vec<u8>) -> ClientResult<bool> {
        let path = format!("/api/v1/chunks/{id}");
        let resp = self.http.request(Method::PUT, &path, Some(Payload::bytes(bytes, OCTETS)), true).await?;
        Ok(resp.status() == reqwest::StatusCode::CREATED)
    }

    /// Store the flist file at `file` as `name` in the caller's namespace (its chunks must be
    /// on the hub already).
    pub async fn put_flist(&self, name: &str, file: &Path) -> ClientResult<Stored> {
        let path = format!("/api/v1/flists/{}/{name}", self.namespace()?);
        self.upload(Method::PUT, &path, file, self.http.timeout()).await
    }

    /// Have the hub turn the archive at `file` (tar, tar.gz, OCI image layout as tar, or
    /// `docker save` output) into the flist `name` in the caller's namespace.
    pub async fn import(&self, name: &str, file: &Path) -> ClientResult<Stored> {
        let path = format!("/api/v1/flists/{}/{name}/import", self.namespace()?);
        self.upload(Method::POST, &path, file, CONVERSION_PATIENCE.max(self.http.timeout())).await
    }

    async fn upload(&self, method: Method, path: &str, file: &Path, patience: Duration) -> ClientResult<Stored> {
        let payload =
            Payload::file(file, OCTETS).await.map_err(|e| ClientError::Decode(format!("{}: {e}", file.display())))?;
        self.http.request_patiently(method, path, Some(payload), true, patience).await?.json().await
    }

    /// Merge `sources` (`<owner>/<name>`, lowest first) into `name` in the caller's namespace.
    pub async fn merge(&self, name: &str, sources: Vec<String>) -> ClientResult<Stored> {
        let path = format!("/api/v1/flists/{}/{name}/merge", self.namespace()?);
        let body = serde_json::to_vec(&MergeRequest { sources }).expect("zgrid types serialise");
        let patience = CONVERSION_PATIENCE.max(self.http.timeout());
        let body = Payload::bytes(body, "application/json");
        self.http.request_patiently(Method::POST, &path, Some(body), true, patience).await?.json().await
    }

    /// Remove `name` from the caller's namespace.
    pub async fn delete(&self, name: &str) -> ClientResult<()> {
        let path = format!("/api/v1/flists/{}/{name}", self.namespace()?);
        self.http.request(Method::DELETE, &path, None, true).await.map(drop)
    }

    /// Namespaces with flists.
    pub async fn repositories(&self) -> ClientResult<Vec<Repository>> {
        self.http.get("/api/v1/flists").await
    }

    /// The flists in `owner`'s namespace.
    pub async fn list(&self, owner: &str) -> ClientResult<Vec<FlistInfo>> {
        self.http.get(&format!("/api/v1/flists/{owner}")).await
    }

    /// What the hub has served since it started.
    pub async fn stats(&self) -> ClientResult<HubStats> {
        self.http.get("/api/v1/stats").await
    }
}
