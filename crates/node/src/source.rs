//! Images on the node itself: besides flist URLs (mounted by [`crate::flist`]), a container's
//! `flist` may name a directory on the node or a tar archive (`.tar`, `.tar.gz`, `.tgz`), as an
//! absolute path or a `file://` URL ([`zgrid_types::workload::FlistSource::Local`]). Archives
//! are unpacked once into the node's image directory, named by the hash of their contents, and
//! shared by every container that uses them.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::provision::ProvisionError;

/// The read-only root filesystem directory for the image at `path` (absolute), unpacking an
/// archive if needed.
pub fn resolve(path: &Path, images: &Path) -> Result<PathBuf, ProvisionError> {
    let permanent = |m: String| ProvisionError::Permanent(m);
    let meta = fs::metadata(path).map_err(|e| permanent(format!("flist {}: {e}", path.display())))?;
    if meta.is_dir() {
        return Ok(path.to_owned());
    }
    let name = path.to_string_lossy();
    let gz = name.ends_with(".tar.gz") || name.ends_with(".tgz");
    if !gz && !name.ends_with(".tar") {
        return Err(permanent(format!("flist {}: not a directory or a .tar, .tar.gz or .tgz archive", path.display())));
    }
    unpack(path, gz, images).map_err(|e| ProvisionError::Transient(format!("cannot unpack {}: {e}", path.display())))
}

/// Unpack once: into a temporary directory, then renamed into place, so a crash never leaves a
/// half-unpacked image that looks complete.
fn unpack(archive: &Path, gz: bool, images: &Path) -> std::io::Result<PathBuf> {
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(fs::File::open(archive)?)?;
    let target = images.join(hasher.finalize().to_hex().as_str());
    if target.is_dir() {
        return Ok(target);
    }
    fs::create_dir_all(images)?;
    let tmp = images.join(format!(".unpack-{:016x}", rand::random::<u64>()));
    let file = fs::File::open(archive)?;
    let reader: Box<dyn Read> = if gz { Box::new(flate2::read::GzDecoder::new(file)) } else { Box::new(file) };
    let mut tar = tar::Archive::new(reader);
    tar.set_preserve_permissions(true);
    tar.set_preserve_ownerships(true);
    tar.set_unpack_xattrs(true);
    if let Err(e) = tar.unpack(&tmp) {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    match fs::rename(&tmp, &target) {
        Ok(()) => Ok(target),
        // Another container unpacked the same archive first.
        Err(_) if target.is_dir() => {
            let _ = fs::remove_dir_all(&tmp);
            Ok(target)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_are_used_in_place_and_archives_unpacked_once() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("img");
        fs::create_dir_all(image.join("bin")).unwrap();
        fs::write(image.join("bin/hello"), b"hi").unwrap();
        assert_eq!(resolve(&image, dir.path()).unwrap(), image);

        let archive = dir.path().join("img.tar");
        let mut builder = tar::Builder::new(fs::File::create(&archive).unwrap());
        builder.append_dir_all(".", &image).unwrap();
        builder.finish().unwrap();
        let images = dir.path().join("images");
        let a = resolve(&archive, &images).unwrap();
        assert_eq!(fs::read(a.join("bin/hello")).unwrap(), b"hi");
        assert_eq!(resolve(&archive, &images).unwrap(), a);
        assert_eq!(fs::read_dir(&images).unwrap().count(), 1);
    }

    #[test]
    fn unusable_sources_are_permanent_errors_that_say_why() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("image.zip");
        fs::write(&file, b"PK").unwrap();
        for (flist, why) in
            [(file.to_str().unwrap(), "not a directory or a .tar"), ("/nonexistent/zgrid-image", "No such file")]
        {
            match resolve(Path::new(flist), dir.path()) {
                Err(ProvisionError::Permanent(m)) => assert!(m.contains(why), "{flist}: {m}"),
                other => panic!("{flist}: {other:?}"),
            }
        }
    }
}
