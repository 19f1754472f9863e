#![no_main]
//! Parses arbitrary bytes as an IKE message and as an inner payload chain;
//! a successful message parse must survive emit + parse.

use ike_lite::message::{parse_payloads, Message, PayloadType};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::parse(data) {
        let again = Message::parse(&m.emit()).expect("emitted message parses");
        assert_eq!(again.payloads.len(), m.payloads.len());
    }
    // Inner chains (as after decryption): the first byte is the first type.
    if let Some((&first, rest)) = data.split_first() {
        let _ = parse_payloads(PayloadType(first), rest);
    }
});
