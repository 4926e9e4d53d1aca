//! `zgrid config`: the settings file.

use anyhow::{Context, Result, bail};
use zgrid_client::HttpOptions;

use crate::args::ConfigCommand;
use crate::config::{Ctx, KEYS};
use crate::output;

pub fn run(ctx: &Ctx, cmd: ConfigCommand) -> Result<()> {
    match cmd {
        ConfigCommand::Set { key, mut value } => {
            if !KEYS.contains(&key.as_str()) {
                bail!("unknown setting {key:?}; settings are: {}", KEYS.join(", "));
            }
            match key.as_str() {
                "explorer" => {
                    // One URL, or several explorers sharing one database, separated by commas.
                    value = crate::config::explorer_list([value.as_str()]).unwrap_or_default();
                    zgrid_client::ExplorerClient::new(&value)?;
                }
                "hub" => {
                    zgrid_client::HubClient::new(&value)?;
                }
                crate::config::GRID => {
                    value = absolute(&value)?.to_string_lossy().into_owned();
                }
                "ca-cert" => {
                    let path = absolute(&value)?;
                    HttpOptions { ca_cert: Some(path.clone()), ..HttpOptions::default() }.client()?;
                    value = path.to_string_lossy().into_owned();
                }
                "timeout" => {
                    value = crate::args::timeout_secs(&value).map_err(anyhow::Error::msg)?.to_string();
                }
                crate::config::K8S_FLIST => {
                    if value.is_empty() {
                        bail!("k8s-flist: give the Kubernetes image's flist URL (scripts/k8s-image prints it)");
                    }
                }
                _ => {
                    ctx.store().load(&value)?;
                }
            }
            let mut config = ctx.config()?;
            config.insert(key.clone(), value.clone());
            ctx.save_config(&config)?;
            let set = serde_json::json!({ "key": key, "value": value });
            output::report(ctx.json, &set, || println!("{key} = {value}"))
        }
        ConfigCommand::Show => {
            let config = ctx.config()?;
            if ctx.json {
                output::json(&config)
            } else {
                config.iter().for_each(|(k, v)| println!("{k} = {v}"));
                Ok(())
            }
        }
    }
}

/// A path setting made absolute, so commands run from anywhere find it.
fn absolute(value: &str) -> Result<std::path::PathBuf> {
    std::path::absolute(value).with_context(|| format!("{value:?} is not a path"))
}
