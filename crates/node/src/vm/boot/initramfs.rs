//! The initramfs a VM boots with: busybox, the kernel's boot modules and `/init`
//! (`init.sh`), as a gzipped newc cpio archive built once per kernel and kept in a cache.

use std::io::Write;
use std::path::{Path, PathBuf};

use cpio::newc::{Builder, ModeFileType};
use flate2::Compression;
use flate2::write::GzEncoder;

use super::modules::{Module, boot_modules, module_bytes};
use super::{BootError, Kernel};

/// The initramfs's `/init`.
const INIT: &str = include_str!("init.sh");
/// The busybox the initramfs runs: it must be static (Debian's `busybox-static`).
const BUSYBOX: &str = "/bin/busybox";
/// Largest busybox read.
const MAX_BUSYBOX_BYTES: u64 = 32 << 20;

/// The initramfs for `kernel`, built into `cache_dir` the first time and reused afterwards
/// (its name holds the kernel's version and a hash of `/init`, the module list and busybox).
pub fn initramfs(kernel: &Kernel, cache_dir: &Path) -> Result<PathBuf, BootError> {
    let modules = boot_modules(kernel)?;
    let busybox = static_busybox()?;
    let load: String = modules.iter().map(|m| format!("{}\n", m.name)).collect();
    let mut key = blake3::Hasher::new();
    for part in [INIT.as_bytes(), load.as_bytes(), kernel.version.as_bytes(), &busybox] {
        key.update(&(part.len() as u64).to_le_bytes());
        key.update(part);
    }
    let path = cache_dir.join(format!("initramfs-{}-{}.cpio.gz", kernel.version, &key.finalize().to_hex()[..16]));
    if path.is_file() {
        return Ok(path);
    }
    std::fs::create_dir_all(cache_dir).map_err(BootError::io(format!("cannot create {}", cache_dir.display())))?;
    let what = format!("cannot write the initramfs {}", path.display());
    let temp = tempfile::NamedTempFile::new_in(cache_dir).map_err(BootError::io(&what))?;
    let mut archive = Archive { out: GzEncoder::new(temp, Compression::fast()), ino: 0 };
    archive.write(kernel, &modules, &busybox, &load).map_err(BootError::io(&what))?;
    let temp = archive.out.finish().map_err(BootError::io(&what))?;
    temp.persist(&path).map_err(|e| BootError::Io { what, source: e.error })?;
    Ok(path)
}

/// The host's busybox, refused when it is dynamically linked (it would find no libraries in
/// the initramfs).
fn static_busybox() -> Result<Vec<u8>, BootError> {
    let hint = "the initramfs needs a static busybox: apt-get install busybox-static";
    let bytes = std::fs::read(BUSYBOX).map_err(BootError::io(format!("cannot read {BUSYBOX} ({hint})")))?;
    if bytes.len() as u64 > MAX_BUSYBOX_BYTES || has_interpreter(&bytes) {
        return Err(BootError::Invalid(format!("{BUSYBOX} is not a static busybox; {hint}")));
    }
    Ok(bytes)
}

/// Whether an ELF64 little-endian executable names a dynamic loader (has a PT_INTERP header).
fn has_interpreter(elf: &[u8]) -> bool {
    let u16_at = |at: usize| elf.get(at..at + 2).map_or(0, |b| u16::from_le_bytes([b[0], b[1]]) as usize);
    let u64_at = |at: usize| elf.get(at..at + 8).map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or_default()));
    if !elf.starts_with(b"\x7fELF\x02\x01") {
        return true;
    }
    let (offset, size, count) = (u64_at(0x20) as usize, u16_at(0x36), u16_at(0x38));
    (0..count).any(|i| elf.get(offset + i * size..offset + i * size + 4) == Some(&3u32.to_le_bytes()[..]))
}

/// A cpio archive being written.
struct Archive<W: Write> {
    out: W,
    /// The last inode number given.
    ino: u32,
}

impl<W: Write> Archive<W> {
    /// The whole tree: directories, `/dev/console` (the kernel opens it for `/init`'s output
    /// before devtmpfs is mounted), busybox, the modules with their load order, `/init`.
    fn write(&mut self, kernel: &Kernel, modules: &[Module], busybox: &[u8], load: &str) -> std::io::Result<()> {
        for dir in ["bin", "dev", "proc", "sys", "newroot", "lib", "lib/modules"] {
            self.entry(Builder::new(dir).mode(0o755).set_mode_file_type(ModeFileType::Directory), &[])?;
        }
        let console = Builder::new("dev/console").mode(0o600).set_mode_file_type(ModeFileType::Char);
        self.entry(console.rdev_major(5).rdev_minor(1), &[])?;
        self.file("bin/busybox", 0o755, busybox)?;
        for module in modules {
            let bytes = module_bytes(kernel, module).map_err(std::io::Error::other)?;
            self.file(&format!("lib/modules/{}", module.name), 0o644, &bytes)?;
        }
        self.file("lib/modules/load", 0o644, load.as_bytes())?;
        self.file("init", 0o755, INIT.as_bytes())?;
        cpio::newc::trailer(&mut self.out)?;
        Ok(())
    }

    /// A regular file.
    fn file(&mut self, name: &str, mode: u32, bytes: &[u8]) -> std::io::Result<()> {
        self.entry(Builder::new(name).mode(mode).set_mode_file_type(ModeFileType::Regular), bytes)
    }

    /// An entry with its contents.
    fn entry(&mut self, builder: Builder, bytes: &[u8]) -> std::io::Result<()> {
        self.ino += 1;
        let size = u32::try_from(bytes.len()).map_err(std::io::Error::other)?;
        let mut writer = builder.ino(self.ino).write(&mut self.out, size);
        writer.write_all(bytes)?;
        writer.finish()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kernel bundle with fake modules, two of them compressed.
    fn fake_kernel(dir: &Path) -> Kernel {
        let modules = dir.join("usr/lib/modules/6.1.0-test");
        let dep = "kernel/fw/qemu_fw_cfg.ko:\nkernel/virtio/virtio_pci.ko: kernel/virtio/virtio.ko.zst\n\
                   kernel/virtio/virtio.ko.zst:\nkernel/net/virtio_net.ko: kernel/virtio/virtio.ko.zst\n\
                   kernel/fs/fuse.ko.xz:\nkernel/fs/virtiofs.ko: kernel/fs/fuse.ko.xz\n";
        for line in dep.lines() {
            let path = modules.join(line.split(':').next().unwrap());
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            let contents = format!("module {name}");
            let bytes = if name.ends_with(".zst") {
                zstd::encode_all(contents.as_bytes(), 1).unwrap()
            } else if name.ends_with(".xz") {
                let mut out = Vec::new();
                lzma_rs::xz_compress(&mut contents.as_bytes(), &mut out).unwrap();
                out
            } else {
                contents.into_bytes()
            };
            std::fs::write(path, bytes).unwrap();
        }
        std::fs::write(modules.join("modules.dep"), dep).unwrap();
        std::fs::create_dir_all(dir.join("boot")).unwrap();
        std::fs::write(dir.join("boot/vmlinuz-6.1.0-test"), "kernel").unwrap();
        Kernel::open(dir).unwrap()
    }

    #[test]
    fn the_archive_holds_busybox_the_modules_in_order_and_init() {
        let bundle = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let kernel = fake_kernel(bundle.path());
        let path = initramfs(&kernel, cache.path()).unwrap();
        assert_eq!(initramfs(&kernel, cache.path()).unwrap(), path, "built once");
        assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 1, "no temporary file left");

        // Unpack it with GNU cpio, as the kernel would.
        let out = tempfile::tempdir().unwrap();
        let gz = std::fs::read(&path).unwrap();
        let mut cpio = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(gz.as_slice()), &mut cpio).unwrap();
        let mut child = std::process::Command::new("cpio")
            .args(["-idm", "--quiet", "--no-absolute-filenames"])
            .current_dir(out.path())
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("GNU cpio (apt-get install cpio)");
        child.stdin.take().unwrap().write_all(&cpio).unwrap();
        assert!(child.wait().unwrap().success());

        let root = out.path();
        assert_eq!(std::fs::read(root.join("bin/busybox")).unwrap(), std::fs::read(BUSYBOX).unwrap());
        assert_eq!(std::fs::read_to_string(root.join("init")).unwrap(), INIT);
        assert_eq!(
            std::fs::read_to_string(root.join("lib/modules/load")).unwrap(),
            "qemu_fw_cfg.ko\nvirtio.ko\nvirtio_pci.ko\nvirtio_net.ko\nfuse.ko\nvirtiofs.ko\n"
        );
        assert_eq!(std::fs::read_to_string(root.join("lib/modules/virtio.ko")).unwrap(), "module virtio.ko.zst");
        assert_eq!(std::fs::read_to_string(root.join("lib/modules/fuse.ko")).unwrap(), "module fuse.ko.xz");
        use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
        assert_eq!(std::fs::metadata(root.join("init")).unwrap().permissions().mode() & 0o777, 0o755);
        let console = std::fs::metadata(root.join("dev/console")).unwrap();
        assert!(console.file_type().is_char_device());
        assert_eq!(console.rdev(), nix::sys::stat::makedev(5, 1));
    }

    #[test]
    fn a_kernel_without_virtiofs_is_refused_with_the_reason() {
        let bundle = tempfile::tempdir().unwrap();
        let kernel = fake_kernel(bundle.path());
        std::fs::write(kernel.modules.join("modules.dep"), "kernel/fw/qemu_fw_cfg.ko:\n").unwrap();
        let err = initramfs(&kernel, bundle.path()).unwrap_err().to_string();
        assert!(err.contains("virtio_pci") && err.contains("6.1.0-test"), "{err}");
    }

    #[test]
    fn a_dynamic_executable_is_not_taken_for_a_static_busybox() {
        assert!(!has_interpreter(&std::fs::read(BUSYBOX).unwrap()));
        assert!(has_interpreter(&std::fs::read("/bin/sh").unwrap()));
    }
}
