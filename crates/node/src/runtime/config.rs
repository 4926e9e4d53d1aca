//! What one container is started from ([`ContainerConfig`]), what it is doing
//! ([`ContainerState`]), and the checks that keep bad input from reaching paths, mount options
//! or runc.

use std::path::{Component, Path, PathBuf};

use super::RuntimeError;

/// Smallest writable layer mkfs.ext4 is asked to format, MiB.
pub const MIN_DISK_MIB: u64 = 8;

/// Everything needed to run one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerConfig {
    /// Unique id (the workload id): 1 to 32 characters from `[a-z0-9-]`; names the container's
    /// directory, runc container and cgroups.
    pub id: String,
    /// The read-only root filesystem directory (the overlay's lower layer).
    pub image: PathBuf,
    /// Environment variables, applied over the image's.
    pub env: Vec<(String, String)>,
    /// The image's defaults (entrypoint, cmd, env, workdir) as a JSON file outside the image;
    /// `None` reads the image's own `/.zgrid/config.json`, if any.
    pub image_config: Option<PathBuf>,
    /// The argv; empty runs the image's default (see `image_config`, else `/bin/sh`).
    pub args: Vec<String>,
    /// Hostname inside the container.
    pub hostname: String,
    /// vCPUs: the CFS quota is `cpu` × 100 000 µs per 100 000 µs period; 0 leaves CPU unlimited.
    pub cpu: u32,
    /// Memory limit in MiB, swap included (no swap).
    pub memory_mib: u64,
    /// Size of the writable layer in MiB (at least [`MIN_DISK_MIB`]); fixed when the layer is
    /// first created.
    pub disk_mib: u64,
    /// Most processes and threads at once; 0 or less leaves it unlimited.
    pub pids_limit: i64,
    /// Network namespace to join (e.g. `/var/run/netns/x`), made inside the container's user
    /// namespace ([`Runtime::user_namespace`]) when it has one; `None` gives a new, empty one.
    ///
    /// [`Runtime::user_namespace`]: super::Runtime::user_namespace
    pub netns: Option<PathBuf>,
    /// Host directories (volumes) bind-mounted into the container, read-write.
    pub binds: Vec<Bind>,
    /// A static program of the host mounted read-only at [`HOST_INIT`] in the container, for
    /// `args` to run instead of anything from the image.
    pub host_init: Option<PathBuf>,
}

/// Where [`ContainerConfig::host_init`] appears in the container.
pub const HOST_INIT: &str = "/.zgrid/init";

/// A host directory mounted into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// The directory on the host (absolute).
    pub source: PathBuf,
    /// Where it appears in the container: an absolute path without `.` or `..`, not `/`.
    pub destination: String,
}

/// What a container is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerState {
    /// Its init process runs (or is paused).
    Running {
        /// Host pid of the container's init process.
        pid: u32,
    },
    /// It exists on this node but its process is gone (or never got past creation).
    Stopped {
        /// Whether the kernel's OOM killer killed a process of the container.
        oom_killed: bool,
    },
    /// Nothing of it exists on this node.
    Missing,
}

/// Check that `id` is usable as a directory, runc and cgroup name.
pub(crate) fn check_id(id: &str) -> Result<(), RuntimeError> {
    let ok = !id.is_empty()
        && id.len() <= 32
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok { Ok(()) } else { Err(RuntimeError::InvalidId { id: id.to_owned() }) }
}

impl ContainerConfig {
    /// Check everything that would otherwise fail late or reach paths and mount options.
    pub(crate) fn validate(&self) -> Result<(), RuntimeError> {
        check_id(&self.id)?;
        let bad = |field, reason: String| Err(RuntimeError::InvalidConfig { id: self.id.clone(), field, reason });
        let image = self.image.to_string_lossy();
        if !self.image.is_absolute() || image.contains([',', ':', '\n']) {
            return bad("image", format!("{image} must be an absolute path without ',', ':' or newlines"));
        }
        if !self.image.is_dir() {
            return bad("image", format!("{image} is not a directory"));
        }
        let host_ok = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'.';
        if self.hostname.is_empty() || self.hostname.len() > 64 || !self.hostname.bytes().all(host_ok) {
            return bad("hostname", format!("{:?} must be 1 to 64 characters from [A-Za-z0-9.-]", self.hostname));
        }
        if let Some((k, _)) = self.env.iter().find(|(k, v)| k.is_empty() || k.contains(['=', '\0']) || v.contains('\0'))
        {
            return bad(
                "env",
                format!("variable {k:?} has an empty name, or '=' or NUL in its name, or NUL in its value"),
            );
        }
        if self.args.iter().any(|a| a.contains('\0')) {
            return bad("args", "arguments cannot contain NUL".to_owned());
        }
        if self.memory_mib == 0 {
            return bad("memory_mib", "must be at least 1".to_owned());
        }
        if self.disk_mib < MIN_DISK_MIB {
            return bad("disk_mib", format!("{} is below the minimum of {MIN_DISK_MIB}", self.disk_mib));
        }
        if let Some(ns) = self.netns.as_ref().filter(|ns| !ns.exists()) {
            return bad("netns", format!("{} does not exist", ns.display()));
        }
        for bind in &self.binds {
            let dest = Path::new(&bind.destination);
            let plain = dest.components().skip(1).all(|c| matches!(c, Component::Normal(_)));
            if !dest.is_absolute() || !plain || dest == Path::new("/") || bind.destination.contains('\0') {
                let reason =
                    format!("mount point {:?} must be an absolute path below / without . or ..", bind.destination);
                return bad("binds", reason);
            }
            if !bind.source.is_absolute() || !bind.source.is_dir() {
                return bad("binds", format!("{} is not a directory", bind.source.display()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ContainerConfig {
        ContainerConfig {
            id: "abc-1".into(),
            image: "/".into(),
            image_config: None,
            env: vec![("A".into(), "b".into())],
            args: vec![],
            hostname: "web.local".into(),
            cpu: 1,
            memory_mib: 64,
            disk_mib: 64,
            pids_limit: 100,
            netns: None,
            binds: vec![],
            host_init: None,
        }
    }

    #[test]
    fn ids() {
        assert!(check_id("abc-123").is_ok());
        for bad in ["", "ABC", "a/b", "..", "a_b", &"x".repeat(33)] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn configs() {
        let mut with_volume = cfg();
        with_volume.binds.push(Bind { source: "/".into(), destination: "/var/lib/data".into() });
        assert!(with_volume.validate().is_ok());
        let cases: [fn(&mut ContainerConfig); 11] = [
            |c| c.image = "relative".into(),
            |c| c.image = "/a,b".into(),
            |c| c.hostname = "a b".into(),
            |c| c.env.push(("A=B".into(), "c".into())),
            |c| c.memory_mib = 0,
            |c| c.disk_mib = 1,
            |c| c.netns = Some("/nonexistent/netns".into()),
            |c| c.binds.push(Bind { source: "/".into(), destination: "/data/../etc".into() }),
            |c| c.binds.push(Bind { source: "/".into(), destination: "data".into() }),
            |c| c.binds.push(Bind { source: "/".into(), destination: "/".into() }),
            |c| c.binds.push(Bind { source: "/nonexistent/volume".into(), destination: "/data".into() }),
        ];
        for (i, edit) in cases.iter().enumerate() {
            let mut c = cfg();
            edit(&mut c);
            let err = c.validate().unwrap_err();
            assert!(err.to_string().contains("abc-1"), "case {i}: {err}");
        }
    }
}
