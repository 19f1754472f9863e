//! Shared driver of the `esp_inbound_*` fuzz targets.
//!
//! Input layout: `[flags, pos_hi, pos_lo, xor, cut_hi, cut_lo, inner...]`.
//! The inner bytes are encapsulated by a real outbound SA (when they start
//! with an IPv4/IPv6 version nibble), then optionally mutated (one byte
//! XORed, truncated) and decapsulated by the matching inbound SA through
//! the `DataPath`. The raw input is also fed to the inbound path as-is.
//! Properties: nothing panics; an unmodified packet whose inner bytes are a
//! well-formed IP packet comes back byte for byte; a modified one is never
//! accepted with different content.

use std::time::Instant;

use ipsec_core::buf::{PacketBuf, RECOMMENDED_HEADROOM, RECOMMENDED_TAILROOM};
use ipsec_core::crypto::Suite;
use ipsec_core::datapath::{DataPath, InboundAction};
use ipsec_core::sa::{OutboundSa, SaParams, SecretBytes, TunnelEndpoints};
use ipsec_core::selector::TrafficSelector;
use ipsec_core::wire::FlowKey;

const SPI: u32 = 0x0102_0304;

pub fn run(suite: Suite, data: &[u8]) {
    if data.len() < 6 {
        return;
    }
    let (ctl, inner) = data.split_at(6);
    let esn = ctl[0] & 1 != 0;
    let now = Instant::now();
    let mut p = SaParams::new(
        SPI,
        suite,
        SecretBytes::new(vec![0x42; suite.enc_key_len().unwrap_or(0)]),
        SecretBytes::new(vec![0x24; suite.integ_key_len()]),
        TunnelEndpoints {
            local: "192.0.2.1".parse().unwrap(),
            remote: "192.0.2.2".parse().unwrap(),
        },
    );
    p.esn = esn;
    p.replay_window = 32 + u32::from(ctl[0] >> 1) * 16;
    p.local_ts = vec![TrafficSelector::any_v4(), TrafficSelector::any_v6()];
    p.remote_ts = p.local_ts.clone();
    let out = OutboundSa::new(&p, now).expect("valid SA");
    let mut dp = DataPath::default();
    dp.install_inbound(&p, now).expect("valid SA");
    out.skip_to(u64::from(ctl[1]) << 8 | 1);

    let cap = inner.len() + RECOMMENDED_HEADROOM + RECOMMENDED_TAILROOM;
    let mut buf = PacketBuf::new(vec![0u8; cap], 0);
    // Raw input as a UDP/4500 payload.
    if buf.load(RECOMMENDED_HEADROOM, data).is_ok() {
        let _ = dp.process_inbound_udp(now, &mut buf);
    }

    if buf.load(RECOMMENDED_HEADROOM, inner).is_err() {
        return;
    }
    let range = buf.range();
    let Ok(e) = out.encapsulate(now, buf.storage_mut(), range) else {
        return;
    };
    let mut esp = buf.storage()[e.esp.clone()].to_vec();
    let pos = usize::from(u16::from_be_bytes([ctl[1], ctl[2]]));
    let mutated = ctl[3] != 0 && pos < esp.len();
    if mutated {
        esp[pos] ^= ctl[3];
    }
    let cut = usize::from(u16::from_be_bytes([ctl[4], ctl[5]]));
    let truncated = ctl[0] & 0x80 != 0 && cut < esp.len();
    if truncated {
        esp.truncate(cut);
    }
    buf.load(RECOMMENDED_HEADROOM, &esp).expect("fits");
    let r = dp.process_inbound_esp(now, &mut buf);
    let well_formed = matches!(FlowKey::parse(inner), Ok((_, n)) if n == inner.len());
    match r {
        InboundAction::Inner { .. } => {
            assert_eq!(buf.data(), inner, "accepted packet must be the original");
            assert!(well_formed);
        }
        InboundAction::Discard(_) => {
            assert!(mutated || truncated || !well_formed, "{r:?}");
        }
        other => panic!("unexpected {other:?}"),
    }
}
