//! What the machine has (cores, memory, disk) and what provisioned workloads reserve of it.

use std::path::Path;

use anyhow::{Context, Result};
use zgrid_types::WorkloadData;
use zgrid_types::directory::Capacity;
use zgrid_types::workload::{Container, DiskType, KubernetesSize, Vm};

/// Memory kept back for the node itself, MiB.
pub const RESERVED_MEMORY_MIB: u64 = 256;

/// The machine's total capacity: CPU cores, memory (minus what the agent keeps back) and the
/// size of the filesystem holding `state_dir` (as SSD; HDD pools come with storage pools).
pub fn total(state_dir: &Path) -> Result<Capacity> {
    let cru = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let meminfo = std::fs::read_to_string("/proc/meminfo").context("cannot read /proc/meminfo")?;
    let mem_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("/proc/meminfo has no MemTotal")?;
    let fs =
        nix::sys::statvfs::statvfs(state_dir).with_context(|| format!("cannot statvfs {}", state_dir.display()))?;
    let disk_mib = fs.blocks() * fs.fragment_size() / (1 << 20);
    Ok(Capacity { cru, mru: (mem_kib / 1024).saturating_sub(RESERVED_MEMORY_MIB), sru: disk_mib, hru: 0 })
}

/// What one workload reserves.
pub fn of(data: &WorkloadData) -> Capacity {
    let disk = |t: DiskType, mib: u64| match t {
        DiskType::Ssd => Capacity { sru: mib, ..Capacity::default() },
        DiskType::Hdd => Capacity { hru: mib, ..Capacity::default() },
    };
    match data {
        WorkloadData::Container(Container { capacity: c, .. }) | WorkloadData::Vm(Vm { capacity: c, .. }) => {
            let d = disk(c.disk_type, c.disk_size);
            Capacity { cru: u64::from(c.cpu), mru: c.memory, ..d }
        }
        WorkloadData::Volume(v) => disk(v.disk_type, v.size),
        WorkloadData::Kubernetes(k) => KubernetesSize::of(k.size).map_or(Capacity::default(), |s| Capacity {
            cru: u64::from(s.cpu),
            mru: s.memory_gib * 1024,
            sru: s.disk_gb * 1000,
            hru: 0,
        }),
        WorkloadData::NetworkResource(_) => Capacity::default(),
    }
}

/// Component-wise sum.
pub fn sum<'a>(items: impl IntoIterator<Item = &'a Capacity>) -> Capacity {
    items.into_iter().fold(Capacity::default(), |a, b| Capacity {
        cru: a.cru + b.cru,
        mru: a.mru + b.mru,
        sru: a.sru + b.sru,
        hru: a.hru + b.hru,
    })
}

/// Why `want` does not fit in `free`, naming the first resource short and how much is free.
pub fn shortfall(want: &Capacity, free: &Capacity) -> Option<String> {
    let checks =
        [("memory", "MiB", want.mru, free.mru), ("SSD", "MiB", want.sru, free.sru), ("HDD", "MiB", want.hru, free.hru)];
    checks
        .into_iter()
        .find(|(_, _, w, f)| w > f)
        .map(|(what, unit, w, f)| format!("not enough {what} on this node: asked {w} {unit}, {f} {unit} free"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_commit_names_the_resource_and_what_is_free() {
        let free = Capacity { cru: 2, mru: 300, sru: 1000, hru: 0 };
        assert_eq!(shortfall(&Capacity { mru: 200, ..Default::default() }, &free), None);
        let msg = shortfall(&Capacity { mru: 512, ..Default::default() }, &free).unwrap();
        assert_eq!(msg, "not enough memory on this node: asked 512 MiB, 300 MiB free");
    }

    #[test]
    fn a_vm_reserves_its_cpus_memory_and_disk_like_a_container() {
        use zgrid_types::workload::ContainerCapacity;
        let capacity = ContainerCapacity { cpu: 2, memory: 1024, disk_size: 4096, disk_type: DiskType::Hdd };
        let vm = Vm {
            flist: "https://hub.example/debian.flist".into(),
            hub_url: String::new(),
            flist_hash: String::new(),
            capacity,
            network_id: "net".into(),
            ipaddress: [10, 20, 1, 5].into(),
            ssh_keys: vec![],
            kernel_args: String::new(),
            environment: Default::default(),
            secret_environment: Default::default(),
            volumes: vec![],
        };
        assert_eq!(of(&WorkloadData::Vm(vm)), Capacity { cru: 2, mru: 1024, sru: 0, hru: 4096 });
    }

    #[test]
    fn the_machine_reports_real_capacity() {
        let total = total(Path::new("/")).unwrap();
        assert!(total.cru >= 1 && total.mru > 0 && total.sru > 0);
    }
}
