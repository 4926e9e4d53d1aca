//! `zgrid network add-access | remove-access`: let a machine outside the grid (a laptop) join
//! a network through a public member, or revoke it. The access point's private key is written
//! only to its `wg-quick` config file, never printed or logged.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use ipnet::Ipv4Net;
use zgrid_client::network::{AccessPoint, Network, check_wg_quick_file};
use zgrid_types::NodeId;

use super::Session;
use crate::args::NetworkNode;
use crate::cmd::submit;
use crate::output;

/// Add an access point with `subnet` (default: the lowest free one) through `target.node`:
/// write its config to `output` (default: `NAME.conf`), then route it on every member.
pub async fn add(
    s: &Session,
    target: &NetworkNode,
    subnet: Option<Ipv4Net>,
    output: Option<PathBuf>,
    force: bool,
) -> Result<()> {
    let name = &target.network.name;
    let path = output.unwrap_or_else(|| PathBuf::from(format!("{name}.conf")));
    check_output(&path, force, "--output")?;
    let network = s.existing(name).await?;
    let node = submit::resolve_node(&s.client, &target.node).await?;
    let access = grant(s, network, node, subnet, &path).await?;
    let shown = serde_json::json!({ "network": name, "access_point": access, "config": path });
    output::report(s.json, &shown, || {
        println!("wrote the WireGuard config of access point {} to {} (mode 0600)", access.subnet, path.display());
        print_wg_quick(&path);
    })
}

/// Check that `path` (given with `flag`) can take a new `wg-quick` config: a usable file name
/// in an existing directory, and no file there unless `force`.
pub(crate) fn check_output(path: &Path, force: bool, flag: &str) -> Result<()> {
    check_wg_quick_file(path)
        .with_context(|| format!("config file {} (choose another with {flag})", path.display()))?;
    if path.exists() && !force {
        bail!("{} exists: pass --force to overwrite it, or choose another file with {flag}", path.display());
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !dir.is_dir() {
        bail!("{} is not a directory: create it, or choose another file with {flag}", dir.display());
    }
    Ok(())
}

/// Add an access point with `subnet` (default: the lowest free one) to `network` through
/// `node`, write its `wg-quick` config to `path` (mode 0600), then route it on every member.
pub(crate) async fn grant(
    s: &Session,
    mut network: Network,
    node: NodeId,
    subnet: Option<Ipv4Net>,
    path: &Path,
) -> Result<AccessPoint> {
    let name = network.name().to_owned();
    let chosen = network.access_subnet(subnet);
    let subnet = match subnet {
        Some(given) => chosen.with_context(|| format!("--subnet {given}"))?,
        None => chosen?,
    };
    let (access, key) = AccessPoint::generate(node, subnet);
    network.add_access_point(access.clone()).with_context(|| format!("--node {node}"))?;
    network.check()?;
    let config = network.wg_quick_config(&access, &key)?;
    // the key is saved before the ledger can name the access point, so it is never lost
    zgrid_client::write_private(path, config.as_bytes())?;
    s.progress(format!("adding access point {subnet} to network {name} through node {node}"));
    s.update_peers(&network).await.with_context(|| {
        format!(
            "{} was written, but not every node routes the access point yet; check `zgrid network show --name {name}`",
            path.display()
        )
    })?;
    Ok(access)
}

/// Tell how to connect this machine with the config at `path`, and disconnect it.
pub(crate) fn print_wg_quick(path: &Path) {
    println!("connect this machine with:    sudo wg-quick up {}", absolute(path).display());
    println!("disconnect it with:           sudo wg-quick down {}", absolute(path).display());
}

/// Revoke the access point `which` (its subnet or public key): every member whose peers or
/// routes name it gets a new version without it, and the nodes' verdicts are awaited, so on
/// success no node accepts its key any more.
pub async fn remove(s: &Session, name: &str, which: &str) -> Result<()> {
    let mut network = s.existing(name).await?;
    let access = network.remove_access_point(which).context("--access")?;
    network.check()?;
    s.progress(format!("removing access point {} from network {name}", access.subnet));
    s.update_peers(&network).await.with_context(|| {
        format!(
            "not every node has dropped access point {} yet; run `zgrid network remove-access --name {name} --access {}` again",
            access.subnet, access.public_key
        )
    })?;
    let shown = serde_json::json!({ "network": name, "removed": access });
    output::report(s.json, &shown, || {
        println!(
            "access point {} (key {}) removed from network {name}: no node accepts its key any more",
            access.subnet, access.public_key
        );
    })
}

/// `path` from the root, so the printed commands work from any directory.
pub(crate) fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}
