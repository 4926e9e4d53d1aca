//! A cluster's credentials, all derived from the deployer's identity, so that any machine holding
//! the identity can reach the cluster with no local state:
//!
//! - the cluster secret, from the identity's ed25519 signature (deterministic) over a message
//!   naming the cluster and its creation time;
//! - from that secret, exactly as the guest's `derive()` in images/kubernetes/zgrid-k8s does: the
//!   bootstrap token workers join with (its id and secret) and the token of the cluster's admin
//!   (user `zgrid-k8s-admin` in group `system:masters`).
//!
//! None of them is ever printed or logged: the secret reaches the nodes sealed, and the admin
//! token only the laptop's kubeconfig (mode 0600).

use std::fmt;

use sha2::{Digest, Sha256};
use zgrid_types::Keypair;

/// The message the cluster secret is signed over begins with this. Everything else zgrid signs
/// begins with a `zgrid/<what>/v<n>` domain and a NUL byte ([`zgrid_types::signing`],
/// [`zgrid_types::auth`]); this message has another prefix and no NUL, so its signature can never
/// be taken for one of theirs, nor theirs for it.
pub const SECRET_DOMAIN: &str = "zgrid-k8s/cluster-secret/v1";

/// The message whose signature makes the secret of cluster `name` created at `created`.
fn secret_message(name: &str, created: i64) -> String {
    format!("{SECRET_DOMAIN}\n{name}\n{created}")
}

/// The secret of cluster `name` created at Unix time `created` by the holder of `key`: hex of
/// SHA-256 over the key's signature of [`secret_message`] (64 hex digits). Cluster names are
/// workload names (no NUL, no newline), so the message is unambiguous.
pub fn cluster_secret(key: &Keypair, name: &str, created: i64) -> ClusterSecret {
    let signature = key.sign(secret_message(name, created).as_bytes());
    ClusterSecret(hex::encode(Sha256::digest(signature.to_bytes())))
}

/// A cluster secret. Its `Debug` form hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterSecret(String);

impl ClusterSecret {
    /// The secret as the guest gets it (sealed to its node).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
impl From<String> for ClusterSecret {
    fn from(secret: String) -> Self {
        Self(secret)
    }
}

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterSecret(<secret>)")
    }
}

/// The first `len` hex digits of SHA-256 over `"<purpose>\n<secret>"`: the guest's `derive()`.
fn derive(purpose: &str, secret: &ClusterSecret, len: usize) -> String {
    let mut digest = hex::encode(Sha256::digest(format!("{purpose}\n{}", secret.0)));
    digest.truncate(len);
    digest
}

/// The tokens a cluster secret gives. Their `Debug` form hides the secret parts.
#[derive(Clone, PartialEq, Eq)]
pub struct Tokens {
    /// The bootstrap token's id (6 hex digits): public, it names the token and the signature of
    /// `cluster-info` made with it.
    pub id: String,
    /// The bootstrap token's secret (16 hex digits).
    pub secret: String,
    /// The admin's bearer token (64 hex digits).
    pub admin: String,
}

impl Tokens {
    /// The tokens of `secret`.
    pub fn of(secret: &ClusterSecret) -> Self {
        Self {
            id: derive("zgrid-k8s bootstrap token id", secret, 6),
            secret: derive("zgrid-k8s bootstrap token secret", secret, 16),
            admin: derive("zgrid-k8s admin token", secret, 64),
        }
    }
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tokens {{ id: {}, secret: <secret>, admin: <secret> }}", self.id)
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use zgrid_types::Signable;

    use super::*;

    fn secret(text: &str) -> ClusterSecret {
        ClusterSecret(text.to_owned())
    }

    #[test]
    fn the_secret_is_the_identitys_own_for_one_cluster() {
        let (me, other) = (Keypair::from_seed(&[1; 32]), Keypair::from_seed(&[2; 32]));
        let mine = cluster_secret(&me, "kube", 1_700_000_000);
        assert_eq!(mine, cluster_secret(&me, "kube", 1_700_000_000), "the same from any machine");
        assert_eq!(mine.expose().len(), 64);
        assert!(mine.expose().chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(mine, cluster_secret(&other, "kube", 1_700_000_000), "another identity");
        assert_ne!(mine, cluster_secret(&me, "kube2", 1_700_000_000), "another cluster");
        assert_ne!(mine, cluster_secret(&me, "kube", 1_700_000_001), "the same name made again");
        assert!(!format!("{mine:?}").contains(mine.expose()));
    }

    #[test]
    fn the_secret_message_is_never_a_signed_payload_or_request() {
        let message = secret_message("kube", 1_700_000_000);
        assert!(!message.contains('\0'));
        let domains = [
            zgrid_types::WorkloadSpec::DOMAIN,
            zgrid_types::WorkloadResult::DOMAIN,
            zgrid_types::DeleteRequest::DOMAIN,
            zgrid_types::invitation::FarmInvitation::DOMAIN,
            zgrid_types::auth::REQUEST_DOMAIN,
        ];
        for domain in domains {
            assert!(domain.starts_with("zgrid/") && !message.starts_with(domain), "{domain}");
        }
    }

    /// The guest's own `derive()`, run by bash from images/kubernetes/zgrid-k8s.
    fn guest_derive(purpose: &str, secret: &str, len: usize) -> String {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../images/kubernetes/zgrid-k8s");
        let text = std::fs::read_to_string(script).expect("the guest script");
        let start = text.find("\nderive() {").expect("derive() in the guest script");
        let end = start + text[start..].find("\n}\n").expect("the end of derive()") + 3;
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!("set -euo pipefail\n{}\nSECRET=\"$1\"\nderive \"$2\" \"$3\"", &text[start..end]))
            .args(["derive", secret, purpose, &len.to_string()])
            .output()
            .expect("bash");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    #[test]
    fn tokens_match_the_guests_derivation() {
        let s = "3f1c0ffee";
        let tokens = Tokens::of(&secret(s));
        assert_eq!(tokens.id, guest_derive("zgrid-k8s bootstrap token id", s, 6));
        assert_eq!(tokens.secret, guest_derive("zgrid-k8s bootstrap token secret", s, 16));
        assert_eq!(tokens.admin, guest_derive("zgrid-k8s admin token", s, 64));
        // A fixed vector too: printf 'zgrid-k8s bootstrap token id\n3f1c0ffee' | sha256sum | cut -c1-6
        assert_eq!(tokens.id, "379f60");
        assert_eq!((tokens.secret.len(), tokens.admin.len()), (16, 64));
        assert!(!format!("{tokens:?}").contains(&tokens.secret));
    }
}
