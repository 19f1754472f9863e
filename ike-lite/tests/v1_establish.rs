//! IKEv1 between two in-process endpoints on a virtual clock: main mode +
//! quick mode in both roles, with and without PFS, AES-GCM in phase 2,
//! retransmission, NAT-T, responder lifetime, quick-mode rekey
//! make-before-break, phase-1 rekey, DPD, DELETE, INITIAL-CONTACT, a wrong
//! PSK and a refused aggressive mode.

mod v1_net;

use ike_lite::v1::wire::{emit_plain, Exchange, Header, Kind};
use ike_lite::v1::{Error, OUTBOUND_SWITCH_DELAY};
use ike_lite::{AuthFailure, ChildDeleteReason, DownReason, Event};
use ipsec_core::datapath::Direction;
use std::time::Duration;
use v1_net::{addr, pair, Fate, Net, Side};

fn up(ike: &str, esp: &str) -> Net {
    let (a, b) = pair(ike, esp);
    let mut n = Net::new(a, b);
    n.a.initiate(n.now, n.a_conn).unwrap();
    n.run_for(Duration::from_secs(1));
    n
}

/// Both sides hold one Child SA whose directions mirror each other.
fn assert_mirrored(n: &Net) -> (u32, u32) {
    let a = Net::established(&n.events_a);
    let b = Net::established(&n.events_b);
    assert_eq!(
        (a.len(), b.len()),
        (1, 1),
        "A {:?}\nB {:?}",
        n.events_a,
        n.events_b
    );
    let (a, b) = (a[0], b[0]);
    assert_eq!((a.spi_in, a.spi_out), (b.spi_out, b.spi_in));
    assert_eq!(a.key_in, b.key_out);
    assert_eq!(a.key_out, b.key_in);
    assert_ne!(a.key_in, a.key_out);
    assert_eq!(a.suite, b.suite);
    assert_eq!(a.ts_local, b.ts_remote);
    assert_eq!(a.ts_local, vec!["10.1.0.0/16".parse().unwrap()]);
    for c in [a, b] {
        c.sa_params(Direction::Inbound).unwrap();
        c.sa_params(Direction::Outbound).unwrap();
    }
    (a.spi_in, b.spi_in)
}

#[test]
fn aws_generic_suite_with_pfs() {
    let n = up("aes128-sha1-modp1024", "aes128-sha1-modp1024");
    assert_mirrored(&n);
    for ev in [&n.events_a, &n.events_b] {
        let algs = ev.iter().find_map(|e| match e {
            Event::IkeSaUp { algorithms, .. } => Some(algorithms.name()),
            _ => None,
        });
        assert_eq!(algs.as_deref(), Some("aes128-sha1-modp1024"));
    }
    assert_eq!(
        n.a.ike_algorithms(n.a_conn).unwrap().name(),
        "aes128-sha1-modp1024"
    );
    assert_eq!(n.a.ike_spis(n.a_conn), n.b.ike_spis(n.b_conn));
    // 6 main mode + 3 quick mode messages.
    assert_eq!(
        n.log.len(),
        9,
        "{:?}",
        n.log.iter().map(|l| l.0).collect::<Vec<_>>()
    );
    assert!(n.errors.is_empty(), "{:?}", n.errors);
}

#[test]
fn sha2_without_pfs_and_gcm_phase2_with_ecp() {
    let n = up("aes256-sha256-modp2048", "aes256-sha256");
    assert_mirrored(&n);
    let n = up("aes256-sha512-ecp384", "aes128gcm16-ecp256");
    assert_mirrored(&n);
    assert_eq!(Net::established(&n.events_a)[0].suite.integ.0, 0);
    let n = up("aes128-sha384-modp2048", "aes256gcm16");
    assert_mirrored(&n);
}

#[test]
fn responder_initiates_too_with_fqdn_ids() {
    let (mut a, mut b) = pair("aes128-sha256-modp2048", "aes128-sha256-modp2048");
    a.local_id = ike_lite::Identity::Fqdn("a.example".into());
    b.remote_id = Some(a.local_id.clone());
    let mut n = Net::new(a, b);
    n.b.initiate(n.now, n.b_conn).unwrap();
    n.run_for(Duration::from_secs(1));
    assert_eq!(Net::established(&n.events_a).len(), 1);
    assert_eq!(Net::established(&n.events_b).len(), 1);
}

#[test]
fn wrong_psk_fails_authentication() {
    let (a, mut b) = pair("aes128-sha1-modp1024", "aes128-sha1");
    b.psk = ike_lite::Psk::new(&b"another"[..]);
    let mut n = Net::new(a, b);
    n.a.initiate(n.now, n.a_conn).unwrap();
    n.run_for(Duration::from_secs(120));
    assert!(n.events_b.contains(&Event::AuthenticationFailed {
        conn: n.b_conn,
        reason: AuthFailure::BadAuth
    }));
    assert!(Net::established(&n.events_a).is_empty());
    assert!(Net::established(&n.events_b).is_empty());
    assert!(n.events_a.contains(&Event::IkeSaDown {
        conn: n.a_conn,
        reason: DownReason::Timeout
    }));
    assert_eq!((n.a.ike_sa_count(), n.b.ike_sa_count()), (0, 0));
}

#[test]
fn aggressive_mode_is_refused() {
    let (a, b) = pair("aes128-sha1-modp1024", "aes128-sha1");
    let mut n = Net::new(a, b);
    let h = Header {
        cookie_i: 7,
        cookie_r: 0,
        next: Kind::NONE,
        exchange: Exchange::AGGRESSIVE,
        flags: 0,
        message_id: 0,
        length: 0,
    };
    let msg = emit_plain(h, &[(Kind::SA, vec![0; 8]), (Kind::KE, vec![1; 128])]);
    let r =
        n.b.handle_datagram(n.now, addr("198.51.100.2:500"), addr("192.0.2.1:500"), &msg);
    assert_eq!(r, Err(Error::AggressiveModeRefused));
    assert!(n.b.poll_transmit().is_none());
    assert_eq!(n.b.ike_sa_count(), 0);
}

#[test]
fn lost_and_duplicated_messages_are_recovered() {
    for victim in 0..9 {
        let (a, b) = pair("aes128-sha1-modp1024", "aes128-sha1-modp1024");
        let mut n = Net::new(a, b);
        let mut seen = 0;
        n.fate = Box::new(move |_, _| {
            seen += 1;
            match seen - 1 {
                s if s == victim => Fate::Drop,
                s if s == victim + 1 => Fate::Duplicate,
                _ => Fate::Deliver,
            }
        });
        n.a.initiate(n.now, n.a_conn).unwrap();
        n.run_for(Duration::from_secs(30));
        assert!(n.errors.len() <= 2, "victim {victim}: {:?}", n.errors);
        assert_mirrored(&n);
    }
}

#[test]
fn nat_traversal_floats_to_4500() {
    let (a, mut b) = pair("aes128-sha1-modp1024", "aes128-sha1");
    b.remote = addr("0.0.0.0:500");
    b.remote_id = None;
    let mut n = Net::new(a, b);
    n.nat = true;
    n.a.initiate(n.now, n.a_conn).unwrap();
    n.run_for(Duration::from_secs(1));
    assert_mirrored(&n);
    let a = Net::established(&n.events_a)[0];
    let b = Net::established(&n.events_b)[0];
    assert!(a.udp_encap && b.udp_encap);
    assert_eq!(a.remote.port(), 4500);
    assert_eq!(b.remote, addr("203.0.113.7:5500"));
    assert!(n.events_a.iter().any(|e| matches!(
        e,
        Event::NatDetected {
            local_behind_nat: true,
            ..
        }
    )));
    // Messages 5, 6 and quick mode go over the NAT-T port with the marker.
    assert!(n.log[4..]
        .iter()
        .all(|(_, t)| t.non_esp_marker && t.payload[..4] == [0; 4]));
    // A, behind the NAT, keeps its mapping open (RFC 3948 keepalives).
    n.run_for(Duration::from_secs(65));
    let keepalives = |side| {
        n.log
            .iter()
            .filter(|(s, t)| *s == side && t.payload == [0xff] && t.src.port() == 4500)
            .count()
    };
    assert!(keepalives(Side::A) >= 2, "{:?}", n.log.len());
    assert_eq!(keepalives(Side::B), 0);
}

#[test]
fn responder_lifetime_is_honoured() {
    let (mut a, mut b) = pair("aes128-sha1-modp1024", "aes128-sha1");
    a.child_lifetime = Duration::from_secs(3600);
    b.child_lifetime = Duration::from_secs(1200);
    let mut n = Net::new(a, b);
    n.a.initiate(n.now, n.a_conn).unwrap();
    n.run_for(Duration::from_secs(1));
    assert_mirrored(&n);
    assert_eq!(
        Net::established(&n.events_a)[0].lifetime,
        Duration::from_secs(1200)
    );
    assert_eq!(
        Net::established(&n.events_b)[0].lifetime,
        Duration::from_secs(1200)
    );
    let spi = Net::established(&n.events_a)[0].spi_in;
    let at = n.a.child_rekey_at(n.a_conn, spi).unwrap();
    assert!(at - n.now < Duration::from_secs(1200));
}

#[test]
fn quick_mode_rekey_is_make_before_break() {
    let mut n = up("aes128-sha1-modp1024", "aes128-sha1-modp1024");
    let (a_old, b_old) = assert_mirrored(&n);
    n.a.rekey_child(n.now, n.a_conn, a_old).unwrap();
    n.run_for(Duration::from_millis(10));
    let a_new = Net::established(&n.events_a)[1].clone();
    let b_new = Net::established(&n.events_b)[1].clone();
    assert_eq!((a_new.rekey_of, b_new.rekey_of), (Some(a_old), Some(b_old)));
    assert_eq!((a_new.spi_out, b_new.spi_out), (b_new.spi_in, a_new.spi_in));
    // B switches at once (A already accepts the new SA); A a moment later.
    assert!(n.events_b.contains(&Event::ChildSaOutboundSwitched {
        conn: n.b_conn,
        old_spi_out: a_old,
        new_spi_out: a_new.spi_in
    }));
    let switched = |e: &Event| matches!(e, Event::ChildSaOutboundSwitched { .. });
    assert_eq!(Net::count(&n.events_a, switched), 0);
    let deleted = |e: &Event| matches!(e, Event::ChildSaDeleted { .. });
    assert_eq!(
        Net::count(&n.events_a, deleted) + Net::count(&n.events_b, deleted),
        0
    );
    n.run_for(OUTBOUND_SWITCH_DELAY);
    assert_eq!(Net::count(&n.events_a, switched), 1);
    for (ev, conn, old) in [
        (&n.events_a, n.a_conn, a_old),
        (&n.events_b, n.b_conn, b_old),
    ] {
        let del: Vec<_> = ev.iter().filter(|e| deleted(e)).collect();
        assert_eq!(del.len(), 1, "{ev:?}");
        assert!(
            matches!(del[0], Event::ChildSaDeleted { conn: c, spi_in, reason: ChildDeleteReason::Rekeyed, .. } if *c == conn && *spi_in == old)
        );
    }
    assert_eq!(n.a.child_sas(n.a_conn), vec![(a_new.spi_in, a_new.spi_out)]);
    assert_eq!(n.b.child_sas(n.b_conn), vec![(b_new.spi_in, b_new.spi_out)]);
}

#[test]
fn child_rekeys_on_its_own_before_expiry() {
    let (mut a, b) = pair("aes128-sha1-modp1024", "aes128-sha1");
    a.child_lifetime = Duration::from_secs(600);
    a.rekey_margin = Duration::from_secs(60);
    let mut n = Net::new(a, b);
    n.a.initiate(n.now, n.a_conn).unwrap();
    n.run_for(Duration::from_secs(2000));
    // Rekeyed at 540 s, 1080 s, 1620 s; never a gap.
    assert_eq!(Net::established(&n.events_a).len(), 4);
    assert_eq!(n.a.child_sas(n.a_conn).len(), 1);
    assert!(!n.events_a.iter().chain(&n.events_b).any(|e| matches!(
        e,
        Event::ChildSaDeleted {
            reason: ChildDeleteReason::Expired,
            ..
        }
    )));
}

#[test]
fn phase1_rekey_keeps_the_ipsec_sas() {
    let mut n = up("aes128-sha1-modp1024", "aes128-sha1-modp1024");
    let children = n.a.child_sas(n.a_conn);
    let old = n.a.ike_spis(n.a_conn).unwrap();
    n.a.rekey_ike(n.now, n.a_conn).unwrap();
    n.run_for(Duration::from_secs(1));
    let new = n.a.ike_spis(n.a_conn).unwrap();
    assert_ne!(old, new);
    assert_eq!(n.b.ike_spis(n.b_conn), Some(new));
    for ev in [&n.events_a, &n.events_b] {
        assert_eq!(
            Net::count(ev, |e| matches!(e, Event::IkeSaRekeyed { .. })),
            1,
            "{ev:?}"
        );
        assert_eq!(
            Net::count(ev, |e| matches!(
                e,
                Event::IkeSaDown { .. } | Event::ChildSaDeleted { .. }
            )),
            0,
            "{ev:?}"
        );
    }
    assert_eq!(n.a.child_sas(n.a_conn), children);
    assert_eq!((n.a.ike_sa_count(), n.b.ike_sa_count()), (1, 1));
    // The moved SAs still rekey over the new ISAKMP SA.
    n.a.rekey_child(n.now, n.a_conn, children[0].0).unwrap();
    n.run_for(Duration::from_secs(2));
    assert_eq!(Net::established(&n.events_b).len(), 2);
    assert!(n.errors.is_empty(), "{:?}", n.errors);
}

#[test]
fn dpd_keeps_a_live_peer_and_finds_a_dead_one() {
    let (mut a, b) = pair("aes128-sha1-modp1024", "aes128-sha1");
    a.dpd_delay = Some(Duration::from_secs(10));
    a.dpd_timeout = Duration::from_secs(30);
    let mut n = Net::new(a, b);
    n.a.initiate(n.now, n.a_conn).unwrap();
    n.run_for(Duration::from_secs(35));
    let dead = |e: &Event| matches!(e, Event::PeerDead { .. });
    assert_eq!(Net::count(&n.events_a, dead), 0);
    let before = n.log.len();
    assert!(before >= 9 + 6, "R-U-THERE / ACK pairs: {}", n.log.len());
    n.fate = Box::new(|_, _| Fate::Drop);
    n.run_for(Duration::from_secs(45));
    assert_eq!(Net::count(&n.events_a, dead), 1);
    assert!(n.events_a.contains(&Event::IkeSaDown {
        conn: n.a_conn,
        reason: DownReason::Timeout
    }));
    assert!(n.events_a.iter().any(|e| matches!(
        e,
        Event::ChildSaDeleted {
            reason: ChildDeleteReason::IkeSaGone,
            ..
        }
    )));
    assert_eq!(n.a.ike_sa_count(), 0);
}

#[test]
fn delete_reaches_the_peer() {
    let mut n = up("aes128-sha1-modp1024", "aes128-sha1");
    let (_, b_in) = assert_mirrored(&n);
    n.a.delete(n.now, n.a_conn).unwrap();
    n.run_for(Duration::from_secs(1));
    assert!(n.events_b.contains(&Event::ChildSaDeleted {
        conn: n.b_conn,
        spi_in: b_in,
        spi_out: Net::established(&n.events_b)[0].spi_out,
        reason: ChildDeleteReason::PeerDeleted
    }));
    assert!(n.events_b.contains(&Event::IkeSaDown {
        conn: n.b_conn,
        reason: DownReason::PeerDeleted
    }));
    assert!(n.events_a.contains(&Event::IkeSaDown {
        conn: n.a_conn,
        reason: DownReason::LocalDelete
    }));
    assert_eq!((n.a.ike_sa_count(), n.b.ike_sa_count()), (0, 0));
}

#[test]
fn delete_child_only() {
    let mut n = up("aes128-sha1-modp1024", "aes128-sha1");
    let (a_in, _) = assert_mirrored(&n);
    n.a.delete_child(n.now, n.a_conn, a_in).unwrap();
    n.run_for(Duration::from_secs(1));
    assert!(n.b.child_sas(n.b_conn).is_empty());
    assert!(n.b.ike_spis(n.b_conn).is_some());
}

#[test]
fn initial_contact_replaces_stale_sas() {
    let (a, b) = pair("aes128-sha1-modp1024", "aes128-sha1");
    let mut n = Net::new(a.clone(), b);
    n.a.initiate(n.now, n.a_conn).unwrap();
    n.run_for(Duration::from_secs(1));
    // A restarts without telling B.
    n.a =
        ike_lite::v1::Endpoint::with_rng(ike_lite::Config::default(), Box::new(v1_net::TestRng(9)));
    n.a_conn = n.a.add_peer(a);
    n.a.initiate(n.now, n.a_conn).unwrap();
    n.run_for(Duration::from_secs(1));
    assert!(n.events_b.contains(&Event::IkeSaDown {
        conn: n.b_conn,
        reason: DownReason::InitialContact
    }));
    assert_eq!(n.b.ike_sa_count(), 1);
    assert_eq!(Net::established(&n.events_b).len(), 2);
}

/// Replays a side's events: (installed inbound SPIs, current outbound SPI).
fn datapath(events: &[Event]) -> (Vec<u32>, Option<u32>) {
    let (mut inbound, mut out) = (Vec::new(), None);
    for e in events {
        match e {
            Event::ChildSaEstablished(c) => {
                inbound.push(c.spi_in);
                if c.rekey_of.is_none() || out.is_none() {
                    out = Some(c.spi_out);
                }
            }
            Event::ChildSaOutboundSwitched {
                old_spi_out,
                new_spi_out,
                ..
            } if out == Some(*old_spi_out) => out = Some(*new_spi_out),
            Event::ChildSaDeleted {
                spi_in, spi_out, ..
            } => {
                inbound.retain(|s| s != spi_in);
                if out == Some(*spi_out) {
                    out = None;
                }
            }
            _ => {}
        }
    }
    (inbound, out)
}

#[test]
fn both_sides_rekey_at_once() {
    let mut n = up("aes128-sha1-modp1024", "aes128-sha1-modp1024");
    let (a_old, b_old) = assert_mirrored(&n);
    n.a.rekey_child(n.now, n.a_conn, a_old).unwrap();
    n.b.rekey_child(n.now, n.b_conn, b_old).unwrap();
    for _ in 0..40 {
        n.run_for(Duration::from_millis(100));
        let (a_in, a_out) = datapath(&n.events_a);
        let (b_in, b_out) = datapath(&n.events_b);
        // Whatever each side sends on, the other can decrypt.
        assert!(
            a_out.is_some_and(|s| b_in.contains(&s)),
            "A {:?}\nB {:?}",
            n.events_a,
            n.events_b
        );
        assert!(
            b_out.is_some_and(|s| a_in.contains(&s)),
            "A {:?}\nB {:?}",
            n.events_a,
            n.events_b
        );
    }
    // The old pair is gone on both sides; what is left mirrors.
    let (a_in, _) = datapath(&n.events_a);
    let (b_in, _) = datapath(&n.events_b);
    assert!(!a_in.contains(&a_old) && !b_in.contains(&b_old));
    let a_sas = n.a.child_sas(n.a_conn);
    let b_sas = n.b.child_sas(n.b_conn);
    assert!(!a_sas.is_empty() && a_sas.len() <= 2, "{a_sas:?}");
    for (i, o) in &a_sas {
        assert!(b_sas.contains(&(*o, *i)), "{a_sas:x?} {b_sas:x?}");
    }
}

#[test]
fn replayed_quick_mode_does_not_kill_the_isakmp_sa() {
    let mut n = up("aes128-sha1-modp1024", "aes128-sha1-modp1024");
    assert_mirrored(&n);
    // Someone replays A's quick mode message 1 after it was forgotten.
    let qm1 = n.log[6].1.clone();
    n.run_for(Duration::from_secs(60));
    n.b.handle_datagram(n.now, qm1.dst, qm1.src, &qm1.payload)
        .unwrap();
    // B answers, but A never confirms the replay (drop B's answers).
    n.fate = Box::new(|side, _| {
        if side == Side::B {
            Fate::Drop
        } else {
            Fate::Deliver
        }
    });
    n.run_for(Duration::from_secs(120));
    assert!(
        !n.events_b
            .iter()
            .any(|e| matches!(e, Event::PeerDead { .. } | Event::IkeSaDown { .. })),
        "{:?}",
        n.events_b
    );
    assert!(n.b.ike_spis(n.b_conn).is_some());
    assert_eq!(n.b.child_sas(n.b_conn).len(), 1);
}

#[test]
fn the_responder_rekeys_when_the_initiator_does_not() {
    let (mut a, mut b) = pair("aes128-sha1-modp1024", "aes128-sha1");
    // A would rekey only when everything expires; B keeps things alive.
    a.rekey_margin = Duration::ZERO;
    for p in [&mut a, &mut b] {
        p.ike_lifetime = Duration::from_secs(1000);
        p.child_lifetime = Duration::from_secs(600);
    }
    let mut n = Net::new(a, b);
    n.a.initiate(n.now, n.a_conn).unwrap();
    n.run_for(Duration::from_secs(1500));
    let gone = |e: &Event| {
        matches!(
            e,
            Event::IkeSaDown { .. }
                | Event::ChildSaDeleted {
                    reason: ChildDeleteReason::Expired | ChildDeleteReason::IkeSaGone,
                    ..
                }
        )
    };
    assert_eq!(
        Net::count(&n.events_a, gone) + Net::count(&n.events_b, gone),
        0,
        "{:?}",
        n.events_b
    );
    assert!(Net::count(&n.events_b, |e| matches!(e, Event::IkeSaRekeyed { .. })) >= 1);
    assert!(Net::established(&n.events_b).len() >= 3);
    assert!(n.a.child_sas(n.a_conn).len() <= 2);
}

#[test]
fn no_proposal_chosen_fails_fast() {
    let (a, mut b) = pair("aes128-sha1-modp1024", "aes128-sha1");
    b.ike_proposals = ike_lite::proposal::parse_ike_proposals("aes256-sha512-ecp384").unwrap();
    let mut n = Net::new(a, b);
    n.a.initiate(n.now, n.a_conn).unwrap();
    n.run_for(Duration::from_millis(100));
    assert_eq!(
        n.events_a,
        vec![Event::IkeSaDown {
            conn: n.a_conn,
            reason: DownReason::Refused(ike_lite::message::NotifyType::NO_PROPOSAL_CHOSEN)
        }]
    );
    assert_eq!((n.a.ike_sa_count(), n.b.ike_sa_count()), (0, 0));
    assert_eq!(n.log.len(), 2, "message 1 and the refusal");
}

#[test]
fn encrypted_message_without_payloads_is_refused() {
    let mut n = up("aes128-sha1-modp1024", "aes128-sha1");
    let (ci, cr) = n.b.ike_spis(n.b_conn).unwrap();
    for exchange in [Exchange::QUICK, Exchange::INFORMATIONAL, Exchange::MAIN] {
        let mut msg = Vec::new();
        Header {
            cookie_i: ci,
            cookie_r: cr,
            next: Kind::NONE,
            exchange,
            flags: ike_lite::v1::wire::FLAG_ENCRYPTED,
            message_id: 0x0102_0304,
            length: 28 + 16,
        }
        .emit(&mut msg);
        msg.extend_from_slice(&[0; 16]);
        let r =
            n.b.handle_datagram(n.now, addr("198.51.100.2:500"), addr("192.0.2.1:500"), &msg);
        assert!(r.is_err(), "{exchange:?}");
    }
    n.run_for(Duration::from_secs(1));
    assert!(n.b.ike_spis(n.b_conn).is_some());
}

#[test]
fn isakmp_keys_exported_only_when_asked() {
    let secrets = |ev: &[Event]| -> Vec<ike_lite::v1::IsakmpSaSecrets> {
        ev.iter()
            .filter_map(|e| match e {
                Event::IsakmpSaSecrets(s) => Some((**s).clone()),
                _ => None,
            })
            .collect()
    };
    let n = up("aes256-sha1-modp2048", "aes128-sha1");
    assert!(secrets(&n.events_a).is_empty() && secrets(&n.events_b).is_empty());
    let (a, b) = pair("aes256-sha1-modp2048", "aes128-sha1");
    let config = ike_lite::Config {
        export_ike_keys: true,
        ..Default::default()
    };
    let mut n = Net::with_config(a, b, config);
    n.a.initiate(n.now, n.a_conn).unwrap();
    n.run_for(Duration::from_secs(1));
    let (sa, sb) = (secrets(&n.events_a), secrets(&n.events_b));
    assert_eq!((sa.len(), sb.len()), (1, 1));
    assert_eq!(sa[0].enc_key, sb[0].enc_key);
    assert_eq!(sa[0].enc_key.len(), 32, "AES-256 Ka, expanded from SHA-1");
    assert_eq!(
        (sa[0].cookie_i, sa[0].cookie_r),
        n.a.ike_spis(n.a_conn).unwrap()
    );
    assert!(format!("{:?}", sa[0]).contains("<32 bytes redacted>"));
}

#[test]
fn reload_replaces_and_retires_connections() {
    let mut n = up("aes128-sha1-modp1024", "aes128-sha1");
    assert_mirrored(&n);
    // A new lifetime applies to the next IPsec SA.
    let mut b2 = n.b.peer(n.b_conn).unwrap().clone();
    b2.child_lifetime = Duration::from_secs(900);
    let old = n.b.replace_peer(n.b_conn, b2).unwrap();
    assert_eq!(old.child_lifetime, Duration::from_secs(8 * 3600));
    let spi = n.a.child_sas(n.a_conn)[0].0;
    n.a.rekey_child(n.now, n.a_conn, spi).unwrap();
    n.run_for(Duration::from_secs(2));
    assert_eq!(
        Net::established(&n.events_a)[1].lifetime,
        Duration::from_secs(900)
    );
    // Retired: the SAs live on, but nothing new is negotiated.
    n.b.retire_peer(n.b_conn).unwrap();
    assert!(n.b.initiate(n.now, n.b_conn).is_err());
    let spi = n.a.child_sas(n.a_conn)[0].0;
    n.a.rekey_child(n.now, n.a_conn, spi).unwrap();
    n.run_for(Duration::from_secs(2));
    assert_eq!(Net::established(&n.events_b).len(), 2);
    assert!(n.b.ike_spis(n.b_conn).is_some());
    assert_eq!(
        n.b.retire_peer(ike_lite::ConnId(9)),
        Err(ike_lite::ApiError::UnknownConn)
    );
}
