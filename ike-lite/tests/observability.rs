//! What a driver can observe about its SAs: negotiated IKE algorithms,
//! exported IKE SA secrets (opt-in) and the scheduled rekey times.

mod net;
use ike_lite::crypto::sk_open;
use ike_lite::message::{Header, PayloadType, HEADER_LEN};
use ike_lite::proposal::{parse_ike_proposals, select_ike, IkeProposal};
use ike_lite::{Config, Event, IkeSaSecrets};
use net::*;
use std::time::Duration;

fn up_with(ike: &str, export: bool) -> Net {
    let (a, b) = pair(ike, "aes128gcm16");
    let cfg = Config {
        export_ike_keys: export,
        ..Config::default()
    };
    let mut net = Net::with_configs(cfg.clone(), a, cfg, b);
    net.initiate(Side::A);
    assert_eq!(ike_up(&net.events_a), 1, "{:?}", net.events_a);
    net
}

fn secrets(ev: &[Event]) -> Vec<IkeSaSecrets> {
    ev.iter()
        .filter_map(|e| match e {
            Event::IkeSaSecrets(s) => Some((**s).clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn negotiated_algorithms_in_events_query_and_name() {
    for (ike, name) in [
        (
            "aes128gcm16-prfsha256-modp2048",
            "aes128gcm16-prfsha256-modp2048",
        ),
        ("aes128-sha1-modp1024", "aes128-sha1-modp1024"),
        (
            "aes256-sha256-prfsha384-ecp384",
            "aes256-sha256-prfsha384-ecp384",
        ),
        (
            "aes256gcm16-prfsha512-x25519",
            "aes256gcm16-prfsha512-curve25519",
        ),
    ] {
        let net = up_with(ike, false);
        for s in [Side::A, Side::B] {
            let ep = if s == Side::A { &net.a } else { &net.b };
            let got = ep.ike_algorithms(net.conn(s)).unwrap();
            assert_eq!(got.name(), name);
            assert_eq!(got.to_string(), name);
            let in_event = net.events(s).iter().find_map(|e| match e {
                Event::IkeSaUp { algorithms, .. } => Some(*algorithms),
                _ => None,
            });
            assert_eq!(in_event, Some(got));
            // The name parses back to a proposal that selects the same choice.
            let back: Vec<IkeProposal> = parse_ike_proposals(&got.name()).unwrap();
            let wire = IkeProposal::choice_to_wire(&got, 1, &[]);
            assert_eq!(select_ike(&back, &[wire], Some(got.dh)), Some((1, got)));
        }
    }
}

/// Opens an SK message sent by `from` with the exported secrets.
fn opens_with(msg: &[u8], s: &IkeSaSecrets, from_initiator: bool) -> bool {
    let mut m = msg.strip_prefix(&[0u8; 4][..]).unwrap_or(msg).to_vec();
    let h = Header::parse(&m).unwrap();
    assert_eq!((h.spi_i, h.spi_r), (s.spi_i, s.spi_r));
    assert_eq!(h.next_payload, PayloadType::SK);
    let (e, a) = if from_initiator {
        (&s.sk_ei, &s.sk_ai)
    } else {
        (&s.sk_er, &s.sk_ar)
    };
    let c = s.algorithms.suite.cipher(e, a).unwrap();
    sk_open(c.as_ref(), &mut m, HEADER_LEN, 4).is_ok()
}

#[test]
fn ike_secrets_are_exported_only_when_enabled_and_decrypt_the_traffic() {
    let mut off = up_with("aes128gcm16-prfsha256-ecp256", false);
    assert!(secrets(&off.events_a).is_empty() && secrets(&off.events_b).is_empty());
    assert!(off.a.ike_sa_secrets(off.a_conn).is_none());
    let (now, c) = (off.now, off.a_conn);
    off.a.rekey_ike(now, c).unwrap();
    off.pump();
    assert!(secrets(&off.events_a).is_empty() && secrets(&off.events_b).is_empty());

    for ike in ["aes128gcm16-prfsha256-ecp256", "aes128-sha1-modp2048"] {
        let mut net = up_with(ike, true);
        let (sa, sb) = (secrets(&net.events_a), secrets(&net.events_b));
        assert_eq!((sa.len(), sb.len()), (1, 1));
        assert_eq!(sa[0].spi_i, sb[0].spi_i);
        assert_eq!(sa[0].sk_ei, sb[0].sk_ei);
        assert_eq!(sa[0].sk_ar, sb[0].sk_ar);
        assert_eq!(sa[0].conn, net.a_conn);
        assert_eq!(net.a.ike_sa_secrets(net.a_conn).as_ref(), Some(&sa[0]));
        let (ei, ai) = (sa[0].sk_ei.len(), sa[0].sk_ai.len());
        if ike.contains("gcm") {
            assert_eq!((ei, ai), (20, 0));
        } else {
            assert_eq!((ei, ai), (16, 20));
        }
        let dbg = format!("{:?}", sa[0]);
        assert!(dbg.contains("redacted"), "{dbg}");
        assert!(!dbg.contains(&hex::encode(&sa[0].sk_ei[..4])), "{dbg}");
        // IKE_AUTH request (from A, the initiator) and response decrypt.
        let auth: Vec<_> = net.log.iter().skip(2).take(2).collect();
        assert!(opens_with(&auth[0].1.payload, &sa[0], true));
        assert!(opens_with(&auth[1].1.payload, &sa[0], false));
        assert!(!opens_with(&auth[1].1.payload, &sa[0], true));

        // Rekey: the new SA's secrets come with IkeSaRekeyed.
        let (now, c) = (net.now, net.b_conn);
        net.b.rekey_ike(now, c).unwrap();
        net.pump();
        let (sa2, sb2) = (secrets(&net.events_a), secrets(&net.events_b));
        assert_eq!((sa2.len(), sb2.len()), (2, 2));
        let new = &sb2[1];
        assert_eq!(Some((new.spi_i, new.spi_r)), net.b.ike_spis(net.b_conn));
        assert_eq!(sa2[1], *new);
        assert_ne!(new.sk_ei, sa[0].sk_ei);
        let rekeyed = net
            .events_b
            .iter()
            .position(|e| matches!(e, Event::IkeSaRekeyed { .. }));
        let sec = net
            .events_b
            .iter()
            .rposition(|e| matches!(e, Event::IkeSaSecrets(_)));
        assert!(rekeyed.unwrap() < sec.unwrap());
        // Traffic on the new SA (B initiated it) decrypts with them.
        let start = net.log.len();
        let (now, c) = (net.now, net.b_conn);
        net.b.check_liveness(now, c).unwrap();
        net.pump();
        let dpd = &net.log[start];
        assert_eq!(dpd.0, Side::B);
        assert!(opens_with(&dpd.1.payload, new, true));
    }
}

#[test]
fn scheduled_rekey_times_are_exposed_and_honoured() {
    let (mut a, mut b) = pair("aes128gcm16-prfsha256-ecp256", "aes128gcm16");
    a.child_lifetime = Duration::from_secs(3600);
    a.ike_lifetime = Duration::from_secs(7200);
    a.rekey_margin = Duration::from_secs(540);
    a.rekey_fuzz = 1.0;
    // B rekeys late so that A's choice decides.
    b.child_lifetime = Duration::from_secs(3600);
    b.ike_lifetime = Duration::from_secs(7200);
    b.rekey_margin = Duration::from_secs(10);
    b.rekey_fuzz = 0.0;
    let mut net = Net::new(a, b);
    net.initiate(Side::A);
    let t0 = net.now;
    let spi_in = net.a.child_sas(net.a_conn)[0].0;
    let child_at = net.a.child_rekey_at(net.a_conn, spi_in).unwrap();
    let ike_at = net.a.ike_rekey_at(net.a_conn).unwrap();
    // lifetime - margin * (1 + r), r in [0, 1)
    let in_window = |at: std::time::Instant, life: u64| {
        let d = at - t0;
        d > Duration::from_secs(life - 1080) && d <= Duration::from_secs(life - 540)
    };
    assert!(in_window(child_at, 3600), "{:?}", child_at - t0);
    assert!(in_window(ike_at, 7200), "{:?}", ike_at - t0);
    // B without fuzz: exactly lifetime - margin.
    let b_spi = net.b.child_sas(net.b_conn)[0].0;
    assert_eq!(
        net.b.child_rekey_at(net.b_conn, b_spi),
        Some(t0 + Duration::from_secs(3590))
    );
    assert_eq!(
        net.b.ike_rekey_at(net.b_conn),
        Some(t0 + Duration::from_secs(7190))
    );
    assert_eq!(net.a.child_rekey_at(net.a_conn, spi_in ^ 1), None);

    net.advance(child_at - t0 - Duration::from_millis(1));
    assert_eq!(children(&net.events_a).len(), 1);
    net.advance(Duration::from_millis(2));
    let ch = children(&net.events_a);
    assert_eq!(ch.len(), 2, "no rekey at the announced time");
    assert_eq!(ch[1].rekey_of, Some(spi_in));
    // The new SA got its own schedule, counted from its installation.
    let new_after = net.a.child_rekey_at(net.a_conn, ch[1].spi_in).unwrap() - child_at;
    assert!(
        new_after > Duration::from_secs(3600 - 1080)
            && new_after <= Duration::from_secs(3600 - 540),
        "{new_after:?}"
    );
    assert_eq!(net.a.child_rekey_at(net.a_conn, spi_in), None);
}

/// A Child SA rekey with PFS carries a KE of the ESP proposal's group, not
/// the IKE SA's (the Libreswan bug the issue names): IKE on ECP-256 (19),
/// ESP on MODP-2048 (14). The CREATE_CHILD_SA request is decrypted with the
/// exported IKE keys and its KE payload inspected; exactly one request is
/// sent, so the group was right the first time (no INVALID_KE repair).
#[test]
fn child_rekey_ke_uses_the_esp_pfs_group() {
    use ike_lite::message::{parse_payloads, ExchangeType, Flags, Payload};
    let (a, b) = pair("aes128gcm16-prfsha256-ecp256", "aes256-sha256-modp2048");
    let cfg = Config {
        export_ike_keys: true,
        ..Config::default()
    };
    let mut net = Net::with_configs(cfg.clone(), a, cfg, b);
    net.initiate(Side::A);
    let keys = secrets(&net.events_a).remove(0);
    for who in [Side::A, Side::B] {
        let start = net.log.len();
        let spi = children(net.events(who)).last().unwrap().spi_in;
        let (now, c) = (net.now, net.conn(who));
        net.ep(who).rekey_child(now, c, spi).unwrap();
        net.pump();
        let requests: Vec<_> = net.log[start..]
            .iter()
            .filter(|(from, t)| {
                let m = t.payload.strip_prefix(&[0u8; 4][..]).unwrap_or(&t.payload);
                let h = Header::parse(m).unwrap();
                *from == who
                    && h.exchange == ExchangeType::CREATE_CHILD_SA
                    && !h.flags.contains(Flags::RESPONSE)
            })
            .collect();
        assert_eq!(
            requests.len(),
            1,
            "one CREATE_CHILD_SA request from {who:?}"
        );
        let t = &requests[0].1;
        let mut m = t
            .payload
            .strip_prefix(&[0u8; 4][..])
            .unwrap_or(&t.payload)
            .to_vec();
        let (e, i) = if who == Side::A {
            (&keys.sk_ei, &keys.sk_ai)
        } else {
            (&keys.sk_er, &keys.sk_ar)
        };
        let c = keys.algorithms.suite.cipher(e, i).unwrap();
        let range = sk_open(c.as_ref(), &mut m, HEADER_LEN, 4).unwrap();
        let first = PayloadType(m[HEADER_LEN]);
        let inner = parse_payloads(first, &m[range]).unwrap();
        let groups: Vec<u16> = inner
            .iter()
            .filter_map(|p| match p {
                Payload::Ke(k) => Some(k.group),
                _ => None,
            })
            .collect();
        assert_eq!(groups, vec![14], "KE group of the rekey from {who:?}");
    }
}
