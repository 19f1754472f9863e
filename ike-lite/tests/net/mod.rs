//! Two endpoints in one process, a virtual clock and a lossy, optionally
//! NATed, in-memory network between them.
#![allow(dead_code)]

use ike_lite::message::{ExchangeType, Message, NotifyType, Payload, HEADER_LEN};
use ike_lite::proposal::{parse_esp_proposals, parse_ike_proposals};
use ike_lite::ts::TrafficSelector;
use ike_lite::{Config, ConnId, Endpoint, Event, Identity, PeerConfig, Psk, Transmit};
use rand_core::{CryptoRng, RngCore};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub const A_ADDR: &str = "192.0.2.1:500";
pub const B_ADDR: &str = "198.51.100.2:500";
/// Public address of A's NAT.
pub const NAT_IP: &str = "203.0.113.7";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    A,
    B,
}

/// What the network does with one datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    Deliver,
    Drop,
    Duplicate,
    /// Hold it back and deliver it after the next datagram.
    Delay,
}

/// Decides the fate of each datagram.
pub type FateFn = Box<dyn FnMut(Side, &Transmit) -> Fate>;
/// Rewrites a datagram in flight.
pub type MutateFn = Box<dyn FnMut(&mut Transmit)>;

pub struct Datagram {
    pub from: Side,
    pub t: Transmit,
}

pub struct Net {
    pub a: Endpoint,
    pub b: Endpoint,
    pub a_conn: ConnId,
    pub b_conn: ConnId,
    pub now: Instant,
    pub start: Instant,
    pub events_a: Vec<Event>,
    pub events_b: Vec<Event>,
    /// Every datagram put on the wire (before loss), for inspection.
    pub log: Vec<(Side, Transmit)>,
    pub fate: FateFn,
    /// A sits behind a NAT.
    pub nat: bool,
    /// Rewrites datagrams on the wire (after logging).
    pub mutate: Option<MutateFn>,
    held: Option<Datagram>,
    wire: VecDeque<Datagram>,
}

/// A seeded SplitMix64 generator: reproducible randomness for tests (never
/// for real keys; the `CryptoRng` marker only lets the endpoint take it).
pub struct TestRng(pub u64);

impl RngCore for TestRng {
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for TestRng {}

pub fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

pub fn peer(local: &str, remote: &str, id: &str, psk: &str) -> PeerConfig {
    let mut p = PeerConfig::new(
        addr(local),
        addr(remote),
        Identity::Fqdn(id.into()),
        Psk::new(psk.as_bytes()),
    );
    p.rekey_fuzz = 0.0;
    p
}

/// Configs for A (initiator by default) and B with the same proposals.
pub fn pair(ike: &str, esp: &str) -> (PeerConfig, PeerConfig) {
    let mut a = peer(A_ADDR, B_ADDR, "a.example", "secret-psk");
    let mut b = peer(B_ADDR, A_ADDR, "b.example", "secret-psk");
    for p in [&mut a, &mut b] {
        p.ike_proposals = parse_ike_proposals(ike).unwrap();
        p.esp_proposals = parse_esp_proposals(esp).unwrap();
    }
    a.remote_id = Some(Identity::Fqdn("b.example".into()));
    b.remote_id = Some(Identity::Fqdn("a.example".into()));
    (a, b)
}

impl Net {
    pub fn new(a: PeerConfig, b: PeerConfig) -> Net {
        Self::with_configs(Config::default(), a, Config::default(), b)
    }

    pub fn with_configs(ca: Config, a: PeerConfig, cb: Config, b: PeerConfig) -> Net {
        Self::with_endpoints(Endpoint::new(ca), a, Endpoint::new(cb), b)
    }

    /// Endpoints whose randomness comes from `seed` (A) and `seed + 1` (B).
    pub fn seeded(a: PeerConfig, b: PeerConfig, seed: u64) -> Net {
        let ea = Endpoint::with_rng(Config::default(), Box::new(TestRng(seed)));
        let eb = Endpoint::with_rng(Config::default(), Box::new(TestRng(seed + 1)));
        Self::with_endpoints(ea, a, eb, b)
    }

    fn with_endpoints(mut ea: Endpoint, a: PeerConfig, mut eb: Endpoint, b: PeerConfig) -> Net {
        let a_conn = ea.add_peer(a);
        let b_conn = eb.add_peer(b);
        let now = Instant::now();
        Net {
            a: ea,
            b: eb,
            a_conn,
            b_conn,
            now,
            start: now,
            events_a: Vec::new(),
            events_b: Vec::new(),
            log: Vec::new(),
            fate: Box::new(|_, _| Fate::Deliver),
            nat: false,
            mutate: None,
            held: None,
            wire: VecDeque::new(),
        }
    }

    pub fn ep(&mut self, s: Side) -> &mut Endpoint {
        match s {
            Side::A => &mut self.a,
            Side::B => &mut self.b,
        }
    }

    pub fn conn(&self, s: Side) -> ConnId {
        match s {
            Side::A => self.a_conn,
            Side::B => self.b_conn,
        }
    }

    pub fn events(&self, s: Side) -> &Vec<Event> {
        match s {
            Side::A => &self.events_a,
            Side::B => &self.events_b,
        }
    }

    fn collect(&mut self) {
        while let Some(t) = self.a.poll_transmit() {
            self.send(Side::A, t);
        }
        while let Some(t) = self.b.poll_transmit() {
            self.send(Side::B, t);
        }
        while let Some(e) = self.a.poll_event() {
            self.events_a.push(e);
        }
        while let Some(e) = self.b.poll_event() {
            self.events_b.push(e);
        }
    }

    fn send(&mut self, from: Side, mut t: Transmit) {
        self.log.push((from, t.clone()));
        if let Some(m) = &mut self.mutate {
            m(&mut t);
        }
        // NAT in front of A: rewrite A's source, B's destination.
        if self.nat && from == Side::A {
            t.src = SocketAddr::new(NAT_IP.parse().unwrap(), t.src.port() + 40000);
        }
        match (self.fate)(from, &t) {
            Fate::Drop => {}
            Fate::Deliver => self.wire.push_back(Datagram { from, t }),
            Fate::Duplicate => {
                self.wire.push_back(Datagram { from, t: t.clone() });
                self.wire.push_back(Datagram { from, t });
            }
            Fate::Delay => {
                if let Some(h) = self.held.take() {
                    self.wire.push_back(h);
                }
                self.held = Some(Datagram { from, t });
            }
        }
    }

    /// Delivers datagrams until the network is quiet (no clock movement).
    pub fn pump(&mut self) {
        self.collect();
        let mut guard = 0;
        loop {
            let d = match self.wire.pop_front() {
                Some(d) => d,
                None => match self.held.take() {
                    Some(h) => h,
                    None => break,
                },
            };
            guard += 1;
            assert!(guard < 10_000, "message storm");
            let mut t = d.t;
            let to = match d.from {
                Side::A => Side::B,
                Side::B => Side::A,
            };
            if self.nat && to == Side::A {
                // Reverse translation.
                t.dst = SocketAddr::new(addr(A_ADDR).ip(), t.dst.port() - 40000);
            }
            if t.payload == [0xff] {
                // NAT keepalive: nothing for IKE.
                self.collect();
                continue;
            }
            let now = self.now;
            let _ = self.ep(to).handle_datagram(now, t.dst, t.src, &t.payload);
            self.collect();
        }
    }

    /// Advances the virtual clock by `d`, firing every timer on the way.
    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        self.pump();
        loop {
            let next = [self.a.poll_timeout(), self.b.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    let now = self.now;
                    self.a.handle_timeout(now);
                    self.b.handle_timeout(now);
                    self.pump();
                }
                _ => break,
            }
        }
        self.now = end;
    }

    pub fn initiate(&mut self, s: Side) {
        let (now, c) = (self.now, self.conn(s));
        self.ep(s).initiate(now, c).unwrap();
        self.pump();
    }

    /// Number of datagrams in the log that are IKE messages matching `f`.
    pub fn count_msgs(&self, from: Side, f: impl Fn(&Message) -> bool) -> usize {
        self.log
            .iter()
            .filter(|(s, _)| *s == from)
            .filter_map(|(_, t)| {
                let b = if t.non_esp_marker {
                    t.payload.get(4..)?
                } else {
                    &t.payload[..]
                };
                if b.len() < HEADER_LEN {
                    return None;
                }
                Message::parse(b).ok()
            })
            .filter(|m| f(m))
            .count()
    }
}

pub fn is_init_with_notify(m: &Message, n: NotifyType) -> bool {
    m.header.exchange == ExchangeType::IKE_SA_INIT
        && m.payloads
            .iter()
            .any(|p| matches!(p, Payload::Notify(x) if x.ty == n))
}

pub fn any_ts() -> Vec<TrafficSelector> {
    vec![TrafficSelector::any_v4()]
}

/// The Child SAs established on one side, in order.
pub fn children(ev: &[Event]) -> Vec<ike_lite::ChildSa> {
    ev.iter()
        .filter_map(|e| match e {
            Event::ChildSaEstablished(c) => Some((**c).clone()),
            _ => None,
        })
        .collect()
}

/// Asserts the two sides hold mirrored SAs.
pub fn assert_mirrored(x: &ike_lite::ChildSa, y: &ike_lite::ChildSa) {
    assert_eq!(x.spi_in, y.spi_out);
    assert_eq!(x.spi_out, y.spi_in);
    assert_eq!(x.key_in, y.key_out);
    assert_eq!(x.key_out, y.key_in);
    assert_ne!(x.key_in, x.key_out);
    assert_eq!(x.suite, y.suite);
    assert_eq!(x.esn, y.esn);
    assert_eq!(x.ts_local, y.ts_remote);
    assert_eq!(x.ts_remote, y.ts_local);
}

pub fn ike_up(ev: &[Event]) -> usize {
    ev.iter()
        .filter(|e| matches!(e, Event::IkeSaUp { .. }))
        .count()
}
