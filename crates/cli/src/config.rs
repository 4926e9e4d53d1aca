//! Where the CLI finds its explorer, identity, trusted CAs and time limit: flags, then
//! environment (both handled by clap), then `config.toml` in the zgrid home directory, then the
//! identity's own record (the explorer) or the defaults.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use zgrid_client::{ExplorerClient, HttpClient, HttpOptions, Identity, IdentityStore};

use crate::args::Global;

/// Settings kept in `config.toml`.
pub type ConfigFile = BTreeMap<String, String>;

/// Keys `config.toml` may hold.
pub const KEYS: [&str; 7] = ["explorer", "hub", "identity", "ca-cert", "timeout", "k8s-flist", GRID];

/// The key of the directory of the grid `zgrid up` made on this machine (`zgrid status` and
/// `zgrid down` look there without `--dir`).
pub const GRID: &str = "grid";

/// The key of the Kubernetes image's flist (`zgrid k8s up` boots it; `zgrid up` sets it).
pub const K8S_FLIST: &str = "k8s-flist";

/// The explorers named in `given` (each a URL or several separated by commas: `--explorer`
/// repeated, `ZGRID_EXPLORER`, `zgrid config set explorer`), as one comma-separated list
/// without blanks; `None` when none was given.
pub fn explorer_list<'a>(given: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let urls: Vec<&str> =
        given.into_iter().flat_map(|u| u.split(',')).map(str::trim).filter(|u| !u.is_empty()).collect();
    (!urls.is_empty()).then(|| urls.join(","))
}

/// Resolved settings for one command: the home directory and what the global flags asked for.
pub struct Ctx {
    pub home: PathBuf,
    pub global_explorer: Option<String>,
    pub identity: Option<String>,
    pub json: bool,
    ca_cert: Option<PathBuf>,
    timeout: Option<u64>,
    http: OnceLock<HttpClient>,
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
            global_explorer: explorer_list(global.explorer.iter().map(String::as_str)),
            identity: global.identity.clone(),
            json: global.json,
            ca_cert: global.ca_cert.clone(),
            timeout: global.timeout,
            http: OnceLock::new(),
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
        Ok(self.store().resolve(self.chosen_identity()?.as_deref())?)
    }

    /// The name of the identity in use, if one is chosen or a default is set (see
    /// [`Ctx::identity`]).
    pub fn identity_name(&self) -> Result<Option<String>> {
        match self.chosen_identity()? {
            Some(name) => Ok(Some(name)),
            None => Ok(self.store().default_name()?),
        }
    }

    /// The identity named by the flag or environment, else by the config file.
    fn chosen_identity(&self) -> Result<Option<String>> {
        match &self.identity {
            Some(name) => Ok(Some(name.clone())),
            None => Ok(self.config()?.get("identity").cloned()),
        }
    }

    /// The explorer URL, or several separated by commas: flag or environment, then the config
    /// file, then the identity's.
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

    /// The Kubernetes image's flist: flag or environment, then the config file.
    pub fn k8s_flist(&self, flag: Option<String>) -> Result<String> {
        if let Some(flist) = flag {
            return Ok(flist);
        }
        if let Some(flist) = self.config()?.get(K8S_FLIST) {
            return Ok(flist.clone());
        }
        bail!(
            "no Kubernetes image is known: build it and push it to your hub with `scripts/k8s-image --hub URL`, then \
             pass the URL it prints with --flist, or keep it with `zgrid config set k8s-flist URL` (`zgrid up` does \
             this when /var/cache/zgrid/k8s-image holds the image)"
        )
    }

    /// Trusted CAs and the time limit: flag or environment, then the config file, then the
    /// defaults.
    pub fn http_options(&self) -> Result<HttpOptions> {
        let config = self.config()?;
        let ca_cert = self.ca_cert.clone().or_else(|| config.get("ca-cert").map(PathBuf::from));
        let timeout = match (self.timeout, config.get("timeout")) {
            (Some(secs), _) => Duration::from_secs(secs),
            (None, Some(text)) => Duration::from_secs(
                crate::args::timeout_secs(text)
                    .map_err(anyhow::Error::msg)
                    .with_context(|| format!("timeout in {} is not usable", self.config_path().display()))?,
            ),
            (None, None) => zgrid_client::DEFAULT_TIMEOUT,
        };
        Ok(HttpOptions { ca_cert, timeout })
    }

    /// The HTTP client every server is reached with (built once).
    pub fn http(&self) -> Result<HttpClient> {
        if let Some(http) = self.http.get() {
            return Ok(http.clone());
        }
        let http = self.http_options()?.client()?;
        Ok(self.http.get_or_init(|| http).clone())
    }

    /// A client of the explorer at `url`.
    pub fn explorer(&self, url: &str) -> Result<ExplorerClient> {
        Ok(ExplorerClient::with_http(url, &self.http()?)?)
    }

    /// A client of the hub at `url`.
    pub fn hub(&self, url: &str) -> Result<zgrid_client::HubClient> {
        Ok(zgrid_client::HubClient::with_http(url, &self.http()?)?)
    }

    /// A client that does not sign.
    pub fn anonymous_client(&self) -> Result<ExplorerClient> {
        let identity = self.identity().ok();
        self.explorer(&self.explorer_url(identity.as_ref())?)
    }

    /// A client signing as the identity in use, with that identity.
    pub fn signed_client(&self) -> Result<(ExplorerClient, Identity)> {
        let identity = self.identity()?;
        let client = self.explorer(&self.explorer_url(Some(&identity))?)?.with_key(identity.keypair.clone());
        Ok((client, identity))
    }

    /// The identity's user id, or a hint to register.
    pub fn user_id(identity: &Identity) -> Result<u64> {
        identity
            .user_id
            .with_context(|| format!("identity {:?} is not registered: run `zgrid id register`", identity.name))
    }
}
