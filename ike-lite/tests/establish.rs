//! IKE_SA_INIT + IKE_AUTH between two in-process endpoints.

mod net;
use ike_lite::crypto::DhGroup;
use ike_lite::message::{ExchangeType, NotifyType, Payload};
use ike_lite::{AuthFailure, DownReason, Event};
use ipsec_core::crypto::{EncrId, IntegId, Suite};
use net::*;
use std::str::FromStr;
use std::time::Duration;

fn establish(ike: &str, esp: &str, who: Side) -> Net {
    let (a, b) = pair(ike, esp);
    let mut net = Net::new(a, b);
    net.initiate(who);
    assert_eq!(ike_up(&net.events_a), 1, "A events: {:?}", net.events_a);
    assert_eq!(ike_up(&net.events_b), 1, "B events: {:?}", net.events_b);
    let ca = children(&net.events_a);
    let cb = children(&net.events_b);
    assert_eq!((ca.len(), cb.len()), (1, 1));
    assert_mirrored(&ca[0], &cb[0]);
    net
}

#[test]
fn every_proposal_class_both_roles() {
    let cases: &[(&str, &str, Suite)] = &[
        (
            "aes256gcm16-prfsha384-ecp384",
            "aes256gcm16",
            Suite {
                encr: EncrId::AES_GCM_16,
                encr_key_bits: 256,
                integ: IntegId::NONE,
            },
        ),
        (
            "aes128gcm16-prfsha256-curve25519",
            "aes128gcm16",
            Suite {
                encr: EncrId::AES_GCM_16,
                encr_key_bits: 128,
                integ: IntegId::NONE,
            },
        ),
        (
            "aes128-sha1-modp1024",
            "aes128-sha1",
            Suite {
                encr: EncrId::AES_CBC,
                encr_key_bits: 128,
                integ: IntegId::HMAC_SHA1_96,
            },
        ),
        (
            "aes256-sha2_256-modp2048",
            "aes256-sha2_256",
            Suite {
                encr: EncrId::AES_CBC,
                encr_key_bits: 256,
                integ: IntegId::HMAC_SHA2_256_128,
            },
        ),
        (
            "aes128-sha256-ecp256",
            "aes128-sha512",
            Suite {
                encr: EncrId::AES_CBC,
                encr_key_bits: 128,
                integ: IntegId::HMAC_SHA2_512_256,
            },
        ),
    ];
    for (ike, esp, suite) in cases {
        for who in [Side::A, Side::B] {
            let net = establish(ike, esp, who);
            assert_eq!(children(&net.events_a)[0].suite, *suite, "{ike} {esp}");
        }
    }
}

#[test]
fn default_proposals_negotiate_gcm() {
    let (mut a, mut b) = pair("aes128-sha1-modp1024", "aes128-sha1");
    a.ike_proposals = ike_lite::proposal::IkeProposal::defaults();
    b.ike_proposals = ike_lite::proposal::IkeProposal::defaults();
    a.esp_proposals = ike_lite::proposal::EspProposal::defaults();
    b.esp_proposals = ike_lite::proposal::EspProposal::defaults();
    let mut net = Net::new(a, b);
    net.initiate(Side::A);
    let c = &children(&net.events_a)[0];
    assert_eq!(
        c.suite,
        Suite {
            encr: EncrId::AES_GCM_16,
            encr_key_bits: 256,
            integ: IntegId::NONE
        }
    );
    assert!(!c.udp_encap);
    assert_eq!(c.ts_local, any_ts());
}

#[test]
fn wrong_psk_fails_authentication() {
    let (a, mut b) = pair("aes128gcm16-prfsha256-ecp256", "aes128gcm16");
    b.psk = ike_lite::Psk::new(&b"another-psk"[..]);
    let mut net = Net::new(a, b);
    net.initiate(Side::A);
    assert!(
        net.events_b.contains(&Event::AuthenticationFailed {
            conn: net.b_conn,
            reason: AuthFailure::BadAuth
        }),
        "{:?}",
        net.events_b
    );
    assert!(net.events_a.contains(&Event::AuthenticationFailed {
        conn: net.a_conn,
        reason: AuthFailure::RejectedByPeer
    }));
    assert!(net.events_a.contains(&Event::IkeSaDown {
        conn: net.a_conn,
        reason: DownReason::AuthFailed
    }));
    assert_eq!(ike_up(&net.events_a) + ike_up(&net.events_b), 0);
    assert_eq!(net.a.ike_sa_count() + net.b.ike_sa_count(), 0);
    assert_eq!(
        net.count_msgs(Side::B, |m| m.header.exchange == ExchangeType::IKE_AUTH),
        1
    );
}

#[test]
fn wrong_identity_fails_authentication() {
    let (mut a, b) = pair("aes128gcm16-prfsha256-ecp256", "aes128gcm16");
    a.local_id = ike_lite::Identity::Fqdn("mallory.example".into());
    let mut net = Net::new(a, b);
    net.initiate(Side::A);
    assert!(net.events_b.contains(&Event::AuthenticationFailed {
        conn: net.b_conn,
        reason: AuthFailure::UnknownIdentity
    }));
}

#[test]
fn no_common_proposal() {
    let (a, mut b) = pair("aes128-sha1-modp1024", "aes128-sha1");
    b.ike_proposals =
        ike_lite::proposal::parse_ike_proposals("aes256gcm16-prfsha384-ecp384").unwrap();
    let mut net = Net::new(a, b);
    net.initiate(Side::A);
    assert!(net.events_a.contains(&Event::IkeSaDown {
        conn: net.a_conn,
        reason: DownReason::Refused(NotifyType::NO_PROPOSAL_CHOSEN)
    }));
    assert_eq!(net.a.ike_sa_count() + net.b.ike_sa_count(), 0);
}

#[test]
fn no_common_esp_proposal_keeps_ike_sa() {
    let (a, mut b) = pair("aes128gcm16-prfsha256-ecp256", "aes128gcm16");
    b.esp_proposals = ike_lite::proposal::parse_esp_proposals("aes256-sha256").unwrap();
    let mut net = Net::new(a, b);
    net.initiate(Side::A);
    assert_eq!(ike_up(&net.events_a), 1);
    assert!(net.events_a.contains(&Event::ChildSaFailed {
        conn: net.a_conn,
        notify: NotifyType::NO_PROPOSAL_CHOSEN
    }));
    assert!(children(&net.events_a).is_empty());
}

#[test]
fn ts_unacceptable() {
    let (mut a, mut b) = pair("aes128gcm16-prfsha256-ecp256", "aes128gcm16");
    a.local_ts = vec![ike_lite::ts::TrafficSelector::from_str("10.1.0.0/16").unwrap()];
    b.remote_ts = vec![ike_lite::ts::TrafficSelector::from_str("10.2.0.0/16").unwrap()];
    let mut net = Net::new(a, b);
    net.initiate(Side::A);
    assert_eq!(ike_up(&net.events_a), 1);
    assert!(net.events_a.contains(&Event::ChildSaFailed {
        conn: net.a_conn,
        notify: NotifyType::TS_UNACCEPTABLE
    }));
    assert!(net.events_b.contains(&Event::ChildSaFailed {
        conn: net.b_conn,
        notify: NotifyType::TS_UNACCEPTABLE
    }));
}

#[test]
fn ts_narrowing() {
    let (mut a, mut b) = pair("aes128gcm16-prfsha256-ecp256", "aes128gcm16");
    // A proposes everything; B only allows 10.1.2.0/24 <-> 10.9.0.0/16.
    b.remote_ts = vec![ike_lite::ts::TrafficSelector::from_str("10.1.2.0/24").unwrap()];
    b.local_ts = vec![ike_lite::ts::TrafficSelector::from_str("10.9.0.0/16").unwrap()];
    a.local_ts = vec![ike_lite::ts::TrafficSelector::from_str("10.1.0.0/16").unwrap()];
    let mut net = Net::new(a, b);
    net.initiate(Side::A);
    let ca = &children(&net.events_a)[0];
    assert_eq!(
        ca.ts_local,
        vec![ike_lite::ts::TrafficSelector::from_str("10.1.2.0/24").unwrap()]
    );
    assert_eq!(
        ca.ts_remote,
        vec![ike_lite::ts::TrafficSelector::from_str("10.9.0.0/16").unwrap()]
    );
    assert_mirrored(ca, &children(&net.events_b)[0]);
}

#[test]
fn invalid_ke_retry_with_requested_group() {
    let (a, mut b) = pair("aes128gcm16-prfsha256-ecp256-curve25519", "aes128gcm16");
    b.ike_proposals =
        ike_lite::proposal::parse_ike_proposals("aes128gcm16-prfsha256-curve25519").unwrap();
    let mut net = Net::new(a, b);
    net.initiate(Side::A);
    assert_eq!(ike_up(&net.events_a), 1);
    assert_eq!(
        net.count_msgs(Side::B, |m| is_init_with_notify(
            m,
            NotifyType::INVALID_KE_PAYLOAD
        )),
        1
    );
    let ke_groups: Vec<u16> = net
        .log
        .iter()
        .filter(|(s, _)| *s == Side::A)
        .filter_map(|(_, t)| ike_lite::message::Message::parse(&t.payload).ok())
        .filter(|m| m.header.exchange == ExchangeType::IKE_SA_INIT)
        .filter_map(|m| {
            m.payloads.iter().find_map(|p| match p {
                Payload::Ke(k) => Some(k.group),
                _ => None,
            })
        })
        .collect();
    assert_eq!(ke_groups, vec![DhGroup::ECP_256.0, DhGroup::CURVE25519.0]);
}

#[test]
fn cookie_challenge() {
    let (a, b) = pair("aes128gcm16-prfsha256-ecp256", "aes128gcm16");
    let cb = ike_lite::Config {
        flood: ike_lite::FloodLimits {
            cookies: ike_lite::CookieMode::Always,
            ..Default::default()
        },
        ..Default::default()
    };
    let mut net = Net::with_configs(Default::default(), a, cb, b);
    net.initiate(Side::A);
    assert_eq!(ike_up(&net.events_a), 1);
    assert_eq!(
        net.count_msgs(Side::B, |m| is_init_with_notify(m, NotifyType::COOKIE)),
        1
    );
    assert_eq!(
        net.count_msgs(Side::A, |m| is_init_with_notify(m, NotifyType::COOKIE)),
        1
    );
}

#[test]
fn nat_detected_moves_to_4500_with_keepalives() {
    let (a, mut b) = pair("aes128gcm16-prfsha256-ecp256", "aes128gcm16");
    // The responder does not know the peer's public address.
    b.remote = addr("0.0.0.0:500");
    let mut net = Net::new(a, b);
    net.nat = true;
    net.initiate(Side::A);
    assert!(
        net.events_a.contains(&Event::NatDetected {
            conn: net.a_conn,
            local_behind_nat: true,
            remote_behind_nat: false
        }),
        "{:?}",
        net.events_a
    );
    assert!(net.events_b.contains(&Event::NatDetected {
        conn: net.b_conn,
        local_behind_nat: false,
        remote_behind_nat: true
    }));
    let ca = &children(&net.events_a)[0];
    let cb = &children(&net.events_b)[0];
    assert!(ca.udp_encap && cb.udp_encap);
    assert_eq!(ca.remote.port(), 4500);
    assert_eq!(cb.remote.ip(), NAT_IP.parse::<std::net::IpAddr>().unwrap());
    assert!(net
        .log
        .iter()
        .any(|(s, t)| *s == Side::A && t.non_esp_marker && t.src.port() == 4500));
    let before = net
        .log
        .iter()
        .filter(|(s, t)| *s == Side::A && t.payload == [0xff])
        .count();
    net.advance(Duration::from_secs(61));
    let after = net
        .log
        .iter()
        .filter(|(s, t)| *s == Side::A && t.payload == [0xff])
        .count();
    assert_eq!(after - before, 3);
    // B is not behind a NAT and sends none.
    assert_eq!(
        net.log
            .iter()
            .filter(|(s, t)| *s == Side::B && t.payload == [0xff])
            .count(),
        0
    );
}

#[test]
fn forced_encapsulation() {
    let (mut a, b) = pair("aes128gcm16-prfsha256-ecp256", "aes128gcm16");
    a.force_encap = true;
    let mut net = Net::new(a, b);
    net.initiate(Side::A);
    assert!(children(&net.events_a)[0].udp_encap);
    assert!(children(&net.events_b)[0].udp_encap);
}

fn skf_count(net: &Net, from: Side) -> usize {
    net.count_msgs(from, |m| {
        m.payloads.iter().any(|p| matches!(p, Payload::Fragment(_)))
    })
}

#[test]
fn fragmented_ike_auth_is_reassembled() {
    let (mut a, mut b) = pair("aes256-sha256-modp2048", "aes256-sha256");
    // Many selectors make IKE_AUTH big.
    let many: Vec<_> = (0..40)
        .map(|i| ike_lite::ts::TrafficSelector::from_str(&format!("10.{i}.0.0/16")).unwrap())
        .collect();
    a.local_ts = many.clone();
    b.remote_ts = many;
    let small = ike_lite::Config {
        fragment_size: 400,
        ..Default::default()
    };
    let mut net = Net::with_configs(small.clone(), a, small, b);
    // Lose the second fragment once: the whole message is retransmitted.
    let mut lost = false;
    net.fate = Box::new(move |_, t| {
        let m = ike_lite::message::Message::parse(&t.payload);
        let second = matches!(m, Ok(m) if m.payloads.iter().any(|p| matches!(p, Payload::Fragment(f) if f.number == 2)));
        if second && !lost {
            lost = true;
            Fate::Drop
        } else {
            Fate::Deliver
        }
    });
    net.initiate(Side::A);
    net.advance(Duration::from_secs(5));
    assert!(
        skf_count(&net, Side::A) >= 2 * 3,
        "A sent {} fragments",
        skf_count(&net, Side::A)
    );
    assert_eq!(ike_up(&net.events_a), 1);
    assert_eq!(ike_up(&net.events_b), 1);
    let ca = &children(&net.events_a)[0];
    assert_eq!(ca.ts_local.len(), 40);
    assert_mirrored(ca, &children(&net.events_b)[0]);
}

#[test]
fn unknown_critical_payload_in_sa_init() {
    let (a, b) = pair("aes128gcm16-prfsha256-ecp256", "aes128gcm16");
    let mut net = Net::new(a, b);
    let now = net.now;
    let conn = net.a_conn;
    net.a.initiate(now, conn).unwrap();
    let mut req = net.a.poll_transmit().unwrap().payload;
    // Append an unknown critical payload (type 222) after the last payload.
    let msg = ike_lite::message::Message::parse(&req).unwrap();
    let mut off = ike_lite::message::HEADER_LEN;
    for _ in 0..msg.payloads.len() - 1 {
        off += usize::from(u16::from_be_bytes([req[off + 2], req[off + 3]]));
    }
    req[off] = 222;
    req.extend_from_slice(&[0, 0x80, 0, 5, 0xaa]);
    let len = req.len() as u32;
    req[24..28].copy_from_slice(&len.to_be_bytes());
    let r = net.b.handle_datagram(now, addr(B_ADDR), addr(A_ADDR), &req);
    assert!(r.is_err());
    let resp = net.b.poll_transmit().expect("answered");
    let m = ike_lite::message::Message::parse(&resp.payload).unwrap();
    let n = m
        .notify(NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD)
        .expect("notify");
    assert_eq!(n.data, vec![222]);
    assert_eq!(net.b.ike_sa_count(), 0);
    // The same payload without the critical bit is skipped.
    let n = req.len();
    req[n - 4] = 0;
    net.b
        .handle_datagram(now, addr(B_ADDR), addr(A_ADDR), &req)
        .unwrap();
    assert_eq!(net.b.ike_sa_count(), 1);
}

#[test]
fn invalid_major_version_answered() {
    let (a, b) = pair("aes128gcm16-prfsha256-ecp256", "aes128gcm16");
    let mut net = Net::new(a, b);
    let now = net.now;
    let conn = net.a_conn;
    net.a.initiate(now, conn).unwrap();
    let mut req = net.a.poll_transmit().unwrap().payload;
    req[17] = 0x30;
    assert!(net
        .b
        .handle_datagram(now, addr(B_ADDR), addr(A_ADDR), &req)
        .is_err());
    let resp = net.b.poll_transmit().expect("answered");
    let m = ike_lite::message::Message::parse(&resp.payload).unwrap();
    assert!(m.notify(NotifyType::INVALID_MAJOR_VERSION).is_some());
}

#[test]
fn retransmitted_init_request_gets_cached_answer() {
    let (a, b) = pair("aes128gcm16-prfsha256-ecp256", "aes128gcm16");
    let mut net = Net::new(a, b);
    let now = net.now;
    let conn = net.a_conn;
    net.a.initiate(now, conn).unwrap();
    let req = net.a.poll_transmit().unwrap().payload;
    net.b
        .handle_datagram(now, addr(B_ADDR), addr(A_ADDR), &req)
        .unwrap();
    let r1 = net.b.poll_transmit().unwrap();
    net.b
        .handle_datagram(now, addr(B_ADDR), addr(A_ADDR), &req)
        .unwrap();
    let r2 = net.b.poll_transmit().unwrap();
    assert_eq!(r1, r2);
    assert_eq!(net.b.ike_sa_count(), 1);
}

#[test]
fn esn_negotiated() {
    let (a, mut b) = pair("aes128gcm16-prfsha256-ecp256", "aes128gcm16-esn");
    b.esp_proposals = ike_lite::proposal::parse_esp_proposals("aes128gcm16-noesn-esn").unwrap();
    let mut net = Net::new(a, b);
    net.initiate(Side::A);
    assert!(children(&net.events_a)[0].esn);
    assert!(children(&net.events_b)[0].esn);
}

#[test]
fn ipv6_peers_and_selectors() {
    let mut a = peer("[2001:db8::1]:500", "[2001:db8::2]:500", "a6", "k6-secret");
    let mut b = peer("[2001:db8::2]:500", "[2001:db8::1]:500", "b6", "k6-secret");
    a.local_id = ike_lite::Identity::Ipv6("2001:db8::1".parse().unwrap());
    b.remote_id = Some(ike_lite::Identity::Ipv6("2001:db8::1".parse().unwrap()));
    a.local_ts = vec![ike_lite::ts::TrafficSelector::from_str("2001:db8:a::/48").unwrap()];
    b.remote_ts = vec![ike_lite::ts::TrafficSelector::any_v6()];
    let mut net = Net::new(a, b);
    net.initiate(Side::A);
    let ca = &children(&net.events_a)[0];
    assert_eq!(
        ca.ts_local,
        vec![ike_lite::ts::TrafficSelector::from_str("2001:db8:a::/48").unwrap()]
    );
    assert_eq!(ca.ts_remote, vec![ike_lite::ts::TrafficSelector::any_v6()]);
    assert_mirrored(ca, &children(&net.events_b)[0]);
}

/// With seeded RNGs the whole handshake is reproducible: the same seed
/// gives the same datagrams (SPIs, nonces, KE values, encrypted IKE_AUTH)
/// and the same Child SA keys; another seed gives other bytes.
#[test]
fn seeded_randomness_makes_the_handshake_reproducible() {
    for group in ["x25519", "ecp256", "modp2048"] {
        let run = |seed: u64| {
            let ike = format!("aes128gcm16-prfsha256-{group}");
            let (a, b) = pair(&ike, "aes128gcm16");
            let mut net = Net::seeded(a, b, seed);
            net.initiate(Side::A);
            net.pump();
            let kids = children(&net.events_a);
            assert_eq!(kids.len(), 1, "{group}: {:?}", net.events_a);
            let wire: Vec<Vec<u8>> = net.log.iter().map(|(_, t)| t.payload.clone()).collect();
            (wire, kids[0].clone())
        };
        let (wire, child) = run(7);
        let (again, child_again) = run(7);
        assert_eq!(wire.len(), 4, "IKE_SA_INIT and IKE_AUTH, both ways");
        assert_eq!(wire[0], again[0], "{group}: first IKE_SA_INIT request");
        assert_eq!(wire, again, "{group}");
        assert_eq!(child, child_again, "{group}");
        let (other, other_child) = run(8);
        assert_ne!(wire[0], other[0], "{group}");
        assert_ne!(child.key_in, other_child.key_in, "{group}");
    }
}

/// A reload in ike-lite's terms: a retired connection refuses new IKE SAs
/// (and cannot be initiated); a replaced configuration is what the next
/// negotiation uses, while the established SA stays.
#[test]
fn retired_peer_refuses_and_replaced_peer_renegotiates() {
    let (a, b) = pair("aes128gcm16-prfsha256-ecp256", "aes128gcm16");
    let mut net = Net::new(a, b);
    net.initiate(Side::A);
    assert_eq!(ike_up(&net.events_a), 1);
    let cb = net.conn(Side::B);
    let spis = net.ep(Side::B).ike_spis(cb);
    // B's settings change (another ESP proposal): the IKE SA is untouched.
    let mut changed = net.ep(Side::B).peer(cb).unwrap().clone();
    changed.esp_proposals = pair("aes128gcm16-prfsha256-ecp256", "aes256gcm16")
        .1
        .esp_proposals;
    let old = net.ep(Side::B).replace_peer(cb, changed).unwrap();
    assert_eq!(old.esp_proposals.len(), 1);
    assert_eq!(net.ep(Side::B).ike_spis(cb), spis);
    // B retires the connection: A's next attempt is refused.
    net.ep(Side::B).retire_peer(cb).unwrap();
    let now = net.now;
    assert!(net.ep(Side::B).initiate(now, cb).is_err());
    let ca = net.conn(Side::A);
    net.ep(Side::A).initiate(now, ca).unwrap();
    net.pump();
    assert!(
        net.count_msgs(Side::B, |m| is_init_with_notify(
            m,
            NotifyType::NO_PROPOSAL_CHOSEN
        )) >= 1
    );
    assert_eq!(ike_up(&net.events_a), 1, "no second IKE SA");
    assert!(net
        .ep(Side::B)
        .replace_peer(
            ike_lite::ConnId(9),
            pair("aes128gcm16-prfsha256-ecp256", "aes128gcm16").0
        )
        .is_err());
}
