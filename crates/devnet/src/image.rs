//! Images built from what is on this machine, so a devnet needs no registry: a root filesystem
//! of busybox-static (`apt-get install busybox-static`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Applets linked to busybox in the image.
const APPLETS: [&str; 22] = [
    "sh", "echo", "sleep", "cat", "head", "tail", "dd", "yes", "env", "ls", "true", "false", "mkdir", "printf", "rm",
    "hostname", "df", "ps", "nc", "wget", "ip", "ping",
];

/// Make a busybox root filesystem in `<dir>/busybox` (replacing one there) and return its path.
pub fn busybox_rootfs(dir: &Path) -> Result<PathBuf> {
    let image = dir.join("busybox");
    if image.exists() {
        std::fs::remove_dir_all(&image).with_context(|| format!("cannot replace {}", image.display()))?;
    }
    let bin = image.join("bin");
    std::fs::create_dir_all(&bin).with_context(|| format!("cannot create {}", bin.display()))?;
    std::fs::copy("/bin/busybox", bin.join("busybox"))
        .context("cannot copy /bin/busybox; install it: apt-get install busybox-static")?;
    for applet in APPLETS {
        std::os::unix::fs::symlink("busybox", bin.join(applet))?;
    }
    for d in ["etc", "tmp", "proc", "sys", "dev", "root"] {
        std::fs::create_dir_all(image.join(d))?;
    }
    Ok(image)
}
