//! The draft-mcgrew-gcm-test-01 ESP packets (shared with the crypto tests,
//! `tests/vectors/esp_aes_gcm_draft_mcgrew.txt`) fed whole through an
//! `InboundSa`: SPI, sequence number, explicit IV, ciphertext and ICV as
//! published. The SA must authenticate and decrypt each packet and commit
//! its sequence number; the draft's payloads carry next header 1, not a
//! tunnel-mode 4/41, so the SA then drops them as `UnsupportedNextHeader`
//! (any key, IV or AAD handling error would show up as `AuthFailed`).

use std::time::Instant;

use ipsec_core::crypto::{EncrId, IntegId, Suite};
use ipsec_core::sa::{DropReason, InboundSa, SaParams, SecretBytes, TunnelEndpoints};

type Record = Vec<(String, Vec<u8>)>;

fn records(text: &str) -> Vec<Record> {
    let mut out = vec![];
    let mut cur = vec![];
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') {
            continue;
        }
        if line.is_empty() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        let (k, v) = line.split_once('=').expect("name = value");
        let v = v.trim();
        let bytes = match v.strip_prefix('"') {
            Some(s) => s.trim_end_matches('"').as_bytes().to_vec(),
            None => hex::decode(v).expect("hex value"),
        };
        cur.push((k.trim().to_string(), bytes));
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn field<'a>(r: &'a Record, name: &str) -> &'a [u8] {
    &r.iter().find(|(k, _)| k == name).expect("field").1
}

#[test]
fn draft_mcgrew_packets_through_inbound_sa() {
    let mut checked = 0;
    for r in records(include_str!("vectors/esp_aes_gcm_draft_mcgrew.txt")) {
        let (key, nonce, aad) = (field(&r, "key"), field(&r, "nonce"), field(&r, "aad"));
        let spi = u32::from_be_bytes(aad[0..4].try_into().unwrap());
        // With ESN the AAD is SPI | seq-high | seq-low; the header carries
        // only seq-low, and a fresh window infers seq-high = 0.
        let esn = aad.len() == 12;
        let (header, seq_low) = if esn {
            let mut h = aad[0..4].to_vec();
            h.extend_from_slice(&aad[8..12]);
            (h, &aad[8..12])
        } else {
            (aad.to_vec(), &aad[4..8])
        };
        // Skip: 192-bit keys (not offered), ESN cases with non-zero high
        // bits (a fresh window cannot infer them), reserved SPIs, seq 0.
        if key.len() == 24 || (esn && aad[4..8] != [0; 4]) || spi <= 255 || seq_low == [0; 4] {
            continue;
        }
        let suite = Suite {
            encr: EncrId::AES_GCM_16,
            encr_key_bits: (key.len() * 8) as u16,
            integ: IntegId::NONE,
        };
        let mut enc = key.to_vec();
        enc.extend_from_slice(&nonce[..4]);
        let mut p = SaParams::new(
            spi,
            suite,
            SecretBytes::new(enc),
            SecretBytes::default(),
            TunnelEndpoints {
                local: "192.0.2.1".parse().unwrap(),
                remote: "192.0.2.2".parse().unwrap(),
            },
        );
        p.replay_window = 64;
        p.esn = esn;
        let sa = InboundSa::new(&p, Instant::now()).unwrap();
        let mut pkt = header.clone();
        pkt.extend_from_slice(&nonce[4..]);
        pkt.extend_from_slice(field(&r, "ciphertext"));
        pkt.extend_from_slice(field(&r, "tag"));
        let seq = u64::from(u32::from_be_bytes(seq_low.try_into().unwrap()));

        // Tampered copy first: authentication fails, window untouched.
        let mut bad = pkt.clone();
        bad[20] ^= 4;
        let n = bad.len();
        let e = sa.decapsulate(Instant::now(), &mut bad, 0..n).unwrap_err();
        assert_eq!(e.reason, DropReason::AuthFailed);
        assert_eq!(sa.replay_top(), 0);

        let e = sa.decapsulate(Instant::now(), &mut pkt, 0..n).unwrap_err();
        assert_eq!(e.reason, DropReason::UnsupportedNextHeader);
        assert_eq!(sa.replay_top(), seq, "authenticated packets are committed");
        // The published plaintext is what the SA decrypted in place.
        assert_eq!(&pkt[16..n - 16], field(&r, "plaintext"));
        checked += 1;
    }
    // Five of the fourteen cases fit the constraints above.
    assert_eq!(checked, 5);
}
