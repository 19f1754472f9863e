//! Inbound ESP decapsulation with an AES-128-GCM SA (see common/esp.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../common/esp.rs"]
mod esp;

fuzz_target!(|data: &[u8]| {
    esp::run(ipsec_core::crypto::Suite::AES128_GCM16, data);
});
