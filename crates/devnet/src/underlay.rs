//! The underlay: a Linux bridge in the host's network namespace with a private /24, and network
//! namespaces attached to it by veth pairs, one per simulated machine. The host keeps `.1`, so
//! processes on the host (the explorer, the CLI) reach every namespace and back.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use anyhow::{Context, Result, bail};

/// Serialises the choice of subnets between devnets started at the same time.
const LOCK_FILE: &str = "/run/lock/zgrid-devnet.lock";

/// A bridge with its /24; removed on drop (after every [`Netns`] on it, which hold it alive).
#[derive(Debug)]
pub struct Underlay {
    prefix: String,
    bridge: String,
    /// The first three octets of the /24.
    net: [u8; 3],
    next_host: AtomicU8,
}

impl Underlay {
    /// Create a bridge named after `prefix` (at most 8 characters of `[a-z0-9]`) on a free /24
    /// of 10.200.0.0/13.
    pub fn create(prefix: &str) -> Result<Arc<Self>> {
        if prefix.is_empty()
            || prefix.len() > 8
            || !prefix.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            bail!("underlay prefix {prefix:?}: use 1 to 8 characters of [a-z0-9]");
        }
        let net = free_net()?;
        let underlay =
            Self { prefix: prefix.to_owned(), bridge: format!("{prefix}br"), net, next_host: AtomicU8::new(2) };
        make_bridge(&underlay.bridge, underlay.gateway())?;
        Ok(Arc::new(underlay))
    }

    /// The host's address on the underlay (`.1`).
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(self.net[0], self.net[1], self.net[2], 1)
    }

    /// The underlay's IPv6 /64 (a documentation range, 2001:db8::/32, told apart by the /24's
    /// second and third octets), for tests of public addresses; unused until they add it.
    pub fn ipv6_prefix(&self) -> String {
        format!("{}/64", ipv6_of(self.net, 0))
    }

    /// The bridge's name.
    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    /// A new network namespace `<prefix>-<name>` on the underlay with the next free address,
    /// `lo` up and a default route through the host.
    pub fn add_netns(self: &Arc<Self>, name: &str) -> Result<Netns> {
        let host = self.next_host.fetch_add(1, Ordering::Relaxed);
        if host == 255 {
            bail!("the underlay {} is full (253 namespaces)", self.bridge);
        }
        let address = Ipv4Addr::new(self.net[0], self.net[1], self.net[2], host);
        let netns = Netns {
            name: format!("{}-{name}", self.prefix),
            veth: format!("{}h{host}", self.prefix),
            address,
            underlay: self.clone(),
        };
        attach_netns(&netns.name, &netns.veth, address, &self.bridge, self.gateway())?;
        Ok(netns)
    }
}

impl Drop for Underlay {
    fn drop(&mut self) {
        if let Err(e) = ip(&["link", "del", &self.bridge]) {
            eprintln!("devnet: cannot remove bridge {}: {e:#}", self.bridge);
        }
    }
}

/// A network namespace on the underlay; deleted, with its veth, on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
    veth: String,
    address: Ipv4Addr,
    underlay: Arc<Underlay>,
}

impl Netns {
    /// The namespace's name (as `ip netns` lists it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its address on the underlay.
    pub fn address(&self) -> Ipv4Addr {
        self.address
    }

    /// The host's address on the underlay, its default gateway.
    pub fn gateway(&self) -> Ipv4Addr {
        self.underlay.gateway()
    }

    /// Its address in the underlay's IPv6 prefix ([`Underlay::ipv6_prefix`]), the same host
    /// number as its IPv4 address.
    pub fn ipv6_address(&self) -> Ipv6Addr {
        ipv6_of(self.underlay.net, self.address.octets()[3])
    }

    /// The underlay's IPv6 prefix ([`Underlay::ipv6_prefix`]).
    pub fn underlay_ipv6_prefix(&self) -> String {
        self.underlay.ipv6_prefix()
    }

    /// Give it its address of the underlay's IPv6 prefix on `eth0`.
    pub fn add_ipv6(&self) -> Result<()> {
        self.ip(&["-6", "addr", "replace", &format!("{}/64", self.ipv6_address()), "dev", "eth0", "nodad"]).map(drop)
    }

    /// The namespace's file, for `nsenter --net=` or `setns`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// `program` to be run inside the namespace (network only: mounts and cgroups are the
    /// host's, as on a real machine).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        nsenter(&self.path(), program)
    }

    /// Run `ip args…` inside the namespace.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        ip(&all)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = remove_netns(&self.name, &self.veth) {
            eprintln!("devnet: {e:#}");
        }
    }
}

/// Host `host` of the IPv6 /64 of the underlay on /24 `net`.
fn ipv6_of(net: [u8; 3], host: u8) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, u16::from_be_bytes([net[1], net[2]]), 0, 0, 0, 0, u16::from(host))
}

/// A /24 of 10.200.0.0/13 that no interface or route of this machine uses (chosen under a
/// lock shared by every devnet on the machine; the caller creates its bridge at once).
pub(crate) fn free_net() -> Result<[u8; 3]> {
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK_FILE)
        .with_context(|| format!("cannot open {LOCK_FILE}"))?;
    let _guard = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| anyhow::anyhow!("cannot lock {LOCK_FILE}: {e}"))?;
    let used = ip(&["-4", "-o", "addr", "show"])? + &ip(&["-4", "route", "show", "table", "all"])?;
    (0..1000)
        .map(|_| [10, 200 + rand::random_range(0..8u8), rand::random()])
        .find(|n| !used.contains(&format!("{}.{}.{}.", n[0], n[1], n[2])))
        .context("no free /24 in 10.200.0.0/13 for the underlay")
}

/// Create bridge `bridge` holding `gateway`/24, up.
pub(crate) fn make_bridge(bridge: &str, gateway: Ipv4Addr) -> Result<()> {
    ip(&["link", "add", bridge, "type", "bridge"])?;
    ip(&["addr", "add", &format!("{gateway}/24"), "dev", bridge])?;
    ip(&["link", "set", bridge, "up"])?;
    Ok(())
}

/// Create network namespace `name` attached to `bridge` by veth `veth` (`eth0` inside, with
/// `address`/24), `lo` up and a default route through `gateway`.
pub(crate) fn attach_netns(name: &str, veth: &str, address: Ipv4Addr, bridge: &str, gateway: Ipv4Addr) -> Result<()> {
    ip(&["netns", "add", name])?;
    ip(&["link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", name])?;
    ip(&["link", "set", veth, "master", bridge, "up"])?;
    let inside = |args: &[&str]| ip(&[&["-n", name], args].concat());
    inside(&["addr", "add", &format!("{address}/24"), "dev", "eth0"])?;
    inside(&["link", "set", "eth0", "up"])?;
    inside(&["link", "set", "lo", "up"])?;
    inside(&["route", "add", "default", "via", &gateway.to_string()])?;
    Ok(())
}

/// Kill every process in namespace `name` (they would keep it alive), then delete its veth
/// `veth` and the namespace.
pub(crate) fn remove_netns(name: &str, veth: &str) -> Result<()> {
    for pid in ip(&["netns", "pids", name]).unwrap_or_default().split_whitespace() {
        if let Ok(pid) = pid.parse::<i32>() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
    // The veth goes with the namespace; deleting it first also works while a process still
    // holds the namespace open.
    let _ = ip(&["link", "del", veth]);
    ip(&["netns", "del", name]).map(drop).with_context(|| format!("cannot remove network namespace {name}"))
}

/// `program` to be run inside the network namespace pinned at `netns` (network only), with
/// `nsenter` from util-linux.
pub fn nsenter(netns: &Path, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = Command::new("nsenter");
    command.arg(format!("--net={}", netns.display())).arg("--").arg(program);
    command
}

/// Run `ip args…`, returning its output, or an error with what it printed.
pub(crate) fn ip(args: &[&str]) -> Result<String> {
    let out = Command::new("ip").args(args).output().context("cannot run `ip`; install iproute2")?;
    if !out.status.success() {
        bail!("`ip {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
