//! The kernel a VM boots: the node's bundle (made by `scripts/vm-kernel`) or the image's own.

use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::Mode;

use super::BootError;

/// A kernel and its modules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    /// The kernel image, for qemu's `-kernel`.
    pub vmlinuz: PathBuf,
    /// Its release (`uname -r`), e.g. `6.1.0-57-cloud-amd64`.
    pub version: String,
    /// Its `lib/modules/<version>` directory (with `modules.dep`).
    pub modules: PathBuf,
    /// The root it was found in: the image's, or the bundle's directory.
    pub root: PathBuf,
}

/// Where a bundle keeps its modules (a merged-`/usr` system's place for them).
const BUNDLE_MODULES: &str = "usr/lib/modules";

impl Kernel {
    /// The kernel bundle in `dir`, as `scripts/vm-kernel` makes it: laid out as an installed
    /// kernel, `boot/vmlinuz-<version>` and `usr/lib/modules/<version>/` (with `modules.dep`),
    /// so that `dir` can also be a layer of a guest's root that gives it its kernel's modules.
    pub fn open(dir: &Path) -> Result<Kernel, BootError> {
        let hint = "make one with scripts/vm-kernel and give its directory to --vm-kernel";
        let boot = dir.join("boot");
        let versions: Vec<String> = std::fs::read_dir(&boot)
            .map_err(BootError::io(format!(
                "{} is not a kernel bundle: cannot list its boot/ ({hint})",
                dir.display()
            )))?
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok()?.strip_prefix("vmlinuz-").map(String::from))
            .collect();
        let version = match versions.as_slice() {
            [version] => version.clone(),
            [] => {
                return Err(BootError::Invalid(format!(
                    "{} is not a kernel bundle: it has no boot/vmlinuz-<version>; {hint}",
                    dir.display()
                )));
            }
            _ => {
                return Err(BootError::Invalid(format!(
                    "{} holds several kernels ({}); a bundle holds one",
                    dir.display(),
                    versions.join(", ")
                )));
            }
        };
        let modules = dir.join(BUNDLE_MODULES).join(&version);
        if !modules.join("modules.dep").is_file() {
            return Err(BootError::Invalid(format!(
                "{} has no {BUNDLE_MODULES}/{version}/modules.dep; {hint}",
                dir.display()
            )));
        }
        Ok(Kernel { vmlinuz: boot.join(format!("vmlinuz-{version}")), version, modules, root: dir.to_owned() })
    }

    /// The image's own kernel, when its root has `/boot/vmlinuz-<version>` and
    /// `/lib/modules/<version>/modules.dep` (the newest such version when there are several).
    /// Links in the image are followed inside `root`, never out of it.
    pub fn in_image(root: &Path) -> Option<Kernel> {
        let boot = open_in(root, Path::new("boot")).ok()?;
        let mut versions: Vec<String> = std::fs::read_dir(fd_path(&boot).ok()?)
            .ok()?
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok()?.strip_prefix("vmlinuz-").map(String::from))
            .collect();
        versions.sort_by_key(|v| version_key(v));
        versions.into_iter().rev().find_map(|version| {
            let vmlinuz = open_in(root, &Path::new("boot").join(format!("vmlinuz-{version}"))).ok()?;
            let modules = open_in(root, &Path::new("lib/modules").join(&version)).ok()?;
            let modules = fd_path(&modules).ok()?;
            modules.join("modules.dep").is_file().then_some(())?;
            Some(Kernel { vmlinuz: fd_path(&vmlinuz).ok()?, version, modules, root: root.to_owned() })
        })
    }

    /// Read the file at `rel` of the modules directory, at most `limit` bytes.
    pub(super) fn read_module_file(&self, rel: &Path, limit: u64) -> Result<Vec<u8>, BootError> {
        let what = || format!("cannot read {} of kernel {}", rel.display(), self.version);
        let file = open_in(&self.modules, rel).map_err(BootError::io(what()))?;
        let mut bytes = Vec::new();
        file.take(limit + 1).read_to_end(&mut bytes).map_err(BootError::io(what()))?;
        if bytes.len() as u64 > limit {
            return Err(BootError::Invalid(format!("{} is larger than {limit} bytes", what())));
        }
        Ok(bytes)
    }
}

/// Open `rel` under `root` with every link resolved as if `root` were `/`, so an image cannot
/// point the node at its own files.
fn open_in(root: &Path, rel: &Path) -> std::io::Result<File> {
    let dir = File::open(root)?;
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC)
        .mode(Mode::empty())
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = openat2(&dir, rel, how)?;
    Ok(File::from(fd))
}

/// The path an open file has on this machine.
fn fd_path(file: &File) -> std::io::Result<PathBuf> {
    std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
}

/// A sort key for kernel releases: their numbers compared as numbers (`6.10` after `6.9`).
fn version_key(version: &str) -> Vec<u64> {
    version.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).filter_map(|s| s.parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A root with a kernel at `version`.
    fn add_kernel(root: &Path, version: &str) {
        std::fs::create_dir_all(root.join("boot")).unwrap();
        std::fs::write(root.join(format!("boot/vmlinuz-{version}")), "kernel").unwrap();
        std::fs::create_dir_all(root.join(format!("lib/modules/{version}"))).unwrap();
        std::fs::write(root.join(format!("lib/modules/{version}/modules.dep")), "").unwrap();
    }

    #[test]
    fn the_images_newest_kernel_is_found() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(Kernel::in_image(root.path()), None);
        add_kernel(root.path(), "6.9.0-1-amd64");
        add_kernel(root.path(), "6.10.0-1-amd64");
        let kernel = Kernel::in_image(root.path()).unwrap();
        assert_eq!(kernel.version, "6.10.0-1-amd64");
        assert_eq!(kernel.vmlinuz, root.path().join("boot/vmlinuz-6.10.0-1-amd64"));
    }

    #[test]
    fn links_in_the_image_stay_in_the_image() {
        let root = tempfile::tempdir().unwrap();
        let host = tempfile::tempdir().unwrap();
        add_kernel(host.path(), "6.1.0-1-amd64");
        // An image whose /boot and /lib point at directories of the host.
        std::os::unix::fs::symlink(host.path().join("boot"), root.path().join("boot")).unwrap();
        std::os::unix::fs::symlink(host.path().join("lib"), root.path().join("lib")).unwrap();
        assert_eq!(Kernel::in_image(root.path()), None);
        // Links inside the image work (merged /usr: /lib -> usr/lib).
        let root = tempfile::tempdir().unwrap();
        add_kernel(&root.path().join("usr"), "6.1.0-1-amd64");
        std::fs::rename(root.path().join("usr/boot"), root.path().join("boot")).unwrap();
        std::os::unix::fs::symlink("usr/lib", root.path().join("lib")).unwrap();
        assert_eq!(Kernel::in_image(root.path()).unwrap().modules, root.path().join("usr/lib/modules/6.1.0-1-amd64"));
    }

    #[test]
    fn a_bundle_needs_a_kernel_and_its_modules() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Kernel::open(dir.path()).unwrap_err().to_string().contains("scripts/vm-kernel"));
        add_kernel(&dir.path().join("usr"), "6.1.0-57-cloud-amd64");
        assert!(Kernel::open(dir.path()).unwrap_err().to_string().contains("is not a kernel bundle"));
        std::fs::rename(dir.path().join("usr/boot"), dir.path().join("boot")).unwrap();
        let kernel = Kernel::open(dir.path()).unwrap();
        assert_eq!(kernel.version, "6.1.0-57-cloud-amd64");
        assert_eq!(kernel.modules, dir.path().join("usr/lib/modules/6.1.0-57-cloud-amd64"));
        assert_eq!(kernel.vmlinuz, dir.path().join("boot/vmlinuz-6.1.0-57-cloud-amd64"));
        std::fs::write(dir.path().join("boot/vmlinuz-6.1.0-58-cloud-amd64"), "kernel").unwrap();
        assert!(Kernel::open(dir.path()).unwrap_err().to_string().contains("several"));
    }
}
