//! Test archives: tar entries of every kind (paths written exactly as given, so tests can build
//! hostile archives too), OCI image layouts and `docker save` archives. Include it with
//! `#[path = ".../tests/common/oci.rs"] mod oci;`; it needs `tar`, `flate2`, `sha2` and
//! `serde_json`.
#![allow(dead_code)] // shared by test binaries that each use a part

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// What a tar entry is.
#[derive(Debug, Clone)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file and its contents.
    File(Vec<u8>),
    /// A symlink and its target.
    Symlink(String),
    /// A hardlink to an earlier entry's path.
    Hardlink(String),
    /// A character device: major, minor.
    Char(u32, u32),
    /// A fifo.
    Fifo,
}

/// One tar entry. The path and link target are written as given, at most 100 bytes each.
#[derive(Debug, Clone)]
pub struct TarEntry {
    pub path: String,
    pub kind: Kind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    /// PAX records written before the entry (`mtime`, `SCHILY.xattr.NAME`, …).
    pub pax: Vec<(String, Vec<u8>)>,
}

impl TarEntry {
    fn new(path: &str, kind: Kind, mode: u32) -> Self {
        Self { path: path.into(), kind, mode, uid: 0, gid: 0, mtime: 1_700_000_000, pax: Vec::new() }
    }

    pub fn dir(path: &str) -> Self {
        Self::new(path, Kind::Dir, 0o755)
    }

    pub fn file(path: &str, data: impl Into<Vec<u8>>) -> Self {
        Self::new(path, Kind::File(data.into()), 0o644)
    }

    pub fn symlink(path: &str, target: &str) -> Self {
        Self::new(path, Kind::Symlink(target.into()), 0o777)
    }

    pub fn hardlink(path: &str, target: &str) -> Self {
        Self::new(path, Kind::Hardlink(target.into()), 0o644)
    }

    pub fn char_device(path: &str, major: u32, minor: u32) -> Self {
        Self::new(path, Kind::Char(major, minor), 0o666)
    }

    pub fn fifo(path: &str) -> Self {
        Self::new(path, Kind::Fifo, 0o644)
    }

    /// The whiteout that hides `path` of the layers below.
    pub fn whiteout(path: &str) -> Self {
        match path.rsplit_once('/') {
            Some((dir, name)) => Self::file(&format!("{dir}/.wh.{name}"), ""),
            None => Self::file(&format!(".wh.{path}"), ""),
        }
    }

    /// The marker that hides everything the layers below have in directory `dir`.
    pub fn opaque(dir: &str) -> Self {
        Self::file(&format!("{dir}/.wh..wh..opq"), "")
    }

    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    pub fn owner(mut self, uid: u64, gid: u64) -> Self {
        (self.uid, self.gid) = (uid, gid);
        self
    }

    pub fn mtime(mut self, secs: u64) -> Self {
        self.mtime = secs;
        self
    }

    pub fn pax(mut self, key: &str, value: impl Into<Vec<u8>>) -> Self {
        self.pax.push((key.into(), value.into()));
        self
    }

    /// An extended attribute, as a `SCHILY.xattr.` PAX record.
    pub fn xattr(self, name: &str, value: impl Into<Vec<u8>>) -> Self {
        self.pax(&format!("SCHILY.xattr.{name}"), value)
    }
}

/// A tar of `entries`, in order.
pub fn tar(entries: &[TarEntry]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for e in entries {
        builder.append_pax_extensions(e.pax.iter().map(|(k, v)| (k.as_str(), v.as_slice()))).unwrap();
        let mut header = tar::Header::new_gnu();
        header.set_mode(e.mode);
        header.set_uid(e.uid);
        header.set_gid(e.gid);
        header.set_mtime(e.mtime);
        let (kind, data, link): (_, &[u8], _) = match &e.kind {
            Kind::Dir => (tar::EntryType::Directory, b"", None),
            Kind::File(data) => (tar::EntryType::Regular, data, None),
            Kind::Symlink(target) => (tar::EntryType::Symlink, b"", Some(target)),
            Kind::Hardlink(target) => (tar::EntryType::Link, b"", Some(target)),
            Kind::Char(major, minor) => {
                header.set_device_major(*major).unwrap();
                header.set_device_minor(*minor).unwrap();
                (tar::EntryType::Char, b"", None)
            }
            Kind::Fifo => (tar::EntryType::Fifo, b"", None),
        };
        header.set_entry_type(kind);
        header.set_size(data.len() as u64);
        if let Some(target) = link {
            header.set_link_name_literal(target).unwrap();
        }
        let name = &mut header.as_old_mut().name;
        assert!(e.path.len() <= name.len(), "test tar paths are at most 100 bytes: {}", e.path);
        name[..e.path.len()].copy_from_slice(e.path.as_bytes());
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }
    builder.into_inner().unwrap()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// sha256 of `data`, hex.
pub fn sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Where blob `digest` (`sha256:…`) of the OCI layout in `dir` is.
pub fn blob_path(dir: &Path, digest: &str) -> PathBuf {
    dir.join("blobs/sha256").join(digest.strip_prefix("sha256:").unwrap())
}

/// Store `data` as a blob of the OCI layout in `dir`; its digest.
pub fn put_blob(dir: &Path, data: &[u8]) -> String {
    let digest = format!("sha256:{}", sha256(data));
    let path = blob_path(dir, &digest);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
    digest
}

/// An image config file: `config` (with its `config` section: `Entrypoint`, `Env`, …) completed
/// with linux/amd64 and the layers' digests (of their uncompressed tars).
fn image_config(mut config: Value, tars: &[Vec<u8>]) -> Vec<u8> {
    let diff_ids: Vec<String> = tars.iter().map(|t| format!("sha256:{}", sha256(t))).collect();
    config["architecture"] = json!("amd64");
    config["os"] = json!("linux");
    config["rootfs"] = json!({ "type": "layers", "diff_ids": diff_ids });
    serde_json::to_vec(&config).unwrap()
}

/// The digests of an OCI layout's blobs.
pub struct OciLayout {
    pub manifest: String,
    pub config: String,
    /// Bottom first.
    pub layers: Vec<String>,
}

/// Write an OCI image layout into `dir`: `layers` (bottom first) as gzip tars, image config
/// `config` (see [`image_config`]), a manifest and `index.json` naming it as linux/amd64.
pub fn write_oci_layout(dir: &Path, layers: &[Vec<TarEntry>], config: Value) -> OciLayout {
    let tars: Vec<Vec<u8>> = layers.iter().map(|l| tar(l)).collect();
    let config_blob = image_config(config, &tars);
    let config = put_blob(dir, &config_blob);
    let mut descriptors = Vec::new();
    let mut digests = Vec::new();
    for t in &tars {
        let blob = gzip(t);
        let digest = put_blob(dir, &blob);
        descriptors.push(json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest, "size": blob.len(),
        }));
        digests.push(digest);
    }
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": config_blob.len() },
        "layers": descriptors,
    }))
    .unwrap();
    let manifest_digest = put_blob(dir, &manifest);
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest, "size": manifest.len(),
            "platform": { "architecture": "amd64", "os": "linux" },
        }],
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    OciLayout { manifest: manifest_digest, config, layers: digests }
}

/// Write a `docker save` archive (the format before docker 25: `manifest.json`, `<id>.json`,
/// `<layer id>/layer.tar`, a layer that repeats an earlier one a symlink to it) to `path`.
pub fn write_docker_save(path: &Path, layers: &[Vec<TarEntry>], config: Value) {
    let tars: Vec<Vec<u8>> = layers.iter().map(|l| tar(l)).collect();
    let config_blob = image_config(config, &tars);
    let config_name = format!("{}.json", sha256(&config_blob));
    let mut builder = tar::Builder::new(Vec::new());
    let mut first: HashMap<String, String> = HashMap::new();
    let mut names = Vec::new();
    for (i, t) in tars.iter().enumerate() {
        let diff_id = sha256(t);
        let id = sha256(format!("{i}:{diff_id}").as_bytes());
        let name = format!("{id}/layer.tar");
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        match first.get(&diff_id) {
            Some(earlier) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                builder.append_link(&mut header, &name, format!("../{earlier}")).unwrap();
            }
            None => {
                header.set_size(t.len() as u64);
                builder.append_data(&mut header, &name, t.as_slice()).unwrap();
                first.insert(diff_id, name.clone());
            }
        }
        names.push(name);
    }
    let manifest = json!([{ "Config": config_name, "RepoTags": ["zgrid/test:latest"], "Layers": names }]);
    for (name, data) in [(config_name, config_blob), ("manifest.json".into(), serde_json::to_vec(&manifest).unwrap())] {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        header.set_size(data.len() as u64);
        builder.append_data(&mut header, name, data.as_slice()).unwrap();
    }
    std::fs::write(path, builder.into_inner().unwrap()).unwrap();
}

/// A tar of the files under `dir` (as `docker save` or `tar -C dir .` would make of a layout).
pub fn tar_dir(dir: &Path) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.append_dir_all(".", dir).unwrap();
    builder.into_inner().unwrap()
}
