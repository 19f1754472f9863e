//! The `DataPath` facade driven like a TUN/UDP IO loop would drive it: two
//! gateways, policies, ACQUIRE, bypass/discard, make-before-break rekey,
//! lifetimes with a virtual clock, UDP/4500 classification and batches.

mod common;

use std::time::{Duration, Instant};

use ipsec_core::buf::{PacketBuf, RECOMMENDED_HEADROOM, RECOMMENDED_TAILROOM};
use ipsec_core::crypto::Suite;
use ipsec_core::datapath::{
    DataPath, DataPathConfig, Direction, Event, InboundAction, OutboundAction,
};
use ipsec_core::sa::{DropReason, Expiry, IpVersion, Lifetime, Limits, SaParams, UdpEncap};
use ipsec_core::selector::TrafficSelector;
use ipsec_core::spd::{Action, Policy, PolicyId};

const H: usize = RECOMMENDED_HEADROOM;

fn buf(packet: &[u8]) -> PacketBuf {
    let mut b = PacketBuf::with_capacity(H, 9000, RECOMMENDED_TAILROOM);
    b.load(H, packet).unwrap();
    b
}

fn net(s: &str, l: u8) -> TrafficSelector {
    TrafficSelector::from_prefix(s.parse().unwrap(), l).unwrap()
}

/// Gateway A protects 10.1/16 <-> 10.2/16; B is its mirror.
fn gateways(now: Instant, suite: Suite) -> (DataPath, DataPath) {
    let mut a = DataPath::new(DataPathConfig::default());
    let mut b = DataPath::new(DataPathConfig::default());
    let pol = |local: &str, remote: &str| Policy {
        id: PolicyId(1),
        priority: 10,
        local: net(local, 16),
        remote: net(remote, 16),
        action: Action::Protect,
    };
    a.add_policy(pol("10.1.0.0", "10.2.0.0")).unwrap();
    b.add_policy(pol("10.2.0.0", "10.1.0.0")).unwrap();
    install(&mut a, &mut b, now, suite, 0x0a0a_0001, 0x0b0b_0001);
    (a, b)
}

/// Installs a Child SA pair: `spi_ab` carries A->B, `spi_ba` B->A.
fn install(
    a: &mut DataPath,
    b: &mut DataPath,
    now: Instant,
    suite: Suite,
    spi_ab: u32,
    spi_ba: u32,
) {
    let mk = |spi: u32, local: &str, remote: &str| {
        let mut p = common::params(suite, spi, true, 1024);
        p.local_ts = vec![net(local, 16)];
        p.remote_ts = vec![net(remote, 16)];
        p.udp_encap = Some(UdpEncap {
            local_port: 4500,
            remote_port: 4500,
        });
        p
    };
    // Make before break: inbound first on both sides, then outbound.
    b.install_inbound(&mk(spi_ab, "10.2.0.0", "10.1.0.0"), now)
        .unwrap();
    a.install_inbound(&mk(spi_ba, "10.1.0.0", "10.2.0.0"), now)
        .unwrap();
    a.install_outbound(PolicyId(1), &mk(spi_ab, "10.1.0.0", "10.2.0.0"), now)
        .unwrap();
    b.install_outbound(PolicyId(1), &mk(spi_ba, "10.2.0.0", "10.1.0.0"), now)
        .unwrap();
}

fn a_to_b(n: usize) -> Vec<u8> {
    common::ipv4_packet(
        n,
        "10.1.0.5".parse().unwrap(),
        "10.2.0.7".parse().unwrap(),
        9,
    )
}

#[test]
fn two_gateways_exchange_packets() {
    let now = Instant::now();
    for suite in Suite::ALL {
        let (a, b) = gateways(now, suite);
        let pkt = a_to_b(300);
        let mut bf = buf(&pkt);
        match a.process_outbound(now, &mut bf) {
            OutboundAction::Encapsulated {
                spi,
                tunnel,
                udp_encap,
            } => {
                assert_eq!(spi, 0x0a0a_0001);
                assert_eq!(tunnel, common::tunnel(false));
                assert_eq!(udp_encap.unwrap().remote_port, 4500);
            }
            other => panic!("{other:?}"),
        }
        // B receives it as a UDP/4500 payload.
        assert_eq!(
            b.process_inbound_udp(now, &mut bf),
            InboundAction::Inner {
                spi: 0x0a0a_0001,
                version: IpVersion::V4
            }
        );
        assert_eq!(bf.data(), &pkt[..]);
        // Replies go back the other way as raw ESP.
        let back = common::ipv4_packet(
            80,
            "10.2.0.7".parse().unwrap(),
            "10.1.0.5".parse().unwrap(),
            1,
        );
        let mut bf = buf(&back);
        assert!(matches!(
            b.process_outbound(now, &mut bf),
            OutboundAction::Encapsulated { .. }
        ));
        assert!(matches!(
            a.process_inbound_esp(now, &mut bf),
            InboundAction::Inner { .. }
        ));
        assert_eq!(bf.data(), &back[..]);
        assert_eq!(a.outbound_stats().packets, 1);
        assert_eq!(b.inbound_stats().bytes, 300);
        assert!(a.poll_event().is_none());
    }
}

#[test]
fn udp_4500_classification() {
    let now = Instant::now();
    let (_, b) = gateways(now, Suite::AES128_GCM16);
    let mut k = buf(&[0xff]);
    assert_eq!(b.process_inbound_udp(now, &mut k), InboundAction::Keepalive);
    let mut ike = buf(&[0, 0, 0, 0, 1, 2, 3]);
    assert_eq!(b.process_inbound_udp(now, &mut ike), InboundAction::Ike);
    assert_eq!(ike.data(), &[1, 2, 3]);
    let mut junk = buf(&[1, 2, 3]);
    assert_eq!(
        b.process_inbound_udp(now, &mut junk),
        InboundAction::Discard(DropReason::Truncated)
    );
    let mut unknown = buf(&[0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 1, 0, 0, 0, 0]);
    assert_eq!(
        b.process_inbound_udp(now, &mut unknown),
        InboundAction::Discard(DropReason::UnknownSpi)
    );
    let s = b.inbound_stats();
    assert_eq!(s.dropped(DropReason::Truncated), 1);
    assert_eq!(s.dropped(DropReason::UnknownSpi), 1);
}

#[test]
fn policies_bypass_discard_no_policy_and_acquire() {
    let now = Instant::now();
    let mut dp = DataPath::new(DataPathConfig {
        acquire_interval: Duration::from_secs(2),
        ..DataPathConfig::default()
    });
    dp.add_policy(Policy {
        id: PolicyId(7),
        priority: 1,
        local: TrafficSelector::any_v4(),
        remote: net("10.2.0.0", 16),
        action: Action::Protect,
    })
    .unwrap();
    dp.add_policy(Policy {
        id: PolicyId(8),
        priority: 2,
        local: TrafficSelector::any_v4(),
        remote: net("10.3.0.0", 16),
        action: Action::Bypass,
    })
    .unwrap();
    dp.add_policy(Policy {
        id: PolicyId(9),
        priority: 3,
        local: TrafficSelector::any_v4(),
        remote: net("10.4.0.0", 16),
        action: Action::Discard,
    })
    .unwrap();
    let to = |d: &str| common::ipv4_packet(60, "10.1.0.1".parse().unwrap(), d.parse().unwrap(), 0);
    assert_eq!(
        dp.process_outbound(now, &mut buf(&to("10.3.1.1"))),
        OutboundAction::Bypass
    );
    assert_eq!(
        dp.process_outbound(now, &mut buf(&to("10.4.1.1"))),
        OutboundAction::Discard(DropReason::PolicyDiscard)
    );
    assert_eq!(
        dp.process_outbound(now, &mut buf(&to("10.5.1.1"))),
        OutboundAction::Discard(DropReason::NoPolicy)
    );
    assert_eq!(
        dp.process_outbound(now, &mut buf(&[0x45, 0, 0])),
        OutboundAction::Discard(DropReason::BadInnerPacket)
    );
    // PROTECT without SA: ACQUIRE, rate limited per policy.
    for t in [0, 1, 1999] {
        let r = dp.process_outbound(now + Duration::from_millis(t), &mut buf(&to("10.2.1.1")));
        assert_eq!(r, OutboundAction::Acquire(PolicyId(7)));
    }
    match dp.poll_event() {
        Some(Event::Acquire { policy, flow }) => {
            assert_eq!(policy, PolicyId(7));
            assert_eq!(flow.dst, "10.2.1.1".parse::<std::net::IpAddr>().unwrap());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(dp.poll_event(), None);
    dp.process_outbound(now + Duration::from_secs(2), &mut buf(&to("10.2.1.1")));
    assert!(matches!(dp.poll_event(), Some(Event::Acquire { .. })));
    let s = dp.outbound_stats();
    assert_eq!(s.dropped(DropReason::NoSa), 4);
    assert_eq!(s.dropped(DropReason::NoPolicy), 1);
    assert_eq!(s.dropped(DropReason::PolicyDiscard), 1);
    assert_eq!(s.dropped(DropReason::BadInnerPacket), 1);
}

#[test]
fn rekey_make_before_break_loses_nothing() {
    let now = Instant::now();
    let (mut a, mut b) = gateways(now, Suite::AES128_GCM16);
    // Packets in flight under the old SA.
    let pkt = a_to_b(200);
    let mut in_flight: Vec<PacketBuf> = (0..4)
        .map(|_| {
            let mut bf = buf(&pkt);
            assert!(matches!(
                a.process_outbound(now, &mut bf),
                OutboundAction::Encapsulated { .. }
            ));
            bf
        })
        .collect();
    // Rekey: new SAs installed, inbound first; outbound switches.
    install(
        &mut a,
        &mut b,
        now,
        Suite::AES128_GCM16,
        0x0a0a_0002,
        0x0b0b_0002,
    );
    let mut bf = buf(&pkt);
    match a.process_outbound(now, &mut bf) {
        OutboundAction::Encapsulated { spi, .. } => assert_eq!(spi, 0x0a0a_0002),
        other => panic!("{other:?}"),
    }
    in_flight.push(bf);
    // All five arrive: four on the old SA, one on the new.
    for bf in &mut in_flight {
        assert!(matches!(
            b.process_inbound_udp(now, bf),
            InboundAction::Inner { .. }
        ));
    }
    let old = b.remove_inbound(0x0a0a_0001).unwrap();
    assert_eq!(old.stats().packets, 4);
    assert_eq!(b.sad().inbound(0x0a0a_0002).unwrap().stats().packets, 1);
}

#[test]
fn lifetimes_raise_events_once_with_a_virtual_clock() {
    let t0 = Instant::now();
    let mut dp = DataPath::default();
    let mut p: SaParams = common::params(Suite::AES128_GCM16, 0x2000_0001, false, 64);
    p.lifetime = Lifetime {
        soft: Limits {
            time: Some(Duration::from_secs(50)),
            bytes: Some(1000),
            ..Limits::default()
        },
        hard: Limits {
            time: Some(Duration::from_secs(60)),
            ..Limits::default()
        },
    };
    dp.add_policy(Policy {
        id: PolicyId(1),
        priority: 0,
        local: TrafficSelector::any_v4(),
        remote: TrafficSelector::any_v4(),
        action: Action::Protect,
    })
    .unwrap();
    dp.install_outbound(PolicyId(1), &p, t0).unwrap();
    let mut q = p.clone();
    q.spi = 0x2000_0002;
    dp.install_inbound(&q, t0).unwrap();
    assert_eq!(dp.next_timeout(), Some(t0 + Duration::from_secs(50)));
    // Bytes soft limit: 3 x 400 bytes crosses 1000 on the third packet.
    for _ in 0..3 {
        let r = dp.process_outbound(t0, &mut buf(&a_to_b(400)));
        assert!(matches!(r, OutboundAction::Encapsulated { .. }));
    }
    assert_eq!(
        dp.poll_event(),
        Some(Event::Expired {
            spi: 0x2000_0001,
            direction: Direction::Outbound,
            kind: Expiry::Soft
        })
    );
    assert_eq!(dp.poll_event(), None);
    // Time: soft at 50 s for the idle inbound SA, hard at 60 s for both.
    dp.handle_timeout(t0 + Duration::from_secs(49));
    assert_eq!(dp.poll_event(), None);
    dp.handle_timeout(t0 + Duration::from_secs(50));
    assert_eq!(
        dp.poll_event(),
        Some(Event::Expired {
            spi: 0x2000_0002,
            direction: Direction::Inbound,
            kind: Expiry::Soft
        })
    );
    assert_eq!(dp.poll_event(), None);
    dp.handle_timeout(t0 + Duration::from_secs(55));
    assert_eq!(dp.poll_event(), None);
    assert_eq!(dp.next_timeout(), Some(t0 + Duration::from_secs(60)));
    // A packet at 60 s finds the outbound SA dead.
    let r = dp.process_outbound(t0 + Duration::from_secs(60), &mut buf(&a_to_b(400)));
    assert_eq!(r, OutboundAction::Discard(DropReason::SaExpired));
    assert_eq!(
        dp.poll_event(),
        Some(Event::Expired {
            spi: 0x2000_0001,
            direction: Direction::Outbound,
            kind: Expiry::Hard
        })
    );
    dp.handle_timeout(t0 + Duration::from_secs(61));
    assert_eq!(
        dp.poll_event(),
        Some(Event::Expired {
            spi: 0x2000_0002,
            direction: Direction::Inbound,
            kind: Expiry::Hard
        })
    );
    dp.handle_timeout(t0 + Duration::from_secs(62));
    assert_eq!(dp.poll_event(), None);
    assert_eq!(dp.next_timeout(), None);
}

#[test]
fn batches_process_every_buffer() {
    let now = Instant::now();
    let (a, b) = gateways(now, Suite::AES128_CBC_HMAC_SHA1_96);
    let pkts: Vec<Vec<u8>> = (0..16).map(|i| a_to_b(40 + i * 50)).collect();
    let mut bufs: Vec<PacketBuf> = pkts.iter().map(|p| buf(p)).collect();
    let mut out = [OutboundAction::Bypass; 16];
    assert_eq!(a.process_outbound_batch(now, &mut bufs, &mut out), 16);
    assert!(out
        .iter()
        .all(|o| matches!(o, OutboundAction::Encapsulated { .. })));
    let mut inb = [InboundAction::Keepalive; 16];
    assert_eq!(b.process_inbound_esp_batch(now, &mut bufs, &mut inb), 16);
    for (i, (bf, act)) in bufs.iter().zip(&inb).enumerate() {
        assert!(matches!(act, InboundAction::Inner { .. }), "{i}: {act:?}");
        assert_eq!(bf.data(), &pkts[i][..]);
    }
}

#[test]
fn management_errors() {
    let now = Instant::now();
    let mut dp = DataPath::default();
    let p = common::params(Suite::AES128_GCM16, 0x3000_0000, false, 64);
    dp.install_inbound(&p, now).unwrap();
    assert_eq!(
        dp.install_inbound(&p, now).unwrap_err(),
        ipsec_core::sa::SaError::DuplicateSpi
    );
    let mut bad = p.clone();
    bad.spi = 7;
    assert_eq!(
        dp.install_inbound(&bad, now).unwrap_err(),
        ipsec_core::sa::SaError::ReservedSpi
    );
    let mut bad = p.clone();
    bad.spi = 0x3000_0001;
    bad.replay_window = 16;
    assert_eq!(
        dp.install_inbound(&bad, now).unwrap_err(),
        ipsec_core::sa::SaError::BadReplayWindow
    );
    let mut bad = p.clone();
    bad.spi = 0x3000_0002;
    bad.enc_key = common::key(3, 0);
    assert!(matches!(
        dp.install_inbound(&bad, now).unwrap_err(),
        ipsec_core::sa::SaError::Crypto(_)
    ));
    assert!(format!("{:?}", p.enc_key).contains("redacted"));
}
