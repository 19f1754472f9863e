//! Two IKEv1 endpoints in one process, a virtual clock and an in-memory
//! network between them that can drop, duplicate or NAT datagrams.
#![allow(dead_code)]

use ike_lite::proposal::{parse_esp_proposals, parse_ike_proposals};
use ike_lite::v1::Endpoint;
use ike_lite::{ChildSa, Config, ConnId, Event, Identity, PeerConfig, Psk, Transmit};
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
}

pub type FateFn = Box<dyn FnMut(Side, &Transmit) -> Fate>;

/// A seeded SplitMix64 generator (tests only).
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

/// Configs for A and B (IDs by IP address, selectors 10.1/16 <-> 10.2/16).
pub fn pair(ike: &str, esp: &str) -> (PeerConfig, PeerConfig) {
    let mk = |l: &str, r: &str, lts: &str, rts: &str| {
        let la = addr(l);
        let mut p = PeerConfig::new(
            la,
            addr(r),
            Identity::from_ip(la.ip()),
            Psk::new(&b"v1-test-psk"[..]),
        );
        p.ike_proposals = parse_ike_proposals(ike).unwrap();
        p.esp_proposals = parse_esp_proposals(esp).unwrap();
        p.local_ts = vec![lts.parse().unwrap()];
        p.remote_ts = vec![rts.parse().unwrap()];
        p.rekey_fuzz = 0.0;
        p.remote_id = Some(Identity::from_ip(addr(r).ip()));
        p
    };
    (
        mk(A_ADDR, B_ADDR, "10.1.0.0/16", "10.2.0.0/16"),
        mk(B_ADDR, A_ADDR, "10.2.0.0/16", "10.1.0.0/16"),
    )
}

pub struct Net {
    pub a: Endpoint,
    pub b: Endpoint,
    pub a_conn: ConnId,
    pub b_conn: ConnId,
    pub now: Instant,
    pub events_a: Vec<Event>,
    pub events_b: Vec<Event>,
    pub log: Vec<(Side, Transmit)>,
    pub fate: FateFn,
    /// A sits behind a NAT (source rewritten to NAT_IP:port+1000).
    pub nat: bool,
    pub errors: Vec<(Side, ike_lite::v1::Error)>,
    wire: VecDeque<(Side, Transmit)>,
}

impl Net {
    pub fn new(a: PeerConfig, b: PeerConfig) -> Net {
        Net::with_config(a, b, Config::default())
    }

    pub fn with_config(a: PeerConfig, b: PeerConfig, config: Config) -> Net {
        let mut ea = Endpoint::with_rng(config.clone(), Box::new(TestRng(1)));
        let mut eb = Endpoint::with_rng(config, Box::new(TestRng(2)));
        let a_conn = ea.add_peer(a);
        let b_conn = eb.add_peer(b);
        Net {
            a: ea,
            b: eb,
            a_conn,
            b_conn,
            now: Instant::now(),
            events_a: Vec::new(),
            events_b: Vec::new(),
            log: Vec::new(),
            fate: Box::new(|_, _| Fate::Deliver),
            nat: false,
            errors: Vec::new(),
            wire: VecDeque::new(),
        }
    }

    fn collect(&mut self) {
        while let Some(t) = self.a.poll_transmit() {
            self.log.push((Side::A, t.clone()));
            self.wire.push_back((Side::A, t));
        }
        while let Some(t) = self.b.poll_transmit() {
            self.log.push((Side::B, t.clone()));
            self.wire.push_back((Side::B, t));
        }
        while let Some(e) = self.a.poll_event() {
            self.events_a.push(e);
        }
        while let Some(e) = self.b.poll_event() {
            self.events_b.push(e);
        }
    }

    fn deliver(&mut self, from: Side, mut t: Transmit) {
        if self.nat {
            match from {
                Side::A => t.src = SocketAddr::new(NAT_IP.parse().unwrap(), t.src.port() + 1000),
                Side::B => {
                    if t.dst.ip().to_string() == NAT_IP {
                        t.dst = SocketAddr::new(addr(A_ADDR).ip(), t.dst.port() - 1000);
                    }
                }
            }
        }
        let r = match from {
            Side::A => self.b.handle_datagram(self.now, t.dst, t.src, &t.payload),
            Side::B => self.a.handle_datagram(self.now, t.dst, t.src, &t.payload),
        };
        if let Err(e) = r {
            self.errors
                .push((if from == Side::A { Side::B } else { Side::A }, e));
        }
    }

    /// Delivers datagrams until the wire is empty (no time passes).
    pub fn pump(&mut self) {
        for _ in 0..10_000 {
            self.collect();
            let Some((from, t)) = self.wire.pop_front() else {
                return;
            };
            match (self.fate)(from, &t) {
                Fate::Deliver => self.deliver(from, t),
                Fate::Drop => {}
                Fate::Duplicate => {
                    self.deliver(from, t.clone());
                    self.deliver(from, t);
                }
            }
        }
        panic!("message storm");
    }

    /// Advances the clock to `until`, firing timers on the way.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.pump();
        loop {
            let next = [self.a.poll_timeout(), self.b.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= until => {
                    self.now = self.now.max(t);
                    self.a.handle_timeout(self.now);
                    self.b.handle_timeout(self.now);
                    self.pump();
                }
                _ => break,
            }
        }
        self.now = until;
        self.pump();
    }

    pub fn established(events: &[Event]) -> Vec<&ChildSa> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::ChildSaEstablished(c) => Some(&**c),
                _ => None,
            })
            .collect()
    }

    pub fn count(events: &[Event], f: impl Fn(&Event) -> bool) -> usize {
        events.iter().filter(|e| f(e)).count()
    }
}
