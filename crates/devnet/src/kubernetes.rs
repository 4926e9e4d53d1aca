//! A real Kubernetes control plane on loopback, for tests and benchmarks of a virtual kubelet:
//! etcd (Debian's `etcd-server`), kube-apiserver, kube-controller-manager and kube-scheduler
//! (Kubernetes 1.20, built from Debian's source by `scripts/k8s-build`) as child processes on
//! 127.0.0.1, each on ports that were free when it started, so several run at once. It has no
//! nodes: pods stay Pending until something registers one.
//!
//! ```no_run
//! # fn demo() -> anyhow::Result<()> {
//! use zgrid_devnet::kubernetes::{ControlPlane, binaries};
//! let dir = std::env::temp_dir().join("my-control-plane");
//! let plane = ControlPlane::start(&dir, &binaries()?)?;
//! let status = plane.kubectl(["create", "deployment", "web", "--image=x"]).status()?;
//! println!("{status}; the API server is {}, see {}", plane.server(), plane.kubeconfig().display());
//! # Ok(()) }
//! ```

mod files;
mod locate;

use std::ffi::{OsStr, OsString};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

pub use locate::binaries;

use crate::process::{Process, log_tail, wait_for};

/// How long the API server gets to answer `/readyz` ok, and then the controller-manager to make
/// the `default` service account.
const LIMIT: Duration = Duration::from_secs(60);

/// How many times a start is tried when another program took one of its ports first.
const ATTEMPTS: u32 = 3;

/// Kubernetes' control plane on loopback, with its state in a directory the caller owns.
/// Dropping it kills and reaps every process; etcd's data, the certificates and the logs stay.
#[derive(Debug)]
pub struct ControlPlane {
    dir: PathBuf,
    server: String,
    kubeconfig: PathBuf,
    kubectl: PathBuf,
    /// In start order; stopped in the reverse.
    processes: Vec<Process>,
}

impl ControlPlane {
    /// Start etcd, kube-apiserver, kube-controller-manager and kube-scheduler (the last three
    /// from `bin`, see [`binaries`]) on free loopback ports, and wait until the API server is
    /// ready and namespace `default` has its `default` service account with its token (pods can
    /// be created).
    /// `dir` gets their data (`etcd/`, `certs/`), the service-account key pair, the admin's
    /// token file, their logs (`<name>.log`) and the admin's `kubeconfig`.
    pub fn start(dir: &Path, bin: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let (etcd, kubectl) = (locate::etcd()?, locate::kubectl()?);
        let mut attempt = 1;
        loop {
            match Self::launch(dir, bin, &etcd, &kubectl) {
                Err(e) if attempt < ATTEMPTS && format!("{e:#}").contains("address already in use") => attempt += 1,
                started => return started,
            }
        }
    }

    /// One try of [`ControlPlane::start`].
    fn launch(dir: &Path, bin: &Path, etcd: &Path, kubectl: &Path) -> Result<Self> {
        let [client, peer, secure] = free_ports()?;
        let token = files::write_credentials(dir)?;
        files::write_kubelet_client(dir)?;
        let mut plane = Self {
            dir: dir.to_owned(),
            server: format!("https://127.0.0.1:{secure}"),
            kubeconfig: dir.join("kubeconfig"),
            kubectl: kubectl.to_owned(),
            processes: Vec::new(),
        };
        plane.spawn("etcd", etcd_command(etcd, dir, client, peer))?;
        plane.spawn("kube-apiserver", apiserver_command(bin, dir, client, secure))?;
        // The API server signs its own certificate at start, writing the key after it.
        let (cert, key) = (dir.join("certs/apiserver.crt"), dir.join("certs/apiserver.key"));
        let ca = plane.wait("kube-apiserver", "write its certificate", |_| {
            if !key.exists() {
                return Ok(Err(format!("no {}", key.display())));
            }
            Ok(Ok(std::fs::read(&cert).with_context(|| format!("cannot read {}", cert.display()))?))
        })?;
        files::write_kubeconfig(&plane.kubeconfig, &plane.server, &ca, &token)?;
        plane.spawn("kube-controller-manager", controller_manager_command(bin, dir))?;
        plane.spawn("kube-scheduler", scheduler_command(bin, dir))?;
        let api = SocketAddr::from(([127, 0, 0, 1], secure));
        plane.wait("kube-apiserver", "answer /readyz ok", |plane| {
            if TcpStream::connect_timeout(&api, Duration::from_millis(200)).is_err() {
                return Ok(Err(format!("nothing listens on {api}")));
            }
            Ok(plane.ask(&["get", "--raw", "/readyz"])?.and_then(|out| match out.trim() {
                "ok" => Ok(()),
                _ => Err(out),
            }))
        })?;
        // Until the service account has its token, the API server refuses pods that mount it.
        let tokens =
            ["get", "serviceaccount", "default", "--namespace=default", "--output=jsonpath={.secrets[*].name}"];
        plane.wait("kube-controller-manager", "create service account default/default with its token", |plane| {
            let names = plane.ask(&tokens)?;
            Ok(names.and_then(|names| if names.is_empty() { Err("it has no token yet".to_owned()) } else { Ok(()) }))
        })?;
        Ok(plane)
    }

    /// The API server's URL (`https://127.0.0.1:<port>`).
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The CA whose certificate the API server presents to kubelets (`kubectl logs`, `exec`):
    /// what a kubelet's `--client-ca` names.
    pub fn kubelet_client_ca(&self) -> PathBuf {
        self.dir.join("kubelet-ca.crt")
    }

    /// A kubeconfig for an admin (group `system:masters`, a static token) trusting the API
    /// server's self-signed certificate.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// `kubectl --kubeconfig <kubeconfig> args…` (with its cache in the control plane's
    /// directory); add arguments and run it. The `kubectl` is `$ZGRID_KUBECTL`, else the one on
    /// `PATH`, else the one in the Kubernetes image of `scripts/k8s-image --tree`.
    pub fn kubectl<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = Command::new(&self.kubectl);
        command.arg(flag("kubeconfig", &self.kubeconfig)).arg(flag("cache-dir", &self.dir.join("kubectl-cache")));
        command.args(args);
        command
    }

    /// Everything `name` (`etcd`, `kube-apiserver`, `kube-controller-manager` or
    /// `kube-scheduler`) has logged; empty for another name.
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.log_path(name)).unwrap_or_default()
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.log"))
    }

    fn spawn(&mut self, name: &str, command: Command) -> Result<()> {
        let process = Process::spawn(name, command, &self.log_path(name))?;
        self.processes.push(process);
        Ok(())
    }

    /// Run kubectl with `args` (for at most 5 s): what it printed, or (inside) why it failed.
    fn ask(&self, args: &[&str]) -> Result<Result<String, String>> {
        let out = self.kubectl(["--request-timeout=5s"]).args(args).output();
        let out = out.with_context(|| format!("cannot run {}", self.kubectl.display()))?;
        let said = |bytes: &[u8]| String::from_utf8_lossy(bytes).trim().to_owned();
        Ok(if out.status.success() { Ok(said(&out.stdout)) } else { Err(said(&out.stderr)) })
    }

    /// Poll `probe` until it gives a value (or, inside, why not yet), failing as soon as a
    /// process exits; after [`LIMIT`], fail saying that `blame` did not do `what`, with the last
    /// reason and the end of `blame`'s log.
    fn wait<T>(
        &mut self,
        blame: &str,
        what: &str,
        mut probe: impl FnMut(&Self) -> Result<Result<T, String>>,
    ) -> Result<T> {
        let mut last = String::new();
        let found = wait_for(LIMIT, || {
            for process in &mut self.processes {
                process.check()?;
            }
            match probe(self)? {
                Ok(found) => Ok(Some(found)),
                Err(why) => {
                    last = why;
                    Ok(None)
                }
            }
        })?;
        let log = self.log_path(blame);
        found.with_context(|| {
            let tail = log_tail(&log, 20);
            format!("{blame} did not {what} within {LIMIT:?} (last: {last}); the end of {}:\n{tail}", log.display())
        })
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        // The clients before the API server, the API server before its storage.
        for mut process in self.processes.drain(..).rev() {
            process.kill();
        }
    }
}

/// `N` distinct loopback ports that were free a moment ago.
fn free_ports<const N: usize>() -> Result<[u16; N]> {
    let mut held = Vec::with_capacity(N);
    let mut ports = [0; N];
    for port in &mut ports {
        let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind a loopback port")?;
        *port = listener.local_addr()?.port();
        held.push(listener);
    }
    Ok(ports)
}

/// `--<name>=<path>`.
fn flag(name: &str, path: &Path) -> OsString {
    let mut flag = OsString::from(format!("--{name}="));
    flag.push(path);
    flag
}

/// A one-member etcd serving clients on `client` and its (absent) peers on `peer`, its data in
/// `<dir>/etcd`.
fn etcd_command(etcd: &Path, dir: &Path, client: u16, peer: u16) -> Command {
    let (client, peer) = (format!("http://127.0.0.1:{client}"), format!("http://127.0.0.1:{peer}"));
    let mut command = Command::new(etcd);
    command.arg("--name=default").arg(flag("data-dir", &dir.join("etcd")));
    command.args([format!("--listen-client-urls={client}"), format!("--advertise-client-urls={client}")]);
    command.args([format!("--listen-peer-urls={peer}"), format!("--initial-advertise-peer-urls={peer}")]);
    command.arg(format!("--initial-cluster=default={peer}"));
    command
}

/// The API server on `127.0.0.1:<secure>` (HTTPS only, certificate self-signed into
/// `<dir>/certs`), storing in etcd at `etcd_client`, accepting the admin token of
/// `<dir>/tokens.csv`.
fn apiserver_command(bin: &Path, dir: &Path, etcd_client: u16, secure: u16) -> Command {
    let mut command = Command::new(bin.join("kube-apiserver"));
    command.args([
        format!("--etcd-servers=http://127.0.0.1:{etcd_client}"),
        format!("--secure-port={secure}"),
        "--insecure-port=0".into(),
        "--bind-address=127.0.0.1".into(),
        "--advertise-address=127.0.0.1".into(),
        // Its endpoint in the `kubernetes` service would be a loopback address, which the API
        // server refuses (logging an error every 10 s).
        "--endpoint-reconciler-type=none".into(),
        "--service-cluster-ip-range=10.96.0.0/16".into(),
        "--authorization-mode=RBAC".into(),
        "--allow-privileged=true".into(),
        "--service-account-issuer=https://kubernetes.default.svc".into(),
    ]);
    command.arg(flag("cert-dir", &dir.join("certs"))).arg(flag("token-auth-file", &dir.join("tokens.csv")));
    command.arg(flag("service-account-key-file", &dir.join("sa.pub")));
    command.arg(flag("service-account-signing-key-file", &dir.join("sa.key")));
    command.arg(flag("kubelet-client-certificate", &dir.join("apiserver-kubelet-client.crt")));
    command.arg(flag("kubelet-client-key", &dir.join("apiserver-kubelet-client.key")));
    command
}

/// The controller-manager as the admin, without the controllers that need a cloud provider or
/// node CIDRs, serving nothing itself.
fn controller_manager_command(bin: &Path, dir: &Path) -> Command {
    let mut command = Command::new(bin.join("kube-controller-manager"));
    command.args(["--controllers=*,-nodeipam,-cloud-node-lifecycle,-service,-route", "--leader-elect=false"]);
    command.args(["--bind-address=127.0.0.1", "--secure-port=0", "--port=0"]);
    command.arg(flag("kubeconfig", &dir.join("kubeconfig")));
    command.arg(flag("service-account-private-key-file", &dir.join("sa.key")));
    command.arg(flag("root-ca-file", &dir.join("certs/apiserver.crt")));
    command
}

/// The scheduler as the admin, serving nothing itself.
fn scheduler_command(bin: &Path, dir: &Path) -> Command {
    let mut command = Command::new(bin.join("kube-scheduler"));
    command.args(["--leader-elect=false", "--bind-address=127.0.0.1", "--secure-port=0", "--port=0"]);
    command.arg(flag("kubeconfig", &dir.join("kubeconfig")));
    command
}
