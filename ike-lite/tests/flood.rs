//! IKE_SA_INIT flood resistance of a responder endpoint on the virtual
//! clock: cookies (global and per-source thresholds, calm-down, expiry,
//! secret rotation), per-source blocking, the global half-open cap, the
//! half-open timeout, the counters, and that a cookie-less flood costs no
//! randomness (so no Diffie-Hellman and no nonce) and no SA.

mod net;
use ike_lite::message::{ExchangeType, Message, NotifyType, Payload};
use ike_lite::{
    Config, CookieMode, DatagramError, Endpoint, EndpointStats, Event, FloodLimits, Transmit,
};
use net::*;
use rand_core::{CryptoRng, RngCore};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

const IKE: &str = "aes128gcm16-prfsha256-curve25519";
const ESP: &str = "aes128gcm16";

/// TestRng that counts the bytes drawn from it.
struct CountingRng {
    inner: TestRng,
    drawn: Arc<AtomicU64>,
}

impl RngCore for CountingRng {
    fn next_u32(&mut self) -> u32 {
        self.drawn.fetch_add(4, Relaxed);
        self.inner.next_u32()
    }
    fn next_u64(&mut self) -> u64 {
        self.drawn.fetch_add(8, Relaxed);
        self.inner.next_u64()
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.drawn.fetch_add(dest.len() as u64, Relaxed);
        self.inner.fill_bytes(dest)
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for CountingRng {}

struct Responder {
    ep: Endpoint,
    now: Instant,
    drawn: Arc<AtomicU64>,
    /// A valid IKE_SA_INIT request (from a real initiator) to vary.
    template: Vec<u8>,
}

fn local() -> SocketAddr {
    addr(B_ADDR)
}

/// Source address number `i` (10.0.0.0/8), port 500.
fn source(i: u32) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)), 500)
}

impl Responder {
    fn new(flood: FloodLimits) -> Responder {
        let (a, _) = pair(IKE, ESP);
        let mut b = peer(B_ADDR, "0.0.0.0:500", "b.example", "secret-psk");
        b.ike_proposals = a.ike_proposals.clone();
        b.esp_proposals = a.esp_proposals.clone();
        let drawn = Arc::new(AtomicU64::new(0));
        let rng = CountingRng {
            inner: TestRng(1),
            drawn: drawn.clone(),
        };
        let config = Config {
            flood,
            ..Config::default()
        };
        let mut ep = Endpoint::with_rng(config, Box::new(rng));
        ep.add_peer(b);
        let now = Instant::now();
        let mut init = Endpoint::with_rng(Config::default(), Box::new(TestRng(2)));
        let c = init.add_peer(a);
        init.initiate(now, c).unwrap();
        let template = init.poll_transmit().unwrap().payload;
        Responder {
            ep,
            now,
            drawn,
            template,
        }
    }

    /// The template with initiator SPI `spi`.
    fn request(&self, spi: u64) -> Vec<u8> {
        let mut m = self.template.clone();
        m[..8].copy_from_slice(&spi.to_be_bytes());
        m
    }

    fn send(&mut self, from: SocketAddr, msg: &[u8]) -> Result<(), DatagramError> {
        self.ep.handle_datagram(self.now, local(), from, msg)
    }

    fn answers(&mut self) -> Vec<Transmit> {
        while self.ep.poll_event().is_some() {}
        std::iter::from_fn(|| self.ep.poll_transmit()).collect()
    }

    /// Sends a new request with SPI `spi` from `from` and returns its
    /// outcome and the one answer (if any).
    fn exchange(
        &mut self,
        from: SocketAddr,
        spi: u64,
    ) -> (Result<(), DatagramError>, Option<Message>) {
        let r = self.send(from, &self.request(spi));
        let mut a = self.answers();
        assert!(a.len() <= 1, "{a:?}");
        (r, a.pop().map(|t| Message::parse(&t.payload).unwrap()))
    }

    /// Like `exchange`, answering a COOKIE once as an initiator would.
    fn exchange_with_cookie(
        &mut self,
        from: SocketAddr,
        spi: u64,
    ) -> (Result<(), DatagramError>, Option<Message>) {
        let (r, answer) = self.exchange(from, spi);
        match answer.as_ref().and_then(cookie_of) {
            Some(c) => {
                let r = self.send(from, &with_cookie(&self.request(spi), &c));
                let mut a = self.answers();
                (r, a.pop().map(|t| Message::parse(&t.payload).unwrap()))
            }
            None => (r, answer),
        }
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.ep.handle_timeout(self.now);
    }

    fn stats(&self) -> EndpointStats {
        self.ep.endpoint_stats()
    }
}

/// The COOKIE of an IKE_SA_INIT response that carries only one.
fn cookie_of(m: &Message) -> Option<Vec<u8>> {
    match m.payloads.as_slice() {
        [Payload::Notify(n)] if n.ty == NotifyType::COOKIE => Some(n.data.clone()),
        _ => None,
    }
}

fn is_sa_init_reply(m: &Message) -> bool {
    m.header.exchange == ExchangeType::IKE_SA_INIT
        && m.payloads.iter().any(|p| matches!(p, Payload::Ke(_)))
}

/// `req` with `N(COOKIE)` inserted as its first payload.
fn with_cookie(req: &[u8], cookie: &[u8]) -> Vec<u8> {
    let mut m = Message::parse(req).unwrap();
    m.payloads.insert(
        0,
        Payload::Notify(ike_lite::message::Notify::new(
            NotifyType::COOKIE,
            cookie.to_vec(),
        )),
    );
    m.emit()
}

/// Fills the responder with `n` half-open SAs, one per source from
/// `first`; cookies are not needed below the global threshold.
fn fill(r: &mut Responder, first: u32, n: u32) {
    for i in first..first + n {
        let (res, answer) = r.exchange(source(i), u64::from(i) + 1);
        assert_eq!(res, Ok(()), "request {i}");
        assert!(answer.as_ref().is_some_and(is_sa_init_reply), "{answer:?}");
    }
}

#[test]
fn cookie_free_flood_costs_no_randomness_and_no_state() {
    let mut r = Responder::new(FloodLimits::default());
    fill(&mut r, 0, 30);
    assert_eq!(r.stats().half_open, 30);
    assert_eq!(r.ep.ike_sa_count(), 30);
    let drawn = r.drawn.load(Relaxed);
    // 10,000 requests from 10,000 new sources, none answering cookies.
    for i in 0..10_000u32 {
        let (res, answer) = r.exchange(source(1000 + i), 0x1000_0000 + u64::from(i));
        assert_eq!(res, Err(DatagramError::Refused));
        let answer = answer.expect("a cookie");
        assert!(cookie_of(&answer).is_some(), "{answer:?}");
        assert_eq!(answer.header.spi_r, 0);
    }
    // No Diffie-Hellman key, nonce or SPI was made: nothing was drawn.
    assert_eq!(r.drawn.load(Relaxed), drawn);
    assert_eq!(r.ep.ike_sa_count(), 30);
    let s = r.stats();
    assert_eq!(s.half_open, 30);
    assert_eq!(s.cookies_sent, 10_000);
    assert_eq!(s.cookies_verified, 0);
    assert_eq!(s.received.ike_sa_init.handled, 30);
    assert_eq!(s.received.ike_sa_init.refused, 10_000);
}

#[test]
fn valid_cookie_is_admitted_and_counted() {
    let mut r = Responder::new(FloodLimits::default());
    fill(&mut r, 0, 30);
    let (res, answer) = r.exchange_with_cookie(source(500), 77);
    assert_eq!(res, Ok(()));
    assert!(answer.as_ref().is_some_and(is_sa_init_reply));
    let s = r.stats();
    assert_eq!(
        (s.half_open, s.cookies_sent, s.cookies_verified),
        (31, 1, 1)
    );
    // The same cookie from another address or for another SPI is wrong.
    let (_, a) = r.exchange(source(501), 78);
    let c = cookie_of(&a.unwrap()).unwrap();
    let forged = with_cookie(&r.request(78), &c);
    assert_eq!(r.send(source(502), &forged), Err(DatagramError::Refused));
    let forged = with_cookie(&r.request(79), &c);
    assert_eq!(r.send(source(501), &forged), Err(DatagramError::Refused));
    let mut flipped = c.clone();
    flipped[10] ^= 1;
    let bad = with_cookie(&r.request(78), &flipped);
    assert_eq!(r.send(source(501), &bad), Err(DatagramError::Refused));
    let s = r.stats();
    assert_eq!(s.init_dropped.bad_cookie, 3);
    assert_eq!(s.half_open, 31);
    // Each bad cookie was answered with a fresh one.
    let answers = r.answers();
    assert_eq!(answers.len(), 3);
    assert!(answers
        .iter()
        .all(|t| cookie_of(&Message::parse(&t.payload).unwrap()).is_some()));
}

#[test]
fn cookies_expire_and_survive_one_secret_rotation() {
    let mut r = Responder::new(FloodLimits {
        cookies: CookieMode::Always,
        ..Default::default()
    });
    // Expired after COOKIE_LIFETIME (10 s).
    let (_, a) = r.exchange(source(1), 1);
    let c = cookie_of(&a.unwrap()).unwrap();
    r.advance(Duration::from_secs(11));
    assert_eq!(
        r.send(source(1), &with_cookie(&r.request(1), &c)),
        Err(DatagramError::Refused)
    );
    assert_eq!(r.stats().init_dropped.bad_cookie, 1);
    r.answers();
    // Made with the old secret shortly before the rotation (120 s after
    // its first use), still accepted shortly after it.
    r.advance(Duration::from_secs(105));
    let (_, a) = r.exchange(source(2), 2);
    let old = cookie_of(&a.unwrap()).unwrap();
    r.advance(Duration::from_secs(6));
    let drawn = r.drawn.load(Relaxed);
    let (_, a) = r.exchange(source(3), 3);
    let fresh = cookie_of(&a.unwrap()).unwrap();
    assert_eq!(r.drawn.load(Relaxed), drawn + 32, "a new secret was drawn");
    assert_eq!(r.send(source(2), &with_cookie(&r.request(2), &old)), Ok(()));
    assert_eq!(
        r.send(source(3), &with_cookie(&r.request(3), &fresh)),
        Ok(())
    );
    assert_eq!(r.stats().cookies_verified, 2);
    assert_eq!(r.stats().half_open, 2);
}

#[test]
fn per_source_cookie_threshold_then_block() {
    let mut r = Responder::new(FloodLimits::default());
    let attacker = source(9);
    // cookie_threshold_ip = 3: three half-open SAs without cookies.
    for spi in 1..=3 {
        assert_eq!(r.exchange(attacker, spi).0, Ok(()));
    }
    let (res, a) = r.exchange(attacker, 4);
    assert_eq!(res, Err(DatagramError::Refused));
    assert!(cookie_of(&a.unwrap()).is_some());
    // Another source is not asked for a cookie.
    assert_eq!(r.exchange(source(10), 100).0, Ok(()));
    // With cookies, up to block_threshold = 5.
    for spi in 4..=5 {
        assert_eq!(r.exchange_with_cookie(attacker, spi).0, Ok(()));
    }
    assert_eq!(r.stats().blocked_sources, 1);
    let (res, a) = r.exchange_with_cookie(attacker, 6);
    assert_eq!(res, Err(DatagramError::Limited));
    assert!(a.is_none(), "a blocked source gets no answer");
    let s = r.stats();
    assert_eq!(s.init_dropped.blocked_source, 1);
    assert_eq!(s.half_open, 6);
    assert_eq!(s.received.ike_sa_init.dropped, 1);
    // The half-open SAs go after half_open_timeout; so does the block.
    r.advance(Duration::from_secs(30));
    let s = r.stats();
    assert_eq!(
        (s.half_open, s.blocked_sources, s.half_open_expired),
        (0, 0, 6)
    );
    assert_eq!(r.ep.ike_sa_count(), 0);
}

#[test]
fn retransmission_is_answered_from_the_half_open_sa_even_when_blocked() {
    let mut r = Responder::new(FloodLimits {
        cookies: CookieMode::Never,
        block_threshold: 2,
        ..Default::default()
    });
    let src = source(1);
    let (_, first) = r.exchange(src, 1);
    assert_eq!(r.exchange(src, 2).0, Ok(()));
    assert_eq!(r.exchange(src, 3).0, Err(DatagramError::Limited));
    let drawn = r.drawn.load(Relaxed);
    let (res, again) = r.exchange(src, 1);
    assert_eq!(res, Ok(()));
    assert_eq!(again, first);
    assert_eq!(r.drawn.load(Relaxed), drawn);
    assert_eq!(r.stats().half_open, 2);
}

#[test]
fn global_half_open_cap() {
    let mut r = Responder::new(FloodLimits {
        cookies: CookieMode::Never,
        init_limit_half_open: 10,
        ..Default::default()
    });
    fill(&mut r, 0, 10);
    let drawn = r.drawn.load(Relaxed);
    for i in 10..20 {
        let (res, a) = r.exchange(source(i), u64::from(i) + 1);
        assert_eq!(res, Err(DatagramError::Limited));
        assert!(a.is_none());
    }
    assert_eq!(r.drawn.load(Relaxed), drawn);
    let s = r.stats();
    assert_eq!((s.half_open, s.init_dropped.half_open_limit), (10, 10));
    // Room again once they time out.
    r.advance(Duration::from_secs(30));
    assert_eq!(r.exchange(source(30), 31).0, Ok(()));
}

#[test]
fn half_open_timeout_is_configurable_and_scheduled() {
    let mut r = Responder::new(FloodLimits {
        half_open_timeout: Duration::from_secs(2),
        ..Default::default()
    });
    let start = r.now;
    fill(&mut r, 0, 5);
    r.now += Duration::from_millis(500);
    fill(&mut r, 5, 5);
    assert_eq!(r.ep.poll_timeout(), Some(start + Duration::from_secs(2)));
    r.now = start + Duration::from_secs(2);
    r.ep.handle_timeout(r.now);
    assert_eq!(r.stats().half_open, 5);
    assert_eq!(
        r.ep.poll_timeout(),
        Some(start + Duration::from_millis(2500))
    );
    r.advance(Duration::from_millis(500));
    let s = r.stats();
    assert_eq!((s.half_open, s.half_open_expired), (0, 10));
    assert_eq!(r.ep.poll_timeout(), None);
}

#[test]
fn cookies_stay_on_for_the_calm_down_delay() {
    let mut r = Responder::new(FloodLimits {
        cookie_threshold: 5,
        half_open_timeout: Duration::from_secs(3),
        ..Default::default()
    });
    fill(&mut r, 0, 5);
    let (res, _) = r.exchange(source(100), 100);
    assert_eq!(res, Err(DatagramError::Refused));
    // The half-open SAs are gone, but the threshold was reached 4 s ago.
    r.advance(Duration::from_secs(4));
    assert_eq!(r.stats().half_open, 0);
    assert_eq!(r.exchange(source(101), 101).0, Err(DatagramError::Refused));
    // 10 s after the threshold was last reached, cookies are off again.
    r.advance(Duration::from_secs(7));
    assert_eq!(r.exchange(source(102), 102).0, Ok(()));
}

#[test]
fn oversized_and_malformed_requests_are_dropped_before_any_work() {
    let mut r = Responder::new(FloodLimits {
        cookies: CookieMode::Always,
        max_init_request_len: 300,
        ..Default::default()
    });
    let mut big = r.request(1);
    assert!(big.len() <= 300, "template {} bytes", big.len());
    // A long vendor ID makes it 301 bytes.
    let mut m = Message::parse(&big).unwrap();
    let pad = 301 - big.len() - 4;
    m.payloads.push(Payload::Vendor(vec![0; pad]));
    big = m.emit();
    assert_eq!(big.len(), 301);
    assert_eq!(r.send(source(1), &big), Err(DatagramError::Limited));
    // No nonce: no cookie can be made.
    let mut m = Message::parse(&r.request(2)).unwrap();
    m.payloads.retain(|p| !matches!(p, Payload::Nonce(_)));
    assert_eq!(r.send(source(1), &m.emit()), Err(DatagramError::Limited));
    assert!(r.answers().is_empty());
    let s = r.stats();
    assert_eq!((s.init_dropped.oversized, s.init_dropped.malformed), (1, 1));
    assert_eq!(s.received.ike_sa_init.dropped, 2);
    assert_eq!(r.send(source(1), &[0u8; 10]), Err(DatagramError::NotIke));
    assert_eq!(r.stats().received.unparsable, 1);
}

#[test]
fn a_real_initiator_gets_in_during_a_flood() {
    let (a, mut b) = pair(IKE, ESP);
    b.remote = addr("0.0.0.0:500");
    let mut net = Net::new(a, b);
    // 30 half-open SAs from a spoofing flood: cookies are on.
    let flood = Responder::new(FloodLimits::default());
    for i in 0..40u32 {
        let msg = flood.request(0x5000 + u64::from(i));
        let _ = net.b.handle_datagram(net.now, local(), source(i), &msg);
    }
    while net.b.poll_transmit().is_some() {}
    assert_eq!(net.b.endpoint_stats().half_open, 30);
    net.initiate(Side::A);
    assert_eq!(ike_up(&net.events_a), 1, "{:?}", net.events_a);
    assert_eq!(ike_up(&net.events_b), 1);
    let s = net.b.endpoint_stats();
    assert_eq!(s.cookies_verified, 1);
    assert_eq!(s.half_open, 30);
    assert_eq!(s.received.ike_auth.handled, 1);
    assert!(net
        .events_b
        .iter()
        .any(|e| matches!(e, Event::IkeSaUp { .. })));
    // The established SA is unaffected by the flood's expiry.
    net.advance(Duration::from_secs(31));
    let s = net.b.endpoint_stats();
    assert_eq!((s.half_open, s.half_open_expired), (0, 30));
    assert!(net.b.ike_spis(net.b_conn).is_some());
}
