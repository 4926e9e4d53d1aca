//! `zgrid config`: the settings file.

use anyhow::{Result, bail};

use crate::args::ConfigCommand;
use crate::config::{Ctx, KEYS};
use crate::output;

pub fn run(ctx: &Ctx, cmd: ConfigCommand) -> Result<()> {
    match cmd {
        ConfigCommand::Set { key, value } => {
            if !KEYS.contains(&key.as_str()) {
                bail!("unknown setting {key:?}; settings are: {}", KEYS.join(", "));
            }
            match key.as_str() {
                "explorer" => {
                    zgrid_client::ExplorerClient::new(&value)?;
                }
                "hub" => {
                    zgrid_client::HubClient::new(&value)?;
                }
                _ => {
                    ctx.store().load(&value)?;
                }
            }
            let mut config = ctx.config()?;
            config.insert(key, value);
            ctx.save_config(&config)
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
