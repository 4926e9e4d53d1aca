//! The node's identity: an ed25519 key created on first start and kept in the state directory.
//! The node id is the base58 public key, as in the seed system.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, Result, bail};
use zgrid_types::Keypair;

/// File name of the key inside the state directory.
const KEY_FILE: &str = "node.key";

/// The node key in `state_dir`, if the node has made one.
pub fn load(state_dir: &Path) -> Result<Option<Keypair>> {
    let path = state_dir.join(KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let mut seed = [0u8; 32];
            hex::decode_to_slice(text.trim(), &mut seed)
                .with_context(|| format!("{} is not a node key (64 hex characters)", path.display()))?;
            Ok(Some(Keypair::from_seed(&seed)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => bail!("cannot read {}: {e}", path.display()),
    }
}

/// Load the node key from `state_dir`, creating it (mode 0600) on first start.
pub fn load_or_create(state_dir: &Path) -> Result<Keypair> {
    if let Some(key) = load(state_dir)? {
        return Ok(key);
    }
    let path = state_dir.join(KEY_FILE);
    std::fs::create_dir_all(state_dir).with_context(|| format!("cannot create {}", state_dir.display()))?;
    let key = Keypair::from_seed(&rand::random());
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(hex::encode(key.seed()).as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_key_is_created_once_and_kept_private() {
        let dir = tempfile::tempdir().unwrap();
        let a = super::load_or_create(dir.path()).unwrap();
        let b = super::load_or_create(dir.path()).unwrap();
        assert_eq!(a.public(), b.public());
        let mode = std::fs::metadata(dir.path().join("node.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
