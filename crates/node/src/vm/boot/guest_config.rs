//! The guest's configuration, passed to `/init` as qemu fw_cfg entries `opt/zgrid/<key>`: one
//! file per key, read in the guest from `/sys/firmware/qemu_fw_cfg/by_name/opt/zgrid/<key>/raw`.

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ipnet::IpNet;

use super::BootError;

/// What the guest is told at boot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestConfig {
    /// Its host name (letters, digits, `-` and `.`).
    pub hostname: String,
    /// Its address on the private network with the prefix length, on `eth0`.
    pub address: Option<IpNet>,
    /// The default route's gateway.
    pub gateway: Option<IpAddr>,
    /// Name servers for `/etc/resolv.conf` (left as the image has it when empty).
    pub dns: Vec<IpAddr>,
    /// SSH public keys for root, one per entry (`ssh-ed25519 AAAA… comment`).
    pub authorized_keys: Vec<String>,
    /// `/etc/environment`, as `(name, value)` pairs; values may be secrets.
    pub environment: Vec<(String, String)>,
    /// virtiofs shares to mount.
    pub volumes: Vec<Volume>,
}

/// A virtiofs share the guest mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// The share's tag (qemu's `vhost-user-fs-pci,tag=`).
    pub tag: String,
    /// Where it is mounted in the guest (an absolute path).
    pub mountpoint: PathBuf,
}

impl GuestConfig {
    /// Write one file per key that has a value into `dir` (each readable by its owner only, as
    /// the environment may hold secrets) and return the qemu arguments that pass them
    /// (`-fw_cfg name=opt/zgrid/<key>,file=<dir>/<key>`, in pairs).
    pub fn write_fw_cfg(&self, dir: &Path) -> Result<Vec<String>, BootError> {
        self.check()?;
        let lines = |items: Vec<String>| items.iter().map(|line| format!("{line}\n")).collect::<String>();
        let entries = [
            ("hostname", format!("{}\n", self.hostname)),
            ("address", self.address.map(|a| format!("{a}\n")).unwrap_or_default()),
            ("gateway", self.gateway.map(|g| format!("{g}\n")).unwrap_or_default()),
            ("dns", lines(self.dns.iter().map(|ip| format!("nameserver {ip}")).collect())),
            ("authorized_keys", lines(self.authorized_keys.iter().map(|k| k.trim().to_string()).collect())),
            ("environment", lines(self.environment.iter().map(|(k, v)| format!("{k}={v}")).collect())),
            ("volumes", lines(self.volumes.iter().map(|v| format!("{} {}", v.tag, v.mountpoint.display())).collect())),
        ];
        std::fs::create_dir_all(dir).map_err(BootError::io(format!("cannot create {}", dir.display())))?;
        let mut args = Vec::new();
        for (key, contents) in entries {
            let path = dir.join(key);
            if contents.trim().is_empty() {
                // A key left out keeps what the image has; remove what an earlier boot wrote.
                std::fs::remove_file(&path)
                    .or_else(|e| if e.kind() == std::io::ErrorKind::NotFound { Ok(()) } else { Err(e) })
                    .map_err(BootError::io(format!("cannot remove {}", path.display())))?;
                continue;
            }
            write_private(&path, contents.as_bytes())
                .map_err(BootError::io(format!("cannot write {}", path.display())))?;
            // qemu's option syntax doubles a comma inside a value.
            let file = path.to_string_lossy().replace(',', ",,");
            args.extend(["-fw_cfg".to_string(), format!("name=opt/zgrid/{key},file={file}")]);
        }
        Ok(args)
    }

    /// Refuse values `/init` would misread, naming the field.
    fn check(&self) -> Result<(), BootError> {
        let bad = |what: String| Err(BootError::Invalid(what));
        let host_ok = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.';
        if self.hostname.is_empty() || self.hostname.len() > 64 || !self.hostname.chars().all(host_ok) {
            return bad(format!("hostname {:?}: use 1 to 64 letters, digits, '-' and '.'", self.hostname));
        }
        if let Some(key) = self.authorized_keys.iter().find(|k| k.trim().is_empty() || k.trim().contains('\n')) {
            return bad(format!("authorized_keys: {key:?} is not one SSH public key on one line"));
        }
        for (name, value) in &self.environment {
            let name_ok = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !name_ok {
                return bad(format!("environment: {name:?} is not a variable name (letters, digits, '_')"));
            }
            if value.contains(['\n', '\0']) {
                return bad(format!(
                    "environment: the value of {name} has a newline; /etc/environment holds one line per variable"
                ));
            }
        }
        for volume in &self.volumes {
            let tag_ok = !volume.tag.is_empty() && volume.tag.len() <= 36 && !volume.tag.contains(char::is_whitespace);
            if !tag_ok || volume.tag == super::ROOT_TAG {
                return bad(format!(
                    "volumes: tag {:?} must be 1 to 36 characters without spaces, not \"root\"",
                    volume.tag
                ));
            }
            let path = volume.mountpoint.to_string_lossy();
            if !volume.mountpoint.is_absolute() || path.contains(char::is_whitespace) || path == "/" {
                return bad(format!("volumes: mount point {path:?} must be an absolute path without spaces, not /"));
            }
        }
        Ok(())
    }
}

/// Write `bytes` to `path`, readable and writable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    file.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn config() -> GuestConfig {
        GuestConfig {
            hostname: "web-1".into(),
            address: Some("10.1.3.5/24".parse().unwrap()),
            gateway: Some("10.1.3.1".parse().unwrap()),
            dns: vec!["10.1.3.1".parse().unwrap(), "1.1.1.1".parse().unwrap()],
            authorized_keys: vec!["ssh-ed25519 AAAAC3Nza alice\n".into(), "ssh-ed25519 AAAAC3Nzb bob".into()],
            environment: vec![("TOKEN".into(), "s3cret=x y".into())],
            volumes: vec![Volume { tag: "data".into(), mountpoint: "/var/lib/data".into() }],
        }
    }

    #[test]
    fn each_key_is_a_private_file_passed_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let args = config().write_fw_cfg(dir.path()).unwrap();
        let read = |key: &str| std::fs::read_to_string(dir.path().join(key)).unwrap();
        assert_eq!(read("hostname"), "web-1\n");
        assert_eq!(read("address"), "10.1.3.5/24\n");
        assert_eq!(read("gateway"), "10.1.3.1\n");
        assert_eq!(read("dns"), "nameserver 10.1.3.1\nnameserver 1.1.1.1\n");
        assert_eq!(read("authorized_keys"), "ssh-ed25519 AAAAC3Nza alice\nssh-ed25519 AAAAC3Nzb bob\n");
        assert_eq!(read("environment"), "TOKEN=s3cret=x y\n");
        assert_eq!(read("volumes"), "data /var/lib/data\n");
        let mode = std::fs::metadata(dir.path().join("environment")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(args.len(), 14);
        assert_eq!(args[0], "-fw_cfg");
        assert_eq!(args[1], format!("name=opt/zgrid/hostname,file={}", dir.path().join("hostname").display()));
    }

    #[test]
    fn keys_without_values_are_left_out_and_stale_files_removed() {
        let dir = tempfile::tempdir().unwrap();
        config().write_fw_cfg(dir.path()).unwrap();
        let bare = GuestConfig { hostname: "vm".into(), ..GuestConfig::default() };
        let args = bare.write_fw_cfg(&dir.path().join("a,b")).unwrap();
        assert_eq!(
            args,
            ["-fw_cfg".to_string(), format!("name=opt/zgrid/hostname,file={}/a,,b/hostname", dir.path().display())]
        );
        bare.write_fw_cfg(dir.path()).unwrap();
        assert!(!dir.path().join("environment").exists());
    }

    #[test]
    fn values_init_would_misread_are_refused_by_field() {
        type Change = fn(&mut GuestConfig);
        let cases: [(&str, Change); 5] = [
            ("hostname", |c| c.hostname = "a b".into()),
            ("authorized_keys", |c| c.authorized_keys.push("ssh-ed25519 A\nssh-rsa B".into())),
            ("environment", |c| c.environment.push(("1X".into(), "v".into()))),
            ("environment", |c| c.environment.push(("X".into(), "a\nb".into()))),
            ("volumes", |c| c.volumes.push(Volume { tag: "root".into(), mountpoint: "/x".into() })),
        ];
        for (field, change) in cases {
            let mut config = config();
            change(&mut config);
            let err = config.write_fw_cfg(tempfile::tempdir().unwrap().path()).unwrap_err().to_string();
            assert!(err.starts_with(field), "{field}: {err}");
        }
    }
}
