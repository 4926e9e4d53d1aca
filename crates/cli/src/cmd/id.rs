//! `zgrid id`: create, import, register, show, list and select identities.

use anyhow::{Context, Result};
use serde_json::json;
use zgrid_client::Identity;

use crate::args::IdCommand;
use crate::config::Ctx;
use crate::output;

pub async fn run(ctx: &Ctx, cmd: IdCommand) -> Result<()> {
    let store = ctx.store();
    match cmd {
        IdCommand::New { name, register, email } => {
            let mut identity = Identity::generate(&name);
            let path = store.save(&identity, false)?;
            if register {
                register_identity(ctx, &mut identity, &name, &email).await.with_context(|| {
                    format!("identity {name} is saved but not registered; retry with `zgrid id register`")
                })?;
            }
            output::report(ctx.json, &summary(&identity, &path), || {
                println!("created identity {name} (key {})", identity.keypair.public());
                println!(
                    "seed saved at {} (mode 0600); back up its 24 words with `zgrid id show --mnemonic`",
                    path.display()
                );
                if let Some(id) = identity.user_id {
                    println!("registered as user {id}");
                }
            })
        }
        IdCommand::Import { name, mnemonic } => {
            let mut identity = Identity::from_mnemonic(&name, &mnemonic)?;
            // Recover the user id if this key is already registered.
            if let Ok(client) = ctx.anonymous_client() {
                let client = client.with_key(identity.keypair.clone());
                if let Ok(Some(user)) = client.whoami().await {
                    identity.user_id = Some(user.id);
                    identity.explorer = Some(client.base_urls().join(","));
                }
            }
            let path = store.save(&identity, false)?;
            output::report(ctx.json, &summary(&identity, &path), || {
                println!("imported identity {name} (key {}) into {}", identity.keypair.public(), path.display())
            })
        }
        IdCommand::Register { user_name, email } => {
            let mut identity = ctx.identity()?;
            let name = user_name.unwrap_or_else(|| identity.name.clone());
            register_identity(ctx, &mut identity, &name, &email).await?;
            let id = Ctx::user_id(&identity)?;
            output::report(ctx.json, &json!({"user_id": id}), || println!("registered {name} as user {id}"))
        }
        IdCommand::Show { mnemonic } => {
            let identity = ctx.identity()?;
            let mut view = json!({
                "name": identity.name,
                "public_key": identity.keypair.public(),
                "user_id": identity.user_id,
                "explorer": identity.explorer,
                "seed_file": store.path(&identity.name),
            });
            if mnemonic {
                view["mnemonic"] = json!(identity.mnemonic());
            }
            if ctx.json {
                output::json(&view)
            } else {
                for (k, v) in view.as_object().expect("object") {
                    println!("{k:<11} {}", v.as_str().map_or_else(|| v.to_string(), str::to_string));
                }
                Ok(())
            }
        }
        IdCommand::List => {
            // The one commands act as: `id use`, the config file, the flag or the environment.
            let default = ctx.identity_name()?;
            let names = store.list()?;
            if ctx.json {
                return output::json(&json!({"default": default, "identities": names}));
            }
            let rows: Vec<Vec<String>> = names
                .iter()
                .map(|n| {
                    let mark = if default.as_deref() == Some(n) { "*" } else { "" };
                    let user = store.load(n).ok().and_then(|i| i.user_id).map_or("-".into(), |u| u.to_string());
                    vec![mark.into(), n.clone(), user]
                })
                .collect();
            output::table(&["", "NAME", "USER"], &rows);
            Ok(())
        }
        IdCommand::Use { name } => {
            store.set_default(&name)?;
            // The config file's choice (`zgrid up` makes one) would otherwise win over this one.
            let mut config = ctx.config()?;
            if config.contains_key("identity") {
                config.insert("identity".into(), name.clone());
                ctx.save_config(&config)?;
            }
            output::report(ctx.json, &json!({"default": name}), || println!("default identity is now {name}"))
        }
    }
}

/// What `id new` and `id import` print with `--json`.
fn summary(identity: &Identity, seed_file: &std::path::Path) -> serde_json::Value {
    json!({
        "name": identity.name,
        "public_key": identity.keypair.public(),
        "user_id": identity.user_id,
        "seed_file": seed_file,
    })
}

async fn register_identity(ctx: &Ctx, identity: &mut Identity, name: &str, email: &str) -> Result<()> {
    let url = ctx.explorer_url(Some(identity))?;
    let client = ctx.explorer(&url)?.with_key(identity.keypair.clone());
    let user = client.register_user(name, email).await.context("registration failed")?;
    identity.user_id = Some(user.id);
    identity.explorer = Some(url);
    ctx.store().save(identity, true)?;
    Ok(())
}
