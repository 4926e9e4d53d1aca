//! Importing archives and images into flists: a root filesystem tar keeps every attribute
//! (checked after unpacking, as root); an OCI layout's layers apply with whiteouts, opaque
//! directories, overrides and hardlinks, and give the same flist from a directory, a tar or a
//! tar.gz; `docker save` archives (old and new formats) import; tampered blobs and `..` paths are
//! refused.

#[path = "common/oci.rs"]
mod oci;
#[path = "common/scratch.rs"]
mod scratch;

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use oci::TarEntry;
use scratch::Scratch;
use serde_json::json;
use zgrid_flist::{Flist, ImageConfig, import, resolve, unpack};

impl Scratch {
    /// Write `data` to `name` in the directory; its path.
    fn write(&self, name: &str, data: &[u8]) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, data).unwrap();
        path
    }

    /// Why importing `source` fails.
    fn import_err(&self, source: &Path) -> String {
        let out = self.path("refused.flist");
        let err = import(source, &self.store, &out).expect_err("the import should fail").to_string();
        assert!(!out.exists(), "no flist is written when an import fails");
        err
    }

    /// The contents of `path` in `flist`.
    fn read(&self, flist: &Flist, path: &str) -> String {
        let mut out = Vec::new();
        zgrid_flist::copy_file(flist, &self.store, resolve(flist, path).unwrap(), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }
}

/// Every path in `flist`, with what it is: `d` directory, `f` file, `l` symlink, `o` other.
fn paths(flist: &Flist) -> BTreeMap<String, char> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![(1, String::new())];
    while let Some((dir, prefix)) = dirs.pop() {
        for (name, ino) in flist.entries(dir).unwrap() {
            let path = format!("{prefix}{}", String::from_utf8(name).unwrap());
            let kind = match flist.inode(ino).unwrap().unwrap().mode & 0o170000 {
                0o040000 => 'd',
                0o100000 => 'f',
                0o120000 => 'l',
                _ => 'o',
            };
            if kind == 'd' {
                dirs.push((ino, format!("{path}/")));
            }
            out.insert(path, kind);
        }
    }
    out
}

fn expect_paths(flist: &Flist, expected: &[(&str, char)]) {
    let expected: BTreeMap<String, char> = expected.iter().map(|(p, k)| (p.to_string(), *k)).collect();
    assert_eq!(paths(flist), expected);
}

fn big_file() -> Vec<u8> {
    (0..(5u32 << 19)).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()
}

fn rootfs_entries(config: &ImageConfig) -> Vec<TarEntry> {
    vec![
        TarEntry::dir("./").mode(0o711).mtime(1_500_000_000),
        TarEntry::dir("./etc/").mode(0o750).owner(10, 20).mtime(1_400_000_000),
        TarEntry::file("./etc/app.conf", "key = value\n")
            .mode(0o4751)
            .owner(1234, 5678)
            .pax("mtime", "1600000000.123456789")
            .xattr("user.origin", "zgrid test")
            .xattr("trusted.note", b"\x00\x01binary".to_vec()),
        TarEntry::hardlink("./etc/app-again.conf", "./etc/app.conf"),
        TarEntry::symlink("/bin/sh", "/bin/busybox").owner(42, 43).mtime(1_300_000_000),
        TarEntry::file("bin/big", big_file()).mode(0o755),
        TarEntry::char_device("dev/null", 1, 3),
        TarEntry::fifo("dev/pipe").mode(0o640),
        TarEntry::file(".zgrid/config.json", serde_json::to_vec(config).unwrap()),
    ]
}

#[test]
fn a_gzip_root_filesystem_tar_keeps_every_attribute() {
    let s = Scratch::new();
    let config = ImageConfig { entrypoint: vec!["/bin/sh".into()], env: vec!["A=1".into()], ..Default::default() };
    let entries = rootfs_entries(&config);
    let source = s.write("rootfs.tar.gz", &oci::gzip(&oci::tar(&entries)));
    let out = s.path("rootfs.flist");
    let summary = import(&source, &s.store, &out).unwrap();
    let config_len = serde_json::to_vec(&config).unwrap().len() as u64;
    assert_eq!(summary.bytes, 12 + (5 << 19) + config_len, "the hardlinked file counts once");
    let flist = Flist::open(&out).unwrap();
    let big_chunks = flist.chunks(zgrid_flist::resolve(&flist, "/bin/big").unwrap()).unwrap().len() as u64;
    assert_eq!((summary.inodes, summary.chunks), (11, big_chunks + 2), "the big file, the conf and the config");
    assert_eq!(flist.config().unwrap(), config, "the tree's own .zgrid/config.json is the config");

    let dest = s.path("dest");
    unpack(&flist, &s.store, &dest).unwrap();
    let meta = |p: &str| std::fs::symlink_metadata(dest.join(p)).unwrap();
    let (root, etc, conf, again) = (meta(""), meta("etc"), meta("etc/app.conf"), meta("etc/app-again.conf"));
    assert_eq!((root.mode(), root.mtime()), (0o40711, 1_500_000_000), "the ./ entry is the root");
    assert_eq!((etc.mode(), etc.uid(), etc.gid(), etc.mtime()), (0o40750, 10, 20, 1_400_000_000));
    assert_eq!((conf.mode(), conf.uid(), conf.gid()), (0o104751, 1234, 5678));
    assert_eq!((conf.mtime(), conf.mtime_nsec()), (1_600_000_000, 0), "PAX mtime in whole seconds");
    assert_eq!((conf.nlink(), conf.ino()), (2, again.ino()), "the hardlink shares the inode");
    assert_eq!(std::fs::read_to_string(dest.join("etc/app.conf")).unwrap(), "key = value\n");
    assert_eq!(xattr::get(dest.join("etc/app.conf"), "user.origin").unwrap().unwrap(), b"zgrid test");
    assert_eq!(xattr::get(dest.join("etc/app.conf"), "trusted.note").unwrap().unwrap(), b"\x00\x01binary");
    let sh = meta("bin/sh");
    assert!(sh.file_type().is_symlink());
    assert_eq!(std::fs::read_link(dest.join("bin/sh")).unwrap(), Path::new("/bin/busybox"));
    assert_eq!((sh.uid(), sh.gid(), sh.mtime()), (42, 43, 1_300_000_000));
    assert_eq!(std::fs::read(dest.join("bin/big")).unwrap(), big_file());
    assert_eq!(meta("bin/big").mode(), 0o100755);
    let null = meta("dev/null");
    assert!(null.file_type().is_char_device());
    assert_eq!((null.mode(), null.rdev()), (0o20666, nix::sys::stat::makedev(1, 3)));
    assert!(meta("dev/pipe").file_type().is_fifo());
    assert_eq!(meta("dev/pipe").mode(), 0o10640);
    let dev = meta("dev");
    assert_eq!((dev.mode(), dev.uid(), dev.mtime()), (0o40755, 0, 0), "a directory the tar omits is 0755 root's");
}

#[test]
fn a_root_filesystem_imports_alike_from_tar_gzip_zstd_and_a_directory() {
    let s = Scratch::new();
    let entries = rootfs_entries(&ImageConfig::default());
    let tar = oci::tar(&entries);
    let plain = s.import(&s.write("rootfs.tar", &tar), "plain");
    let gzip = s.import(&s.write("rootfs.tgz", &oci::gzip(&tar)), "gzip");
    let zstd = s.import(&s.write("rootfs.tar.zst", &zstd::encode_all(tar.as_slice(), 3).unwrap()), "zstd");
    let address = zgrid_flist::address(&plain).unwrap();
    assert_eq!(zgrid_flist::address(&gzip).unwrap(), address);
    assert_eq!(zgrid_flist::address(&zstd).unwrap(), address);

    let dest = s.path("dest");
    unpack(&Flist::open(&plain).unwrap(), &s.store, &dest).unwrap();
    let repacked = s.import(&dest, "dir");
    let flist = Flist::open(&repacked).unwrap();
    assert_eq!(paths(&flist), paths(&Flist::open(&plain).unwrap()), "a plain directory is packed");
    assert_eq!(s.read(&flist, "/etc/app-again.conf"), "key = value\n");
}

/// Layer 1, and layer 2 hiding, replacing and adding to it.
fn two_layers() -> Vec<Vec<TarEntry>> {
    let layer1 = vec![
        TarEntry::dir("etc"),
        TarEntry::file("etc/passwd", "root:x:0:0::/root:/bin/sh\n"),
        TarEntry::file("etc/old", "old"),
        TarEntry::dir("opt"),
        TarEntry::file("opt/lower-a", "a"),
        TarEntry::dir("opt/sub"),
        TarEntry::file("opt/sub/lower-b", "b"),
        TarEntry::dir("bin"),
        TarEntry::file("bin/tool", "v1").mode(0o755),
        TarEntry::hardlink("bin/tool-again", "bin/tool"),
        TarEntry::dir("keep"),
        TarEntry::file("keep/x", "x"),
        TarEntry::dir("data").mode(0o700),
        TarEntry::file("data/f", "f"),
        TarEntry::dir("var"),
        TarEntry::file("var/lower", "l"),
    ];
    let layer2 = vec![
        TarEntry::whiteout("etc/old"),
        TarEntry::file("opt/new", "new"),
        TarEntry::dir("opt/sub"),
        TarEntry::file("opt/sub/upper", "u"),
        // After entries of its own layer, which it must not hide.
        TarEntry::opaque("opt"),
        TarEntry::file("bin/tool", "v2").mode(0o700),
        TarEntry::hardlink("bin/tool-v2", "bin/tool"),
        TarEntry::dir("keep").mode(0o750),
        TarEntry::file("keep/y", "y"),
        TarEntry::symlink("data", "/opt"),
        // Whiting out a directory this layer has files in hides only what lower layers put there.
        TarEntry::file("var/upper", "u"),
        TarEntry::whiteout("var"),
    ];
    vec![layer1, layer2]
}

fn image_config() -> serde_json::Value {
    json!({ "config": {
        "Entrypoint": ["/bin/tool"], "Cmd": ["--serve"], "Env": ["PATH=/bin", "A=1"], "WorkingDir": "/opt",
        "Labels": { "ignored": "yes" },
    }})
}

/// What [`two_layers`] and [`image_config`] must give.
fn check_two_layers(s: &Scratch, out: &Path) {
    let flist = Flist::open(out).unwrap();
    expect_paths(
        &flist,
        &[
            ("bin", 'd'),
            ("bin/tool", 'f'),
            ("bin/tool-again", 'f'),
            ("bin/tool-v2", 'f'),
            ("data", 'l'),
            ("etc", 'd'),
            ("etc/passwd", 'f'),
            ("keep", 'd'),
            ("keep/x", 'f'),
            ("keep/y", 'f'),
            ("opt", 'd'),
            ("opt/new", 'f'),
            ("opt/sub", 'd'),
            ("opt/sub/upper", 'f'),
            ("var", 'd'),
            ("var/upper", 'f'),
        ],
    );
    assert_eq!(s.read(&flist, "bin/tool"), "v2", "the upper layer's file wins");
    assert_eq!(s.read(&flist, "bin/tool-again"), "v1", "the old file stays under its other name");
    let inode = |p: &str| flist.inode(resolve(&flist, p).unwrap()).unwrap().unwrap();
    assert_eq!(inode("bin/tool").ino, inode("bin/tool-v2").ino, "a hardlink in the layer shares the inode");
    assert_eq!(flist.links(inode("bin/tool").ino).unwrap(), 2);
    assert_eq!(flist.links(inode("bin/tool-again").ino).unwrap(), 1);
    assert_eq!(inode("bin/tool").mode, 0o100700);
    assert_eq!(inode("keep").mode, 0o40750, "a directory over a directory takes the upper attributes");
    assert_eq!(inode("data").target.as_deref(), Some(&b"/opt"[..]), "a symlink replaces a directory");
    assert_eq!(
        flist.config().unwrap(),
        ImageConfig {
            entrypoint: vec!["/bin/tool".into()],
            cmd: vec!["--serve".into()],
            env: vec!["PATH=/bin".into(), "A=1".into()],
            workdir: "/opt".into(),
        }
    );
}

#[test]
fn an_oci_layout_applies_its_layers_with_whiteouts() {
    let s = Scratch::new();
    let layout = s.path("layout");
    oci::write_oci_layout(&layout, &two_layers(), image_config());
    let out = s.import(&layout, "image");
    check_two_layers(&s, &out);
}

#[test]
fn an_oci_layout_gives_the_same_flist_as_a_directory_a_tar_and_a_tar_gz() {
    let s = Scratch::new();
    let layout = s.path("layout");
    oci::write_oci_layout(&layout, &two_layers(), image_config());
    let tar = oci::tar_dir(&layout);
    let from_dir = s.import(&layout, "dir");
    let from_tar = s.import(&s.write("image.tar", &tar), "tar");
    let from_tgz = s.import(&s.write("image.tar.gz", &oci::gzip(&tar)), "tgz");
    check_two_layers(&s, &from_tgz);
    let address = zgrid_flist::address(&from_dir).unwrap();
    assert_eq!(zgrid_flist::address(&from_tar).unwrap(), address);
    assert_eq!(zgrid_flist::address(&from_tgz).unwrap(), address);
    let again = s.import(&layout, "again");
    assert_eq!(std::fs::read(again).unwrap(), std::fs::read(from_dir).unwrap(), "byte for byte");
}

#[test]
fn an_image_index_gives_its_linux_amd64_image() {
    let s = Scratch::new();
    let layout = s.path("layout");
    let image = oci::write_oci_layout(&layout, &two_layers(), image_config());
    // A multi-platform index whose arm64 manifest is listed first (and is not even there).
    let missing = format!("sha256:{}", "0".repeat(64));
    let index = serde_json::to_vec(&json!({ "schemaVersion": 2, "manifests": [
        { "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": missing, "size": 1,
          "platform": { "architecture": "arm64", "os": "linux" } },
        { "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": image.manifest, "size": 1,
          "platform": { "architecture": "amd64", "os": "linux" } },
    ]}))
    .unwrap();
    let index = oci::put_blob(&layout, &index);
    let top = json!({ "schemaVersion": 2, "manifests": [
        { "mediaType": "application/vnd.oci.image.index.v1+json", "digest": index, "size": 1 },
    ]});
    std::fs::write(layout.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
    check_two_layers(&s, &s.import(&layout, "image"));

    std::fs::remove_file(oci::blob_path(&layout, &image.manifest)).unwrap();
    let err = s.import_err(&layout);
    assert!(err.contains(&format!("has no blobs/sha256/{}", &image.manifest[7..])), "{err}");
}

/// Three layers for `docker save`: the third repeats the first, bringing back what the second hid.
fn docker_layers() -> Vec<Vec<TarEntry>> {
    let first = vec![TarEntry::file("a", "first layer's a"), TarEntry::dir("d"), TarEntry::file("d/x", "x")];
    vec![first.clone(), vec![TarEntry::whiteout("a"), TarEntry::whiteout("d"), TarEntry::file("b", "b")], first]
}

#[test]
fn a_docker_save_archive_imports() {
    let s = Scratch::new();
    let archive = s.path("image.tar");
    oci::write_docker_save(&archive, &docker_layers(), image_config());
    let out = s.import(&archive, "image");
    let flist = Flist::open(&out).unwrap();
    expect_paths(&flist, &[("a", 'f'), ("b", 'f'), ("d", 'd'), ("d/x", 'f')]);
    assert_eq!(s.read(&flist, "a"), "first layer's a");
    assert_eq!(flist.config().unwrap().entrypoint, ["/bin/tool"]);
}

#[test]
fn a_new_docker_save_archive_is_read_by_its_manifest_json() {
    let s = Scratch::new();
    let dir = s.path("saved");
    let layout = oci::write_oci_layout(&dir, &two_layers(), image_config());
    let blob = |digest: &str| format!("blobs/sha256/{}", &digest[7..]);
    let manifest = json!([{
        "Config": blob(&layout.config), "RepoTags": ["zgrid/test:latest"],
        "Layers": layout.layers.iter().map(|d| blob(d)).collect::<Vec<_>>(),
    }]);
    std::fs::write(dir.join("manifest.json"), serde_json::to_vec(&manifest).unwrap()).unwrap();
    // An index that would fail: only manifest.json is used.
    std::fs::write(dir.join("index.json"), br#"{"schemaVersion":2,"manifests":[]}"#).unwrap();
    check_two_layers(&s, &s.import(&dir, "dir"));
    check_two_layers(&s, &s.import(&s.write("saved.tar", &oci::tar_dir(&dir)), "tar"));
}

#[test]
fn a_tampered_blob_is_refused_by_name() {
    let s = Scratch::new();
    let layout = s.path("layout");
    let image = oci::write_oci_layout(&layout, &two_layers(), image_config());
    let layer = oci::blob_path(&layout, &image.layers[1]);
    let mut bytes = std::fs::read(&layer).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&layer, bytes).unwrap();
    let err = s.import_err(&layout);
    let name = format!("layer blobs/sha256/{}", &image.layers[1][7..]);
    assert!(err.contains(&format!("{name} does not match its digest")), "{err}");
    assert!(s.import_err(&s.write("image.tar", &oci::tar_dir(&layout))).contains(&name));

    let config = oci::blob_path(&layout, &image.config);
    std::fs::write(&config, br#"{"config":{"Entrypoint":["/bin/evil"]}}"#).unwrap();
    let err = s.import_err(&layout);
    assert!(err.contains(&format!("config blobs/sha256/{} does not match its digest", &image.config[7..])), "{err}");
}

#[test]
fn a_tampered_docker_save_layer_is_refused() {
    let s = Scratch::new();
    let mut layers = docker_layers();
    layers.truncate(1);
    let archive = s.path("image.tar");
    oci::write_docker_save(&archive, &layers, image_config());
    let mut bytes = std::fs::read(&archive).unwrap();
    let at = bytes.windows(15).position(|w| w == b"first layer's a").unwrap();
    bytes[at] = b'F';
    std::fs::write(&archive, bytes).unwrap();
    let err = s.import_err(&archive);
    assert!(err.contains("/layer.tar does not match its digest"), "{err}");
}

#[test]
fn paths_climbing_out_of_the_root_are_refused() {
    let s = Scratch::new();
    let rootfs = s.write("evil.tar", &oci::tar(&[TarEntry::dir("etc"), TarEntry::file("../etc/passwd", "evil")]));
    let err = s.import_err(&rootfs);
    assert!(err.contains("../etc/passwd leaves the image root"), "{err}");

    let link = s.write("link.tar", &oci::tar(&[TarEntry::hardlink("passwd", "etc/../../etc/passwd")]));
    let err = s.import_err(&link);
    assert!(err.contains("etc/../../etc/passwd leaves the image root"), "{err}");

    let layout = s.path("layout");
    oci::write_oci_layout(&layout, &[vec![TarEntry::file("./a/../../../x", "evil")]], image_config());
    let err = s.import_err(&layout);
    assert!(err.contains("layer blobs/sha256/") && err.contains("leaves the image root"), "{err}");
}
