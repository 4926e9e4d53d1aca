//! The cluster's private network: a range clear of the ranges every cluster uses inside, made
//! (or reused, when the owner has one of the cluster's name) across the cluster's nodes with
//! `zgrid network`'s own steps, and the laptop's WireGuard access to it.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use base64::Engine;
use ipnet::Ipv4Net;
use zgrid_client::network::Network;
use zgrid_types::api::WorkloadState;
use zgrid_types::{NodeId, WorkloadData};

use super::cluster::Mark;
use crate::cmd::network::{Session, access, members};

/// The ranges inside every cluster (`CLUSTER_CIDR` and `SERVICE_CIDR` in
/// images/kubernetes/zgrid-k8s): the cluster's network must not overlap them, or pods could not
/// tell a pod from a VM.
fn cluster_ranges() -> [(&'static str, Ipv4Net); 2] {
    let net = |a: u8| Ipv4Net::new(Ipv4Addr::new(10, a, 0, 0), 16).expect("16 is a valid prefix length");
    [("pod range", net(42)), ("service range", net(43))]
}

fn overlap(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Check a network range for a cluster, `what` naming it (`--cidr 10.42.0.0/16`): a /16 that
/// overlaps neither the pods' nor the services' range.
pub fn check_cidr(cidr: Ipv4Net, what: &str) -> Result<()> {
    Network::new("check", cidr).with_context(|| what.to_owned())?;
    for (range_name, range) in cluster_ranges() {
        if overlap(cidr, range) {
            bail!(
                "{what} overlaps {range}, the cluster's {range_name} (pods get 10.42.0.0/16, services 10.43.0.0/16): \
                 choose another /16 such as 10.20.0.0/16"
            );
        }
    }
    Ok(())
}

/// The first `10.N.0.0/16` from 10.20 on that overlaps neither `used` nor the cluster's ranges.
pub fn default_cidr(used: &[Ipv4Net]) -> Result<Ipv4Net> {
    (20..=254)
        .map(|n| Ipv4Net::new(Ipv4Addr::new(10, n, 0, 0), 16).expect("16 is a valid prefix length"))
        .find(|c| !used.iter().chain(cluster_ranges().iter().map(|(_, r)| r)).any(|u| overlap(*c, *u)))
        .context("every 10.N.0.0/16 is used by one of your networks: give --cidr")
}

/// The range of cluster `name`'s network: `existing`'s (which `given` must not contradict),
/// else `given`, else the first free one; checked for a cluster.
pub async fn choose_cidr(
    s: &Session,
    name: &str,
    existing: Option<&Network>,
    given: Option<Ipv4Net>,
) -> Result<Ipv4Net> {
    let (cidr, what) = match (existing, given) {
        (Some(network), Some(given)) if network.cidr() != given => bail!(
            "--cidr {given}: your network {name} exists with range {}; leave --cidr out to use it, or choose \
             another --name",
            network.cidr()
        ),
        (Some(network), _) => (network.cidr(), format!("network {name}'s range {}", network.cidr())),
        (None, Some(given)) => (given, format!("--cidr {given}")),
        (None, None) => {
            let cidr = default_cidr(&used_ranges(s).await?)?;
            (cidr, format!("the range {cidr}"))
        }
    };
    check_cidr(cidr, &what)?;
    Ok(cidr)
}

/// The ranges of the owner's networks.
async fn used_ranges(s: &Session) -> Result<Vec<Ipv4Net>> {
    let records = s.client.all_workloads(s.owner, Some(WorkloadState::Active.as_str())).await?;
    Ok(records
        .iter()
        .filter_map(|r| match &r.workload.payload.data {
            WorkloadData::NetworkResource(nr) => Some(nr.network_iprange),
            _ => None,
        })
        .collect())
}

/// The WireGuard public key (base64) of the `wg-quick` config `text`, from its private key.
fn config_public_key(text: &str) -> Option<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let line = text.lines().find(|l| l.trim_start().starts_with("PrivateKey"))?;
    let private: [u8; 32] = b64.decode(line.split_once('=')?.1.trim()).ok()?.try_into().ok()?;
    Some(b64.encode(zgrid_types::sealed::wireguard_public(&private)))
}

/// How the laptop gets its access to the cluster's network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// The config file is an access point of the network already: kept as it is.
    Reuse,
    /// A new access point, its config written to the file.
    Write,
}

/// Decide how the laptop's config at `path` (given with `flag`) gives access to `network`
/// (`None`: not made yet), before anything is made.
pub fn plan_access(path: &Path, network: Option<&Network>, flag: &str) -> Result<Access> {
    if let Ok(text) = std::fs::read_to_string(path) {
        let key = config_public_key(&text);
        if let (Some(key), Some(network)) = (key, network)
            && network.access_points().iter().any(|a| a.public_key == key)
        {
            return Ok(Access::Reuse);
        }
        bail!(
            "{} exists and does not reach network {}: remove it, or choose another file with {flag}",
            path.display(),
            network.map_or("(new)", |n| n.name())
        );
    }
    access::check_output(path, false, flag)?;
    Ok(Access::Write)
}

/// The cluster's network, made or completed, with the laptop's access.
pub struct Prepared {
    /// The network as the explorer has it now.
    pub network: Network,
    /// Whether it was made now.
    pub created: bool,
}

/// Make network `name` over `cidr` (with `egress` or not) on `nodes` until `expires_at`, or,
/// when the owner has one, add to it those of `nodes` it lacks; the network resources carry
/// `mark`. Then give the laptop access as `plan` says, through a public member (the first of
/// `nodes` that is one).
pub async fn prepare(
    s: &Session,
    (name, cidr, egress): (&str, Ipv4Net, bool),
    nodes: &[NodeId],
    expires_at: i64,
    mark: &Mark,
    (plan, wg_config): (&Access, &Path),
) -> Result<Prepared> {
    let created = match s.load(name).await? {
        Some(mut network) => {
            for node in nodes {
                if network.member(node).is_err() {
                    members::join(s, network, *node, None, expires_at, &mark.notes()).await?;
                    network = s.existing(name).await?;
                }
            }
            false
        }
        None => {
            let notes = Mark { network_created: true, ..mark.clone() }.notes();
            members::build(s, Network::new(name, cidr)?.with_egress(egress), nodes, expires_at, &notes).await?;
            true
        }
    };
    let mut network = s.existing(name).await?;
    if *plan == Access::Write {
        let through = nodes
            .iter()
            .chain(network.members().iter().map(|m| &m.node_id))
            .find(|n| network.member(n).is_ok_and(|m| m.endpoint().is_some()))
            .copied()
            .with_context(|| {
                format!("no member of network {name} has a public address and port: this machine could not reach it")
            })?;
        access::grant(s, network, through, None, wg_config).await?;
        network = s.existing(name).await?;
    }
    Ok(Prepared { network, created })
}

/// Where the laptop's `wg-quick` config goes without `--wg-config`:
/// `<zgrid home>/wireguard/<name>.conf` (a `wg-quick` interface name: at most 15 characters).
pub fn default_wg_config(home: &Path, name: &str) -> PathBuf {
    home.join("wireguard").join(format!("{name}.conf"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> Ipv4Net {
        text.parse().unwrap()
    }

    #[test]
    fn cluster_networks_stay_clear_of_the_pod_and_service_ranges() {
        assert!(check_cidr(net("10.20.0.0/16"), "--cidr 10.20.0.0/16").is_ok());
        for taken in ["10.42.0.0/16", "10.43.0.0/16"] {
            let err = check_cidr(net(taken), &format!("--cidr {taken}")).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("--cidr {taken} overlaps {taken}")) && err.contains("10.20.0.0/16"),
                "{err}"
            );
        }
        let err = format!("{:#}", check_cidr(net("10.20.1.0/24"), "--cidr 10.20.1.0/24").unwrap_err());
        assert!(err.contains("/16"), "{err}");
    }

    #[test]
    fn the_default_range_avoids_the_owners_networks_and_the_clusters() {
        assert_eq!(default_cidr(&[]).unwrap(), net("10.20.0.0/16"));
        assert_eq!(default_cidr(&[net("10.20.0.0/16"), net("10.21.0.0/16")]).unwrap(), net("10.22.0.0/16"));
        let up_to_41: Vec<Ipv4Net> = (20..42).map(|n| net(&format!("10.{n}.0.0/16"))).collect();
        assert_eq!(default_cidr(&up_to_41).unwrap(), net("10.44.0.0/16"));
    }

    #[test]
    fn a_config_file_is_known_by_its_key() {
        let (private, public) = zgrid_types::sealed::wireguard_keypair();
        let b64 = base64::engine::general_purpose::STANDARD;
        let text = format!("[Interface]\nPrivateKey = {}\nAddress = 10.20.3.1/24\n", b64.encode(private));
        assert_eq!(config_public_key(&text), Some(b64.encode(public)));
        assert_eq!(config_public_key("[Interface]\n"), None);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kube.conf");
        assert_eq!(plan_access(&path, None, "--wg-config").unwrap(), Access::Write);
        std::fs::write(&path, &text).unwrap();
        let err = plan_access(&path, None, "--wg-config").unwrap_err().to_string();
        assert!(err.contains("--wg-config"), "{err}");
        let bad = dir.path().join("a-name-far-too-long-for-wg.conf");
        assert!(plan_access(&bad, None, "--wg-config").is_err());
    }
}
