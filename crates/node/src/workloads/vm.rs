//! VMs: a signed vm workload becomes a qemu guest through [`Vms`](crate::vm::Vms), booted from
//! its flist with the guest's hostname, address, SSH keys and environment, on a tap in the
//! owner's network; its health is qemu's and the guest's state.

use zgrid_types::workload::Vm;
use zgrid_types::{WorkloadId, WorkloadSpec};

use super::Workloads;
use crate::provision::{Health, Progress, ProvisionError};
use crate::runtime::RuntimeError;
use crate::vm::boot::{GuestConfig, Volume};
use crate::vm::{Accelerator, VmConfig, VmState};

/// Where the guest's name servers are found.
const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";

/// The node's name servers a guest can use: those of its resolver configuration, without the
/// loopback ones (a local stub resolver is the node's, not the guest's).
fn host_resolvers() -> Vec<std::net::IpAddr> {
    let text = std::fs::read_to_string(HOST_RESOLV_CONF).unwrap_or_default();
    let servers = text.lines().filter_map(|l| l.trim().strip_prefix("nameserver")?.trim().parse().ok());
    servers.filter(|ip: &std::net::IpAddr| !ip.is_loopback()).collect()
}

impl Workloads {
    /// Boot the VM (or adopt it when it runs) and report its address and accelerator.
    pub(super) async fn provision_vm(
        &self,
        spec: &WorkloadSpec,
        vm: &Vm,
        progress: Progress<'_>,
    ) -> Result<serde_json::Value, ProvisionError> {
        let id = &spec.id;
        let vms = self
            .vms
            .as_ref()
            .ok_or_else(|| ProvisionError::Permanent(format!("this node does not run VMs: {}", self.vms_missing)))?;
        // Checked before any side effect.
        let environment = self.environment(spec, &vm.environment, &vm.secret_environment)?;
        // A node whose KVM was demanded and fails refuses VMs before anything is made.
        vms.accelerator().await.map_err(|e| ProvisionError::Permanent(e.to_string()))?;
        let mut shares = Vec::with_capacity(vm.volumes.len());
        let mut volumes = Vec::with_capacity(vm.volumes.len());
        for (n, mount) in vm.volumes.iter().enumerate() {
            let dir = self.volume_dir(mount)?;
            let tag = format!("volume{n}");
            shares.push((dir, tag.clone()));
            volumes.push(Volume { tag, mountpoint: mount.mountpoint.clone().into() });
        }
        let source = vm.flist_source().map_err(|e| ProvisionError::Permanent(e.to_string()))?;
        let (image, _) = self.image_from(spec, source, &vm.hub_url, &vm.flist_hash).await?;
        progress(zgrid_types::result::IMAGE_READY);
        let tap = self.networks.attach_tap(id, &spec.owner_key, &vm.network_id, vm.ipaddress).await?;
        let guest = GuestConfig {
            hostname: id.to_string(),
            address: Some(tap.address.into()),
            gateway: Some(tap.gateway.into()),
            dns: host_resolvers(),
            authorized_keys: vm.ssh_keys.clone(),
            environment,
            volumes,
        };
        let config = VmConfig {
            id: id.to_string(),
            image,
            cpu: vm.capacity.cpu,
            memory_mib: vm.capacity.memory,
            disk_mib: vm.capacity.disk_size,
            network: tap,
            guest,
            kernel_args: vm.kernel_args.clone(),
            shares,
        };
        progress("booting");
        let started = std::time::Instant::now();
        // An image that cannot boot is refused; other failures are tried again from scratch.
        let vm_started = vms.start(&config).await.map_err(|e| match e {
            RuntimeError::GuestRefused { .. } => ProvisionError::Permanent(e.to_string()),
            other => ProvisionError::Transient(other.to_string()),
        })?;
        let boot_ms = (started.elapsed().as_secs_f64() * 1000.0).round();
        let mut data = serde_json::json!({
            "id": id,
            "ipv4": vm.ipaddress.to_string(),
            "accelerator": vm_started.accelerator.name(),
            "adopted": vm_started.adopted,
        });
        if !vm_started.adopted {
            data["boot_ms"] = boot_ms.into();
        }
        if let Accelerator::Tcg(why) = &vm_started.accelerator {
            data["note"] = format!("booted with TCG: no usable KVM on this node ({why}), expect it to be slow").into();
        }
        Ok(data)
    }

    /// How the VM is doing.
    pub(super) async fn vm_health(&self, id: &WorkloadId) -> Health {
        let Some(vms) = &self.vms else { return Health::Missing };
        match vms.state(id.as_str()).await {
            VmState::Running => {
                self.image_problem(id, || vms.stop_for_new_image(id.as_str())).await.unwrap_or(Health::Running)
            }
            VmState::Stopped(how) => Health::Stopped(how),
            VmState::Missing => Health::Missing,
        }
    }
}
