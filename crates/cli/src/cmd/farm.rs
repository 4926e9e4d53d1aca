//! `zgrid farm`: create and list farms, and invite nodes into them.

use anyhow::{Context, Result, bail};
use zgrid_types::directory::{FarmIp, FarmRegistration};
use zgrid_types::invitation::{self, MAX_INVITATION_SECS};

use crate::args::{FarmCommand, Lifetime};
use crate::config::Ctx;
use crate::output;

fn parse_ip(text: &str) -> Result<FarmIp> {
    let (address, gateway) = text.split_once('=').with_context(|| {
        format!("--public-ip {text:?}: write ADDRESS/PREFIX=GATEWAY, e.g. 185.69.166.10/24=185.69.166.1")
    })?;
    Ok(FarmIp {
        address: address.parse().with_context(|| format!("--public-ip: {address:?} is not ADDRESS/PREFIX"))?,
        gateway: gateway.parse().with_context(|| format!("--public-ip: {gateway:?} is not an IPv4 address"))?,
    })
}

pub async fn run(ctx: &Ctx, cmd: FarmCommand) -> Result<()> {
    match cmd {
        FarmCommand::Create { name, public_ips } => {
            let public_ips = public_ips.iter().map(|p| parse_ip(p)).collect::<Result<_>>()?;
            let (client, _) = ctx.signed_client()?;
            let farm = client.create_farm(&FarmRegistration { name, public_ips }).await?;
            output::report(ctx.json, &farm, || println!("created farm {} ({})", farm.id, farm.name))
        }
        FarmCommand::List { page } => {
            let farms = ctx.anonymous_client()?.farms(page.page, page.size).await?;
            if ctx.json {
                return output::json(&farms);
            }
            let rows: Vec<Vec<String>> = farms
                .items
                .iter()
                .map(|f| vec![f.id.to_string(), f.name.clone(), f.owner.to_string(), f.public_ips.len().to_string()])
                .collect();
            output::table(&["ID", "NAME", "OWNER", "PUBLIC IPS"], &rows);
            println!("page {}, {} farms", farms.page, farms.total);
            Ok(())
        }
        FarmCommand::Invite { farm, expires, node } => invite(ctx, farm, expires, node.as_deref()).await,
    }
}

/// Sign an invitation into `farm`, which must be mine, and print it as a token.
async fn invite(ctx: &Ctx, farm: u64, expires: Lifetime, node: Option<&str>) -> Result<()> {
    let (client, identity) = ctx.signed_client()?;
    let me = Ctx::user_id(&identity)?;
    let expires_at = crate::cmd::submit::expiry(expires);
    if expires_at - zgrid_types::unix_now() > MAX_INVITATION_SECS {
        bail!("--expires: an invitation lasts at most {} days", MAX_INVITATION_SECS / 86_400);
    }
    let node_id = node.map(crate::cmd::submit::node_id).transpose()?;
    let found = client
        .farm(farm)
        .await
        .with_context(|| format!("cannot find farm {farm}; list farms with `zgrid farm list`"))?;
    if found.owner != me {
        bail!(
            "farm {farm} ({}) belongs to user {}, not to you (user {me}): only its owner can invite nodes",
            found.name,
            found.owner
        );
    }
    let token = invitation::invite(&identity.keypair, farm, node_id, expires_at).to_token();
    let shown = serde_json::json!({ "token": token, "farm_id": farm, "node_id": node_id, "expires_at": expires_at });
    output::report(ctx.json, &shown, || {
        println!("{token}");
        let who = node_id
            .map_or_else(|| "any node that presents it (keep it secret)".to_owned(), |n| format!("node {n} only"));
        eprintln!(
            "invitation into farm {farm} ({}) for {who}, until {}; on the machine, save it to a file and run\n  \
             zgrid node --farm {farm} --farm-invite-file FILE",
            found.name,
            output::time(expires_at)
        );
    })
}
