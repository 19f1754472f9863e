#![no_main]
//! The flood guard's zero-copy walk of an IKE_SA_INIT request on arbitrary
//! bytes: it must not panic, and what it finds must agree with the full
//! parser (the nonce it returns is the body of the message's first Nonce
//! payload, the cookie that of a first-payload COOKIE notify).

use ike_lite::flood::InitView;
use ike_lite::message::{Message, NotifyType, Payload};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let view = InitView::parse(data);
    if let (Some(v), Ok(m)) = (view, Message::parse(data)) {
        let nonce = m.payloads.iter().find_map(|p| match p {
            Payload::Nonce(n) => Some(n.as_slice()),
            _ => None,
        });
        assert_eq!(nonce, Some(v.nonce));
        let cookie = match m.payloads.first() {
            Some(Payload::Notify(n)) if n.ty == NotifyType::COOKIE && n.spi.is_empty() => {
                Some(n.data.as_slice())
            }
            _ => None,
        };
        assert_eq!(cookie, v.cookie);
    }
});
