//! ed25519 keys and signatures as they travel on the wire.
//!
//! Public keys are base58 (a node's id *is* its public key, as in the seed system); signatures
//! are lowercase hex. Key generation lives outside this crate because it needs an RNG.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, LazyLock};

use ed25519_dalek::Signer;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::ToSchema;

use crate::remembered::Remembered;

/// Why a key or signature could not be decoded or did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The text is not base58 of 32 bytes.
    #[error("public key must be base58 of 32 bytes")]
    BadPublicKey,
    /// The bytes are not a valid ed25519 point.
    #[error("public key is not a valid ed25519 key")]
    InvalidPoint,
    /// The text is not hex of 64 bytes.
    #[error("signature must be hex of 64 bytes")]
    BadSignature,
    /// The signature does not match the message and key.
    #[error("signature does not verify")]
    Mismatch,
}

/// Most keys each of the caches of parsed and written keys holds.
const CACHED_MAX: usize = 4096;

/// An ed25519 public key, written as base58.
#[derive(Clone, Copy, PartialEq, Eq, Hash, ToSchema)]
#[schema(
    value_type = String,
    format = "zgrid-public-key",
    pattern = "^[1-9A-HJ-NP-Za-km-z]{32,44}$",
    example = "7HZd49ugHzJxQUnHKyQRbmcwWWvKKtoJUndfiiXGTkow"
)]
pub struct PublicKey(pub(crate) ed25519_dalek::VerifyingKey);

impl PublicKey {
    /// The 32 raw bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// Parse from 32 raw bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, KeyError> {
        ed25519_dalek::VerifyingKey::from_bytes(bytes).map(Self).map_err(|_| KeyError::InvalidPoint)
    }

    /// Verify `signature` over `message` (strict: rejects malleable and small-order forms).
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), KeyError> {
        self.0.verify_strict(message, &signature.0).map_err(|_| KeyError::Mismatch)
    }
}

/// Keys most recently written as text: base58 costs time quadratic in the length, and the same
/// keys are written all the time (in every record, request and row). Cleared when full.
static WRITTEN: LazyLock<Remembered<[u8; 32], Arc<str>>> = LazyLock::new(|| Remembered::new(CACHED_MAX));

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.0.as_bytes();
        let text = WRITTEN.get(bytes).unwrap_or_else(|| {
            let text: Arc<str> = bs58::encode(bytes).into_string().into();
            WRITTEN.insert(*bytes, text.clone());
            text
        });
        f.write_str(&text)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

/// Keys most recently parsed from text, by their text: the same keys come back all the time (a
/// user's, a node's), and parsing one costs a base58 decode and a square root (the point's
/// decompression), a tenth of an explorer's CPU per request before this. Cleared when full.
static PARSED: LazyLock<Remembered<Box<str>, PublicKey>> = LazyLock::new(|| Remembered::new(CACHED_MAX));

impl FromStr for PublicKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        if let Some(key) = PARSED.get(s) {
            return Ok(key);
        }
        let mut bytes = [0u8; 32];
        let key = match bs58::decode(s).onto(&mut bytes) {
            Ok(32) => Self::from_bytes(&bytes)?,
            _ => return Err(KeyError::BadPublicKey),
        };
        PARSED.insert(s.into(), key);
        Ok(key)
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An ed25519 signature, written as lowercase hex (uppercase is read too).
#[derive(Clone, Copy, PartialEq, Eq, ToSchema)]
#[schema(value_type = String, pattern = "^[0-9a-fA-F]{128}$")]
pub struct Signature(ed25519_dalek::Signature);

impl Signature {
    /// The 64 raw bytes.
    pub fn to_bytes(&self) -> [u8; 64] {
        self.0.to_bytes()
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0.to_bytes()))
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({self})")
    }
}

impl FromStr for Signature {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        let mut bytes = [0u8; 64];
        hex::decode_to_slice(s, &mut bytes).map_err(|_| KeyError::BadSignature)?;
        Ok(Self(ed25519_dalek::Signature::from_bytes(&bytes)))
    }
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A private signing key. Its `Debug` never prints the secret.
#[derive(Clone)]
pub struct Keypair(pub(crate) ed25519_dalek::SigningKey);

impl Keypair {
    /// The key whose secret seed is these 32 bytes.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self(ed25519_dalek::SigningKey::from_bytes(seed))
    }

    /// The 32-byte secret seed (what a mnemonic encodes).
    pub fn seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// Sign raw bytes.
    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.0.sign(message))
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keypair({})", self.public())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_key_round_trips_through_base58() {
        let key = Keypair::from_seed(&[7; 32]).public();
        let text = key.to_string();
        assert_eq!(text.parse::<PublicKey>().unwrap(), key);
        assert_eq!("abc".parse::<PublicKey>(), Err(KeyError::BadPublicKey));
    }

    #[test]
    fn remembered_keys_read_and_write_as_the_first_time() {
        let keys: Vec<PublicKey> = (0..3u8).map(|i| Keypair::from_seed(&[i; 32]).public()).collect();
        for _ in 0..2 {
            for key in &keys {
                let text = key.to_string();
                assert_eq!(text, bs58::encode(key.to_bytes()).into_string());
                assert_eq!(text.parse::<PublicKey>().unwrap(), *key);
            }
        }
        // 32 bytes that are not a point are refused every time, not remembered.
        let mut bytes = [0u8; 32];
        bytes[0] = 2; // y = 2: x² = (y² - 1) / (d y² + 1) has no root
        let not_a_point = bs58::encode(bytes).into_string();
        for _ in 0..2 {
            assert_eq!(not_a_point.parse::<PublicKey>(), Err(KeyError::InvalidPoint));
        }
    }

    #[test]
    fn signature_verifies_only_its_message_and_key() {
        let a = Keypair::from_seed(&[1; 32]);
        let b = Keypair::from_seed(&[2; 32]);
        let sig = a.sign(b"hello");
        assert!(a.public().verify(b"hello", &sig).is_ok());
        assert_eq!(a.public().verify(b"hellp", &sig), Err(KeyError::Mismatch));
        assert_eq!(b.public().verify(b"hello", &sig), Err(KeyError::Mismatch));
        let text = sig.to_string();
        assert_eq!(text.parse::<Signature>().unwrap(), sig);
    }

    /// The order of the ed25519 group, little-endian.
    const ORDER: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];

    #[test]
    fn a_malleated_signature_does_not_verify() {
        // s + L is the same scalar as s, written non-canonically: a second signature for the
        // same message that a lax verifier accepts.
        let key = Keypair::from_seed(&[1; 32]);
        let mut bytes = key.sign(b"hello").0.to_bytes();
        let mut carry = 0u16;
        for (b, l) in bytes[32..].iter_mut().zip(ORDER) {
            let sum = u16::from(*b) + u16::from(l) + carry;
            (*b, carry) = (sum as u8, sum >> 8);
        }
        let malleated: Signature = hex::encode(bytes).parse().unwrap();
        assert_eq!(key.public().verify(b"hello", &malleated), Err(KeyError::Mismatch));
    }

    #[test]
    fn a_small_order_key_verifies_nothing() {
        // The identity point as a key, with R = identity and s = 0, satisfies the verification
        // equation for every message; only a strict verifier refuses the key.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let key = PublicKey::from_bytes(&identity).expect("the identity is a point");
        let forged: Signature = hex::encode([identity, [0; 32]].concat()).parse().unwrap();
        for message in [&b"hello"[..], b"any message at all"] {
            assert_eq!(key.verify(message, &forged), Err(KeyError::Mismatch));
        }
    }
}
