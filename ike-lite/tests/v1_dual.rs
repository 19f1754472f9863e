//! `DualEndpoint`: an IKEv2 and an IKEv1 connection side by side between
//! the same two gateways (different ports per version here, as two peers
//! would have), each event naming the connection it belongs to.

mod v1_net;

use ike_lite::{Config, ConnId, DualEndpoint, Event, IkeVersion};
use std::time::{Duration, Instant};
use v1_net::{addr, pair, TestRng};

fn pump(
    a: &mut DualEndpoint,
    b: &mut DualEndpoint,
    now: Instant,
    ev_a: &mut Vec<Event>,
    ev_b: &mut Vec<Event>,
) {
    for _ in 0..100 {
        let mut moved = false;
        while let Some(t) = a.poll_transmit() {
            b.handle_datagram(now, t.dst, t.src, &t.payload).unwrap();
            moved = true;
        }
        while let Some(t) = b.poll_transmit() {
            a.handle_datagram(now, t.dst, t.src, &t.payload).unwrap();
            moved = true;
        }
        ev_a.extend(std::iter::from_fn(|| a.poll_event()));
        ev_b.extend(std::iter::from_fn(|| b.poll_event()));
        if !moved {
            return;
        }
    }
    panic!("no quiet");
}

fn children(ev: &[Event], conn: ConnId) -> usize {
    ev.iter()
        .filter(|e| matches!(e, Event::ChildSaEstablished(c) if c.conn == conn))
        .count()
}

#[test]
fn both_versions_on_one_endpoint() {
    let cfg = Config::default;
    let mut a = DualEndpoint::with_rngs(cfg(), Box::new(TestRng(1)), Box::new(TestRng(2)));
    let mut b = DualEndpoint::with_rngs(cfg(), Box::new(TestRng(3)), Box::new(TestRng(4)));
    // Conn 0: IKEv2 between .1 and .2; conn 1: IKEv1 between .1 and .3
    // (the IKEv1 responder picks its connection by the peer's address).
    let (a2, b2) = pair("aes128gcm16-prfsha256-modp2048", "aes128gcm16");
    let (mut a1, mut b1) = pair("aes128-sha1-modp1024", "aes128-sha1-modp1024");
    a1.remote = addr("198.51.100.3:500");
    a1.remote_id = Some(ike_lite::Identity::from_ip(a1.remote.ip()));
    b1.local = a1.remote;
    b1.local_id = ike_lite::Identity::from_ip(b1.local.ip());
    let (ca2, ca1) = (
        a.add_peer(a2, IkeVersion::V2),
        a.add_peer(a1, IkeVersion::V1),
    );
    let (cb2, cb1) = (
        b.add_peer(b2, IkeVersion::V2),
        b.add_peer(b1, IkeVersion::V1),
    );
    assert_eq!((ca2, ca1), (ConnId(0), ConnId(1)));
    assert_eq!(b.ike_version(cb1), Some(IkeVersion::V1));
    let now = Instant::now();
    let (mut ea, mut eb) = (Vec::new(), Vec::new());
    a.initiate(now, ca1).unwrap();
    a.initiate(now, ca2).unwrap();
    pump(&mut a, &mut b, now, &mut ea, &mut eb);
    for (ev, c2, c1) in [(&ea, ca2, ca1), (&eb, cb2, cb1)] {
        assert_eq!((children(ev, c2), children(ev, c1)), (1, 1), "{ev:?}");
    }
    assert_eq!(
        a.ike_algorithms(ca1).unwrap().name(),
        "aes128-sha1-modp1024"
    );
    assert_eq!(
        a.ike_algorithms(ca2).unwrap().name(),
        "aes128gcm16-prfsha256-modp2048"
    );
    assert_eq!(a.ike_spis(ca1), b.ike_spis(cb1));
    assert_eq!(a.ike_sa_count(), 2);
    // Timers of both are merged; deleting the IKEv1 one leaves IKEv2 up.
    assert!(a.poll_timeout().is_some());
    a.delete(now, ca1).unwrap();
    pump(
        &mut a,
        &mut b,
        now + Duration::from_millis(1),
        &mut ea,
        &mut eb,
    );
    assert!(eb
        .iter()
        .any(|e| matches!(e, Event::IkeSaDown { conn, .. } if *conn == cb1)));
    assert!(b.ike_spis(cb2).is_some() && b.ike_spis(cb1).is_none());
}
