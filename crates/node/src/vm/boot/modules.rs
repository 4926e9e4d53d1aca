//! The kernel modules the initramfs loads, in an order that loads each one's dependencies
//! first, found through the kernel's `modules.dep`.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::Path;

use super::{BootError, Kernel};

/// Modules `/init` loads, and whether the boot needs each: fw_cfg (the guest's configuration),
/// virtio over PCI, the network device, virtiofs (the root), and the panic device that lets
/// qemu see a guest panic.
pub(super) const BOOT_MODULES: &[(&str, bool)] = &[
    ("qemu_fw_cfg", true),
    ("virtio_pci", true),
    ("virtio_net", true),
    ("fuse", true),
    ("virtiofs", true),
    ("pvpanic_pci", false),
];

/// Largest `modules.dep` or `modules.builtin` read (Debian's are about 300 kB).
const MAX_INDEX_BYTES: u64 = 16 << 20;
/// Largest module file read (compressed or not).
const MAX_MODULE_BYTES: u64 = 64 << 20;

/// A module to put in the initramfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Module {
    /// Its path in the modules directory, as `modules.dep` names it (`kernel/fs/fuse/fuse.ko`).
    pub path: String,
    /// Its file name in the initramfs, uncompressed (`fuse.ko`).
    pub name: String,
}

/// The modules of `wanted` and all they depend on, dependencies first, each once. Modules
/// built into the kernel (listed in `builtin`) are left out; a needed one that is neither
/// built in nor in `dep` is an error.
pub(super) fn load_order(dep: &str, builtin: &str, wanted: &[(&str, bool)]) -> Result<Vec<Module>, String> {
    let mut by_name: HashMap<String, (&str, Vec<&str>)> = HashMap::new();
    for line in dep.lines() {
        let Some((path, deps)) = line.split_once(':') else { continue };
        by_name.insert(module_name(path), (path, deps.split_whitespace().collect()));
    }
    let builtin: HashSet<String> = builtin.lines().map(module_name).collect();
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    for (name, needed) in wanted {
        let name = module_name(name);
        match by_name.get(&name) {
            Some((path, _)) => visit(path, &by_name, &mut seen, &mut order),
            None if builtin.contains(&name) || !needed => {}
            None => return Err(format!("the kernel has no module {name}, neither built in nor in modules.dep")),
        }
    }
    Ok(order)
}

/// Add `path` after its dependencies (depth first).
fn visit<'a>(
    path: &'a str,
    by_name: &HashMap<String, (&'a str, Vec<&'a str>)>,
    seen: &mut HashSet<&'a str>,
    order: &mut Vec<Module>,
) {
    // The path modules.dep gives the module itself.
    let (path, deps) = match by_name.get(&module_name(path)) {
        Some((own, deps)) => (*own, deps.as_slice()),
        None => (path, &[][..]),
    };
    if !seen.insert(path) {
        return;
    }
    for dep in deps {
        visit(dep, by_name, seen, order);
    }
    let file = path.rsplit('/').next().unwrap_or(path);
    let name = format!("{}.ko", file.split(".ko").next().unwrap_or(file));
    order.push(Module { path: path.to_string(), name });
}

/// A module's name from its path or name, as modprobe compares them: no directory, no `.ko`
/// suffix (compressed or not), `-` and `_` alike.
fn module_name(path: &str) -> String {
    let file = path.trim().rsplit('/').next().unwrap_or_default();
    file.split(".ko").next().unwrap_or(file).replace('-', "_")
}

/// The boot modules of `kernel` in load order.
pub(super) fn boot_modules(kernel: &Kernel) -> Result<Vec<Module>, BootError> {
    let index = |name: &str| -> Result<String, BootError> {
        match kernel.read_module_file(Path::new(name), MAX_INDEX_BYTES) {
            Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
            // A kernel with every module built in may have no modules.builtin at all.
            Err(BootError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound && name != "modules.dep" =>
            {
                Ok(String::new())
            }
            Err(e) => Err(e),
        }
    };
    load_order(&index("modules.dep")?, &index("modules.builtin")?, BOOT_MODULES).map_err(|e| {
        BootError::Invalid(format!(
            "kernel {} cannot boot a VM: {e}; use a kernel with virtio, fuse and virtiofs",
            kernel.version
        ))
    })
}

/// A module's contents, uncompressed (modules may be `.ko`, `.ko.xz`, `.ko.zst` or `.ko.gz`).
pub(super) fn module_bytes(kernel: &Kernel, module: &Module) -> Result<Vec<u8>, BootError> {
    let raw = kernel.read_module_file(Path::new(&module.path), MAX_MODULE_BYTES)?;
    let what = || format!("cannot decompress module {} of kernel {}", module.path, kernel.version);
    let mut out = Vec::new();
    let bounded = |r: &mut dyn Read, out: &mut Vec<u8>| r.take(MAX_MODULE_BYTES).read_to_end(out).map(|_| ());
    if module.path.ends_with(".ko") {
        return Ok(raw);
    } else if module.path.ends_with(".ko.xz") {
        let mut limited = Limited(&mut out);
        lzma_rs::xz_decompress(&mut raw.as_slice(), &mut limited)
            .map_err(|e| BootError::Invalid(format!("{}: {e}", what())))?;
    } else if module.path.ends_with(".ko.zst") {
        let mut decoder = zstd::Decoder::new(raw.as_slice()).map_err(BootError::io(what()))?;
        bounded(&mut decoder, &mut out).map_err(BootError::io(what()))?;
    } else if module.path.ends_with(".ko.gz") {
        bounded(&mut flate2::read::GzDecoder::new(raw.as_slice()), &mut out).map_err(BootError::io(what()))?;
    } else {
        return Err(BootError::Invalid(format!("{}: unknown compression", what())));
    }
    Ok(out)
}

/// A writer that refuses to grow its vector past [`MAX_MODULE_BYTES`].
struct Limited<'a>(&'a mut Vec<u8>);

impl std::io::Write for Limited<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if (self.0.len() + buf.len()) as u64 > MAX_MODULE_BYTES {
            return Err(std::io::Error::other(format!("larger than {MAX_MODULE_BYTES} bytes")));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The relevant lines of Debian 6.1's modules.dep, in its own order.
    const DEP: &str = "\
kernel/fs/fuse/fuse.ko:
kernel/fs/fuse/virtiofs.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko kernel/fs/fuse/fuse.ko
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/misc/pvpanic/pvpanic.ko:
kernel/drivers/misc/pvpanic/pvpanic-pci.ko: kernel/drivers/misc/pvpanic/pvpanic.ko
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
kernel/drivers/firmware/qemu_fw_cfg.ko.xz:
";

    fn names(modules: &[Module]) -> Vec<&str> {
        modules.iter().map(|m| m.name.as_str()).collect()
    }

    #[test]
    fn dependencies_load_first_and_once() {
        let order = load_order(DEP, "", BOOT_MODULES).unwrap();
        assert_eq!(
            names(&order),
            [
                "qemu_fw_cfg.ko",
                "virtio_pci_legacy_dev.ko",
                "virtio_pci_modern_dev.ko",
                "virtio_ring.ko",
                "virtio.ko",
                "virtio_pci.ko",
                "failover.ko",
                "net_failover.ko",
                "virtio_net.ko",
                "fuse.ko",
                "virtiofs.ko",
                "pvpanic.ko",
                "pvpanic-pci.ko",
            ]
        );
        assert_eq!(order[0].path, "kernel/drivers/firmware/qemu_fw_cfg.ko.xz");
    }

    #[test]
    fn built_in_and_optional_modules_are_skipped_and_missing_ones_named() {
        let dep = "kernel/drivers/firmware/qemu_fw_cfg.ko:\nkernel/drivers/net/virtio_net.ko:\n";
        let builtin = "kernel/drivers/virtio/virtio_pci.ko\nkernel/fs/fuse/fuse.ko\nkernel/fs/fuse/virtiofs.ko\n";
        let order = load_order(dep, builtin, BOOT_MODULES).unwrap();
        assert_eq!(names(&order), ["qemu_fw_cfg.ko", "virtio_net.ko"]);
        let err = load_order(dep, "", BOOT_MODULES).unwrap_err();
        assert!(err.contains("virtio_pci"), "{err}");
    }
}
