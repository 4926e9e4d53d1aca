//! `zgrid flist`: pack a directory, an archive or a container image into an flist and read one
//! back (list, print a file, inspect, unpack), against a local chunk store.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};
use zgrid_flist::{DirStore, Flist};

use crate::args::FlistCommand;
use crate::config::Ctx;
use crate::output;

fn open(path: &Path) -> Result<Flist> {
    Flist::open(path).with_context(|| format!("cannot read the flist {}", path.display()))
}

pub async fn run(ctx: &Ctx, cmd: FlistCommand) -> Result<()> {
    match cmd {
        FlistCommand::Push { flist, store, name, hub } => super::hub::push(ctx, &flist, &store, name, hub).await,
        FlistCommand::Create { source, output: out, store } => {
            let summary = zgrid_flist::import(&source, &DirStore::new(&store), &out)
                .with_context(|| format!("cannot pack {}", source.display()))?;
            let address = zgrid_flist::address(&out)?;
            let report = serde_json::json!({ "flist": out, "address": address, "summary": summary });
            output::report(ctx.json, &report, || {
                println!(
                    "{} ({address}): {} inodes, {} bytes in {} chunks, {} new in {}",
                    out.display(),
                    summary.inodes,
                    summary.bytes,
                    summary.chunks,
                    summary.new_chunks,
                    store.display()
                );
            })
        }
        FlistCommand::Ls { flist, path } => {
            let flist = open(&flist)?;
            let dir = zgrid_flist::resolve(&flist, &path)?;
            let mut listed = Vec::new();
            for (name, ino) in flist.entries(dir)? {
                let inode = flist.inode(ino)?.context("an entry names a missing inode")?;
                let name = String::from_utf8_lossy(&name).into_owned();
                listed.push(serde_json::json!({
                    "name": name, "mode": format!("{:o}", inode.mode), "uid": inode.uid, "gid": inode.gid, "size": inode.size,
                    "target": inode.target.map(|t| String::from_utf8_lossy(&t).into_owned()),
                }));
            }
            output::report(ctx.json, &listed, || {
                for e in &listed {
                    let target = e["target"].as_str().map(|t| format!(" -> {t}")).unwrap_or_default();
                    println!(
                        "{:>7} {:>5} {:>5} {:>10}  {}{target}",
                        e["mode"].as_str().unwrap_or(""),
                        e["uid"],
                        e["gid"],
                        e["size"],
                        e["name"].as_str().unwrap_or("")
                    );
                }
            })
        }
        FlistCommand::Cat { flist, path, store } => {
            let flist = open(&flist)?;
            let ino = zgrid_flist::resolve(&flist, &path)?;
            let inode = flist.inode(ino)?.context("missing inode")?;
            if inode.mode & 0o170000 != 0o100000 {
                bail!("{path} is not a regular file");
            }
            let mut out = std::io::stdout().lock();
            zgrid_flist::copy_file(&flist, &DirStore::new(store), ino, &mut out)?;
            out.flush()?;
            Ok(())
        }
        FlistCommand::Inspect { flist: path } => {
            let flist = open(&path)?;
            let (inodes, bytes, chunks, distinct) = flist.totals()?;
            let config = flist.config()?;
            let report = serde_json::json!({
                "address": zgrid_flist::address(&path)?, "format": zgrid_flist::meta::FORMAT, "inodes": inodes,
                "bytes": bytes, "chunks": chunks, "distinct_chunks": distinct, "config": config,
            });
            output::report(ctx.json, &report, || {
                println!("address   {}", report["address"].as_str().unwrap_or(""));
                println!("contents  {inodes} inodes, {bytes} bytes in {chunks} chunks ({distinct} distinct)");
                println!(
                    "entrypoint {:?} cmd {:?} env {:?} workdir {:?}",
                    config.entrypoint, config.cmd, config.env, config.workdir
                );
            })
        }
        FlistCommand::Unpack { flist, dest, store } => {
            if dest.read_dir().is_ok_and(|mut d| d.next().is_some()) {
                bail!("{} is not empty; unpack into a new directory", dest.display());
            }
            zgrid_flist::unpack(&open(&flist)?, &DirStore::new(store), &dest)?;
            if !ctx.json {
                println!("unpacked into {}", dest.display());
            }
            Ok(())
        }
    }
}
