//! CREATE_CHILD_SA, INFORMATIONAL, retransmission, DPD and collisions.

mod net;
use ike_lite::{ChildDeleteReason, DownReason, Event};
use net::*;
use std::time::Duration;

fn up(esp: &str) -> Net {
    let (a, b) = pair("aes128gcm16-prfsha256-ecp256", esp);
    let mut net = Net::new(a, b);
    net.initiate(Side::A);
    assert_eq!(children(&net.events_a).len(), 1);
    net
}

fn pos(ev: &[Event], f: impl Fn(&Event) -> bool) -> usize {
    ev.iter()
        .position(f)
        .unwrap_or_else(|| panic!("event missing in {ev:?}"))
}

/// Checks make-before-break order and the final state after one rekey.
fn check_rekeyed(net: &Net) {
    for s in [Side::A, Side::B] {
        let ev = net.events(s);
        let ch = children(ev);
        assert_eq!(ch.len(), 2, "{s:?}: {ev:?}");
        let (old, new) = (&ch[0], &ch[1]);
        assert_eq!(new.rekey_of, Some(old.spi_in));
        assert_ne!(new.key_in, old.key_in);
        let est = pos(
            ev,
            |e| matches!(e, Event::ChildSaEstablished(c) if c.spi_in == new.spi_in),
        );
        let sw = pos(ev, |e| {
            matches!(e, Event::ChildSaOutboundSwitched { old_spi_out, new_spi_out, .. }
            if *old_spi_out == old.spi_out && *new_spi_out == new.spi_out)
        });
        let del = pos(
            ev,
            |e| matches!(e, Event::ChildSaDeleted { spi_in, reason: ChildDeleteReason::Rekeyed, .. } if *spi_in == old.spi_in),
        );
        assert!(est < sw && sw < del, "{s:?} order: {ev:?}");
    }
    let ca = children(&net.events_a);
    let cb = children(&net.events_b);
    assert_mirrored(&ca[1], &cb[1]);
    assert_eq!(
        net.a.child_sas(net.a_conn),
        vec![(ca[1].spi_in, ca[1].spi_out)]
    );
    assert_eq!(
        net.b.child_sas(net.b_conn),
        vec![(cb[1].spi_in, cb[1].spi_out)]
    );
}

#[test]
fn child_rekey_from_either_side_with_and_without_pfs() {
    for esp in [
        "aes128gcm16",
        "aes128gcm16-ecp256",
        "aes256-sha256-modp2048",
    ] {
        for who in [Side::A, Side::B] {
            let mut net = up(esp);
            let spi = children(net.events(who))[0].spi_in;
            let (now, c) = (net.now, net.conn(who));
            net.ep(who).rekey_child(now, c, spi).unwrap();
            net.pump();
            check_rekeyed(&net);
        }
    }
}

#[test]
fn ike_rekey_from_either_side() {
    for who in [Side::A, Side::B] {
        let mut net = up("aes128gcm16");
        let old = net.a.ike_spis(net.a_conn).unwrap();
        let (now, c) = (net.now, net.conn(who));
        net.ep(who).rekey_ike(now, c).unwrap();
        net.pump();
        let new = net.a.ike_spis(net.a_conn).unwrap();
        assert_ne!(old, new);
        assert_eq!(net.b.ike_spis(net.b_conn), Some(new));
        assert_eq!((net.a.ike_sa_count(), net.b.ike_sa_count()), (1, 1));
        for s in [Side::A, Side::B] {
            assert!(
                net.events(s).iter().any(|e| matches!(
                    e,
                    Event::IkeSaRekeyed { conn, old: o, new: n, algorithms }
                        if *conn == net.conn(s) && *o == old && *n == new
                            && Some(*algorithms) == net.a.ike_algorithms(net.a_conn)
                )),
                "{:?}",
                net.events(s)
            );
            assert!(!net
                .events(s)
                .iter()
                .any(|e| matches!(e, Event::IkeSaDown { .. } | Event::ChildSaDeleted { .. })));
        }
        // The Child SA moved and the new IKE SA works: rekey it through the new SA.
        let spi = children(&net.events_a)[0].spi_in;
        let now = net.now;
        net.a.rekey_child(now, net.a_conn, spi).unwrap();
        net.pump();
        check_rekeyed(&net);
    }
}

#[test]
fn child_rekey_collision_keeps_one_pair() {
    for _ in 0..8 {
        let mut net = up("aes128gcm16-ecp256");
        let now = net.now;
        let sa = children(&net.events_a)[0].spi_in;
        let sb = children(&net.events_b)[0].spi_in;
        net.a.rekey_child(now, net.a_conn, sa).unwrap();
        net.b.rekey_child(now, net.b_conn, sb).unwrap();
        net.pump();
        let ca = net.a.child_sas(net.a_conn);
        let cb = net.b.child_sas(net.b_conn);
        assert_eq!(ca.len(), 1, "A: {:?}", net.events_a);
        assert_eq!(cb.len(), 1, "B: {:?}", net.events_b);
        assert_eq!(ca[0], (cb[0].1, cb[0].0));
        assert_ne!(ca[0].0, sa);
        // Outbound of each side ends on the surviving SA.
        let last_switch = |ev: &[Event]| {
            ev.iter().rev().find_map(|e| match e {
                Event::ChildSaOutboundSwitched { new_spi_out, .. } => Some(*new_spi_out),
                _ => None,
            })
        };
        assert_eq!(
            last_switch(&net.events_a),
            Some(ca[0].1),
            "{:?}",
            net.events_a
        );
        assert_eq!(
            last_switch(&net.events_b),
            Some(cb[0].1),
            "{:?}",
            net.events_b
        );
        let est_a = children(&net.events_a);
        let est_b = children(&net.events_b);
        let sa_a = est_a.iter().find(|c| c.spi_in == ca[0].0).unwrap();
        let sa_b = est_b.iter().find(|c| c.spi_in == cb[0].0).unwrap();
        assert_mirrored(sa_a, sa_b);
    }
}

#[test]
fn ike_rekey_collision_keeps_one_sa() {
    for _ in 0..8 {
        let mut net = up("aes128gcm16");
        let now = net.now;
        net.a.rekey_ike(now, net.a_conn).unwrap();
        net.b.rekey_ike(now, net.b_conn).unwrap();
        net.pump();
        assert_eq!(
            (net.a.ike_sa_count(), net.b.ike_sa_count()),
            (1, 1),
            "A {:?}\nB {:?}",
            net.events_a,
            net.events_b
        );
        assert_eq!(net.a.ike_spis(net.a_conn), net.b.ike_spis(net.b_conn));
        assert_eq!(net.a.child_sas(net.a_conn).len(), 1);
        assert_eq!(net.b.child_sas(net.b_conn).len(), 1);
        // The survivor works.
        let now = net.now;
        net.b.check_liveness(now, net.b_conn).unwrap();
        net.pump();
        let spi = children(&net.events_a)[0].spi_in;
        net.a.rekey_child(now, net.a_conn, spi).unwrap();
        net.pump();
        check_rekeyed(&net);
    }
}

#[test]
fn lost_messages_are_retransmitted() {
    let (a, b) = pair("aes128gcm16-prfsha256-ecp256", "aes128gcm16");
    let mut net = Net::new(a, b);
    // Drop the first two datagrams each side sends.
    let mut counts = [0u32; 2];
    net.fate = Box::new(move |s, _| {
        let i = if s == Side::A { 0 } else { 1 };
        counts[i] += 1;
        if counts[i] <= 2 {
            Fate::Drop
        } else {
            Fate::Deliver
        }
    });
    net.initiate(Side::A);
    net.advance(Duration::from_secs(30));
    assert_eq!(ike_up(&net.events_a), 1, "{:?}", net.events_a);
    assert_eq!(ike_up(&net.events_b), 1);
    assert_mirrored(&children(&net.events_a)[0], &children(&net.events_b)[0]);
    assert!(net.a.stats(net.a_conn).unwrap().retransmits >= 2);
}

#[test]
fn duplicated_and_reordered_messages() {
    for fate in [Fate::Duplicate, Fate::Delay] {
        let (a, b) = pair("aes128gcm16-prfsha256-ecp256", "aes128gcm16");
        let mut net = Net::new(a, b);
        net.fate = Box::new(move |_, _| fate);
        net.initiate(Side::A);
        net.advance(Duration::from_secs(10));
        assert_eq!(ike_up(&net.events_a), 1, "{fate:?}");
        assert_eq!(ike_up(&net.events_b), 1, "{fate:?}");
        let spi = children(&net.events_b)[0].spi_in;
        let now = net.now;
        net.b.rekey_child(now, net.b_conn, spi).unwrap();
        net.advance(Duration::from_secs(10));
        check_rekeyed(&net);
    }
}

#[test]
fn dead_peer_detected() {
    let (mut a, b) = pair("aes128gcm16-prfsha256-ecp256", "aes128gcm16");
    a.dpd_delay = Some(Duration::from_secs(10));
    a.dpd_timeout = Duration::from_secs(30);
    let mut net = Net::new(a, b);
    net.initiate(Side::A);
    // Healthy: liveness checks get answers.
    net.advance(Duration::from_secs(60));
    assert!(!net
        .events_a
        .iter()
        .any(|e| matches!(e, Event::PeerDead { .. })));
    assert!(net.count_msgs(Side::A, |_| true) > 4);
    // B vanishes.
    net.fate = Box::new(|s, _| {
        if s == Side::B {
            Fate::Drop
        } else {
            Fate::Deliver
        }
    });
    let died = net.now;
    net.advance(Duration::from_secs(60));
    assert!(net.events_a.contains(&Event::PeerDead { conn: net.a_conn }));
    assert!(net.events_a.contains(&Event::IkeSaDown {
        conn: net.a_conn,
        reason: DownReason::Timeout
    }));
    assert!(net.events_a.iter().any(|e| matches!(
        e,
        Event::ChildSaDeleted {
            reason: ChildDeleteReason::IkeSaGone,
            ..
        }
    )));
    assert_eq!(net.a.ike_sa_count(), 0);
    let _ = died;
}

#[test]
fn initiator_gives_up() {
    let (a, b) = pair("aes128gcm16-prfsha256-ecp256", "aes128gcm16");
    let mut net = Net::new(a, b);
    net.fate = Box::new(|_, _| Fate::Drop);
    net.initiate(Side::A);
    net.advance(Duration::from_secs(600));
    assert_eq!(
        net.events_a,
        vec![Event::IkeSaDown {
            conn: net.a_conn,
            reason: DownReason::Timeout
        }]
    );
    // 1 + max_retries transmissions of IKE_SA_INIT.
    assert_eq!(net.log.len(), 8);
    assert_eq!(net.a.poll_timeout(), None);
}

#[test]
fn lifetimes_trigger_rekeys() {
    let (mut a, mut b) = pair("aes128gcm16-prfsha256-ecp256", "aes128gcm16");
    a.child_lifetime = Duration::from_secs(100);
    a.ike_lifetime = Duration::from_secs(300);
    a.rekey_margin = Duration::from_secs(10);
    b.child_lifetime = Duration::from_secs(1000);
    b.ike_lifetime = Duration::from_secs(3000);
    let mut net = Net::new(a, b);
    net.initiate(Side::A);
    net.advance(Duration::from_secs(89));
    assert_eq!(children(&net.events_a).len(), 1);
    net.advance(Duration::from_secs(2));
    check_rekeyed(&net);
    net.advance(Duration::from_secs(300));
    assert!(net
        .events_a
        .iter()
        .any(|e| matches!(e, Event::IkeSaRekeyed { .. })));
    assert!(!net
        .events_a
        .iter()
        .any(|e| matches!(e, Event::IkeSaDown { .. })));
    assert_eq!(net.a.child_sas(net.a_conn).len(), 1);
}

#[test]
fn rekey_fuzz_window() {
    let (a, _) = pair("aes128gcm16-prfsha256-ecp256", "aes128gcm16");
    let mut p = a;
    p.rekey_margin = Duration::from_secs(540);
    p.rekey_fuzz = 1.0;
    let life = Duration::from_secs(3600);
    assert_eq!(p.rekey_after(life, 0.0), Duration::from_secs(3060));
    assert_eq!(p.rekey_after(life, 1.0), Duration::from_secs(2520));
    assert_eq!(p.rekey_after(life, 0.5), Duration::from_secs(2790));
}

#[test]
fn delete_ike_and_child() {
    let mut net = up("aes128gcm16");
    let now = net.now;
    let spi = children(&net.events_b)[0].spi_in;
    net.b.delete_child(now, net.b_conn, spi).unwrap();
    net.pump();
    assert!(net.events_a.iter().any(|e| matches!(
        e,
        Event::ChildSaDeleted {
            reason: ChildDeleteReason::PeerDeleted,
            ..
        }
    )));
    assert!(net.events_b.iter().any(|e| matches!(
        e,
        Event::ChildSaDeleted {
            reason: ChildDeleteReason::LocalDelete,
            ..
        }
    )));
    assert!(net.a.child_sas(net.a_conn).is_empty() && net.b.child_sas(net.b_conn).is_empty());
    net.a.delete(now, net.a_conn).unwrap();
    net.pump();
    assert!(net.events_a.contains(&Event::IkeSaDown {
        conn: net.a_conn,
        reason: DownReason::LocalDelete
    }));
    assert!(net.events_b.contains(&Event::IkeSaDown {
        conn: net.b_conn,
        reason: DownReason::PeerDeleted
    }));
    assert_eq!(net.a.ike_sa_count() + net.b.ike_sa_count(), 0);
}

#[test]
fn initial_contact_replaces_stale_sa() {
    let mut net = up("aes128gcm16");
    let old_b = children(&net.events_b)[0].spi_in;
    // A restarts (forgets everything) and connects again.
    let (a, _) = pair("aes128gcm16-prfsha256-ecp256", "aes128gcm16");
    net.a = ike_lite::Endpoint::new(Default::default());
    net.a_conn = net.a.add_peer(a);
    net.events_a.clear();
    net.initiate(Side::A);
    assert_eq!(ike_up(&net.events_a), 1);
    assert!(net.events_b.contains(&Event::IkeSaDown {
        conn: net.b_conn,
        reason: DownReason::InitialContact
    }));
    assert!(net
        .events_b
        .iter()
        .any(|e| matches!(e, Event::ChildSaDeleted { spi_in, .. } if *spi_in == old_b)));
    assert_eq!(net.b.ike_sa_count(), 1);
    assert_mirrored(
        &children(&net.events_a)[0],
        children(&net.events_b).last().unwrap(),
    );
}
