//! Reaching a cluster from this machine over its private network: the master's CA (discovered
//! with the cluster secret), the kubeconfig written for kubectl, and the wait until every VM is a
//! Ready node; and `zgrid k8s kubeconfig`, which does this for a running cluster.

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Serialize;

use super::api::{Api, NodeStatus, Unreachable};
use super::cluster::{self, Cluster, ClusterVm};
use super::credentials::{Tokens, cluster_secret};
use super::{discovery, kubeconfig};
use crate::cmd::network::Session;
use crate::cmd::network::access::absolute;
use crate::output;

/// What reaching the cluster gave.
#[derive(Debug, Serialize)]
pub struct Reached {
    /// The kubeconfig written.
    pub kubeconfig: PathBuf,
    /// The API server's URL.
    pub api: String,
    /// The nodes as the API server has them, every VM Ready among them.
    pub nodes: Vec<NodeStatus>,
}

/// The API server of `cluster`'s master as its admin, once its CA is discovered with the
/// cluster secret; and the CA (PEM). Fails with [`Unreachable`] inside when this machine cannot
/// reach the master.
pub async fn connect(s: &Session, cluster: &Cluster) -> Result<(Api, Vec<u8>)> {
    let master = cluster.master()?.ip;
    let tokens = Tokens::of(&cluster_secret(&s.identity.keypair, &cluster.name, cluster.created));
    let ca = discovery::ca(master, &tokens).await?;
    Ok((Api::new(master, &ca, &tokens.admin)?, ca))
}

/// Wait until every one of `vms` is a Ready node, saying so as each becomes one.
pub async fn wait_ready(s: &Session, api: &Api, vms: &[ClusterVm]) -> Result<Vec<NodeStatus>> {
    api.wait_ready(vms, |vm, node| s.progress(format!("  {} is node {}: Ready", vm.label(), node.name))).await
}

/// Discover `cluster`'s CA from its master, write the admin's kubeconfig at `path`, and wait
/// until every one of `vms` is a Ready node. Fails with [`Unreachable`] inside when this
/// machine cannot reach the master.
pub async fn reach(s: &Session, cluster: &Cluster, vms: &[ClusterVm], path: &Path) -> Result<Reached> {
    let (api, ca) = connect(s, cluster).await?;
    let path = absolute(path);
    kubeconfig::write(&path, &kubeconfig::admin(&cluster.name, &api.server(), &ca, api.token())?)?;
    s.progress(format!("wrote the kubeconfig {}; waiting until every node is Ready", path.display()));
    let nodes = wait_ready(s, &api, vms).await?;
    Ok(Reached { kubeconfig: path, api: api.server(), nodes })
}

/// Whether `error` says this machine cannot reach the master.
pub fn unreachable(error: &anyhow::Error) -> bool {
    error.chain().any(|e| e.is::<Unreachable>())
}

/// How to reach cluster `name` from here and try again: bring up the WireGuard config (`wg`,
/// when known), then `zgrid k8s kubeconfig`.
pub fn hint(name: &str, network: &str, wg: Option<&Path>) -> String {
    let connect = match wg {
        Some(path) => format!("`sudo wg-quick up {}`", absolute(path).display()),
        None => format!(
            "`sudo wg-quick up` the config `zgrid k8s up` wrote, or make one with \
             `zgrid network add-access --name {network} --node NODE`"
        ),
    };
    format!("connect this machine to network {network} ({connect}), then run `zgrid k8s kubeconfig {name}`")
}

/// Print how to use the kubeconfig at `path`.
pub fn print_kubectl(path: &Path) {
    println!("kubeconfig {} (mode 0600: it holds the cluster's admin token)", path.display());
    println!("use it with:  KUBECONFIG={} kubectl get nodes", path.display());
}

/// `zgrid k8s kubeconfig NAME`: write the cluster's kubeconfig at `output` (default:
/// `~/.kube/zgrid-NAME.yaml`) and show its nodes.
pub async fn kubeconfig(s: &Session, name: &str, output: Option<PathBuf>) -> Result<()> {
    let path = match output {
        Some(path) => path,
        None => kubeconfig::default_path(name)?,
    };
    kubeconfig::check_path(&path, "--output")?;
    let cluster = cluster::existing(s, name).await?;
    let reached = reach(s, &cluster, &cluster.vms(), &path).await.map_err(|e| {
        if unreachable(&e) { anyhow::anyhow!("{e:#}; {}", hint(name, &cluster.network, None)) } else { e }
    })?;
    output::report(s.json, &reached, || {
        print_nodes(&reached.nodes);
        print_kubectl(&reached.kubeconfig);
    })
}

/// Print the nodes as a table.
pub fn print_nodes(nodes: &[NodeStatus]) {
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            let ready = if n.ready { "Ready".to_owned() } else { format!("NotReady ({})", n.why) };
            vec![n.name.clone(), n.ip.map_or_else(|| "-".into(), |ip| ip.to_string()), ready]
        })
        .collect();
    output::table(&["NODE", "ADDRESS", "STATUS"], &rows);
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddr};

    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::get;
    use base64::Engine;
    use hmac::{Hmac, Mac};
    use zgrid_serve::testing::TestCa;

    use super::super::api::{API_PORT, Answered, Api};
    use super::super::cluster::{ClusterVm, Role};
    use super::super::credentials::{ClusterSecret, Tokens};
    use super::super::discovery;

    /// A stand-in master on a loopback address of its own at the API port, with a certificate
    /// of `ca` for that address: `cluster-info` signed with `tokens`' bootstrap token, and a
    /// node list for `tokens`' admin alone.
    async fn master(ca: &TestCa, tokens: &Tokens) -> Ipv4Addr {
        let [a, b, c]: [u8; 3] = rand::random();
        let ip = Ipv4Addr::new(127, a, b, c.max(1));
        let files = ca.server_for("master", &[ip.to_string()]);
        let b64 = base64::engine::general_purpose::STANDARD;
        let config = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: \"\"\n  cluster:\n    certificate-authority-data: {}\n    \
             server: https://{ip}:{API_PORT}\n",
            b64.encode(std::fs::read(ca.ca_cert()).unwrap())
        );
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!(r#"{{"alg":"HS256","kid":"{}"}}"#, tokens.id));
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(tokens.secret.as_bytes()).unwrap();
        mac.update(format!("{header}.{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&config)).as_bytes());
        let jws = format!(
            "{header}..{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        );
        let info = serde_json::json!({"data": {"kubeconfig": config, format!("jws-kubeconfig-{}", tokens.id): jws}});
        let admin = format!("Bearer {}", tokens.admin);
        let nodes = serde_json::json!({"items": [
            {"metadata": {"name": "vm-a"}, "status": {"addresses": [{"type": "InternalIP", "address": "10.20.1.2"}],
                "conditions": [{"type": "Ready", "status": "True"}]}},
            {"metadata": {"name": "vm-b"}, "status": {"addresses": [{"type": "InternalIP", "address": "10.20.2.2"}],
                "conditions": [{"type": "Ready", "status": "True"}]}}
        ]});
        let app = axum::Router::new()
            .route(
                "/api/v1/namespaces/kube-public/configmaps/cluster-info",
                get(move || async move { axum::Json(info) }),
            )
            .route(
                "/api/v1/nodes",
                get(move |headers: HeaderMap| async move {
                    match headers.get("authorization").and_then(|v| v.to_str().ok()) {
                        Some(given) if given == admin => Ok(axum::Json(nodes)),
                        _ => Err(StatusCode::UNAUTHORIZED),
                    }
                }),
            );
        let tcp = tokio::net::TcpListener::bind(SocketAddr::from((ip, API_PORT))).await.unwrap();
        let listener = zgrid_serve::Listener::tls(tcp, &files).unwrap();
        tokio::spawn(zgrid_serve::serve(listener, app, std::future::pending()));
        ip
    }

    fn vm(ip: &str) -> ClusterVm {
        ClusterVm {
            role: Role::Worker,
            workload_id: zgrid_client::new_workload_id(),
            node_id: super::super::testing::node(1),
            ip: ip.parse().unwrap(),
            size: 1,
            expires_at: 0,
            result: "ok".into(),
            ok: true,
        }
    }

    #[tokio::test]
    async fn a_master_found_by_its_signed_cluster_info_is_then_trusted_only_with_its_ca() {
        let (ca, tokens) = (TestCa::new("cluster"), Tokens::of(&ClusterSecret::from("s3cret".to_owned())));
        let ip = master(&ca, &tokens).await;

        let found = discovery::ca(ip, &tokens).await.unwrap();
        assert_eq!(found, std::fs::read(ca.ca_cert()).unwrap(), "the CA the master publishes");
        let api = Api::new(ip, &found, &tokens.admin).unwrap();
        let ready = api.wait_ready(&[vm("10.20.1.2"), vm("10.20.2.2")], |_, _| {}).await.unwrap();
        assert_eq!(ready.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["vm-a", "vm-b"]);

        let wrong = Tokens::of(&ClusterSecret::from("another".to_owned()));
        let err = format!("{:#}", discovery::ca(ip, &wrong).await.unwrap_err());
        assert!(err.contains("not signed with this cluster's bootstrap token"), "{err}");
        let stranger = Api::new(ip, &found, &wrong.admin).unwrap().nodes().await.unwrap_err();
        assert_eq!(stranger.downcast_ref::<Answered>().map(|a| a.status), Some(StatusCode::UNAUTHORIZED));
        let other_ca = std::fs::read(TestCa::new("other").ca_cert()).unwrap();
        let err = format!("{:#}", Api::new(ip, &other_ca, &tokens.admin).unwrap().nodes().await.unwrap_err());
        assert!(
            !err.contains("401") && err.contains(&ip.to_string()),
            "a master with another CA is not believed: {err}"
        );
    }
}
