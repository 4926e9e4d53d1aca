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
}

impl Kernel {
    /// The kernel bundle in `dir`, as `scripts/vm-kernel` makes it: `vmlinuz` and
    /// `lib/modules/<version>/`.
    pub fn open(dir: &Path) -> Result<Kernel, BootError> {
        let hint = "make one with scripts/vm-kernel and give its directory to --vm-kernel";
        let vmlinuz = dir.join("vmlinuz");
        if !vmlinuz.is_file() {
            return Err(BootError::Invalid(format!(
                "{} is not a kernel bundle: it has no vmlinuz; {hint}",
                dir.display()
            )));
        }
        let modules_root = dir.join("lib/modules");
        let versions: Vec<String> = std::fs::read_dir(&modules_root)
            .map_err(BootError::io(format!("cannot list {} ({hint})", modules_root.display())))?
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| modules_root.join(name).join("modules.dep").is_file())
            .collect();
        match versions.as_slice() {
            [version] => Ok(Kernel { vmlinuz, version: version.clone(), modules: modules_root.join(version) }),
            [] => {
                Err(BootError::Invalid(format!("{} has no lib/modules/<version>/modules.dep; {hint}", dir.display())))
            }
            _ => Err(BootError::Invalid(format!(
                "{} holds modules of several kernels ({}); a bundle holds one",
                dir.display(),
                versions.join(", ")
            ))),
        }
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
            Some(Kernel { vmlinuz: fd_path(&vmlinuz).ok()?, version, modules })
        })
    }

    /// Where the guest looks for this kernel's modules, relative to its root
    /// (`lib/modules/<version>`). A guest booted with the node's kernel finds none in its image:
    /// mount [`Kernel::modules`] there, read-only, before virtiofsd starts, so that udev can load
    /// what the guest needs (`button` for ACPI shutdown, `overlay`, netfilter).
    pub fn guest_modules_path(&self) -> PathBuf {
        Path::new("lib/modules").join(&self.version)
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
        assert_eq!(kernel.guest_modules_path(), Path::new("lib/modules/6.10.0-1-amd64"));
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
    fn a_bundle_needs_a_kernel_and_one_modules_directory() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Kernel::open(dir.path()).unwrap_err().to_string().contains("scripts/vm-kernel"));
        add_kernel(dir.path(), "6.1.0-57-cloud-amd64");
        std::fs::rename(dir.path().join("boot/vmlinuz-6.1.0-57-cloud-amd64"), dir.path().join("vmlinuz")).unwrap();
        let kernel = Kernel::open(dir.path()).unwrap();
        assert_eq!(kernel.version, "6.1.0-57-cloud-amd64");
        assert_eq!(kernel.modules, dir.path().join("lib/modules/6.1.0-57-cloud-amd64"));
        add_kernel(dir.path(), "6.1.0-58-cloud-amd64");
        assert!(Kernel::open(dir.path()).unwrap_err().to_string().contains("several"));
    }
}
