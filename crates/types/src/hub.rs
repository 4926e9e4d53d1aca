//! The hub's API: flists kept under each user's namespace (named by the user's public key),
//! chunks shared by all, served as immutable objects.

use serde::{Deserialize, Serialize};

/// Most chunk ids one `missing` question may carry.
pub const MAX_MISSING_QUERY: usize = 10_000;

/// One stored flist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlistInfo {
    /// The owner's namespace: their public key (base58).
    pub owner: String,
    /// Name inside the namespace, ending in `.flist`.
    pub name: String,
    /// The flist's address: BLAKE3 of its file (hex); a reservation pins it.
    pub hash: String,
    /// Size of the flist file in bytes.
    pub size: u64,
    /// Bytes of file contents it describes.
    pub content_bytes: u64,
    /// Chunks it references.
    pub chunks: u64,
    /// Unix time it was stored.
    pub updated: i64,
    /// Where to download it (relative to the hub): `/flists/<owner>/<name>`.
    pub path: String,
}

/// What an upload or import stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    /// The flist now under the name.
    pub flist: FlistInfo,
    /// Chunks the hub did not have before this request.
    pub new_chunks: u64,
    /// Their stored bytes.
    pub new_bytes: u64,
}

/// Which of some chunks the hub lacks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingQuery {
    /// Chunk ids (hex).
    pub chunks: Vec<String>,
}

/// A namespace and how many flists it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repository {
    /// The owner's public key (base58).
    pub owner: String,
    /// Flists in it.
    pub flists: u64,
}

/// Make one flist of several: later ones win where paths collide.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeRequest {
    /// `<owner>/<name>` of each source, lowest first.
    pub sources: Vec<String>,
}

/// What the hub has served since it started, and what it holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubStats {
    /// Chunk downloads answered.
    pub chunks_served: u64,
    /// Bytes of chunks served.
    pub chunk_bytes_served: u64,
    /// Flist downloads answered.
    pub flists_served: u64,
    /// Chunk uploads that stored a new chunk.
    pub chunks_received: u64,
}

/// Whether `name` may name an flist: 1 to 128 of `A-Z a-z 0-9 . _ -`, not starting with a dot,
/// ending in `.flist`. The error says what to change.
pub fn check_flist_name(name: &str) -> Result<(), String> {
    let ok_chars = name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if name.len() > 128 || !ok_chars || name.starts_with('.') || !name.ends_with(".flist") || name == ".flist" {
        return Err(format!(
            "flist name {name:?}: use 1 to 128 letters, digits, '.', '_' or '-', not starting with '.', ending in .flist"
        ));
    }
    Ok(())
}

/// Whether `id` is a chunk or flist hash: 64 lowercase hex digits.
pub fn is_hash(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_hashes() {
        assert!(check_flist_name("busybox-1.36.flist").is_ok());
        for bad in ["busybox", ".flist", ".hidden.flist", "a/b.flist", "a b.flist", &"x".repeat(130)] {
            assert!(check_flist_name(bad).is_err(), "{bad}");
        }
        assert!(is_hash(&"ab".repeat(32)));
        assert!(!is_hash(&"AB".repeat(32)));
        assert!(!is_hash("../etc"));
    }
}
