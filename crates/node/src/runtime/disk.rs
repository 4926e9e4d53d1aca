//! Size-limited filesystems: a sparse file formatted as ext4 and loop-mounted. Containers'
//! writable layers and volumes are made of them. Every step checks whether it is already done,
//! so mounting again after a crash or reboot finishes the job, and releasing removes whatever
//! subset exists.

use std::path::Path;
use std::time::Duration;

use super::command::{Cmd, Tools, os};
use super::{RuntimeError, mounts};

/// Limit for `mkfs.ext4` (large disks take a while to format).
const MKFS_TIMEOUT: Duration = Duration::from_secs(120);

/// Limit for `mount`, `umount` and `losetup`.
const MOUNT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a busy mount or loop device is retried before giving up.
const RELEASE_WAIT: Duration = Duration::from_secs(3);

/// Create `image` (`mib` MiB, ext4, with a journal when `journal`) unless it exists, and mount
/// it at `point` unless something is mounted there. An existing image keeps its data.
pub(crate) async fn mount(
    tools: &Tools,
    id: &str,
    image: &Path,
    point: &Path,
    mib: u64,
    journal: bool,
) -> Result<(), RuntimeError> {
    if !image.exists() {
        if let Some(dir) = image.parent() {
            std::fs::create_dir_all(dir).map_err(|e| RuntimeError::io(id, "create directory", dir, e))?;
        }
        format(tools, id, image, mib, journal).await?;
    }
    std::fs::create_dir_all(point).map_err(|e| RuntimeError::io(id, "create directory", point, e))?;
    if !mounts::is_mounted(point)? {
        let args = [os("-o"), os("loop"), image.as_os_str(), point.as_os_str()];
        Cmd::new(id, &tools.mount, args, MOUNT_TIMEOUT).run().await?;
    }
    Ok(())
}

/// Create the sparse file `image` of `mib` MiB and format it; the file appears under its final
/// name only once formatted.
async fn format(tools: &Tools, id: &str, image: &Path, mib: u64, journal: bool) -> Result<(), RuntimeError> {
    let tmp = image.with_extension("img.tmp");
    let file = std::fs::File::create(&tmp).map_err(|e| RuntimeError::io(id, "create", &tmp, e))?;
    file.set_len(mib << 20).map_err(|e| RuntimeError::io(id, "size", &tmp, e))?;
    drop(file);
    let mut args = vec![os("-q"), os("-F"), os("-m"), os("0")];
    if !journal {
        args.extend([os("-O"), os("^has_journal")]);
    }
    args.push(tmp.as_os_str());
    Cmd::new(id, &tools.mkfs, args, MKFS_TIMEOUT).run().await?;
    std::fs::rename(&tmp, image).map_err(|e| RuntimeError::io(id, "rename into place", &tmp, e))
}

/// Unmount everything under `dir` (last mounted first) and release the loop devices backed by
/// `image`. Errors when something cannot be released, so that nothing is deleted through a
/// live mount.
pub(crate) async fn release(tools: &Tools, id: &str, dir: &Path, image: &Path) -> Result<(), RuntimeError> {
    let deadline = tokio::time::Instant::now() + RELEASE_WAIT;
    loop {
        let points = mounts::under(dir)?;
        let Some(point) = points.first() else { break };
        let umount = Cmd::new(id, &tools.umount, [point.as_os_str()], MOUNT_TIMEOUT);
        if let Err(e) = umount.run().await {
            if tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            tracing::warn!(container = id, error = %e, "mount stays busy; detaching it lazily");
            Cmd::new(id, &tools.umount, [os("-l"), point.as_os_str()], MOUNT_TIMEOUT).run().await?;
        }
    }
    let deadline = tokio::time::Instant::now() + RELEASE_WAIT;
    loop {
        let devices = mounts::loop_devices_of(image);
        let Some(device) = devices.first() else { return Ok(()) };
        if tokio::time::Instant::now() >= deadline {
            let mut what = format!("loop device {} backed by {}", device.display(), image.display());
            let holders = mounts::holders(device, 3);
            if !holders.is_empty() {
                let names: Vec<String> = holders.iter().map(|(pid, name)| format!("{pid} ({name})")).collect();
                what.push_str(&format!(
                    " (still mounted in the mount namespace of process {}, copied while it was mounted: \
                     it is released when that process exits)",
                    names.join(", ")
                ));
            }
            return Err(RuntimeError::Leftover { id: id.to_owned(), what });
        }
        // Fails harmlessly when the kernel is already releasing it (auto-clear after umount).
        let _ = Cmd::new(id, &tools.losetup, [os("-d"), device.as_os_str()], MOUNT_TIMEOUT).run().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
