//! The VM workload: a virtual machine booted from an flist (the same kind of root filesystem a
//! container uses), reachable only on its owner's private network, configured at first boot
//! with SSH keys, environment and extra kernel command line words.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::container::{Capacity, FlistSource, VolumeMount, check_environment, check_image, check_mounts};
use crate::validate::{Valid, check_name, ensure};

/// Smallest memory a VM may ask for, in MiB: what a stock Debian kernel and init need to boot.
pub const MIN_VM_MEMORY_MIB: u64 = 256;

/// Longest [`Vm::kernel_args`], in bytes.
pub const MAX_KERNEL_ARGS: usize = 1024;

/// Kernel parameters the node sets itself (the root filesystem, the init and the console it
/// keeps as the VM's log); [`Vm::kernel_args`] may not set them.
const NODE_KERNEL_PARAMS: [&str; 5] = ["root", "rootfstype", "init", "rdinit", "console"];

/// Prefix of the parameters the node passes to the guest's configuration (`zgrid.*`).
const NODE_PARAM_PREFIX: &str = "zgrid.";

/// A virtual machine started from an flist image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Vm {
    /// URL of an flist on a hub, or a directory or tar archive on the node (as a container's
    /// [`super::Container::flist`]); its tree is the guest's root filesystem.
    pub flist: String,
    /// Hub that serves the flist's chunks, when not the flist's own.
    #[serde(default)]
    pub hub_url: String,
    /// The flist's address (BLAKE3 of its file, 64 hex digits): the node refuses any other
    /// content. Empty: whatever the URL serves when the VM is first started.
    #[serde(default)]
    pub flist_hash: String,
    /// Virtual CPUs, memory, and the size of the writable layer over the image (`disk_size`).
    pub capacity: Capacity,
    /// Name of the owner's network the VM joins; it is reachable only there.
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]{0,63}$")]
    pub network_id: String,
    /// Static address inside the node's /24 of that network.
    #[schema(value_type = String, format = Ipv4)]
    pub ipaddress: Ipv4Addr,
    /// OpenSSH public keys allowed to log in, one key line each.
    #[serde(default)]
    pub ssh_keys: Vec<String>,
    /// Extra words for the guest kernel's command line (at most [`MAX_KERNEL_ARGS`] bytes of
    /// printable ASCII). The node appends its own parameters after them, so they may not set
    /// `root=`, `rootfstype=`, `init=`, `rdinit=`, `console=` or `zgrid.*`, nor end the kernel's
    /// parameters (`--`) or leave a quote open.
    #[serde(default)]
    pub kernel_args: String,
    /// Environment variables for the guest.
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// Environment variables whose values are sealed to the node's key
    /// ([`crate::sealed::seal_secret`]: `v1:<base64>`).
    #[serde(default)]
    pub secret_environment: BTreeMap<String, String>,
    /// Volumes to attach, each shared into the guest at its mountpoint.
    #[serde(default)]
    pub volumes: Vec<VolumeMount>,
}

impl Vm {
    /// Where the image comes from, as the node reads `flist` ([`super::flist_source`]).
    pub fn flist_source(&self) -> Result<FlistSource<'_>, crate::ValidationError> {
        super::flist_source(&self.flist, &self.flist_hash)
    }

    pub(super) fn validate(&self) -> Valid {
        check_image(&self.flist, &self.hub_url, &self.flist_hash)?;
        self.capacity.validate(MIN_VM_MEMORY_MIB).map_err(|e| e.within("capacity"))?;
        check_name(&self.network_id, "network_id")?;
        check_ssh_keys(&self.ssh_keys)?;
        check_kernel_args(&self.kernel_args)?;
        check_environment(&self.environment, &self.secret_environment)?;
        check_mounts(&self.volumes)
    }
}

/// Whether `line` is one OpenSSH public key line, such as `ssh-ed25519 AAAA... me@host`.
pub fn is_ssh_public_key(line: &str) -> bool {
    ["ssh-", "ecdsa-", "sk-"].iter().any(|p| line.starts_with(p))
        && line.split_whitespace().count() >= 2
        && !line.contains(['\n', '\r'])
}

/// Check that each of `keys` (the field `ssh_keys`) is one OpenSSH public key line.
pub(super) fn check_ssh_keys(keys: &[String]) -> Valid {
    for (i, key) in keys.iter().enumerate() {
        ensure(is_ssh_public_key(key), &format!("ssh_keys[{i}]"), || {
            "must be one OpenSSH public key line such as \"ssh-ed25519 AAAA... me@host\"".into()
        })?;
    }
    Ok(())
}

/// Check extra kernel command line words (the field `kernel_args`): printable ASCII within
/// [`MAX_KERNEL_ARGS`] bytes, balanced double quotes, no `--`, and none of the parameters the
/// node sets itself.
pub fn check_kernel_args(args: &str) -> Valid {
    let field = "kernel_args";
    ensure(args.len() <= MAX_KERNEL_ARGS, field, || {
        format!("is {} bytes; the limit is {MAX_KERNEL_ARGS}", args.len())
    })?;
    ensure(args.bytes().all(|b| b == b' ' || b.is_ascii_graphic()), field, || {
        "must be printable ASCII words separated by spaces (no tabs, newlines or other control characters)".into()
    })?;
    ensure(args.matches('"').count().is_multiple_of(2), field, || {
        "has an unbalanced double quote, which would swallow the node's own parameters".into()
    })?;
    for word in args.split_whitespace() {
        // The kernel reads `"name=value"` as `name=value`.
        let param = word.trim_start_matches('"');
        let name = param.split_once('=').map_or(param, |(name, _)| name);
        ensure(word != "--", field, || {
            "\"--\" would hand the node's own kernel parameters to init; pass init's arguments another way".into()
        })?;
        ensure(!NODE_KERNEL_PARAMS.contains(&name) || !param.contains('='), field, || {
            format!("{word:?} sets {name}=, which the node sets to boot the VM from its image; remove it")
        })?;
        ensure(!name.starts_with(NODE_PARAM_PREFIX), field, || {
            format!(
                "{word:?}: parameters starting with {NODE_PARAM_PREFIX} carry the node's configuration of the guest; remove it"
            )
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Keypair;
    use crate::workload::DiskType;

    fn debian() -> Vm {
        let node = Keypair::from_seed(&[5; 32]).public();
        Vm {
            flist: "https://hub.example/debian-vm.flist".into(),
            hub_url: String::new(),
            flist_hash: "a".repeat(64),
            capacity: Capacity { cpu: 2, memory: 1024, disk_size: 2048, disk_type: DiskType::Ssd },
            network_id: "office".into(),
            ipaddress: Ipv4Addr::new(10, 20, 1, 5),
            ssh_keys: vec!["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMq me@laptop".into()],
            kernel_args: "quiet mitigations=off systemd.unit=multi-user.target \"foo=a b\"".into(),
            environment: [("GREETING".to_string(), "hello".to_string())].into(),
            secret_environment: [("TOKEN".to_string(), crate::sealed::seal_secret(&node, "hunter2"))].into(),
            volumes: vec![VolumeMount { volume_id: crate::WorkloadId::from_u64(7), mountpoint: "/data".into() }],
        }
    }

    /// One change to a valid VM.
    type Change = fn(&mut Vm);

    /// The refusal `change` makes `validate` return, or `None` when it passes.
    fn refused(change: impl FnOnce(&mut Vm)) -> Option<crate::ValidationError> {
        let mut vm = debian();
        change(&mut vm);
        vm.validate().err()
    }

    fn field(change: impl FnOnce(&mut Vm)) -> Option<String> {
        refused(change).map(|e| e.field)
    }

    #[test]
    fn a_complete_vm_is_valid() {
        assert_eq!(debian().validate(), Ok(()));
        assert_eq!(field(|v| v.flist = "/srv/images/debian".into()).as_deref(), Some("flist_hash"));
        let local = |v: &mut Vm| {
            v.flist = "/srv/images/debian".into();
            v.flist_hash.clear();
        };
        assert_eq!(field(local), None, "a VM boots from an image on the node like a container");
    }

    #[test]
    fn each_refusal_names_its_field() {
        let cases: [(&str, Change); 15] = [
            ("flist", |v| v.flist = "ftp://hub.example/a.flist".into()),
            ("flist_hash", |v| v.flist_hash = "xyz".into()),
            ("hub_url", |v| v.hub_url = "hub.example".into()),
            ("capacity.cpu", |v| v.capacity.cpu = 0),
            ("capacity.cpu", |v| v.capacity.cpu = 257),
            ("capacity.memory", |v| v.capacity.memory = MIN_VM_MEMORY_MIB - 1),
            ("capacity.disk_size", |v| v.capacity.disk_size = 10),
            ("network_id", |v| v.network_id = "Office Net".into()),
            ("network_id", |v| v.network_id.clear()),
            ("ssh_keys[1]", |v| v.ssh_keys.push("AAAAC3Nza me@laptop".into())),
            ("ssh_keys[0]", |v| v.ssh_keys[0].push_str("\nssh-rsa AAAA other")),
            ("environment.MY VAR", |v| _ = v.environment.insert("MY VAR".into(), "1".into())),
            ("secret_environment.S", |v| _ = v.secret_environment.insert("S".into(), "clear".into())),
            ("volumes[0].mountpoint", |v| v.volumes[0].mountpoint = "data".into()),
            ("kernel_args", |v| v.kernel_args = "a".repeat(MAX_KERNEL_ARGS + 1)),
        ];
        for (expected, change) in cases {
            assert_eq!(field(change).as_deref(), Some(expected), "{expected}");
        }
        let at_minimum = |v: &mut Vm| v.capacity.memory = MIN_VM_MEMORY_MIB;
        assert_eq!(field(at_minimum), None);
    }

    #[test]
    fn kernel_args_cannot_set_what_the_node_owns() {
        for word in
            ["root=/dev/vda", "rootfstype=ext4", "init=/bin/sh", "rdinit=/x", "console=ttyS1", "\"init=/bin/sh\""]
        {
            let e = refused(|v| v.kernel_args = format!("quiet {word}")).expect(word);
            assert_eq!(e.field, "kernel_args");
            assert!(e.message.contains(word.trim_matches('"')) && e.message.contains("the node sets"), "{word}: {e}");
        }
        for word in ["zgrid.ip=10.20.1.9", "zgrid.anything"] {
            let e = refused(|v| v.kernel_args = word.into()).expect(word);
            assert!(e.field == "kernel_args" && e.message.contains(word), "{e}");
        }
        for bad in ["quiet\tsplash", "a\nroot=/dev/sda", "caf\u{e9}", "foo=\"a b", "quiet -- single"] {
            assert_eq!(field(|v| v.kernel_args = bad.into()).as_deref(), Some("kernel_args"), "{bad:?}");
        }
        // Words that merely contain a node parameter's name are the owner's.
        for fine in ["rootdelay=2", "initcall_debug", "root", "consoleblank=0", "nozgrid.x=1", ""] {
            assert_eq!(field(|v| v.kernel_args = fine.into()), None, "{fine:?}");
        }
    }

    #[test]
    fn ssh_key_lines_are_recognised() {
        assert!(is_ssh_public_key("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 me@host"));
        assert!(is_ssh_public_key("ecdsa-sha2-nistp256 AAAAE2VjZHNh"));
        for bad in ["", "ssh-ed25519", "-----BEGIN OPENSSH PRIVATE KEY-----", "AAAA me", "ssh-rsa AAAA\r"] {
            assert!(!is_ssh_public_key(bad), "{bad:?}");
        }
    }
}
