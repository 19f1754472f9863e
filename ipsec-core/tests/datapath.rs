//! The `DataPath` facade driven like a TUN/UDP IO loop would drive it: two
//! gateways, policies, ACQUIRE, bypass/discard, make-before-break rekey,
//! lifetimes with a virtual clock, UDP/4500 classification and batches;
//! tunnels: scoped policies, inbound tunnel resolution, per-tunnel counters
//! that survive SA removal, tunnel removal.

mod common;

use std::time::{Duration, Instant};

use ipsec_core::buf::{PacketBuf, RECOMMENDED_HEADROOM, RECOMMENDED_TAILROOM};
use ipsec_core::crypto::Suite;
use ipsec_core::datapath::{
    DataPath, DataPathConfig, Direction, Event, InboundAction, OutboundAction, TunnelId,
};
use ipsec_core::sa::{
    DropReason, Expiry, IpVersion, Lifetime, Limits, SaError, SaParams, TunnelEndpoints, UdpEncap,
};
use ipsec_core::selector::TrafficSelector;
use ipsec_core::spd::{Action, Policy, PolicyId};

const H: usize = RECOMMENDED_HEADROOM;
/// The tunnel of the single-tunnel tests.
const T: TunnelId = TunnelId(0);

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
        tunnel: T,
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
        match a.process_outbound(T, now, &mut bf) {
            OutboundAction::Encapsulated {
                spi,
                endpoints,
                udp_encap,
            } => {
                assert_eq!(spi, 0x0a0a_0001);
                assert_eq!(endpoints, common::tunnel(false));
                assert_eq!(udp_encap.unwrap().remote_port, 4500);
            }
            other => panic!("{other:?}"),
        }
        // B receives it as a UDP/4500 payload.
        assert_eq!(
            b.process_inbound_udp(now, &mut bf),
            InboundAction::Inner {
                spi: 0x0a0a_0001,
                version: IpVersion::V4,
                tunnel: T,
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
            b.process_outbound(T, now, &mut bf),
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
        tunnel: T,
        priority: 1,
        local: TrafficSelector::any_v4(),
        remote: net("10.2.0.0", 16),
        action: Action::Protect,
    })
    .unwrap();
    dp.add_policy(Policy {
        id: PolicyId(8),
        tunnel: T,
        priority: 2,
        local: TrafficSelector::any_v4(),
        remote: net("10.3.0.0", 16),
        action: Action::Bypass,
    })
    .unwrap();
    dp.add_policy(Policy {
        id: PolicyId(9),
        tunnel: T,
        priority: 3,
        local: TrafficSelector::any_v4(),
        remote: net("10.4.0.0", 16),
        action: Action::Discard,
    })
    .unwrap();
    let to = |d: &str| common::ipv4_packet(60, "10.1.0.1".parse().unwrap(), d.parse().unwrap(), 0);
    assert_eq!(
        dp.process_outbound(T, now, &mut buf(&to("10.3.1.1"))),
        OutboundAction::Bypass
    );
    assert_eq!(
        dp.process_outbound(T, now, &mut buf(&to("10.4.1.1"))),
        OutboundAction::Discard(DropReason::PolicyDiscard)
    );
    assert_eq!(
        dp.process_outbound(T, now, &mut buf(&to("10.5.1.1"))),
        OutboundAction::Discard(DropReason::NoPolicy)
    );
    assert_eq!(
        dp.process_outbound(T, now, &mut buf(&[0x45, 0, 0])),
        OutboundAction::Discard(DropReason::BadInnerPacket)
    );
    // PROTECT without SA: ACQUIRE, rate limited per policy.
    for t in [0, 1, 1999] {
        let r = dp.process_outbound(T, now + Duration::from_millis(t), &mut buf(&to("10.2.1.1")));
        assert_eq!(r, OutboundAction::Acquire(PolicyId(7)));
    }
    match dp.poll_event() {
        Some(Event::Acquire {
            policy,
            flow,
            tunnel,
        }) => {
            assert_eq!(policy, PolicyId(7));
            assert_eq!(tunnel, T);
            assert_eq!(flow.dst, "10.2.1.1".parse::<std::net::IpAddr>().unwrap());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(dp.poll_event(), None);
    dp.process_outbound(T, now + Duration::from_secs(2), &mut buf(&to("10.2.1.1")));
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
                a.process_outbound(T, now, &mut bf),
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
    match a.process_outbound(T, now, &mut bf) {
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
    // A tunnel other than the default one: every event names it.
    const LT: TunnelId = TunnelId(7);
    let mut dp = DataPath::default();
    let mut p: SaParams = common::params(Suite::AES128_GCM16, 0x2000_0001, false, 64);
    p.tunnel_id = LT;
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
        tunnel: LT,
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
        let r = dp.process_outbound(LT, t0, &mut buf(&a_to_b(400)));
        assert!(matches!(r, OutboundAction::Encapsulated { .. }));
    }
    assert_eq!(
        dp.poll_event(),
        Some(Event::Expired {
            spi: 0x2000_0001,
            direction: Direction::Outbound,
            kind: Expiry::Soft,
            tunnel: LT,
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
            kind: Expiry::Soft,
            tunnel: LT,
        })
    );
    assert_eq!(dp.poll_event(), None);
    dp.handle_timeout(t0 + Duration::from_secs(55));
    assert_eq!(dp.poll_event(), None);
    assert_eq!(dp.next_timeout(), Some(t0 + Duration::from_secs(60)));
    // A packet at 60 s finds the outbound SA dead.
    let r = dp.process_outbound(LT, t0 + Duration::from_secs(60), &mut buf(&a_to_b(400)));
    assert_eq!(r, OutboundAction::Discard(DropReason::SaExpired));
    assert_eq!(
        dp.poll_event(),
        Some(Event::Expired {
            spi: 0x2000_0001,
            direction: Direction::Outbound,
            kind: Expiry::Hard,
            tunnel: LT,
        })
    );
    dp.handle_timeout(t0 + Duration::from_secs(61));
    assert_eq!(
        dp.poll_event(),
        Some(Event::Expired {
            spi: 0x2000_0002,
            direction: Direction::Inbound,
            kind: Expiry::Hard,
            tunnel: LT,
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
    assert_eq!(a.process_outbound_batch(T, now, &mut bufs, &mut out), 16);
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

const T1: TunnelId = TunnelId(1);
const T2: TunnelId = TunnelId(2);

/// Outer addresses of tunnel `k` (0 or 1) as seen from gateway A.
fn outer(k: usize) -> TunnelEndpoints {
    TunnelEndpoints {
        local: "192.0.2.1".parse().unwrap(),
        remote: format!("192.0.2.{}", 10 + k).parse().unwrap(),
    }
}

fn reversed(e: TunnelEndpoints) -> TunnelEndpoints {
    TunnelEndpoints {
        local: e.remote,
        remote: e.local,
    }
}

fn sa_in(tunnel: TunnelId, spi: u32, endpoints: TunnelEndpoints) -> SaParams {
    let mut p = common::params(Suite::AES128_GCM16, spi, true, 1024);
    p.tunnel = endpoints;
    p.tunnel_id = tunnel;
    p
}

/// Policy `id` of `tunnel` protecting everything (a route-based tunnel).
fn any_policy(id: u32, tunnel: TunnelId) -> Policy {
    Policy {
        id: PolicyId(id),
        tunnel,
        priority: 1,
        local: TrafficSelector::any_v4(),
        remote: TrafficSelector::any_v4(),
        action: Action::Protect,
    }
}

/// SPI A uses to send on tunnel `k`, and the SPI it receives on.
fn spis(k: usize) -> (u32, u32) {
    (0x1000 + k as u32, 0x2000 + k as u32)
}

/// Gateway A with two route-based tunnels T1 and T2 with identical
/// selectors (0.0.0.0/0 both sides, like an AWS Tunnel1/Tunnel2 pair),
/// policies 10 and 11, to two peers that each hold the mirror tunnel (as
/// tunnel `T`, policy 1).
fn two_tunnels(now: Instant) -> (DataPath, [DataPath; 2]) {
    let mut a = DataPath::default();
    let mut peers = [DataPath::default(), DataPath::default()];
    for (k, tunnel) in [T1, T2].into_iter().enumerate() {
        let pol = any_policy(10 + k as u32, tunnel);
        a.add_policy(pol).unwrap();
        let peer = &mut peers[k];
        peer.add_policy(any_policy(1, T)).unwrap();
        let (out_spi, in_spi) = spis(k);
        let e = outer(k);
        peer.install_inbound(&sa_in(T, out_spi, reversed(e)), now)
            .unwrap();
        a.install_inbound(&sa_in(tunnel, in_spi, e), now).unwrap();
        a.install_outbound(pol.id, &sa_in(tunnel, out_spi, e), now)
            .unwrap();
        peer.install_outbound(PolicyId(1), &sa_in(T, in_spi, reversed(e)), now)
            .unwrap();
    }
    (a, peers)
}

fn b_to_a(n: usize) -> Vec<u8> {
    common::ipv4_packet(
        n,
        "10.2.0.7".parse().unwrap(),
        "10.1.0.5".parse().unwrap(),
        3,
    )
}

#[test]
fn tunnels_with_identical_selectors_use_only_their_own_sas() {
    let now = Instant::now();
    let (mut a, peers) = two_tunnels(now);
    for (k, tunnel) in [T1, T2].into_iter().enumerate() {
        let (out_spi, in_spi) = spis(k);
        let mut bf = buf(&a_to_b(100));
        assert_eq!(
            a.process_outbound(tunnel, now, &mut bf),
            OutboundAction::Encapsulated {
                spi: out_spi,
                endpoints: outer(k),
                udp_encap: None
            }
        );
        // Only this tunnel's peer knows the SPI.
        let mut copy = bf.clone();
        assert_eq!(
            peers[1 - k].process_inbound_esp(now, &mut copy),
            InboundAction::Discard(DropReason::UnknownSpi)
        );
        assert!(matches!(
            peers[k].process_inbound_esp(now, &mut bf),
            InboundAction::Inner { spi, .. } if spi == out_spi
        ));
        // The reply: one SPI lookup names the tunnel.
        let mut bf = buf(&b_to_a(80));
        assert!(matches!(
            peers[k].process_outbound(T, now, &mut bf),
            OutboundAction::Encapsulated { .. }
        ));
        assert_eq!(
            a.process_inbound_esp(now, &mut bf),
            InboundAction::Inner {
                spi: in_spi,
                version: IpVersion::V4,
                tunnel,
            }
        );
        assert_eq!(bf.data(), &b_to_a(80)[..]);
    }
    // A batch read from T2's interface uses T2's SA only.
    let mut bufs: Vec<PacketBuf> = (0..4).map(|_| buf(&a_to_b(60))).collect();
    let mut out = [OutboundAction::Bypass; 4];
    assert_eq!(a.process_outbound_batch(T2, now, &mut bufs, &mut out), 4);
    assert!(out
        .iter()
        .all(|o| matches!(o, OutboundAction::Encapsulated { spi, .. } if *spi == spis(1).0)));
    // A tunnel without policies matches nothing.
    assert_eq!(
        a.process_outbound(TunnelId(3), now, &mut buf(&a_to_b(60))),
        OutboundAction::Discard(DropReason::NoPolicy)
    );
    // T1 without its SA asks for one; it never falls through to T2's
    // identical policy.
    assert!(a.remove_outbound(PolicyId(10)).is_some());
    assert_eq!(
        a.process_outbound(T1, now, &mut buf(&a_to_b(60))),
        OutboundAction::Acquire(PolicyId(10))
    );
    assert!(matches!(
        a.poll_event(),
        Some(Event::Acquire {
            policy: PolicyId(10),
            tunnel: T1,
            ..
        })
    ));
    assert!(matches!(
        a.process_outbound(T2, now, &mut buf(&a_to_b(60))),
        OutboundAction::Encapsulated { spi, .. } if spi == spis(1).0
    ));
    assert_eq!(a.poll_event(), None);
}

#[test]
fn tunnel_counters_include_removed_sas() {
    let now = Instant::now();
    let (mut a, peers) = two_tunnels(now);
    for _ in 0..3 {
        a.process_outbound(T1, now, &mut buf(&a_to_b(100)));
    }
    a.process_outbound(T2, now, &mut buf(&a_to_b(50)));
    // Two packets in on T1, then a replay of the second.
    let mut last = buf(&[]);
    for _ in 0..2 {
        let mut bf = buf(&b_to_a(70));
        peers[0].process_outbound(T, now, &mut bf);
        last = bf.clone();
        assert!(matches!(
            a.process_inbound_esp(now, &mut bf),
            InboundAction::Inner { tunnel: T1, .. }
        ));
    }
    assert_eq!(
        a.process_inbound_esp(now, &mut last),
        InboundAction::Discard(DropReason::Replayed)
    );
    let before = a.tunnel_stats(T1);
    assert_eq!((before.outbound.packets, before.outbound.bytes), (3, 300));
    assert_eq!((before.inbound.packets, before.inbound.bytes), (2, 140));
    assert_eq!(before.inbound.dropped(DropReason::Replayed), 1);
    assert_eq!(before.inbound.total_dropped(), 1);
    assert_eq!(before.outbound.total_dropped(), 0);
    let t2 = a.tunnel_stats(T2);
    assert_eq!((t2.outbound.packets, t2.outbound.bytes), (1, 50));
    assert_eq!(t2.inbound, Default::default());

    // Rekey T1: new inbound, switch outbound, retire the old inbound SA.
    a.install_inbound(&sa_in(T1, 0x3000, outer(0)), now)
        .unwrap();
    let old = a
        .install_outbound(PolicyId(10), &sa_in(T1, 0x4000, outer(0)), now)
        .unwrap()
        .unwrap();
    assert_eq!(old.spi(), spis(0).0);
    assert_eq!(a.remove_inbound(spis(0).1).unwrap().stats().packets, 2);
    assert_eq!(a.tunnel_stats(T1), before, "removed SAs still count");
    a.process_outbound(T1, now, &mut buf(&a_to_b(100)));
    assert_eq!(a.tunnel_stats(T1).outbound.packets, 4);

    // One SA bound to two policies of the tunnel counts once, also after
    // the first unbinding.
    a.add_policy(Policy {
        priority: 0,
        remote: net("10.9.0.0", 16),
        ..any_policy(12, T1)
    })
    .unwrap();
    let shared = a.sad().outbound(PolicyId(10)).unwrap().clone();
    assert!(a
        .install_outbound_sa(PolicyId(12), shared)
        .unwrap()
        .is_none());
    let now_stats = a.tunnel_stats(T1);
    assert_eq!(now_stats.outbound.packets, 4);
    assert!(a.remove_policy(PolicyId(12)).is_some());
    assert_eq!(a.tunnel_stats(T1), now_stats);

    // Drops before an SA is chosen belong to the tunnel too.
    assert!(a.remove_outbound(PolicyId(10)).is_some());
    a.process_outbound(T1, now, &mut buf(&a_to_b(100)));
    let s = a.tunnel_stats(T1);
    assert_eq!(s.outbound.packets, 4);
    assert_eq!(s.outbound.dropped(DropReason::NoSa), 1);
    assert_eq!(a.tunnel_stats(T2), t2);

    // Removing the tunnel returns its totals and removes its policies and
    // SAs; the other tunnel keeps working.
    assert_eq!(a.remove_tunnel(T1), Some(s));
    assert_eq!(a.remove_tunnel(T1), None);
    assert_eq!(a.tunnel_stats(T1), Default::default());
    assert!(a.spd(T1).is_none());
    assert!(a.sad().inbound(0x3000).is_none());
    assert_eq!(a.sad().inbound_len(), 1);
    assert_eq!(a.tunnels().collect::<Vec<_>>(), [T2]);
    assert!(matches!(
        a.process_outbound(T2, now, &mut buf(&a_to_b(50))),
        OutboundAction::Encapsulated { .. }
    ));
    assert_eq!(
        a.process_outbound(T1, now, &mut buf(&a_to_b(50))),
        OutboundAction::Discard(DropReason::NoPolicy)
    );
    // The removed tunnel's policy ids are free again.
    a.add_policy(any_policy(10, T1)).unwrap();
}

#[test]
fn sas_bind_only_to_policies_of_their_tunnel() {
    let now = Instant::now();
    let (mut a, _) = two_tunnels(now);
    assert_eq!(
        a.install_outbound(PolicyId(10), &sa_in(T2, 0x5000, outer(1)), now)
            .unwrap_err(),
        SaError::TunnelMismatch
    );
    assert_eq!(
        a.install_outbound(PolicyId(99), &sa_in(T1, 0x5000, outer(0)), now)
            .unwrap_err(),
        SaError::UnknownPolicy
    );
    // Policy ids are unique across tunnels.
    assert_eq!(
        a.add_policy(any_policy(10, T2)),
        Err(ipsec_core::spd::SpdError::DuplicateId)
    );
    // Nothing changed.
    assert_eq!(a.sad().outbound(PolicyId(10)).unwrap().spi(), spis(0).0);
}
