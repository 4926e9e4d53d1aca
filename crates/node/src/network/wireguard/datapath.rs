//! The device's data path: three threads around boringtun's `noise` state machines.
//!
//! - *outbound*: reads the TUN device with segmentation offload (one read returns up to 64 KiB
//!   of one TCP flow, split here into MTU-sized packets), encrypts each for the peer routing
//!   its destination, and sends a peer's datagrams in one `sendmsg` with `UDP_SEGMENT`;
//! - *inbound*: receives many datagrams per `recvmmsg`, coalesced by `UDP_GRO`, decrypts them
//!   and writes them to the TUN device coalesced back into large TCP segments;
//! - *timers*: every 250 ms drives each peer's handshake, keepalive and expiry timers.
//!
//! Each peer's state is behind its own lock, held for one packet at a time. Where the kernel
//! lacks an offload the same loops run one packet per read or datagram.

use std::collections::HashMap;
use std::io::{IoSliceMut, Read};
use std::net::{IpAddr, SocketAddr, SocketAddrV6, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use boringtun::noise::errors::WireGuardError;
use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Packet, Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};
use ipnet::IpNet;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use quinn_udp::{RecvMeta, Transmit, UdpSockRef, UdpSocketState};
use tun_rs::{GROTable, IDEAL_BATCH_SIZE, SyncDevice, VIRTIO_NET_HDR_LEN};

use super::burst::{self, Burst, Next};

/// Room before each packet written to the TUN device, for its `virtio_net_hdr`.
const TUN_OFFSET: usize = VIRTIO_NET_HDR_LEN;
/// Largest datagram or packet handled whole (a coalesced receive is larger, but is cut up).
const MAX_PACKET: usize = 65_535;
/// Receive buffers per `recvmmsg`.
const RECV_BATCH: usize = 8;
/// Period of the peers' timers, as WireGuard's reference implementations use.
const TICK: Duration = Duration::from_millis(250);
/// Handshake initiations per second answered without a cookie challenge.
const HANDSHAKE_RATE_LIMIT: u64 = 100;

/// One peer of the device.
pub(super) struct Peer {
    tunn: Mutex<Tunn>,
    /// Where its datagrams go: configured, then wherever its last authenticated datagram came
    /// from (WireGuard's roaming).
    endpoint: Mutex<Option<SocketAddr>>,
    allowed: Vec<IpNet>,
    /// Its key, to name it in the log.
    key: [u8; 32],
    /// Whether it was given a persistent keepalive: handshakes with it are never given up.
    persistent: bool,
    /// Set once its handshakes went unanswered for 90 s, until a session is up again.
    unanswered: AtomicBool,
}

impl Peer {
    fn endpoint(&self) -> Option<SocketAddr> {
        *self.endpoint.lock().expect("lock")
    }

    /// Its key as `wg` shows it (base64).
    fn name(&self) -> String {
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, self.key)
    }
}

/// The device's keys and peers; the threads read it for every batch.
pub(super) struct Config {
    private: StaticSecret,
    public: PublicKey,
    limiter: Arc<RateLimiter>,
    peers: HashMap<[u8; 32], Arc<Peer>>,
    /// Peers by the index their sessions carry (its upper 24 bits).
    by_index: HashMap<u32, Arc<Peer>>,
    /// Every allowed prefix with its peer, longest first: the first match routes a packet.
    routes: Vec<(IpNet, Arc<Peer>)>,
    next_index: u32,
}

impl Config {
    pub(super) fn new(private: &[u8; 32]) -> Self {
        let private = StaticSecret::from(*private);
        let public = PublicKey::from(&private);
        Self {
            limiter: Arc::new(RateLimiter::new(&public, HANDSHAKE_RATE_LIMIT)),
            private,
            public,
            peers: HashMap::new(),
            by_index: HashMap::new(),
            routes: Vec::new(),
            next_index: rand::random::<u32>() >> 8,
        }
    }

    /// Use `private` from now on; sessions start over unless the key is the one in use.
    pub(super) fn set_key(&mut self, private: &[u8; 32]) {
        if self.private.to_bytes() == *private {
            return;
        }
        let fresh = Self::new(private);
        (self.private, self.public, self.limiter) = (fresh.private, fresh.public, fresh.limiter);
        for peer in self.peers.values() {
            peer.tunn.lock().expect("lock").set_static_private(
                self.private.clone(),
                self.public,
                Some(self.limiter.clone()),
            );
        }
    }

    /// Add peer `key`; returns its first handshake initiation when it has an endpoint, so
    /// the session is up before the first packet needs it.
    pub(super) fn add(
        &mut self,
        key: [u8; 32],
        endpoint: Option<SocketAddr>,
        allowed: Vec<IpNet>,
        keepalive: u16,
    ) -> Option<(SocketAddr, Vec<u8>)> {
        let index = self.free_index();
        let tunn = Tunn::new(
            self.private.clone(),
            PublicKey::from(key),
            None,
            Some(keepalive),
            index,
            Some(self.limiter.clone()),
        );
        let peer = Arc::new(Peer {
            tunn: Mutex::new(tunn),
            endpoint: Mutex::new(endpoint),
            allowed,
            key,
            persistent: keepalive > 0,
            unanswered: AtomicBool::new(false),
        });
        self.by_index.insert(index, peer.clone());
        self.peers.insert(key, peer.clone());
        self.reroute();
        let to = endpoint?;
        let mut buf = vec![0; 256];
        match peer.tunn.lock().expect("lock").format_handshake_initiation(&mut buf, false) {
            TunnResult::WriteToNetwork(init) => Some((to, init.to_vec())),
            _ => None,
        }
    }

    /// Remove peer `key` and its sessions.
    pub(super) fn remove(&mut self, key: &[u8; 32]) {
        if let Some(peer) = self.peers.remove(key) {
            self.by_index.retain(|_, p| !Arc::ptr_eq(p, &peer));
            self.reroute();
        }
    }

    fn free_index(&mut self) -> u32 {
        loop {
            self.next_index = (self.next_index + 1) & 0x00ff_ffff;
            if !self.by_index.contains_key(&self.next_index) {
                return self.next_index;
            }
        }
    }

    fn reroute(&mut self) {
        self.routes = self.peers.values().flat_map(|p| p.allowed.iter().map(|net| (*net, p.clone()))).collect();
        self.routes.sort_by_key(|(net, _)| std::cmp::Reverse(net.prefix_len()));
    }

    /// The peer whose allowed prefixes hold `dst` most narrowly.
    fn route(&self, dst: IpAddr) -> Option<&Arc<Peer>> {
        self.routes.iter().find(|(net, _)| net.contains(&dst)).map(|(_, p)| p)
    }

    /// The peer an incoming datagram is for, once checked against the handshake rate limiter
    /// (which may answer with a cookie reply instead).
    fn peer_of(&self, from: IpAddr, datagram: &[u8], cookie: &mut [u8]) -> Incoming {
        let packet = match self.limiter.verify_packet(Some(from), datagram, cookie) {
            Ok(packet) => packet,
            Err(TunnResult::WriteToNetwork(reply)) => return Incoming::Reply(reply.len()),
            Err(_) => return Incoming::Drop,
        };
        let peer = match &packet {
            Packet::HandshakeInit(init) => parse_handshake_anon(&self.private, &self.public, init)
                .ok()
                .and_then(|half| self.peers.get(&half.peer_static_public)),
            Packet::HandshakeResponse(p) => self.by_index.get(&(p.receiver_idx >> 8)),
            Packet::PacketCookieReply(p) => self.by_index.get(&(p.receiver_idx >> 8)),
            Packet::PacketData(p) => self.by_index.get(&(p.receiver_idx >> 8)),
        };
        peer.map_or(Incoming::Drop, |peer| Incoming::Peer(peer.clone()))
    }
}

enum Incoming {
    Peer(Arc<Peer>),
    /// A cookie reply of this many bytes is in the cookie buffer.
    Reply(usize),
    Drop,
}

/// The bound UDP socket, dual-stack where the namespace has IPv6.
pub(super) struct Udp {
    socket: UdpSocket,
    state: UdpSocketState,
    v6: bool,
}

impl Udp {
    /// Bind `port` (0: any) on every address; `EADDRINUSE` when taken.
    pub(super) fn bind(port: u16) -> std::io::Result<Self> {
        use socket2::{Domain, Protocol, Socket, Type};
        let v6 = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP)).and_then(|s| {
            s.set_only_v6(false)?;
            Ok(s)
        });
        let (socket, address, v6) = match v6 {
            Ok(s) => (s, SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port)), true),
            // A namespace without IPv6.
            Err(_) => (
                Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?,
                SocketAddr::from(([0, 0, 0, 0], port)),
                false,
            ),
        };
        socket.bind(&address.into())?;
        let socket: UdpSocket = socket.into();
        let state = UdpSocketState::new(UdpSockRef::from(&socket))?;
        Ok(Self { socket, state, v6 })
    }

    /// `to` as this socket addresses it (IPv4 as IPv4-mapped IPv6 on a dual-stack socket).
    fn destination(&self, to: SocketAddr) -> SocketAddr {
        match to {
            SocketAddr::V4(v4) if self.v6 => SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0).into(),
            _ => to,
        }
    }

    /// Send `contents` to `to`, cut into datagrams of `segment` bytes when given; waits while
    /// the socket's buffer is full. Errors are the caller's to log; `Ok(false)` when stopping.
    fn send(&self, to: SocketAddr, contents: &[u8], segment: Option<usize>, stop: &Stop) -> std::io::Result<bool> {
        let transmit =
            Transmit { destination: self.destination(to), ecn: None, contents, segment_size: segment, src_ip: None };
        loop {
            match self.state.try_send(UdpSockRef::from(&self.socket), &transmit) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if !stop.wait(self.socket.as_fd(), PollFlags::POLLOUT) {
                        return Ok(false);
                    }
                }
                Err(e) => return Err(e),
                Ok(()) => return Ok(true),
            }
        }
    }
}

/// Everything the threads share.
pub(super) struct Shared {
    pub(super) tun: SyncDevice,
    pub(super) config: RwLock<Config>,
    pub(super) udp: RwLock<Arc<Udp>>,
    stopping: AtomicBool,
    /// Our end of the stop signal: the other end is closed when the device stops.
    stop: UnixStream,
    /// Readable when the socket was replaced.
    rebound: UnixStream,
}

/// The threads' view of the stop signal.
struct Stop<'a>(&'a Shared);

impl Stop<'_> {
    fn now(&self) -> bool {
        self.0.stopping.load(Ordering::Relaxed)
    }

    /// Wait until `fd` is ready for `flags`; false when the device stops meanwhile.
    fn wait(&self, fd: BorrowedFd<'_>, flags: PollFlags) -> bool {
        self.poll(&[(fd, flags)], None).is_some()
    }

    /// Wait `timeout`; false when the device stops meanwhile.
    fn sleep(&self, timeout: Duration) -> bool {
        self.poll(&[], Some(timeout)).is_some()
    }

    /// Wait until one of `fds` is ready, the stop signal, or `timeout`; `None` when stopping,
    /// otherwise which of `fds` are ready.
    fn poll(&self, fds: &[(BorrowedFd<'_>, PollFlags)], timeout: Option<Duration>) -> Option<Vec<bool>> {
        let timeout = timeout.map_or(PollTimeout::NONE, |t| PollTimeout::try_from(t).unwrap_or(PollTimeout::MAX));
        loop {
            if self.now() {
                return None;
            }
            let mut polled: Vec<PollFd<'_>> = fds.iter().map(|(fd, flags)| PollFd::new(*fd, *flags)).collect();
            polled.push(PollFd::new(self.0.stop.as_fd(), PollFlags::POLLIN));
            match poll(&mut polled, timeout) {
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    tracing::error!(error = %e, "WireGuard device: poll failed");
                    return None;
                }
                Ok(_) => {}
            }
            let ready: Vec<bool> = polled.iter().map(|p| p.revents().is_some_and(|r| !r.is_empty())).collect();
            if ready[fds.len()] || self.now() {
                return None;
            }
            return Some(ready[..fds.len()].to_vec());
        }
    }
}

impl Shared {
    /// Shared state for `tun` and `udp`, and the handle that stops the threads when dropped.
    pub(super) fn new(tun: SyncDevice, config: Config, udp: Udp) -> std::io::Result<(Arc<Self>, Handle)> {
        let (stop, stop_handle) = UnixStream::pair()?;
        let (rebound, rebound_handle) = UnixStream::pair()?;
        rebound.set_nonblocking(true)?;
        tun.set_nonblocking(true)?;
        let shared = Arc::new(Self {
            tun,
            config: RwLock::new(config),
            udp: RwLock::new(Arc::new(udp)),
            stopping: AtomicBool::new(false),
            stop,
            rebound,
        });
        Ok((shared, Handle { stop: Some(stop_handle), rebound: rebound_handle, threads: Vec::new() }))
    }

    /// Send one datagram (a handshake message, keepalive or cookie) to `to`.
    pub(super) fn send_one(&self, to: SocketAddr, datagram: &[u8]) {
        let udp = self.udp.read().expect("lock").clone();
        if let Err(e) = udp.send(to, datagram, None, &Stop(self)) {
            tracing::debug!(%to, error = %e, "WireGuard device: cannot send");
        }
    }
}

/// One of the device's threads.
type Loop = fn(&Shared);

/// Stops the threads when dropped, and waits for them.
pub(super) struct Handle {
    stop: Option<UnixStream>,
    rebound: UnixStream,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Handle {
    /// Start the threads on `shared`.
    pub(super) fn start(&mut self, shared: &Arc<Shared>, name: &str) -> std::io::Result<()> {
        let loops: [(&str, Loop); 3] = [("out", outbound), ("in", inbound), ("timers", timers)];
        for (what, run) in loops {
            let shared = shared.clone();
            let thread = std::thread::Builder::new().name(format!("wg-{what}-{name}")).spawn(move || run(&shared))?;
            self.threads.push(thread);
        }
        Ok(())
    }

    /// Tell the inbound thread that the socket was replaced.
    pub(super) fn rebound(&self) {
        use std::io::Write;
        let _ = (&self.rebound).write_all(&[1]);
    }

    /// Stop and join the threads, marking `shared` as stopping first.
    pub(super) fn stop(&mut self, shared: &Shared) {
        shared.stopping.store(true, Ordering::Relaxed);
        self.stop.take();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// TUN to UDP: read, split, encrypt, send in bursts.
fn outbound(shared: &Shared) {
    let stop = Stop(shared);
    let mut original = vec![0u8; VIRTIO_NET_HDR_LEN + MAX_PACKET];
    // Smaller than a burst's room by more than WireGuard's overhead, so any packet read fits
    // encrypted.
    let mut packets = vec![vec![0u8; burst::MAX_DATAGRAM - 64]; IDEAL_BATCH_SIZE];
    let mut sizes = vec![0usize; IDEAL_BATCH_SIZE];
    let mut udp = shared.udp.read().expect("lock").clone();
    let mut burst = Burst::new(udp.state.max_gso_segments());
    while !stop.now() {
        let n = match shared.tun.recv_multiple(&mut original, &mut packets, &mut sizes, 0) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if !stop.wait(shared.tun.as_fd(), PollFlags::POLLIN) {
                    return;
                }
                continue;
            }
            Err(e) if e.raw_os_error() == Some(nix::errno::Errno::EBADFD as i32) => {
                tracing::warn!(error = %e, "WireGuard device: the TUN device is gone");
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, "WireGuard device: cannot read a packet");
                continue;
            }
        };
        let latest = shared.udp.read().expect("lock").clone();
        if !Arc::ptr_eq(&latest, &udp) {
            udp = latest;
            burst.limit(udp.state.max_gso_segments());
        }
        let config = shared.config.read().expect("lock");
        for (packet, &size) in packets.iter().zip(&sizes).take(n) {
            let packet = &packet[..size];
            let Some(peer) = Tunn::dst_address(packet).and_then(|dst| config.route(dst)) else {
                continue;
            };
            let Some(to) = peer.endpoint() else {
                continue;
            };
            if burst.must_send_before(to) {
                flush(&udp, &mut burst, &stop);
            }
            let written = match peer.tunn.lock().expect("lock").encapsulate(packet, burst.room()) {
                TunnResult::WriteToNetwork(datagram) => datagram.len(),
                TunnResult::Err(e) => {
                    tracing::debug!(error = ?e, "WireGuard device: cannot encrypt a packet");
                    continue;
                }
                _ => continue,
            };
            match burst.commit(to, written) {
                Next::Carry => {}
                Next::Send => flush(&udp, &mut burst, &stop),
                Next::SendBefore(sent) => {
                    flush(&udp, &mut burst, &stop);
                    if burst.restart(to, sent, written) == Next::Send {
                        flush(&udp, &mut burst, &stop);
                    }
                }
            }
        }
        drop(config);
        flush(&udp, &mut burst, &stop);
    }
}

/// Send what `burst` holds and empty it. When the kernel refuses segmentation, it is sent
/// again one datagram per call from then on.
fn flush(udp: &Udp, burst: &mut Burst, stop: &Stop<'_>) {
    let Some((contents, to, segment)) = burst.contents() else {
        return;
    };
    match udp.send(to, contents, segment, stop) {
        Ok(_) => {}
        Err(e) if segment.is_some() && udp.state.max_gso_segments() == 1 => {
            // quinn-udp turned segmentation off after this error: send them one by one.
            tracing::info!(error = %e, "WireGuard device: UDP segmentation offload refused; sending datagrams singly");
            for datagram in contents.chunks(segment.unwrap_or(contents.len())) {
                let _ = udp.send(to, datagram, None, stop);
            }
            burst.clear();
            burst.limit(1);
            return;
        }
        Err(e) => tracing::debug!(%to, error = %e, "WireGuard device: cannot send"),
    }
    burst.clear();
}

/// UDP to TUN: receive, decrypt, write coalesced.
fn inbound(shared: &Shared) {
    let stop = Stop(shared);
    let mut received = vec![vec![0u8; MAX_PACKET]; RECV_BATCH];
    let mut meta = vec![RecvMeta::default(); RECV_BATCH];
    let mut out: Vec<Vec<u8>> =
        (0..IDEAL_BATCH_SIZE).map(|_| Vec::with_capacity(TUN_OFFSET + burst::MAX_DATAGRAM)).collect();
    let mut gro = GROTable::default();
    let mut reply = vec![0u8; burst::MAX_DATAGRAM];
    let mut udp = shared.udp.read().expect("lock").clone();
    while !stop.now() {
        let mut slices: Vec<IoSliceMut<'_>> = received.iter_mut().map(|b| IoSliceMut::new(b)).collect();
        let n = match udp.state.recv(UdpSockRef::from(&udp.socket), &mut slices, &mut meta) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let fds = [(udp.socket.as_fd(), PollFlags::POLLIN), (shared.rebound.as_fd(), PollFlags::POLLIN)];
                let Some(ready) = stop.poll(&fds, None) else {
                    return;
                };
                if ready[1] {
                    let mut drain = [0u8; 64];
                    while (&shared.rebound).read(&mut drain).is_ok_and(|n| n > 0) {}
                    udp = shared.udp.read().expect("lock").clone();
                }
                continue;
            }
            Err(e) => {
                tracing::debug!(error = %e, "WireGuard device: cannot receive");
                continue;
            }
        };
        drop(slices);
        let mut ready = 0;
        let config = shared.config.read().expect("lock");
        for (buf, meta) in received.iter().zip(&meta).take(n) {
            let from = SocketAddr::new(meta.addr.ip().to_canonical(), meta.addr.port());
            for datagram in buf[..meta.len].chunks(meta.stride.max(1)) {
                if ready == out.len() {
                    write_tun(shared, &mut gro, &mut out[..ready]);
                    ready = 0;
                }
                if decrypt(shared, &config, from, datagram, &mut out[ready], &mut reply) {
                    ready += 1;
                }
            }
        }
        drop(config);
        write_tun(shared, &mut gro, &mut out[..ready]);
    }
}

/// Handle one datagram from `from`; true when a packet for the TUN device is now in `out`
/// (after [`TUN_OFFSET`] bytes).
fn decrypt(
    shared: &Shared,
    config: &Config,
    from: SocketAddr,
    datagram: &[u8],
    out: &mut Vec<u8>,
    reply: &mut [u8],
) -> bool {
    let peer = match config.peer_of(from.ip(), datagram, reply) {
        Incoming::Peer(peer) => peer,
        Incoming::Reply(n) => {
            shared.send_one(from, &reply[..n]);
            return false;
        }
        Incoming::Drop => return false,
    };
    out.resize(TUN_OFFSET + datagram.len().max(burst::MAX_DATAGRAM), 0);
    let mut tunn = peer.tunn.lock().expect("lock");
    let (written, source) = match tunn.decapsulate(Some(from.ip()), datagram, &mut out[TUN_OFFSET..]) {
        TunnResult::WriteToTunnelV4(p, source) => (p.len(), IpAddr::V4(source)),
        TunnResult::WriteToTunnelV6(p, source) => (p.len(), IpAddr::V6(source)),
        TunnResult::WriteToNetwork(message) => {
            shared.send_one(from, message);
            // The handshake completed: send what waited for it.
            while let TunnResult::WriteToNetwork(queued) = tunn.decapsulate(None, &[], reply) {
                shared.send_one(from, queued);
            }
            drop(tunn);
            *peer.endpoint.lock().expect("lock") = Some(from);
            return false;
        }
        TunnResult::Done => {
            drop(tunn);
            *peer.endpoint.lock().expect("lock") = Some(from);
            return false;
        }
        TunnResult::Err(e) => {
            tracing::debug!(%from, error = ?e, "WireGuard device: datagram refused");
            return false;
        }
    };
    drop(tunn);
    let mut endpoint = peer.endpoint.lock().expect("lock");
    if *endpoint != Some(from) {
        *endpoint = Some(from);
    }
    drop(endpoint);
    if !peer.allowed.iter().any(|net| net.contains(&source)) {
        tracing::debug!(%source, "WireGuard device: packet from an address the peer may not use");
        return false;
    }
    out.truncate(TUN_OFFSET + written);
    true
}

/// Write `packets` to the TUN device, TCP segments of one flow coalesced.
fn write_tun(shared: &Shared, gro: &mut GROTable, packets: &mut [Vec<u8>]) {
    if packets.is_empty() {
        return;
    }
    if let Err(e) = shared.tun.send_multiple(gro, packets, TUN_OFFSET) {
        tracing::debug!(error = %e, "WireGuard device: cannot write packets to the TUN device");
    }
}

/// Every [`TICK`]: each peer's timers; every fourth, the handshake rate limiter's count.
///
/// WireGuard gives up on a peer whose handshakes went unanswered for 90 s until there is data
/// for it, which would leave a node behind NAT unreachable for good once its peer was away that
/// long. A peer with a persistent keepalive is asked again at once instead, and the log says
/// once when it stopped answering and once when it answers again.
fn timers(shared: &Shared) {
    let stop = Stop(shared);
    let mut buf = vec![0u8; burst::MAX_DATAGRAM];
    let mut tick = 0u64;
    while stop.sleep(TICK) {
        tick += 1;
        let config = shared.config.read().expect("lock");
        if tick.is_multiple_of(4) {
            config.limiter.reset_count();
        }
        for peer in config.peers.values() {
            let mut tunn = peer.tunn.lock().expect("lock");
            if peer.unanswered.load(Ordering::Relaxed) && tunn.time_since_last_handshake().is_some() {
                peer.unanswered.store(false, Ordering::Relaxed);
                tracing::info!(peer = %peer.name(), "WireGuard peer answers again");
            }
            let result = match tunn.update_timers(&mut buf) {
                TunnResult::Err(WireGuardError::ConnectionExpired) if peer.persistent && peer.endpoint().is_some() => {
                    if !peer.unanswered.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            peer = %peer.name(),
                            endpoint = ?peer.endpoint(),
                            "WireGuard peer has not answered handshakes for 90 s; still trying"
                        );
                    }
                    tunn.format_handshake_initiation(&mut buf, false)
                }
                result => result,
            };
            match result {
                TunnResult::WriteToNetwork(message) => {
                    let message = message.to_vec();
                    drop(tunn);
                    if let Some(to) = peer.endpoint() {
                        shared.send_one(to, &message);
                    }
                }
                TunnResult::Err(WireGuardError::ConnectionExpired) | TunnResult::Done => {}
                TunnResult::Err(e) => tracing::debug!(error = ?e, "WireGuard device: timer"),
                _ => {}
            }
        }
    }
}
