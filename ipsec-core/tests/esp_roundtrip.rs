//! Encapsulate -> decapsulate round trips for every suite, both inner IP
//! versions, sizes up to 9000 bytes, with and without ESN.

mod common;

use std::time::Instant;

use ipsec_core::buf::{RECOMMENDED_HEADROOM, RECOMMENDED_TAILROOM};
use ipsec_core::crypto::Suite;
use ipsec_core::sa::IpVersion;
use ipsec_core::wire::EspPacket;
use proptest::prelude::*;

fn round_trip(suite: Suite, v6: bool, size: usize, esn: bool) {
    let (out, inb) = common::sa_pair(suite, esn, 1024);
    let inner = common::inner_packet(v6, size, size as u8);
    let mut buf = vec![0u8; RECOMMENDED_HEADROOM + inner.len() + RECOMMENDED_TAILROOM];
    let h = RECOMMENDED_HEADROOM;
    buf[h..h + inner.len()].copy_from_slice(&inner);
    let now = Instant::now();
    let e = out.encapsulate(now, &mut buf, h..h + inner.len()).unwrap();
    assert_eq!(e.esp.len(), out.esp_len(inner.len()));
    assert_eq!(e.seq, 1);
    let pkt = EspPacket::new_checked(&buf[e.esp.clone()]).unwrap();
    assert_eq!(pkt.spi(), 0x1000_0001);
    assert_eq!(pkt.seq(), e.seq as u32);
    // ESP payload (after IV, before ICV) is 4-byte aligned.
    let suite_iv = suite.iv_len().unwrap();
    let suite_icv = suite.icv_len().unwrap();
    assert_eq!((e.esp.len() - 8 - suite_iv - suite_icv) % 4, 0);
    if suite.encr != ipsec_core::crypto::EncrId::NULL {
        // Encrypted: the inner packet is not visible.
        let body = &buf[e.esp.start + 8 + suite_iv..e.esp.end - suite_icv];
        assert_ne!(&body[..inner.len().min(32)], &inner[..inner.len().min(32)]);
    }
    let d = inb.decapsulate(now, &mut buf, e.esp.clone()).unwrap();
    assert_eq!(&buf[d.inner.clone()], &inner[..]);
    assert_eq!(d.version, if v6 { IpVersion::V6 } else { IpVersion::V4 });
    assert_eq!(d.seq, e.seq);
    assert_eq!(inb.stats().packets, 1);
    assert_eq!(inb.stats().bytes, inner.len() as u64);
    assert_eq!(out.stats().packets, 1);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn every_suite_round_trips(
        suite_idx in 0..Suite::ALL.len(),
        v6 in any::<bool>(),
        size in 0usize..9000,
        esn in any::<bool>(),
    ) {
        round_trip(Suite::ALL[suite_idx], v6, size, esn);
    }
}

#[test]
fn every_suite_small_and_large() {
    for suite in Suite::ALL {
        for v6 in [false, true] {
            for size in [0, 1, 20, 40, 41, 63, 64, 65, 1400, 1420, 8999, 9000] {
                round_trip(suite, v6, size, false);
                round_trip(suite, v6, size, true);
            }
        }
    }
}

#[test]
fn esn_sequence_numbers_cross_2_pow_32() {
    for suite in [
        Suite::AES128_GCM16,
        Suite::AES128_CBC_HMAC_SHA1_96,
        Suite::NULL_HMAC_SHA1_96,
    ] {
        let (out, inb) = common::sa_pair(suite, true, 64);
        let now = Instant::now();
        let inner = common::inner_packet(false, 100, 1);
        let seal = |seq: u64| {
            out.skip_to(seq);
            let mut buf = vec![0u8; 256];
            buf[64..164].copy_from_slice(&inner);
            let e = out.encapsulate(now, &mut buf, 64..164).unwrap();
            assert_eq!(e.seq, seq);
            (buf, e.esp)
        };
        let open = |(mut buf, r): (Vec<u8>, std::ops::Range<usize>)| {
            inb.decapsulate(now, &mut buf, r).map(|d| d.seq)
        };
        for seq in [1, 0xffff_0000, 0xffff_fffe, 0x1_0000_0002, 0x1_0000_0005] {
            assert_eq!(open(seal(seq)), Ok(seq));
        }
        assert_eq!(open(seal(0x1_ffff_ff00)), Ok(0x1_ffff_ff00));
        let late = seal(0x1_ffff_ffff);
        assert_eq!(open(seal(0x2_0000_0001)), Ok(0x2_0000_0001));
        // A late packet from the previous sub-space, inside the window.
        assert_eq!(open(late), Ok(0x1_ffff_ffff));
        assert_eq!(inb.replay_top(), 0x2_0000_0001);
        // Losing more than 2^32 packets breaks the inference (RFC 4303
        // A2.3): the receiver guesses the wrong high bits and the ICV fails.
        let r = open(seal(0x3_0000_0002)).unwrap_err();
        assert_eq!(r.reason, ipsec_core::sa::DropReason::AuthFailed);
        assert_eq!(
            inb.stats().dropped(ipsec_core::sa::DropReason::AuthFailed),
            1
        );
    }
}
