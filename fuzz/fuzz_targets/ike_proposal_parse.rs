#![no_main]
//! Proposal strings and traffic selectors from configuration files.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = ike_lite::proposal::parse_ike_proposals(s);
        let _ = ike_lite::proposal::parse_esp_proposals(s);
        let _ = s.parse::<ike_lite::ts::TrafficSelector>();
    }
});
