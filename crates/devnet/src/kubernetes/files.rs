//! The files a [`ControlPlane`](super::ControlPlane) gives its processes: the service-account
//! key pair, the static token file and the admin's kubeconfig.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, Result};
use base64::Engine;

/// The user the static token authenticates, in group `system:masters` (may do anything).
const ADMIN: &str = "zgrid-admin";

/// Write a new service-account key pair (ECDSA P-256; `sa.key`, `sa.pub`) and a token file
/// (`tokens.csv`) with one admin token into `dir`; the token.
pub(super) fn write_credentials(dir: &Path) -> Result<String> {
    let key = rcgen::KeyPair::generate().context("cannot generate the service-account key")?;
    write(&dir.join("sa.key"), &key.serialize_pem())?;
    write(&dir.join("sa.pub"), &key.public_key_pem())?;
    let token = format!("{:032x}", rand::random::<u128>());
    write(&dir.join("tokens.csv"), &format!("{token},{ADMIN},{ADMIN},system:masters\n"))?;
    Ok(token)
}

/// Write the CA kubelets trust for the API server's connections to them (`kubelet-ca.crt`)
/// and the client certificate it signs for the API server (`apiserver-kubelet-client.crt` and
/// `.key`, user `kube-apiserver-kubelet-client` in `system:masters`) into `dir`.
pub(super) fn write_kubelet_client(dir: &Path) -> Result<()> {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let mut ca = CertificateParams::new(Vec::<String>::new()).context("kubelet client CA parameters")?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "zgrid devnet kubelet client CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let issuer = CertifiedIssuer::self_signed(ca, KeyPair::generate().context("cannot generate a CA key")?)
        .context("cannot make the kubelet client CA")?;
    let key = KeyPair::generate().context("cannot generate the API server's kubelet client key")?;
    let mut client = CertificateParams::new(Vec::<String>::new()).context("client parameters")?;
    client.distinguished_name.push(DnType::CommonName, "kube-apiserver-kubelet-client");
    client.distinguished_name.push(DnType::OrganizationName, "system:masters");
    client.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = client.signed_by(&key, &issuer).context("cannot sign the API server's kubelet client certificate")?;
    write(&dir.join("kubelet-ca.crt"), &issuer.pem())?;
    write(&dir.join("apiserver-kubelet-client.crt"), &cert.pem())?;
    write(&dir.join("apiserver-kubelet-client.key"), &key.serialize_pem())
}

/// Write a kubeconfig to `path` for the admin `token` at `server`, trusting the certificates
/// in `ca_pem` (the API server's self-signed certificate and its CA).
pub(super) fn write_kubeconfig(path: &Path, server: &str, ca_pem: &[u8], token: &str) -> Result<()> {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let config = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: zgrid-devnet
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: {ADMIN}
  user:
    token: {token}
contexts:
- name: zgrid-devnet
  context:
    cluster: zgrid-devnet
    user: {ADMIN}
current-context: zgrid-devnet
"
    );
    write(path, &config)
}

/// Write `text` to `path`, readable by its owner only (keys and tokens).
fn write(path: &Path, text: &str) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(text.as_bytes()).with_context(|| format!("cannot write {}", path.display()))
}
