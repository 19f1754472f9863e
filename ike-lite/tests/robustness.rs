//! Corrupted, truncated and random datagrams injected into live exchanges:
//! endpoints must neither panic nor loop, and either complete or fail
//! cleanly.

mod net;
use ike_lite::Event;
use net::*;
use proptest::prelude::*;
use std::time::Duration;

/// Runs setup + Child rekey + IKE rekey + delete with datagram `k`
/// corrupted by `edit`.
fn scenario(k: usize, edit: impl Fn(&mut Vec<u8>) + 'static) -> Net {
    let (a, b) = pair("aes128gcm16-prfsha256-ecp256", "aes128gcm16-ecp256");
    let mut net = Net::new(a, b);
    let mut seen = 0usize;
    net.mutate = Some(Box::new(move |t: &mut ike_lite::Transmit| {
        if seen == k {
            edit(&mut t.payload);
        }
        seen += 1;
    }));
    net.initiate(Side::A);
    net.advance(Duration::from_secs(40));
    let now = net.now;
    if let Some(&(spi, _)) = net.a.child_sas(net.a_conn).first() {
        let _ = net.a.rekey_child(now, net.a_conn, spi);
    }
    net.advance(Duration::from_secs(40));
    let now = net.now;
    let _ = net.b.rekey_ike(now, net.b_conn);
    net.advance(Duration::from_secs(40));
    let now = net.now;
    let _ = net.a.delete(now, net.a_conn);
    net.advance(Duration::from_secs(120));
    net
}

fn settled(net: &Net) {
    // Whatever happened, both ends let go of all state in the end.
    assert_eq!(net.a.ike_sa_count(), 0, "A: {:?}", net.events_a);
    // B may keep a half-open SA only until its timeout passed.
    assert_eq!(net.b.ike_sa_count(), 0, "B: {:?}", net.events_b);
    for ev in [&net.events_a, &net.events_b] {
        let up = ev
            .iter()
            .filter(|e| matches!(e, Event::IkeSaUp { .. }))
            .count();
        let down = ev
            .iter()
            .filter(|e| matches!(e, Event::IkeSaDown { .. }))
            .count();
        assert!(up <= down, "{ev:?}");
    }
}

#[test]
fn clean_run_settles() {
    let net = scenario(usize::MAX, |_| {});
    assert!(net
        .events_a
        .iter()
        .any(|e| matches!(e, Event::IkeSaRekeyed { .. })));
    settled(&net);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn flipped_byte(k in 0usize..14, pos in 0usize..2000, bit in 0u8..8) {
        let net = scenario(k, move |p| {
            if !p.is_empty() {
                let i = pos % p.len();
                p[i] ^= 1 << bit;
            }
        });
        settled(&net);
    }

    #[test]
    fn truncated(k in 0usize..14, keep in 0usize..600) {
        let net = scenario(k, move |p| p.truncate(keep.min(p.len())));
        settled(&net);
    }

    #[test]
    fn random_datagrams_to_responder(data in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..400), 1..8)) {
        let (a, b) = pair("aes128gcm16-prfsha256-ecp256", "aes128gcm16");
        let mut net = Net::new(a, b);
        let now = net.now;
        for d in &data {
            let _ = net.b.handle_datagram(now, addr(B_ADDR), addr(A_ADDR), d);
            let _ = net.b.handle_datagram(now, addr("198.51.100.2:4500"), addr(A_ADDR), d);
        }
        net.advance(Duration::from_secs(60));
        prop_assert_eq!(net.b.ike_sa_count(), 0);
    }
}
