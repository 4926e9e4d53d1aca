//! The kernel's WireGuard, where the node's kernel has the module: a `wireguard` link made in
//! the agent's own namespace (its UDP socket stays there when the interface moves, as the
//! userspace device's does), configured over netlink with wireguard-tools' `wg`, run inside
//! whichever namespace the interface is in. Private keys go to `wg` on its standard input,
//! never on a command line.

use std::fs::File;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use base64::Engine;
use ipnet::IpNet;

use super::{KEEPALIVE_SECS, TunnelError};
use crate::network::netns::in_netns_of;

/// Whether this node can use the kernel's WireGuard: the `wg` program is installed and a
/// `wireguard` link can be made (tried, then removed). `Err` says why not.
pub(crate) fn probe(ip: &Path) -> Result<PathBuf, String> {
    let wg = crate::runtime::command::find_program("wg", "wireguard-tools").map_err(|e| e.to_string())?;
    let name = format!("zgwgprobe{}", std::process::id() % 100_000);
    let out = Command::new(ip).args(["link", "add", &name, "type", "wireguard"]).output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("no WireGuard kernel module ({})", String::from_utf8_lossy(&out.stderr).trim()));
    }
    let _ = Command::new(ip).args(["link", "delete", &name]).output();
    Ok(wg)
}

/// A kernel WireGuard link.
pub(crate) struct Device {
    wg: PathBuf,
    ip: PathBuf,
    /// The namespace the link is in now, held open.
    netns: File,
    /// Its name there.
    name: String,
}

impl Device {
    /// Make link `name` in the calling thread's namespace, with `private_key`.
    pub(crate) fn create(wg: &Path, ip: &Path, name: &str, private_key: &[u8; 32]) -> Result<Self, TunnelError> {
        let io = |source| TunnelError::Create { name: name.to_owned(), source };
        let netns = File::open("/proc/thread-self/ns/net").map_err(io)?;
        let out = Command::new(ip).args(["link", "add", name, "type", "wireguard"]).output().map_err(io)?;
        if !out.status.success() {
            return Err(io(std::io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_owned())));
        }
        let device = Self { wg: wg.to_owned(), ip: ip.to_owned(), netns, name: name.to_owned() };
        device.set_key(private_key)?;
        Ok(device)
    }

    /// The link was moved to the namespace at `netns` and renamed `name` there.
    pub(crate) fn moved(&mut self, netns: &Path, name: &str) -> std::io::Result<()> {
        self.netns = File::open(netns)?;
        name.clone_into(&mut self.name);
        Ok(())
    }

    /// Use `private_key`.
    pub(crate) fn set_key(&self, private_key: &[u8; 32]) -> Result<(), TunnelError> {
        let key = base64::engine::general_purpose::STANDARD.encode(private_key);
        self.wg("set the private key", &["private-key", "/dev/stdin"], Some(key)).map(drop)
    }

    /// Bind UDP `port`; `Ok(false)` when another socket holds it.
    pub(crate) fn listen(&self, port: u16) -> Result<bool, TunnelError> {
        match self.wg(&format!("listen on UDP port {port}"), &["listen-port", &port.to_string()], None) {
            Ok(_) => Ok(true),
            Err(TunnelError::Io { source, .. }) if source.to_string().contains("Address already in use") => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Remove peer `key`.
    pub(crate) fn remove_peer(&self, key: &[u8; 32]) -> Result<(), TunnelError> {
        let key = base64::engine::general_purpose::STANDARD.encode(key);
        self.wg("remove a peer", &["peer", &key, "remove"], None).map(drop)
    }

    /// Add peer `key` reached at `endpoint`, routing `allowed` to it.
    pub(crate) fn add_peer(
        &self,
        key: &[u8; 32],
        endpoint: Option<SocketAddr>,
        allowed: &[IpNet],
    ) -> Result<(), TunnelError> {
        let key = base64::engine::general_purpose::STANDARD.encode(key);
        let keepalive = KEEPALIVE_SECS.to_string();
        let allowed = allowed.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
        let mut args = vec!["peer", &key, "persistent-keepalive", &keepalive, "allowed-ips", &allowed];
        let endpoint = endpoint.map(|e| e.to_string());
        if let Some(endpoint) = &endpoint {
            args.extend(["endpoint", endpoint]);
        }
        self.wg("add a peer", &args, None).map(drop)
    }

    /// `wg set <name> args…` inside the link's namespace, with `stdin` as its input.
    fn wg(&self, what: &str, args: &[&str], stdin: Option<String>) -> Result<Output, TunnelError> {
        let mut command = Command::new(&self.wg);
        command.args(["set", &self.name]).args(args);
        let out = self.run(command, stdin);
        let fail = |source| TunnelError::Io { what: what.to_owned(), source };
        let out = out.map_err(fail)?;
        if !out.status.success() {
            return Err(fail(std::io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_owned())));
        }
        Ok(out)
    }

    /// Run `command` in the link's namespace.
    fn run(&self, mut command: Command, stdin: Option<String>) -> std::io::Result<Output> {
        in_netns_of(self.netns.try_clone()?, move || {
            let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
            let input = child.stdin.take();
            if let (Some(mut input), Some(text)) = (input, stdin) {
                input.write_all(text.as_bytes())?;
            }
            child.wait_with_output()
        })
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        let mut command = Command::new(&self.ip);
        command.args(["link", "delete", &self.name]);
        let _ = self.run(command, None);
    }
}
