//! A client of a node agent's own API: what only the node has, such as a workload's output.
//! Every call is signed by the workload's owner; the node checks the key against the workload.

use futures::{Stream, StreamExt};
use reqwest::Method;
use zgrid_types::{Keypair, WorkloadId};

use crate::http::{ClientResult, Http};
use crate::transport::{HttpClient, HttpOptions};

/// A connection to one node agent, signing as a workload owner.
#[derive(Clone)]
pub struct NodeClient {
    http: Http,
}

impl NodeClient {
    /// A client of the node agent API at `api_url` (from the node's directory entry), signing
    /// with `key`, with the default [`HttpOptions`].
    pub fn new(api_url: &str, key: Keypair) -> ClientResult<Self> {
        Self::with_http(api_url, key, &HttpOptions::default().client()?)
    }

    /// A client of the node agent API at `api_url`, signing with `key`, over `http` (its
    /// trusted CAs and time limits).
    pub fn with_http(api_url: &str, key: Keypair, http: &HttpClient) -> ClientResult<Self> {
        let mut http = Http::new(api_url, "node", http)?;
        http.key = Some(key);
        Ok(Self { http })
    }

    /// The workload's recent output (stdout and stderr, interleaved as written), then, with
    /// `follow`, what it writes next until the workload goes away or the stream is dropped (a
    /// followed container may rightly be quiet, so only a dead connection ends it early).
    pub async fn logs(
        &self,
        id: &WorkloadId,
        follow: bool,
    ) -> ClientResult<impl Stream<Item = ClientResult<Vec<u8>>> + use<>> {
        let path = format!("/v1/workloads/{id}/logs?follow={follow}");
        let answer = self.http.request(Method::GET, &path, None, true).await?;
        let idle = (!follow).then(|| self.http.timeout());
        Ok(answer.stream(idle).map(|piece| piece.map(|b| b.to_vec())))
    }
}
