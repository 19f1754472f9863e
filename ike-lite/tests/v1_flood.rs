//! IKEv1 main mode under the IKEv2 flood limits (charon applies them to
//! IKEv1 too): a source with `block_threshold` half-open responder SAs and
//! the global `init_limit_half_open` cap get no answer to a new message 1,
//! `half_open_timeout` frees the half-open SAs, and a completed main mode
//! leaves the half-open count.

mod v1_net;

use ike_lite::v1::{Endpoint, Error};
use ike_lite::{Config, CookieMode, Event, FloodLimits};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use v1_net::{addr, pair, Net, TestRng, B_ADDR};

/// A responder (B's configuration, accepting any peer address) with
/// `flood` limits, and an initiator whose message 1s are replayed from
/// chosen sources.
fn responder_and_initiator(flood: FloodLimits) -> (Endpoint, Endpoint, ike_lite::ConnId) {
    let (a, mut b) = pair("aes128-sha1-modp1024", "aes128-sha1-modp1024");
    b.remote = addr("0.0.0.0:500");
    b.remote_id = None;
    let config = Config {
        flood,
        ..Config::default()
    };
    let mut responder = Endpoint::with_rng(config, Box::new(TestRng(7)));
    responder.add_peer(b);
    let mut initiator = Endpoint::with_rng(Config::default(), Box::new(TestRng(8)));
    let conn = initiator.add_peer(a);
    (responder, initiator, conn)
}

/// A fresh message 1 (new initiator cookie) delivered from `src`; returns
/// the responder's verdict and whether it answered.
fn message_1_from(
    now: Instant,
    responder: &mut Endpoint,
    initiator: &mut Endpoint,
    conn: ike_lite::ConnId,
    src: SocketAddr,
) -> (Result<(), Error>, bool) {
    initiator.initiate(now, conn).expect("initiate");
    let m1 = initiator.poll_transmit().expect("message 1");
    while initiator.poll_transmit().is_some() {}
    let r = responder.handle_datagram(now, addr(B_ADDR), src, &m1.payload);
    let mut answered = false;
    while responder.poll_transmit().is_some() {
        answered = true;
    }
    (r, answered)
}

#[test]
fn a_source_at_block_threshold_gets_no_answer_until_its_half_open_sas_time_out() {
    let limits = FloodLimits {
        cookie_threshold_ip: 3,
        block_threshold: 5,
        half_open_timeout: Duration::from_secs(30),
        ..FloodLimits::default()
    };
    assert_eq!(limits.effective_block_threshold(), 5);
    let (mut b, mut a, conn) = responder_and_initiator(limits);
    let now = Instant::now();
    let flooder = addr("203.0.113.9:500");
    for i in 0..5 {
        let (r, answered) = message_1_from(now, &mut b, &mut a, conn, flooder);
        assert!(r.is_ok() && answered, "message 1 #{i}: {r:?}");
    }
    assert_eq!(b.half_open(), 5);
    assert_eq!(b.blocked_sources(), 1);
    let (r, answered) = message_1_from(now, &mut b, &mut a, conn, flooder);
    assert_eq!(r, Err(Error::Limited));
    assert!(!answered, "a blocked source got an answer");
    assert_eq!(b.half_open(), 5, "a blocked message 1 made an SA");
    assert_eq!(b.main_mode_drops().blocked_source, 1);
    // Another source is still served.
    let other = addr("198.51.100.77:500");
    let (r, answered) = message_1_from(now, &mut b, &mut a, conn, other);
    assert!(r.is_ok() && answered, "{r:?}");
    // half_open_timeout frees them all; the flooder is served again.
    let later = now + Duration::from_secs(31);
    b.handle_timeout(later);
    assert_eq!(b.half_open(), 0);
    assert_eq!(b.ike_sa_count(), 0);
    assert_eq!(b.blocked_sources(), 0);
    let (r, answered) = message_1_from(later, &mut b, &mut a, conn, flooder);
    assert!(r.is_ok() && answered, "{r:?}");
    assert_eq!(b.half_open(), 1);
}

#[test]
fn the_global_half_open_cap_refuses_new_sources() {
    let limits = FloodLimits {
        cookies: CookieMode::Never,
        block_threshold: 0,
        init_limit_half_open: 3,
        ..FloodLimits::default()
    };
    let (mut b, mut a, conn) = responder_and_initiator(limits);
    let now = Instant::now();
    for i in 1..=3u8 {
        let src = SocketAddr::from(([203, 0, 113, i], 500));
        let (r, answered) = message_1_from(now, &mut b, &mut a, conn, src);
        assert!(r.is_ok() && answered, "source {i}: {r:?}");
    }
    let (r, answered) = message_1_from(now, &mut b, &mut a, conn, addr("203.0.113.4:500"));
    assert_eq!(r, Err(Error::Limited));
    assert!(!answered);
    assert_eq!(b.main_mode_drops().half_open_limit, 1);
    assert_eq!(b.main_mode_drops().blocked_source, 0);
    assert_eq!(b.half_open(), 3);
}

#[test]
fn an_oversized_message_1_is_dropped() {
    let limits = FloodLimits {
        max_init_request_len: 100,
        ..FloodLimits::default()
    };
    let (mut b, mut a, conn) = responder_and_initiator(limits);
    let (r, answered) = message_1_from(Instant::now(), &mut b, &mut a, conn, addr(B_ADDR));
    assert_eq!(r, Err(Error::Limited));
    assert!(!answered);
    assert_eq!(b.main_mode_drops().oversized, 1);
    assert_eq!(b.ike_sa_count(), 0);
}

#[test]
fn completed_main_modes_leave_the_half_open_count() {
    // Block at one half-open SA: a phase-1 rekey from the same peer is
    // only answered if the first main mode left the table.
    let (pa, pb) = pair("aes128-sha1-modp1024", "aes128-sha1-modp1024");
    let config = Config {
        flood: FloodLimits {
            cookies: CookieMode::Never,
            block_threshold: 1,
            ..FloodLimits::default()
        },
        ..Config::default()
    };
    let mut n = Net::with_config(pa, pb, config);
    n.a.initiate(n.now, n.a_conn).unwrap();
    n.run_for(Duration::from_secs(1));
    assert_eq!(Net::established(&n.events_b).len(), 1, "{:?}", n.events_b);
    assert_eq!(n.b.half_open(), 0);
    n.a.rekey_ike(n.now, n.a_conn).unwrap();
    n.run_for(Duration::from_secs(1));
    assert!(
        n.events_b
            .iter()
            .any(|e| matches!(e, Event::IkeSaRekeyed { .. })),
        "{:?}\n{:?}",
        n.events_b,
        n.errors
    );
    assert_eq!(n.b.half_open(), 0);
    assert_eq!(n.b.main_mode_drops(), Default::default());
}
