//! User namespaces: a container's root is not the host's. Each container gets its own range of
//! [`IDS_PER_CONTAINER`] host ids, recorded in its directory (so restarts of the agent or the
//! container keep it) and released with it; its uid and gid 0 to 65535 are that range's.
//!
//! What the container sees of the host's files is shown through the range with idmapped mounts
//! (a second mount of the same files whose owners are translated, made with `open_tree`,
//! `mount_setattr` and `move_mount`): the image (a directory, or the FUSE mount of an flist,
//! which allows it from Linux 6.12) and each volume, so their files keep host ids 0 to 65535 on
//! disk whichever container mounts them. The writable layer cannot be idmapped: overlayfs writes
//! its work files there as host root, whom no range maps. Its files carry the range's host ids
//! instead: a layer is shifted into the range once (ids below 65536 move up by the range's
//! base, which leaves shifted ids alone, so a shift cut short is finished by the next), and
//! what the container writes there later is owned by its range already.

use std::collections::BTreeSet;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rustix::mount::{MoveMountFlags, OpenTreeFlags};
use serde_json::{Value, json};

use super::RuntimeError;
use super::command::Tools;
use super::layout::{self, ContainerPaths};
use super::mounts;

/// Host ids one container gets: its ids 0 to 65535.
pub const IDS_PER_CONTAINER: u32 = 1 << 16;

/// The first host id handed to containers, far above those of the host's own users (and of
/// `/etc/subuid` ranges, which start at 100000).
const FIRST_HOST_ID: u32 = 1 << 30;

/// How many ranges fit between [`FIRST_HOST_ID`] and 2^31.
const RANGES: u32 = (1 << 30) / IDS_PER_CONTAINER;

/// How long the helper process may take to enter its new user namespace.
const HELPER_WAIT: Duration = Duration::from_secs(5);

/// A container's ids: its id `n` is the host's `base + n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    base: u32,
}

impl IdRange {
    /// The range whose root is host id `base`.
    #[cfg(test)]
    pub(crate) const fn from_base(base: u32) -> Self {
        Self { base }
    }

    /// The host id of the container's root.
    pub fn base(self) -> u32 {
        self.base
    }

    /// The OCI `linux.uidMappings` (and `gidMappings`) value.
    pub(crate) fn oci(self) -> Value {
        json!([{ "containerID": 0, "hostID": self.base, "size": IDS_PER_CONTAINER }])
    }
}

/// A container's id range, with a user namespace holding its maps for idmapped mounts.
#[derive(Debug)]
pub(crate) struct Mapping {
    /// The range.
    pub range: IdRange,
    /// A user namespace mapping the container's ids to the range.
    pub userns: OwnedFd,
}

/// The range recorded for the container at `paths` under state directory `root`, or, for a
/// container without one, the lowest range no other container of `root` holds, recorded
/// durably before it is returned. `lock` serialises assignments.
pub(crate) fn assign(root: &Path, paths: &ContainerPaths, lock: &Mutex<()>) -> Result<IdRange, RuntimeError> {
    let id = paths.id();
    if let Some(range) = recorded(&paths.id_range())? {
        return Ok(range);
    }
    let _guard = lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut taken = BTreeSet::new();
    for other in layout::ids_in(&layout::containers_dir(root))? {
        if let Some(range) = recorded(&ContainerPaths::new(root, &other).id_range())? {
            taken.insert(range.base);
        }
    }
    let base = (0..RANGES)
        .map(|n| FIRST_HOST_ID + n * IDS_PER_CONTAINER)
        .find(|base| !taken.contains(base))
        .ok_or_else(|| RuntimeError::InvalidConfig {
            id: id.to_owned(),
            field: "user namespace",
            reason: format!("all {RANGES} id ranges are in use on this node"),
        })?;
    let path = paths.id_range();
    std::fs::create_dir_all(&paths.dir).map_err(|e| RuntimeError::io(id, "create directory", &paths.dir, e))?;
    crate::store::write_durably(&path, format!("{base}\n").as_bytes())
        .map_err(|e| RuntimeError::io(id, "record the id range in", &path, e))?;
    Ok(IdRange { base })
}

/// The range recorded at `path`, if any.
pub(crate) fn recorded(path: &Path) -> Result<Option<IdRange>, RuntimeError> {
    match std::fs::read_to_string(path) {
        Ok(text) => match text.trim().parse() {
            Ok(base) => Ok(Some(IdRange { base })),
            Err(e) => Err(RuntimeError::host_io("parse", path, std::io::Error::other(e))),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(RuntimeError::host_io("read", path, e)),
    }
}

/// The container's user namespace, mapping its ids 0 to 65535 to `range`, pinned by a bind
/// mount at [`ContainerPaths::userns`] so that it outlives the container's processes: every start
/// of the container joins it, and its network namespace is made inside it, so that `runc exec`
/// (which enters the user namespace first) may then enter the network namespace too. Made when
/// the pin is missing (first start, or a reboot dropped it).
pub(crate) fn pinned(tools: &Tools, paths: &ContainerPaths, range: IdRange) -> Result<OwnedFd, RuntimeError> {
    let (id, pin) = (paths.id(), paths.userns());
    if !mounts::is_mounted(&pin)? {
        with_new_namespace(tools, id, range, |ns| {
            std::fs::File::create(&pin).map_err(|e| RuntimeError::io(id, "create", &pin, e))?;
            rustix::mount::mount_bind(ns, &pin)
                .map_err(|e| RuntimeError::io(id, "pin its user namespace at", &pin, e.into()))
        })?;
    }
    Ok(std::fs::File::open(&pin).map_err(|e| RuntimeError::io(id, "open", &pin, e))?.into())
}

/// Make a user namespace mapping ids 0 to 65535 to `range` and give `keep` its file (under
/// `/proc`) to open or pin: a helper (`unshare --user sleep`) enters a new one, the agent writes
/// its maps, and the helper ends once `keep` returns.
fn with_new_namespace<T>(
    tools: &Tools,
    id: &str,
    range: IdRange,
    keep: impl FnOnce(&Path) -> Result<T, RuntimeError>,
) -> Result<T, RuntimeError> {
    let mut helper = Command::new(&tools.unshare)
        .args(["--user", "--"])
        .arg(&tools.sleep)
        .arg("60")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|source| RuntimeError::Spawn { id: id.to_owned(), command: "unshare --user".into(), source })?;
    let proc = Path::new("/proc").join(helper.id().to_string());
    let made = write_maps(id, &proc, range).and_then(|()| keep(&proc.join("ns/user")));
    let _ = helper.kill();
    let _ = helper.wait();
    made
}

/// Wait until process `proc` is in a user namespace of its own and write its maps.
fn write_maps(id: &str, proc: &Path, range: IdRange) -> Result<(), RuntimeError> {
    wait_for_namespace(proc, "user").map_err(|e| RuntimeError::io(id, "wait for a new user namespace in", proc, e))?;
    let map = format!("0 {} {IDS_PER_CONTAINER}\n", range.base);
    for file in ["uid_map", "gid_map"] {
        let path = proc.join(file);
        std::fs::write(&path, &map).map_err(|e| RuntimeError::io(id, "write", path, e))?;
    }
    Ok(())
}

/// Wait (a few seconds at most) until process `proc` (its `/proc` directory) is in a namespace
/// of kind `kind` (`user`, `net`, …) other than the agent's: a helper that makes one has then
/// made it.
pub(crate) fn wait_for_namespace(proc: &Path, kind: &str) -> std::io::Result<()> {
    let ns = Path::new("ns").join(kind);
    let own = std::fs::read_link(Path::new("/proc/self").join(&ns))?;
    let deadline = Instant::now() + HELPER_WAIT;
    while std::fs::read_link(proc.join(&ns))? == own {
        if Instant::now() >= deadline {
            return Err(std::io::Error::from(std::io::ErrorKind::TimedOut));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// Mount the tree at `source` again at `target` (made if missing), with its owners translated
/// through `userns`'s maps.
pub(crate) fn mount_mapped(id: &str, source: &Path, target: &Path, userns: &OwnedFd) -> Result<(), RuntimeError> {
    let tree = rustix::mount::open_tree(
        rustix::fs::CWD,
        source,
        OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
    )
    .map_err(|e| RuntimeError::io(id, "open a copy of the mount at", source, e.into()))?;
    composefs_ioctls::mount::mount_setattr_idmap(&tree, userns).map_err(|e| {
        let hint = std::io::Error::new(
            e.kind(),
            format!(
                "{e}; its filesystem cannot show the container's ids (idmapped mounts need ext4, xfs, btrfs, \
                 tmpfs from Linux 6.3, or an flist mount service of this version on Linux 6.12 or later)"
            ),
        );
        RuntimeError::io(id, "map the owners of", source, hint)
    })?;
    std::fs::create_dir_all(target).map_err(|e| RuntimeError::io(id, "create directory", target, e))?;
    rustix::mount::move_mount(&tree, "", rustix::fs::CWD, target, MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH)
        .map_err(|e| RuntimeError::io(id, "mount the mapped copy at", target, e.into()))
}

/// Move every owner below [`IDS_PER_CONTAINER`] of `dir` and what is under it (links are not
/// followed, other file systems are not entered) up into `range`.
pub(crate) fn shift_tree(id: &str, dir: &Path, range: IdRange) -> Result<(), RuntimeError> {
    let meta = std::fs::symlink_metadata(dir).map_err(|e| RuntimeError::io(id, "inspect", dir, e))?;
    let device = meta.dev();
    let mut pending = vec![dir.to_owned()];
    while let Some(path) = pending.pop() {
        let meta = std::fs::symlink_metadata(&path).map_err(|e| RuntimeError::io(id, "inspect", &path, e))?;
        if meta.dev() != device {
            continue;
        }
        let shift = |n: u32| (n < IDS_PER_CONTAINER).then_some(range.base + n);
        let (uid, gid) = (shift(meta.uid()), shift(meta.gid()));
        if uid.is_some() || gid.is_some() {
            // chown clears set-id bits of executables; they are put back.
            std::os::unix::fs::lchown(&path, uid, gid)
                .map_err(|e| RuntimeError::io(id, "change the owner of", &path, e))?;
            if meta.is_file() && meta.mode() & 0o6000 != 0 {
                let mode = std::fs::Permissions::from_mode(meta.mode() & 0o7777);
                std::fs::set_permissions(&path, mode)
                    .map_err(|e| RuntimeError::io(id, "restore the mode of", &path, e))?;
            }
        }
        if meta.is_dir() {
            let entries = std::fs::read_dir(&path).map_err(|e| RuntimeError::io(id, "list", &path, e))?;
            for entry in entries {
                pending.push(entry.map_err(|e| RuntimeError::io(id, "list", &path, e))?.path());
            }
        }
    }
    Ok(())
}

/// Why containers cannot have user namespaces on this machine, if they cannot: the kernel must
/// make idmapped mounts of the file system holding `root` (the state directory), and every
/// directory above `root` must let others through (container root resolves its paths as an
/// unprivileged host user).
pub(crate) fn unsupported(tools: &Tools, root: &Path) -> Option<String> {
    let probe = IdRange { base: FIRST_HOST_ID };
    let open = |ns: &Path| -> Result<OwnedFd, RuntimeError> {
        Ok(std::fs::File::open(ns).map_err(|e| RuntimeError::io("probe", "open", ns, e))?.into())
    };
    let userns = match with_new_namespace(tools, "probe", probe, open) {
        Ok(ns) => ns,
        Err(e) => return Some(format!("cannot make a user namespace: {e}")),
    };
    let tree = rustix::mount::open_tree(
        rustix::fs::CWD,
        root,
        OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
    );
    // The detached copy goes away with its descriptor.
    if let Err(e) =
        tree.map_err(std::io::Error::from).and_then(|t| composefs_ioctls::mount::mount_setattr_idmap(&t, &userns))
    {
        return Some(format!("the kernel cannot make idmapped mounts of {}: {e}", root.display()));
    }
    None
}

/// The first directory at or above `dir` that others may not pass through, with a hint.
pub(crate) fn closed_ancestor(dir: &Path) -> Option<String> {
    dir.ancestors().find(|d| std::fs::metadata(d).is_ok_and(|m| m.mode() & 0o001 == 0)).map(|d| {
        format!(
            "{} is not searchable by other users (mode {:o}), and container root runs as one: chmod o+x {}",
            d.display(),
            std::fs::metadata(d).map_or(0, |m| m.mode() & 0o7777),
            d.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_assigned_once_and_never_shared() {
        let dir = tempfile::tempdir().unwrap();
        let lock = Mutex::new(());
        let paths = |id: &str| ContainerPaths::new(dir.path(), id);
        let a = assign(dir.path(), &paths("a"), &lock).unwrap();
        let b = assign(dir.path(), &paths("b"), &lock).unwrap();
        assert_eq!(a.base(), FIRST_HOST_ID);
        assert_eq!(b.base(), FIRST_HOST_ID + IDS_PER_CONTAINER);
        assert_eq!(assign(dir.path(), &paths("a"), &lock).unwrap(), a, "kept");
        std::fs::remove_dir_all(&paths("a").dir).unwrap();
        assert_eq!(assign(dir.path(), &paths("c"), &lock).unwrap(), a, "a removed container's range is free again");
        assert_eq!(b.oci()[0]["hostID"], b.base());
    }

    #[test]
    fn shifting_moves_ids_into_the_range_once() {
        let dir = tempfile::tempdir().unwrap();
        let range = IdRange { base: FIRST_HOST_ID };
        let (sub, file, link) = (dir.path().join("sub"), dir.path().join("sub/file"), dir.path().join("link"));
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(&file, "x").unwrap();
        std::os::unix::fs::lchown(&file, Some(33), Some(44)).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o4755)).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", &link).unwrap();
        for _ in 0..2 {
            shift_tree("t", dir.path(), range).unwrap();
        }
        let meta = |p: &Path| std::fs::symlink_metadata(p).unwrap();
        assert_eq!((meta(&file).uid(), meta(&file).gid()), (FIRST_HOST_ID + 33, FIRST_HOST_ID + 44));
        assert_eq!(meta(&file).mode() & 0o7777, 0o4755, "set-uid bit kept");
        assert_eq!(meta(&sub).uid(), FIRST_HOST_ID);
        assert_eq!(meta(&link).uid(), FIRST_HOST_ID, "the link itself");
        assert_eq!(meta(Path::new("/etc/hostname")).uid(), 0, "not its target");
    }
}
