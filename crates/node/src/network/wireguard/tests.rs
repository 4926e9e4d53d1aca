//! Two devices in two network namespaces joined by a veth pair: what goes in one end of the
//! tunnel comes out of the other unchanged. Needs root.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::*;
use crate::network::netns::in_netns;

/// Overlay addresses of the two ends.
const OVERLAY: [&str; 2] = ["10.201.0.1", "10.201.0.2"];
/// Underlay addresses of the two ends (a documentation range).
const UNDERLAY: [&str; 2] = ["192.0.2.1", "192.0.2.2"];
const PORT: u16 = 51820;

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The two namespaces with a device each; removed on drop, even when the test fails.
struct Pair {
    names: [String; 2],
    tunnels: Vec<Tunnel>,
    /// Each device's key pair (private, public).
    keys: Vec<([u8; 32], [u8; 32])>,
}

/// The userspace backend.
fn userspace() -> Backend {
    Backend::Userspace("chosen by the test".into())
}

impl Pair {
    /// Two devices, each with the other as its peer at its underlay address.
    fn new(tag: &str, backend: &Backend) -> Self {
        let mut pair = Self::unpeered(tag, backend);
        pair.peer(0, true);
        pair.peer(1, true);
        pair
    }

    /// Two devices without peers.
    fn unpeered(tag: &str, backend: &Backend) -> Self {
        let id = format!("{tag}{}", std::process::id() % 100_000);
        let names = [format!("zgwa{id}"), format!("zgwb{id}")];
        let keys = (0..2).map(|_| zgrid_types::sealed::wireguard_keypair()).collect();
        let mut pair = Self { names: names.clone(), tunnels: Vec::new(), keys };
        for name in &names {
            ip(&["netns", "add", name]);
            ip(&["-n", name, "link", "set", "lo", "up"]);
        }
        let (a, b) = (format!("zgva{id}"), format!("zgvb{id}"));
        ip(&["link", "add", &a, "netns", &names[0], "type", "veth", "peer", "name", &b, "netns", &names[1]]);
        for (i, (name, veth)) in names.iter().zip([&a, &b]).enumerate() {
            ip(&["-n", name, "addr", "add", &format!("{}/24", UNDERLAY[i]), "dev", veth]);
            ip(&["-n", name, "link", "set", veth, "up"]);
            let (key, device, backend) = (pair.keys[i].0, format!("zgwt{i}"), backend.clone());
            let tunnel = in_netns(&pair.path(i), move || {
                let ip = crate::runtime::command::find_program("ip", "iproute2").map_err(std::io::Error::other)?;
                let mut tunnel = Tunnel::create(&backend, &ip, &device, &key).map_err(std::io::Error::other)?;
                assert!(tunnel.listen(PORT).map_err(std::io::Error::other)?);
                Ok(tunnel)
            })
            .expect("device");
            ip(&["-n", name, "addr", "add", &format!("{}/24", OVERLAY[i]), "dev", &format!("zgwt{i}")]);
            ip(&["-n", name, "link", "set", &format!("zgwt{i}"), "mtu", crate::network::MTU, "up"]);
            pair.tunnels.push(tunnel);
        }
        pair
    }

    /// Give device `i` the other as its peer, at its underlay address when `endpoint`.
    fn peer(&mut self, i: usize, endpoint: bool) {
        let other = 1 - i;
        let peer = PeerConfig {
            endpoint: endpoint.then(|| SocketAddr::new(UNDERLAY[other].parse().unwrap(), PORT)),
            allowed: vec![format!("{}/32", OVERLAY[other]).parse().unwrap()],
        };
        self.tunnels[i].set_peers(BTreeMap::from([(self.keys[other].1, peer)])).expect("peers");
    }

    fn path(&self, i: usize) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.names[i])
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        self.tunnels.clear();
        for name in &self.names {
            let _ = Command::new("ip").args(["netns", "delete", name]).output();
        }
    }
}

/// Deterministic bytes that differ along the stream: a xorshift generator.
struct Bytes(u64);

impl Bytes {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            chunk.copy_from_slice(&self.0.to_le_bytes()[..chunk.len()]);
        }
    }
}

/// Send `total` bytes from namespace `from` to `OVERLAY[to]` over TCP in writes of varied
/// sizes; returns the hash of what was sent.
fn send_tcp(
    pair: &Pair,
    from: usize,
    to: usize,
    port: u16,
    total: usize,
    seed: u64,
) -> std::thread::JoinHandle<blake3::Hash> {
    let target = SocketAddr::new(OVERLAY[to].parse().unwrap(), port);
    let path = pair.path(from);
    std::thread::spawn(move || {
        let mut stream = (0..100)
            .find_map(|_| {
                in_netns(&path, move || TcpStream::connect_timeout(&target, Duration::from_secs(1)))
                    .inspect_err(|_| std::thread::sleep(Duration::from_millis(100)))
                    .ok()
            })
            .expect("connect through the tunnel");
        let (mut bytes, mut hasher, mut sent) = (Bytes(seed), blake3::Hasher::new(), 0);
        let mut buf = vec![0u8; 1 << 17];
        let mut size = 1usize;
        while sent < total {
            // Sizes from 1 byte to 128 KiB, so segments, coalescing and their edges all occur.
            size = (size * 7 + 13) % buf.len() + 1;
            let n = size.min(total - sent);
            bytes.fill(&mut buf[..n]);
            stream.write_all(&buf[..n]).expect("send");
            hasher.update(&buf[..n]);
            sent += n;
        }
        hasher.finalize()
    })
}

/// Accept one connection on `listener` and hash everything it brings.
fn receive_tcp(listener: TcpListener) -> std::thread::JoinHandle<(usize, blake3::Hash)> {
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        let (mut hasher, mut buf, mut total) = (blake3::Hasher::new(), vec![0u8; 1 << 16], 0);
        loop {
            let n = stream.read(&mut buf).expect("receive");
            if n == 0 {
                return (total, hasher.finalize());
            }
            hasher.update(&buf[..n]);
            total += n;
        }
    })
}

#[test]
fn a_gigabyte_of_tcp_and_datagrams_of_every_size_cross_the_tunnel_unchanged() {
    a_gigabyte_crosses_unchanged(&Pair::new("g", &userspace()));
}

#[test]
fn with_the_kernel_backend_a_gigabyte_crosses_unchanged_too() {
    let ip = crate::runtime::command::find_program("ip", "iproute2").unwrap();
    match Backend::detect(&ip) {
        backend @ Backend::Kernel(_) => a_gigabyte_crosses_unchanged(&Pair::new("k", &backend)),
        Backend::Userspace(why) => eprintln!("SKIPPED: the kernel WireGuard backend cannot run here: {why}"),
    }
}

/// 1 GiB of TCP (half each way, at once) and datagrams of every size up to past the MTU
/// through `pair`, checked byte for byte.
fn a_gigabyte_crosses_unchanged(pair: &Pair) {
    const EACH_WAY: usize = 512 << 20;

    // Datagrams of every size up to past the MTU (fragmented inside the tunnel), each echoed
    // back: every byte must return unchanged.
    let echo = in_netns(&pair.path(1), || UdpSocket::bind((OVERLAY[1], 7))).expect("bind");
    let echoer = std::thread::spawn(move || {
        let mut buf = vec![0u8; 65_536];
        while let Ok((n, from)) = echo.recv_from(&mut buf) {
            if n == 0 {
                return;
            }
            echo.send_to(&buf[..n], from).expect("echo");
        }
    });
    let client = in_netns(&pair.path(0), || UdpSocket::bind((OVERLAY[0], 0))).expect("bind");
    client.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let sizes = (1..=1500).chain([1391, 1392, 1393, 1420, 1421, 2000, 2841, 8000, 9000, 30_000, 65_000]);
    let (mut bytes, mut sent, mut reply) = (Bytes(7), vec![0u8; 65_536], vec![0u8; 65_536]);
    let mut datagram_bytes = 0;
    for size in sizes {
        bytes.fill(&mut sent[..size]);
        let echoed = (0..50).any(|_| {
            client.send_to(&sent[..size], (OVERLAY[1], 7)).expect("send");
            matches!(client.recv(&mut reply), Ok(n) if n == size)
        });
        assert!(echoed, "a datagram of {size} bytes never came back");
        assert_eq!(&reply[..size], &sent[..size], "a datagram of {size} bytes came back altered");
        datagram_bytes += 2 * size;
    }
    client.send_to(&[], (OVERLAY[1], 7)).unwrap();
    let _ = echoer.join();

    // TCP both ways at once, half a gigabyte each.
    let listeners: Vec<TcpListener> = (0..2)
        .map(|i| in_netns(&pair.path(i), move || TcpListener::bind((OVERLAY[i], 5001))).expect("listen"))
        .collect();
    let receivers: Vec<_> = listeners.into_iter().map(receive_tcp).collect();
    let senders = [send_tcp(pair, 0, 1, 5001, EACH_WAY, 1), send_tcp(pair, 1, 0, 5001, EACH_WAY, 2)];
    let sent: Vec<blake3::Hash> = senders.into_iter().map(|s| s.join().expect("sender")).collect();
    let received: Vec<(usize, blake3::Hash)> = receivers.into_iter().map(|r| r.join().expect("receiver")).collect();
    assert_eq!(received[1], (EACH_WAY, sent[0]), "what A sent reached B altered");
    assert_eq!(received[0], (EACH_WAY, sent[1]), "what B sent reached A altered");
    assert!(2 * EACH_WAY + datagram_bytes >= 1 << 30);
}

#[test]
fn a_dropped_device_takes_its_interface_and_threads_with_it() {
    let mut pair = Pair::new("d", &userspace());
    let threads = || std::fs::read_dir("/proc/self/task").unwrap().count();
    let before = threads();
    pair.tunnels.pop();
    assert!(threads() <= before - 3, "the device's threads still run");
    let links = Command::new("ip").args(["-n", &pair.names[1], "-o", "link"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&links.stdout).contains("zgwt1"), "the interface is still there");
}

/// A device behind NAT (it knows its peer's endpoint; the peer does not know its) whose peer
/// was away for longer than WireGuard's 90 s of handshake attempts is reached by it again once
/// the peer is back, without sending anything itself. About 2 minutes.
#[test]
fn a_peer_away_past_the_handshake_attempts_reaches_a_node_behind_nat_once_back() {
    let mut pair = Pair::unpeered("r", &userspace());
    pair.peer(0, true);
    // The peer knows nothing of device 0 past the 90 s its handshakes are attempted for.
    std::thread::sleep(Duration::from_secs(100));
    pair.peer(1, false);
    let receiver = in_netns(&pair.path(0), || UdpSocket::bind((OVERLAY[0], 7))).expect("bind");
    receiver.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let sender = in_netns(&pair.path(1), || UdpSocket::bind((OVERLAY[1], 0))).expect("bind");
    let mut buf = [0u8; 16];
    // Device 1 can send only once device 0's handshake told it where device 0 is.
    let arrived = (0..60).any(|_| {
        sender.send_to(b"back", (OVERLAY[0], 7)).expect("send");
        matches!(receiver.recv(&mut buf), Ok(4))
    });
    assert!(arrived, "the peer never reached the device behind NAT: its handshakes stopped for good");
}
