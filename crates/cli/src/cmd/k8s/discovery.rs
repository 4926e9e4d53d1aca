//! Finding a cluster's CA as kubeadm's token discovery does, with nothing but the cluster
//! secret: the master publishes its CA in the `cluster-info` ConfigMap, and its controller
//! manager signs that ConfigMap's kubeconfig with every bootstrap token (a detached JWS,
//! HMAC-SHA256 keyed with the token's secret, RFC 7515 appendix F). A CA whose signature checks
//! with the token derived from our secret is the CA of the master that knows our secret, so it
//! is pinned for every later request.
//!
//! The key is the token's secret alone, as Kubernetes' `ComputeDetachedSignature` has it
//! (k8s.io/cluster-bootstrap/token/jws: a go-jose HS256 signer whose key is `[]byte(tokenSecret)`,
//! `kid` the token id).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::api::{self, API_PORT, Unreachable};
use super::credentials::Tokens;
use super::kubeconfig;

/// Most bytes of a `cluster-info` answer read (it holds one small kubeconfig and a signature
/// per token).
const MAX_CLUSTER_INFO: usize = 256 * 1024;

/// The `cluster-info` ConfigMap, as far as it matters here.
#[derive(Deserialize)]
struct ConfigMap {
    #[serde(default)]
    data: BTreeMap<String, String>,
}

/// Why a `cluster-info` was not trusted.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// It carries no signature by our token: the master is still starting (it signs within
    /// seconds), or it was made with another secret.
    #[error(
        "its cluster-info is not signed with this cluster's bootstrap token (id {0}): the master was made with \
         another cluster secret (another identity, or a cluster of the same name made at another time)"
    )]
    Unsigned(String),
    /// The signature does not check: another secret, or a tampered answer.
    #[error(
        "its cluster-info's signature does not match this cluster's secret: the master was made with another \
         cluster secret, or something between here and the master changed its answer"
    )]
    Mismatch,
    /// The answer is not a ConfigMap with a kubeconfig.
    #[error("its cluster-info is not what a Kubernetes master publishes: {0}")]
    Malformed(String),
}

/// The CA certificate (PEM) that the `cluster-info` ConfigMap `body` (JSON) publishes, once its
/// kubeconfig's signature by the bootstrap token of `tokens` checks.
pub fn verify(body: &[u8], tokens: &Tokens) -> Result<Vec<u8>, Refused> {
    let map: ConfigMap = serde_json::from_slice(body).map_err(|e| Refused::Malformed(e.to_string()))?;
    let config = map.data.get("kubeconfig").ok_or_else(|| Refused::Malformed("it has no data.kubeconfig".into()))?;
    let jws =
        map.data.get(&format!("jws-kubeconfig-{}", tokens.id)).ok_or_else(|| Refused::Unsigned(tokens.id.clone()))?;
    check_detached_jws(jws, config.as_bytes(), tokens.secret.as_bytes())?;
    kubeconfig::ca_of(config).map_err(|e| Refused::Malformed(format!("{e:#}")))
}

/// Check the detached JWS `<header>..<signature>` over `content` with HMAC-SHA256 keyed `key`
/// (compared in constant time).
fn check_detached_jws(jws: &str, content: &[u8], key: &[u8]) -> Result<(), Refused> {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let malformed = || Refused::Malformed("its signature is not a detached JWS (<header>..<signature>)".into());
    let (header, signature) = jws.split_once("..").ok_or_else(malformed)?;
    if header.is_empty() || header.contains('.') || signature.contains('.') {
        return Err(malformed());
    }
    let signature = b64.decode(signature).map_err(|_| malformed())?;
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(header.as_bytes());
    mac.update(b".");
    mac.update(b64.encode(content).as_bytes());
    mac.verify_slice(&signature).map_err(|_| Refused::Mismatch)
}

/// Fetch `cluster-info` from the master at `master` and return its CA (PEM) once verified.
///
/// This is the one request made without checking the server's certificate: nothing is known of
/// the cluster's CA yet, and learning it is the point. Trust comes from the signature instead,
/// which only a master holding our cluster secret can make; nothing secret is sent.
pub async fn ca(master: Ipv4Addr, tokens: &Tokens) -> Result<Vec<u8>> {
    let client = reqwest::Client::builder()
        .tls_danger_accept_invalid_certs(true)
        .connect_timeout(api::CONNECT_TIMEOUT)
        .timeout(Duration::from_secs(30))
        .build()
        .context("cannot set up an HTTP client")?;
    let url = format!("https://{master}:{API_PORT}/api/v1/namespaces/kube-public/configmaps/cluster-info");
    let body = api::patiently(|| api::read(client.get(&url), master, &url, MAX_CLUSTER_INFO)).await.map_err(|e| {
        // A master publishes cluster-info to anyone: what refuses is something else at that
        // address, on the network this machine is on instead of the cluster's.
        match e.downcast::<api::Answered>() {
            Ok(a) => {
                Unreachable { url, why: format!("what answered there is not the cluster's master ({})", a.status) }
                    .into()
            }
            Err(e) => e,
        }
    })?;
    match verify(&body, tokens) {
        Ok(ca) => Ok(ca),
        Err(why) => bail!("the master at {master} is refused: {why}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kubeconfig as a master publishes it in `cluster-info`.
    const KUBECONFIG: &str = "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: \
        LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUIKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo=\n    server: \
        https://10.20.1.2:6443\n  name: \"\"\ncontexts: null\ncurrent-context: \"\"\nkind: Config\npreferences: {}\n\
        users: null\n";

    /// The JWS of [`KUBECONFIG`] with token `abcdef.0123456789abcdef`, made with openssl:
    ///
    /// ```sh
    /// b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }
    /// H=$(printf '%s' '{"alg":"HS256","kid":"abcdef"}' | b64url)
    /// P=$(printf '%s' "$KUBECONFIG" | b64url)
    /// S=$(printf '%s.%s' "$H" "$P" | openssl dgst -sha256 -hmac 0123456789abcdef -binary | b64url)
    /// echo "$H..$S"
    /// ```
    const JWS: &str = "eyJhbGciOiJIUzI1NiIsImtpZCI6ImFiY2RlZiJ9..46SrMmw5kAjeL8j0nTR7aFT4eKf8ZZVGP2sZZVcXrQk";

    fn tokens(secret: &str) -> Tokens {
        Tokens { id: "abcdef".into(), secret: secret.into(), admin: String::new() }
    }

    fn cluster_info(kubeconfig: &str, signatures: &[(&str, &str)]) -> Vec<u8> {
        let mut data = serde_json::Map::new();
        data.insert("kubeconfig".into(), kubeconfig.into());
        for (id, jws) in signatures {
            data.insert(format!("jws-kubeconfig-{id}"), (*jws).into());
        }
        serde_json::to_vec(&serde_json::json!({ "kind": "ConfigMap", "data": data })).unwrap()
    }

    #[test]
    fn a_cluster_info_signed_with_our_token_gives_its_ca() {
        let body = cluster_info(KUBECONFIG, &[("abcdef", JWS), ("other1", "e30..AAAA")]);
        let ca = verify(&body, &tokens("0123456789abcdef")).unwrap();
        assert_eq!(ca, b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
    }

    #[test]
    fn another_secret_or_a_changed_kubeconfig_is_refused() {
        let body = cluster_info(KUBECONFIG, &[("abcdef", JWS)]);
        assert_eq!(verify(&body, &tokens("0123456789abcdee")), Err(Refused::Mismatch));
        assert_eq!(verify(&body, &tokens("0123456789abcdef0")), Err(Refused::Mismatch));
        let tampered = KUBECONFIG.replace("10.20.1.2", "10.20.1.3");
        assert_eq!(
            verify(&cluster_info(&tampered, &[("abcdef", JWS)]), &tokens("0123456789abcdef")),
            Err(Refused::Mismatch)
        );
        // Not the key of the guest's first draft: the id joined to the secret.
        assert_eq!(verify(&body, &tokens("abcdef.0123456789abcdef")), Err(Refused::Mismatch));
        let unsigned = cluster_info(KUBECONFIG, &[("other1", JWS)]);
        assert_eq!(verify(&unsigned, &tokens("0123456789abcdef")), Err(Refused::Unsigned("abcdef".into())));
    }

    #[test]
    fn malformed_signatures_and_answers_are_refused() {
        let secret = tokens("0123456789abcdef");
        for jws in ["", "..", "abc", "a.b.c", "a..b..c", "a..!!!"] {
            let body = cluster_info(KUBECONFIG, &[("abcdef", jws)]);
            assert!(matches!(verify(&body, &secret), Err(Refused::Malformed(_))), "{jws:?}");
        }
        assert!(matches!(verify(b"<html>", &secret), Err(Refused::Malformed(_))));
        assert!(matches!(verify(br#"{"data":{}}"#, &secret), Err(Refused::Malformed(_))));
    }
}
