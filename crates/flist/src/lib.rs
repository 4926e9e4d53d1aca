//! Flists: zgrid's image format (seed `000`). An flist is a small SQLite file describing a root
//! filesystem's whole tree; file contents live apart as chunks, sealed with a key derived from
//! their own contents (convergent encryption) and named by the hash of what is stored, so a
//! hub holds no plaintext, identical chunks are stored once across images and users, and every
//! chunk is checked on read. See `docs/flist.md`.

pub mod chunk;
pub mod import;
pub mod meta;
pub mod mount;
pub mod pack;
pub mod store;
mod tar_dir;
pub mod unpack;

pub use import::{ImportError, import, merge};
pub use meta::{Flist, ImageConfig};
pub use mount::{ChunkSource, Mount, mount};
pub use pack::{PackSummary, pack};
pub use store::DirStore;
pub use tar_dir::tar_dir;
pub use unpack::{copy_file, resolve, unpack};

/// The address of an flist: the BLAKE3 hash of its file, hex.
pub fn address(path: &std::path::Path) -> std::io::Result<String> {
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(std::fs::File::open(path)?)?;
    Ok(hasher.finalize().to_hex().to_string())
}
