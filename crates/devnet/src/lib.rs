//! A whole grid on one machine, for tests, benchmarks and a newcomer's first try: an explorer
//! (SQLite, or a given database such as a PostgreSQL one other explorers share) and node
//! agents, each node in its own network namespace attached to a shared underlay bridge, all
//! real `zgrid` processes. Everything a [`Devnet`] or [`Node`] created is
//! stopped and removed when it is dropped, also when a test fails: processes, containers,
//! cgroups, mounts, namespaces and interfaces.
//!
//! ```no_run
//! # fn demo() -> anyhow::Result<()> {
//! use zgrid_devnet::{Devnet, DevnetConfig, NodeOptions};
//! let dir = std::env::temp_dir().join("my-devnet");
//! let devnet = Devnet::start(DevnetConfig::new("/usr/local/bin/zgrid", &dir))?;
//! let node = devnet.add_node(NodeOptions::default())?;
//! println!("explorer {} and node {} at {}", devnet.explorer_url(), node.id(), node.address());
//! # Ok(()) }
//! ```
//!
//! Needs root, `ip` (iproute2) and `nsenter` (util-linux).
//!
//! [`kubernetes::ControlPlane`] is a real Kubernetes control plane on loopback (etcd, API
//! server, controller-manager, scheduler) for tests and benchmarks of a virtual kubelet.

mod devnet;
mod image;
pub mod kubernetes;
pub mod local;
mod node;
mod process;
mod underlay;

pub use devnet::{Devnet, DevnetConfig};
pub use image::busybox_rootfs;
pub use node::{Node, NodeOptions};
pub use process::{cli, cli_json};
pub use underlay::{Netns, Underlay, nsenter};
