//! A client of a node agent's own API: what only the node has, such as a workload's output.
//! Every call is signed by the workload's owner; the node checks the key against the workload.

use futures::{Stream, StreamExt};
use reqwest::Method;
use zgrid_types::{Keypair, WorkloadId};

use crate::http::{ClientError, ClientResult, Http};

/// A connection to one node agent, signing as a workload owner.
#[derive(Clone)]
pub struct NodeClient {
    http: Http,
}

impl NodeClient {
    /// A client of the node agent API at `api_url` (from the node's directory entry), signing
    /// with `key`.
    pub fn new(api_url: &str, key: Keypair) -> ClientResult<Self> {
        let mut http = Http::new(api_url, "node")?;
        http.key = Some(key);
        Ok(Self { http })
    }

    /// The workload's recent output (stdout and stderr, interleaved as written), then, with
    /// `follow`, what it writes next until the workload goes away or the stream is dropped.
    pub async fn logs(
        &self,
        id: &WorkloadId,
        follow: bool,
    ) -> ClientResult<impl Stream<Item = ClientResult<Vec<u8>>> + use<>> {
        let path = format!("/v1/workloads/{id}/logs?follow={follow}");
        let resp = self.http.request(Method::GET, &path, None, true).await?;
        Ok(resp.bytes_stream().map(|chunk| chunk.map(|b| b.to_vec()).map_err(|e| ClientError::Decode(e.to_string()))))
    }
}
