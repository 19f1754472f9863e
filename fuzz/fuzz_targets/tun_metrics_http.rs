//! The metrics endpoint's HTTP request head parser and its answer over
//! arbitrary bytes: never panics; a complete head is answered.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tun_bridge::metrics::http::{parse_request_head, respond};

fuzz_target!(|data: &[u8]| {
    match parse_request_head(data) {
        Ok(None) => {}
        Ok(Some(h)) => {
            assert!(h.path.starts_with('/'));
            let r = respond(Ok(h), String::new);
            assert!(r.starts_with(b"HTTP/1.1 "));
        }
        Err(e) => {
            let _ = respond(Err(e), String::new);
        }
    }
});
