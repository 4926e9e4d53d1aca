//! `zgrid hub`: serve a hub, list its namespaces and flists, import archives, merge and remove
//! flists; and `zgrid flist push`: upload an flist with the chunks the hub lacks.

use std::path::Path;

use anyhow::{Context, Result};
use futures::{StreamExt, TryStreamExt};
use zgrid_client::HubClient;
use zgrid_flist::{DirStore, Flist};
use zgrid_types::hub::{FlistInfo, Stored};

use crate::args::{HubCommand, HubUrl, TlsArgs, UploadLimitArgs};
use crate::config::Ctx;
use crate::output;

/// Chunk uploads in flight at once.
const PARALLEL_UPLOADS: usize = 8;

pub async fn run(ctx: &Ctx, cmd: HubCommand) -> Result<()> {
    match cmd {
        HubCommand::Serve { listen, data, limits, tls } => serve(&listen, &data, limits, &tls).await,
        HubCommand::Ls { owner, hub } => ls(ctx, owner, hub).await,
        HubCommand::Import { source, name, hub } => {
            let client = signed(ctx, hub)?;
            // A directory (a root filesystem or an OCI image layout) travels as a tar.
            let spooled = if source.is_dir() { Some(tar_dir(&source)?) } else { None };
            let file = spooled.as_ref().map_or(source.as_path(), |f| f.path());
            eprintln!("uploading {} to {} for import...", source.display(), client.url());
            let stored = client.import(&name, file).await.context("import failed")?;
            print_stored(ctx, &client, &stored)
        }
        HubCommand::Merge { name, sources, hub } => {
            let client = signed(ctx, hub)?;
            let stored = client.merge(&name, sources).await.context("merge failed")?;
            print_stored(ctx, &client, &stored)
        }
        HubCommand::Stats { hub } => {
            let stats = ctx.hub(&ctx.hub_url(hub.hub)?)?.stats().await?;
            output::report(ctx.json, &stats, || {
                println!(
                    "served {} chunks ({} bytes) and {} flists; received {} new chunks",
                    stats.chunks_served, stats.chunk_bytes_served, stats.flists_served, stats.chunks_received
                );
            })
        }
        HubCommand::Rm { name, hub } => {
            signed(ctx, hub)?.delete(&name).await?;
            if !ctx.json {
                println!("removed {name}");
            }
            Ok(())
        }
    }
}

async fn serve(listen: &str, data: &Path, limits: UploadLimitArgs, tls: &TlsArgs) -> Result<()> {
    let config = zgrid_hub::Config {
        uploads: zgrid_hub::UploadLimits {
            uploads: limits.max_uploads,
            uploads_per_key: limits.max_uploads_per_key,
            bytes: limits.max_spool_mib << 20,
            bytes_per_key: limits.max_spool_mib_per_key << 20,
        },
        ..zgrid_hub::Config::new(data)
    };
    let hub = zgrid_hub::Hub::open(config)
        .with_context(|| format!("cannot open the hub's data directory {}", data.display()))?;
    let listener = super::explorer::listen(listen, tls).await?;
    let url = listener.url()?;
    tracing::info!(%url, data = %data.display(), "hub ready");
    // Scripts and tests wait for this line.
    println!("hub listening on {url}");
    zgrid_hub::run(listener, hub, super::explorer::shutdown_signal()).await.context("hub stopped with an error")
}

fn signed(ctx: &Ctx, hub: HubUrl) -> Result<HubClient> {
    let identity = ctx.identity()?;
    Ok(ctx.hub(&ctx.hub_url(hub.hub)?)?.with_key(identity.keypair))
}

async fn ls(ctx: &Ctx, owner: Option<String>, hub: HubUrl) -> Result<()> {
    let client = ctx.hub(&ctx.hub_url(hub.hub)?)?;
    let Some(owner) = owner else {
        let repos = client.repositories().await?;
        let rows = repos.iter().map(|r| vec![r.owner.clone(), r.flists.to_string()]).collect::<Vec<_>>();
        return output::report(ctx.json, &repos, || output::table(&["NAMESPACE", "FLISTS"], &rows));
    };
    let owner = if owner == "me" { ctx.identity()?.keypair.public().to_string() } else { owner };
    let flists = client.list(&owner).await?;
    let rows = flists
        .iter()
        .map(|f| vec![f.name.clone(), f.hash[..16].to_owned(), f.content_bytes.to_string(), url(&client, f)])
        .collect::<Vec<_>>();
    output::report(ctx.json, &flists, || output::table(&["NAME", "HASH", "BYTES", "URL"], &rows))
}

/// Where `f` downloads from.
pub fn url(client: &HubClient, f: &FlistInfo) -> String {
    format!("{}{}", client.url().trim_end_matches('/'), f.path)
}

fn print_stored(ctx: &Ctx, client: &HubClient, stored: &Stored) -> Result<()> {
    let f = &stored.flist;
    let report = serde_json::json!({ "url": url(client, f), "stored": stored });
    output::report(ctx.json, &report, || {
        println!("{}", url(client, f));
        println!(
            "  hash {}  {} bytes in {} chunks; {} new chunks ({} bytes) stored",
            f.hash, f.content_bytes, f.chunks, stored.new_chunks, stored.new_bytes
        );
    })
}

/// Tar `dir` into a temporary file, as `zgrid_flist::tar_dir` writes it: a root filesystem so
/// imports into the same flist as `zgrid flist create` gives (hardlinks, xattrs and all).
fn tar_dir(dir: &Path) -> Result<tempfile::NamedTempFile> {
    let file = tempfile::NamedTempFile::new().context("cannot create a temporary file")?;
    zgrid_flist::tar_dir(dir, file.reopen()?)
        .with_context(|| format!("cannot archive {}", dir.display()))?
        .sync_all()?;
    Ok(file)
}

/// `zgrid flist push`: upload the chunks the hub lacks, then the flist.
pub async fn push(ctx: &Ctx, path: &Path, store: &Path, name: Option<String>, hub: HubUrl) -> Result<()> {
    let client = signed(ctx, hub)?;
    let name = match name {
        Some(name) => name,
        None => path.file_name().map(|n| n.to_string_lossy().into_owned()).context("give the flist a --name")?,
    };
    let stored = upload(&client, path, &DirStore::new(store), &name, !ctx.json).await?;
    print_stored(ctx, &client, &stored)
}

/// Upload the chunks of the flist at `path` that the hub lacks (from `store`), then the flist
/// as `name`; with `verbose`, progress goes to stderr. What was stored, and where.
pub async fn upload(client: &HubClient, path: &Path, store: &DirStore, name: &str, verbose: bool) -> Result<Stored> {
    zgrid_types::hub::check_flist_name(name).map_err(anyhow::Error::msg)?;
    let ids = Flist::open(path)
        .and_then(|f| f.chunk_ids())
        .with_context(|| format!("cannot read the flist {}", path.display()))?;
    let ids: Vec<String> = ids.iter().map(hex::encode).collect();
    let missing = client.missing(&ids).await?;
    let total = missing.len();
    // Each chunk with its stored size, so progress counts bytes.
    let missing = missing
        .into_iter()
        .map(|id| {
            let hash: zgrid_flist::chunk::Hash =
                hex::decode(&id).ok().and_then(|b| b.try_into().ok()).context("the hub named a bad chunk id")?;
            let file = store.path(&hash);
            let size = std::fs::metadata(&file)
                .with_context(|| format!("chunk {id} is not in the store ({})", file.display()))?
                .len();
            anyhow::Ok((id, hash, size))
        })
        .collect::<Result<Vec<_>>>()?;
    let total_bytes = missing.iter().map(|(_, _, size)| size).sum();
    if verbose {
        eprintln!(
            "{} chunks referenced, {total} not on {} yet ({})",
            ids.len(),
            client.url(),
            indicatif::BinaryBytes(total_bytes)
        );
    }
    let progress = crate::output::Progress::new(total as u64, total_bytes, "chunks uploaded", !verbose);
    futures::stream::iter(missing)
        .map(|(id, hash, size)| {
            let progress = &progress;
            async move {
                let bytes = store.get(&hash).with_context(|| format!("chunk {id} is not in the store"))?;
                client.put_chunk(&id, bytes).await.with_context(|| format!("cannot upload chunk {id}"))?;
                progress.step(size);
                anyhow::Ok(())
            }
        })
        .buffer_unordered(PARALLEL_UPLOADS)
        .try_collect::<()>()
        .await?;
    drop(progress);
    let stored = client.put_flist(name, path).await.context("cannot store the flist")?;
    Ok(Stored { new_chunks: total as u64, new_bytes: total_bytes, ..stored })
}
