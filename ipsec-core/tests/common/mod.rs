//! Helpers shared by the integration tests: inner packet builders and SA pairs.
#![allow(dead_code)]

use std::net::IpAddr;
use std::time::Instant;

use ipsec_core::crypto::Suite;
use ipsec_core::sa::{InboundSa, OutboundSa, SaParams, SecretBytes, TunnelEndpoints};
use ipsec_core::wire::Ipv4Packet;

/// Deterministic key bytes for tests.
pub fn key(len: usize, seed: u8) -> SecretBytes {
    SecretBytes::new(
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect(),
    )
}

/// Tunnel endpoints of the given family.
pub fn tunnel(v6: bool) -> TunnelEndpoints {
    if v6 {
        TunnelEndpoints {
            local: "2001:db8::1".parse().unwrap(),
            remote: "2001:db8::2".parse().unwrap(),
        }
    } else {
        TunnelEndpoints {
            local: "192.0.2.1".parse().unwrap(),
            remote: "192.0.2.2".parse().unwrap(),
        }
    }
}

/// Parameters of an SA with any-selectors of both families.
pub fn params(suite: Suite, spi: u32, esn: bool, window: u32) -> SaParams {
    let mut p = SaParams::new(
        spi,
        suite,
        key(suite.enc_key_len().unwrap(), 0x5a),
        key(suite.integ_key_len(), 0xa5),
        tunnel(false),
    );
    p.esn = esn;
    p.replay_window = window;
    p.local_ts = vec![
        ipsec_core::selector::TrafficSelector::any_v4(),
        ipsec_core::selector::TrafficSelector::any_v6(),
    ];
    p.remote_ts = p.local_ts.clone();
    p
}

/// A sending and a receiving SA sharing keys and SPI.
pub fn sa_pair(suite: Suite, esn: bool, window: u32) -> (OutboundSa, InboundSa) {
    let p = params(suite, 0x1000_0001, esn, window);
    let now = Instant::now();
    (
        OutboundSa::new(&p, now).unwrap(),
        InboundSa::new(&p, now).unwrap(),
    )
}

/// A valid IPv4 UDP packet of exactly `total` bytes (at least 20).
pub fn ipv4_packet(total: usize, src: IpAddr, dst: IpAddr, seed: u8) -> Vec<u8> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (src, dst) else {
        panic!("v4 addresses expected")
    };
    let total = total.max(20);
    let mut v = vec![0u8; total];
    v[0] = 0x45;
    v[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    v[8] = 64;
    v[9] = 17;
    v[12..16].copy_from_slice(&s.octets());
    v[16..20].copy_from_slice(&d.octets());
    Ipv4Packet::new_unchecked(&mut v[..]).fill_checksum();
    if total >= 28 {
        v[20..22].copy_from_slice(&5000u16.to_be_bytes());
        v[22..24].copy_from_slice(&53u16.to_be_bytes());
        v[24..26].copy_from_slice(&((total - 20) as u16).to_be_bytes());
    }
    for (i, b) in v.iter_mut().enumerate().skip(28) {
        *b = (i as u8) ^ seed;
    }
    v
}

/// A valid IPv6 UDP packet of exactly `total` bytes (at least 40).
pub fn ipv6_packet(total: usize, src: IpAddr, dst: IpAddr, seed: u8) -> Vec<u8> {
    let (IpAddr::V6(s), IpAddr::V6(d)) = (src, dst) else {
        panic!("v6 addresses expected")
    };
    let total = total.max(40);
    let mut v = vec![0u8; total];
    v[0] = 0x60;
    v[4..6].copy_from_slice(&((total - 40) as u16).to_be_bytes());
    v[6] = 17;
    v[7] = 64;
    v[8..24].copy_from_slice(&s.octets());
    v[24..40].copy_from_slice(&d.octets());
    if total >= 48 {
        v[40..42].copy_from_slice(&5000u16.to_be_bytes());
        v[42..44].copy_from_slice(&53u16.to_be_bytes());
        v[44..46].copy_from_slice(&((total - 40) as u16).to_be_bytes());
    }
    for (i, b) in v.iter_mut().enumerate().skip(48) {
        *b = (i as u8) ^ seed;
    }
    v
}

/// An inner packet of either family between test hosts.
pub fn inner_packet(v6: bool, total: usize, seed: u8) -> Vec<u8> {
    if v6 {
        ipv6_packet(
            total,
            "fd00:1::5".parse().unwrap(),
            "fd00:2::7".parse().unwrap(),
            seed,
        )
    } else {
        ipv4_packet(
            total,
            "10.1.0.5".parse().unwrap(),
            "10.2.0.7".parse().unwrap(),
            seed,
        )
    }
}
