//! `zgrid bench network`: on a devnet of this machine (an explorer and two node agents, each in
//! its own network namespace on an underlay bridge), TCP throughput (iperf3) and round-trip
//! latency (ping) between two containers on different nodes over a private network, next to
//! the same measurements over the raw underlay between the two nodes' namespaces and over a
//! tunnel of Debian's wireguard-go between them (the reference userspace implementation).

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{Value, json};
use zgrid_devnet::{Devnet, DevnetConfig, NodeOptions, busybox_rootfs, cli_json as cli, nsenter};

use super::run_tool as run;
use crate::config::Ctx;
use crate::output;

/// TCP throughput in Gbit/s (received) of `streams` parallel iperf3 streams from `client` to
/// `server_ip` in `server`.
fn iperf(client: &Path, server: &Path, server_ip: &str, seconds: u32, streams: u32) -> Result<f64> {
    let mut listener = nsenter(server, "iperf3")
        .args(["-s", "-1", "-B", server_ip])
        .stdout(std::process::Stdio::null())
        .spawn()
        .context("cannot start iperf3")?;
    std::thread::sleep(std::time::Duration::from_millis(500));
    let report = run(
        nsenter(client, "iperf3").args(["-c", server_ip, "-J", "-t", &seconds.to_string(), "-P", &streams.to_string()]),
        "iperf3 -c",
        "iperf3",
    );
    let _ = listener.kill();
    let _ = listener.wait();
    let report: Value = serde_json::from_str(&report?)?;
    let bits = report["end"]["sum_received"]["bits_per_second"].as_f64().context("iperf3 reported no throughput")?;
    Ok((bits / 1e9 * 1000.0).round() / 1000.0)
}

/// Average and maximum round trip in ms of `count` busybox pings from `client` to `ip`,
/// `interval` seconds apart.
fn ping(client: &Path, ip: &str, count: u32, interval: &str) -> Result<(f64, f64)> {
    let out = run(
        nsenter(client, "busybox").args(["ping", "-c", &count.to_string(), "-i", interval, "-q", ip]),
        "ping",
        "busybox-static",
    )?;
    // round-trip min/avg/max = 0.020/0.061/0.094 ms
    let rtt: Vec<f64> = out
        .lines()
        .find_map(|l| l.split(" = ").nth(1))
        .context("ping printed no round-trip summary")?
        .trim_end_matches(" ms")
        .split('/')
        .filter_map(|v| v.parse().ok())
        .collect();
    match rtt[..] {
        [_, avg, max] => Ok((avg, max)),
        _ => anyhow::bail!("cannot read ping's round-trip summary: {out}"),
    }
}

/// From `client` to `server_ip` in `server`: one TCP stream, then four in parallel with pings
/// going on meanwhile (the round trip under load), then pings alone.
fn measure(client: &Path, server: &Path, server_ip: &str, seconds: u32) -> Result<Value> {
    let one = iperf(client, server, server_ip, seconds, 1)?;
    let (pinger, ip) = (client.to_owned(), server_ip.to_owned());
    // Pings through the middle half of the loaded run.
    let loaded = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(500 + u64::from(seconds) * 250));
        ping(&pinger, &ip, (seconds * 10).max(5), "0.05")
    });
    let four = iperf(client, server, server_ip, seconds, 4)?;
    let (loaded_avg, loaded_max) = loaded.join().map_err(|_| anyhow::anyhow!("the pinging thread panicked"))??;
    let (avg, max) = ping(client, server_ip, 50, "0.02")?;
    Ok(json!({
        "throughput_gbit_s": one,
        "throughput_4_streams_gbit_s": four,
        "rtt_avg_ms": avg,
        "rtt_max_ms": max,
        "rtt_under_load_avg_ms": loaded_avg,
        "rtt_under_load_max_ms": loaded_max,
    }))
}

/// `a / b` to two decimals, for the report's ratios.
fn ratio(a: &Value, b: &Value, key: &str) -> Value {
    match (a[key].as_f64(), b[key].as_f64()) {
        (Some(a), Some(b)) if b > 0.0 => json!((a / b * 100.0).round() / 100.0),
        _ => Value::Null,
    }
}

/// A wireguard-go tunnel between namespaces `a` and `b` (underlay addresses `a_ip`, `b_ip`),
/// with overlay addresses 192.168.250.1 and .2; returns the overlay address of `b`'s end.
/// The interfaces are `zgbench0` and `zgbench1`.
fn wireguard_go(a: &Path, a_ip: &str, b: &Path, b_ip: &str) -> Result<&'static str> {
    let ends = [(a, a_ip, "192.168.250.1/24", b_ip), (b, b_ip, "192.168.250.2/24", a_ip)];
    let keys: Vec<(String, String)> = (0..2)
        .map(|_| {
            let (private, public) = zgrid_types::sealed::wireguard_keypair();
            let b64 = |k: [u8; 32]| base64_encode(&k);
            (b64(private), b64(public))
        })
        .collect();
    for (i, (ns, _, address, peer_ip)) in ends.iter().enumerate() {
        let name = format!("zgbench{i}");
        run(nsenter(ns, "wireguard-go").arg(&name), "wireguard-go", "wireguard-go")?;
        let key_file = std::env::temp_dir().join(format!("{name}-{}.key", std::process::id()));
        std::fs::write(&key_file, &keys[i].0)?;
        let peer = &keys[1 - i].1;
        let endpoint = format!("{peer_ip}:{}", 51900 + (1 - i));
        let set = run(
            nsenter(ns, "wg")
                .args(["set", &name, "listen-port", &(51900 + i).to_string(), "private-key"])
                .arg(&key_file)
                .args(["peer", peer, "endpoint", &endpoint, "allowed-ips", "192.168.250.0/24"]),
            "wg set",
            "wireguard-tools",
        );
        std::fs::remove_file(&key_file)?;
        set?;
        run(nsenter(ns, "ip").args(["addr", "add", address, "dev", &name]), "ip addr", "iproute2")?;
        run(nsenter(ns, "ip").args(["link", "set", &name, "mtu", "1420", "up"]), "ip link", "iproute2")?;
    }
    Ok("192.168.250.2")
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub async fn run_bench(ctx: &Ctx, seconds: u32) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let zgrid = std::env::current_exe().context("cannot find the zgrid binary")?;
    let mut config = DevnetConfig::new(zgrid.clone(), dir.path());
    config.log_level = "warn".into();
    let image = busybox_rootfs(dir.path())?;
    let report = tokio::task::spawn_blocking(move || -> Result<Value> {
        let devnet = Devnet::start(config)?;
        let (a, b) = (devnet.add_node(NodeOptions::default())?, devnet.add_node(NodeOptions::default())?);
        let home = dir.path().join("deployer");
        let explorer = devnet.explorer_url();
        cli(&zgrid, &home, explorer, &["id", "new", "bench", "--register"])?;
        cli(
            &zgrid,
            &home,
            explorer,
            &["network", "create", "--name", "bench", "--cidr", "10.99.0.0/16", "--node", a.id(), "--node", b.id()],
        )?;
        let mut containers = Vec::new();
        for node in [&a, &b] {
            let deployed = cli(
                &zgrid,
                &home,
                explorer,
                &[
                    "deploy",
                    "container",
                    "--node",
                    node.id(),
                    "--flist",
                    &image.display().to_string(),
                    "--entrypoint",
                    "sleep 100000",
                    "--memory",
                    "64",
                    "--network",
                    "bench",
                    "--wait",
                ],
            )?;
            let id = deployed["workload"]["payload"]["id"].as_str().context("no workload id")?.to_owned();
            let ip = deployed["result"]["payload"]["data"]["ipv4"].as_str().context("no container address")?.to_owned();
            containers.push((Path::new("/run/netns").join(format!("zgc-{id}")), ip));
        }
        let overlay = measure(&containers[0].0, &containers[1].0, &containers[1].1, seconds)?;
        let (a_ns, b_ns) = (a.netns().path(), b.netns().path());
        let underlay = measure(&a_ns, &b_ns, &b.address().to_string(), seconds)?;
        let far_end = wireguard_go(&a_ns, &a.address().to_string(), &b_ns, &b.address().to_string())?;
        let reference = measure(&a_ns, &b_ns, far_end, seconds);
        // Deleting the interfaces ends wireguard-go cleanly (it removes its control sockets).
        for (i, ns) in [&a_ns, &b_ns].into_iter().enumerate() {
            let _ = nsenter(ns, "ip").args(["link", "delete", &format!("zgbench{i}")]).output();
        }
        let reference = reference?;
        drop((a, b, devnet));
        let ratios = |of: &Value| {
            json!({
                "one_stream": ratio(&overlay, of, "throughput_gbit_s"),
                "four_streams": ratio(&overlay, of, "throughput_4_streams_gbit_s"),
            })
        };
        Ok(json!({
            "overlay_container_to_container": overlay,
            "underlay_node_to_node": underlay,
            "wireguard_go_node_to_node": reference,
            "overlay_vs_wireguard_go": ratios(&reference),
            "overlay_vs_underlay": ratios(&underlay),
            "seconds": seconds,
        }))
    })
    .await??;
    if ctx.json {
        return output::json(&report);
    }
    for (name, key) in [
        ("overlay, container to container", "overlay_container_to_container"),
        ("underlay, node to node", "underlay_node_to_node"),
        ("wireguard-go tunnel, node to node", "wireguard_go_node_to_node"),
    ] {
        let v = &report[key];
        println!(
            "{name}: 1 stream {} Gbit/s, 4 streams {} Gbit/s; rtt avg {} ms (max {}), under load avg {} ms (max {})",
            v["throughput_gbit_s"],
            v["throughput_4_streams_gbit_s"],
            v["rtt_avg_ms"],
            v["rtt_max_ms"],
            v["rtt_under_load_avg_ms"],
            v["rtt_under_load_max_ms"]
        );
    }
    for (name, key) in [("wireguard-go", "overlay_vs_wireguard_go"), ("the underlay", "overlay_vs_underlay")] {
        let v = &report[key];
        println!("overlay / {name}: {}x with 1 stream, {}x with 4", v["one_stream"], v["four_streams"]);
    }
    Ok(())
}
