//! Control-socket request parsing over arbitrary lines.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tun_bridge::control::parse_request(data);
});
