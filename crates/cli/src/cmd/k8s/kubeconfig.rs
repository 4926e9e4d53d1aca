//! Kubeconfig files: reading the CA out of the one a master publishes in `cluster-info`, and
//! writing the laptop's, which reaches the master over the private network as the cluster's
//! admin.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use base64::Engine;
use serde::{Deserialize, Serialize};

/// The first line of every kubeconfig `zgrid k8s` writes: only a file that starts with it is
/// overwritten.
const MARK: &str = "# Written by `zgrid k8s`";

/// The parts of a kubeconfig this module reads and writes (field names as kubectl has them).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Kubeconfig {
    #[serde(default, rename = "apiVersion")]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    clusters: Vec<NamedCluster>,
    #[serde(default)]
    users: Option<Vec<NamedUser>>,
    #[serde(default)]
    contexts: Option<Vec<NamedContext>>,
    #[serde(default)]
    current_context: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct NamedCluster {
    name: String,
    cluster: Cluster,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Cluster {
    server: String,
    /// The CA's certificates, PEM, in base64.
    certificate_authority_data: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct NamedUser {
    name: String,
    user: User,
}

#[derive(Debug, Serialize, Deserialize)]
struct User {
    token: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct NamedContext {
    name: String,
    context: ContextRef,
}

#[derive(Debug, Serialize, Deserialize)]
struct ContextRef {
    cluster: String,
    user: String,
}

/// The CA certificate (PEM) of the first cluster of the kubeconfig `yaml`.
pub fn ca_of(yaml: &str) -> Result<Vec<u8>> {
    let config: Kubeconfig = serde_norway::from_str(yaml).context("it is not a kubeconfig")?;
    let cluster = config.clusters.first().context("it names no cluster")?;
    let data = cluster.cluster.certificate_authority_data.trim();
    let pem = base64::engine::general_purpose::STANDARD
        .decode(data)
        .context("its certificate-authority-data is not base64")?;
    if !pem.starts_with(b"-----BEGIN CERTIFICATE-----") {
        bail!("its certificate-authority-data is not a PEM certificate");
    }
    Ok(pem)
}

/// The kubeconfig of cluster `name`'s admin: the API server at `server` whose certificate
/// `ca_pem` signed, and the admin's bearer `token`.
pub fn admin(name: &str, server: &str, ca_pem: &[u8], token: &str) -> Result<String> {
    let (cluster, user) = (format!("zgrid-{name}"), format!("zgrid-{name}-admin"));
    let config = Kubeconfig {
        api_version: "v1".into(),
        kind: "Config".into(),
        clusters: vec![NamedCluster {
            name: cluster.clone(),
            cluster: Cluster {
                server: server.to_owned(),
                certificate_authority_data: base64::engine::general_purpose::STANDARD.encode(ca_pem),
            },
        }],
        users: Some(vec![NamedUser { name: user.clone(), user: User { token: token.to_owned() } }]),
        contexts: Some(vec![NamedContext {
            name: cluster.clone(),
            context: ContextRef { cluster: cluster.clone(), user },
        }]),
        current_context: cluster,
    };
    let yaml = serde_norway::to_string(&config)?;
    Ok(format!("{MARK} for cluster {name}: its admin, over the cluster's private network.\n{yaml}"))
}

/// Where the kubeconfig of cluster `name` goes without `--kubeconfig`: `~/.kube/zgrid-NAME.yaml`.
pub fn default_path(name: &str) -> Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set: give the kubeconfig's path")?;
    Ok(PathBuf::from(home).join(".kube").join(format!("zgrid-{name}.yaml")))
}

/// Check that a kubeconfig can be written at `path` (given with `flag`): no file there, or one
/// `zgrid k8s` wrote; never someone's own kubeconfig.
pub fn check_path(path: &Path, flag: &str) -> Result<()> {
    match std::fs::read_to_string(path) {
        Ok(text) if text.starts_with(MARK) => Ok(()),
        Ok(_) => bail!(
            "{} exists and is not a kubeconfig `zgrid k8s` wrote: choose another file with {flag} (kubectl takes \
             several in KUBECONFIG=a:b)",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot read {} (choose another file with {flag})", path.display())),
    }
}

/// Write `text` to `path` (mode 0600: it holds the admin token), making its directory if need be.
pub fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    zgrid_client::write_private(path, text.as_bytes())
        .with_context(|| format!("cannot write the kubeconfig {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &[u8] = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    #[test]
    fn the_admin_kubeconfig_reads_back_with_its_ca_server_and_token() {
        let text = admin("kube", "https://10.20.1.2:6443", PEM, "t0k3n").unwrap();
        assert!(text.starts_with(MARK));
        assert_eq!(ca_of(&text).unwrap(), PEM);
        let config: Kubeconfig = serde_norway::from_str(&text).unwrap();
        assert_eq!(config.clusters[0].cluster.server, "https://10.20.1.2:6443");
        assert_eq!(config.users.as_ref().unwrap()[0].user.token, "t0k3n");
        assert_eq!(config.current_context, "zgrid-kube");
        assert_eq!(config.contexts.as_ref().unwrap()[0].context.user, "zgrid-kube-admin");
        assert!(text.contains("apiVersion: v1") && text.contains("kind: Config"), "{text}");
    }

    #[test]
    fn a_kubeconfig_without_a_ca_is_refused() {
        let no_ca = "apiVersion: v1\nkind: Config\nclusters:\n- name: x\n  cluster:\n    server: https://a:6443\n";
        assert!(ca_of(no_ca).is_err());
        let not_pem = "clusters:\n- name: x\n  cluster:\n    server: s\n    certificate-authority-data: aGVsbG8=\n";
        assert!(format!("{:#}", ca_of(not_pem).unwrap_err()).contains("not a PEM"));
        assert!(ca_of("- just\n- a list\n").is_err());
    }

    #[test]
    fn only_kubeconfigs_zgrid_wrote_are_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        assert!(check_path(&path, "--output").is_ok(), "absent");
        std::fs::write(&path, "apiVersion: v1\n").unwrap();
        let err = check_path(&path, "--output").unwrap_err().to_string();
        assert!(err.contains("--output"), "{err}");
        write(&path, &admin("kube", "https://10.20.1.2:6443", PEM, "t").unwrap()).unwrap();
        assert!(check_path(&path, "--output").is_ok());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
