//! `zgrid bench flist`: on a devnet of this machine (an explorer, a hub and node agents in
//! network namespaces), how long a container takes from submission to its first output when its
//! image is an flist on the hub, mounted and fetched chunk by chunk as it is read, against the
//! same image as a .tar.gz downloaded whole over HTTP and unpacked by the node; and what the hub
//! stores for successive versions of an image (its chunk dedup).
//!
//! Every run uses a new node, so its chunk cache, downloaded flists, unpacked images and mount
//! service all start empty. The hub's chunk files and the archive stay in the host's page cache,
//! as on a hub or a mirror that serves them often. A busybox container runs on each node first,
//! so the costs of a node's first container (cgroup parents) are not timed.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use zgrid_devnet::{Devnet, DevnetConfig, Node, NodeOptions, busybox_rootfs, cli, cli_json, nsenter};

use super::{remove_unless_mounted, run_tool};
use crate::config::Ctx;
use crate::output;

/// Where the debootstrap image is kept, and the benchmark's working files.
const CACHE: &str = "/var/tmp/zgrid-bench";
/// Where `scripts/chunking-images` puts its versions.
const CHUNKING_IMAGES: &str = "/var/tmp/zgrid-chunking";
/// What the container runs: it is ready when Python has started and imported the modules the
/// lazy-loading measurement of `docs/flist.md` imports (python3-minimal has no `json`); it
/// prints when, by the host's clock, which containers share.
const ENTRYPOINT: &str = r#"/usr/bin/python3 -c 'import ssl, socket, subprocess, hashlib, email.parser, urllib.parse, time; print("ready", time.time(), flush=True); time.sleep(1e6)'"#;
/// How often the container's output is read.
const POLL: Duration = Duration::from_millis(50);
/// How long one start may take.
const LIMIT: Duration = Duration::from_secs(180);

/// What `zgrid bench flist` was asked for.
pub struct Options {
    pub runs: usize,
    pub extra_mib: u64,
    pub image: Option<PathBuf>,
    pub versions: Vec<PathBuf>,
}

pub async fn run(ctx: &Ctx, options: Options) -> Result<()> {
    if options.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let report = tokio::task::spawn_blocking(move || measure(options)).await??;
    if ctx.json {
        return output::json(&report);
    }
    print(&report);
    Ok(())
}

fn measure(mut o: Options) -> Result<Value> {
    let image = match o.image.take() {
        Some(dir) => dir,
        None => debian_image()?,
    };
    std::fs::create_dir_all(CACHE).with_context(|| format!("cannot create {CACHE}"))?;
    // Beside the cached image, so the working copy can hard-link its files.
    let work = tempfile::Builder::new().prefix("run-").tempdir_in(CACHE)?;
    let report = measure_in(o, &image, work.path());
    remove_unless_mounted(work)?;
    report
}

/// Everything, in `work`; the devnet is gone when it returns.
fn measure_in(o: Options, image: &Path, work: &Path) -> Result<Value> {
    let zgrid = std::env::current_exe().context("cannot find the zgrid binary")?;
    let mut config = DevnetConfig::new(&zgrid, work.join("devnet"));
    config.log_level = "warn".into();
    let devnet = Devnet::start(config)?;
    let me = Deployer::register(zgrid, work.join("deployer"), &devnet)?;
    // Versions first, so that the hub's chunk directory holds only them when it is measured.
    let dedup = dedup(&me, &devnet, &versions(o.versions), &work.join("versions"))?;
    let cold = cold_starts(&me, &devnet, image, o.extra_mib, o.runs, work)?;
    Ok(json!({ "cold_start": cold, "dedup": dedup }))
}

/// The CLI as the devnet's deployer.
pub(super) struct Deployer {
    pub zgrid: PathBuf,
    pub home: PathBuf,
    pub explorer: String,
    /// The deployer's user id on the explorer.
    pub user_id: u64,
}

impl Deployer {
    /// A new identity in `home` for `zgrid`, registered with `devnet`'s explorer, with the
    /// devnet's hub as its hub.
    pub(super) fn register(zgrid: PathBuf, home: PathBuf, devnet: &Devnet) -> Result<Self> {
        let mut me = Self { zgrid, home, explorer: devnet.explorer_url().to_owned(), user_id: 0 };
        let made = me.json(&["id", "new", "bench", "--register"])?;
        me.user_id = made["user_id"].as_u64().context("`zgrid id new --register` printed no user id")?;
        run_tool(me.cli().args(["config", "set", "hub", devnet.hub_url()]), "zgrid config set", "zgrid")?;
        Ok(me)
    }

    /// `zgrid network create` of network `name` over `cidr` with a member on each of `nodes`.
    pub(super) fn create_network(&self, name: &str, cidr: &str, nodes: &[&Node]) -> Result<()> {
        let mut args = vec!["network", "create", "--name", name, "--cidr", cidr];
        for node in nodes {
            args.extend(["--node", node.id()]);
        }
        run_tool(self.cli().args(args), "zgrid network create", "zgrid").map(drop)
    }

    pub(super) fn cli(&self) -> Command {
        cli(&self.zgrid, &self.home, &self.explorer)
    }

    pub(super) fn json(&self, args: &[&str]) -> Result<Value> {
        cli_json(&self.zgrid, &self.home, &self.explorer, args)
    }

    /// Pack `rootfs` into `<dir>/<name>` (chunks in `<dir>/store`) and push it to the hub as
    /// `name`; the push's JSON (`url`, `stored`).
    pub(super) fn push(&self, rootfs: &Path, dir: &Path, name: &str) -> Result<Value> {
        std::fs::create_dir_all(dir)?;
        let (flist, store) = (text(&dir.join(name))?, text(&dir.join("store"))?);
        self.json(&["flist", "create", &text(rootfs)?, "-o", &flist, "--store", &store])?;
        self.json(&["flist", "push", &flist, "--store", &store, "--name", name])
    }

    /// Submit a container running `entrypoint` from `flist` on `node`, with `extra` flags; its id.
    fn deploy(&self, node: &Node, flist: &str, entrypoint: &str, extra: &[&str]) -> Result<String> {
        let mut args = vec!["deploy", "container", "--node", node.id(), "--flist", flist, "--entrypoint", entrypoint];
        args.extend_from_slice(extra);
        let deployed = self.json(&args)?;
        Ok(deployed["workload"]["payload"]["id"].as_str().context("`zgrid deploy` printed no workload id")?.to_owned())
    }

    /// Read container `id`'s output every [`POLL`] until it says "ready"; the time from `since`
    /// to the time it printed.
    fn wait_ready(&self, id: &str, since: SystemTime) -> Result<Duration> {
        loop {
            let out = self.cli().args(["logs", id]).output()?;
            let logs = String::from_utf8_lossy(&out.stdout);
            let printed = logs.lines().find_map(|l| l.strip_prefix("ready ")?.trim().parse::<f64>().ok());
            if let Some(at) = printed {
                let at = UNIX_EPOCH + Duration::from_secs_f64(at);
                return at.duration_since(since).context("the container printed a time before it was submitted");
            }
            if since.elapsed()? > LIMIT {
                let all = self.json(&["live", "--state", "all", "--size", "100"]).unwrap_or_default();
                let record =
                    all["items"].as_array().and_then(|a| a.iter().find(|r| r["workload"]["payload"]["id"] == id));
                bail!(
                    "container {id} was not ready after {LIMIT:?}; the node says {}; its output ends:\n{}",
                    record.map_or(Value::Null, |r| r["result"]["payload"]["message"].clone()),
                    tail(&logs, 2000)
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Chunks and their bytes the hub has served since it started.
    pub(super) fn hub_served(&self) -> Result<(u64, u64)> {
        let stats = self.json(&["hub", "stats"])?;
        let count = |key: &str| stats[key].as_u64().with_context(|| format!("`zgrid hub stats` printed no {key}"));
        Ok((count("chunks_served")?, count("chunk_bytes_served")?))
    }
}

/// Cold starts on `runs` new nodes, lazy from the hub and whole from an archive.
fn cold_starts(
    me: &Deployer,
    devnet: &Devnet,
    image: &Path,
    extra_mib: u64,
    runs: usize,
    work: &Path,
) -> Result<Value> {
    let rootfs = stage(image, extra_mib, &work.join("rootfs"))?;
    eprintln!("packing and pushing {} to the hub", rootfs.display());
    let pushed = me.push(&rootfs, &work.join("image"), "bench.flist")?;
    let url = pushed["url"].as_str().context("`zgrid flist push` printed no url")?.to_owned();
    let image_bytes = pushed["stored"]["flist"]["content_bytes"].as_u64().unwrap_or_default();
    let flist_bytes = std::fs::metadata(work.join("image/bench.flist"))?.len();
    let chunks = Chunks::of(&work.join("image"))?;
    eprintln!("archiving {} as a .tar.gz", rootfs.display());
    let archive = work.join("image.tar.gz");
    let mut tar = Command::new("tar");
    tar.arg("-C").arg(&rootfs).args(["--numeric-owner", "-czf"]).arg(&archive).arg(".");
    run_tool(&mut tar, "tar -czf", "tar gzip")?;
    let archive_bytes = std::fs::metadata(&archive)?.len();
    let archive_url = serve_file(devnet.underlay().gateway(), archive)?;
    let warm_up = text(&busybox_rootfs(work)?)?;
    let mut rows = Vec::new();
    for run in 1..=runs {
        eprintln!("run {run} of {runs}, on a new node");
        let node = devnet.add_node(NodeOptions::default())?;
        me.deploy(&node, &warm_up, "sleep 1000000", &["--wait"])?;
        // What earlier runs wrote goes to disk now, not during this run's unpacking.
        run_tool(&mut Command::new("sync"), "sync", "coreutils")?;
        let start = |flist: &str| {
            let sent = SystemTime::now();
            let id = me.deploy(&node, flist, ENTRYPOINT, &[])?;
            me.wait_ready(&id, sent)
        };

        let before = me.hub_served()?;
        let lazy = start(&url)?;
        let after = me.hub_served()?;
        let fetched = chunks.fetched(&node.state_dir().join("flist/cache"), flist_bytes);
        // Again, with the chunks in the node's cache: the start without the fetching.
        let lazy_warm = start(&url)?;

        let local = node.state_dir().join("image.tar.gz");
        let started = Instant::now();
        let mut curl = nsenter(&node.netns().path(), "curl");
        curl.args(["-sSf", "-o"]).arg(&local).arg(&archive_url);
        run_tool(&mut curl, "curl", "curl")?;
        let download = started.elapsed();
        let local = format!("file://{}", text(&local)?);
        let whole = start(&local)?;
        // Again, with the archive unpacked already (the node still hashes it to know that).
        let whole_warm = start(&local)?;
        rows.push(json!({
            "run": run,
            "lazy_ready_s": secs(lazy),
            "lazy_fetched_bytes": after.1 - before.1,
            "lazy_fetched_chunks": after.0 - before.0,
            "lazy_fetched": fetched,
            "whole_download_s": secs(download),
            "whole_unpack_start_s": secs(whole),
            "lazy_warm_ready_s": secs(lazy_warm),
            "whole_warm_ready_s": secs(whole_warm),
        }));
    }
    Ok(json!({
        "image": image,
        "image_bytes": image_bytes,
        "flist_bytes": flist_bytes,
        "archive_bytes": archive_bytes,
        "whole": chunks.totals(flist_bytes, |_, _| true),
        "os_part": chunks.totals(flist_bytes, |_, c| !c.data),
        "entrypoint": ENTRYPOINT,
        "runs": rows,
    }))
}

/// The benchmark image's chunks, to count what a start fetched like for like: stored
/// (compressed, encrypted) bytes against the image's stored bytes with its flist file, and
/// plaintext against plaintext.
struct Chunks(std::collections::HashMap<zgrid_flist::chunk::Hash, ChunkSize>);

/// One distinct chunk of the image.
struct ChunkSize {
    plain: u64,
    stored: u64,
    /// Whether it holds the added random data (`/srv/bench-data`) rather than the OS.
    data: bool,
}

impl Chunks {
    /// The chunks of `<dir>/bench.flist`, sized from the store `<dir>/store` it was packed into.
    fn of(dir: &Path) -> Result<Self> {
        let flist = zgrid_flist::Flist::open(&dir.join("bench.flist"))?;
        let data = zgrid_flist::resolve(&flist, "/srv/bench-data")?;
        let data: std::collections::HashSet<_> = flist.chunks(data)?.into_iter().map(|c| c.id).collect();
        let store = zgrid_flist::DirStore::new(dir.join("store"));
        let mut all = std::collections::HashMap::new();
        for (id, plain) in flist.chunk_sizes()? {
            let stored = std::fs::metadata(store.path(&id))?.len();
            all.insert(id, ChunkSize { plain, stored, data: data.contains(&id) });
        }
        Ok(Self(all))
    }

    /// Stored and plaintext bytes of the chunks `which` selects, and how many hold the added
    /// data; the stored bytes count the flist file (`flist_bytes`), which a node downloads whole
    /// before it mounts the image.
    fn totals(&self, flist_bytes: u64, which: impl Fn(&zgrid_flist::chunk::Hash, &ChunkSize) -> bool) -> Value {
        let chosen: Vec<&ChunkSize> = self.0.iter().filter(|(id, c)| which(id, c)).map(|(_, c)| c).collect();
        json!({
            "chunks": chosen.len(),
            "stored_bytes": flist_bytes + chosen.iter().map(|c| c.stored).sum::<u64>(),
            "plain_bytes": chosen.iter().map(|c| c.plain).sum::<u64>(),
            "data_chunks": chosen.iter().filter(|c| c.data).count(),
        })
    }

    /// What a node's chunk cache at `cache` holds of the image: what its cold start fetched.
    fn fetched(&self, cache: &Path, flist_bytes: u64) -> Value {
        let cache = zgrid_flist::DirStore::new(cache);
        self.totals(flist_bytes, |id, _| cache.has(id))
    }
}

/// Push `versions` one after the other (into `dir`): what each adds to the hub, and what the
/// hub's chunk directory then holds against the versions' files.
fn dedup(me: &Deployer, devnet: &Devnet, versions: &[PathBuf], dir: &Path) -> Result<Value> {
    if versions.is_empty() {
        return Ok(Value::Null);
    }
    let mut rows = Vec::new();
    for (i, version) in versions.iter().enumerate() {
        eprintln!("pushing version {} of {}: {}", i + 1, versions.len(), version.display());
        let pushed = me.push(version, dir, &format!("version{}.flist", i + 1))?;
        let stored = &pushed["stored"];
        rows.push(json!({
            "dir": version,
            "file_bytes": stored["flist"]["content_bytes"],
            "new_chunks": stored["new_chunks"],
            "new_bytes": stored["new_bytes"],
        }));
    }
    let files: u64 = rows.iter().filter_map(|r| r["file_bytes"].as_u64()).sum();
    let stored = file_bytes(&devnet.hub_data().join("chunks"))?;
    Ok(json!({
        "versions": rows,
        "file_bytes": files,
        "stored_bytes": stored,
        "dedup_ratio": (files as f64 / stored.max(1) as f64 * 100.0).round() / 100.0,
    }))
}

/// The versions to push: those given, else the five of `scripts/chunking-images` if present.
fn versions(given: Vec<PathBuf>) -> Vec<PathBuf> {
    if !given.is_empty() {
        return given;
    }
    let default: Vec<PathBuf> = (1..=5).map(|v| Path::new(CHUNKING_IMAGES).join(format!("v{v}"))).collect();
    if default.iter().all(|d| d.is_dir()) {
        return default;
    }
    eprintln!(
        "note: no {CHUNKING_IMAGES}/v1..v5, so no dedup measurement; run scripts/chunking-images or give --versions DIR..."
    );
    Vec::new()
}

/// A copy of `image` at `dir` with `extra_mib` MiB of random bytes in `/srv/bench-data`. Files
/// are hard links to the image's when both are on one filesystem; the image is never written.
fn stage(image: &Path, extra_mib: u64, dir: &Path) -> Result<PathBuf> {
    if !image.join("usr/bin/python3").exists() {
        bail!("{} has no /usr/bin/python3, which the benchmark starts", image.display());
    }
    let same_fs = std::fs::metadata(image)?.dev() == std::fs::metadata(CACHE)?.dev();
    eprintln!("copying {} with {extra_mib} MiB of random data added", image.display());
    let copy = if same_fs { "-al" } else { "-a" };
    run_tool(Command::new("cp").arg(copy).arg(image).arg(dir), "cp", "coreutils")?;
    std::fs::create_dir_all(dir.join("srv"))?;
    let mut file = std::fs::File::create(dir.join("srv/bench-data"))?;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..extra_mib {
        rand::fill(&mut block[..]);
        file.write_all(&block)?;
    }
    Ok(dir.to_owned())
}

/// Debian bookworm minbase with python3-minimal, built with debootstrap the first time.
fn debian_image() -> Result<PathBuf> {
    let image = Path::new(CACHE).join("bookworm-python3");
    if image.join("usr/bin/python3").exists() {
        return Ok(image);
    }
    let partial = Path::new(CACHE).join("bookworm-python3.partial");
    if partial.exists() {
        bail!(
            "{0} is left from a debootstrap that did not finish: check that nothing is mounted under it (findmnt -R {0}), remove it, and run again",
            partial.display()
        );
    }
    std::fs::create_dir_all(CACHE).with_context(|| format!("cannot create {CACHE}"))?;
    let mirror = std::env::var("ZGRID_DEBIAN_MIRROR").unwrap_or_else(|_| "http://deb.debian.org/debian".into());
    let log_path = Path::new(CACHE).join("debootstrap.log");
    let log = std::fs::File::create(&log_path)?;
    eprintln!(
        "building the image once with debootstrap --variant=minbase --include=python3-minimal bookworm {} {mirror}\n\
         (a few minutes; its output goes to {}; later runs reuse the image)",
        image.display(),
        log_path.display()
    );
    let status = Command::new("debootstrap")
        .args(["--variant=minbase", "--include=python3-minimal", "bookworm"])
        .arg(&partial)
        .arg(&mirror)
        .stdout(log.try_clone()?)
        .stderr(log)
        .status();
    match status {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("debootstrap is missing: apt-get install debootstrap (or give --image DIR)")
        }
        Err(e) => return Err(e).context("cannot run debootstrap"),
        Ok(s) if !s.success() => bail!("debootstrap failed ({s}); see {}", log_path.display()),
        Ok(_) => {}
    }
    // As image builds do: no package lists or downloaded packages in the image.
    for dir in ["var/lib/apt/lists", "var/cache/apt/archives"] {
        for entry in std::fs::read_dir(partial.join(dir))? {
            let entry = entry?;
            if entry.file_type()?.is_file() && entry.file_name() != "lock" {
                std::fs::remove_file(entry.path())?;
            }
        }
    }
    std::fs::rename(&partial, &image)?;
    Ok(image)
}

/// Serve `path` to every HTTP request on a new port of `ip`, from a thread that lives as long
/// as the process; its URL.
fn serve_file(ip: Ipv4Addr, path: PathBuf) -> Result<String> {
    let listener = TcpListener::bind((ip, 0))?;
    let url = format!("http://{}/image.tar.gz", listener.local_addr()?);
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            if let Err(e) = send_file(conn, &path) {
                eprintln!("serving {}: {e}", path.display());
            }
        }
    });
    Ok(url)
}

fn send_file(mut conn: TcpStream, path: &Path) -> std::io::Result<()> {
    // Whatever was asked for, there is one file to give.
    let mut request = [0u8; 4096];
    let _ = conn.read(&mut request)?;
    let mut file = std::fs::File::open(path)?;
    write!(conn, "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", file.metadata()?.len())?;
    std::io::copy(&mut file, &mut conn)?;
    Ok(())
}

fn print(report: &Value) {
    let mib = |v: &Value| format!("{:.1}", v.as_f64().unwrap_or_default() / 1048576.0);
    let cold = &report["cold_start"];
    println!(
        "cold start, {}: lazy from the hub vs whole .tar.gz downloaded and unpacked",
        cold["entrypoint"].as_str().unwrap_or_default()
    );
    println!(
        "image {}: {} MiB of files, flist {} MiB, .tar.gz {} MiB",
        cold["image"].as_str().unwrap_or_default(),
        mib(&cold["image_bytes"]),
        mib(&cold["flist_bytes"]),
        mib(&cold["archive_bytes"])
    );
    let part = |name: &str, key: &str| {
        let p = &cold[name];
        println!(
            "{key}: {} chunks, {} MiB stored (with the flist file), {} MiB of plaintext",
            p["chunks"],
            mib(&p["stored_bytes"]),
            mib(&p["plain_bytes"])
        );
    };
    part("whole", "whole image");
    part("os_part", "OS part (all but /srv/bench-data)");
    let share = |of: &Value, whole: &Value| {
        format!("{:.1} %", of.as_f64().unwrap_or_default() / whole.as_f64().unwrap_or(1.0).max(1.0) * 100.0)
    };
    let rows: Vec<Vec<String>> = cold["runs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let f = &r["lazy_fetched"];
            vec![
                r["run"].to_string(),
                r["lazy_ready_s"].to_string(),
                format!("{} ({})", mib(&f["stored_bytes"]), f["chunks"]),
                share(&f["stored_bytes"], &cold["whole"]["stored_bytes"]),
                share(&f["plain_bytes"], &cold["whole"]["plain_bytes"]),
                share(&f["stored_bytes"], &cold["os_part"]["stored_bytes"]),
                share(&f["plain_bytes"], &cold["os_part"]["plain_bytes"]),
                r["whole_download_s"].to_string(),
                r["whole_unpack_start_s"].to_string(),
                r["lazy_warm_ready_s"].to_string(),
                r["whole_warm_ready_s"].to_string(),
            ]
        })
        .collect();
    let header = [
        "RUN",
        "LAZY READY S",
        "FETCHED MIB (CHUNKS)",
        "STORED %",
        "PLAIN %",
        "OS STORED %",
        "OS PLAIN %",
        "WHOLE DOWNLOAD S",
        "WHOLE UNPACK+START S",
        "LAZY WARM S",
        "WHOLE WARM S",
    ];
    output::table(&header, &rows);
    println!(
        "fetched: stored bytes of the chunks a cold start put in the node's cache plus the flist file, against the image's; plaintext against plaintext"
    );
    let dedup = &report["dedup"];
    if dedup.is_null() {
        return;
    }
    println!();
    println!("dedup over image versions pushed one after the other:");
    let rows: Vec<Vec<String>> = dedup["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            let dir = v["dir"].as_str().unwrap_or_default().to_owned();
            vec![dir, mib(&v["file_bytes"]), v["new_chunks"].to_string(), mib(&v["new_bytes"])]
        })
        .collect();
    output::table(&["VERSION", "FILES MIB", "NEW CHUNKS", "NEW MIB STORED"], &rows);
    println!(
        "{} MiB of files stored in {} MiB of chunks on the hub: dedup ratio {}",
        mib(&dedup["file_bytes"]),
        mib(&dedup["stored_bytes"]),
        dedup["dedup_ratio"]
    );
}

/// Bytes in the files under `dir`.
pub(super) fn file_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() { file_bytes(&entry.path())? } else { meta.len() };
    }
    Ok(total)
}

/// `path` as text, for command lines.
fn text(path: &Path) -> Result<String> {
    path.to_str().map(str::to_owned).with_context(|| format!("{} is not UTF-8", path.display()))
}

/// The last `n` bytes of `log` or so (from a line start).
fn tail(log: &str, n: usize) -> &str {
    let mut start = log.len().saturating_sub(n);
    while !log.is_char_boundary(start) {
        start += 1;
    }
    log[start..].find('\n').map_or(&log[start..], |i| &log[start + i + 1..])
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}
