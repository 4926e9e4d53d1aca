//! `zgrid farm`: create and list farms.

use anyhow::{Context, Result};
use zgrid_types::directory::{FarmIp, FarmRegistration};

use crate::args::FarmCommand;
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
    }
}
