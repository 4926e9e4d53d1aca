//! Where the programs of a [`ControlPlane`](super::ControlPlane) are: Kubernetes' server
//! binaries (built by `scripts/k8s-build`), Debian's `etcd` and a `kubectl`.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Result, bail};

/// Where `scripts/k8s-build` and `scripts/k8s-image` keep what they build.
const CACHE: &str = "/var/cache/zgrid";

/// The control plane's binaries, which a directory given as the Kubernetes binaries must hold.
const SERVERS: [&str; 3] = ["kube-apiserver", "kube-controller-manager", "kube-scheduler"];

/// The directory holding kube-apiserver, kube-controller-manager and kube-scheduler:
/// `$ZGRID_K8S_BIN` when set, else the newest `/var/cache/zgrid/k8s/<version>/bin` that
/// `scripts/k8s-build` made.
pub fn binaries() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("ZGRID_K8S_BIN") {
        let dir = PathBuf::from(dir);
        if let Some(missing) = SERVERS.iter().find(|b| !dir.join(b).is_file()) {
            bail!(
                "ZGRID_K8S_BIN is {} but it has no {missing}: point it at the bin directory \
                 scripts/k8s-build prints (its output plus /bin)",
                dir.display()
            );
        }
        return Ok(dir);
    }
    let root = Path::new(CACHE).join("k8s");
    let bins = subdirs(&root).map(|build| build.join("bin"));
    match newest(bins.filter(|bin| SERVERS.iter().all(|b| bin.join(b).is_file())), "kube-apiserver") {
        Some(bin) => Ok(bin),
        None => bail!(
            "no Kubernetes server binaries in {}: run scripts/k8s-build (as root; it builds them from \
             Debian's source, 5-15 minutes the first time) or set ZGRID_K8S_BIN to a directory holding {}",
            root.display(),
            SERVERS.join(", ")
        ),
    }
}

/// The `etcd` on `PATH` (Debian's `etcd-server`).
pub(super) fn etcd() -> Result<PathBuf> {
    match on_path("etcd") {
        Some(etcd) => Ok(etcd),
        None => bail!("etcd is not on PATH: install Debian's etcd-server (apt-get install etcd-server)"),
    }
}

/// `$ZGRID_KUBECTL` when set, else the `kubectl` on `PATH`, else the one in the newest
/// Kubernetes image tree of `scripts/k8s-image` (Debian's kubernetes-client).
pub(super) fn kubectl() -> Result<PathBuf> {
    if let Some(kubectl) = std::env::var_os("ZGRID_KUBECTL").map(PathBuf::from) {
        if !kubectl.is_file() {
            bail!("ZGRID_KUBECTL is {} but there is no such file: point it at a kubectl", kubectl.display());
        }
        return Ok(kubectl);
    }
    if let Some(kubectl) = on_path("kubectl") {
        return Ok(kubectl);
    }
    // scripts/k8s-image keeps one tree, k8s-image-<key>, beside its work in progress (.tmp).
    let trees = subdirs(Path::new(CACHE)).filter(|tree| {
        let name = tree.file_name().unwrap_or_default().to_string_lossy();
        name.starts_with("k8s-image-") && !name.ends_with(".tmp")
    });
    let bins = trees.map(|tree| tree.join("usr/bin")).filter(|bin| bin.join("kubectl").is_file());
    match newest(bins, "kubectl") {
        Some(bin) => Ok(bin.join("kubectl")),
        None => bail!(
            "no kubectl: install one (apt-get install kubernetes-client), build the Kubernetes image's \
             tree, which has one (scripts/k8s-image --tree), or set ZGRID_KUBECTL"
        ),
    }
}

/// The directories in `dir` whose names do not start with a dot (scripts' work in progress).
fn subdirs(dir: &Path) -> impl Iterator<Item = PathBuf> {
    let entries = std::fs::read_dir(dir).into_iter().flatten().flatten();
    entries.filter(|e| !e.file_name().to_string_lossy().starts_with('.')).map(|e| e.path()).filter(|p| p.is_dir())
}

/// Of `dirs`, the one whose `file` was modified last.
fn newest(dirs: impl Iterator<Item = PathBuf>, file: &str) -> Option<PathBuf> {
    let modified =
        |dir: &PathBuf| dir.join(file).metadata().and_then(|m| m.modified()).unwrap_or(SystemTime::UNIX_EPOCH);
    dirs.max_by_key(modified)
}

/// `name` in a directory of `PATH`, if there is one.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| p.is_file())
}
