//! Secrets sealed to one node: a network resource's WireGuard private key and a container's
//! secret environment values travel encrypted to the node's X25519 key, which is derived from
//! its ed25519 identity, so the explorer stores and forwards them without being able to read
//! them. Text secrets carry their scheme's version ([`SECRET_V1`]) so a node never guesses.
//!
//! The construction is libsodium's sealed box (an ephemeral X25519 key, XSalsa20-Poly1305), as
//! implemented by the `crypto_box` crate. Sealing draws randomness from the operating system.

use crate::keys::{Keypair, PublicKey};

/// A sealed secret could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the secret was not sealed to this node's key, or it was altered")]
pub struct UnsealError;

/// The prefix of a text secret in the first (and only) scheme: a sealed box, base64.
pub const SECRET_V1: &str = "v1:";

/// Bytes a sealed box adds to what it seals: the ephemeral X25519 public key (32) and the
/// Poly1305 tag (16). A sealed box is exactly this much longer than its plaintext.
pub const SEALED_OVERHEAD: usize = 48;

/// Length of a sealed 32-byte key (a WireGuard private key).
pub const SEALED_KEY_LEN: usize = 32 + SEALED_OVERHEAD;

/// Why a text secret could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// It does not start with a known version.
    #[error(
        "is not a sealed secret of a known version (expected {SECRET_V1}<base64>); seal it to the node with the zgrid CLI or SDK"
    )]
    Version,
    /// The part after the version is not base64.
    #[error("is not base64 after {SECRET_V1}")]
    Encoding,
    /// Too short to be a sealed box: a clear value, or a broken one.
    #[error(
        "is {0} bytes after decoding, shorter than the {SEALED_OVERHEAD} bytes a sealed box adds: it is not sealed; seal it to the node with the zgrid CLI or SDK"
    )]
    TooShort(usize),
    /// A sealed key that is not hex.
    #[error("must be hex")]
    NotHex,
    /// A sealed key of the wrong length: a raw key, or not a key.
    #[error(
        "is {0} bytes, not the {SEALED_KEY_LEN} of a 32-byte key sealed to the node: it is not a sealed WireGuard key; seal it with the zgrid CLI or SDK"
    )]
    KeyLength(usize),
    /// The box does not open with this key.
    #[error(transparent)]
    Unseal(#[from] UnsealError),
    /// The plaintext is not UTF-8.
    #[error("does not hold UTF-8 text")]
    Utf8,
}

/// Seal the text `plaintext` to node `to` as a versioned text secret (`v1:<base64>`).
pub fn seal_secret(to: &PublicKey, plaintext: &str) -> String {
    use base64::Engine;
    format!("{SECRET_V1}{}", base64::engine::general_purpose::STANDARD.encode(seal(to, plaintext.as_bytes())))
}

/// The sealed bytes of a text secret, checking its version, its encoding and that it is long
/// enough to be a sealed box (not who can open it).
pub fn secret_bytes(secret: &str) -> Result<Vec<u8>, SecretError> {
    use base64::Engine;
    let encoded = secret.strip_prefix(SECRET_V1).ok_or(SecretError::Version)?;
    let sealed = base64::engine::general_purpose::STANDARD.decode(encoded).map_err(|_| SecretError::Encoding)?;
    if sealed.len() < SEALED_OVERHEAD {
        return Err(SecretError::TooShort(sealed.len()));
    }
    Ok(sealed)
}

/// The length of what a text secret holds, in bytes (a sealed box has no padding).
pub fn secret_len(secret: &str) -> Result<usize, SecretError> {
    Ok(secret_bytes(secret)?.len() - SEALED_OVERHEAD)
}

/// The sealed box of a 32-byte key written in hex (`wireguard_private_key_encrypted`),
/// checking its encoding and its exact length (not who can open it).
pub fn sealed_key_bytes(sealed_hex: &str) -> Result<Vec<u8>, SecretError> {
    let sealed = hex::decode(sealed_hex).map_err(|_| SecretError::NotHex)?;
    if sealed.len() != SEALED_KEY_LEN {
        return Err(SecretError::KeyLength(sealed.len()));
    }
    Ok(sealed)
}

/// Encrypt `plaintext` so that only the holder of `to`'s private key can read it.
pub fn seal(to: &PublicKey, plaintext: &[u8]) -> Vec<u8> {
    let key = crypto_box::PublicKey::from(to.to_x25519());
    key.seal(&mut crypto_box::aead::OsRng, plaintext).expect("sealing into memory cannot fail")
}

impl PublicKey {
    /// The X25519 public key of the same identity (the birational map of the curve).
    pub fn to_x25519(&self) -> [u8; 32] {
        self.0.to_montgomery().to_bytes()
    }
}

impl Keypair {
    /// Open a secret [`seal`]ed to this key.
    pub fn unseal(&self, sealed: &[u8]) -> Result<Vec<u8>, UnsealError> {
        crypto_box::SecretKey::from(self.0.to_scalar_bytes()).unseal(sealed).map_err(|_| UnsealError)
    }

    /// Open a text secret made with [`seal_secret`] for this key.
    pub fn unseal_secret(&self, secret: &str) -> Result<String, SecretError> {
        String::from_utf8(self.unseal(&secret_bytes(secret)?)?).map_err(|_| SecretError::Utf8)
    }
}

/// A fresh WireGuard (X25519) key pair from the operating system's randomness:
/// `(private, public)`, 32 bytes each.
pub fn wireguard_keypair() -> ([u8; 32], [u8; 32]) {
    let secret = crypto_box::SecretKey::generate(&mut crypto_box::aead::OsRng);
    (secret.to_bytes(), secret.public_key().to_bytes())
}

/// The WireGuard public key of a private key, both 32 bytes.
pub fn wireguard_public(private: &[u8; 32]) -> [u8; 32] {
    crypto_box::SecretKey::from(*private).public_key().to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_addressed_node_opens_a_sealed_secret() {
        let node = Keypair::from_seed(&[3; 32]);
        let other = Keypair::from_seed(&[4; 32]);
        let sealed = seal(&node.public(), b"wireguard private key");
        assert_eq!(node.unseal(&sealed).unwrap(), b"wireguard private key");
        assert_eq!(other.unseal(&sealed), Err(UnsealError));
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert_eq!(node.unseal(&altered), Err(UnsealError));
        assert_ne!(seal(&node.public(), b"x"), seal(&node.public(), b"x"), "each seal uses a fresh key");
    }

    #[test]
    fn text_secrets_carry_their_version_and_open_only_for_their_node() {
        let node = Keypair::from_seed(&[3; 32]);
        let secret = seal_secret(&node.public(), "hunter2");
        assert!(secret.starts_with("v1:") && !secret.contains("hunter2"));
        assert_eq!(node.unseal_secret(&secret).unwrap(), "hunter2");
        assert_eq!(Keypair::from_seed(&[4; 32]).unseal_secret(&secret), Err(SecretError::Unseal(UnsealError)));
        assert_eq!(node.unseal_secret("hunter2"), Err(SecretError::Version));
        assert_eq!(node.unseal_secret("v1:***"), Err(SecretError::Encoding));
        assert_eq!(node.unseal_secret("v1:aHVudGVyMg=="), Err(SecretError::TooShort(7)), "a clear value");
        assert_eq!(secret_len(&seal_secret(&node.public(), "")), Ok(0));
        assert_eq!(secret_len(&secret), Ok(7));
    }

    #[test]
    fn sealed_keys_have_the_exact_size_of_a_sealed_32_byte_key() {
        let node = Keypair::from_seed(&[3; 32]);
        let (private, _) = wireguard_keypair();
        let sealed = hex::encode(seal(&node.public(), &private));
        assert_eq!(node.unseal(&sealed_key_bytes(&sealed).unwrap()).unwrap(), private);
        assert_eq!(sealed_key_bytes(&hex::encode(private)), Err(SecretError::KeyLength(32)), "a raw key");
        assert_eq!(sealed_key_bytes("00ff"), Err(SecretError::KeyLength(2)));
        assert_eq!(sealed_key_bytes("xyz"), Err(SecretError::NotHex));
    }

    #[test]
    fn wireguard_keys_pair_up() {
        let (private, public) = wireguard_keypair();
        assert_eq!(wireguard_public(&private), public);
        assert_ne!(wireguard_keypair().0, private);
    }

    #[test]
    fn a_box_sealed_by_libsodium_opens_here() {
        // Made with libsodium 1.0.18 (PyNaCl 1.6.2): the ed25519 key pair of seed [3; 32],
        // `crypto_sign_ed25519_pk_to_curve25519` of its public key, and `crypto_box_seal` of the
        // text below to that key.
        let x25519 = "75e270df2952c57ba8367ba8618c178f9fe50db2799d304e74e918d985686146";
        let sealed = "5d755cbd7957ad1c869ec2f8e290175a2bae7cd4f1b1d4408425bf852327d37f44424f06daaaa32a326eaebd5840\
                      027b57fadfb3ddd589592cc94f6fe686b29e85124705f9e93eebfba36b63d47f0f6a0b2d4ae8e2be68";
        let node = Keypair::from_seed(&[3; 32]);
        assert_eq!(hex::encode(node.public().to_x25519()), x25519);
        let opened = node.unseal(&hex::decode(sealed).unwrap()).unwrap();
        assert_eq!(opened, b"zgrid known answer: sealed by libsodium");
    }

    #[test]
    fn truncated_or_altered_boxes_do_not_open() {
        let node = Keypair::from_seed(&[3; 32]);
        let sealed = seal(&node.public(), b"secret");
        for len in [0, 16, 31, 32, 47, 48, sealed.len() - 1] {
            assert_eq!(node.unseal(&sealed[..len]), Err(UnsealError), "truncated to {len} bytes");
        }
        // Another ephemeral key (the first 32 bytes): the shared key and the nonce change.
        let mut ephemeral = sealed.clone();
        ephemeral[..32].copy_from_slice(&wireguard_keypair().1);
        assert_eq!(node.unseal(&ephemeral), Err(UnsealError));
        let mut flipped = sealed;
        flipped[5] ^= 0x80;
        assert_eq!(node.unseal(&flipped), Err(UnsealError));
    }

    #[test]
    fn a_secret_that_is_not_text_is_refused() {
        use base64::Engine;
        let node = Keypair::from_seed(&[3; 32]);
        let bytes = seal(&node.public(), &[0xff, 0xfe, b'a']);
        let secret = format!("{SECRET_V1}{}", base64::engine::general_purpose::STANDARD.encode(bytes));
        assert_eq!(node.unseal_secret(&secret), Err(SecretError::Utf8));
    }
}
