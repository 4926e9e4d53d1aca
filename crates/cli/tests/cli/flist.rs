//! `zgrid flist`: a busybox root filesystem packed into an flist, read back with `ls`, `cat`,
//! `inspect` and `unpack`, and refused when a chunk was tampered with.

use crate::common::{ZGRID, zgrid_json};

fn flist(args: &[&str]) -> std::process::Output {
    std::process::Command::new(ZGRID).arg("flist").args(args).output().unwrap()
}

#[test]
fn a_root_filesystem_packs_into_an_flist_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let rootfs = zgrid_devnet::busybox_rootfs(dir.path()).unwrap();
    std::fs::create_dir_all(rootfs.join(".zgrid")).unwrap();
    std::fs::write(rootfs.join(".zgrid/config.json"), r#"{"entrypoint": ["/bin/sh"], "env": ["A=b"]}"#).unwrap();
    let (out, store) = (dir.path().join("busybox.flist"), dir.path().join("store"));
    let (out_s, store_s) = (out.to_str().unwrap(), store.to_str().unwrap());
    let home = dir.path().join("home");
    let created = zgrid_json(
        &home,
        "http://127.0.0.1:9",
        &["flist", "create", rootfs.to_str().unwrap(), "-o", out_s, "--store", store_s],
    );
    assert_eq!(created["address"].as_str().unwrap().len(), 64);
    assert!(created["summary"]["new_chunks"].as_u64().unwrap() >= 3, "{created}");

    let inspected = zgrid_json(&home, "http://127.0.0.1:9", &["flist", "inspect", out_s]);
    assert_eq!(inspected["address"], created["address"]);
    assert_eq!(inspected["config"]["entrypoint"], serde_json::json!(["/bin/sh"]));

    let listed = flist(&["ls", out_s, "/bin"]);
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(text.contains("busybox") && text.contains("sh -> busybox"), "{text}");

    let cat = flist(&["cat", out_s, "/bin/busybox", "--store", store_s]);
    assert!(cat.status.success());
    assert_eq!(cat.stdout, std::fs::read("/bin/busybox").unwrap(), "the file reads back byte for byte");

    let dest = dir.path().join("unpacked");
    assert!(flist(&["unpack", out_s, dest.to_str().unwrap(), "--store", store_s]).status.success());
    assert_eq!(std::fs::read(dest.join("bin/busybox")).unwrap(), std::fs::read("/bin/busybox").unwrap());
    assert_eq!(std::fs::read_link(dest.join("bin/sh")).unwrap(), std::path::Path::new("busybox"));
    let again = flist(&["unpack", out_s, dest.to_str().unwrap(), "--store", store_s]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("is not empty"), "unpacking over a tree is refused");

    // A tampered chunk fails the read; nothing of it reaches stdout.
    for shard in std::fs::read_dir(&store).unwrap() {
        for chunk in std::fs::read_dir(shard.unwrap().path()).unwrap() {
            let path = chunk.unwrap().path();
            let mut bytes = std::fs::read(&path).unwrap();
            let middle = bytes.len() / 2;
            bytes[middle] ^= 1;
            std::fs::write(&path, bytes).unwrap();
        }
    }
    let cat = flist(&["cat", out_s, "/bin/busybox", "--store", store_s]);
    assert!(!cat.status.success() && cat.stdout.is_empty());
    assert!(String::from_utf8_lossy(&cat.stderr).contains("corrupt"), "{}", String::from_utf8_lossy(&cat.stderr));
}
