//! What is mounted (from `/proc/self/mountinfo`) and which loop devices back which files (from
//! `/sys/block/loop*/loop/backing_file`): the facts crash recovery works from.

use std::path::{Path, PathBuf};

use super::RuntimeError;

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mount {
    /// Where it is mounted.
    pub point: PathBuf,
    /// File system type (`overlay`, `ext4`, `cgroup`, …).
    pub fstype: String,
    /// Per-superblock options (for cgroup v1, they name the controllers).
    pub super_options: String,
}

/// Every mount of this process's mount namespace, in mount order.
pub(crate) fn all() -> Result<Vec<Mount>, RuntimeError> {
    let path = "/proc/self/mountinfo";
    let text = std::fs::read_to_string(path).map_err(|e| RuntimeError::host_io("read", path, e))?;
    Ok(text.lines().filter_map(parse_line).collect())
}

/// Mount points at or below `dir`, last mounted first: the order to unmount them in (a point
/// mounted over twice appears twice).
pub(crate) fn under(dir: &Path) -> Result<Vec<PathBuf>, RuntimeError> {
    let mut points: Vec<PathBuf> = all()?.into_iter().map(|m| m.point).filter(|p| p.starts_with(dir)).collect();
    points.reverse();
    Ok(points)
}

/// Whether something is mounted exactly at `point`.
pub(crate) fn is_mounted(point: &Path) -> Result<bool, RuntimeError> {
    Ok(all()?.iter().any(|m| m.point == point))
}

/// Loop devices (`/dev/loopN`) whose backing file is `file` (also once it has been deleted).
pub(crate) fn loop_devices_of(file: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir("/sys/block") else { return Vec::new() };
    let wanted = file.to_string_lossy();
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("loop"))
        .filter(|e| {
            std::fs::read_to_string(e.path().join("loop/backing_file")).is_ok_and(|backing| {
                let backing = backing.trim_end_matches('\n');
                backing == wanted || backing.strip_suffix(" (deleted)") == Some(&*wanted)
            })
        })
        .map(|e| Path::new("/dev").join(e.file_name()))
        .collect()
}

/// Parse `id parent major:minor root point options [optional…] - fstype source super_options`.
fn parse_line(line: &str) -> Option<Mount> {
    let (pre, post) = line.split_once(" - ")?;
    let point = unescape(pre.split(' ').nth(4)?);
    let mut post = post.split(' ');
    let fstype = post.next()?.to_owned();
    let super_options = post.nth(1).unwrap_or_default().to_owned();
    Some(Mount { point: PathBuf::from(point), fstype, super_options })
}

/// Undo mountinfo's octal escapes (`\040` for a space, `\134` for a backslash, …).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal =
            bytes.get(i + 1..i + 4).filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push(d.iter().fold(0u8, |acc, c| acc.wrapping_mul(8).wrapping_add(c - b'0')));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Processes (pid and name) in whose mount namespace `device` is still mounted: a namespace
/// copied while it was mounted here (`ip netns exec`, `unshare -m`) keeps it, and with it the
/// loop device, after it is unmounted here. At most `most` of them.
pub(crate) fn holders(device: &Path, most: usize) -> Vec<(u32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let device = device.to_string_lossy();
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else { continue };
        let mountinfo = std::fs::read_to_string(entry.path().join("mountinfo")).unwrap_or_default();
        // The mount source follows the file system type after " - ".
        let mounted =
            mountinfo.lines().any(|l| l.split(" - ").nth(1).and_then(|r| r.split(' ').nth(1)) == Some(&*device));
        if mounted {
            let name = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            found.push((pid, name.trim().to_owned()));
            if found.len() >= most {
                break;
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mountinfo_lines() {
        let line = "36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 - ext3 /dev/root rw,errors=continue";
        let m = parse_line(line).unwrap();
        assert_eq!(m.point, Path::new("/mnt/with space"));
        assert_eq!(m.fstype, "ext3");
        assert_eq!(m.super_options, "rw,errors=continue");
        let cg =
            parse_line("30 25 0:26 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory").unwrap();
        assert_eq!((cg.fstype.as_str(), cg.super_options.as_str()), ("cgroup", "rw,memory"));
        assert_eq!(unescape("a\\134b\\011"), "a\\b\t");
    }

    #[test]
    fn reads_this_process_mounts() {
        assert!(is_mounted(Path::new("/")).unwrap());
        assert!(!under(Path::new("/proc")).unwrap().is_empty());
    }
}
