//! Fuzzes `ike_lite::crypto::sk_open` (SK and SKF payloads) with fixed
//! AES-GCM and AES-CBC+HMAC keys, and checks seal/open round trips.
//!
//! Input: byte 0 selects the cipher (bit 0), SK vs SKF header (bit 1) and
//! round-trip mode (bit 2); byte 1 moves the payload offset; the rest is the
//! message (or, in round-trip mode, the plaintext inner payloads).
#![no_main]

use std::sync::OnceLock;

use ike_lite::crypto::{sk_open, sk_seal_with_header_len, SKF_HEADER_LEN, SK_HEADER_LEN};
use ipsec_core::crypto::{Cipher, Suite};
use libfuzzer_sys::fuzz_target;

fn ciphers() -> &'static [Box<dyn Cipher>; 2] {
    static C: OnceLock<[Box<dyn Cipher>; 2]> = OnceLock::new();
    C.get_or_init(|| {
        let gcm = Suite::AES128_GCM16;
        let cbc = Suite::AES128_CBC_HMAC_SHA2_256_128;
        [
            gcm.cipher(&[0x11; 20], &[]).expect("GCM key"),
            cbc.cipher(&[0x22; 16], &[0x33; 32]).expect("CBC key"),
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let cipher = &*ciphers()[usize::from(data[0] & 1)];
    let hdr_len = if data[0] & 2 == 0 {
        SK_HEADER_LEN
    } else {
        SKF_HEADER_LEN
    };
    let sk_offset = 28 + usize::from(data[1] % 40);
    let rest = &data[2..];

    if data[0] & 4 == 0 {
        let mut msg = rest.to_vec();
        if let Ok(range) = sk_open(cipher, &mut msg, sk_offset, hdr_len) {
            assert!(range.start >= sk_offset + hdr_len && range.end <= msg.len());
        }
        return;
    }

    // Round trip: header bytes then the plaintext.
    let mut msg = vec![0u8; sk_offset + hdr_len];
    msg[sk_offset] = 35;
    msg.extend_from_slice(rest);
    if sk_seal_with_header_len(cipher, &mut msg, sk_offset, hdr_len, u64::from(data[1])).is_err() {
        assert!(rest.len() > 60_000, "seal refused a short message");
        return;
    }
    let range = sk_open(cipher, &mut msg, sk_offset, hdr_len).expect("own message opens");
    assert_eq!(&msg[range], rest);
});
