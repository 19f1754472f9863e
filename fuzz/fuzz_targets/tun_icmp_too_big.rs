//! ICMP "too big" reply construction over arbitrary inner packets.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tun_bridge::packet::icmp::{build_too_big, needs_too_big};

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let mtu = u16::from_be_bytes([data[0], data[1]]);
    let pkt = &data[2..];
    let mut out = [0u8; 1500];
    if let Ok(n) = build_too_big(pkt, mtu, None, &mut out) {
        assert!(needs_too_big(pkt, mtu));
        assert!(n <= 1280);
    }
});
