//! Container images among an archive's members: a `docker save` archive (`manifest.json`) or an
//! OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/…`). Finds the image (linux/amd64
//! when an index offers several), reads its config and lists its layers bottom first, each with
//! the sha256 digest it must have. Every blob is checked against its digest before it is used.

use std::io::Read;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::archive::{Members, decompress, member};
use super::{ImportError, read_err};
use crate::meta::ImageConfig;

/// The most bytes of JSON (an index, a manifest, a config) read into memory.
const JSON_LIMIT: u64 = 16 << 20;
/// How deeply image indexes may nest.
const MAX_NESTING: usize = 4;

/// An image: what runs, and its layers, bottom first.
pub(super) struct Image {
    /// Entrypoint, command, environment and working directory.
    pub config: ImageConfig,
    /// The layers to apply, in order.
    pub layers: Vec<Layer>,
}

/// One layer of an image.
pub(super) struct Layer {
    /// The member holding it.
    pub name: String,
    /// The sha256 it must have, hex.
    sha256: String,
    /// Whether that is the digest of the decompressed tar (docker's diff ids), not the member's.
    of_tar: bool,
}

impl Layer {
    /// How errors name the layer.
    pub(super) fn what(&self) -> String {
        format!("layer {}", self.name)
    }

    /// Check the layer against its digest (reading it once, without keeping it).
    pub(super) fn verify(&self, members: &dyn Members) -> Result<(), ImportError> {
        let what = self.what();
        let mut reader = members.open(&self.name)?;
        if self.of_tar {
            reader = decompress(reader).map_err(read_err(&what))?;
        }
        let mut hasher = Sha256::new();
        std::io::copy(&mut reader, &mut hasher).map_err(read_err(&what))?;
        check(&hasher.finalize(), &self.sha256, &what)
    }
}

/// The image `members` hold, if they hold one (`manifest.json` is preferred when an archive has
/// both, as newer `docker save` writes).
pub(super) fn find(members: &dyn Members) -> Result<Option<Image>, ImportError> {
    if members.has("manifest.json")
        && let Ok(images @ serde_json::Value::Array(_)) = serde_json::from_slice(&read(members, "manifest.json")?)
    {
        return docker(members, images).map(Some);
    }
    if members.has("oci-layout") {
        return oci(members).map(Some);
    }
    Ok(None)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerImage {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// The image described by `docker save`'s `manifest.json` (holding `images`).
fn docker(members: &dyn Members, images: serde_json::Value) -> Result<Image, ImportError> {
    let name = "manifest.json";
    let images: Vec<DockerImage> = serde_json::from_value(images).map_err(|e| invalid(name, e))?;
    let [image] = images.as_slice() else {
        let tags: Vec<String> = images.iter().flat_map(|i| i.repo_tags.clone().unwrap_or_default()).collect();
        return Err(bad(
            name,
            format!("lists {} images ({}); `docker save` one image at a time", images.len(), tags.join(", ")),
        ));
    };
    let outside = |path: &str| bad(name, format!("names {path}, which is outside the archive"));
    let config_name = member(image.config.as_bytes()).ok_or_else(|| outside(&image.config))?;
    // The config is named by its digest: `<hex>.json` (older docker) or `blobs/sha256/<hex>`.
    let stem = config_name.rsplit('/').next().unwrap_or_default();
    let digest = format!("sha256:{}", stem.strip_suffix(".json").unwrap_or(stem));
    let sha = sha256_hex(&digest, &config_name)?;
    let config: ConfigFile = parse(&config_name, read_checked(members, &config_name, sha, "config")?)?;
    let diff_ids = config.rootfs.unwrap_or_default().diff_ids;
    if diff_ids.len() != image.layers.len() {
        return Err(bad(
            &config_name,
            format!(
                "lists {} layer digests for {} layers; the archive is damaged, export it again",
                diff_ids.len(),
                image.layers.len()
            ),
        ));
    }
    let layers = image
        .layers
        .iter()
        .zip(&diff_ids)
        .map(|(path, digest)| {
            let name = member(path.as_bytes()).ok_or_else(|| outside(path))?;
            Ok(Layer { sha256: sha256_hex(digest, &name)?.to_owned(), name, of_tar: true })
        })
        .collect::<Result<_, ImportError>>()?;
    Ok(Image { config: config.config.unwrap_or_default().into(), layers })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    #[serde(default)]
    media_type: String,
    digest: String,
    platform: Option<Platform>,
}

#[derive(Debug, Deserialize)]
struct Platform {
    architecture: String,
    os: String,
}

/// An image index or an image manifest (which one shows by which fields it has).
#[derive(Deserialize)]
struct IndexOrManifest {
    manifests: Option<Vec<Descriptor>>,
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

/// The image of an OCI image layout: `index.json`, through nested indexes, to one manifest.
fn oci(members: &dyn Members) -> Result<Image, ImportError> {
    let mut name = String::from("index.json");
    let mut doc: IndexOrManifest = parse(&name, read(members, &name)?)?;
    let mut depth = 0;
    let (config, layers) = loop {
        match doc {
            IndexOrManifest { manifests: Some(list), .. } if depth < MAX_NESTING => {
                let chosen = choose(&list, &name)?;
                let sha = sha256_hex(&chosen.digest, &name)?;
                name = format!("blobs/sha256/{sha}");
                doc = parse(&name, read_checked(members, &name, sha, "manifest")?)?;
                depth += 1;
            }
            IndexOrManifest { manifests: None, config: Some(config), layers } if depth > 0 => break (config, layers),
            _ => {
                return Err(bad(
                    &name,
                    "is not an image index or manifest zgrid can read; export the image again".into(),
                ));
            }
        }
    };
    let sha = sha256_hex(&config.digest, &name)?;
    let config_name = format!("blobs/sha256/{sha}");
    let config: ConfigFile = parse(&config_name, read_checked(members, &config_name, sha, "config")?)?;
    let layers = layers
        .iter()
        .map(|d| {
            let sha = sha256_hex(&d.digest, &name)?;
            let name = format!("blobs/sha256/{sha}");
            if !is_tar_layer(&d.media_type) {
                let reason =
                    format!("has media type {:?}; zgrid imports tar layers (plain, gzip or zstd)", d.media_type);
                return Err(bad(&format!("layer {name}"), reason));
            }
            Ok(Layer { sha256: sha.to_owned(), name, of_tar: false })
        })
        .collect::<Result<_, _>>()?;
    Ok(Image { config: config.config.unwrap_or_default().into(), layers })
}

/// The image to take from an index's `list`: linux/amd64, else the first without a platform.
fn choose<'a>(list: &'a [Descriptor], name: &str) -> Result<&'a Descriptor, ImportError> {
    let amd64 = |d: &&Descriptor| d.platform.as_ref().is_some_and(|p| p.os == "linux" && p.architecture == "amd64");
    list.iter().find(amd64).or_else(|| list.iter().find(|d| d.platform.is_none())).ok_or_else(|| {
        let platforms: Vec<String> =
            list.iter().filter_map(|d| d.platform.as_ref()).map(|p| format!("{}/{}", p.os, p.architecture)).collect();
        bad(
            name,
            if list.is_empty() {
                "lists no image; export the image again".into()
            } else {
                format!(
                    "has no linux/amd64 image (only {}); export that one, e.g. `docker save --platform linux/amd64`",
                    platforms.join(", ")
                )
            },
        )
    })
}

fn is_tar_layer(media_type: &str) -> bool {
    let base = media_type.strip_suffix("+gzip").or_else(|| media_type.strip_suffix("+zstd")).unwrap_or(media_type);
    matches!(base, "application/vnd.oci.image.layer.v1.tar" | "application/vnd.oci.image.layer.nondistributable.v1.tar")
        || matches!(
            media_type,
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
                | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
        )
}

/// An image config file: what runs (the rest, such as history, is not needed), and the layers'
/// digests (docker's manifest has no others).
#[derive(Deserialize, Default)]
struct ConfigFile {
    config: Option<RunConfig>,
    rootfs: Option<RootFs>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct RunConfig {
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    env: Option<Vec<String>>,
    working_dir: Option<String>,
}

#[derive(Deserialize, Default)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

impl From<RunConfig> for ImageConfig {
    fn from(c: RunConfig) -> Self {
        ImageConfig {
            entrypoint: c.entrypoint.unwrap_or_default(),
            cmd: c.cmd.unwrap_or_default(),
            env: c.env.unwrap_or_default(),
            workdir: c.working_dir.unwrap_or_default(),
        }
    }
}

fn bad(name: &str, reason: String) -> ImportError {
    ImportError::Image { name: name.into(), reason }
}

/// The hex part of a `sha256:` `digest` named in `name`.
fn sha256_hex<'a>(digest: &'a str, name: &str) -> Result<&'a str, ImportError> {
    digest
        .strip_prefix("sha256:")
        .filter(|hex| hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .ok_or_else(|| bad(name, format!("names the digest {digest:?}; zgrid checks sha256 digests only")))
}

fn check(digest: &[u8], sha256: &str, what: &str) -> Result<(), ImportError> {
    if hex::encode(digest) == sha256 {
        Ok(())
    } else {
        Err(ImportError::Digest { what: what.into(), digest: format!("sha256:{sha256}") })
    }
}

fn parse<T: DeserializeOwned>(name: &str, json: Vec<u8>) -> Result<T, ImportError> {
    serde_json::from_slice(&json).map_err(|e| invalid(name, e))
}

fn invalid(name: &str, e: serde_json::Error) -> ImportError {
    bad(name, format!("is not what an image has there ({e}); export the image again"))
}

/// Member `name`, a JSON document, whole.
fn read(members: &dyn Members, name: &str) -> Result<Vec<u8>, ImportError> {
    let mut bytes = Vec::new();
    members.open(name)?.take(JSON_LIMIT + 1).read_to_end(&mut bytes).map_err(read_err(name))?;
    if bytes.len() as u64 > JSON_LIMIT {
        return Err(bad(name, format!("is larger than {JSON_LIMIT} bytes, too large for an image's JSON")));
    }
    Ok(bytes)
}

/// Member `name` (the image's `what`), whole, after checking it has digest `sha256`.
fn read_checked(members: &dyn Members, name: &str, sha256: &str, what: &str) -> Result<Vec<u8>, ImportError> {
    let bytes = read(members, name)?;
    check(&Sha256::digest(&bytes), sha256, &format!("{what} {name}"))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn descriptor(platform: Option<(&str, &str)>, digest: &str) -> Descriptor {
        Descriptor {
            media_type: String::new(),
            digest: digest.into(),
            platform: platform.map(|(os, architecture)| Platform { os: os.into(), architecture: architecture.into() }),
        }
    }

    #[test]
    fn an_index_offers_linux_amd64_or_the_first_without_a_platform() {
        let list = [
            descriptor(Some(("linux", "arm64")), "a"),
            descriptor(None, "b"),
            descriptor(Some(("linux", "amd64")), "c"),
        ];
        assert_eq!(choose(&list, "index.json").unwrap().digest, "c");
        assert_eq!(choose(&list[..2], "index.json").unwrap().digest, "b");
        let err = choose(&list[..1], "index.json").unwrap_err().to_string();
        assert!(err.contains("no linux/amd64 image (only linux/arm64)"), "{err}");
        assert!(choose(&[], "index.json").unwrap_err().to_string().contains("lists no image"));
    }

    #[test]
    fn only_tar_layers_are_accepted() {
        assert!(is_tar_layer("application/vnd.oci.image.layer.v1.tar+zstd"));
        assert!(is_tar_layer("application/vnd.docker.image.rootfs.diff.tar.gzip"));
        assert!(!is_tar_layer("application/vnd.oci.image.layer.v1.tar+encrypted"));
        assert!(!is_tar_layer(""));
    }
}
