//! The IO shell of `tun-bridge up` (quinn's driver to the engine's
//! quinn-proto): it opens the TUN devices and sockets, runs the epoll loop,
//! moves packets between them through the [`DataPlane`], feeds what
//! arrives to the [`Engine`] and carries out what the engine asks: IKE
//! sends, SA changes, routes. It decides nothing about tunnels.
//!
//! * [`setup`]: tuning, sockets and TUN devices at start (and on reload).
//! * [`io`]: the packet paths (TUN to ESP, ESP to TUN, IKE receive).
//! * `commands`: the control socket's requests (status, initiate,
//!   terminate, reload).
//! * `metrics_server`: the `/metrics` listener of `--metrics`.
//! * `reload`: re-reading the configuration (control request or SIGHUP)
//!   and carrying out the engine's verdict on interfaces and sockets.
//! * [`link`]: tunnel interfaces shared by several tunnels, and the
//!   carrier of route-based ones.

mod commands;
mod io;
mod link;
mod metrics_server;
mod reload;
mod setup;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use ipsec_core::sa::{DropReason, TunnelEndpoints, UdpEncap};
use tracing::{debug, info, warn};

use crate::control::{ControlServer, StatusReport};
use crate::dataplane::DataPlane;
use crate::engine::status::TunnelCounters;
use crate::engine::{Action, Command, Engine, SaAction, TunnelId};
use crate::packet::forward::{self, HEADROOM};
use crate::packet::offload::Gro;
use crate::runtime::keylog::KeyLog;
use crate::runtime::plan::ConnPlan;
use crate::runtime::{ConfigSource, Error};
use crate::sys::netlink::{Netlink, Route, RouteTracker};
use crate::sys::poll::{Event, Interest, Poller, SignalFd, Token};
use crate::sys::udp::{RecvMeta, BATCH_MAX, NATT_PORT};
use setup::{LocalSocks, TunDev, Tuning};

const TOKEN_SIGNAL: u64 = 1;
const TOKEN_TUN: u64 = 1_000;
const TOKEN_SOCK: u64 = 10_000;
const TOKEN_CONTROL: u64 = 100_000;
const TOKEN_METRICS: u64 = 200_000;
/// Tunnels (by `TunnelId`, never reused) a process can have over its life:
/// the epoll tokens of their TUNs lie below the sockets'.
const MAX_INTERFACES: usize = (TOKEN_SOCK - TOKEN_TUN) as usize;

/// Drops the IO shell counts (IO-level), by name.
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
    const ALL: [LocalDrop; LocalDrop::COUNT] = [
        LocalDrop::TunWriteFull,
        LocalDrop::SendFailed,
        LocalDrop::NoRawSocket,
        LocalDrop::TooBig,
        LocalDrop::Bypass,
    ];
    fn name(self) -> &'static str {
        match self {
            LocalDrop::TunWriteFull => "TunQueueFull",
            LocalDrop::SendFailed => "SendFailed",
            LocalDrop::NoRawSocket => "NoRawEspSocket",
            LocalDrop::TooBig => "TooBig",
            LocalDrop::Bypass => "BypassRefused",
        }
    }
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
    /// Inbound: coalescing towards the TUN (offloads on).
    gro: GroState,
    scratch: Vec<u8>,
    events: Vec<Event>,
}

/// The coalescer and the tunnel whose TUN its packet goes to.
struct GroState {
    gro: Gro,
    owner: Option<usize>,
}

/// Options of [`Shell::start`].
pub struct StartOptions {
    /// Engine settings (failback, IKE settings, randomness).
    pub engine: crate::engine::EngineOptions,
    /// Key log, if `--log-keys` was given.
    pub keylog: Option<KeyLog>,
    /// The files a reload reads again (`None`: reload is refused).
    pub source: Option<ConfigSource>,
    /// Serve Prometheus metrics at `http://ADDR:PORT/metrics`.
    pub metrics: Option<SocketAddr>,
}

/// Everything `up` runs with.
pub struct Shell {
    engine: Engine,
    plane: DataPlane,
    /// Interfaces, by slot (tunnels with the same `ipsec-interface=`
    /// share one; `None` once a reload closed it). Slot `k` is epoll token
    /// `TOKEN_TUN + k`.
    tuns: Vec<Option<TunDev>>,
    /// Per tunnel: its interface (slot in `tuns`) and carrier request.
    links: link::Links,
    socks: Vec<LocalSocks>,
    routes: RouteTracker,
    keylog: Option<KeyLog>,
    tuning: Tuning,
    source: Option<ConfigSource>,
    metrics: Option<metrics_server::MetricsServer>,
    /// Cached earliest data-path lifetime (recomputed when SAs change or
    /// it passed).
    plane_at: Option<Instant>,
    /// Most half-open IKE SAs since the heap was last trimmed.
    half_open_high: u64,
}

/// A flood left at least this many half-open IKE SAs before the heap is
/// trimmed once most of them are gone.
const TRIM_AFTER_HALF_OPEN: u64 = 256;

impl Shell {
    /// Opens sockets and TUN devices for `plans` (in this network
    /// namespace), starts the engine and carries out its first actions
    /// (SPD entries, routes, the first IKE_SA_INITs).
    pub fn start(
        mut plans: Vec<ConnPlan>,
        groups: Vec<Vec<usize>>,
        opts: StartOptions,
        poller: &Poller,
    ) -> Result<Shell, Error> {
        let now = Instant::now();
        let tuning = Tuning::from_env();
        let metrics = match opts.metrics {
            Some(a) => {
                let m = metrics_server::MetricsServer::bind(a)
                    .map_err(|e| format!("--metrics {a}: {e}"))?;
                info!(addr = %m.local_addr()?, "serving Prometheus metrics at /metrics");
                Some(m)
            }
            None => None,
        };
        let mut routes = RouteTracker::new(Netlink::open()?);
        let mut socks = Vec::new();
        setup::open_sockets(&mut socks, &plans, &tuning, poller)?;
        let mut tuns: Vec<Option<TunDev>> = Vec::with_capacity(plans.len());
        let mut links = link::Links::default();
        for (k, plan) in plans.iter_mut().enumerate() {
            setup::adapt_plan(&socks, plan);
            for n in &plan.notes {
                info!(conn = %plan.name, "{n}");
            }
            let id = TunnelId(k as u32);
            let shared = tuns
                .iter()
                .position(|t| t.as_ref().is_some_and(|t| t.tun.name() == plan.ifname));
            let i = match shared {
                Some(i) => {
                    let dev = tuns[i].as_mut().ok_or("interface slot empty")?;
                    setup::share_tun(dev, id, plan, routes.netlink())?;
                    i
                }
                None => {
                    let i = tuns.len();
                    let mut dev = setup::open_tun(plan, &tuning, routes.netlink())?;
                    dev.tunnels.push(id);
                    setup::register_tun(&dev, i, poller)?;
                    tuns.push(Some(dev));
                    i
                }
            };
            links.set(id, i, plan.route_based);
        }
        let engine = Engine::new(plans, groups, opts.engine, now)?;
        let mut shell = Shell {
            engine,
            plane: DataPlane::new(),
            tuns,
            links,
            socks,
            routes,
            keylog: opts.keylog,
            tuning,
            source: opts.source,
            metrics,
            plane_at: None,
            half_open_high: 0,
        };
        shell.execute(now)?;
        Ok(shell)
    }

    /// Gives the heap of a flood's half-open IKE SAs back to the kernel
    /// once at most a quarter of them are left (glibc keeps freed pages).
    fn trim_after_flood(&mut self) {
        let now = self.engine.ike_stats().half_open;
        self.half_open_high = self.half_open_high.max(now);
        if self.half_open_high >= TRIM_AFTER_HALF_OPEN && now <= self.half_open_high / 4 {
            let released = crate::sys::heap::release_free_memory();
            debug!(
                high = self.half_open_high,
                now, released, "heap trimmed after half-open IKE SAs went"
            );
            self.half_open_high = now;
        }
    }

    /// Runs the loop until SIGTERM/SIGINT, then shuts down cleanly.
    pub fn run(
        &mut self,
        poller: &mut Poller,
        signals: &SignalFd,
        control: &mut ControlServer,
    ) -> Result<(), Error> {
        let seg = || Buf::with_capacity(HEADROOM, io::SEG_MAX, forward::TAILROOM);
        let meta = RecvMeta {
            len: 0,
            offset: 0,
            src: SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0),
            dst: None,
            ifindex: 0,
            segment: 0,
        };
        let mut bufs = Bufs {
            pkt: forward::new_buf(),
            segs: (0..BATCH_MAX).map(|_| seg()).collect(),
            out: Vec::with_capacity(BATCH_MAX),
            rx: (0..BATCH_MAX).map(|_| forward::new_buf()).collect(),
            metas: vec![meta; BATCH_MAX],
            gro: GroState {
                gro: Gro::new()
                    .with_udp(!self.tuns.is_empty() && self.tuns.iter().flatten().all(|t| t.uso)),
                owner: None,
            },
            scratch: vec![0u8; 2048],
            events: Vec::with_capacity(256),
        };
        poller.add(signals, Token(TOKEN_SIGNAL), Interest::READABLE)?;
        control.register(poller, Token(TOKEN_CONTROL))?;
        if let Some(m) = &mut self.metrics {
            m.register(poller, Token(TOKEN_METRICS))?;
        }
        loop {
            let now = Instant::now();
            let deadline = [self.engine.poll_timeout(), self.plane_at]
                .into_iter()
                .flatten()
                .min();
            poller.wait(deadline.map(|d| d.saturating_duration_since(now)))?;
            bufs.events.clear();
            bufs.events.extend(poller.events());
            for k in 0..bufs.events.len() {
                let ev = bufs.events[k];
                let now = Instant::now();
                match ev.token.0 {
                    TOKEN_SIGNAL => {
                        while let Some(sig) = signals.read()? {
                            if sig == libc::SIGHUP {
                                self.reload_logged(now, poller);
                                continue;
                            }
                            info!(signal = sig, "shutting down: deleting IKE SAs");
                            self.engine.handle_command(now, Command::Shutdown);
                        }
                    }
                    t if (TOKEN_TUN..TOKEN_SOCK).contains(&t) => {
                        self.on_tun(now, (t - TOKEN_TUN) as usize, &mut bufs)
                    }
                    t if t >= TOKEN_METRICS => self.on_metrics(poller, ev, now),
                    t if (TOKEN_SOCK..TOKEN_CONTROL).contains(&t) => {
                        let j = ((t - TOKEN_SOCK) / 4) as usize;
                        match (t - TOKEN_SOCK) % 4 {
                            0 => self.on_ike500(now, j, &mut bufs),
                            1 => self.on_natt(now, j, &mut bufs),
                            _ => self.on_raw(now, j, &mut bufs),
                        }
                    }
                    _ if control.owns(ev.token) => {
                        let poller = &*poller;
                        control.handle(poller, ev, &mut |req| self.on_request(now, req, poller));
                    }
                    _ => {}
                }
            }
            let now = Instant::now();
            if self.engine.poll_timeout().is_some_and(|t| t <= now) {
                self.engine.handle_timeout(now);
            }
            self.trim_after_flood();
            if self.plane_at.is_some_and(|t| t <= now) {
                self.plane.handle_timeout(now);
                self.plane_at = self.plane.next_timeout();
            }
            while let Some(ev) = self.plane.poll_event() {
                self.engine.handle_datapath(now, ev);
            }
            // A route that cannot be moved was logged; the tunnels go on.
            let _ = self.execute(now);
            if self.engine.is_shut_down(now) {
                break;
            }
        }
        if let Err(e) = self.routes.remove_all() {
            warn!("removing routes: {e}");
        }
        info!("routes removed; tunnel interfaces closed");
        Ok(())
    }

    /// Carries out every queued action of the engine. Returns the first
    /// route that could not be installed (fatal at start; later only logged).
    fn execute(&mut self, now: Instant) -> Result<(), Error> {
        let mut sa_changed = false;
        let mut result = Ok(());
        while let Some(a) = self.engine.poll_action() {
            match a {
                Action::Transmit(t) => self.send_ike(&t),
                Action::Sa(sa) => {
                    sa_changed = true;
                    if let SaAction::Install {
                        inbound, outbound, ..
                    } = &sa
                    {
                        self.log_esp_keys(inbound, outbound);
                    }
                    if let Err(e) = self.plane.apply(now, &sa) {
                        let conn = self.engine.plan(sa_tunnel(&sa)).map(|p| p.name.as_str());
                        warn!(
                            conn = conn.unwrap_or("-"),
                            action = sa_name(&sa),
                            "data path: {e}"
                        );
                    }
                }
                Action::Link { tunnel, up } => self.set_link(tunnel, up),
                Action::Routes { tunnel, routes } => {
                    let Some(dev) = self
                        .links
                        .tun_of(tunnel)
                        .and_then(|i| self.tuns.get(i))
                        .and_then(Option::as_ref)
                    else {
                        continue;
                    };
                    for r in &routes {
                        match self
                            .routes
                            .replace(Route::new(r.addr, r.prefix, dev.ifindex))
                        {
                            Ok(()) => info!(route = %r, dev = %dev.tun.name(), "route installed"),
                            Err(e) => {
                                warn!(route = %r, dev = %dev.tun.name(), "route: {e}");
                                if result.is_ok() {
                                    result = Err(format!("route {r} dev {}: {e}", dev.tun.name()));
                                }
                            }
                        }
                    }
                }
                Action::Unroute { routes } => {
                    for r in &routes {
                        match self.routes.remove(r.addr, r.prefix) {
                            Ok(()) => info!(route = %r, "route removed"),
                            Err(e) => warn!(route = %r, "route removal: {e}"),
                        }
                    }
                }
                Action::IkeSecrets(s) => {
                    if let Some(Err(e)) = self.keylog.as_mut().map(|k| k.ike_sa(&s)) {
                        warn!("key log: {e}");
                    }
                }
                Action::IsakmpSecrets(s) => {
                    if let Some(Err(e)) = self.keylog.as_mut().map(|k| k.isakmp_sa(&s)) {
                        warn!("key log: {e}");
                    }
                }
            }
        }
        if sa_changed {
            self.plane_at = self.plane.next_timeout();
        }
        result.map_err(Into::into)
    }

    fn send_ike(&self, t: &ike_lite::Transmit) {
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

    fn log_esp_keys(
        &mut self,
        inbound: &ipsec_core::sa::SaParams,
        outbound: &ipsec_core::sa::SaParams,
    ) {
        let Some(k) = &mut self.keylog else { return };
        let (l, r) = (inbound.tunnel.local, inbound.tunnel.remote);
        let r1 = k.esp_sa(
            r,
            l,
            inbound.spi,
            &inbound.suite,
            inbound.enc_key.as_bytes(),
            inbound.integ_key.as_bytes(),
        );
        let r2 = k.esp_sa(
            l,
            r,
            outbound.spi,
            &outbound.suite,
            outbound.enc_key.as_bytes(),
            outbound.integ_key.as_bytes(),
        );
        if let Err(e) = r1.and(r2) {
            warn!("key log: {e}");
        }
    }

    fn on_metrics(&mut self, poller: &Poller, ev: Event, now: Instant) {
        let Some(mut m) = self.metrics.take() else {
            return;
        };
        if m.owns(ev.token) {
            m.handle(poller, ev, now, &mut || {
                crate::metrics::exposition(&self.report(now), &self.engine.process_counters())
            });
        }
        self.metrics = Some(m);
    }

    /// The status document: the engine's view plus the data path's and
    /// this shell's counters.
    pub fn report(&self, now: Instant) -> StatusReport {
        let (plane, tuns, links) = (&self.plane, &self.tuns, &self.links);
        self.engine.status(now, &mut |t: TunnelId| {
            let c = plane.counters(t);
            let mut drops = BTreeMap::new();
            for r in DropReason::ALL {
                let n = c.inbound.dropped(r) + c.outbound.dropped(r);
                if n > 0 {
                    drops.insert(r.to_string(), n);
                }
            }
            if let Some(dev) = links
                .tun_of(t)
                .and_then(|i| tuns.get(i))
                .and_then(Option::as_ref)
            {
                for d in LocalDrop::ALL {
                    if dev.drops[d as usize] > 0 {
                        drops.insert(d.name().to_string(), dev.drops[d as usize]);
                    }
                }
            }
            TunnelCounters {
                bytes_in: c.inbound.bytes,
                bytes_out: c.outbound.bytes,
                packets_in: c.inbound.packets,
                packets_out: c.outbound.packets,
                drops,
            }
        })
    }
}

fn sa_tunnel(a: &SaAction) -> TunnelId {
    match a {
        SaAction::AddTunnel { tunnel, .. }
        | SaAction::ReplacePolicies { tunnel, .. }
        | SaAction::RemoveTunnel { tunnel }
        | SaAction::Install { tunnel, .. }
        | SaAction::SelectOutbound { tunnel, .. }
        | SaAction::Remove { tunnel, .. } => *tunnel,
    }
}

fn sa_name(a: &SaAction) -> &'static str {
    match a {
        SaAction::AddTunnel { .. } => "add tunnel",
        SaAction::ReplacePolicies { .. } => "replace policies",
        SaAction::RemoveTunnel { .. } => "remove tunnel",
        SaAction::Install { .. } => "install",
        SaAction::SelectOutbound { .. } => "select outbound",
        SaAction::Remove { .. } => "remove",
    }
}
