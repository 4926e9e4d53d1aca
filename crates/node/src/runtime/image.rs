//! The image's own defaults, from `/.zgrid/config.json` in its root (written there when the
//! image is imported): entrypoint, command, environment and working directory. They are merged
//! with the container's configuration into the process runc starts.

use std::path::Path;

use serde::Deserialize;

use super::{ContainerConfig, RuntimeError};

/// Where an image keeps its defaults, relative to its root.
pub const IMAGE_CONFIG: &str = ".zgrid/config.json";

/// `PATH` for images that do not set one (runc's default).
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The largest image config read.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// The image defaults; every field may be absent or null.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
struct ImageConfig {
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    /// `NAME=value` entries.
    env: Option<Vec<String>>,
    workdir: Option<String>,
}

/// The process a container runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Process {
    /// argv.
    pub args: Vec<String>,
    /// `NAME=value` entries.
    pub env: Vec<String>,
    /// Absolute working directory.
    pub cwd: String,
}

/// Work out the process for `cfg`: its args, else the image's entrypoint + cmd, else `/bin/sh`.
/// The environment is the image's overridden by `cfg.env`; the working directory is the image's
/// or `/`.
pub(crate) fn process(cfg: &ContainerConfig) -> Result<Process, RuntimeError> {
    let image = read(cfg)?;
    let mut args = cfg.args.clone();
    if args.is_empty() {
        args = image.entrypoint.unwrap_or_default();
        args.extend(image.cmd.unwrap_or_default());
    }
    if args.is_empty() {
        tracing::warn!(container = %cfg.id, image = %cfg.image.display(), "no args and no entrypoint in the image's {IMAGE_CONFIG}; running /bin/sh");
        args = vec!["/bin/sh".to_owned()];
    }
    let mut env: Vec<String> = image.env.unwrap_or_default();
    for (k, v) in &cfg.env {
        let prefix = format!("{k}=");
        env.retain(|e| !e.starts_with(&prefix));
        env.push(format!("{k}={v}"));
    }
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.to_owned());
    }
    let cwd = image.workdir.filter(|w| w.starts_with('/')).unwrap_or_else(|| "/".to_owned());
    Ok(Process { args, env, cwd })
}

/// Read the image's config (the agent's file for it, else the image's own); an image without
/// one has no defaults. Symbolic links in the image are not followed, so an image cannot point
/// the agent at a host file.
fn read(cfg: &ContainerConfig) -> Result<ImageConfig, RuntimeError> {
    let dir = cfg.image.join(".zgrid");
    let path = cfg.image_config.clone().unwrap_or_else(|| cfg.image.join(IMAGE_CONFIG));
    let bad = |reason: String| RuntimeError::ImageConfig { id: cfg.id.clone(), path: path.clone(), reason };
    let meta = |p: &Path| match std::fs::symlink_metadata(p) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(RuntimeError::io(&cfg.id, "inspect", p, e)),
    };
    // The agent's file (for flists) is trusted; in the image, `.zgrid` must be a directory.
    if cfg.image_config.is_none() {
        let Some(m) = meta(&dir)? else { return Ok(ImageConfig::default()) };
        if !m.is_dir() {
            return Err(bad(format!("{} is not a directory (symbolic links are not followed)", dir.display())));
        }
    }
    let Some(m) = meta(&path)? else { return Ok(ImageConfig::default()) };
    if !m.is_file() || m.len() > MAX_CONFIG_BYTES {
        return Err(bad(format!("not a regular file of at most {MAX_CONFIG_BYTES} bytes")));
    }
    let bytes = std::fs::read(&path).map_err(|e| RuntimeError::io(&cfg.id, "read", &path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(image: &Path, args: &[&str]) -> ContainerConfig {
        ContainerConfig {
            id: "img-test".into(),
            image: image.to_owned(),
            image_config: None,
            env: vec![("B".into(), "override".into())],
            args: args.iter().map(|s| s.to_string()).collect(),
            hostname: "h".into(),
            cpu: 1,
            memory_mib: 64,
            disk_mib: 64,
            pids_limit: 0,
            netns: None,
            binds: vec![],
            host_init: None,
        }
    }

    #[test]
    fn without_image_config_runs_sh() {
        let dir = tempfile::tempdir().unwrap();
        let p = process(&cfg(dir.path(), &[])).unwrap();
        assert_eq!(p.args, ["/bin/sh"]);
        assert_eq!(p.env, [DEFAULT_PATH, "B=override"]);
        assert_eq!(p.cwd, "/");
    }

    #[test]
    fn image_config_is_merged() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(".zgrid")).unwrap();
        let json = r#"{"entrypoint":["/app"],"cmd":["--port","80"],"env":["PATH=/x","B=image","C=c"],"workdir":"/srv","extra":1}"#;
        std::fs::write(dir.path().join(IMAGE_CONFIG), json).unwrap();
        let p = process(&cfg(dir.path(), &[])).unwrap();
        assert_eq!(p.args, ["/app", "--port", "80"]);
        assert_eq!(p.env, ["PATH=/x", "C=c", "B=override"]);
        assert_eq!(p.cwd, "/srv");
        let p = process(&cfg(dir.path(), &["/bin/true"])).unwrap();
        assert_eq!(p.args, ["/bin/true"]);
        assert_eq!(p.cwd, "/srv");
    }

    #[test]
    fn malformed_or_linked_configs_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(".zgrid")).unwrap();
        std::fs::write(dir.path().join(IMAGE_CONFIG), "{").unwrap();
        assert!(process(&cfg(dir.path(), &[])).unwrap_err().to_string().contains("img-test"));
        std::fs::remove_file(dir.path().join(IMAGE_CONFIG)).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", dir.path().join(IMAGE_CONFIG)).unwrap();
        assert!(matches!(process(&cfg(dir.path(), &[])), Err(RuntimeError::ImageConfig { .. })));
    }
}
