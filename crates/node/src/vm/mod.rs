//! Virtual machines: qemu guests booted from flists, with a virtiofs root on the node.

pub mod boot;
