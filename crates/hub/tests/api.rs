//! The hub's HTTP API end to end: a hub served in process on loopback per test, driven through
//! `HubClient`, and through raw requests where the client cannot express the attack (unsigned,
//! foreign namespace, replayed or stale signatures, hostile names). Covers pushing an flist and
//! its chunks, refusals, deleting, importing a root filesystem, merging, and restarting on the
//! same data directory.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use common::{TestHub, bytes, key, refusal, sign};
use zgrid_client::HubClient;
use zgrid_flist::{DirStore, Flist};
use zgrid_types::hub::{FlistInfo, Repository};

/// What objects by hash and chunks must be served with.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// A scratch directory with a local chunk store for packing.
struct Scratch {
    dir: tempfile::TempDir,
    local: DirStore,
}

impl Scratch {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let local = DirStore::new(dir.path().join("local-chunks"));
        Self { dir, local }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The hub's data directory.
    fn data(&self) -> PathBuf {
        self.path("hub-data")
    }

    /// Write `files` under a new directory and pack it into `<name>` (an flist file).
    fn pack(&self, name: &str, files: &[(&str, &[u8])]) -> PathBuf {
        let root = self.path(&format!("{name}.tree"));
        for (path, contents) in files {
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, contents).expect("write");
        }
        let out = self.path(name);
        zgrid_flist::pack(&root, &self.local, &out).expect("pack");
        out
    }

    /// Write `bytes` to the scratch file `name`.
    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, bytes).expect("write");
        path
    }

    /// Unpack flist bytes with chunks from `store` into a new directory; its tree.
    fn unpack(&self, name: &str, flist: &[u8], store: &DirStore) -> BTreeMap<String, String> {
        let file = self.write(&format!("{name}.downloaded"), flist);
        let flist = Flist::open(&file).expect("a readable flist");
        let dest = self.path(&format!("{name}.unpacked"));
        zgrid_flist::unpack(&flist, store, &dest).expect("unpack");
        tree(&dest)
    }
}

/// Every entry under `root` (not `root` itself): `dir <mode>`, `file <mode> <contents>` or
/// `symlink <target>`, by relative path.
fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![root.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            let rel = path.strip_prefix(root).expect("inside").to_string_lossy().into_owned();
            let meta = std::fs::symlink_metadata(&path).expect("metadata");
            let mode = meta.mode() & 0o7777;
            let what = if meta.is_dir() {
                dirs.push(path.clone());
                format!("dir {mode:o}")
            } else if meta.file_type().is_symlink() {
                format!("symlink {}", std::fs::read_link(&path).expect("readlink").display())
            } else {
                format!("file {mode:o} {}", describe(&std::fs::read(&path).expect("read")))
            };
            out.insert(rel, what);
        }
    }
    out
}

/// File contents as [`tree`] shows them: short text as is, else by hash.
fn describe(contents: &[u8]) -> String {
    match std::str::from_utf8(contents) {
        Ok(text) if text.len() <= 64 => text.to_owned(),
        _ => format!("blake3:{}", blake3::hash(contents).to_hex()),
    }
}

/// The contents of a file as [`tree`] describes it; `None` for other entries.
fn file_contents(what: &str) -> Option<&str> {
    what.strip_prefix("file ")?.split_once(' ').map(|(_, contents)| contents)
}

/// The distinct chunk ids (hex) an flist file references.
fn chunk_ids(flist: &Path) -> Vec<String> {
    let flist = Flist::open(flist).expect("open flist");
    flist.chunk_ids().expect("chunk ids").iter().map(hex::encode).collect()
}

/// Upload the chunks the hub lacks from `local`, then the flist as `name`.
async fn push(client: &HubClient, local: &DirStore, name: &str, flist: &Path) -> zgrid_types::hub::Stored {
    for id in client.missing(&chunk_ids(flist)).await.expect("missing") {
        let hash: [u8; 32] = hex::decode(&id).expect("hex").try_into().expect("32 bytes");
        client.put_chunk(&id, local.get(&hash).expect("local chunk")).await.expect("put chunk");
    }
    client.put_flist(name, flist).await.expect("put flist")
}

fn hash_of(id: &str) -> [u8; 32] {
    hex::decode(id).expect("hex").try_into().expect("32 bytes")
}

fn header<'a>(resp: &'a reqwest::Response, name: &str) -> &'a str {
    resp.headers().get(name).unwrap_or_else(|| panic!("no {name} header")).to_str().expect("ascii")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_then_list_and_download_immutable_objects() {
    let scratch = Scratch::new();
    let hub = TestHub::start(&scratch.data()).await;
    let owner = key(1);
    let client = hub.signed(&owner);
    let (a, b, c) = (bytes("a", 5000), bytes("b", 7000), bytes("c", 300));
    let flist = scratch.pack("tree.flist", &[("a.txt", &a), ("dir/b.bin", &b), ("dir/c", &c), ("copy-of-a", &a)]);
    let ids = chunk_ids(&flist);
    assert_eq!(ids.len(), 3, "three distinct contents, one chunk each");

    // One chunk is there already: only the others are missing.
    assert!(client.put_chunk(&ids[0], scratch.local.get(&hash_of(&ids[0])).unwrap()).await.unwrap());
    assert!(!client.put_chunk(&ids[0], scratch.local.get(&hash_of(&ids[0])).unwrap()).await.unwrap(), "not new");
    assert_eq!(client.missing(&ids).await.unwrap(), ids[1..].to_vec());
    for id in &ids[1..] {
        assert!(client.put_chunk(id, scratch.local.get(&hash_of(id)).unwrap()).await.unwrap());
    }
    assert_eq!(client.missing(&ids).await.unwrap(), Vec::<String>::new());

    let stored = client.put_flist("tree.flist", &flist).await.unwrap();
    let address = zgrid_flist::address(&flist).unwrap();
    let me = owner.public().to_string();
    assert_eq!(stored.flist.hash, address);
    assert_eq!((stored.flist.owner.as_str(), stored.flist.name.as_str()), (me.as_str(), "tree.flist"));
    assert_eq!(stored.flist.path, format!("/flists/{me}/tree.flist"));
    assert_eq!(stored.flist.chunks, 3);
    assert_eq!(stored.flist.content_bytes, (a.len() * 2 + b.len() + c.len()) as u64);
    assert_eq!(stored.flist.size, std::fs::metadata(&flist).unwrap().len());

    let anyone = hub.client();
    assert_eq!(anyone.repositories().await.unwrap(), vec![Repository { owner: me.clone(), flists: 1 }]);
    assert_eq!(anyone.list(&me).await.unwrap(), vec![stored.flist.clone()]);

    // By name: the same bytes, its address in a header, revalidated (a name can move).
    let resp = hub.get(&stored.flist.path).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-zgrid-flist-hash"), address);
    assert_ne!(header(&resp, "cache-control"), IMMUTABLE, "a name is mutable");
    assert_eq!(resp.bytes().await.unwrap(), std::fs::read(&flist).unwrap());
    // A cache that has it revalidates without downloading it again.
    let url = format!("{}{}", hub.url, stored.flist.path);
    let etag = format!("\"{address}\"");
    let again = reqwest::Client::new().get(&url).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(again.status(), 304);
    assert!(again.bytes().await.unwrap().is_empty());
    let other = reqwest::Client::new().get(&url).header("if-none-match", "\"old\"").send().await.unwrap();
    assert_eq!(other.status(), 200, "another version is sent whole");

    // By address: immutable.
    let resp = hub.get(&format!("/objects/{address}.flist")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "cache-control"), IMMUTABLE);
    assert_eq!(resp.bytes().await.unwrap(), std::fs::read(&flist).unwrap());

    let before = anyone.stats().await.unwrap();
    assert_eq!((before.chunks_served, before.chunk_bytes_served, before.chunks_received), (0, 0, 3));
    let mut served = 0;
    for id in &ids {
        let resp = hub.get(&format!("/chunks/{id}")).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "cache-control"), IMMUTABLE);
        let body = resp.bytes().await.unwrap();
        assert_eq!(body.as_ref(), scratch.local.get(&hash_of(id)).unwrap().as_slice());
        served += body.len() as u64;
    }
    // HEAD says how long a chunk or flist is without sending it, and serves nothing.
    let client = reqwest::Client::new();
    let head = client.head(format!("{}/chunks/{}", hub.url, ids[0])).send().await.unwrap();
    assert_eq!(head.status(), 200);
    let length = scratch.local.get(&hash_of(&ids[0])).unwrap().len();
    assert_eq!(header(&head, "content-length"), length.to_string());
    let head = client.head(format!("{}/objects/{address}.flist", hub.url)).send().await.unwrap();
    assert_eq!(header(&head, "content-length"), std::fs::metadata(&flist).unwrap().len().to_string());
    let after = anyone.stats().await.unwrap();
    assert_eq!((after.chunks_served, after.chunk_bytes_served), (3, served), "HEAD counted as served");
    assert_eq!(after.flists_served, 3, "by name twice (the 304 sends nothing), by address once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flist_with_chunks_missing_is_refused() {
    let scratch = Scratch::new();
    let hub = TestHub::start(&scratch.data()).await;
    let owner = key(1);
    let client = hub.signed(&owner);
    let flist = scratch.pack("partial.flist", &[("a", &bytes("a", 100)), ("b", &bytes("b", 100)), ("c", b"c")]);
    let ids = chunk_ids(&flist);
    client.put_chunk(&ids[1], scratch.local.get(&hash_of(&ids[1])).unwrap()).await.unwrap();

    let (status, message) = refusal(client.put_flist("partial.flist", &flist).await);
    assert_eq!(status, 409, "{message}");
    assert!(message.contains("2 of its 3 chunks are not on the hub"), "{message}");
    assert!(message.contains("upload them first"), "{message}");

    let me = owner.public().to_string();
    assert_eq!(client.list(&me).await.unwrap(), Vec::<FlistInfo>::new());
    assert_eq!(hub.get(&format!("/api/v1/flists/{me}/partial.flist")).await.status(), 404);
    assert_eq!(hub.get(&format!("/flists/{me}/partial.flist")).await.status(), 404);
    let address = zgrid_flist::address(&flist).unwrap();
    assert_eq!(hub.get(&format!("/objects/{address}.flist")).await.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunk_that_does_not_hash_to_its_id_is_refused() {
    let scratch = Scratch::new();
    let hub = TestHub::start(&scratch.data()).await;
    let client = hub.signed(&key(1));
    let good = bytes("good", 1000);
    let id = blake3::hash(&good).to_hex().to_string();
    let mut bad = good.clone();
    bad[10] ^= 1;

    let (status, message) = refusal(client.put_chunk(&id, bad).await);
    assert_eq!(status, 400, "{message}");
    assert!(message.contains(&format!("does not hash to {id}")), "{message}");
    assert!(!hub.chunks().has(&hash_of(&id)));
    assert_eq!(client.missing(std::slice::from_ref(&id)).await.unwrap(), vec![id.clone()]);
    assert_eq!(hub.get(&format!("/chunks/{id}")).await.status(), 404);
    assert_eq!(client.stats().await.unwrap().chunks_received, 0);

    assert!(client.put_chunk(&id, good.clone()).await.unwrap(), "the right bytes are accepted");
    assert_eq!(hub.get_ok(&format!("/chunks/{id}")).await, good);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_mis_signed_and_foreign_writes_are_refused() {
    let scratch = Scratch::new();
    let hub = TestHub::start(&scratch.data()).await;
    let (alice, mallory) = (key(1), key(2));
    let alice_ns = alice.public().to_string();
    let chunk = bytes("chunk", 500);
    let id = blake3::hash(&chunk).to_hex().to_string();
    let now = zgrid_types::unix_now();

    // Unsigned.
    let chunk_path = format!("/api/v1/chunks/{id}");
    let (status, message) = hub.send("PUT", &chunk_path, None, chunk.clone()).await;
    assert_eq!(status, 401, "{message}");
    assert!(message.contains("must be signed"), "{message}");
    assert!(!hub.chunks().has(&hash_of(&id)));

    let flist = scratch.pack("app.flist", &[("app", &bytes("app", 2000))]);
    let flist_bytes = std::fs::read(&flist).unwrap();
    let alice_path = format!("/api/v1/flists/{alice_ns}/app.flist");
    assert_eq!(hub.send("PUT", &alice_path, None, flist_bytes.clone()).await.0, 401);
    assert_eq!(hub.send("POST", &format!("{alice_path}/import"), None, b"x".to_vec()).await.0, 401);
    assert_eq!(hub.send("POST", &format!("{alice_path}/merge"), None, b"{}".to_vec()).await.0, 401);
    assert_eq!(hub.send("DELETE", &alice_path, None, Vec::new()).await.0, 401);

    // Signed over other bytes than those sent.
    let auth = sign(&alice, "PUT", &chunk_path, now, b"something else");
    let (status, message) = hub.send("PUT", &chunk_path, Some(&auth), chunk.clone()).await;
    assert_eq!(status, 401, "{message}");
    assert!(!hub.chunks().has(&hash_of(&id)));

    // Alice's flist, then Mallory writing and deleting in her namespace with a valid signature of his own.
    push(&hub.signed(&alice), &scratch.local, "app.flist", &flist).await;
    let other = scratch.pack("evil.flist", &[("app", &bytes("evil", 2000))]);
    push(&hub.signed(&mallory), &scratch.local, "evil.flist", &other).await;
    let evil_bytes = std::fs::read(&other).unwrap();
    let stolen = format!("/api/v1/flists/{alice_ns}/stolen.flist");
    for (method, path, body) in [
        ("PUT", stolen.clone(), evil_bytes.clone()),
        ("PUT", alice_path.clone(), evil_bytes.clone()),
        ("DELETE", alice_path.clone(), Vec::new()),
    ] {
        let auth = sign(&mallory, method, &path, zgrid_types::unix_now(), &body);
        let (status, message) = hub.send(method, &path, Some(&auth), body).await;
        assert_eq!(status, 403, "{method} {path}: {message}");
        assert!(message.contains("only write to your own namespace"), "{message}");
    }
    let listed = hub.client().list(&alice_ns).await.unwrap();
    assert_eq!(listed.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(), ["app.flist"]);
    assert_eq!(listed[0].hash, zgrid_flist::address(&flist).unwrap(), "still Alice's flist");
    assert_eq!(hub.get_ok(&format!("/flists/{alice_ns}/app.flist")).await, flist_bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_and_stale_signatures_are_refused() {
    let scratch = Scratch::new();
    let hub = TestHub::start(&scratch.data()).await;
    let owner = key(1);

    let chunk = bytes("replayed", 800);
    let id = blake3::hash(&chunk).to_hex().to_string();
    let path = format!("/api/v1/chunks/{id}");
    let auth = sign(&owner, "PUT", &path, zgrid_types::unix_now(), &chunk);
    let (status, message) = hub.send("PUT", &path, Some(&auth), chunk.clone()).await;
    assert_eq!(status, 201, "{message}");
    let (status, message) = hub.send("PUT", &path, Some(&auth), chunk.clone()).await;
    assert_eq!(status, 401, "{message}");
    assert!(message.contains("already used"), "{message}");

    // A replayed delete must not remove a name pushed again since.
    let flist = scratch.pack("app.flist", &[("app", &bytes("app", 100))]);
    let client = hub.signed(&owner);
    push(&client, &scratch.local, "app.flist", &flist).await;
    let name_path = format!("/api/v1/flists/{}/app.flist", owner.public());
    let delete = sign(&owner, "DELETE", &name_path, zgrid_types::unix_now(), b"");
    assert_eq!(hub.send("DELETE", &name_path, Some(&delete), Vec::new()).await.0, 204);
    push(&client, &scratch.local, "app.flist", &flist).await;
    let (status, message) = hub.send("DELETE", &name_path, Some(&delete), Vec::new()).await;
    assert_eq!(status, 401, "{message}");
    assert_eq!(client.list(&owner.public().to_string()).await.unwrap().len(), 1);

    // A request used before a restart is still refused after it: used nonces are kept on disk.
    let used = bytes("used", 800);
    let used_path = format!("/api/v1/chunks/{}", blake3::hash(&used).to_hex());
    let auth = sign(&owner, "PUT", &used_path, zgrid_types::unix_now(), &used);
    assert_eq!(hub.send("PUT", &used_path, Some(&auth), used.clone()).await.0, 201);
    hub.stop().await;
    let hub = TestHub::start(&scratch.data()).await;
    let (status, message) = hub.send("PUT", &used_path, Some(&auth), used.clone()).await;
    assert_eq!(status, 401, "{message}");
    assert!(message.contains("already used"), "{message}");

    let stale = bytes("stale", 800);
    let stale_id = blake3::hash(&stale).to_hex().to_string();
    let stale_path = format!("/api/v1/chunks/{stale_id}");
    // Outside the clock window.
    let auth = sign(&owner, "PUT", &stale_path, zgrid_types::unix_now() + 3600, &stale);
    let (status, message) = hub.send("PUT", &stale_path, Some(&auth), stale.clone()).await;
    assert_eq!(status, 401, "{message}");
    assert!(message.contains("check the clock"), "{message}");
    assert!(!hub.chunks().has(&hash_of(&stale_id)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_names_and_unknown_flists() {
    let scratch = Scratch::new();
    let hub = TestHub::start(&scratch.data()).await;
    let owner = key(1);
    let me = owner.public().to_string();
    let client = hub.signed(&owner);
    let flist = scratch.pack("app.flist", &[("app", &bytes("app", 100))]);
    for id in chunk_ids(&flist) {
        client.put_chunk(&id, scratch.local.get(&hash_of(&id)).unwrap()).await.unwrap();
    }

    let (status, message) = refusal(client.put_flist("noext", &flist).await);
    assert_eq!(status, 400, "{message}");
    assert!(message.contains("letters, digits") && message.contains("ending in .flist"), "{message}");

    // `..` encoded so no URL normalisation removes it before the hub sees it.
    let body = std::fs::read(&flist).unwrap();
    for name in ["..%2Fx.flist", "noext", "a%2Fb.flist", ".hidden.flist"] {
        let path = format!("/api/v1/flists/{me}/{name}");
        let auth = sign(&owner, "PUT", &path, zgrid_types::unix_now(), &body);
        let (status, message) = hub.send("PUT", &path, Some(&auth), body.clone()).await;
        assert_eq!(status, 400, "{name}: {message}");
        assert!(message.contains("ending in .flist"), "{message}");
        let resp = hub.get(&format!("/flists/{me}/{name}")).await;
        assert_eq!(resp.status(), 400, "GET {name}");
    }
    assert!(!scratch.data().join("names").join("x.flist").exists());
    assert_eq!(client.list(&me).await.unwrap(), Vec::<FlistInfo>::new());

    let stranger = key(9).public().to_string();
    for path in [
        format!("/flists/{stranger}/nothing.flist"),
        format!("/api/v1/flists/{stranger}/nothing.flist"),
        format!("/flists/{me}/nothing.flist"),
        "/flists/not-a-key/nothing.flist".to_owned(),
        format!("/objects/{}.flist", "0".repeat(64)),
        format!("/chunks/{}", "0".repeat(64)),
    ] {
        assert_eq!(hub.get(&path).await.status(), 404, "GET {path}");
    }
    assert_eq!(hub.client().list(&stranger).await.unwrap(), Vec::<FlistInfo>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_removes_the_name_but_not_shared_content() {
    let scratch = Scratch::new();
    let hub = TestHub::start(&scratch.data()).await;
    let owner = key(1);
    let me = owner.public().to_string();
    let client = hub.signed(&owner);
    let flist = scratch.pack("app.flist", &[("app", &bytes("app", 3000))]);
    let one = push(&client, &scratch.local, "one.flist", &flist).await;
    let two = client.put_flist("two.flist", &flist).await.unwrap();
    assert_eq!(one.flist.hash, two.flist.hash);

    client.delete("one.flist").await.unwrap();
    assert_eq!(hub.get(&format!("/flists/{me}/one.flist")).await.status(), 404);
    assert_eq!(hub.get(&format!("/api/v1/flists/{me}/one.flist")).await.status(), 404);
    let names: Vec<_> = client.list(&me).await.unwrap().into_iter().map(|f| f.name).collect();
    assert_eq!(names, ["two.flist"]);
    let (status, _) = refusal(client.delete("one.flist").await);
    assert_eq!(status, 404);

    let bytes = std::fs::read(&flist).unwrap();
    assert_eq!(hub.get_ok(&format!("/flists/{me}/two.flist")).await, bytes);
    assert_eq!(hub.get_ok(&format!("/objects/{}.flist", one.flist.hash)).await, bytes);
    for id in chunk_ids(&flist) {
        hub.get_ok(&format!("/chunks/{id}")).await;
    }

    client.delete("two.flist").await.unwrap();
    assert_eq!(hub.client().repositories().await.unwrap(), Vec::<Repository>::new());
}

/// A gzip tar of a small root filesystem, and the tree it should unpack to.
fn rootfs_tar_gz() -> (Vec<u8>, BTreeMap<String, String>) {
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default()));
    let mut expected = BTreeMap::new();
    let header = |path: &str, kind: tar::EntryType, mode: u32, size: usize| {
        let mut h = tar::Header::new_gnu();
        h.set_path(path).unwrap();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size as u64);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h
    };
    for (dir, mode) in [("etc", 0o755), ("bin", 0o755), ("var", 0o700), ("var/data", 0o750)] {
        let mut h = header(dir, tar::EntryType::Directory, mode, 0);
        h.set_cksum();
        tar.append(&h, std::io::empty()).unwrap();
        expected.insert(dir.to_owned(), format!("dir {mode:o}"));
    }
    let big: String = (0..40_000).map(|i| format!("line {i}\n")).collect();
    let files: [(&str, u32, &[u8]); 4] = [
        ("etc/hostname", 0o644, b"zgrid\n"),
        ("bin/tool", 0o755, b"#!/bin/sh\necho hello\n"),
        ("var/data/big.txt", 0o600, big.as_bytes()),
        ("var/data/empty", 0o644, b""),
    ];
    for (path, mode, contents) in files {
        let mut h = header(path, tar::EntryType::Regular, mode, contents.len());
        h.set_cksum();
        tar.append(&h, contents).unwrap();
        expected.insert(path.to_owned(), format!("file {mode:o} {}", describe(contents)));
    }
    let mut h = header("bin/sh", tar::EntryType::Symlink, 0o777, 0);
    h.set_link_name("tool").unwrap();
    h.set_cksum();
    tar.append(&h, std::io::empty()).unwrap();
    expected.insert("bin/sh".to_owned(), "symlink tool".to_owned());
    let mut gz = tar.into_inner().unwrap();
    gz.flush().unwrap();
    (gz.finish().unwrap(), expected)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_rootfs_tar_gz_and_refuse_garbage() {
    let scratch = Scratch::new();
    let hub = TestHub::start(&scratch.data()).await;
    let owner = key(1);
    let me = owner.public().to_string();
    let client = hub.signed(&owner);
    let (archive, expected) = rootfs_tar_gz();
    let archive = scratch.write("rootfs.tar.gz", &archive);

    let stored = client.import("rootfs.flist", &archive).await.unwrap();
    assert!(stored.new_chunks >= 3, "{stored:?}");
    assert_eq!(stored.flist.name, "rootfs.flist");
    let flist = hub.get_ok(&stored.flist.path).await;
    assert_eq!(blake3::hash(&flist).to_hex().as_str(), stored.flist.hash);
    assert_eq!(scratch.unpack("rootfs", &flist, &hub.chunks()), expected);

    // Importing the same archive again stores no new chunk and gives the same flist.
    let again = client.import("again.flist", &archive).await.unwrap();
    assert_eq!((again.new_chunks, again.flist.hash.as_str()), (0, stored.flist.hash.as_str()));

    let garbage = scratch.write("garbage.tar.gz", b"this is not an archive at all, just some words");
    let (status, message) = refusal(client.import("garbage.flist", &garbage).await);
    assert_eq!(status, 422, "{message}");
    assert!(message.contains("cannot import the archive"), "{message}");
    let names: Vec<_> = client.list(&me).await.unwrap().into_iter().map(|f| f.name).collect();
    assert_eq!(names, ["again.flist", "rootfs.flist"]);
    let leftovers: Vec<_> = std::fs::read_dir(scratch.data().join("tmp")).unwrap().collect();
    assert!(leftovers.is_empty(), "uploads are not left in the spool: {leftovers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_later_source_wins() {
    let scratch = Scratch::new();
    let hub = TestHub::start(&scratch.data()).await;
    let owner = key(1);
    let me = owner.public().to_string();
    let client = hub.signed(&owner);
    let base = scratch.pack("base.flist", &[("a.txt", b"only in base"), ("etc/shared", b"from base")]);
    let top = scratch.pack("top.flist", &[("b.txt", b"only in top"), ("etc/shared", b"from top")]);
    push(&client, &scratch.local, "base.flist", &base).await;
    push(&client, &scratch.local, "top.flist", &top).await;

    for (name, order, shared) in
        [("merged.flist", ["base", "top"], "from top"), ("reversed.flist", ["top", "base"], "from base")]
    {
        let sources = order.iter().map(|s| format!("{me}/{s}.flist")).collect();
        let stored = client.merge(name, sources).await.unwrap();
        let flist = hub.get_ok(&stored.flist.path).await;
        let tree = scratch.unpack(name, &flist, &hub.chunks());
        let files: Vec<_> =
            tree.iter().filter_map(|(path, what)| Some((path.as_str(), file_contents(what)?))).collect();
        assert_eq!(files, [("a.txt", "only in base"), ("b.txt", "only in top"), ("etc/shared", shared)], "{name}");
    }

    let (status, message) =
        refusal(client.merge("bad.flist", vec![format!("{me}/base.flist"), format!("{me}/nope.flist")]).await);
    assert_eq!(status, 404, "{message}");
    assert!(message.contains("nope.flist"), "{message}");
    assert_eq!(hub.get(&format!("/api/v1/flists/{me}/bad.flist")).await.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_hub_serves_everything() {
    let scratch = Scratch::new();
    let owner = key(1);
    let me = owner.public().to_string();
    let flist = scratch.pack("app.flist", &[("app", &bytes("app", 4000)), ("lib", &bytes("lib", 9000))]);
    let ids = chunk_ids(&flist);

    let hub = TestHub::start(&scratch.data()).await;
    let stored = push(&hub.signed(&owner), &scratch.local, "app.flist", &flist).await;
    hub.stop().await;

    let hub = TestHub::start(&scratch.data()).await;
    let client = hub.signed(&owner);
    assert_eq!(client.repositories().await.unwrap(), vec![Repository { owner: me.clone(), flists: 1 }]);
    assert_eq!(client.list(&me).await.unwrap(), vec![stored.flist.clone()]);
    let bytes = std::fs::read(&flist).unwrap();
    assert_eq!(hub.get_ok(&format!("/flists/{me}/app.flist")).await, bytes);
    assert_eq!(hub.get_ok(&format!("/objects/{}.flist", stored.flist.hash)).await, bytes);
    assert_eq!(client.missing(&ids).await.unwrap(), Vec::<String>::new());
    for id in &ids {
        assert_eq!(hub.get_ok(&format!("/chunks/{id}")).await, scratch.local.get(&hash_of(id)).unwrap());
    }
    // And it takes new writes.
    client.put_flist("copy.flist", &flist).await.unwrap();
    assert_eq!(client.list(&me).await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_left_by_a_crash_do_not_break_the_restarted_hub() {
    let scratch = Scratch::new();
    let owner = key(1);
    let me = owner.public().to_string();
    let flist = scratch.pack("app.flist", &[("app", &bytes("app", 4000))]);

    let hub = TestHub::start(&scratch.data()).await;
    let stored = push(&hub.signed(&owner), &scratch.local, "app.flist", &flist).await;
    hub.stop().await;

    // What a crash mid-write leaves: a name record, a chunk and an upload, each half written
    // aside under a temporary name.
    let data = scratch.data();
    std::fs::write(data.join("names").join(&me).join(".tmpAb12Cd"), b"{\"owner\": \"").unwrap();
    let stranger = key(2).public().to_string();
    std::fs::create_dir_all(data.join("names").join(&stranger)).unwrap();
    std::fs::write(data.join("names").join(&stranger).join(".tmpXy34Zw"), b"").unwrap();
    let id = &chunk_ids(&flist)[0];
    std::fs::write(data.join("chunks").join(&id[..2]).join(".tmpQq56Rr"), b"half a chunk").unwrap();
    std::fs::write(data.join("tmp").join(".tmpUp78Ld"), b"half an upload").unwrap();

    let hub = TestHub::start(&data).await;
    let client = hub.client();
    assert_eq!(client.repositories().await.unwrap(), vec![Repository { owner: me.clone(), flists: 1 }]);
    assert_eq!(client.list(&me).await.unwrap(), vec![stored.flist]);
    assert_eq!(client.list(&stranger).await.unwrap(), Vec::<FlistInfo>::new());
    assert_eq!(hub.get_ok(&format!("/flists/{me}/app.flist")).await, std::fs::read(&flist).unwrap());
    assert!(std::fs::read_dir(data.join("tmp")).unwrap().next().is_none(), "spooled uploads are cleared");
}
