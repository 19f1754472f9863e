//! Malformed and hostile input: every case is dropped with its own typed
//! reason, counted on the SA (or on the data path when no SA is known), and
//! nothing panics.

mod common;

use std::time::{Duration, Instant};

use ipsec_core::crypto::{Cipher, Suite};
use ipsec_core::sa::{DropReason, InboundSa, Lifetime, Limits, OutboundSa, SaParams};
use ipsec_core::selector::TrafficSelector;
use ipsec_core::wire::EspTrailer;
use proptest::prelude::*;

const SPI: u32 = 0x1000_0001;

/// Seals an arbitrary ESP payload (already carrying its trailer) with the
/// SA's keys, bypassing the SA's own trailer logic, so tests can forge
/// authenticated packets with bad contents.
fn forge(p: &SaParams, seq: u32, plain: &[u8]) -> Vec<u8> {
    let c: Box<dyn Cipher> = p
        .suite
        .cipher(p.enc_key.as_bytes(), p.integ_key.as_bytes())
        .unwrap();
    let mut pkt = vec![0u8; 8 + c.iv_len() + plain.len() + c.icv_len()];
    pkt[0..4].copy_from_slice(&p.spi.to_be_bytes());
    pkt[4..8].copy_from_slice(&seq.to_be_bytes());
    let (h, rest) = pkt.split_at_mut(8);
    let (iv, rest) = rest.split_at_mut(c.iv_len());
    let (payload, icv) = rest.split_at_mut(plain.len());
    payload.copy_from_slice(plain);
    c.seal(h, None, u64::from(seq), iv, payload, icv).unwrap();
    pkt
}

/// `inner` followed by valid padding for `block` and the given next header.
fn with_trailer(inner: &[u8], block: usize, nh: u8) -> Vec<u8> {
    let pad = EspTrailer::pad_len_for(inner.len(), block);
    let mut v = inner.to_vec();
    v.extend(1..=pad);
    v.push(pad);
    v.push(nh);
    v
}

fn setup(suite: Suite) -> (SaParams, OutboundSa, InboundSa) {
    let p = common::params(suite, SPI, false, 32);
    let now = Instant::now();
    let o = OutboundSa::new(&p, now).unwrap();
    let i = InboundSa::new(&p, now).unwrap();
    (p, o, i)
}

fn open(sa: &InboundSa, pkt: &[u8]) -> Result<(), DropReason> {
    let mut b = pkt.to_vec();
    let n = b.len();
    sa.decapsulate(Instant::now(), &mut b, 0..n)
        .map(|_| ())
        .map_err(|d| d.reason)
}

fn seal(sa: &OutboundSa, inner: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; 64 + inner.len() + 64];
    b[64..64 + inner.len()].copy_from_slice(inner);
    let e = sa
        .encapsulate(Instant::now(), &mut b, 64..64 + inner.len())
        .unwrap();
    b[e.esp].to_vec()
}

const SUITES: [Suite; 3] = [
    Suite::AES128_GCM16,
    Suite::AES128_CBC_HMAC_SHA1_96,
    Suite::NULL_HMAC_SHA1_96,
];

#[test]
fn each_bad_input_has_its_own_counted_reason() {
    for suite in SUITES {
        let (p, out, inb) = setup(suite);
        let block = suite.block_len().unwrap();
        let v4 = common::inner_packet(false, 60, 1);
        let v6 = common::inner_packet(true, 80, 2);
        let mut expected = [0u64; DropReason::COUNT];
        let mut expect = |r: Result<(), DropReason>, want: DropReason| {
            assert_eq!(r, Err(want), "{suite:?}");
            expected[want.index()] += 1;
        };

        // Truncated: shorter than header + IV + trailer + ICV.
        let good = seal(&out, &v4);
        expect(open(&inb, &good[..10]), DropReason::Truncated);
        expect(open(&inb, &good[..0]), DropReason::Truncated);
        // Bad ICV: one flipped bit in the ciphertext.
        let mut bad = good.clone();
        bad[20] ^= 0x01;
        expect(open(&inb, &bad), DropReason::AuthFailed);
        // Bad ICV: flipped bit in the ICV itself, and in the SPI/seq header.
        let mut bad = good.clone();
        *bad.last_mut().unwrap() ^= 0x80;
        expect(open(&inb, &bad), DropReason::AuthFailed);
        // Length not a multiple of the block (CBC) / of 4 (others).
        expect(open(&inb, &good[..good.len() - 1]), DropReason::BadLength);
        // The genuine packet is accepted, then replayed.
        assert_eq!(open(&inb, &good), Ok(()));
        expect(open(&inb, &good), DropReason::Replayed);
        // Too old: move the window far ahead, then send seq 2.
        let plain = with_trailer(&v4, block, 4);
        assert_eq!(open(&inb, &forge(&p, 100, &plain)), Ok(()));
        expect(open(&inb, &forge(&p, 2, &plain)), DropReason::TooOld);
        // Bad padding bytes (authenticated).
        let mut pl = v4.clone();
        let pad = EspTrailer::pad_len_for(v4.len(), block).max(4);
        let pad = if (v4.len() + usize::from(pad) + 2) % block.max(4) != 0 {
            pad + block.max(4) as u8
        } else {
            pad
        };
        let pad = pad - ((v4.len() + usize::from(pad) + 2) % block.max(4)) as u8;
        pl.extend(1..=pad);
        pl[v4.len() + 1] = 9; // second padding byte should be 2
        pl.push(pad);
        pl.push(4);
        expect(open(&inb, &forge(&p, 101, &pl)), DropReason::BadPadding);
        // Pad length larger than the payload.
        let mut pl = with_trailer(&v4, block, 4);
        let n = pl.len();
        pl[n - 2] = 255;
        expect(open(&inb, &forge(&p, 102, &pl)), DropReason::BadPadding);
        // Wrong inner version: next header 4 but an IPv6 packet.
        expect(
            open(&inb, &forge(&p, 103, &with_trailer(&v6, block, 4))),
            DropReason::WrongInnerVersion,
        );
        expect(
            open(&inb, &forge(&p, 104, &with_trailer(&v4, block, 41))),
            DropReason::WrongInnerVersion,
        );
        // Bad inner packet: IPv4 total length disagrees with the payload.
        let mut short = v4.clone();
        short[3] -= 1;
        expect(
            open(&inb, &forge(&p, 105, &with_trailer(&short, block, 4))),
            DropReason::BadInnerPacket,
        );
        expect(
            open(&inb, &forge(&p, 106, &with_trailer(&v4[..10], block, 4))),
            DropReason::BadInnerPacket,
        );
        expect(
            open(&inb, &forge(&p, 107, &with_trailer(&[], block, 4))),
            DropReason::BadInnerPacket,
        );
        // Next header neither 4 nor 41; dummy packet (59).
        expect(
            open(&inb, &forge(&p, 108, &with_trailer(&v4, block, 17))),
            DropReason::UnsupportedNextHeader,
        );
        expect(
            open(&inb, &forge(&p, 109, &with_trailer(&[], block, 59))),
            DropReason::DummyPacket,
        );
        // Everything counted exactly once per reason, nothing delivered
        // except the two genuine packets.
        let stats = inb.stats();
        assert_eq!(stats.drops, expected, "{suite:?}");
        assert_eq!(stats.packets, 2);
    }
}

#[test]
fn selector_mismatch_is_dropped_and_counted() {
    for suite in SUITES {
        let mut p = common::params(suite, SPI, false, 64);
        p.remote_ts = vec![TrafficSelector::from_prefix("10.1.0.0".parse().unwrap(), 16).unwrap()];
        p.local_ts = vec![
            TrafficSelector::from_prefix("10.2.0.0".parse().unwrap(), 16)
                .unwrap()
                .with_protocol(ipsec_core::wire::IpProtocol::UDP)
                .with_ports(53, 53),
        ];
        let now = Instant::now();
        let out = OutboundSa::new(&p, now).unwrap();
        let inb = InboundSa::new(&p, now).unwrap();
        let ok = common::ipv4_packet(
            60,
            "10.1.0.5".parse().unwrap(),
            "10.2.0.7".parse().unwrap(),
            0,
        );
        assert_eq!(open(&inb, &seal(&out, &ok)), Ok(()));
        let wrong_src = common::ipv4_packet(
            60,
            "10.9.0.5".parse().unwrap(),
            "10.2.0.7".parse().unwrap(),
            0,
        );
        assert_eq!(
            open(&inb, &seal(&out, &wrong_src)),
            Err(DropReason::SelectorMismatch)
        );
        let wrong_dst = common::ipv4_packet(
            60,
            "10.1.0.5".parse().unwrap(),
            "10.3.0.7".parse().unwrap(),
            0,
        );
        assert_eq!(
            open(&inb, &seal(&out, &wrong_dst)),
            Err(DropReason::SelectorMismatch)
        );
        let mut wrong_port = ok.clone();
        wrong_port[23] = 54;
        assert_eq!(
            open(&inb, &seal(&out, &wrong_port)),
            Err(DropReason::SelectorMismatch)
        );
        let v6 = common::inner_packet(true, 60, 0);
        assert_eq!(
            open(&inb, &seal(&out, &v6)),
            Err(DropReason::SelectorMismatch)
        );
        assert_eq!(inb.stats().dropped(DropReason::SelectorMismatch), 4);
        assert_eq!(inb.stats().total_dropped(), 4);
    }
}

#[test]
fn outbound_refusals() {
    let (p, out, _) = setup(Suite::AES128_GCM16);
    let v4 = common::inner_packet(false, 60, 1);
    let now = Instant::now();
    // No headroom.
    let mut b = vec![0u8; 200];
    b[..60].copy_from_slice(&v4);
    let r = out.encapsulate(now, &mut b, 0..60).unwrap_err();
    assert_eq!(r.reason, DropReason::BufferTooSmall);
    // No tailroom.
    let mut b = vec![0u8; 124];
    b[64..124].copy_from_slice(&v4);
    assert_eq!(
        out.encapsulate(now, &mut b, 64..124).unwrap_err().reason,
        DropReason::BufferTooSmall
    );
    // Range outside the buffer, and a non-IP packet.
    assert_eq!(
        out.encapsulate(now, &mut b, 64..500).unwrap_err().reason,
        DropReason::BufferTooSmall
    );
    let mut b = vec![0u8; 200];
    assert_eq!(
        out.encapsulate(now, &mut b, 64..100).unwrap_err().reason,
        DropReason::BadInnerPacket
    );
    assert_eq!(
        out.last_seq(),
        0,
        "refusals must not consume sequence numbers"
    );
    // Sequence number exhaustion (no ESN): the last number is used once,
    // then the SA is dead.
    let out = OutboundSa::new(&p, now).unwrap();
    out.skip_to(u64::from(u32::MAX));
    let mut b = vec![0u8; 200];
    b[64..124].copy_from_slice(&v4);
    let e = out.encapsulate(now, &mut b, 64..124).unwrap();
    assert_eq!(e.seq, u64::from(u32::MAX));
    assert_eq!(e.event, Some(ipsec_core::sa::Expiry::Hard));
    b[64..124].copy_from_slice(&v4);
    assert_eq!(
        out.encapsulate(now, &mut b, 64..124).unwrap_err().reason,
        DropReason::SaExpired
    );
    assert!(out.is_expired());
    let s = out.stats();
    assert_eq!(s.packets, 1);
    assert_eq!(s.dropped(DropReason::SaExpired), 1);
}

#[test]
fn hard_lifetime_stops_inbound() {
    let mut p = common::params(Suite::NULL_HMAC_SHA1_96, SPI, false, 64);
    p.lifetime = Lifetime {
        soft: Limits {
            packets: Some(1),
            ..Limits::default()
        },
        hard: Limits {
            packets: Some(2),
            time: Some(Duration::from_secs(60)),
            ..Limits::default()
        },
    };
    let now = Instant::now();
    let unlimited = common::params(Suite::NULL_HMAC_SHA1_96, SPI, false, 64);
    let out = OutboundSa::new(&unlimited, now).unwrap();
    let inb = InboundSa::new(&p, now).unwrap();
    let v4 = common::inner_packet(false, 60, 1);
    let pk: Vec<_> = (0..3).map(|_| seal(&out, &v4)).collect();
    let mut b = pk[0].clone();
    let n = b.len();
    let d = inb.decapsulate(now, &mut b, 0..n).unwrap();
    assert_eq!(d.event, Some(ipsec_core::sa::Expiry::Soft));
    let mut b = pk[1].clone();
    let d = inb.decapsulate(now, &mut b, 0..n).unwrap();
    assert_eq!(d.event, Some(ipsec_core::sa::Expiry::Hard));
    assert_eq!(open(&inb, &pk[2]), Err(DropReason::SaExpired));
    assert_eq!(inb.stats().dropped(DropReason::SaExpired), 1);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Random truncations, bit flips and garbage never panic and are always
    /// either a typed drop or (for the untouched packet) a success.
    #[test]
    fn mutations_never_panic(
        suite_idx in 0..SUITES.len(),
        size in 0usize..300,
        cut in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 0..4),
        garbage in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let (_, out, inb) = setup(SUITES[suite_idx]);
        let pkt = seal(&out, &common::inner_packet(size % 2 == 0, size, 3));
        let mut m = pkt.clone();
        for (i, x) in &flips {
            let i = i.index(m.len());
            m[i] ^= x;
        }
        let keep = cut.index(m.len() + 1);
        m.truncate(keep);
        let r = open(&inb, &m);
        if m == pkt {
            prop_assert_eq!(r, Ok(()));
        } else {
            prop_assert!(r.is_err());
        }
        let mut g = garbage.clone();
        if g.len() >= 4 {
            g[..4].copy_from_slice(&SPI.to_be_bytes());
        }
        prop_assert!(open(&inb, &g).is_err());
    }
}
