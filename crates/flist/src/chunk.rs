//! Chunks: pieces of file contents as a hub stores them. A chunk's plaintext is hashed
//! (BLAKE3) into its *key*, compressed (zstd) and encrypted with that key (XSalsa20-Poly1305,
//! nonce derived from the key), so the same plaintext always gives the same stored bytes
//! (identical chunks deduplicate across users) while a store that lacks the key — anyone who
//! has not got the flist — cannot read it. The stored bytes are named by their own hash, the
//! chunk's *id*, so a store can be checked without any key.

use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::{Key, Nonce, XSalsa20Poly1305};

/// A 32-byte BLAKE3 hash: a chunk's id (of its stored bytes) or key (of its plaintext).
pub type Hash = [u8; 32];

/// zstd level: fast, and most of the gain.
const LEVEL: i32 = 3;

/// Why a chunk could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// The stored bytes do not hash to the chunk's id: altered or truncated.
    #[error("chunk {0} is corrupt: its bytes do not match its id")]
    Corrupt(String),
    /// The bytes decrypt or decompress to something else than the flist recorded.
    #[error("chunk {0} does not hold the recorded contents")]
    Mismatch(String),
}

/// A chunk ready to store: its id, key and stored bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// Hash of `bytes`.
    pub id: Hash,
    /// Hash of the plaintext; needed to read it back.
    pub key: Hash,
    /// Compressed, encrypted plaintext.
    pub bytes: Vec<u8>,
}

fn cipher_and_nonce(key: &Hash) -> (XSalsa20Poly1305, Nonce) {
    let derived = blake3::derive_key("zgrid flist chunk nonce v1", key);
    let mut nonce = [0u8; 24];
    nonce.copy_from_slice(&derived[..24]);
    (XSalsa20Poly1305::new(&Key::from(*key)), Nonce::from(nonce))
}

/// Seal `plain` for storage.
pub fn seal(plain: &[u8]) -> Sealed {
    let key: Hash = blake3::hash(plain).into();
    let compressed = zstd::bulk::compress(plain, LEVEL).expect("compressing into memory cannot fail");
    let (cipher, nonce) = cipher_and_nonce(&key);
    let bytes = cipher.encrypt(&nonce, compressed.as_slice()).expect("encrypting into memory cannot fail");
    Sealed { id: blake3::hash(&bytes).into(), key, bytes }
}

/// Open stored `bytes` of chunk `id` with `key`, whose plaintext is `size` bytes long,
/// checking the bytes against the id before anything else and the plaintext against the key.
pub fn open(id: &Hash, key: &Hash, size: usize, bytes: &[u8]) -> Result<Vec<u8>, ChunkError> {
    let name = hex::encode(id);
    if blake3::hash(bytes).as_bytes() != id {
        return Err(ChunkError::Corrupt(name));
    }
    let (cipher, nonce) = cipher_and_nonce(key);
    let compressed = cipher.decrypt(&nonce, bytes).map_err(|_| ChunkError::Mismatch(name.clone()))?;
    let plain = zstd::bulk::decompress(&compressed, size).map_err(|_| ChunkError::Mismatch(name.clone()))?;
    if blake3::hash(&plain).as_bytes() != key || plain.len() != size {
        return Err(ChunkError::Mismatch(name));
    }
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_plaintext_seals_identically_and_opens_only_with_its_key() {
        let a = seal(b"hello flist");
        assert_eq!(a, seal(b"hello flist"), "convergent: same bytes, same chunk");
        assert!(!a.bytes.windows(5).any(|w| w == b"hello"), "stored bytes are not plaintext");
        assert_eq!(open(&a.id, &a.key, 11, &a.bytes).unwrap(), b"hello flist");
        let b = seal(b"other");
        assert_eq!(open(&a.id, &b.key, 11, &a.bytes), Err(ChunkError::Mismatch(hex::encode(a.id))));
        let mut bad = a.bytes.clone();
        bad[0] ^= 1;
        assert_eq!(open(&a.id, &a.key, 11, &bad), Err(ChunkError::Corrupt(hex::encode(a.id))));
    }
}
