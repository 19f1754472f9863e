#![no_main]
//! Parses arbitrary bytes as an ISAKMP (IKEv1) message, decodes every
//! payload with its typed view, and decrypts it as an encrypted body; an SA
//! payload that decodes must survive emit + decode.

use ike_lite::v1::cbc::MessageCipher;
use ike_lite::v1::wire::{
    parse_chain, DeletePayload, IdPayload, Kind, Message, NotifyPayload, RawPayload, SaPayload,
};
use ipsec_core::secret::SecretBytes;
use libfuzzer_sys::fuzz_target;

fn typed(p: &RawPayload<'_>) {
    match p.kind {
        Kind::SA => {
            if let Ok(sa) = SaPayload::parse(p.body) {
                assert_eq!(SaPayload::parse(&sa.emit()).as_ref(), Ok(&sa));
            }
        }
        Kind::ID => drop(IdPayload::parse(p.body)),
        Kind::NOTIFY => drop(NotifyPayload::parse(p.body)),
        Kind::DELETE => drop(DeletePayload::parse(p.body)),
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::parse(data) {
        m.payloads.iter().for_each(typed);
    }
    let c = MessageCipher::new(SecretBytes::new(vec![0x42; 16])).expect("AES-128 key");
    if let Ok((h, body, _)) = c.open(data, &[7; 16]) {
        if let Ok(m) = Message::parse_body(h, &body) {
            m.payloads.iter().for_each(typed);
        }
    }
    if let Some((&first, rest)) = data.split_first() {
        if let Ok(chain) = parse_chain(Kind(first), rest, true) {
            chain.iter().for_each(typed);
        }
    }
});
