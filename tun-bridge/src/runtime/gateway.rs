//! The single-threaded IO loop of `tun-bridge up`.
//!
//! Owns the OS resources (TUN devices, IKE/ESP sockets, routes, the control
//! socket, the signalfd), one ike-lite [`Endpoint`] and one [`DataPath`]
//! per connection (tunnel). The per-packet work is delegated to
//! [`super::packet`]; this module moves packets between file descriptors
//! and the sans-IO cores, and turns IKE events into SA installs, route
//! moves and log lines.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ike_lite::{ChildSa, ConnId, DownReason, Endpoint, Event as IkeEvent, Transmit};
use ipsec_core::datapath::{
    DataPath, DataPathConfig, Direction, Event as DpEvent, InboundAction, OutboundAction, TunnelId,
};
use ipsec_core::sa::{
    DropReason, Expiry, Lifetime, Limits, OutboundSa, SaParams, SecretKey, TunnelEndpoints,
    UdpEncap,
};
use ipsec_core::selector::TrafficSelector;
use ipsec_core::spd::{Action, Policy, PolicyId};
use ipsec_core::wire::IpProtocol;
use tracing::{debug, info, warn};

use super::failover::{Failback, Group};
use super::keylog::KeyLog;
use super::packet::{self, classify_4500, esp_to_tun, tun_to_esp, TunVerdict, Udp4500, HEADROOM};
use super::plan::{ConnPlan, StartMode};
use super::Error;
use crate::config::values::{DpdAction, KeyingTries};
use crate::control::{
    ControlServer, Response, StatusReport, TunnelRole, TunnelState, TunnelStatus,
};
use crate::sys::netlink::{Netlink, Route, RouteTracker};
use crate::sys::poll::{Event, Interest, Poller, SignalFd, Token};
use crate::sys::tun::{Tun, TunOptions, VnetHdr, VNET_HDR_LEN};
use crate::sys::udp::{IkeSockets, RawEspSocket, RecvMeta, BATCH_MAX, NATT_PORT};

use super::offload::{complete_csum, Gro, Tso};

const TOKEN_SIGNAL: u64 = 1;
const TOKEN_TUN: u64 = 1_000;
const TOKEN_SOCK: u64 = 10_000;
const TOKEN_CONTROL: u64 = 100_000;
/// Reads (or batched receives) per readiness event before polling again
/// (fairness).
const BURST: usize = 64;
/// Receive/send buffer of the ESP sockets (`TUN_BRIDGE_SOCKBUF` overrides).
const ESP_SOCKBUF: usize = 4 << 20;
/// TUN txqueuelen (`TUN_BRIDGE_TXQLEN` overrides). The TUN driver never
/// stops its queue: packets the kernel routes into the tunnel while this
/// loop is descheduled wait in a ring of this many entries, and the rest
/// are dropped. The kernel default (500) lost 8 % of a 150k pps 64-byte
/// UDP flow on two shared cores; 5000 lost < 1 % at 250k pps, and ping
/// under a 4-stream TCP load stayed at 3.5 ms (4.1 ms with 500).
const TUN_TXQLEN: Option<u32> = Some(5000);
/// Largest inner packet a segment buffer holds (TUN MTU upper bound).
const SEG_MAX: usize = 9216;
/// How long shutdown waits for DELETE responses.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// Soft packet limit of non-ESN SAs: rekey well before the 32-bit
/// sequence number space runs out.
const SOFT_PACKETS_32: u64 = (1 << 32) - (1 << 24);
/// Grace on top of the IKE child lifetime for the data path's own hard
/// limit (ike-lite rekeys and deletes first; this is a backstop).
const HARD_GRACE: Duration = Duration::from_secs(30);

/// Drops the runtime itself counts (IO-level), by name.
#[derive(Clone, Copy, Debug)]
enum LocalDrop {
    TunWriteFull,
    SendFailed,
    NoRawSocket,
    TooBig,
    Bypass,
}

impl LocalDrop {
    const COUNT: usize = 5;
    fn name(self) -> &'static str {
        match self {
            LocalDrop::TunWriteFull => "TunQueueFull",
            LocalDrop::SendFailed => "SendFailed",
            LocalDrop::NoRawSocket => "NoRawEspSocket",
            LocalDrop::TooBig => "TooBig",
            LocalDrop::Bypass => "BypassRefused",
        }
    }
    const ALL: [LocalDrop; LocalDrop::COUNT] = [
        LocalDrop::TunWriteFull,
        LocalDrop::SendFailed,
        LocalDrop::NoRawSocket,
        LocalDrop::TooBig,
        LocalDrop::Bypass,
    ];
}

/// The current Child SA of a tunnel.
#[derive(Clone, Copy, Debug)]
struct Child {
    spi_in: u32,
    spi_out: u32,
    suite: ipsec_core::crypto::Suite,
}

/// One connection: its TUN, data path and IKE bookkeeping.
struct Tunnel {
    plan: ConnPlan,
    conn: ConnId,
    tun: Tun,
    /// The TUN takes UDP super-packets (`TUN_F_USO4`/`6` accepted).
    uso: bool,
    ifindex: u32,
    dp: DataPath,
    policies: Vec<PolicyId>,
    child: Option<Child>,
    /// Every installed Child SA with both directions usable, oldest first
    /// (the current one is normally the last).
    installed: Vec<(Child, Arc<OutboundSa>)>,
    /// Rekeyed SAs waiting for `ChildSaOutboundSwitched`: (spi_out, spi_in, SA).
    pending: Vec<(u32, u32, Arc<OutboundSa>)>,
    ike_up: bool,
    connecting: bool,
    peer_dead: bool,
    attempts: u32,
    retry_at: Option<Instant>,
    last_rekey: Option<Instant>,
    remote_seen: Option<IpAddr>,
    retired_drops: [u64; DropReason::COUNT],
    local_drops: [u64; LocalDrop::COUNT],
}

impl Tunnel {
    fn count(&mut self, d: LocalDrop) {
        self.local_drops[d as usize] += 1;
    }

    fn retire_in(&mut self, spi: u32) {
        if let Some(sa) = self.dp.remove_inbound(spi) {
            for (a, b) in self.retired_drops.iter_mut().zip(sa.stats().drops) {
                *a += b;
            }
        }
    }

    fn unbind_out(&mut self) {
        let mut seen = None;
        for &p in &self.policies {
            if let Some(sa) = self.dp.remove_outbound(p) {
                if seen != Some(sa.spi()) {
                    seen = Some(sa.spi());
                    for (a, b) in self.retired_drops.iter_mut().zip(sa.stats().drops) {
                        *a += b;
                    }
                }
            }
        }
    }

    fn bind_out(&mut self, sa: &Arc<OutboundSa>) {
        for &p in &self.policies {
            if let Err(e) = self.dp.install_outbound_sa(p, Arc::clone(sa)) {
                warn!(conn = %self.plan.name, "outbound SA: {e}");
            }
        }
    }

    fn state(&self) -> TunnelState {
        match (&self.child, self.pending.is_empty()) {
            (Some(_), false) => TunnelState::Rekeying,
            (Some(_), true) => TunnelState::Established,
            (None, _) if self.connecting || self.ike_up => TunnelState::Connecting,
            _ => TunnelState::Down,
        }
    }

    fn usable(&self) -> bool {
        self.child.is_some() && !self.peer_dead
    }
}

/// Outer sockets of one local address.
struct LocalSocks {
    ip: IpAddr,
    ike: IkeSockets,
    raw: Option<RawEspSocket>,
    /// ESP-in-UDP sends use UDP GSO (off after the kernel refused it once).
    gso: std::cell::Cell<bool>,
}

type Buf = ipsec_core::buf::PacketBuf<Vec<u8>>;

/// Reusable buffers of the loop (allocated once; nothing per packet).
struct Bufs {
    /// One 64 KiB read from a TUN (a GSO super-packet with offloads) or
    /// one IKE datagram.
    pkt: Buf,
    /// Outbound: inner packets (segments) encrypted in place, then sent
    /// with one `sendmmsg`.
    segs: Vec<Buf>,
    /// Outbound: which `segs` to send and where.
    out: Vec<(usize, TunnelEndpoints, Option<UdpEncap>)>,
    /// Inbound: datagrams received with one `recvmmsg`.
    rx: Vec<Buf>,
    metas: Vec<RecvMeta>,
    /// Inbound: TCP coalescing towards the TUN (offloads on).
    gro: GroState,
    scratch: Vec<u8>,
    events: Vec<Event>,
}

/// The coalescer and the tunnel whose TUN its packet goes to.
struct GroState {
    gro: Gro,
    owner: Option<usize>,
}

/// Data-path tuning read once from the environment (for measurements):
/// `TUN_BRIDGE_OFFLOAD=0` opens TUNs without `IFF_VNET_HDR` (no TSO/GRO);
/// `TUN_BRIDGE_BATCH=N` (1..=64) caps packets per `recvmmsg`/`sendmmsg`;
/// `TUN_BRIDGE_SOCKBUF=bytes` sets the ESP socket buffers;
/// `TUN_BRIDGE_TXQLEN=N` sets the TUN txqueuelen;
/// `TUN_BRIDGE_GSO=0` / `TUN_BRIDGE_GRO=0` turn off UDP segmentation
/// offload on send / UDP receive coalescing on the 4500 socket;
/// `TUN_BRIDGE_USO=0` keeps UDP super-packets off the TUNs.
#[derive(Clone, Copy, Debug)]
struct Tuning {
    offload: bool,
    /// UDP GSO for ESP-in-UDP sends.
    gso: bool,
    /// UDP GRO on the 4500 sockets.
    gro: bool,
    /// Offer `TUN_F_USO4/6` to the TUNs.
    uso: bool,
    batch: usize,
    /// SO_RCVBUF/SO_SNDBUF of the ESP sockets (raw and UDP/4500).
    sockbuf: usize,
    /// TUN txqueuelen (None: the kernel default).
    txqlen: Option<u32>,
}

impl Tuning {
    fn from_env() -> Tuning {
        let on = |name: &str| std::env::var(name).map_or(true, |v| v != "0");
        let offload = on("TUN_BRIDGE_OFFLOAD");
        let batch = std::env::var("TUN_BRIDGE_BATCH")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(BATCH_MAX)
            .clamp(1, BATCH_MAX);
        let sockbuf = std::env::var("TUN_BRIDGE_SOCKBUF")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(ESP_SOCKBUF)
            .clamp(64 << 10, 64 << 20);
        let txqlen = std::env::var("TUN_BRIDGE_TXQLEN")
            .ok()
            .and_then(|v| v.parse::<u32>().ok())
            .map(|v| v.clamp(16, 10_000))
            .or(TUN_TXQLEN);
        Tuning {
            offload,
            gso: on("TUN_BRIDGE_GSO"),
            gro: on("TUN_BRIDGE_GRO"),
            uso: on("TUN_BRIDGE_USO"),
            batch,
            sockbuf,
            txqlen,
        }
    }
}

/// Everything `up` runs with.
pub struct Gateway {
    ike: Endpoint,
    tunnels: Vec<Tunnel>,
    by_conn: HashMap<ConnId, usize>,
    by_spi: HashMap<u32, usize>,
    socks: Vec<LocalSocks>,
    groups: Vec<Group>,
    failback: Failback,
    routes: RouteTracker,
    keylog: Option<KeyLog>,
    started: Instant,
    shutdown_at: Option<Instant>,
    unknown_spi: u64,
    tuning: Tuning,
    /// Tunnels whose data path saw packets since the last drain (only
    /// their event queues are polled: per-wakeup work does not grow with
    /// the number of tunnels).
    dirty: Vec<usize>,
    dirty_mark: Vec<bool>,
    /// Poll every tunnel's event queue in the next drain.
    all_dirty: bool,
    /// Cached earliest data-path lifetime / retry deadline over all
    /// tunnels (recomputed only when something changed or it passed).
    house_at: Option<Instant>,
}

/// Options of [`Gateway::start`].
pub struct StartOptions {
    /// Failback policy of failover groups.
    pub failback: Failback,
    /// Key log, if `--log-keys` was given.
    pub keylog: Option<KeyLog>,
}

fn ts_to_core(t: &ike_lite::ts::TrafficSelector) -> Option<TrafficSelector> {
    let mut s = TrafficSelector::range(t.start, t.end).ok()?;
    if t.ip_proto != 0 {
        s = s.with_protocol(IpProtocol(t.ip_proto));
    }
    Some(s.with_ports(t.start_port, t.end_port))
}

fn net_ts(n: &crate::config::values::IpNet) -> Result<TrafficSelector, Error> {
    TrafficSelector::from_prefix(n.addr, n.prefix).map_err(|e| format!("{n}: {e:?}").into())
}

fn sa_params(c: &ChildSa, inbound: bool) -> Result<SaParams, String> {
    let key = if inbound { &c.key_in } else { &c.key_out };
    let (enc, integ) = (key.enc_key(), key.integ_key());
    let want = c.suite.enc_key_len().map_err(|e| e.to_string())?;
    if enc.len() != want || integ.len() != c.suite.integ_key_len() {
        return Err(format!(
            "key material of {}+{} bytes does not fit {}",
            enc.len(),
            integ.len(),
            c.suite.name()
        ));
    }
    let tunnel = TunnelEndpoints {
        local: c.local.ip(),
        remote: c.remote.ip(),
    };
    let mut p = SaParams::new(
        if inbound { c.spi_in } else { c.spi_out },
        c.suite,
        SecretKey::from_slice(enc),
        SecretKey::from_slice(integ),
        tunnel,
    );
    p.esn = c.esn;
    p.replay_window = c.replay_window.clamp(32, 4096);
    p.lifetime = Lifetime {
        soft: Limits {
            packets: (!c.esn).then_some(SOFT_PACKETS_32),
            ..Limits::default()
        },
        hard: Limits {
            time: Some(c.lifetime + HARD_GRACE),
            ..Limits::default()
        },
    };
    let local_ts: Vec<_> = c.ts_local.iter().filter_map(ts_to_core).collect();
    let remote_ts: Vec<_> = c.ts_remote.iter().filter_map(ts_to_core).collect();
    if local_ts.is_empty() || remote_ts.is_empty() {
        return Err("no usable traffic selectors".into());
    }
    p.local_ts = local_ts;
    p.remote_ts = remote_ts;
    if c.udp_encap {
        let rp = if c.remote.port() == 500 {
            NATT_PORT
        } else {
            c.remote.port()
        };
        p.udp_encap = Some(UdpEncap {
            local_port: NATT_PORT,
            remote_port: rp,
        });
    }
    Ok(p)
}

impl Gateway {
    /// Creates TUN devices, sockets and routes for `plans` (in this
    /// network namespace) and registers everything with `poller`.
    pub fn start(
        plans: Vec<ConnPlan>,
        groups: Vec<Vec<usize>>,
        opts: StartOptions,
        poller: &Poller,
    ) -> Result<Gateway, Error> {
        let now = Instant::now();
        let tuning = Tuning::from_env();
        let mut routes = RouteTracker::new(Netlink::open()?);
        let mut ike = Endpoint::new(ike_lite::Config {
            export_ike_keys: opts.keylog.is_some(),
            ..ike_lite::Config::default()
        });
        // Sockets: one set per distinct local address.
        let mut socks: Vec<LocalSocks> = Vec::new();
        for p in &plans {
            if socks.iter().any(|s| s.ip == p.local) {
                continue;
            }
            let ike_socks = IkeSockets::bind(p.local)
                .map_err(|e| format!("bind IKE sockets on {}:500/4500: {e}", p.local))?;
            let _ = ike_socks.ike.set_buffer_sizes(1 << 20, 1 << 20);
            let _ = ike_socks
                .natt
                .set_buffer_sizes(tuning.sockbuf, tuning.sockbuf);
            let gso = tuning.gso && ike_socks.natt.gso_supported();
            let gro = tuning.gro && ike_socks.natt.enable_gro().is_ok();
            let raw = match RawEspSocket::open(p.local) {
                Ok(r) => {
                    let _ = r.set_buffer_sizes(tuning.sockbuf, tuning.sockbuf);
                    Some(r)
                }
                Err(e) => {
                    warn!(local = %p.local, "raw ESP socket unavailable ({e}); UDP encapsulation only");
                    None
                }
            };
            let j = socks.len() as u64;
            poller.add(
                &ike_socks.ike,
                Token(TOKEN_SOCK + 4 * j),
                Interest::READABLE,
            )?;
            poller.add(
                &ike_socks.natt,
                Token(TOKEN_SOCK + 4 * j + 1),
                Interest::READABLE,
            )?;
            if let Some(r) = &raw {
                poller.add(r, Token(TOKEN_SOCK + 4 * j + 2), Interest::READABLE)?;
            }
            info!(local = %p.local, raw_esp = raw.is_some(), udp_gso = gso, udp_gro = gro, "listening on UDP 500/4500");
            socks.push(LocalSocks {
                ip: p.local,
                ike: ike_socks,
                raw,
                gso: std::cell::Cell::new(gso),
            });
        }
        let mut tunnels = Vec::with_capacity(plans.len());
        let mut by_conn = HashMap::new();
        for (i, mut plan) in plans.into_iter().enumerate() {
            if socks.iter().any(|s| s.ip == plan.local && s.raw.is_none()) {
                plan.peer.force_encap = true;
            }
            for n in &plan.notes {
                info!(conn = %plan.name, "{n}");
            }
            let mut topts = TunOptions::new(&plan.ifname);
            topts.vnet_hdr = tuning.offload;
            let tun = Tun::open(&topts)
                .map_err(|e| format!("conn {}: open TUN {}: {e}", plan.name, plan.ifname))?;
            let mut uso = false;
            if tun.vnet_hdr() {
                // TCP (and, since Linux 6.2, UDP) super-packets in and out
                // (split and coalesced here), checksums left to us.
                let f = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6;
                if tuning.uso
                    && tun
                        .set_offload(f | libc::TUN_F_USO4 | libc::TUN_F_USO6)
                        .is_ok()
                {
                    uso = true;
                } else if let Err(e) = tun.set_offload(f) {
                    warn!(conn = %plan.name, "TUN offloads refused ({e}); one packet per read");
                }
            }
            let ifindex = tun.ifindex()?;
            let nl = routes.netlink();
            nl.set_mtu(ifindex, u32::from(plan.mtu.mtu))?;
            if let Some(q) = tuning.txqlen {
                if let Err(e) = nl.set_txqlen(ifindex, q) {
                    warn!(conn = %plan.name, "txqueuelen {q}: {e}");
                }
            }
            if let Some((a, len)) = plan.inside {
                match nl.add_address(ifindex, a, len) {
                    Err(e) if !e.is_exists() => return Err(e.into()),
                    _ => {}
                }
            }
            nl.set_link_up(ifindex, true)?;
            poller.add(
                tun.queue(0).expect("one queue"),
                Token(TOKEN_TUN + i as u64),
                Interest::READABLE,
            )?;
            let mut dp = DataPath::new(DataPathConfig::default());
            let mut policies = Vec::new();
            let locals: Vec<TrafficSelector> = if plan.local_subnets.is_empty() {
                vec![TrafficSelector::host(plan.local)]
            } else {
                plan.local_subnets
                    .iter()
                    .map(net_ts)
                    .collect::<Result<_, _>>()?
            };
            let remotes: Vec<TrafficSelector> = if plan.remote_subnets.is_empty() {
                vec![TrafficSelector::host(plan.remote)]
            } else {
                plan.remote_subnets
                    .iter()
                    .map(net_ts)
                    .collect::<Result<_, _>>()?
            };
            for l in &locals {
                for r in &remotes {
                    if l.start.is_ipv4() != r.start.is_ipv4() {
                        continue;
                    }
                    let id = PolicyId(policies.len() as u32 + 1);
                    dp.add_policy(Policy {
                        id,
                        // One data path per tunnel (for now): tunnel 0.
                        tunnel: TunnelId(0),
                        priority: 100,
                        local: *l,
                        remote: *r,
                        action: Action::Protect,
                    })
                    .map_err(|e| format!("conn {}: policy: {e:?}", plan.name))?;
                    policies.push(id);
                }
            }
            let conn = ike.add_peer(plan.peer.clone());
            by_conn.insert(conn, i);
            info!(
                conn = %plan.name, tun = %tun.name(), mtu = plan.mtu.mtu,
                local = %plan.local, remote = %plan.remote,
                mode = ?plan.start, "tunnel interface ready"
            );
            tunnels.push(Tunnel {
                plan,
                conn,
                tun,
                uso,
                ifindex,
                dp,
                policies,
                child: None,
                installed: Vec::new(),
                pending: Vec::new(),
                ike_up: false,
                connecting: false,
                peer_dead: false,
                attempts: 0,
                retry_at: None,
                last_rekey: None,
                remote_seen: None,
                retired_drops: [0; DropReason::COUNT],
                local_drops: [0; LocalDrop::COUNT],
            });
        }
        let groups: Vec<Group> = groups.into_iter().map(Group::new).collect();
        for g in &groups {
            let t = &tunnels[g.active_conn()];
            for r in &t.plan.routes {
                routes
                    .replace(Route::new(r.addr, r.prefix, t.ifindex))
                    .map_err(|e| format!("route {r} dev {}: {e}", t.tun.name()))?;
                info!(conn = %t.plan.name, route = %r, dev = %t.tun.name(), "route installed");
            }
            if g.members.len() > 1 {
                let names: Vec<&str> = g
                    .members
                    .iter()
                    .map(|&m| tunnels[m].plan.name.as_str())
                    .collect();
                info!(group = ?names, failback = %opts.failback, "failover group (first is primary)");
            }
        }
        let mut gw = Gateway {
            ike,
            tunnels,
            by_conn,
            by_spi: HashMap::new(),
            socks,
            groups,
            failback: opts.failback,
            routes,
            keylog: opts.keylog,
            started: now,
            shutdown_at: None,
            unknown_spi: 0,
            tuning,
            dirty: Vec::new(),
            dirty_mark: Vec::new(),
            all_dirty: true,
            house_at: None,
        };
        gw.dirty_mark = vec![false; gw.tunnels.len()];
        for i in 0..gw.tunnels.len() {
            if gw.tunnels[i].plan.start == StartMode::Initiate {
                gw.initiate(now, i);
            }
        }
        Ok(gw)
    }

    fn initiate(&mut self, now: Instant, i: usize) {
        let t = &mut self.tunnels[i];
        if t.ike_up || t.connecting || self.shutdown_at.is_some() {
            return;
        }
        if t.plan.remote.is_unspecified() {
            return;
        }
        t.retry_at = None;
        match self.ike.initiate(now, t.conn) {
            Ok(()) => {
                t.connecting = true;
                t.attempts += 1;
                info!(conn = %t.plan.name, attempt = t.attempts, "initiating IKE SA");
            }
            Err(e) => warn!(conn = %t.plan.name, "initiate failed: {e}"),
        }
    }

    /// Runs the loop until SIGTERM/SIGINT, then shuts down cleanly.
    pub fn run(
        &mut self,
        poller: &mut Poller,
        signals: &SignalFd,
        control: &mut ControlServer,
    ) -> Result<(), Error> {
        let seg = || Buf::with_capacity(HEADROOM, SEG_MAX, packet::TAILROOM);
        let mut bufs = Bufs {
            pkt: packet::new_buf(),
            segs: (0..BATCH_MAX).map(|_| seg()).collect(),
            out: Vec::with_capacity(BATCH_MAX),
            rx: (0..BATCH_MAX).map(|_| packet::new_buf()).collect(),
            metas: vec![
                RecvMeta {
                    len: 0,
                    offset: 0,
                    src: SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0),
                    dst: None,
                    ifindex: 0,
                    segment: 0,
                };
                BATCH_MAX
            ],
            gro: GroState {
                gro: Gro::new()
                    .with_udp(!self.tunnels.is_empty() && self.tunnels.iter().all(|t| t.uso)),
                owner: None,
            },
            scratch: vec![0u8; 2048],
            events: Vec::with_capacity(256),
        };
        poller.add(signals, Token(TOKEN_SIGNAL), Interest::READABLE)?;
        control.register(poller, Token(TOKEN_CONTROL))?;
        self.drain(Instant::now());
        self.house_at = self.house_deadline();
        loop {
            let now = Instant::now();
            let deadline = self.next_deadline();
            let timeout = deadline.map(|d| d.saturating_duration_since(now));
            poller.wait(timeout)?;
            bufs.events.clear();
            bufs.events.extend(poller.events());
            for k in 0..bufs.events.len() {
                let ev = bufs.events[k];
                let now = Instant::now();
                match ev.token.0 {
                    TOKEN_SIGNAL => {
                        while let Some(sig) = signals.read()? {
                            if self.shutdown_at.is_none() {
                                info!(signal = sig, "shutting down: deleting IKE SAs");
                                self.begin_shutdown(now);
                            }
                        }
                    }
                    t if (TOKEN_TUN..TOKEN_SOCK).contains(&t) => {
                        self.on_tun(now, (t - TOKEN_TUN) as usize, &mut bufs)
                    }
                    t if (TOKEN_SOCK..TOKEN_CONTROL).contains(&t) => {
                        let j = ((t - TOKEN_SOCK) / 4) as usize;
                        match (t - TOKEN_SOCK) % 4 {
                            0 => self.on_ike500(now, j, &mut bufs),
                            1 => self.on_natt(now, j, &mut bufs),
                            _ => self.on_raw(now, j, &mut bufs),
                        }
                    }
                    _ if control.owns(ev.token) => {
                        let report = self.report(now);
                        control.handle(poller, ev, &mut |_req| Response::status(report.clone()));
                    }
                    _ => {}
                }
            }
            let now = Instant::now();
            if self.ike.poll_timeout().is_some_and(|t| t <= now) {
                self.ike.handle_timeout(now);
            }
            let due = self.house_at.is_some_and(|d| d <= now);
            if due {
                for t in &self.tunnels {
                    if t.dp.next_timeout().is_some_and(|d| d <= now) {
                        t.dp.handle_timeout(now);
                    }
                }
                for i in 0..self.tunnels.len() {
                    if self.tunnels[i].retry_at.is_some_and(|r| r <= now) {
                        self.initiate(now, i);
                    }
                }
                self.all_dirty = true;
            }
            if self.drain(now) || due {
                self.house_at = self.house_deadline();
            }
            if let Some(at) = self.shutdown_at {
                let all_down =
                    self.tunnels.iter().all(|t| !t.ike_up) || self.ike.ike_sa_count() == 0;
                if all_down || now >= at {
                    if !all_down {
                        warn!("shutdown: no DELETE answer within {SHUTDOWN_GRACE:?}");
                    }
                    break;
                }
            }
        }
        self.finish();
        Ok(())
    }

    fn begin_shutdown(&mut self, now: Instant) {
        self.shutdown_at = Some(now + SHUTDOWN_GRACE);
        self.all_dirty = true;
        for t in &mut self.tunnels {
            t.retry_at = None;
            if t.ike_up {
                if let Err(e) = self.ike.delete(now, t.conn) {
                    debug!(conn = %t.plan.name, "delete: {e}");
                }
            }
        }
        self.drain(now);
        self.house_at = self.house_deadline();
    }

    fn finish(&mut self) {
        if let Err(e) = self.routes.remove_all() {
            warn!("removing routes: {e}");
        }
        info!("routes removed; tunnel interfaces closed");
    }

    fn next_deadline(&self) -> Option<Instant> {
        [self.ike.poll_timeout(), self.house_at, self.shutdown_at]
            .into_iter()
            .flatten()
            .min()
    }

    /// Earliest data-path lifetime or re-initiation deadline (linear in
    /// the number of tunnels; called only when something changed).
    fn house_deadline(&self) -> Option<Instant> {
        self.tunnels
            .iter()
            .flat_map(|t| [t.dp.next_timeout(), t.retry_at])
            .flatten()
            .min()
    }

    fn mark(&mut self, i: usize) {
        if !self.dirty_mark[i] {
            self.dirty_mark[i] = true;
            self.dirty.push(i);
        }
    }

    // ---- packet IO -------------------------------------------------------

    fn on_tun(&mut self, now: Instant, i: usize, bufs: &mut Bufs) {
        let vnet = self.tunnels[i].tun.vnet_hdr();
        let at = if vnet {
            HEADROOM - VNET_HDR_LEN
        } else {
            HEADROOM
        };
        for _ in 0..BURST {
            let t = &self.tunnels[i];
            let st = bufs.pkt.storage_mut();
            let n = match t.tun.read(&mut st[..HEADROOM + packet::MAX_PACKET], at) {
                Ok(Some(n)) => n,
                Ok(None) => break,
                Err(e) => {
                    warn!(conn = %t.plan.name, "TUN read: {e}");
                    break;
                }
            };
            let (hdr, len) = if vnet {
                match VnetHdr::parse(&st[at..at + n]) {
                    Some(h) => (h, n - VNET_HDR_LEN),
                    None => continue,
                }
            } else {
                (VnetHdr::default(), n)
            };
            let pkt = &mut st[HEADROOM..HEADROOM + len];
            if hdr.gso_type != VnetHdr::GSO_NONE {
                let Some(tso) = Tso::new(pkt, &hdr) else {
                    self.tunnels[i].count(LocalDrop::TooBig);
                    continue;
                };
                for k in 0..tso.count() {
                    if bufs.out.len() >= self.tuning.batch || bufs.out.len() >= bufs.segs.len() {
                        self.flush_out(i, bufs);
                    }
                    let slot = bufs.out.len();
                    let (src, dst) = (bufs.pkt.storage(), &mut bufs.segs[slot]);
                    let Some(m) = tso.segment(
                        &src[HEADROOM..HEADROOM + len],
                        k,
                        &mut dst.storage_mut()[HEADROOM..HEADROOM + SEG_MAX],
                    ) else {
                        break;
                    };
                    if dst.set_range(HEADROOM..HEADROOM + m).is_ok() {
                        self.outbound_one(now, i, slot, bufs);
                    }
                }
            } else {
                if hdr.flags & VnetHdr::F_NEEDS_CSUM != 0
                    && !complete_csum(
                        pkt,
                        usize::from(hdr.csum_start),
                        usize::from(hdr.csum_offset),
                    )
                {
                    continue;
                }
                if bufs.out.len() >= self.tuning.batch || bufs.out.len() >= bufs.segs.len() {
                    self.flush_out(i, bufs);
                }
                let slot = bufs.out.len();
                if len > SEG_MAX {
                    // Bigger than any segment buffer: handle in place.
                    if bufs.pkt.set_range(HEADROOM..HEADROOM + len).is_ok() {
                        std::mem::swap(&mut bufs.pkt, &mut bufs.segs[slot]);
                        self.outbound_one(now, i, slot, bufs);
                        self.flush_out(i, bufs);
                        std::mem::swap(&mut bufs.pkt, &mut bufs.segs[slot]);
                    }
                    continue;
                }
                let (src, dst) = (bufs.pkt.storage(), &mut bufs.segs[slot]);
                if dst.load(HEADROOM, &src[HEADROOM..HEADROOM + len]).is_ok() {
                    self.outbound_one(now, i, slot, bufs);
                }
            }
        }
        self.flush_out(i, bufs);
    }

    /// Runs the outbound path on `bufs.segs[slot]`; queues it for sending.
    fn outbound_one(&mut self, now: Instant, i: usize, slot: usize, bufs: &mut Bufs) {
        self.mark(i);
        let t = &mut self.tunnels[i];
        let v = tun_to_esp(
            &t.dp,
            TunnelId(0),
            now,
            &mut bufs.segs[slot],
            &t.plan.mtu,
            t.plan.remote_inside,
            &mut bufs.scratch,
        );
        match v {
            TunVerdict::Send(OutboundAction::Encapsulated {
                endpoints,
                udp_encap,
                ..
            }) => bufs.out.push((slot, endpoints, udp_encap)),
            TunVerdict::TooBig(len) => {
                t.count(LocalDrop::TooBig);
                let _ = tun_write(&t.tun, &bufs.scratch[..len]);
            }
            TunVerdict::TooBigNoReply => t.count(LocalDrop::TooBig),
            TunVerdict::Other(OutboundAction::Bypass) => t.count(LocalDrop::Bypass),
            TunVerdict::Other(_) | TunVerdict::Send(_) => {}
        }
    }

    /// Sends the queued ESP packets, one `sendmmsg` per run of packets with
    /// the same outer addresses.
    fn flush_out(&mut self, i: usize, bufs: &mut Bufs) {
        let mut k = 0;
        while k < bufs.out.len() {
            let (_, tunnel, encap) = bufs.out[k];
            let mut e = k + 1;
            while e < bufs.out.len() && bufs.out[e].1 == tunnel && bufs.out[e].2 == encap {
                e += 1;
            }
            let mut pkts: [&[u8]; BATCH_MAX] = [&[]; BATCH_MAX];
            for (p, &(slot, _, _)) in pkts.iter_mut().zip(&bufs.out[k..e]) {
                *p = bufs.segs[slot].data();
            }
            let dropped = send_esp_many(&self.socks, &pkts[..e - k], tunnel, encap);
            for _ in 0..dropped.1 {
                self.tunnels[i].count(dropped.0);
            }
            k = e;
        }
        bufs.out.clear();
    }

    fn deliver(&mut self, now: Instant, spi: u32, buf: &mut Buf, g: &mut GroState) {
        let Some(&i) = self.by_spi.get(&spi) else {
            self.unknown_spi += 1;
            return;
        };
        self.mark(i);
        let t = &mut self.tunnels[i];
        let InboundAction::Inner { .. } = esp_to_tun(&t.dp, now, buf, &t.plan.mtu) else {
            return;
        };
        if !t.tun.vnet_hdr() {
            if !matches!(t.tun.write(buf.data()), Ok(Some(_))) {
                t.count(LocalDrop::TunWriteFull);
            }
            return;
        }
        if g.owner != Some(i) {
            self.flush_gro(g);
            g.owner = Some(i);
        }
        if g.gro.push(buf.data()) {
            return;
        }
        self.flush_gro(g);
        g.owner = Some(i);
        if !g.gro.push(buf.data()) {
            let t = &mut self.tunnels[i];
            if !matches!(tun_write(&t.tun, buf.data()), Ok(Some(_))) {
                t.count(LocalDrop::TunWriteFull);
            }
        }
    }

    /// Writes the coalesced packet (if any) to its TUN.
    fn flush_gro(&mut self, g: &mut GroState) {
        let Some(i) = g.owner else { return };
        if let Some(p) = g.gro.finish() {
            let t = &mut self.tunnels[i];
            if !matches!(t.tun.queue(0).expect("one queue").write(p), Ok(Some(_))) {
                t.count(LocalDrop::TunWriteFull);
            }
        }
    }

    fn on_ike500(&mut self, now: Instant, j: usize, bufs: &mut Bufs) {
        for _ in 0..BURST {
            let s = &self.socks[j];
            let st = bufs.pkt.storage_mut();
            let meta = match s.ike.ike.recv(st) {
                Ok(Some(m)) => m,
                Ok(None) => return,
                Err(e) => {
                    debug!("recv 500: {e}");
                    return;
                }
            };
            let local = SocketAddr::new(meta.dst.unwrap_or(s.ip), 500);
            let data = &bufs.pkt.storage()[..meta.len];
            if let Err(e) = self.ike.handle_datagram(now, local, meta.src, data) {
                debug!(from = %meta.src, "IKE datagram dropped: {e}");
            }
        }
    }

    fn on_natt(&mut self, now: Instant, j: usize, bufs: &mut Bufs) {
        let batch = self.tuning.batch;
        for _ in 0..BURST {
            let s = &self.socks[j];
            let got = match s
                .ike
                .natt
                .recv_many(&mut bufs.rx[..batch], &mut bufs.metas[..batch])
            {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    debug!("recv 4500: {e}");
                    break;
                }
            };
            let ip = s.ip;
            for k in 0..got {
                let meta = bufs.metas[k];
                let buf = &mut bufs.rx[k];
                // One datagram, or several coalesced by UDP GRO.
                for r in meta.datagrams() {
                    if r.end > packet::BUF_SIZE {
                        break;
                    }
                    match classify_4500(&buf.storage()[r.clone()]) {
                        Udp4500::Ike => {
                            let local = SocketAddr::new(meta.dst.unwrap_or(ip), NATT_PORT);
                            let data = &buf.storage()[r];
                            if let Err(e) = self.ike.handle_datagram(now, local, meta.src, data) {
                                debug!(from = %meta.src, "IKE datagram dropped: {e}");
                            }
                        }
                        Udp4500::Esp(spi) => {
                            if buf.set_range(r).is_ok() {
                                self.deliver(now, spi, buf, &mut bufs.gro);
                            }
                        }
                        Udp4500::Keepalive | Udp4500::Junk => {}
                    }
                }
            }
            if got < batch {
                break;
            }
        }
        self.flush_gro(&mut bufs.gro);
    }

    fn on_raw(&mut self, now: Instant, j: usize, bufs: &mut Bufs) {
        let batch = self.tuning.batch;
        for _ in 0..BURST {
            let Some(raw) = &self.socks[j].raw else {
                return;
            };
            let got = match raw.recv_many(&mut bufs.rx[..batch], &mut bufs.metas[..batch]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    debug!("recv ESP: {e}");
                    break;
                }
            };
            for k in 0..got {
                let meta = bufs.metas[k];
                let buf = &mut bufs.rx[k];
                if meta.len == 0 {
                    continue;
                }
                let end = (meta.offset + meta.len).min(packet::BUF_SIZE);
                if buf.set_range(meta.offset..end).is_err() {
                    continue;
                }
                let Some(spi) = packet::esp_spi(buf.data()) else {
                    continue;
                };
                self.deliver(now, spi, buf, &mut bufs.gro);
            }
            if got < batch {
                break;
            }
        }
        self.flush_gro(&mut bufs.gro);
    }

    fn send_transmit(&mut self, t: &Transmit) {
        let Some(s) = self.socks.iter().find(|s| s.ip == t.src.ip()) else {
            warn!(src = %t.src, "no socket for IKE transmit");
            return;
        };
        let sock = if t.non_esp_marker || t.src.port() == NATT_PORT {
            &s.ike.natt
        } else {
            &s.ike.ike
        };
        if let Err(e) = sock.send_to(&t.payload, t.dst, Some(t.src.ip())) {
            debug!(dst = %t.dst, "IKE send: {e}");
        }
    }

    // ---- control plane ---------------------------------------------------

    /// Processes every queued IKE and data-path event and sends every
    /// queued IKE datagram.
    /// Returns true if anything was processed.
    fn drain(&mut self, now: Instant) -> bool {
        let mut any = false;
        loop {
            let mut progress = false;
            while let Some(ev) = self.ike.poll_event() {
                progress = true;
                self.on_ike_event(now, ev);
            }
            let n = if self.all_dirty {
                self.tunnels.len()
            } else {
                self.dirty.len()
            };
            for k in 0..n {
                let i = if self.all_dirty { k } else { self.dirty[k] };
                while let Some(ev) = self.tunnels[i].dp.poll_event() {
                    progress = true;
                    self.on_dp_event(now, i, ev);
                }
            }
            while let Some(t) = self.ike.poll_transmit() {
                progress = true;
                self.send_transmit(&t);
            }
            if !progress {
                break;
            }
            any = true;
        }
        for &i in &self.dirty {
            self.dirty_mark[i] = false;
        }
        self.dirty.clear();
        self.all_dirty = false;
        if any {
            self.update_groups();
        }
        any
    }

    fn on_ike_event(&mut self, now: Instant, ev: IkeEvent) {
        let conn = match &ev {
            IkeEvent::IkeSaUp { conn, .. }
            | IkeEvent::IkeSaRekeyed { conn, .. }
            | IkeEvent::IkeSaDown { conn, .. }
            | IkeEvent::ChildSaOutboundSwitched { conn, .. }
            | IkeEvent::ChildSaDeleted { conn, .. }
            | IkeEvent::ChildSaFailed { conn, .. }
            | IkeEvent::AuthenticationFailed { conn, .. }
            | IkeEvent::PeerDead { conn }
            | IkeEvent::NatDetected { conn, .. } => *conn,
            IkeEvent::ChildSaEstablished(c) => c.conn,
            IkeEvent::IkeSaSecrets(sec) => {
                if let Some(Err(e)) = self.keylog.as_mut().map(|k| k.ike_sa(sec)) {
                    warn!("key log: {e}");
                }
                return;
            }
            other => {
                debug!(event = ?other, "unhandled IKE event");
                return;
            }
        };
        let Some(&i) = self.by_conn.get(&conn) else {
            debug!(?conn, "IKE event for an unknown connection");
            return;
        };
        match ev {
            IkeEvent::IkeSaUp {
                spi_i,
                spi_r,
                initiator,
                udp_encap,
                ..
            } => {
                let t = &mut self.tunnels[i];
                t.ike_up = true;
                t.connecting = false;
                t.peer_dead = false;
                t.attempts = 0;
                t.retry_at = None;
                info!(
                    conn = %t.plan.name, spi_i = format_args!("{spi_i:016x}"),
                    spi_r = format_args!("{spi_r:016x}"), initiator, natt = udp_encap,
                    "IKE SA established"
                );
            }
            IkeEvent::IkeSaRekeyed { old, new, .. } => {
                info!(
                    conn = %self.tunnels[i].plan.name,
                    old = format_args!("{:016x}/{:016x}", old.0, old.1),
                    new = format_args!("{:016x}/{:016x}", new.0, new.1),
                    "IKE SA rekeyed"
                );
            }
            IkeEvent::ChildSaEstablished(c) => self.install_child(now, i, &c),
            IkeEvent::ChildSaOutboundSwitched {
                old_spi_out,
                new_spi_out,
                ..
            } => {
                let t = &mut self.tunnels[i];
                if let Some(k) = t.pending.iter().position(|p| p.0 == new_spi_out) {
                    let (spi_out, spi_in, sa) = t.pending.remove(k);
                    t.bind_out(&sa);
                    let c = Child {
                        spi_in,
                        spi_out,
                        suite: sa.suite(),
                    };
                    t.child = Some(c);
                    t.installed.push((c, sa));
                    t.last_rekey = Some(now);
                    info!(
                        conn = %t.plan.name, old_spi_out = format_args!("{old_spi_out:08x}"),
                        new_spi_out = format_args!("{new_spi_out:08x}"),
                        "outbound switched to rekeyed child SA"
                    );
                } else {
                    warn!(conn = %t.plan.name, spi_out = format_args!("{new_spi_out:08x}"), "switch to unknown child SA");
                }
            }
            IkeEvent::ChildSaDeleted {
                spi_in,
                spi_out,
                reason,
                ..
            } => {
                let t = &mut self.tunnels[i];
                t.retire_in(spi_in);
                self.by_spi.remove(&spi_in);
                t.pending.retain(|p| p.0 != spi_out);
                t.installed.retain(|(c, _)| c.spi_out != spi_out);
                if t.child.is_some_and(|c| c.spi_out == spi_out) {
                    // Fall back to another live Child SA (e.g. of a
                    // duplicate IKE SA), else stop sending.
                    match t.installed.last().cloned() {
                        Some((c, sa)) => {
                            t.bind_out(&sa);
                            t.child = Some(c);
                        }
                        None => {
                            t.unbind_out();
                            t.child = None;
                        }
                    }
                }
                info!(
                    conn = %t.plan.name, spi_in = format_args!("{spi_in:08x}"),
                    spi_out = format_args!("{spi_out:08x}"), ?reason, "child SA deleted"
                );
            }
            IkeEvent::ChildSaFailed { notify, .. } => {
                warn!(conn = %self.tunnels[i].plan.name, ?notify, "child SA negotiation failed");
            }
            IkeEvent::AuthenticationFailed { reason, .. } => {
                warn!(conn = %self.tunnels[i].plan.name, ?reason, "authentication failed");
            }
            IkeEvent::PeerDead { .. } => {
                let t = &mut self.tunnels[i];
                t.peer_dead = true;
                warn!(conn = %t.plan.name, action = %t.plan.dpd_action, "peer dead (no answer)");
            }
            IkeEvent::NatDetected {
                local_behind_nat,
                remote_behind_nat,
                ..
            } => {
                info!(
                    conn = %self.tunnels[i].plan.name, local_behind_nat, remote_behind_nat,
                    "NAT detected: using UDP encapsulation"
                );
            }
            IkeEvent::IkeSaDown { reason, .. } => self.ike_down(now, i, reason),
            _ => {}
        }
    }

    fn ike_down(&mut self, now: Instant, i: usize, reason: DownReason) {
        let t = &mut self.tunnels[i];
        if self.ike.ike_spis(t.conn).is_some() {
            // A duplicate or replacement IKE SA of this connection is still
            // established: its Child SAs keep the tunnel up.
            info!(conn = %t.plan.name, ?reason, "IKE SA down (another IKE SA of the connection remains)");
            return;
        }
        // Child SAs are reported deleted first; clean up anything left.
        let spis: Vec<u32> = self
            .by_spi
            .iter()
            .filter(|(_, &v)| v == i)
            .map(|(&k, _)| k)
            .collect();
        for s in spis {
            t.retire_in(s);
            self.by_spi.remove(&s);
        }
        t.unbind_out();
        t.pending.clear();
        t.installed.clear();
        t.child = None;
        t.ike_up = false;
        t.connecting = false;
        info!(conn = %t.plan.name, ?reason, "IKE SA down");
        if self.shutdown_at.is_some()
            || matches!(reason, DownReason::LocalDelete | DownReason::InitialContact)
            || t.plan.remote.is_unspecified()
        {
            return;
        }
        let initiator = t.plan.start == StartMode::Initiate;
        let dpd_restart = matches!(
            t.plan.dpd_action,
            DpdAction::Restart | DpdAction::RestartByPeer
        ) && matches!(reason, DownReason::Timeout);
        if !initiator && !dpd_restart {
            return;
        }
        if matches!(t.plan.keying_tries, KeyingTries::Count(n) if t.attempts >= n) {
            warn!(conn = %t.plan.name, attempts = t.attempts, "giving up (keyingtries reached)");
            return;
        }
        // Initiators come back fast; listeners wait longer (plus jitter) so
        // that two ends restarting at once rarely collide.
        let base = Duration::from_secs(1 << t.attempts.min(5)).min(Duration::from_secs(30));
        let delay = if initiator {
            base
        } else {
            base.max(Duration::from_secs(5)) + jitter(Duration::from_secs(2))
        };
        t.retry_at = Some(now + delay);
        info!(conn = %t.plan.name, in_ms = delay.as_millis() as u64, "will re-initiate");
    }

    fn install_child(&mut self, now: Instant, i: usize, c: &ChildSa) {
        let t = &mut self.tunnels[i];
        let (pin, pout) = match (sa_params(c, true), sa_params(c, false)) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => {
                warn!(conn = %t.plan.name, "cannot install child SA: {e}");
                return;
            }
        };
        if let Err(e) = t.dp.install_inbound(&pin, now) {
            warn!(conn = %t.plan.name, "install inbound SA: {e}");
            return;
        }
        self.by_spi.insert(c.spi_in, i);
        let out = match OutboundSa::new(&pout, now) {
            Ok(sa) => Arc::new(sa),
            Err(e) => {
                warn!(conn = %t.plan.name, "create outbound SA: {e}");
                return;
            }
        };
        if c.rekey_of.is_none() {
            t.bind_out(&out);
            let child = Child {
                spi_in: c.spi_in,
                spi_out: c.spi_out,
                suite: c.suite,
            };
            t.child = Some(child);
            t.installed.push((child, out));
        } else {
            t.pending.push((c.spi_out, c.spi_in, out));
        }
        t.remote_seen = Some(c.remote.ip());
        t.peer_dead = false;
        info!(
            conn = %t.plan.name, spi_in = format_args!("{:08x}", c.spi_in),
            spi_out = format_args!("{:08x}", c.spi_out), esp = c.suite.name(),
            encap = c.udp_encap, peer = %c.remote,
            rekey_of = ?c.rekey_of.map(|s| format!("{s:08x}")),
            "child SA established"
        );
        if let Some(k) = &mut self.keylog {
            let (li, ri) = (c.local.ip(), c.remote.ip());
            let r1 = k.esp_sa(
                ri,
                li,
                c.spi_in,
                &c.suite,
                pin.enc_key.as_bytes(),
                pin.integ_key.as_bytes(),
            );
            let r2 = k.esp_sa(
                li,
                ri,
                c.spi_out,
                &c.suite,
                pout.enc_key.as_bytes(),
                pout.integ_key.as_bytes(),
            );
            if let Err(e) = r1.and(r2) {
                warn!("key log: {e}");
            }
        }
    }

    fn on_dp_event(&mut self, now: Instant, i: usize, ev: DpEvent) {
        match ev {
            DpEvent::Acquire { .. } => {
                debug!(conn = %self.tunnels[i].plan.name, "acquire: traffic without SA");
                self.initiate(now, i);
            }
            DpEvent::Expired {
                spi,
                direction,
                kind,
                ..
            } => {
                let t = &self.tunnels[i];
                let spi_in = match direction {
                    Direction::Inbound => Some(spi),
                    Direction::Outbound => t.child.filter(|c| c.spi_out == spi).map(|c| c.spi_in),
                };
                info!(conn = %t.plan.name, spi = format_args!("{spi:08x}"), ?direction, ?kind, "SA lifetime reached");
                let Some(spi_in) = spi_in else { return };
                let conn = t.conn;
                let r = match kind {
                    Expiry::Soft => self.ike.rekey_child(now, conn, spi_in),
                    Expiry::Hard => self.ike.delete_child(now, conn, spi_in),
                };
                if let Err(e) = r {
                    debug!("lifetime action: {e}");
                }
            }
            _ => {}
        }
    }

    /// Re-evaluates every failover group and moves routes when needed.
    fn update_groups(&mut self) {
        for g in 0..self.groups.len() {
            if self.groups[g].members.len() < 2 {
                continue;
            }
            let tunnels = &self.tunnels;
            let new = self.groups[g].choose(|m| tunnels[m].usable(), self.failback);
            if new == self.groups[g].active {
                continue;
            }
            let from = self.groups[g].active_conn();
            self.groups[g].active = new;
            let to = self.groups[g].active_conn();
            let (tf, tt) = (&self.tunnels[from], &self.tunnels[to]);
            for r in &tt.plan.routes {
                if let Err(e) = self
                    .routes
                    .replace(Route::new(r.addr, r.prefix, tt.ifindex))
                {
                    warn!(route = %r, "failover route: {e}");
                }
            }
            warn!(
                from = %tf.plan.name, to = %tt.plan.name,
                from_state = %tf.state(), "failover: routes moved"
            );
        }
    }

    /// The status document.
    pub fn report(&self, now: Instant) -> StatusReport {
        let mut tunnels = Vec::with_capacity(self.tunnels.len());
        for (i, t) in self.tunnels.iter().enumerate() {
            let role = match self.groups.iter().find(|g| g.members.contains(&i)) {
                Some(g) if g.active_conn() != i => TunnelRole::Standby,
                _ => TunnelRole::Active,
            };
            let (si, so) = (t.dp.inbound_stats(), t.dp.outbound_stats());
            let mut drops: [u64; DropReason::COUNT] = t.retired_drops;
            for (a, (b, c)) in drops.iter_mut().zip(si.drops.iter().zip(so.drops.iter())) {
                *a += b + c;
            }
            for sa in t.dp.sad().inbound_sas() {
                for (a, b) in drops.iter_mut().zip(sa.stats().drops) {
                    *a += b;
                }
            }
            let mut seen: Vec<u32> = Vec::new();
            for (_, sa) in t.dp.sad().outbound_sas() {
                if seen.contains(&sa.spi()) {
                    continue;
                }
                seen.push(sa.spi());
                for (a, b) in drops.iter_mut().zip(sa.stats().drops) {
                    *a += b;
                }
            }
            let mut dm = BTreeMap::new();
            for r in DropReason::ALL {
                if drops[r.index()] > 0 {
                    dm.insert(r.to_string(), drops[r.index()]);
                }
            }
            for d in LocalDrop::ALL {
                if t.local_drops[d as usize] > 0 {
                    dm.insert(d.name().to_string(), t.local_drops[d as usize]);
                }
            }
            let next_rekey = t
                .child
                .and_then(|c| self.ike.child_rekey_at(t.conn, c.spi_in))
                .map(|at| at.saturating_duration_since(now).as_secs());
            tunnels.push(TunnelStatus {
                name: t.plan.name.clone(),
                state: t.state(),
                role,
                local_addr: t.plan.local,
                remote_addr: t.remote_seen.unwrap_or(t.plan.remote),
                ike_algorithms: self.ike.ike_algorithms(t.conn).map(|a| a.name()),
                esp_algorithms: t.child.map(|c| c.suite.name().to_string()),
                spi_in: t.child.map(|c| c.spi_in),
                spi_out: t.child.map(|c| c.spi_out),
                bytes_in: si.bytes,
                bytes_out: so.bytes,
                packets_in: si.packets,
                packets_out: so.packets,
                drops: dm,
                last_rekey_secs: t
                    .last_rekey
                    .map(|r| now.saturating_duration_since(r).as_secs()),
                next_rekey_secs: next_rekey,
            });
        }
        StatusReport {
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            uptime_secs: now.saturating_duration_since(self.started).as_secs(),
            tunnels,
        }
    }
}

/// A pseudo-random delay below `max` (clock nanoseconds; only to spread
/// restarts, not for anything secret).
fn jitter(max: Duration) -> Duration {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let ms = max.as_millis().max(1) as u32;
    Duration::from_millis(u64::from(n % ms))
}

/// Writes one plain IP packet to a TUN (behind an all-zero virtio-net
/// header if the device has one).
fn tun_write(tun: &Tun, pkt: &[u8]) -> std::io::Result<Option<usize>> {
    if tun.vnet_hdr() {
        tun.queue(0)
            .expect("one queue")
            .write_vnet(&[0; VNET_HDR_LEN], pkt)
    } else {
        tun.write(pkt)
    }
}

/// Sends ESP packets to one peer with `sendmmsg`; returns the drop reason
/// and how many packets were not sent.
fn send_esp_many(
    socks: &[LocalSocks],
    esp: &[&[u8]],
    tunnel: TunnelEndpoints,
    udp_encap: Option<UdpEncap>,
) -> (LocalDrop, usize) {
    if esp.len() == 1 {
        return match send_esp(socks, esp[0], tunnel, udp_encap) {
            Some(d) => (d, 1),
            None => (LocalDrop::SendFailed, 0),
        };
    }
    let Some(s) = socks.iter().find(|s| s.ip == tunnel.local) else {
        return (LocalDrop::SendFailed, esp.len());
    };
    let mut sent = 0;
    while sent < esp.len() {
        let r = match udp_encap {
            Some(u) => {
                let dst = SocketAddr::new(tunnel.remote, u.remote_port);
                let rest = &esp[sent..];
                if s.gso.get() {
                    match s.ike.natt.send_many_gso(rest, dst, Some(tunnel.local)) {
                        Err(e) if e.raw_os_error() == Some(libc::EIO) => {
                            warn!(local = %s.ip, "UDP GSO refused by the kernel ({e}); sending without it");
                            s.gso.set(false);
                            s.ike.natt.send_many(rest, dst, Some(tunnel.local))
                        }
                        r => r,
                    }
                } else {
                    s.ike.natt.send_many(rest, dst, Some(tunnel.local))
                }
            }
            None => match &s.raw {
                Some(raw) => raw.send_many(&esp[sent..], tunnel.remote, Some(tunnel.local)),
                None => return (LocalDrop::NoRawSocket, esp.len()),
            },
        };
        match r {
            Ok(n) if n > 0 => sent += n,
            _ => break,
        }
    }
    (LocalDrop::SendFailed, esp.len() - sent)
}

/// Sends one ESP packet; returns the drop to count on failure.
fn send_esp(
    socks: &[LocalSocks],
    esp: &[u8],
    tunnel: TunnelEndpoints,
    udp_encap: Option<UdpEncap>,
) -> Option<LocalDrop> {
    let s = socks.iter().find(|s| s.ip == tunnel.local)?;
    let r = match udp_encap {
        Some(u) => s.ike.natt.send_to(
            esp,
            SocketAddr::new(tunnel.remote, u.remote_port),
            Some(tunnel.local),
        ),
        None => match &s.raw {
            Some(raw) => raw.send_to(esp, tunnel.remote, Some(tunnel.local)),
            None => return Some(LocalDrop::NoRawSocket),
        },
    };
    match r {
        Ok(Some(_)) => None,
        _ => Some(LocalDrop::SendFailed),
    }
}
