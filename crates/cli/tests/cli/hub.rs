//! Flists through a hub onto nodes, end to end: `zgrid flist create` and `push` (and `zgrid hub
//! import` of an OCI image) into a real `zgrid hub`, containers on devnet nodes started from the
//! flist URL, their images mounted through FUSE and fetched chunk by chunk from the hub.

use std::path::{Path, PathBuf};
use std::time::Duration;

use zgrid_devnet::Node;

use crate::common::ServerProcess;
use crate::grid::{Grid, id_of, wait_until};

#[path = "../../../flist/tests/common/oci.rs"]
mod oci;
#[path = "../../../hub/tests/common/raw.rs"]
mod raw;
#[path = "../../../flist/tests/common/tree.rs"]
mod tree;

const LIMIT: Duration = Duration::from_secs(90);

/// Pack `rootfs` into `<dir>/<name>` (chunks in `<dir>/store`) and push it as `name`; the
/// push's JSON (`url`, `stored`).
pub(crate) fn push(grid: &Grid, dir: &Path, rootfs: &Path, name: &str) -> serde_json::Value {
    let (out, store) = (dir.join(name), dir.join("store"));
    let (out, store) = (out.to_str().unwrap(), store.to_str().unwrap());
    grid.cli(&["flist", "create", rootfs.to_str().unwrap(), "-o", out, "--store", store]);
    grid.cli(&["flist", "push", out, "--store", store, "--name", name])
}

/// Deploy a container from flist `url` on `node` running `entrypoint` (the image's own when
/// empty); extra flags follow. Returns the workload id.
fn deploy(grid: &Grid, node: &Node, url: &str, entrypoint: &str, extra: &[&str]) -> String {
    let mut args = vec!["deploy", "container", "--node", node.id(), "--flist", url, "--memory", "64", "--disk", "64"];
    if !entrypoint.is_empty() {
        args.extend(["--entrypoint", entrypoint]);
    }
    args.extend_from_slice(extra);
    id_of(&grid.cli(&args))
}

/// Wait until the container's output contains `text`; returns the output.
fn logs_with(grid: &Grid, node: &Node, id: &str, text: &str) -> String {
    wait_until(LIMIT, || {
        let out = grid.cli_raw(&["logs", id]);
        let logs = String::from_utf8_lossy(&out.stdout).into_owned();
        logs.contains(text).then_some(logs)
    })
    .unwrap_or_else(|| panic!("no {text:?} in the logs of {id}: {:?}\nagent log:\n{}", grid.record(id), node.log()))
}

/// Where the node mounts container `id`'s image.
fn mountpoint(node: &Node, id: &str) -> PathBuf {
    node.state_dir().join("flist/mnt").join(id)
}

fn fuse_mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(" fuse"))
        .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
        .filter(|m| m.starts_with(&prefix))
        .collect()
}

/// Bytes the hub has served as chunks.
pub(crate) fn served(grid: &Grid) -> u64 {
    grid.cli(&["hub", "stats"])["chunk_bytes_served"].as_u64().unwrap()
}

/// Bytes in the files under `dir`.
pub(crate) fn tree_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() { tree_bytes(&e.path()) } else { e.metadata().unwrap().len() }
        })
        .sum()
}

/// `len` bytes that do not compress.
fn noise(len: usize, seed: &str) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new().update(seed.as_bytes()).finalize_xof().fill(&mut out);
    out
}

#[test]
fn an_image_pushed_to_the_hub_mounts_on_a_node_identical_to_its_source() {
    let grid = Grid::new();
    let node = grid.node(60);
    let dir = tempfile::tempdir().unwrap();
    let rootfs = zgrid_devnet::busybox_rootfs(dir.path()).unwrap();
    // Hardlinks, symlinks, owners, modes, ns times, xattrs, a device node, a fifo, and a file of
    // several chunks, next to busybox itself.
    tree::sample(&rootfs);
    let pushed = push(&grid, dir.path(), &rootfs, "busybox.flist");
    let url = pushed["url"].as_str().unwrap().to_owned();
    assert!(pushed["stored"]["new_chunks"].as_u64().unwrap() >= 4, "{pushed}");
    let listed = grid.cli(&["hub", "ls", "me"]);
    assert_eq!(listed[0]["name"], "busybox.flist", "{listed}");

    let id = deploy(&grid, &node, &url, "/bin/sh -c 'cat /etc/app/config; echo started; sleep 1000'", &["--wait"]);
    let logs = logs_with(&grid, &node, &id, "started");
    assert!(logs.starts_with("key = value\n"), "{logs}");
    let pinned = &grid.record(&id).unwrap()["workload"]["payload"]["data"]["flist_hash"];
    assert_eq!(pinned, &pushed["stored"]["flist"]["hash"], "the deploy pinned what the hub served");

    // The node's mount shows exactly the source tree.
    let mounted = tree::describe(&mountpoint(&node, &id));
    let source = tree::describe(&rootfs);
    assert_eq!(mounted.len(), source.len());
    for (path, want) in &source {
        assert_eq!(mounted.get(path), Some(want), "{path}");
    }

    // A second version that changes one small file stores one new chunk.
    std::fs::write(rootfs.join("etc/app/config"), "key = other\n").unwrap();
    let v2 = push(&grid, dir.path(), &rootfs, "busybox-v2.flist");
    assert_eq!(v2["stored"]["new_chunks"], 1, "{v2}");

    // A reservation pinning another hash is refused by the node: the content is not what the
    // owner signed for.
    let other = v2["stored"]["flist"]["hash"].as_str().unwrap();
    let bad = deploy(&grid, &node, &url, "/bin/sh -c 'sleep 1000'", &["--flist-hash", other]);
    let record = grid.wait_for_result(&node, &bad, "error", LIMIT);
    let message = record["result"]["payload"]["message"].as_str().unwrap();
    assert!(message.contains("pins") && message.contains(other), "{message}");

    for id in [&id, &bad] {
        grid.cli(&["delete", id]);
        grid.wait_for_result(&node, id, "deleted", LIMIT);
    }
    assert_eq!(fuse_mounts_under(node.state_dir()), Vec::<String>::new(), "FUSE mounts remain");
    assert!(!mountpoint(&node, &id).exists());
}

/// An OCI image layout: layer one is busybox plus `/etc/old` and `/srv/keep`, layer two whites
/// out `/etc/old`; the config names an entrypoint, a command, an environment and a directory.
fn oci_layout(dir: &Path) -> PathBuf {
    use oci::TarEntry;
    let layout = dir.join("oci");
    let mut one = vec![
        TarEntry::dir("bin"),
        TarEntry::file("bin/busybox", std::fs::read("/bin/busybox").unwrap()).mode(0o755),
        TarEntry::dir("etc"),
        TarEntry::file("etc/old", "to be deleted\n"),
        TarEntry::dir("srv"),
        TarEntry::file("srv/keep", "kept\n"),
    ];
    one.extend(
        ["sh", "echo", "ls", "cat", "sleep"].map(|applet| TarEntry::symlink(&format!("bin/{applet}"), "busybox")),
    );
    let two = vec![TarEntry::whiteout("etc/old")];
    let config = serde_json::json!({ "config": {
        "Entrypoint": ["/bin/sh", "-c"],
        "Cmd": ["echo GREETING=$GREETING; ls /etc /srv; cat /etc/old || echo old-is-gone; sleep 1000"],
        "Env": ["PATH=/bin", "GREETING=hello-oci"],
        "WorkingDir": "/srv",
    }});
    oci::write_oci_layout(&layout, &[one, two], config);
    layout
}

#[test]
fn an_oci_image_imported_by_the_hub_runs_its_entrypoint_and_env_without_whited_out_files() {
    let grid = Grid::new();
    let node = grid.node(60);
    let dir = tempfile::tempdir().unwrap();
    let layout = oci_layout(dir.path());
    let imported = grid.cli(&["hub", "import", layout.to_str().unwrap(), "--name", "oci.flist"]);
    let url = imported["url"].as_str().unwrap().to_owned();

    let id = deploy(&grid, &node, &url, "", &["--wait"]);
    let logs = logs_with(&grid, &node, &id, "old-is-gone");
    assert!(logs.contains("GREETING=hello-oci"), "the image's env: {logs}");
    assert!(logs.contains("keep"), "{logs}");
    assert!(!logs.lines().any(|l| l.split_whitespace().any(|w| w == "old" || w.starts_with(".wh."))), "{logs}");

    // Merging: a second flist adds a file; the merge has both trees, the later one on top.
    let extra = dir.path().join("extra");
    std::fs::create_dir_all(extra.join("srv")).unwrap();
    std::fs::write(extra.join("srv/added"), "from the second flist\n").unwrap();
    push(&grid, dir.path(), &extra, "extra.flist");
    let me = grid.cli(&["hub", "ls", "me"])[0]["owner"].as_str().unwrap().to_owned();
    let merged = grid.cli(&["hub", "merge", "merged.flist", &format!("{me}/oci.flist"), &format!("{me}/extra.flist")]);
    let merged_url = merged["url"].as_str().unwrap().to_owned();
    let merged_id = deploy(&grid, &node, &merged_url, "/bin/sh -c 'cat /srv/keep /srv/added; sleep 1000'", &["--wait"]);
    logs_with(&grid, &node, &merged_id, "kept\nfrom the second flist\n");
    for id in [&id, &merged_id] {
        grid.cli(&["delete", id]);
        grid.wait_for_result(&node, id, "deleted", LIMIT);
    }
}

#[test]
fn a_corrupted_chunk_on_the_hub_fails_reads_with_eio_and_the_workload_says_why() {
    let grid = Grid::new();
    let node = grid.node(60);
    let dir = tempfile::tempdir().unwrap();
    let rootfs = zgrid_devnet::busybox_rootfs(dir.path()).unwrap();
    std::fs::create_dir_all(rootfs.join("data")).unwrap();
    std::fs::write(rootfs.join("data/blob"), noise(3 << 20, "blob")).unwrap();
    let pushed = push(&grid, dir.path(), &rootfs, "tamper.flist");

    // Flip one byte of the blob's second chunk where the hub keeps it.
    let flist = zgrid_flist::Flist::open(&dir.path().join("tamper.flist")).unwrap();
    let ino = zgrid_flist::resolve(&flist, "/data/blob").unwrap();
    let victim = hex::encode(flist.chunks(ino).unwrap()[1].id);
    let stored = grid.devnet.hub_data().join("chunks").join(&victim[..2]).join(&victim);
    let mut bytes = std::fs::read(&stored).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&stored, bytes).unwrap();

    let url = pushed["url"].as_str().unwrap();
    let script = "/bin/sh -c 'head -c 1000 /data/blob >/dev/null && echo head-ok; cat /data/blob >/dev/null || echo read-failed; sleep 1000'";
    let id = deploy(&grid, &node, url, script, &[]);
    let logs = logs_with(&grid, &node, &id, "read-failed");
    assert!(logs.contains("head-ok"), "chunks before the damaged one still read: {logs}");
    let errors = String::from_utf8_lossy(&grid.cli_raw(&["logs", &id]).stderr).into_owned();
    assert!(errors.contains("Input/output error"), "the read fails with EIO: {errors}");
    let record = grid.wait_for_result(&node, &id, "error", LIMIT);
    let message = record["result"]["payload"]["message"].as_str().unwrap();
    assert!(message.contains(&victim) && message.contains("corrupt"), "{message}");
    grid.cli(&["delete", &id]);
    grid.wait_for_result(&node, &id, "deleted", LIMIT);
}

#[test]
fn a_large_image_starts_after_fetching_a_small_part_and_survives_its_mount_service_dying() {
    let grid = Grid::new();
    let node = grid.node(60);
    let dir = tempfile::tempdir().unwrap();
    let rootfs = zgrid_devnet::busybox_rootfs(dir.path()).unwrap();
    std::fs::create_dir_all(rootfs.join("data")).unwrap();
    for (i, size) in [(1, 120usize << 20), (2, 100 << 20)] {
        std::fs::write(rootfs.join(format!("data/part{i}")), noise(size, &format!("part{i}"))).unwrap();
    }
    // Pushed from a script (no terminal), its hundreds of chunks make a few lines of progress,
    // not a line each; pushed again, nothing is missing and it says what the hub stores.
    let (out, store) = (dir.path().join("large.flist"), dir.path().join("store"));
    let (out, store) = (out.to_str().unwrap(), store.to_str().unwrap());
    grid.cli(&["flist", "create", rootfs.to_str().unwrap(), "-o", out, "--store", store]);
    let said = grid.cli_raw(&["flist", "push", out, "--store", store, "--name", "large.flist"]);
    let lines = [&said.stdout, &said.stderr].map(|b| String::from_utf8_lossy(b).into_owned()).join("");
    assert!(said.status.success() && lines.lines().count() <= 15, "{lines}");
    let pushed = grid.cli(&["flist", "push", out, "--store", store, "--name", "large.flist"]);
    let image_bytes = pushed["stored"]["flist"]["content_bytes"].as_u64().unwrap();
    assert!(image_bytes >= 200 << 20, "{pushed}");
    let url = pushed["url"].as_str().unwrap();

    // Like for like: the stored (compressed, encrypted) bytes a start fetches, with the flist
    // file the node downloads first, against the image's stored bytes with that file.
    let flist_bytes = std::fs::metadata(dir.path().join("large.flist")).unwrap().len();
    let stored = flist_bytes + tree_bytes(&dir.path().join("store"));
    let before = served(&grid);
    let script = "/bin/sh -c 'head -c 4096 /data/part2 | wc -c; echo started; sleep 1000'";
    let id = deploy(&grid, &node, url, script, &["--wait"]);
    logs_with(&grid, &node, &id, "started");
    let fetched = served(&grid) - before + flist_bytes;
    assert!(fetched * 10 <= stored, "fetched {fetched} of the image's {stored} stored bytes to start");

    // The mount service dies: the node notices, and the container runs again on a new mount.
    let service = node.state_dir().join("flist/mounts.sock");
    let pid = peer_pid(&service);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    let record = grid.wait_for_result(&node, &id, "error", LIMIT);
    let message = record["result"]["payload"]["message"].as_str().unwrap();
    assert!(message.contains("FUSE mount is gone") && message.contains("restarting"), "{message}");
    grid.wait_for_result(&node, &id, "ok", LIMIT);
    let logs = logs_with(&grid, &node, &id, "started\n4096\nstarted");
    assert!(logs.matches("started").count() >= 2, "{logs}");
    assert_ne!(peer_pid(&service), pid, "a new mount service runs");
    grid.cli(&["delete", &id]);
    grid.wait_for_result(&node, &id, "deleted", LIMIT);
    assert_eq!(fuse_mounts_under(node.state_dir()), Vec::<String>::new(), "FUSE mounts remain");
}

/// The pid of the process listening on the Unix socket `path`.
pub(crate) fn peer_pid(path: &Path) -> i32 {
    let stream = std::os::unix::net::UnixStream::connect(path).unwrap();
    rustix::net::sockopt::socket_peercred(&stream).unwrap().pid.as_raw_nonzero().get()
}

/// A field of /proc/PID/status, in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("no {field} in {status}"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The bytes of the files in `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir).unwrap().filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum()
}

/// Strangers cannot cost the hub memory or disk: 1 GiB streamed to an import with a bogus
/// signature, and again with none, and 24 chunk uploads of 32 MiB at once with bogus
/// signatures, are each answered 401 before the hub takes 1 MiB of them.
///
/// Measured on a real `zgrid hub serve`, from outside, as an operator would see it: its spool
/// directory is polled while the bodies stream (a spooled upload would sit there for the
/// seconds a GiB takes) and must never hold 1 MiB; its peak resident memory (`VmHWM` in
/// /proc/PID/status) may not grow by more than 4 MiB in all (under 1 MiB here; a hub that read
/// the bodies before checking grew by 600 MiB). The peak also counts code pages first touched
/// and allocator slack, which is why the process is warmed up by one refused upload first and
/// why the bound is looser than 1 MiB per upload (26 of them); the 1 MiB bound on what the hub
/// takes of each body is checked from the client's side too: the answer comes before the
/// connection has taken 1 MiB plus what the kernel's socket buffers hold. A child process rather
/// than an in-process counting allocator: the workspace forbids the unsafe code one needs, and
/// the process's memory is what an operator sees.
#[test]
fn strangers_uploads_cost_the_hub_no_memory_or_disk() {
    let dir = tempfile::tempdir().unwrap();
    let hub = ServerProcess::hub(dir.path(), &[]);
    let addr = hub.url.trim_start_matches("http://").to_owned();
    let pid = hub.child.id();
    let spool = dir.path().join("tmp");
    let stranger = zgrid_types::Keypair::from_seed(&[42; 32]);
    let ns = stranger.public().to_string();
    let bogus = |method: &str, path: &str, hash: &str| -> Vec<(&'static str, String)> {
        // Signed by the stranger, over other bytes than these headers declare.
        let auth = zgrid_types::auth::RequestAuth::sign(
            &stranger,
            method,
            path,
            zgrid_types::unix_now(),
            hex::encode([7u8; 16]),
            b"other",
        );
        vec![("authorization", auth.to_string()), (zgrid_types::auth::CONTENT_HASH_HEADER, hash.to_owned())]
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let import = format!("/api/v1/flists/{ns}/big.flist/import");

    // The most of one body the connection may take before the answer: 1 MiB for the hub, and
    // what loopback's socket buffers hold on both sides.
    let buffers = |name: &str| -> u64 {
        let max = std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}")).unwrap();
        max.split_whitespace().last().unwrap().parse().unwrap()
    };
    let most = (1 << 20) + buffers("tcp_rmem") + buffers("tcp_wmem");

    runtime.block_on(async {
        let warm_up =
            raw::RawRequest::start(&addr, "POST", &import, 1 << 20, &bogus("POST", &import, &"ab".repeat(32))).await;
        assert_eq!(warm_up.stream_zeros(1 << 20).await.0.status, 401);
    });
    let baseline = status_kib(pid, "VmHWM:");

    let watching = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let watcher = std::thread::spawn({
        let (watching, spool) = (watching.clone(), spool.clone());
        move || {
            let mut peak = 0;
            while watching.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(dir_bytes(&spool));
                std::thread::sleep(Duration::from_millis(5));
            }
            peak
        }
    });
    runtime.block_on(async {
        let gib = 1u64 << 30;
        for headers in [bogus("POST", &import, &"ab".repeat(32)), Vec::new()] {
            let req = raw::RawRequest::start(&addr, "POST", &import, gib, &headers).await;
            let (answer, taken) = req.stream_zeros(gib).await;
            assert_eq!(answer.status, 401, "{answer:?}");
            assert!(taken <= most, "the connection took {taken} bytes of a refused body (at most {most} expected)");
        }
        let uploads = (0..24u8).map(|i| {
            let id = hex::encode([i; 32]);
            let path = format!("/api/v1/chunks/{id}");
            let headers = bogus("PUT", &path, &id);
            let addr = addr.clone();
            tokio::spawn(async move {
                raw::RawRequest::start(&addr, "PUT", &path, 32 << 20, &headers).await.stream_zeros(32 << 20).await
            })
        });
        for upload in futures::future::join_all(uploads.collect::<Vec<_>>()).await {
            let (answer, taken) = upload.unwrap();
            assert_eq!(answer.status, 401, "{answer:?}");
            assert!(taken <= most, "the connection took {taken} bytes of a refused chunk (at most {most} expected)");
        }
    });
    watching.store(false, std::sync::atomic::Ordering::Relaxed);
    let spooled = watcher.join().unwrap();
    let grown = status_kib(pid, "VmHWM:") - baseline;
    eprintln!("peak spool {spooled} bytes; peak memory grew by {grown} KiB from {baseline} KiB");
    assert!(spooled < 1 << 20, "the hub spooled {spooled} bytes of strangers' uploads");
    assert!(grown < 4 << 10, "the hub's peak memory grew by {grown} KiB (from {baseline} KiB)");
}
