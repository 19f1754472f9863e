//! Inbound ESP decapsulation with a NULL + HMAC-SHA1-96 SA (see common/esp.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../common/esp.rs"]
mod esp;

fuzz_target!(|data: &[u8]| {
    esp::run(ipsec_core::crypto::Suite::NULL_HMAC_SHA1_96, data);
});
