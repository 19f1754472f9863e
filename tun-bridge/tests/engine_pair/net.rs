//! Sites (one tunnel engine and one data plane each) on an in-memory
//! network with a virtual clock: IKE datagrams go from engine to engine,
//! data packets are encrypted by one site's data path and decrypted by the
//! other's. No sockets, no root, no real time.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use ike_lite::Transmit;
use ipsec_core::buf::PacketBuf;
use ipsec_core::datapath::{InboundAction, OutboundAction};
use tun_bridge::config::parse_str;
use tun_bridge::config::values::IpNet;
use tun_bridge::dataplane::DataPlane;
use tun_bridge::engine::failover::Failback;
use tun_bridge::engine::reload::Reloaded;
use tun_bridge::engine::{Action, Command, Engine, EngineOptions, TunnelId};
use tun_bridge::runtime::plan::{self, ConnPlan};

/// A small deterministic generator (xorshift64*): the same seed gives the
/// same SPIs, nonces, keys and jitter. Marked crypto only for tests.
pub struct TestRng(pub u64);

impl rand_core::CryptoRng for TestRng {}

impl rand_core::RngCore for TestRng {
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for b in dest {
            *b = self.next_u32() as u8;
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

/// The plans of `conf`/`secrets` for a site at `local`.
pub fn plans(conf: &str, secrets: &str, local: &str) -> (Vec<ConnPlan>, Vec<Vec<usize>>) {
    let loaded = parse_str(
        conf,
        Path::new("ipsec.conf"),
        secrets,
        Path::new("ipsec.secrets"),
    )
    .unwrap_or_else(|e| panic!("config: {e}"));
    let cfg = loaded.config;
    let local: IpAddr = local.parse().unwrap();
    let plans: Vec<ConnPlan> = plan::select_conns(&cfg, &[])
        .unwrap()
        .into_iter()
        .map(|(c, mode)| {
            let remote = plan::resolve_remote(&c.remote, Some(local)).unwrap();
            plan::plan_conn(c, mode, local, remote, &cfg.secrets, true).unwrap()
        })
        .collect();
    let groups = plan::failover_groups(&plans);
    (plans, groups)
}

/// One site.
pub struct Site {
    pub addr: IpAddr,
    pub engine: Engine,
    pub dp: DataPlane,
    /// Prefixes routed into each tunnel (the last `Routes` action wins;
    /// `None`: withdrawn by `Unroute`).
    pub routes: Vec<(Option<TunnelId>, Vec<IpNet>)>,
    /// Errors the data plane reported while applying actions.
    pub apply_errors: Vec<String>,
    /// Datagrams this site's engine sent.
    pub sent: Vec<Transmit>,
    /// Carrier changes of route-based tunnel interfaces, in order.
    pub links: Vec<(TunnelId, bool)>,
}

impl Site {
    pub fn new(
        conf: &str,
        secrets: &str,
        local: &str,
        failback: Failback,
        seed: u64,
        now: Instant,
    ) -> Site {
        quiet_global_subscriber();
        let (plans, groups) = plans(conf, secrets, local);
        let engine = Engine::new(
            plans,
            groups,
            EngineOptions {
                failback,
                ike: ike_lite::Config::default(),
                ike_rng: Box::new(TestRng(seed ^ 0x9e37_79b9_7f4a_7c15)),
                rng: Box::new(TestRng(seed)),
            },
            now,
        )
        .unwrap();
        Site {
            addr: local.parse().unwrap(),
            engine,
            dp: DataPlane::new(),
            routes: Vec::new(),
            apply_errors: Vec::new(),
            sent: Vec::new(),
            links: Vec::new(),
        }
    }

    /// The carrier of `tunnel`'s interface as last set (`None`: never).
    pub fn link(&self, tunnel: TunnelId) -> Option<bool> {
        self.links
            .iter()
            .rev()
            .find(|(t, _)| *t == tunnel)
            .map(|(_, up)| *up)
    }

    /// How many carrier changes `tunnel` had.
    pub fn link_changes(&self, tunnel: TunnelId) -> usize {
        self.links.iter().filter(|(t, _)| *t == tunnel).count()
    }

    /// The tunnel the routes to `net` point at.
    pub fn route_owner(&self, net: &str) -> Option<TunnelId> {
        let net = IpNet::parse(net).unwrap();
        self.routes
            .iter()
            .rev()
            .find(|(_, r)| r.contains(&net))
            .and_then(|(t, _)| *t)
    }

    /// Reloads this site's engine with `conf`/`secrets` at `now`.
    pub fn reload(&mut self, conf: &str, secrets: &str, now: Instant) -> Reloaded {
        let local = self.addr.to_string();
        let (plans, groups) = plans(conf, secrets, &local);
        self.engine.reload(now, plans, groups).expect("reload")
    }

    /// IKE_SA_INIT requests this site sent (first transmissions and
    /// retransmissions).
    pub fn sa_inits_sent(&self) -> usize {
        self.sent
            .iter()
            .filter(|t| is_sa_init_request(&t.payload, t.non_esp_marker))
            .count()
    }
}

fn is_sa_init_request(p: &[u8], marker: bool) -> bool {
    let p = if marker { &p[4.min(p.len())..] } else { p };
    // Exchange type 34 (IKE_SA_INIT), flags without the Response bit.
    p.len() > 19 && p[18] == 34 && p[19] & 0x20 == 0
}

/// An ESP packet in flight.
struct EspInFlight {
    to: IpAddr,
    bytes: Vec<u8>,
}

/// The network.
pub struct Net {
    pub sites: Vec<Site>,
    pub now: Instant,
    /// Decides whether a datagram from site `from` to address `to` is
    /// delivered (IKE and ESP alike).
    pub deliver: Box<dyn FnMut(usize, IpAddr) -> bool>,
    ike: VecDeque<(usize, Transmit)>,
    esp: VecDeque<EspInFlight>,
    /// Data packets: sent, delivered intact, lost (not encrypted, or not
    /// decrypted), the last loss reason.
    pub data_sent: u64,
    pub data_delivered: u64,
    pub data_lost: u64,
    pub last_loss: Option<String>,
}

pub const A: usize = 0;
pub const B: usize = 1;
pub const C: usize = 2;
pub const D: usize = 3;

impl Net {
    pub fn new(sites: Vec<Site>, now: Instant) -> Net {
        Net {
            sites,
            now,
            deliver: Box::new(|_, _| true),
            ike: VecDeque::new(),
            esp: VecDeque::new(),
            data_sent: 0,
            data_delivered: 0,
            data_lost: 0,
            last_loss: None,
        }
    }

    fn site_at(&self, ip: IpAddr) -> Option<usize> {
        self.sites.iter().position(|s| s.addr == ip)
    }

    /// Carries out every queued action and delivers every datagram until
    /// nothing moves.
    pub fn pump(&mut self) {
        for _ in 0..100_000 {
            let mut moved = false;
            for i in 0..self.sites.len() {
                let now = self.now;
                let s = &mut self.sites[i];
                while let Some(a) = s.engine.poll_action() {
                    moved = true;
                    match a {
                        Action::Transmit(t) => {
                            s.sent.push(t.clone());
                            self.ike.push_back((i, t));
                        }
                        Action::Sa(sa) => {
                            if let Err(e) = s.dp.apply(now, &sa) {
                                s.apply_errors.push(e.to_string());
                            }
                        }
                        Action::Routes { tunnel, routes } => s.routes.push((Some(tunnel), routes)),
                        Action::Unroute { routes } => s.routes.push((None, routes)),
                        Action::Link { tunnel, up } => s.links.push((tunnel, up)),
                        Action::IkeSecrets(_) | Action::IsakmpSecrets(_) => {}
                    }
                }
                while let Some(ev) = s.dp.poll_event() {
                    moved = true;
                    s.engine.handle_datapath(now, ev);
                }
            }
            if let Some((from, t)) = self.ike.pop_front() {
                moved = true;
                if (self.deliver)(from, t.dst.ip()) {
                    if let Some(to) = self.site_at(t.dst.ip()) {
                        let now = self.now;
                        let _ = self.sites[to]
                            .engine
                            .handle_ike(now, t.dst, t.src, &t.payload);
                    }
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the network never settles (a busy loop?)");
    }

    /// Moves the clock by `d`, running every timer that falls due on the way.
    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        self.pump();
        let mut last = None;
        for _ in 0..1_000_000 {
            let next = self
                .sites
                .iter()
                .flat_map(|s| [s.engine.poll_timeout(), s.dp.next_timeout()])
                .flatten()
                .min();
            let Some(t) = next.filter(|t| *t <= end) else {
                break;
            };
            if last == Some(t) {
                // A deadline that did not move: step past it.
                if self.now >= end {
                    break;
                }
                self.now = (self.now + Duration::from_millis(1)).min(end);
            } else {
                self.now = self.now.max(t);
            }
            last = Some(t);
            let now = self.now;
            for s in &mut self.sites {
                s.dp.handle_timeout(now);
                if s.engine.poll_timeout().is_some_and(|t| t <= now) {
                    s.engine.handle_timeout(now);
                }
            }
            self.pump();
        }
        self.now = self.now.max(end);
        self.pump();
    }

    /// Advances in `step`s for `total`, sending one data packet each way
    /// over `tunnel_a` (site A) / `tunnel_b` (site B) per step, with each
    /// ESP packet delivered one step late (in flight across the step).
    pub fn run_traffic(
        &mut self,
        total: Duration,
        step: Duration,
        peer: usize,
        tunnel_a: TunnelId,
        tunnel_b: TunnelId,
    ) {
        let steps = total.as_millis() / step.as_millis().max(1);
        for k in 0..steps {
            self.flush_esp();
            self.send_data(A, tunnel_a, k as u8);
            self.send_data(peer, tunnel_b, k as u8);
            self.advance(step);
        }
        self.flush_esp();
    }

    /// Encrypts one inner packet at `from` over `tunnel` and puts it on
    /// the wire (it arrives at the next [`Net::flush_esp`]).
    pub fn send_data(&mut self, from: usize, tunnel: TunnelId, seed: u8) {
        let s = &self.sites[from];
        let (src, dst) = if from == A {
            ("10.1.0.5", "10.2.0.5")
        } else {
            ("10.2.0.5", "10.1.0.5")
        };
        let pkt = udp_packet(src.parse().unwrap(), dst.parse().unwrap(), seed);
        self.data_sent += 1;
        let mut buf = PacketBuf::with_capacity(128, 2048, 64);
        buf.load(128, &pkt).unwrap();
        match s.dp.datapath().process_outbound(tunnel, self.now, &mut buf) {
            OutboundAction::Encapsulated { endpoints, .. } => {
                let bytes = buf.data().to_vec();
                if (self.deliver)(from, endpoints.remote) {
                    self.esp.push_back(EspInFlight {
                        to: endpoints.remote,
                        bytes,
                    });
                } else {
                    self.data_lost += 1;
                }
            }
            other => self.lose(format!("outbound at site {from}: {other:?}")),
        }
    }

    fn lose(&mut self, why: String) {
        self.data_lost += 1;
        self.last_loss = Some(why);
    }

    /// Delivers the ESP packets in flight.
    pub fn flush_esp(&mut self) {
        while let Some(p) = self.esp.pop_front() {
            let Some(to) = self.site_at(p.to) else {
                self.lose("no site".into());
                continue;
            };
            let dp = self.sites[to].dp.datapath();
            let mut buf = PacketBuf::with_capacity(128, 2048, 64);
            buf.load(128, &p.bytes).unwrap();
            match dp.process_inbound_esp(self.now, &mut buf) {
                InboundAction::Inner { .. } => self.data_delivered += 1,
                other => self.lose(format!("inbound at site {to}: {other:?}")),
            }
        }
    }

    /// Reloads site `site` with `conf`/`secrets` and carries out the result.
    pub fn reload(&mut self, site: usize, conf: &str, secrets: &str) -> Reloaded {
        let now = self.now;
        let r = self.sites[site].reload(conf, secrets, now);
        self.pump();
        r
    }

    pub fn command(&mut self, site: usize, cmd: Command) {
        let now = self.now;
        self.sites[site].engine.handle_command(now, cmd);
        self.pump();
    }

    pub fn status(&self, site: usize) -> tun_bridge::control::StatusReport {
        let s = &self.sites[site];
        s.engine.status(self.now, &mut |_| Default::default())
    }

    pub fn state(&self, site: usize, tunnel: usize) -> tun_bridge::control::TunnelState {
        self.status(site).tunnels[tunnel].state
    }
}

/// An IPv4/UDP packet of 100 bytes from `src` to `dst`.
pub fn udp_packet(src: IpAddr, dst: IpAddr, seed: u8) -> Vec<u8> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (src, dst) else {
        panic!("v4 only")
    };
    let total = 100usize;
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&s.octets());
    p[16..20].copy_from_slice(&d.octets());
    let mut sum = 0u32;
    for c in p[..20].chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    p[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    p[20..22].copy_from_slice(&5000u16.to_be_bytes());
    p[22..24].copy_from_slice(&5001u16.to_be_bytes());
    p[24..26].copy_from_slice(&((total - 20) as u16).to_be_bytes());
    for (k, b) in p[28..].iter_mut().enumerate() {
        *b = seed.wrapping_add(k as u8);
    }
    p
}

/// A process-wide subscriber that is enabled at debug level and drops
/// everything. Without one, a thread without a subscriber can cache a
/// callsite's interest as "never" while `logs.rs` captures with a scoped
/// subscriber on another thread, and that test misses the line.
pub fn quiet_global_subscriber() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use tracing_subscriber::prelude::*;
        let quiet =
            tracing_subscriber::registry().with(tracing_subscriber::filter::LevelFilter::DEBUG);
        let _ = tracing::subscriber::set_global_default(quiet);
    });
}
