//! `zgrid k8s`: Kubernetes clusters made of the owner's `kubernetes` workloads (VMs booted from
//! the grid's Kubernetes image, images/kubernetes/zgrid-k8s), on a private network the laptop
//! reaches over WireGuard. Nothing is kept locally: each workload's metadata names its cluster
//! ([`cluster`]), and every credential derives from the identity ([`credentials`]), so any
//! machine holding the identity can list, reach, grow or remove its clusters.
//!
//! Progress goes to stderr; the result to stdout (`--json` too).

mod api;
mod cluster;
mod credentials;
mod discovery;
mod down;
mod kubeconfig;
mod ls;
mod network;
pub(super) mod placement;
mod reach;
#[cfg(test)]
pub(super) mod testing;
mod up;
mod vms;
mod worker;

use anyhow::{Result, bail};
use zgrid_types::workload::KubernetesSize;

use crate::args::K8sCommand;
use crate::cmd::network::Session;
use crate::config::Ctx;

pub async fn run(ctx: &Ctx, cmd: K8sCommand) -> Result<()> {
    let s = Session::new(ctx)?;
    match cmd {
        K8sCommand::Up(a) => up::run(ctx, &s, a).await,
        K8sCommand::Ls => ls::run(&s).await,
        K8sCommand::Kubeconfig { name, output } => reach::kubeconfig(&s, &name, output).await,
        K8sCommand::AddWorker { name, node, size } => worker::add(&s, &name, node.as_deref(), size).await,
        K8sCommand::Down { name } => down::run(&s, &name).await,
    }
}

/// The VM size `--size` names.
fn size(n: u8) -> Result<KubernetesSize> {
    match KubernetesSize::of(n) {
        Some(size) => Ok(size),
        None => bail!(
            "--size {n} is not a VM size: use 1 to 18 (1 is {}; docs/kubernetes.md has the table)",
            placement::describe(KubernetesSize::of(1).expect("size 1 exists"))
        ),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_outside_the_table_are_refused_naming_the_flag() {
        assert_eq!(super::size(1).unwrap().memory_gib, 2);
        for bad in [0, 19] {
            let err = super::size(bad).unwrap_err().to_string();
            assert!(err.starts_with(&format!("--size {bad} is not a VM size: use 1 to 18")), "{err}");
        }
    }
}
