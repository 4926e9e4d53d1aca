//! What a signed upload must be before the hub takes its body, and how much the hub takes at
//! once: a hub served in process on loopback, driven by requests written by hand (a body that
//! never comes, or comes late, or is not what was signed) and through `HubClient`. Covers
//! declared lengths over the limits (refused before the body is sent), bodies that do not match
//! their signature, mis-signed and stale imports and merges, and the limits on concurrent
//! uploads and spooled bytes, per key and in all, refusing and recovering.

mod common;

use std::time::Duration;

use common::raw::{RawAnswer, RawRequest};
use common::{TestHub, bytes, key, sign, signed_headers, until};
use zgrid_hub::{Config, UploadLimits};
use zgrid_types::Keypair;

/// A hub on a fresh data directory, with `limits`.
async fn hub_with(dir: &tempfile::TempDir, uploads: UploadLimits) -> TestHub {
    TestHub::start_with(Config { uploads, ..Config::new(dir.path().join("hub")) }).await
}

/// The answer to a request that sent its head and no body: it must come all the same.
async fn answer_without_body(req: RawRequest) -> RawAnswer {
    tokio::time::timeout(Duration::from_secs(30), req.answer())
        .await
        .expect("the hub answers without waiting for the body")
}

/// A chunk upload of `body` by `key` whose head and first KiB are sent; the rest waits.
async fn hold(hub: &TestHub, key: &Keypair, body: &[u8]) -> RawRequest {
    let hash = blake3::hash(body);
    let path = format!("/api/v1/chunks/{}", hash.to_hex());
    let headers = signed_headers(key, "PUT", &path, body.len() as u64, &hash);
    let mut req = RawRequest::start(&hub.addr, "PUT", &path, body.len() as u64, &headers).await;
    req.send(&body[..1024]).await.expect("send the first KiB");
    req
}

/// Send the rest of a [`hold`] upload and take the answer.
async fn finish(mut req: RawRequest, body: &[u8]) -> RawAnswer {
    req.send(&body[1024..]).await.expect("send the rest");
    req.answer().await
}

/// Upload `body` as a chunk signed by `key`; status and message.
async fn put_chunk(hub: &TestHub, key: &Keypair, body: &[u8]) -> (u16, String) {
    let path = format!("/api/v1/chunks/{}", blake3::hash(body).to_hex());
    let auth = sign(key, "PUT", &path, zgrid_types::unix_now(), body);
    hub.send("PUT", &path, Some(&auth), body.to_vec()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_length_over_the_limit_is_refused_before_the_body_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub_with(&dir, UploadLimits::default()).await;
    let owner = key(1);
    let ns = owner.public();
    let config = Config::new("");
    let hash = blake3::hash(b"never sent");
    for (method, path, limit) in [
        ("PUT", format!("/api/v1/chunks/{}", hash.to_hex()), config.max_chunk_bytes as u64),
        ("PUT", format!("/api/v1/flists/{ns}/big.flist"), config.max_flist_bytes),
        ("POST", format!("/api/v1/flists/{ns}/big.flist/import"), config.max_import_bytes),
        ("POST", format!("/api/v1/flists/{ns}/big.flist/merge"), 1 << 20),
    ] {
        let len = limit + 1;
        let headers = signed_headers(&owner, method, &path, len, &hash);
        let answer = answer_without_body(RawRequest::start(&hub.addr, method, &path, len, &headers).await).await;
        assert_eq!(answer.status, 413, "{method} {path}: {answer:?}");
        assert!(
            answer.body.contains(&format!("({len} bytes) is larger than this hub's limit of {limit} bytes")),
            "{answer:?}"
        );
    }
    // Unsigned, a stranger learns no more than that it must sign.
    let path = format!("/api/v1/flists/{ns}/big.flist/import");
    let answer = answer_without_body(RawRequest::start(&hub.addr, "POST", &path, 1 << 40, &[]).await).await;
    assert_eq!(answer.status, 401, "{answer:?}");
    assert!(hub.spooled().is_empty(), "nothing spooled: {:?}", hub.spooled());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_is_not_what_was_signed_is_refused_and_not_kept() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub_with(&dir, UploadLimits::default()).await;
    let owner = key(1);
    let good = bytes("good", 200_000);
    let hash = blake3::hash(&good);
    let id = hash.to_hex().to_string();
    let path = format!("/api/v1/chunks/{id}");

    // Signed for `good`, sends other bytes of the same length.
    let mut other = good.clone();
    other[150_000] ^= 1;
    let headers = signed_headers(&owner, "PUT", &path, good.len() as u64, &hash);
    let mut req = RawRequest::start(&hub.addr, "PUT", &path, good.len() as u64, &headers).await;
    req.send(&other).await.unwrap();
    let answer = req.answer().await;
    assert_eq!(answer.status, 400, "{answer:?}");
    assert!(answer.body.contains("does not match the hash it was signed with"), "{answer:?}");
    assert!(!hub.chunks().has(hash.as_bytes()));
    until("the refused upload leaves the spool", || hub.spooled().is_empty()).await;

    // Sends more than it declared: the hub takes the declared length and no more.
    let headers = signed_headers(&owner, "PUT", &path, good.len() as u64, &hash);
    let mut req = RawRequest::start(&hub.addr, "PUT", &path, good.len() as u64, &headers).await;
    req.send(&[good.as_slice(), &[7u8; 50_000]].concat()).await.unwrap();
    let answer = req.answer().await;
    assert_eq!(answer.status, 201, "{answer:?}");
    assert_eq!(hub.get_ok(&format!("/chunks/{id}")).await, good);

    // No declared length (chunked): the signature could not cover it.
    let auth = sign(&owner, "PUT", &path, zgrid_types::unix_now(), &good);
    let resp = reqwest::Client::new()
        .put(format!("{}{path}", hub.url))
        .header("authorization", auth)
        .header(zgrid_types::auth::CONTENT_HASH_HEADER, id.as_str())
        .body(reqwest::Body::wrap_stream(futures::stream::iter([Ok::<_, std::io::Error>(good.clone())])))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 411);
    assert!(resp.text().await.unwrap().contains("Content-Length"));

    // No declared hash.
    let (status, message) = hub
        .send_declaring(
            "PUT",
            &path,
            Some(&sign(&owner, "PUT", &path, zgrid_types::unix_now(), &good)),
            "",
            good.clone(),
        )
        .await;
    assert_eq!(status, 400, "{message}");
    assert!(message.contains("x-zgrid-content-hash"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mis_signed_or_stale_imports_and_merges_are_refused_before_the_body() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub_with(&dir, UploadLimits::default()).await;
    let owner = key(1);
    let ns = owner.public().to_string();
    let import = format!("/api/v1/flists/{ns}/app.flist/import");
    let merge = format!("/api/v1/flists/{ns}/app.flist/merge");
    let archive = bytes("archive", 300_000);
    let sources =
        serde_json::to_vec(&serde_json::json!({"sources": [format!("{ns}/a.flist"), format!("{ns}/b.flist")]}))
            .unwrap();
    let now = zgrid_types::unix_now();
    for (path, body) in [(&import, &archive), (&merge, &sources)] {
        let cases = [
            ("signed over other bytes", sign(&owner, "POST", path, now, b"other bytes"), "does not verify"),
            (
                "signed by another key",
                sign(&key(2), "POST", path, now, body).replace(&key(2).public().to_string(), &ns),
                "does not verify",
            ),
            ("signed an hour ago", sign(&owner, "POST", path, now - 3600, body), "check the clock"),
            ("signed an hour ahead", sign(&owner, "POST", path, now + 3600, body), "check the clock"),
        ];
        for (case, auth, why) in cases {
            let (status, message) = hub.send("POST", path, Some(&auth), body.clone()).await;
            assert_eq!(status, 401, "{path} {case}: {message}");
            assert!(message.contains(why), "{path} {case}: {message}");
        }
        // Well signed, but the body is not the one signed.
        let mut swapped = body.clone();
        swapped[10] ^= 1;
        let hash = blake3::hash(body).to_hex().to_string();
        let auth = sign(&owner, "POST", path, now, body);
        let (status, message) = hub.send_declaring("POST", path, Some(&auth), &hash, swapped).await;
        assert_eq!(status, 400, "{path}: {message}");
        assert!(message.contains("does not match the hash it was signed with"), "{message}");
    }
    assert_eq!(hub.get(&format!("/api/v1/flists/{ns}/app.flist")).await.status(), 404);
    until("refused uploads leave the spool", || hub.spooled().is_empty()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_uploads_over_the_limits_wait_their_turn() {
    let dir = tempfile::tempdir().unwrap();
    let limits = UploadLimits { uploads: 3, uploads_per_key: 2, ..UploadLimits::default() };
    let hub = hub_with(&dir, limits).await;
    let (alice, bob, carol) = (key(1), key(2), key(3));
    let (a1, a2, b1) = (bytes("a1", 100_000), bytes("a2", 100_000), bytes("b1", 100_000));

    let held_a1 = hold(&hub, &alice, &a1).await;
    let held_a2 = hold(&hub, &alice, &a2).await;
    until("Alice's two uploads are being received", || hub.spooled().len() == 2).await;
    let (status, message) = put_chunk(&hub, &alice, &bytes("a3", 1000)).await;
    assert_eq!(status, 429, "{message}");
    assert!(
        message.contains("you have 2 uploads in progress, this hub's limit of concurrent uploads per key"),
        "{message}"
    );

    let held_b1 = hold(&hub, &bob, &b1).await;
    until("three uploads are being received", || hub.spooled().len() == 3).await;
    let carols = bytes("c1", 1000);
    let (status, message) = put_chunk(&hub, &carol, &carols).await;
    assert_eq!(status, 503, "{message}");
    assert!(message.contains("this hub is receiving 3 uploads, its limit of concurrent uploads"), "{message}");

    // One finishes: Carol's goes through; one's client goes away: Alice may send again.
    assert_eq!(finish(held_a1, &a1).await.status, 201);
    assert_eq!(put_chunk(&hub, &carol, &carols).await.0, 201);
    drop(held_a2);
    until("the abandoned upload leaves the spool", || hub.spooled().len() == 1).await;
    assert_eq!(put_chunk(&hub, &alice, &bytes("a3", 1000)).await.0, 201);
    let held_a4 = hold(&hub, &alice, &a2).await;
    assert_eq!(finish(held_b1, &b1).await.status, 201);
    assert_eq!(finish(held_a4, &a2).await.status, 201);
    for chunk in [&a1, &a2, &b1, &carols] {
        assert!(hub.chunks().has(blake3::hash(chunk).as_bytes()));
    }
    assert!(hub.spooled().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spooled_bytes_over_the_limits_wait_their_turn() {
    let dir = tempfile::tempdir().unwrap();
    let limits = UploadLimits { bytes: 250_000, bytes_per_key: 150_000, ..UploadLimits::default() };
    let hub = hub_with(&dir, limits).await;
    let (alice, bob, carol) = (key(1), key(2), key(3));
    let (a1, b1, c1) = (bytes("a1", 100_000), bytes("b1", 100_000), bytes("c1", 100_000));

    let held_a1 = hold(&hub, &alice, &a1).await;
    until("Alice's upload is being received", || hub.spooled().len() == 1).await;
    let (status, message) = put_chunk(&hub, &alice, &bytes("a2", 100_000)).await;
    assert_eq!(status, 429, "{message}");
    assert!(
        message.contains(
            "would hold 200000 bytes with this one (100000), more than this hub's limit of 150000 bytes per key"
        ),
        "{message}"
    );
    assert_eq!(put_chunk(&hub, &alice, &bytes("a3", 40_000)).await.0, 201, "what fits is taken");

    let held_b1 = hold(&hub, &bob, &b1).await;
    until("two uploads are being received", || hub.spooled().len() == 2).await;
    let (status, message) = put_chunk(&hub, &carol, &c1).await;
    assert_eq!(status, 503, "{message}");
    assert!(
        message.contains("would hold 300000 bytes with this one (100000), more than its limit of 250000 bytes in all"),
        "{message}"
    );

    assert_eq!(finish(held_b1, &b1).await.status, 201);
    assert_eq!(put_chunk(&hub, &carol, &c1).await.0, 201);
    drop(held_a1);
    until("the abandoned upload leaves the spool", || hub.spooled().is_empty()).await;
    assert_eq!(put_chunk(&hub, &alice, &bytes("a4", 140_000)).await.0, 201);
}
