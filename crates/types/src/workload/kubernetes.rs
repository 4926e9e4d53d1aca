//! The kubernetes workload (seed `001`): a Kubernetes node in a VM on the owner's private
//! network, booted from the grid's Kubernetes image (`scripts/k8s-image`), joining the masters
//! listed in `master_ips`, or a master itself when that list is empty.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::validate::{Valid, check_name, ensure};

/// A Kubernetes VM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Kubernetes {
    /// VM size, 1 to 18 (see [`KubernetesSize`]).
    #[schema(maximum = 255)]
    pub size: u8,
    /// URL of the Kubernetes image's flist on a hub (`scripts/k8s-image` builds it), or a
    /// directory or tar archive on the node, as a VM's [`super::Vm::flist`].
    pub flist: String,
    /// Hub that serves the flist's chunks, when not the flist's own.
    #[serde(default)]
    pub hub_url: String,
    /// The flist's address (BLAKE3 of its file, 64 hex digits): the node refuses any other
    /// content. Empty: whatever the URL serves when the VM is first started.
    #[serde(default)]
    pub flist_hash: String,
    /// Name of the owner's network.
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]{0,63}$")]
    pub network_id: String,
    /// Static address inside the node's /24 of that network.
    #[schema(value_type = String, format = Ipv4)]
    pub ipaddress: Ipv4Addr,
    /// Cluster join secret, encrypted to the node's key.
    pub cluster_secret: String,
    /// Masters to join; empty makes this VM a master.
    #[serde(default)]
    #[schema(value_type = Vec<String>, format = Ipv4)]
    pub master_ips: Vec<Ipv4Addr>,
    /// SSH public keys allowed to log in.
    #[serde(default)]
    pub ssh_keys: Vec<String>,
    /// External datastore for a master's control plane instead of its own etcd: an etcd
    /// endpoint (`http://` or `https://`). Empty on workers.
    #[serde(default)]
    pub datastore_endpoint: String,
    /// Do not install the default ingress controller. The grid's image has none to install, so
    /// this must stay `true` (the default).
    #[serde(default = "yes")]
    pub disable_default_ingress: bool,
    /// Image registries on the private network that the node's containerd pulls from over plain
    /// HTTP, as `host:port` (a `docker-registry` container, say).
    #[serde(default)]
    pub registries: Vec<String>,
}

fn yes() -> bool {
    true
}

/// Most entries of [`Kubernetes::registries`].
pub const MAX_REGISTRIES: usize = 16;

/// The resources of a VM size: virtual CPUs, memory in GiB, disk in GB (the seed node's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KubernetesSize {
    /// Virtual CPUs.
    pub cpu: u32,
    /// Memory in GiB.
    pub memory_gib: u64,
    /// Disk in GB.
    pub disk_gb: u64,
}

const SIZES: [(u32, u64, u64); 18] = [
    (1, 2, 50),
    (2, 4, 100),
    (2, 8, 25),
    (2, 8, 50),
    (2, 8, 200),
    (4, 16, 50),
    (4, 16, 100),
    (4, 16, 400),
    (8, 32, 100),
    (8, 32, 200),
    (8, 32, 800),
    (1, 64, 200),
    (1, 64, 400),
    (1, 64, 800),
    (1, 2, 25),
    (2, 4, 50),
    (4, 8, 50),
    (1, 1, 25),
];

impl KubernetesSize {
    /// The resources of size `n`, if it exists.
    pub fn of(n: u8) -> Option<Self> {
        let (cpu, memory_gib, disk_gb) = *SIZES.get(usize::from(n).checked_sub(1)?)?;
        Some(Self { cpu, memory_gib, disk_gb })
    }
}

impl Kubernetes {
    pub(super) fn validate(&self) -> Valid {
        ensure(KubernetesSize::of(self.size).is_some(), "size", || {
            format!("{} is not a VM size: use 1 to {}", self.size, SIZES.len())
        })?;
        super::container::check_image(&self.flist, &self.hub_url, &self.flist_hash)?;
        check_name(&self.network_id, "network_id")?;
        ensure(!self.cluster_secret.is_empty(), "cluster_secret", || "is empty".into())?;
        for (i, ip) in self.master_ips.iter().enumerate() {
            ensure(*ip != self.ipaddress, &format!("master_ips[{i}]"), || {
                "is this VM's own address; leave master_ips empty to make it a master".into()
            })?;
        }
        super::vm::check_ssh_keys(&self.ssh_keys)?;
        self.check_datastore()?;
        ensure(self.disable_default_ingress, "disable_default_ingress", || {
            "the grid's Kubernetes image has no default ingress controller to install: set it to true \
             (the default) and deploy an ingress controller of your choice into the cluster"
                .into()
        })?;
        ensure(self.registries.len() <= MAX_REGISTRIES, "registries", || {
            format!("has {} entries; the limit is {MAX_REGISTRIES}", self.registries.len())
        })?;
        for (i, registry) in self.registries.iter().enumerate() {
            ensure(is_registry_address(registry), &format!("registries[{i}]"), || {
                format!(
                    "{registry:?} is not host:port (a registry's address on the private network, such as 10.1.2.5:5000)"
                )
            })?;
        }
        Ok(())
    }

    /// The datastore endpoint is an etcd URL, on a master.
    fn check_datastore(&self) -> Valid {
        let field = "datastore_endpoint";
        if self.datastore_endpoint.is_empty() {
            return Ok(());
        }
        ensure(self.master_ips.is_empty(), field, || {
            "is a master's setting; a worker (master_ips given) uses its master's".into()
        })?;
        let url = url::Url::parse(&self.datastore_endpoint).ok();
        let etcd = url.as_ref().is_some_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
        ensure(etcd && !self.datastore_endpoint.contains([',', ' ', '\n']), field, || {
            format!(
                "{:?} is not an etcd endpoint: give one http:// or https:// URL of etcd (the grid's Kubernetes \
                 image has no kine, so SQL datastores are not supported), or leave it empty for the master's own etcd",
                self.datastore_endpoint
            )
        })
    }

    /// Where the image comes from, as the node reads `flist` ([`super::flist_source`]).
    pub fn flist_source(&self) -> Result<super::FlistSource<'_>, crate::ValidationError> {
        super::flist_source(&self.flist, &self.flist_hash)
    }
}

/// Whether `text` is `host:port` alone: a DNS name or IPv4 address and a port.
fn is_registry_address(text: &str) -> bool {
    let Ok(url) = url::Url::parse(&format!("http://{text}")) else { return false };
    let plain = url.username().is_empty() && url.password().is_none() && url.path() == "/";
    let whole = url.query().is_none() && url.fragment().is_none() && !text.contains(['/', '@', '?', '#']);
    let v4_or_name = matches!(url.host(), Some(url::Host::Ipv4(_) | url::Host::Domain(_)));
    plain && whole && v4_or_name && url.port().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_the_node_table() {
        assert_eq!(KubernetesSize::of(1), Some(KubernetesSize { cpu: 1, memory_gib: 2, disk_gb: 50 }));
        assert_eq!(KubernetesSize::of(4).unwrap().memory_gib, 8);
        assert!(KubernetesSize::of(0).is_none());
        assert!(KubernetesSize::of(19).is_none());
    }

    fn master() -> Kubernetes {
        Kubernetes {
            size: 1,
            flist: "https://hub.example/me/zgrid-kubernetes.flist".into(),
            hub_url: String::new(),
            flist_hash: String::new(),
            network_id: "kube".into(),
            ipaddress: Ipv4Addr::new(10, 1, 2, 2),
            cluster_secret: "v1:sealed".into(),
            master_ips: vec![],
            ssh_keys: vec![],
            datastore_endpoint: String::new(),
            disable_default_ingress: true,
            registries: vec![],
        }
    }

    /// The field a refusal names.
    fn refused(k: Kubernetes) -> String {
        k.validate().expect_err("refused").field
    }

    #[test]
    fn what_the_image_cannot_honour_is_refused_naming_the_field() {
        assert!(master().validate().is_ok());
        let with = |f: fn(&mut Kubernetes)| {
            let mut k = master();
            f(&mut k);
            k
        };
        assert_eq!(refused(with(|k| k.disable_default_ingress = false)), "disable_default_ingress");
        assert_eq!(refused(with(|k| k.datastore_endpoint = "postgres://db:5432/k8s".into())), "datastore_endpoint");
        assert_eq!(
            refused(with(|k| k.datastore_endpoint = "http://a:2379,http://b:2379".into())),
            "datastore_endpoint"
        );
        assert!(with(|k| k.datastore_endpoint = "https://10.1.3.4:2379".into()).validate().is_ok());
        let worker_with_datastore = with(|k| {
            k.master_ips = vec![Ipv4Addr::new(10, 1, 2, 3)];
            k.datastore_endpoint = "http://10.1.3.4:2379".into();
        });
        assert_eq!(refused(worker_with_datastore), "datastore_endpoint");
        assert_eq!(refused(with(|k| k.registries = vec!["http://10.1.2.5:5000".into()])), "registries[0]");
        assert_eq!(refused(with(|k| k.flist = String::new())), "flist");
        // The seed's form, without the image's fields, does not parse: the node needs the image.
        let seed = r#"{"size":1,"network_id":"kube","ipaddress":"10.1.2.2","cluster_secret":"s"}"#;
        assert!(serde_json::from_str::<Kubernetes>(seed).is_err());
        let minimal = r#"{"size":1,"flist":"https://hub.example/f.flist","network_id":"kube","ipaddress":"10.1.2.2","cluster_secret":"s"}"#;
        assert!(serde_json::from_str::<Kubernetes>(minimal).unwrap().disable_default_ingress);
    }

    #[test]
    fn registries_are_host_and_port_alone() {
        for good in ["10.1.2.5:5000", "registry.internal:443"] {
            assert!(is_registry_address(good), "{good}");
        }
        for bad in ["10.1.2.5", "http://10.1.2.5:5000", "10.1.2.5:5000/x", "u@h:1", "[::1]:5000", "h:0x"] {
            assert!(!is_registry_address(bad), "{bad}");
        }
    }
}
