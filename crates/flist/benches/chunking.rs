//! Settles the flist chunk size and method by measurement (`docs/flist.md`, "Chunk size and
//! method"): fixed-size chunks against content-defined chunking (FastCDC, 2020 variant) over
//! the successive versions of one image, for
//!
//! - storage: chunks and stored bytes (sealed exactly as a hub stores them: zstd level 3 and
//!   convergent encryption, through `zgrid_flist::chunk::seal`) per version, the unique stored
//!   bytes of the whole set against the sum of the versions (dedup), and what pushing version
//!   N+1 adds to a store that holds version N;
//! - lazy loading: what a container's start fetches. A command is run in each version (chroot,
//!   as `nobody`) twice: under strace, for the files it opens or executes and the ranges it
//!   reads, and under `perf trace -F all`, for the pages it touches through mappings. Two
//!   measures follow: *whole files* (every opened or executed file read entirely: an upper
//!   bound) and *touched* (the pages read, and every page fault widened to the kernel's 64 KiB
//!   fault-around window, without further readahead: close to a lower bound);
//! - packing speed: chunking and sealing the largest version, from memory.
//!
//! ```text
//! cargo bench -p zgrid-flist --bench chunking -- DIR...
//! ```
//!
//! Each DIR is a root filesystem version, oldest first (`scripts/chunking-images` builds a
//! set). The lazy-loading part needs root, strace and perf (it is skipped, with a note, when
//! they are missing); `ZGRID_CHUNKING_CMD` replaces its command (run with `/bin/sh -c`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::error::Error;
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use zgrid_flist::chunk::{self, Hash};

/// What a container's start does in the default access measure: apt (C++ and its libraries)
/// and a Python program importing the parts of the standard library a small service uses.
/// It works on every version `scripts/chunking-images` builds (v1 has `python3-minimal` only).
const DEFAULT_CMD: &str = "apt-cache policy >/dev/null && \
    exec python3 -c 'import ssl, socket, subprocess, hashlib, email.parser, urllib.parse'";
/// The environment of the traced command.
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// A page fault on a file mapping maps (and so reads) this much around it.
const FAULT_AROUND: u64 = 64 << 10;
/// The unit in which the kernel reads a file.
const PAGE: u64 = 4096;
const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

fn main() -> Result<()> {
    let dirs: Vec<PathBuf> = std::env::args().skip(1).filter(|arg| !arg.starts_with("--")).map(PathBuf::from).collect();
    if dirs.is_empty() {
        println!(
            "usage: cargo bench -p zgrid-flist --bench chunking -- DIR...\n\n\
             Each DIR is a root filesystem version of one image, oldest first; \
             scripts/chunking-images builds a set in /var/tmp/zgrid-chunking.\n\
             The lazy-loading part runs a command in each DIR (as root, under strace and perf); \
             ZGRID_CHUNKING_CMD replaces it (default: {DEFAULT_CMD})."
        );
        return Ok(());
    }
    let cmd = std::env::var("ZGRID_CHUNKING_CMD").unwrap_or_else(|_| DEFAULT_CMD.to_owned());
    let methods = [
        Method::Fixed(256 * KIB),
        Method::Fixed(MIB),
        Method::Fixed(4 * MIB),
        Method::FastCdc(256 * KIB),
        Method::FastCdc(MIB),
    ];

    let mut versions = Vec::new();
    for dir in &dirs {
        let version = Version::scan(dir)?;
        eprintln!("{}: {} files, {} MiB", version.name, version.files.len(), mib(version.bytes()));
        versions.push(version);
    }

    // Lazy loading first: tracing reads the images through the page cache, which the
    // chunking below would otherwise have filled with everything.
    let accesses: Vec<Option<Access>> = versions
        .iter()
        .map(|version| match trace(version, &cmd) {
            Ok(access) => Some(access),
            Err(e) => {
                eprintln!("{}: no lazy-loading measure: {e}", version.name);
                None
            }
        })
        .collect();

    // Chunk and seal every version with every method. Sealing is convergent, so a piece seen
    // before (in any version, by any method) is looked up instead of sealed again.
    let mut sealed: HashMap<Hash, (Hash, u32)> = HashMap::new();
    let mut layouts: Vec<Vec<Layout>> = vec![Vec::new(); methods.len()];
    let largest = (0..versions.len()).max_by_key(|&v| versions[v].bytes()).unwrap_or(0);
    let mut speeds = vec![0.0; methods.len()];
    for (v, version) in versions.iter().enumerate() {
        let contents = version.read()?;
        if v == largest {
            // Best of three rounds: the machine is shared.
            for _ in 0..3 {
                for (m, method) in methods.iter().enumerate() {
                    speeds[m] = f64::max(speeds[m], pack_speed(*method, &contents));
                }
            }
        }
        for (m, method) in methods.iter().enumerate() {
            eprintln!("{}: {}", version.name, method.name());
            layouts[m].push(layout(*method, &contents, &mut sealed));
        }
    }

    report(&cmd, &versions, &accesses, &methods, &layouts, &speeds, largest);
    Ok(())
}

/// A way to cut a file's contents into chunks (always within one file, as the packer does).
#[derive(Debug, Clone, Copy)]
enum Method {
    /// Fixed pieces of this size, the last one shorter.
    Fixed(usize),
    /// FastCDC (2020) with this average size, a quarter of it as the minimum and four times as
    /// the maximum, normalisation level 1.
    FastCdc(usize),
}

impl Method {
    fn name(self) -> String {
        match self {
            Self::Fixed(size) => format!("fixed {}", size_name(size)),
            Self::FastCdc(avg) => format!("FastCDC avg {}", size_name(avg)),
        }
    }

    /// The pieces of `data`, as (offset, length).
    fn cut(self, data: &[u8]) -> Vec<(usize, usize)> {
        match self {
            Self::Fixed(size) => (0..data.len()).step_by(size).map(|at| (at, size.min(data.len() - at))).collect(),
            Self::FastCdc(_) if data.is_empty() => Vec::new(),
            Self::FastCdc(avg) => fastcdc::v2020::FastCDC::new(data, avg / 4, avg, avg * 4)
                .map(|piece| (piece.offset, piece.length))
                .collect(),
        }
    }
}

fn size_name(size: usize) -> String {
    if size >= MIB { format!("{} MiB", size / MIB) } else { format!("{} KiB", size / KIB) }
}

/// One chunk of a file as an flist records it.
#[derive(Debug, Clone, Copy)]
struct Piece {
    /// The stored chunk's id.
    id: Hash,
    /// Where the piece starts in the file.
    offset: u64,
    /// Plaintext length.
    len: u64,
    /// Stored (compressed, encrypted) length.
    stored: u64,
}

/// The chunks of every file of a version (indexed like `Version::files`).
type Layout = Vec<Vec<Piece>>;

fn layout(method: Method, contents: &[Vec<u8>], sealed: &mut HashMap<Hash, (Hash, u32)>) -> Layout {
    contents
        .iter()
        .map(|data| {
            method
                .cut(data)
                .into_iter()
                .map(|(at, len)| {
                    let plain = &data[at..at + len];
                    let key: Hash = blake3::hash(plain).into();
                    let (id, stored) = *sealed.entry(key).or_insert_with(|| {
                        let chunk = chunk::seal(plain);
                        (chunk.id, u32::try_from(chunk.bytes.len()).expect("a chunk is under 4 GiB"))
                    });
                    Piece { id, offset: at as u64, len: len as u64, stored: u64::from(stored) }
                })
                .collect()
        })
        .collect()
}

/// MiB/s of cutting and sealing every piece of `contents` (already in memory).
fn pack_speed(method: Method, contents: &[Vec<u8>]) -> f64 {
    let started = Instant::now();
    let mut bytes = 0u64;
    let mut stored = 0u64;
    for data in contents {
        for (at, len) in method.cut(data) {
            stored += chunk::seal(&data[at..at + len]).bytes.len() as u64;
            bytes += len as u64;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    std::hint::black_box(stored);
    bytes as f64 / MIB as f64 / secs
}

/// A regular file of a version (hardlinks once).
#[derive(Debug)]
struct File {
    path: PathBuf,
    size: u64,
}

/// One root filesystem version.
#[derive(Debug)]
struct Version {
    name: String,
    /// The directory, canonical (strace shows open files by their canonical host path).
    root: PathBuf,
    files: Vec<File>,
    /// Every name of every regular file (relative to the root) to its index in `files`.
    index: HashMap<PathBuf, usize>,
}

impl Version {
    fn scan(dir: &Path) -> Result<Self> {
        let root = dir.canonicalize().map_err(|e| format!("{}: {e}", dir.display()))?;
        if !root.is_dir() {
            return Err(format!("{}: not a directory", dir.display()).into());
        }
        let name = root.file_name().map_or_else(|| root.display().to_string(), |n| n.to_string_lossy().into_owned());
        let mut version = Self { name, root, files: Vec::new(), index: HashMap::new() };
        let mut inodes = HashMap::new();
        let mut pending = vec![PathBuf::new()];
        while let Some(rel) = pending.pop() {
            let mut items: Vec<_> = std::fs::read_dir(version.root.join(&rel))?.collect::<std::io::Result<_>>()?;
            items.sort_by_key(std::fs::DirEntry::file_name);
            for item in items {
                let path = rel.join(item.file_name());
                let meta = item.metadata()?;
                if meta.is_dir() {
                    pending.push(path);
                } else if meta.is_file() {
                    let file = *inodes.entry((meta.dev(), meta.ino())).or_insert_with(|| {
                        version.files.push(File { path: path.clone(), size: meta.len() });
                        version.files.len() - 1
                    });
                    version.index.insert(path, file);
                }
            }
        }
        Ok(version)
    }

    fn bytes(&self) -> u64 {
        self.files.iter().map(|file| file.size).sum()
    }

    fn read(&self) -> Result<Vec<Vec<u8>>> {
        let mut contents = Vec::with_capacity(self.files.len());
        for file in &self.files {
            let path = self.root.join(&file.path);
            contents.push(std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?);
        }
        Ok(contents)
    }

    /// The file at `path` inside the version (absolute there, symlinks followed), if regular.
    fn lookup(&self, path: &str) -> Option<usize> {
        let rel = resolve(&self.root, path)?;
        self.index.get(&rel).copied()
    }

    /// The file a host path (as strace shows it) names, if it is inside this version.
    fn lookup_host(&self, path: &str) -> Option<usize> {
        let rel = Path::new(path).strip_prefix(&self.root).ok()?;
        self.index.get(rel).copied()
    }
}

/// `path` inside `root`, with every symlink followed as a process chrooted there would;
/// relative to `root`.
fn resolve(root: &Path, path: &str) -> Option<PathBuf> {
    let mut todo: VecDeque<OsString> = Path::new(path).components().map(|c| c.as_os_str().to_owned()).collect();
    let mut at = PathBuf::new();
    let mut links = 0;
    while let Some(part) = todo.pop_front() {
        match Path::new(&part).components().next() {
            None | Some(Component::RootDir | Component::CurDir) => {}
            Some(Component::ParentDir) => {
                at.pop();
            }
            Some(_) => {
                let next = at.join(&part);
                let meta = std::fs::symlink_metadata(root.join(&next)).ok()?;
                if meta.file_type().is_symlink() {
                    links += 1;
                    if links > 40 {
                        return None;
                    }
                    let target = std::fs::read_link(root.join(&next)).ok()?;
                    if target.is_absolute() {
                        at = PathBuf::new();
                    }
                    for c in target.components().rev() {
                        todo.push_front(c.as_os_str().to_owned());
                    }
                } else {
                    at = next;
                }
            }
        }
    }
    Some(at)
}

/// What a command's run in a version read.
#[derive(Debug, Default)]
struct Access {
    /// Files opened or executed (whole-file measure).
    whole: HashSet<usize>,
    /// Byte ranges read or touched through mappings, per file, page-aligned and merged.
    touched: HashMap<usize, Vec<(u64, u64)>>,
    /// Whether the command exited successfully.
    ok: bool,
}

/// Run `cmd` in `version` under strace and under perf and collect what it reads.
fn trace(version: &Version, cmd: &str) -> Result<Access> {
    if !nix::unistd::geteuid().is_root() {
        return Err("needs root (chroot)".into());
    }
    let tmp = tempfile::tempdir()?;
    let strace_out = tmp.path().join("strace");
    let perf_out = tmp.path().join("perf");
    let run = |tracer: &[&str]| -> Result<bool> {
        let status = Command::new(tracer[0])
            .args(&tracer[1..])
            .args(["chroot", "--userspec=65534:65534"])
            .arg(&version.root)
            .args(["/bin/sh", "-c", cmd])
            .env_clear()
            .envs([("PATH", PATH), ("HOME", "/"), ("PYTHONDONTWRITEBYTECODE", "1")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| format!("{}: {e}", tracer[0]))?;
        Ok(status.success())
    };
    let strace_path = strace_out.to_str().ok_or("temporary path is not UTF-8")?;
    let traced =
        run(&["strace", "-f", "-y", "-s", "0", "-e", "trace=openat,execve,read,pread64,lseek", "-o", strace_path])?;
    let perf_path = perf_out.to_str().ok_or("temporary path is not UTF-8")?;
    let faulted = run(&["perf", "trace", "-F", "all", "--no-syscalls", "-o", perf_path, "--"])?;
    if !strace_out.exists() || !perf_out.exists() {
        return Err("strace or perf did not run".into());
    }
    let mut access = Access { ok: traced && faulted, ..Access::default() };
    let mut ranges: HashMap<usize, Vec<(u64, u64)>> = HashMap::new();
    parse_strace(version, &std::fs::read_to_string(&strace_out)?, &mut access.whole, &mut ranges);
    parse_perf(version, &std::fs::read_to_string(&perf_out)?, &mut ranges);
    for (file, mut list) in ranges {
        let size = version.files[file].size;
        for range in &mut list {
            range.0 = range.0 / PAGE * PAGE;
            range.1 = range.1.div_ceil(PAGE).saturating_mul(PAGE).min(size);
        }
        list.retain(|range| range.0 < range.1);
        list.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::new();
        for (start, end) in list {
            match merged.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        if !merged.is_empty() {
            access.touched.insert(file, merged);
        }
    }
    Ok(access)
}

/// The fd number and host path of strace's `-y` form `3</path>` at the start of `text`.
fn fd_path(text: &str) -> Option<(u32, &str)> {
    let (fd, rest) = text.split_once('<')?;
    let (path, _) = rest.split_once('>')?;
    Some((fd.trim().parse().ok()?, path))
}

fn parse_strace(
    version: &Version,
    text: &str,
    whole: &mut HashSet<usize>,
    ranges: &mut HashMap<usize, Vec<(u64, u64)>>,
) {
    let mut unfinished: HashMap<&str, String> = HashMap::new();
    let mut offsets: HashMap<(&str, u32), u64> = HashMap::new();
    let mut first_exec = true;
    for line in text.lines() {
        let Some((pid, rest)) = line.split_once(' ') else { continue };
        let rest = rest.trim_start();
        let call = if let Some(start) = rest.strip_suffix("<unfinished ...>") {
            unfinished.insert(pid, start.to_owned());
            continue;
        } else if rest.starts_with("<...") {
            let Some((_, end)) = rest.split_once("resumed>") else { continue };
            unfinished.remove(pid).unwrap_or_default() + end
        } else {
            rest.to_owned()
        };
        let (Some((name, args)), Some((_, ret))) = (call.split_once('('), call.rsplit_once(") = ")) else {
            continue;
        };
        let ret = ret.trim();
        match name {
            "execve" if ret == "0" => {
                // The first is strace starting chroot (a host path); the rest run in the root.
                if std::mem::take(&mut first_exec) {
                    continue;
                }
                let Some(path) = args.strip_prefix('"').and_then(|a| a.split_once('"')).map(|(p, _)| p) else {
                    continue;
                };
                executed(version, path, whole, 0);
            }
            "openat" => {
                if let Some((fd, path)) = fd_path(ret)
                    && let Some(file) = version.lookup_host(path)
                {
                    whole.insert(file);
                    offsets.insert((pid, fd), 0);
                }
            }
            "read" | "pread64" | "lseek" => {
                let (Some((fd, path)), Ok(n)) = (fd_path(args), ret.split(' ').next().unwrap_or("").parse::<u64>())
                else {
                    continue;
                };
                let Some(file) = version.lookup_host(path) else { continue };
                let offset = offsets.entry((pid, fd)).or_insert(0);
                match name {
                    "read" => {
                        ranges.entry(file).or_default().push((*offset, *offset + n));
                        *offset += n;
                    }
                    "pread64" => {
                        let at = args.rsplit(", ").next().and_then(|a| a.parse::<u64>().ok()).unwrap_or(0);
                        ranges.entry(file).or_default().push((at, at + n));
                    }
                    _ => *offset = n,
                }
            }
            _ => {}
        }
    }
}

/// Record the file executed as `path` (inside the version) and what the kernel loads with it:
/// the ELF interpreter, or a script's `#!` interpreter.
fn executed(version: &Version, path: &str, whole: &mut HashSet<usize>, depth: u32) {
    let Some(file) = version.lookup(path) else { return };
    whole.insert(file);
    if depth > 4 {
        return;
    }
    let Ok(data) = std::fs::read(version.root.join(&version.files[file].path)) else { return };
    let interpreter = if let Some(script) = data.strip_prefix(b"#!") {
        let line = script.split(|&b| b == b'\n').next().unwrap_or_default();
        String::from_utf8_lossy(line).split_whitespace().next().map(str::to_owned)
    } else {
        elf_interpreter(&data)
    };
    if let Some(interpreter) = interpreter {
        executed(version, &interpreter, whole, depth + 1);
    }
}

/// The `PT_INTERP` of a 64-bit little-endian ELF file.
fn elf_interpreter(data: &[u8]) -> Option<String> {
    if data.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let u16_at = |at: usize| Some(u16::from_le_bytes(data.get(at..at + 2)?.try_into().ok()?));
    let u32_at = |at: usize| Some(u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?));
    let u64_at = |at: usize| Some(u64::from_le_bytes(data.get(at..at + 8)?.try_into().ok()?) as usize);
    let (phoff, phentsize, phnum) = (u64_at(0x20)?, usize::from(u16_at(0x36)?), usize::from(u16_at(0x38)?));
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        if u32_at(ph)? == 3 {
            let (offset, size) = (u64_at(ph + 8)?, u64_at(ph + 32)?);
            let name = data.get(offset..offset + size)?;
            return Some(String::from_utf8_lossy(name.split(|&b| b == 0).next()?).into_owned());
        }
    }
    None
}

/// Page faults on file mappings, from `perf trace -F all`:
/// `  0.873 ( 0.000 ms): python3/8655 minfault [_start+0x0] => /usr/lib/…/ld.so@0x1ab70 (d.)`,
/// the path as the process sees it and the offset in the file.
fn parse_perf(version: &Version, text: &str, ranges: &mut HashMap<usize, Vec<(u64, u64)>>) {
    for line in text.lines() {
        let Some((_, event)) = line.split_once("): ") else { continue };
        let Some((task, rest)) = event.split_once(' ') else { continue };
        let comm = task.rsplit_once('/').map_or(task, |(comm, _)| comm);
        // Before chroot's exec, the faults are perf's and chroot's own, on host files.
        if comm == "perf" || comm == "chroot" || !rest.contains("fault [") {
            continue;
        }
        let Some((_, target)) = rest.split_once(" => /") else { continue };
        let target = target.rsplit_once(" (").map_or(target, |(t, _)| t);
        let Some((path, offset)) = target.rsplit_once("@0x") else { continue };
        let (Some(file), Ok(offset)) = (version.lookup(path), u64::from_str_radix(offset.trim(), 16)) else {
            continue;
        };
        let start = offset / FAULT_AROUND * FAULT_AROUND;
        ranges.entry(file).or_default().push((start, start + FAULT_AROUND));
    }
}

/// Chunks by id: (stored bytes, plaintext bytes).
type Chunks = HashMap<Hash, (u64, u64)>;

/// Stored bytes, plaintext bytes and number of `chunks`.
fn total(chunks: &Chunks) -> (u64, u64, usize) {
    (chunks.values().map(|c| c.0).sum(), chunks.values().map(|c| c.1).sum(), chunks.len())
}

fn entry(piece: &Piece) -> (Hash, (u64, u64)) {
    (piece.id, (piece.stored, piece.len))
}

fn unique(layout: &Layout) -> Chunks {
    layout.iter().flatten().map(entry).collect()
}

/// The chunks a lazy mount fetches for `access`: (whole files, touched ranges).
fn fetched(layout: &Layout, access: &Access) -> (Chunks, Chunks) {
    let whole = access.whole.iter().flat_map(|&file| &layout[file]).map(entry).collect();
    let touched = access
        .touched
        .iter()
        .flat_map(|(&file, ranges)| {
            layout[file].iter().filter(|piece| {
                ranges.iter().any(|&(start, end)| piece.offset < end && start < piece.offset + piece.len)
            })
        })
        .map(entry)
        .collect();
    (whole, touched)
}

fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / MIB as f64)
}

fn row(cells: &[String]) {
    println!("| {} |", cells.join(" | "));
}

fn header(cells: &[String]) {
    row(cells);
    row(&vec!["---".to_owned(); cells.len()]);
}

fn report(
    cmd: &str,
    versions: &[Version],
    accesses: &[Option<Access>],
    methods: &[Method],
    layouts: &[Vec<Layout>],
    speeds: &[f64],
    largest: usize,
) {
    let names: Vec<&str> = versions.iter().map(|v| v.name.as_str()).collect();
    // Plaintext bytes a start needs: (whole files, touched pages), summed over the versions.
    let mut needed = (0u64, 0u64);
    println!("\n## Versions, and what starting `{cmd}` reads in each\n");
    header(
        &["version", "files", "MiB", "files opened or executed", "their MiB", "MiB touched", "command ok"]
            .map(String::from),
    );
    for (version, access) in versions.iter().zip(accesses) {
        let mut cells = vec![version.name.clone(), version.files.len().to_string(), mib(version.bytes())];
        match access {
            Some(access) => {
                let whole: u64 = access.whole.iter().map(|&f| version.files[f].size).sum();
                let touched: u64 = access.touched.values().flatten().map(|(s, e)| e - s).sum();
                needed.0 += whole;
                needed.1 += touched;
                cells.extend([access.whole.len().to_string(), mib(whole), mib(touched), access.ok.to_string()]);
            }
            None => cells.extend(["-", "-", "-", "-"].map(String::from)),
        }
        row(&cells);
    }

    println!("\n## Storage: chunks / stored MiB per version; the set\n");
    let mut cells = vec!["method".to_owned()];
    cells.extend(names.iter().map(|n| format!("{n} chunks / MiB")));
    cells.extend(["sum of versions MiB", "unique MiB", "dedup"].map(String::from));
    header(&cells);
    let mut unique_total = Vec::new();
    for (method, layouts) in methods.iter().zip(layouts) {
        let mut cells = vec![method.name()];
        let mut sum = 0;
        let mut all = Chunks::new();
        for layout in layouts {
            let chunks = unique(layout);
            let (stored, _, _) = total(&chunks);
            sum += stored;
            cells.push(format!("{} / {}", layout.iter().map(Vec::len).sum::<usize>(), mib(stored)));
            all.extend(chunks);
        }
        let (stored, _, _) = total(&all);
        unique_total.push(stored);
        cells.extend([mib(sum), mib(stored), format!("{:.2}", sum as f64 / stored as f64)]);
        row(&cells);
    }

    println!("\n## Pushing a new version: stored MiB (chunks) not in the previous one\n");
    let mut cells = vec!["method".to_owned()];
    cells.extend(names.windows(2).map(|w| format!("{} → {}", w[0], w[1])));
    header(&cells);
    for (method, layouts) in methods.iter().zip(layouts) {
        let mut cells = vec![method.name()];
        for pair in layouts.windows(2) {
            let before = unique(&pair[0]);
            let new: Chunks = unique(&pair[1]).into_iter().filter(|(id, _)| !before.contains_key(id)).collect();
            let (stored, _, count) = total(&new);
            cells.push(format!("{} ({count})", mib(stored)));
        }
        row(&cells);
    }

    println!("\n## Lazy loading: stored MiB fetched (chunks) by a start, whole files / touched pages\n");
    let mut cells = vec!["method".to_owned()];
    cells.extend(names.iter().map(|n| format!("{n} whole / touched")));
    header(&cells);
    // Per method, over the versions: (stored, chunks) for whole files, (stored, plaintext,
    // chunks) for touched pages.
    let mut lazy = vec![((0u64, 0usize), (0u64, 0u64, 0usize)); methods.len()];
    for (m, (method, layouts)) in methods.iter().zip(layouts).enumerate() {
        let mut cells = vec![method.name()];
        for (layout, access) in layouts.iter().zip(accesses) {
            let Some(access) = access else {
                cells.push("-".to_owned());
                continue;
            };
            let (whole, touched) = fetched(layout, access);
            let ((whole_stored, _, whole_count), (touched_stored, touched_plain, touched_count)) =
                (total(&whole), total(&touched));
            let sums = &mut lazy[m];
            sums.0.0 += whole_stored;
            sums.0.1 += whole_count;
            sums.1.0 += touched_stored;
            sums.1.1 += touched_plain;
            sums.1.2 += touched_count;
            cells.push(format!("{} ({whole_count}) / {} ({touched_count})", mib(whole_stored), mib(touched_stored)));
        }
        row(&cells);
    }

    println!(
        "\n## Summary over the set: unique stored MiB + lazy MiB fetched by one start of each version \
         (plaintext read: {} MiB of whole files, {} MiB of touched pages); packing speed on {}\n",
        mib(needed.0),
        mib(needed.1),
        versions[largest].name
    );
    header(
        &[
            "method",
            "unique stored MiB",
            "lazy, whole files: MiB (chunks)",
            "lazy, touched: MiB (chunks)",
            "touched: plaintext fetched / touched",
            "stored + lazy whole",
            "stored + lazy touched",
            "chunk+seal MiB/s",
        ]
        .map(String::from),
    );
    for (m, method) in methods.iter().enumerate() {
        let ((whole, whole_count), (touched, touched_plain, touched_count)) = lazy[m];
        row(&[
            method.name(),
            mib(unique_total[m]),
            format!("{} ({whole_count})", mib(whole)),
            format!("{} ({touched_count})", mib(touched)),
            format!("{:.2}", touched_plain as f64 / needed.1 as f64),
            mib(unique_total[m] + whole),
            mib(unique_total[m] + touched),
            format!("{:.0}", speeds[m]),
        ]);
    }
}
