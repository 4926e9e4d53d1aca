//! Which hypervisor this node's VMs use, as its directory entry says: a handle the VM runtime
//! sets once it has tried what the machine can do, and the heartbeats read.

use std::sync::{Arc, RwLock};

/// A shared, cloneable slot for the node's hypervisor description ([`Hypervisor::set`]); every
/// heartbeat sends what it holds then.
#[derive(Debug, Clone, Default)]
pub struct Hypervisor(Arc<RwLock<Option<String>>>);

impl Hypervisor {
    /// Say which hypervisor VMs use from the next heartbeat on: `kvm`, `tcg: <why not KVM>`
    /// (e.g. `tcg: no usable KVM on this node, expect it to be slow`) or `none: <why VMs cannot
    /// run>`; `None` says nothing. At most
    /// [`MAX_HYPERVISOR`](zgrid_types::directory::MAX_HYPERVISOR) bytes without control
    /// characters, or the explorer refuses the heartbeats.
    pub fn set(&self, description: Option<String>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = description;
    }

    /// What the heartbeats send now.
    pub fn get(&self) -> Option<String> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_clone_sees_what_one_sets() {
        let runtime = Hypervisor::default();
        let heartbeats = runtime.clone();
        assert_eq!(heartbeats.get(), None);
        runtime.set(Some("kvm".into()));
        assert_eq!(heartbeats.get().as_deref(), Some("kvm"));
    }
}
