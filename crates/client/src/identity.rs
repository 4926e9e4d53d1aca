//! Identities: an ed25519 key kept as a 24-word BIP39 mnemonic in a versioned seed file, with
//! the user id the explorer assigned. Several named identities live side by side; one is the
//! default.
//!
//! A seed file is JSON, written atomically with mode 0600:
//! `{"format": 1, "mnemonic": "...", "user_id": 12, "explorer": "http://..."}`.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zgrid_types::{Keypair, UserId};

/// Seed file format written by this version.
pub const SEED_FORMAT: u32 = 1;

/// What can go wrong with identities.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// The mnemonic is not 24 valid BIP39 words.
    #[error("invalid mnemonic: {0}; expected the 24 English BIP39 words of a zgrid identity")]
    Mnemonic(String),
    /// A seed file is damaged or from a newer version.
    #[error("{path} is not a zgrid seed file: {reason}")]
    BadSeedFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// No identity has that name.
    #[error("no identity named {0:?}; list them with `zgrid id list` or create one with `zgrid id new`")]
    NotFound(String),
    /// The name is taken.
    #[error("an identity named {0:?} exists; choose another name or delete {1}")]
    Exists(String, PathBuf),
    /// The name cannot be a file name.
    #[error("{0:?} is not a valid identity name: use letters, digits, '-' and '_'")]
    BadName(String),
    /// No default is set and none was named.
    #[error("no identity selected: pass --identity NAME, set ZGRID_IDENTITY, or create one with `zgrid id new`")]
    NoDefault,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> IdentityError + '_ {
    move |source| IdentityError::Io { path: path.to_path_buf(), source }
}

/// A user's key and registration.
#[derive(Clone)]
pub struct Identity {
    /// Local name of the identity.
    pub name: String,
    /// The signing key.
    pub keypair: Keypair,
    /// User id at the explorer, once registered.
    pub user_id: Option<UserId>,
    /// The explorer it is registered with.
    pub explorer: Option<String>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("name", &self.name)
            .field("public_key", &self.keypair.public())
            .field("user_id", &self.user_id)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// A new identity with a fresh random key.
    pub fn generate(name: &str) -> Self {
        let seed: [u8; 32] = rand::random();
        Self { name: name.to_string(), keypair: Keypair::from_seed(&seed), user_id: None, explorer: None }
    }

    /// The identity whose key these 24 words encode.
    pub fn from_mnemonic(name: &str, words: &str) -> Result<Self, IdentityError> {
        let m = bip39::Mnemonic::parse_normalized(words).map_err(|e| IdentityError::Mnemonic(e.to_string()))?;
        let entropy = m.to_entropy();
        let seed: [u8; 32] = entropy.try_into().map_err(|e: Vec<u8>| {
            IdentityError::Mnemonic(format!("{} words encode {} bytes, not 32", m.word_count(), e.len()))
        })?;
        Ok(Self { name: name.to_string(), keypair: Keypair::from_seed(&seed), user_id: None, explorer: None })
    }

    /// The 24 words that back this identity up.
    pub fn mnemonic(&self) -> String {
        bip39::Mnemonic::from_entropy(&self.keypair.seed()).expect("32 bytes is valid BIP39 entropy").to_string()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedFile {
    format: u32,
    mnemonic: String,
    #[serde(default)]
    user_id: Option<UserId>,
    #[serde(default)]
    explorer: Option<String>,
}

/// The directory of named identities.
#[derive(Debug, Clone)]
pub struct IdentityStore {
    dir: PathBuf,
}

fn check_name(name: &str) -> Result<(), IdentityError> {
    let ok =
        !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok { Ok(()) } else { Err(IdentityError::BadName(name.to_string())) }
}

/// Write `bytes` to `path` atomically (a temporary file renamed over it) with mode 0600: for
/// secrets such as seed files and WireGuard configs. A failure is [`IdentityError::Io`], naming
/// the file.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), IdentityError> {
    let tmp = path.with_extension("tmp");
    let mut f =
        fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(io(&tmp))?;
    f.set_permissions(fs::Permissions::from_mode(0o600)).map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))
}

impl IdentityStore {
    /// The store in `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The seed file of identity `name`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.seed"))
    }

    fn default_file(&self) -> PathBuf {
        self.dir.join("default")
    }

    /// Save an identity; `overwrite` allows replacing one of the same name.
    pub fn save(&self, id: &Identity, overwrite: bool) -> Result<PathBuf, IdentityError> {
        check_name(&id.name)?;
        fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700)).map_err(io(&self.dir))?;
        let path = self.path(&id.name);
        if !overwrite && path.exists() {
            return Err(IdentityError::Exists(id.name.clone(), path));
        }
        let file = SeedFile {
            format: SEED_FORMAT,
            mnemonic: id.mnemonic(),
            user_id: id.user_id,
            explorer: id.explorer.clone(),
        };
        let mut json = serde_json::to_vec_pretty(&file).expect("seed file serialises");
        json.push(b'\n');
        write_private(&path, &json)?;
        if self.default_name()?.is_none() {
            self.set_default(&id.name)?;
        }
        Ok(path)
    }

    /// Load identity `name`.
    pub fn load(&self, name: &str) -> Result<Identity, IdentityError> {
        check_name(name)?;
        let path = self.path(name);
        let bytes = match fs::read(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(IdentityError::NotFound(name.to_string()));
            }
            other => other.map_err(io(&path))?,
        };
        let bad = |reason: String| IdentityError::BadSeedFile { path: path.clone(), reason };
        let file: SeedFile = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        if file.format != SEED_FORMAT {
            return Err(bad(format!(
                "format {} is not supported (this zgrid reads format {SEED_FORMAT})",
                file.format
            )));
        }
        let mut id = Identity::from_mnemonic(name, &file.mnemonic).map_err(|e| bad(e.to_string()))?;
        id.user_id = file.user_id;
        id.explorer = file.explorer;
        Ok(id)
    }

    /// Names of all identities, sorted.
    pub fn list(&self) -> Result<Vec<String>, IdentityError> {
        let entries = match fs::read_dir(&self.dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            other => other.map_err(io(&self.dir))?,
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".seed")).map(str::to_string))
            .collect();
        names.sort();
        Ok(names)
    }

    /// The default identity's name, if one is set.
    pub fn default_name(&self) -> Result<Option<String>, IdentityError> {
        let path = self.default_file();
        match fs::read_to_string(&path) {
            Ok(s) => Ok(Some(s.trim().to_string()).filter(|s| !s.is_empty())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// Make `name` the default.
    pub fn set_default(&self, name: &str) -> Result<(), IdentityError> {
        check_name(name)?;
        if !self.path(name).exists() {
            return Err(IdentityError::NotFound(name.to_string()));
        }
        write_private(&self.default_file(), format!("{name}\n").as_bytes())
    }

    /// Load `name`, or the default identity when `None`.
    pub fn resolve(&self, name: Option<&str>) -> Result<Identity, IdentityError> {
        match name {
            Some(n) => self.load(n),
            None => self.load(&self.default_name()?.ok_or(IdentityError::NoDefault)?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_files_round_trip_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let store = IdentityStore::new(dir.path().join("ids"));
        let mut id = Identity::generate("alice");
        id.user_id = Some(4);
        let path = store.save(&id, false).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let back = store.load("alice").unwrap();
        assert_eq!(back.keypair.public(), id.keypair.public());
        assert_eq!(back.user_id, Some(4));
        assert_eq!(store.default_name().unwrap().as_deref(), Some("alice"));
        assert!(matches!(store.save(&id, false), Err(IdentityError::Exists(..))));
    }

    #[test]
    fn a_mnemonic_restores_the_same_key() {
        let id = Identity::generate("a");
        let words = id.mnemonic();
        assert_eq!(words.split_whitespace().count(), 24);
        let back = Identity::from_mnemonic("b", &words).unwrap();
        assert_eq!(back.keypair.public(), id.keypair.public());
        assert!(Identity::from_mnemonic("c", "abandon abandon").is_err());
    }

    #[test]
    fn unknown_format_versions_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = IdentityStore::new(dir.path());
        let id = Identity::generate("x");
        store.save(&id, false).unwrap();
        let text = fs::read_to_string(store.path("x")).unwrap().replace("\"format\": 1", "\"format\": 9");
        fs::write(store.path("x"), text).unwrap();
        let err = store.load("x").unwrap_err().to_string();
        assert!(err.contains("format 9 is not supported"), "{err}");
    }
}
