//! The container's root filesystem: a size-limited writable layer (a sparse file formatted as
//! ext4 and loop-mounted) under an overlay whose lower layer is the read-only image (idmapped
//! into the container's id range when it has one, see [`super::idmap`]). Every step
//! checks whether it is already done, so preparing again after a crash finishes the job, and
//! tearing down removes whatever subset exists.

use std::path::Path;
use std::time::Duration;

use super::command::{Cmd, Tools, os};
use super::idmap::{self, IdRange, Mapping};
use super::layout::{ContainerPaths, LayeredRoot};
use super::{ContainerConfig, RuntimeError, disk, mounts};

/// Limit for mounting the overlay.
const MOUNT_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the host's resolver configuration is copied from.
const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";

/// Create (if needed) and mount the writable layer and the overlay at `paths.rootfs()`. With
/// a `mapping`, the layer is shifted into the container's id range and the overlay's lower
/// layer is the image idmapped into it.
pub(crate) async fn prepare(
    tools: &Tools,
    cfg: &ContainerConfig,
    paths: &ContainerPaths,
    mapping: Option<&Mapping>,
) -> Result<(), RuntimeError> {
    let id = cfg.id.as_str();
    let mkdir = |p: &Path| std::fs::create_dir_all(p).map_err(|e| RuntimeError::io(id, "create directory", p, e));
    mkdir(&paths.dir)?;
    // Without a journal: the layer is scratch space, and formatting stays fast.
    disk::mount(tools, id, &paths.disk_image(), &paths.layer(), cfg.disk_mib, false).await?;
    mkdir(&paths.upper())?;
    mkdir(&paths.work())?;
    if let Some(mapping) = mapping {
        shift_layer(paths, mapping.range)?;
    }
    let rootfs = paths.rootfs();
    mkdir(&rootfs)?;
    if !mounts::is_mounted(&rootfs)? {
        let lower = match mapping {
            Some(mapping) => {
                // A copy left by an earlier run may show a mount that is gone since.
                let lower = paths.mapped_image();
                detach(id, &lower)?;
                idmap::mount_mapped(id, &cfg.image, &lower, &mapping.userns)?;
                lower
            }
            None => cfg.image.clone(),
        };
        write_etc(id, &paths.upper(), &cfg.hostname, mapping.map(|m| m.range.base()))?;
        mount_overlay(tools, id, &[&lower], &paths.upper(), &paths.work(), &rootfs).await?;
    }
    Ok(())
}

/// Mount an overlay at `target`: `lowers` read-only (the first on top), `upper` writable,
/// `work` the overlay's scratch directory on the same file system as `upper`.
pub(crate) async fn mount_overlay(
    tools: &Tools,
    id: &str,
    lowers: &[&Path],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> Result<(), RuntimeError> {
    let lowers: Vec<String> = lowers.iter().map(|l| l.display().to_string()).collect();
    let options = format!("lowerdir={},upperdir={},workdir={}", lowers.join(":"), upper.display(), work.display());
    let args = [os("-t"), os("overlay"), os("overlay"), os("-o"), os(&options), target.as_os_str()];
    Cmd::new(id, &tools.mount, args, MOUNT_TIMEOUT).run().await.map(drop)
}

/// Shift the writable layer's files into `range`, unless the layer records that it was.
fn shift_layer(paths: &ContainerPaths, range: IdRange) -> Result<(), RuntimeError> {
    let id = paths.id();
    let record = paths.layer_range();
    let base = range.base().to_string();
    if std::fs::read_to_string(&record).is_ok_and(|r| r.trim() == base) {
        return Ok(());
    }
    idmap::shift_tree(id, &paths.upper(), range)?;
    crate::store::write_durably(&record, base.as_bytes()).map_err(|e| RuntimeError::io(id, "write", record, e))
}

/// Put `/etc/hostname` and the host's `/etc/resolv.conf` into the writable layer, owned by host
/// id `owner` (the container's root) when given. The layer's contents come from the container,
/// so nothing in it is written through: a symbolic link or whiteout at either file is replaced,
/// and an `/etc` that is not a directory is left alone.
fn write_etc(id: &str, upper: &Path, hostname: &str, owner: Option<u32>) -> Result<(), RuntimeError> {
    let etc = upper.join("etc");
    let chown = |path: &Path| match owner {
        Some(owner) => std::os::unix::fs::lchown(path, Some(owner), Some(owner))
            .map_err(|e| RuntimeError::io(id, "change the owner of", path, e)),
        None => Ok(()),
    };
    match std::fs::symlink_metadata(&etc) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir(&etc).map_err(|e| RuntimeError::io(id, "create directory", &etc, e))?;
            chown(&etc)?;
        }
        Err(e) => return Err(RuntimeError::io(id, "inspect", etc, e)),
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            tracing::warn!(container = id, path = %etc.display(), "/etc is not a directory in the writable layer; not writing hostname and resolv.conf");
            return Ok(());
        }
    }
    let write = |name: &str, bytes: &[u8]| {
        let path = etc.join(name);
        if std::fs::symlink_metadata(&path).is_ok_and(|m| !m.is_file()) {
            std::fs::remove_file(&path).map_err(|e| RuntimeError::io(id, "replace", &path, e))?;
        }
        std::fs::write(&path, bytes).map_err(|e| RuntimeError::io(id, "write", &path, e))?;
        chown(&path)
    };
    write("hostname", format!("{hostname}\n").as_bytes())?;
    match std::fs::read(HOST_RESOLV_CONF) {
        Ok(resolv) => write("resolv.conf", &resolv),
        Err(e) => {
            tracing::warn!(container = id, error = %e, "cannot read {HOST_RESOLV_CONF}; the container gets no resolver configuration");
            Ok(())
        }
    }
}

/// Detach the overlay and the image's idmapped copy (not the writable layer): the image is
/// gone (an flist's FUSE server stopped), and the next [`prepare`] mounts them again over the
/// image as it is then.
pub(crate) fn detach_overlay(id: &str, paths: &ContainerPaths) -> Result<(), RuntimeError> {
    detach(id, &paths.rootfs())?;
    detach(id, &paths.mapped_image())
}

/// Detach whatever is mounted at `point`, if anything.
pub(crate) fn detach(id: &str, point: &Path) -> Result<(), RuntimeError> {
    if mounts::is_mounted(point)? {
        nix::mount::umount2(point, nix::mount::MntFlags::MNT_DETACH)
            .map_err(|e| RuntimeError::io(id, "detach", point, e.into()))?;
    }
    Ok(())
}

/// Unmount everything of the container and release its writable layer's loop device.
pub(crate) async fn teardown(tools: &Tools, id: &str, paths: &ContainerPaths) -> Result<(), RuntimeError> {
    disk::release(tools, id, &paths.dir, &paths.disk_image()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etc_files_never_write_through_links() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("host");
        std::fs::create_dir(&host).unwrap();
        std::fs::write(host.join("hostname"), "host\n").unwrap();

        let upper = dir.path().join("upper");
        std::fs::create_dir_all(upper.join("etc")).unwrap();
        std::os::unix::fs::symlink(host.join("hostname"), upper.join("etc/hostname")).unwrap();
        write_etc("t", &upper, "box1", None).unwrap();
        assert_eq!(std::fs::read_to_string(upper.join("etc/hostname")).unwrap(), "box1\n");
        assert_eq!(std::fs::read_to_string(host.join("hostname")).unwrap(), "host\n");

        let linked = dir.path().join("linked");
        std::fs::create_dir(&linked).unwrap();
        std::os::unix::fs::symlink(&host, linked.join("etc")).unwrap();
        write_etc("t", &linked, "box2", None).unwrap();
        assert_eq!(std::fs::read_to_string(host.join("hostname")).unwrap(), "host\n");
        assert!(!host.join("resolv.conf").exists());
    }
}
