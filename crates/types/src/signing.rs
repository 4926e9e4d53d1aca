//! Canonical bytes and signed envelopes.
//!
//! Everything zgrid signs is a serde value turned into RFC 8785 canonical JSON (sorted keys, no
//! insignificant whitespace, one number form) and prefixed with a domain string that names what
//! it is and the format version, then a NUL byte. The prefix keeps a signature made for one kind
//! of object (a workload) from being replayed as another (a delete request). The explorer, the
//! node and the CLI all verify through [`Signed::verify`].

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::keys::{KeyError, Keypair, PublicKey, Signature};

/// A value that can be signed: it names its signing domain.
pub trait Signable: Serialize {
    /// Domain-separation prefix, such as `zgrid/workload/v1`. Changing the format means a new
    /// version here.
    const DOMAIN: &'static str;
}

/// The exact bytes a signature over `value` covers: `DOMAIN || 0x00 || JCS(value)`.
pub fn signing_bytes<T: Signable>(value: &T) -> Vec<u8> {
    let canonical = serde_json_canonicalizer::to_vec(value).expect("zgrid wire types always serialise to JSON");
    let mut out = Vec::with_capacity(T::DOMAIN.len() + 1 + canonical.len());
    out.extend_from_slice(T::DOMAIN.as_bytes());
    out.push(0);
    out.extend_from_slice(&canonical);
    out
}

/// A payload with its signer's signature over [`signing_bytes`] of the payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Signed<T> {
    /// What was signed.
    pub payload: T,
    /// ed25519 signature over the payload's canonical bytes.
    pub signature: Signature,
}

impl<T: Signable> Signed<T> {
    /// Sign `payload` with `key`.
    pub fn sign(payload: T, key: &Keypair) -> Self {
        let signature = key.sign(&signing_bytes(&payload));
        Self { payload, signature }
    }

    /// Check the signature against `signer`.
    pub fn verify(&self, signer: &PublicKey) -> Result<(), KeyError> {
        signer.verify(&signing_bytes(&self.payload), &self.signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct A {
        b: u32,
        a: &'static str,
    }
    impl Signable for A {
        const DOMAIN: &'static str = "zgrid/test/v1";
    }

    #[test]
    fn signing_bytes_are_canonical_json_after_the_domain() {
        let bytes = signing_bytes(&A { b: 1, a: "x" });
        assert_eq!(bytes, b"zgrid/test/v1\0{\"a\":\"x\",\"b\":1}");
    }

    #[test]
    fn a_signature_for_one_domain_does_not_verify_in_another() {
        #[derive(Serialize)]
        struct B {
            b: u32,
            a: &'static str,
        }
        impl Signable for B {
            const DOMAIN: &'static str = "zgrid/other/v1";
        }
        let key = Keypair::from_seed(&[3; 32]);
        let signed = Signed::sign(A { b: 1, a: "x" }, &key);
        let moved = Signed { payload: B { b: 1, a: "x" }, signature: signed.signature };
        assert!(signed.verify(&key.public()).is_ok());
        assert!(moved.verify(&key.public()).is_err());
    }
}
