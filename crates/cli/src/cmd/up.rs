//! `zgrid up`, `zgrid status`, `zgrid down`: a whole grid on this machine that stays up
//! between commands (see `zgrid_devnet::local`), with this CLI pointed at it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use zgrid_client::{HubClient, Identity};
use zgrid_devnet::local::{self, Status, UpOptions};
use zgrid_flist::DirStore;

use crate::args::{GridDir, UpArgs};
use crate::config::{Ctx, GRID, K8S_FLIST};
use crate::output;

/// The identity `zgrid up` makes for deploying on the grid.
const IDENTITY: &str = "devnet";
/// The image `zgrid up` seeds the hub with.
const IMAGE: &str = "busybox.flist";

/// An image a script builds on this machine: its flist and the flist's chunk store (`store/`)
/// in one directory.
struct CachedImage {
    /// The directory.
    dir: &'static str,
    /// The flist's name there, and on the hub.
    name: &'static str,
    /// What it is, for the progress line.
    what: &'static str,
}

/// The Debian VM image of `scripts/vm-image`.
const VM_IMAGE: CachedImage = CachedImage {
    dir: "/var/cache/zgrid/vm-image",
    name: "debian-bookworm-vm.flist",
    what: "the Debian VM image of scripts/vm-image",
};

/// The Kubernetes image of `scripts/k8s-image`, which `zgrid k8s up` boots.
const K8S_IMAGE: CachedImage = CachedImage {
    dir: "/var/cache/zgrid/k8s-image",
    name: "zgrid-kubernetes.flist",
    what: "the Kubernetes image of scripts/k8s-image",
};

/// Steps go to stderr, unless the output is JSON.
fn progress(quiet: bool) -> impl FnMut(&str) + Send + 'static {
    move |step: &str| {
        if !quiet {
            eprintln!("==> {step}");
        }
    }
}

fn need_root() -> Result<()> {
    if !nix::unistd::Uid::effective().is_root() {
        bail!("run as root: the grid's nodes make network namespaces, mounts, cgroups and containers");
    }
    Ok(())
}

pub async fn up(ctx: &Ctx, a: UpArgs) -> Result<()> {
    need_root()?;
    let zgrid = std::env::current_exe().context("cannot find this program")?;
    let dir = grid_dir(ctx, &a.grid)?;
    let (json, mut say) = (ctx.json, progress(ctx.json));
    let assets = &a.console_assets;
    if !assets.join("xterm.js").is_file() || !assets.join("xterm.css").is_file() {
        say(&format!(
            "no xterm.js in {}: consoles will show a plain text terminal; install it with `scripts/console-assets {}` (from a checkout of zgrid; needs npm) before starting the nodes",
            assets.display(),
            assets.display()
        ));
    }
    let opts = UpOptions {
        zgrid,
        dir: dir.clone(),
        nodes: a.nodes,
        log_level: "info".into(),
        console_assets: a.console_assets.clone(),
    };
    let status = tokio::task::spawn_blocking(move || local::up(&opts, &mut progress(json))).await??;
    let identity = deployer(ctx, &status.explorer.address).await?;
    let mut config = ctx.config()?;
    let acting = point_at(&mut config, &status);
    say(&format!("pointing this CLI at the grid (explorer, hub, identity {acting})"));
    ctx.save_config(&config)?;
    let image = seed_hub(&dir, &status, &identity, &mut say).await?;
    let vm_image = seed_cached(&status, &identity, &VM_IMAGE, &mut say).await?;
    let k8s_image = seed_cached(&status, &identity, &K8S_IMAGE, &mut say).await?;
    if let Some(url) = &k8s_image {
        config.insert(K8S_FLIST.into(), url.clone());
        ctx.save_config(&config)?;
    }
    let report = serde_json::json!({ "grid": status, "image": image, "vm_image": vm_image, "k8s_image": k8s_image });
    output::report(ctx.json, &report, || {
        print_status(&status);
        println!("image     {image}");
        if let Some(vm_image) = &vm_image {
            println!("vm image  {vm_image}");
        }
        if let Some(k8s_image) = &k8s_image {
            println!("k8s image {k8s_image}");
        }
        println!();
        println!("Try:");
        let node = status.nodes[0].id.as_deref().unwrap_or("NODE");
        println!(
            "  zgrid deploy container --node {node} --flist {image} --entrypoint 'sh -c \"echo hi; sleep 600\"' --wait",
        );
        if let Some(vm_image) = &vm_image {
            println!("  zgrid network create --name net --cidr 10.90.0.0/16 --node {node}");
            println!(
                "  zgrid deploy vm --node {node} --flist {vm_image} --network net --ssh-key ~/.ssh/id_ed25519.pub --wait"
            );
        }
        if k8s_image.is_some() {
            println!("  zgrid k8s up --name kube --nodes 2");
        }
        println!("  zgrid live");
        println!("  a browser on {}/ (the cockpit)", status.explorer.address.trim_end_matches('/'));
        println!("  zgrid status; zgrid down");
    })
}

/// The directory of the grid `a` names: `--dir`, else the grid `zgrid up` last pointed this
/// CLI at, else the default.
fn grid_dir(ctx: &Ctx, a: &GridDir) -> Result<PathBuf> {
    match &a.dir {
        Some(dir) => Ok(dir.clone()),
        None => Ok(ctx.config()?.get(GRID).map_or_else(|| PathBuf::from(local::DEFAULT_DIR), PathBuf::from)),
    }
}

/// Point the CLI's settings at the grid `status` describes, acting as the `devnet` identity,
/// unless they already point there: then the identity chosen since (`zgrid id use`) stays, so
/// a repair changes nothing the user set. The identity that acts.
fn point_at(config: &mut crate::config::ConfigFile, status: &Status) -> String {
    let explorer = status.explorer.address.as_str();
    let here = config.get("explorer").is_some_and(|e| e == explorer);
    let chosen = config.get("identity").filter(|_| here).cloned();
    config.insert("explorer".into(), explorer.into());
    config.insert("hub".into(), status.hub.address.clone());
    config.insert(GRID.into(), status.dir.to_string_lossy().into_owned());
    let acting = chosen.unwrap_or_else(|| IDENTITY.into());
    config.insert("identity".into(), acting.clone());
    acting
}

/// The `devnet` identity, made and registered with the grid's explorer if need be.
async fn deployer(ctx: &Ctx, explorer: &str) -> Result<Identity> {
    let store = ctx.store();
    let mut identity = match store.load(IDENTITY) {
        Ok(identity) => identity,
        Err(_) => {
            let identity = Identity::generate(IDENTITY);
            store.save(&identity, false)?;
            identity
        }
    };
    let client = ctx.explorer(explorer)?.with_key(identity.keypair.clone());
    let user = match client.whoami().await? {
        Some(user) => user,
        None => {
            // A unique name: an older grid's registration may hold "devnet".
            let name = format!("{IDENTITY}-{}", identity.keypair.public().to_string()[..8].to_lowercase());
            client.register_user(&name, "").await.context("cannot register the devnet identity")?
        }
    };
    identity.user_id = Some(user.id);
    identity.explorer = Some(explorer.to_owned());
    store.save(&identity, true)?;
    Ok(identity)
}

/// The grid's hub, acting as `identity`, and the URL of its flist `name` in the identity's
/// namespace if it is there.
async fn hub_with(status: &Status, identity: &Identity, name: &str) -> Result<(HubClient, Option<String>)> {
    let client = HubClient::new(&status.hub.address)?.with_key(identity.keypair.clone());
    let owner = identity.keypair.public().to_string();
    let found = client.list(&owner).await?.into_iter().find(|f| f.name == name);
    let url = found.map(|f| super::hub::url(&client, &f));
    Ok((client, url))
}

/// Push `image` unless the hub has it; its URL, or `None` when that image was never built on
/// this machine.
async fn seed_cached(
    status: &Status,
    identity: &Identity,
    image: &CachedImage,
    say: &mut impl FnMut(&str),
) -> Result<Option<String>> {
    let dir = std::path::Path::new(image.dir);
    let flist = dir.join(image.name);
    if !flist.exists() {
        return Ok(None);
    }
    let (client, url) = hub_with(status, identity, image.name).await?;
    if url.is_some() {
        return Ok(url);
    }
    say(&format!("seeding the hub with {}", image.what));
    let stored = super::hub::upload(&client, &flist, &DirStore::new(dir.join("store")), image.name, false).await?;
    Ok(Some(super::hub::url(&client, &stored.flist)))
}

/// Push a busybox image as `busybox.flist` in the deployer's namespace unless it is there;
/// its URL.
async fn seed_hub(grid: &Path, status: &Status, identity: &Identity, say: &mut impl FnMut(&str)) -> Result<String> {
    let (client, url) = hub_with(status, identity, IMAGE).await?;
    if let Some(url) = url {
        return Ok(url);
    }
    say("seeding the hub with a busybox image");
    let images = grid.join("images");
    let rootfs = zgrid_devnet::busybox_rootfs(&images)?;
    let (flist, store) = (images.join(IMAGE), DirStore::new(images.join("store")));
    let pack_store = store.clone();
    let packed = flist.clone();
    tokio::task::spawn_blocking(move || zgrid_flist::pack(&rootfs, &pack_store, &packed)).await??;
    let stored = super::hub::upload(&client, &flist, &store, IMAGE, false).await?;
    Ok(super::hub::url(&client, &stored.flist))
}

fn print_status(s: &Status) {
    let state = |pid: Option<u32>| pid.map_or_else(|| "DOWN".to_owned(), |p| format!("up (pid {p})"));
    println!("grid      {}", s.dir.display());
    println!("explorer  {}  {}", s.explorer.address, state(s.explorer.pid));
    println!("hub       {}  {}", s.hub.address, state(s.hub.pid));
    println!("farm      {}", s.farm.map_or_else(|| "-".into(), |f| f.to_string()));
    let rows: Vec<Vec<String>> = s
        .nodes
        .iter()
        .map(|n| {
            vec![
                n.name.clone(),
                n.id.clone().unwrap_or_default(),
                n.agent.address.clone(),
                n.netns.clone(),
                state(n.agent.pid),
            ]
        })
        .collect();
    output::table(&["NODE", "ID", "ADDRESS", "NAMESPACE", "AGENT"], &rows);
}

pub fn status(ctx: &Ctx, a: GridDir) -> Result<()> {
    let dir = grid_dir(ctx, &a)?;
    let Some(status) = local::status(&dir)? else {
        bail!("no grid in {}; start one with `zgrid up`, or name another grid's directory with --dir", dir.display());
    };
    output::report(ctx.json, &status, || print_status(&status))?;
    if !status.healthy() {
        bail!("parts of the grid are down; `zgrid up` starts them again");
    }
    Ok(())
}

pub fn down(ctx: &Ctx, a: GridDir) -> Result<()> {
    need_root()?;
    let dir = grid_dir(ctx, &a)?;
    if !dir.exists() {
        if !ctx.json {
            println!("there is no grid in {}; nothing to stop", dir.display());
        }
        return Ok(());
    }
    let urls = local::status(&dir)?.map(|s| (s.explorer.address, s.hub.address));
    local::down(&dir, &mut progress(ctx.json))?;
    // Forget the grid's URLs if this CLI still points at them.
    if let Some((explorer, hub)) = urls {
        let mut config = ctx.config()?;
        let before = config.len();
        config.retain(|k, v| {
            !((k == "explorer" && *v == explorer)
                || (k == "hub" && *v == hub)
                || (k == GRID && std::path::Path::new(v) == dir)
                || (k == K8S_FLIST && v.starts_with(&hub)))
        });
        if config.len() != before {
            ctx.save_config(&config)?;
        }
    }
    if !ctx.json {
        println!("the grid is down; nothing of it is left");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use zgrid_devnet::local::{Process, Status};

    use super::point_at;

    /// A grid in `dir` whose explorer and hub are on `net`.
    fn grid(dir: &str, net: &str) -> Status {
        let part = |port| Process { address: format!("http://{net}:{port}"), pid: Some(1) };
        Status { dir: dir.into(), explorer: part(8080), hub: part(8081), farm: Some(1), nodes: vec![] }
    }

    #[test]
    fn a_new_grid_acts_as_devnet_and_a_repair_keeps_the_identity_chosen_since() {
        let mut config = [("identity".to_owned(), "alice".to_owned())].into();
        assert_eq!(point_at(&mut config, &grid("/srv/a", "10.1.0.1")), "devnet");
        assert_eq!((config["explorer"].as_str(), config["grid"].as_str()), ("http://10.1.0.1:8080", "/srv/a"));
        config.insert("identity".into(), "alice".into()); // zgrid id use alice
        assert_eq!(point_at(&mut config, &grid("/srv/a", "10.1.0.1")), "alice");
        assert_eq!(config["identity"], "alice");
        assert_eq!(point_at(&mut config, &grid("/srv/b", "10.2.0.1")), "devnet", "another grid");
        assert_eq!(config["grid"], "/srv/b", "status and down look there");
    }
}
