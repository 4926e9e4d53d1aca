//! Where the CLI finds its explorer and identity: flags, then environment (both handled by
//! clap), then `config.toml` in the zgrid home directory, then the identity's own record.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use zgrid_client::{ExplorerClient, Identity, IdentityStore};

use crate::args::Global;

/// Settings kept in `config.toml`.
pub type ConfigFile = BTreeMap<String, String>;

/// Keys `config.toml` may hold.
pub const KEYS: [&str; 3] = ["explorer", "hub", "identity"];

/// Resolved settings for one command: the home directory and what the global flags asked for.
pub struct Ctx {
    pub home: PathBuf,
    pub global_explorer: Option<String>,
    pub identity: Option<String>,
    pub json: bool,
}

impl Ctx {
    pub fn new(global: &Global) -> Result<Self> {
        let home = match &global.home {
            Some(h) => h.clone(),
            None => {
                let base = std::env::var_os("XDG_CONFIG_HOME")
                    .map(PathBuf::from)
                    .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
                    .context("cannot find a home directory: set ZGRID_HOME or HOME")?;
                base.join("zgrid")
            }
        };
        Ok(Self {
            home,
            global_explorer: global.explorer.clone(),
            identity: global.identity.clone(),
            json: global.json,
        })
    }

    pub fn store(&self) -> IdentityStore {
        IdentityStore::new(self.home.join("identities"))
    }

    fn config_path(&self) -> PathBuf {
        self.home.join("config.toml")
    }

    pub fn config(&self) -> Result<ConfigFile> {
        let path = self.config_path();
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).with_context(|| format!("{} is not valid TOML", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ConfigFile::new()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    pub fn save_config(&self, config: &ConfigFile) -> Result<()> {
        std::fs::create_dir_all(&self.home).with_context(|| format!("cannot create {}", self.home.display()))?;
        let path = self.config_path();
        std::fs::write(&path, toml::to_string(config)?).with_context(|| format!("cannot write {}", path.display()))
    }

    /// The identity in use: flag or environment, then the config file, then the store's default.
    pub fn identity(&self) -> Result<Identity> {
        let configured = match &self.identity {
            Some(name) => Some(name.clone()),
            None => self.config()?.get("identity").cloned(),
        };
        Ok(self.store().resolve(configured.as_deref())?)
    }

    /// The explorer URL: flag or environment, then the config file, then the identity's.
    pub fn explorer_url(&self, identity: Option<&Identity>) -> Result<String> {
        if let Some(url) = &self.global_explorer {
            return Ok(url.clone());
        }
        if let Some(url) = self.config()?.get("explorer") {
            return Ok(url.clone());
        }
        if let Some(url) = identity.and_then(|i| i.explorer.clone()) {
            return Ok(url);
        }
        bail!("no explorer configured: pass --explorer URL, set ZGRID_EXPLORER, or run `zgrid config set explorer URL`")
    }

    /// The hub URL: flag or environment, then the config file.
    pub fn hub_url(&self, flag: Option<String>) -> Result<String> {
        if let Some(url) = flag {
            return Ok(url);
        }
        if let Some(url) = self.config()?.get("hub") {
            return Ok(url.clone());
        }
        bail!("no hub configured: pass --hub URL, set ZGRID_HUB, or run `zgrid config set hub URL`")
    }

    /// A client that does not sign.
    pub fn anonymous_client(&self) -> Result<ExplorerClient> {
        let identity = self.identity().ok();
        Ok(ExplorerClient::new(&self.explorer_url(identity.as_ref())?)?)
    }

    /// A client signing as the identity in use, with that identity.
    pub fn signed_client(&self) -> Result<(ExplorerClient, Identity)> {
        let identity = self.identity()?;
        let client = ExplorerClient::new(&self.explorer_url(Some(&identity))?)?.with_key(identity.keypair.clone());
        Ok((client, identity))
    }

    /// The identity's user id, or a hint to register.
    pub fn user_id(identity: &Identity) -> Result<u64> {
        identity
            .user_id
            .with_context(|| format!("identity {:?} is not registered: run `zgrid id register`", identity.name))
    }
}
