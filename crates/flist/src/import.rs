//! Importing archives and container images into flists, without extracting anything to disk (so
//! it needs no root, and `..` paths or symlinks in an archive cannot write outside it): a tar
//! (plain, gzip or zstd) of a root filesystem, an OCI image layout (a directory or a tar of one)
//! or a `docker save` archive. Tar entries go into an in-memory tree (an image's layers applied in
//! order with OCI whiteouts) while file contents are chunked into the store as they stream past;
//! the tree is then written as [`pack`] writes a directory. See `docs/flist.md`.

mod archive;
mod entry;
mod image;
mod tree;

use std::fmt::Display;
use std::fs::File;
use std::path::Path;

use nix::sys::stat::SFlag;

use archive::{DirMembers, Members, TarMembers, decompress};
use image::Image;
use tree::Tree;

use crate::meta::{Flist, ImageConfig, MetaError};
use crate::pack::{CONFIG_FILE, PackError, PackSummary, pack};
use crate::store::DirStore;
use crate::unpack::{ReadError, copy_file, resolve};

/// Why importing failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Reading the source failed.
    #[error("cannot read {path}")]
    Read {
        /// What was read.
        path: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// Packing failed: a plain directory, or storing chunks.
    #[error(transparent)]
    Pack(#[from] PackError),
    /// Writing the flist failed.
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// An archive entry's path climbs out of the root.
    #[error(
        "{archive}: {path} leaves the image root (`..`), so the archive is refused; rebuild it with paths inside the root"
    )]
    Escape {
        /// The archive (or layer).
        archive: String,
        /// The entry's path.
        path: String,
    },
    /// An archive entry cannot be imported.
    #[error("{archive}: {path}: {reason}")]
    Entry {
        /// The archive (or layer).
        archive: String,
        /// The entry's path.
        path: String,
        /// What is wrong, and what to do.
        reason: String,
    },
    /// A file the image refers to is not there.
    #[error("the image has no {name}; it is incomplete: export it again")]
    Missing {
        /// The file, relative to the image's root.
        name: String,
    },
    /// A blob's contents do not match the digest it is named by.
    #[error("{what} does not match its digest {digest}: the image is damaged; export it again")]
    Digest {
        /// The blob, such as `layer blobs/sha256/…`.
        what: String,
        /// The digest it should have.
        digest: String,
    },
    /// The image's index, manifest or config cannot be used.
    #[error("{name} {reason}")]
    Image {
        /// The file, relative to the image's root.
        name: String,
        /// What is wrong, and what to do.
        reason: String,
    },
}

/// Import `source` into a new flist at `out`, storing chunks in `store`. `source` is a directory
/// (an OCI image layout or a `docker save` directory if it has `oci-layout` or `manifest.json`,
/// else a root filesystem, packed with [`pack`]) or a tar, plain or compressed (a `docker save`
/// archive, an OCI image layout, else a root filesystem). The same input gives the same flist.
pub fn import(source: &Path, store: &DirStore, out: &Path) -> Result<PackSummary, ImportError> {
    let what = source.display().to_string();
    if std::fs::metadata(source).map_err(read_err(&what))?.is_dir() {
        let members = DirMembers(source.to_owned());
        return match image::find(&members)? {
            Some(image) => import_image(&members, &image, store, out),
            None => Ok(pack(source, store, out)?),
        };
    }
    if !archive::is_compressed(source)? {
        return import_tar(source, &what, store, out);
    }
    let open = || File::open(source).and_then(decompress).map_err(read_err(&what));
    if !archive::names_image(open()?, &what)? {
        return import_rootfs(open()?, &what, store, out);
    }
    // An image's members are read one by one, so its tar is decompressed first, beside the output.
    let dir = out.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut spool = tempfile::NamedTempFile::new_in(dir).map_err(read_err(dir.display()))?;
    std::io::copy(&mut open()?, &mut spool).map_err(read_err(&what))?;
    import_tar(spool.path(), &what, store, out)
}

/// Merge the flists at `sources` (lowest first) into a new flist at `out`: each source's
/// entries replace what the ones before have at the same paths, and directories merge. The
/// image config is the last non-empty one. Chunks are shared, so nothing is stored.
pub fn merge(sources: &[impl AsRef<Path>], out: &Path) -> Result<PackSummary, ImportError> {
    let mut tree = Tree::default();
    let mut config = ImageConfig::default();
    for (layer, source) in sources.iter().enumerate() {
        let flist = Flist::open(source.as_ref())?;
        tree.graft(&flist, layer)?;
        let own = flist.config()?;
        if own != ImageConfig::default() {
            config = own;
        }
    }
    let flist = Flist::create(out)?;
    let mut summary = PackSummary::default();
    tree.write(&flist, &mut summary)?;
    if config != ImageConfig::default() {
        flist.put_config(&config)?;
    }
    flist.finish()?;
    Ok(summary)
}

/// Import uncompressed tar `path` (named `what`).
fn import_tar(path: &Path, what: &str, store: &DirStore, out: &Path) -> Result<PackSummary, ImportError> {
    let members = TarMembers::read(path)?;
    match image::find(&members)? {
        Some(image) => import_image(&members, &image, store, out),
        None => import_rootfs(File::open(path).map_err(read_err(what))?, what, store, out),
    }
}

/// Import a tar of a whole root filesystem; its own `.zgrid/config.json`, if any, is the config.
fn import_rootfs(
    reader: impl std::io::Read,
    what: &str,
    store: &DirStore,
    out: &Path,
) -> Result<PackSummary, ImportError> {
    let mut tree = Tree::default();
    let mut summary = PackSummary::default();
    tree.apply(reader, None, what, store, &mut summary)?;
    write(&tree, None, store, out, summary)
}

/// Import `image`, each layer checked against its digest before it is applied.
fn import_image(
    members: &dyn Members,
    image: &Image,
    store: &DirStore,
    out: &Path,
) -> Result<PackSummary, ImportError> {
    let mut tree = Tree::default();
    let mut summary = PackSummary::default();
    for (n, layer) in image.layers.iter().enumerate() {
        layer.verify(members)?;
        let what = layer.what();
        let reader = decompress(members.open(&layer.name)?).map_err(read_err(&what))?;
        tree.apply(reader, Some(n), &what, store, &mut summary)?;
    }
    write(&tree, Some(&image.config), store, out, summary)
}

/// Write `tree` into a new flist at `out` with `config` (None: the tree's own config file).
fn write(
    tree: &Tree,
    config: Option<&ImageConfig>,
    store: &DirStore,
    out: &Path,
    mut summary: PackSummary,
) -> Result<PackSummary, ImportError> {
    let flist = Flist::create(out)?;
    tree.write(&flist, &mut summary)?;
    let config = match config {
        Some(config) => Some(config.clone()),
        None => own_config(&flist, store)?,
    };
    if let Some(config) = config {
        flist.put_config(&config)?;
    }
    flist.finish()?;
    Ok(summary)
}

/// The config in the flist's own [`CONFIG_FILE`], if it has one.
fn own_config(flist: &Flist, store: &DirStore) -> Result<Option<ImageConfig>, ImportError> {
    let config_err = |e: &dyn Display| PackError::Config(e.to_string());
    let ino = match resolve(flist, CONFIG_FILE) {
        Ok(ino) => ino,
        Err(ReadError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(config_err(&e).into()),
    };
    if flist.inode(ino)?.is_none_or(|i| i.mode & SFlag::S_IFMT.bits() != SFlag::S_IFREG.bits()) {
        return Ok(None);
    }
    let mut text = Vec::new();
    copy_file(flist, store, ino, &mut text).map_err(|e| config_err(&e))?;
    Ok(Some(serde_json::from_slice(&text).map_err(|e| config_err(&e))?))
}

fn read_err(what: impl Display) -> impl FnOnce(std::io::Error) -> ImportError {
    move |source| ImportError::Read { path: what.to_string(), source }
}

/// The components of archive path `path`, without `.`, empty parts or a leading `/`; None if one
/// of them is `..`.
fn split(path: &[u8]) -> Option<Vec<Vec<u8>>> {
    path.split(|&b| b == b'/')
        .filter(|part| !part.is_empty() && *part != b".")
        .map(|part| (part != b"..").then(|| part.to_vec()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalised_and_dot_dot_refused() {
        let parts =
            |p: &[u8]| split(p).map(|v| v.iter().map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>());
        assert_eq!(parts(b"./etc//passwd"), Some(vec!["etc".into(), "passwd".into()]));
        assert_eq!(parts(b"/usr/bin/"), Some(vec!["usr".into(), "bin".into()]));
        assert_eq!(parts(b"./"), Some(vec![]));
        assert_eq!(parts(b"a/../../etc/passwd"), None);
    }
}
