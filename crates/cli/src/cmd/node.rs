//! `zgrid node`: run the node agent until SIGINT or SIGTERM. Containers keep running when the
//! agent stops; the next start adopts them.

use std::time::Duration;

use anyhow::{Context, Result};
use zgrid_node::NodeConfig;
use zgrid_node::engine::EngineConfig;
use zgrid_node::flist::FlistImages;
use zgrid_node::hypervisor::Hypervisor;
use zgrid_node::network::{Networks, OutsideIpv6, Yggdrasil};
use zgrid_node::runtime::Runtime;
use zgrid_node::vm::Vms;
use zgrid_node::workloads::Workloads;
use zgrid_types::Signed;
use zgrid_types::directory::Location;
use zgrid_types::invitation::FarmInvitation;

use crate::args::NodeArgs;
use crate::config::Ctx;

pub async fn run(ctx: &Ctx, a: NodeArgs) -> Result<()> {
    let explorer = ctx.explorer_url(None)?;
    let runtime = Runtime::new(a.state_dir.join("runtime"), &a.cgroup_parent)?;
    let key = zgrid_node::identity::load_or_create(&a.state_dir)?;
    let mut networks = Networks::new(a.state_dir.join("networks"), key.clone(), a.wireguard_ports.clone())?;
    if let Some(prefix) = a.public_ipv6 {
        let uplink = a.public_ipv6_dev.clone().or_else(|| interface_holding(prefix));
        let public = OutsideIpv6::public(prefix, uplink).map_err(anyhow::Error::msg).context("--public-ipv6")?;
        networks = networks.with_outside(public)?;
    }
    // Runs as long as the agent; its containers' addresses go with it.
    let _yggdrasil = if a.yggdrasil {
        let yggdrasil = Yggdrasil::start(&a.state_dir.join("yggdrasil"), &a.yggdrasil_peers, &a.yggdrasil_listen)
            .await
            .context("--yggdrasil")?;
        networks = networks.with_outside(OutsideIpv6::yggdrasil(yggdrasil.subnet()))?;
        Some(yggdrasil)
    } else {
        None
    };
    let program = std::env::current_exe().context("cannot find this program to start the flist mount service")?;
    let mut service = vec![program.to_string_lossy().into_owned()];
    // The mount service fetches chunks with the agent's trusted CAs and time limit.
    let options = ctx.http_options()?;
    if let Some(ca) = &options.ca_cert {
        service.extend(["--ca-cert".to_owned(), ca.to_string_lossy().into_owned()]);
    }
    service.extend(["--timeout".to_owned(), options.timeout.as_secs().to_string(), "flist-mounts".to_owned()]);
    let http = ctx.http()?;
    let flists = FlistImages::new(a.state_dir.join("flist"), service, a.flist_cache_mib << 20, http.clone());
    let vms = vm_runtime(&a);
    match &vms {
        Ok(_) => tracing::info!("VMs: qemu, virtiofsd and a kernel are ready; probing the accelerator"),
        Err(why) => tracing::warn!("this node does not run VMs: {why}"),
    }
    let workloads = Workloads::new(runtime, networks, key, a.state_dir.join("images"))
        .with_console_assets(a.console_assets.clone())
        .with_flists(flists)
        .with_vms(vms);
    let hostname = match a.hostname {
        Some(h) => h,
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .context("cannot read the host name")?
            .trim()
            .to_string(),
    };
    let farm_invitation = match (&a.farm_invite, &a.farm_invite_file) {
        (Some(token), _) => Some(parse_invitation(token).context("--farm-invite")?),
        (None, Some(path)) => {
            let token = std::fs::read_to_string(path)
                .with_context(|| format!("--farm-invite-file: cannot read {}", path.display()))?;
            Some(parse_invitation(&token).with_context(|| format!("--farm-invite-file {}", path.display()))?)
        }
        (None, None) => None,
    };
    let config = NodeConfig {
        state_dir: a.state_dir,
        explorer,
        farm_id: a.farm,
        farm_invitation,
        hostname,
        location: Location { country: a.country, city: a.city, latitude: None, longitude: None },
        public_endpoint: a.public_endpoint,
        api_listen: a.api_listen,
        api_tls: a.tls.files(),
        api_url: a.api_url,
        http,
        heartbeat: Duration::from_secs(30),
        hypervisor: Hypervisor::default(),
        engine: EngineConfig { step_timeout: Duration::from_secs(a.step_timeout), ..EngineConfig::default() },
    };
    zgrid_node::run(config, workloads, crate::cmd::explorer::shutdown_signal()).await
}

/// The VM runtime, or why this node cannot run VMs.
fn vm_runtime(a: &NodeArgs) -> Result<Vms, String> {
    let kernel = a.vm_kernel.clone().or_else(zgrid_node::vm::default_kernel).ok_or_else(|| {
        format!(
            "no VM kernel: run scripts/vm-kernel (it fills {}) or start the node with --vm-kernel DIR",
            zgrid_node::vm::KERNEL_CACHE
        )
    })?;
    Vms::new(a.state_dir.join("vms"), &a.cgroup_parent, a.vm_accel)
        .and_then(|vms| vms.with_kernel(&kernel))
        .map_err(|e| e.to_string())
}

/// A farm invitation token, checked before the agent does anything else.
fn parse_invitation(token: &str) -> Result<Signed<FarmInvitation>> {
    Ok(Signed::from_token(token)?)
}

/// `zgrid flist-mounts`: the node's flist mount service, started by the agent.
/// It blocks (FUSE and HTTP on plain threads), so it runs outside the async runtime.
pub fn mount_service(ctx: &Ctx, a: crate::args::MountServiceArgs) -> Result<()> {
    let dir = a.dir.clone();
    let http = ctx.http_options()?;
    std::thread::spawn(move || zgrid_node::flist::daemon::serve(&a.dir, a.cache_bytes, &http))
        .join()
        .map_err(|_| anyhow::anyhow!("the flist mount service panicked"))?
        .with_context(|| format!("the flist mount service in {} stopped", dir.display()))
}

/// The interface with an address in `prefix`, if any (from `/proc/net/if_inet6`).
fn interface_holding(prefix: ipnet::Ipv6Net) -> Option<String> {
    let table = std::fs::read_to_string("/proc/net/if_inet6").ok()?;
    table.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let address = u128::from_str_radix(fields.first()?, 16).ok()?;
        prefix.contains(&std::net::Ipv6Addr::from(address)).then(|| fields.last().map(|d| (*d).to_owned()))?
    })
}
