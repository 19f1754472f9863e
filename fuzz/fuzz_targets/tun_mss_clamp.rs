//! MSS clamping over arbitrary packets: never panics, and a clamp result
//! always leaves an MSS at or below the limit.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tun_bridge::packet::mss::{clamp_mss, MssClamp};

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let max = u16::from_be_bytes([data[0], data[1]]);
    let mut pkt = data[2..].to_vec();
    let before = pkt.clone();
    match clamp_mss(&mut pkt, max) {
        MssClamp::Clamped { from, to } => {
            assert!(from > to && to == max);
        }
        _ => assert_eq!(pkt, before, "packet modified without clamping"),
    }
});
