//! Known-answer tests for the PRFs and IKEv2 key derivation.

mod common;

use ike_lite::crypto::{
    child_keymat, prf, prf_plus, skeyseed, skeyseed_rekey, IkeSaKeys, PrfId, SaBinding,
};
use ipsec_core::crypto::Suite;

#[test]
fn hmac_prf_rfc2202_rfc4231() {
    let recs = common::load("hmac_prf.txt");
    for rec in &recs {
        let id = PrfId(rec.num("prf") as u16);
        let out = prf(id, &rec.hex("key"), &rec.hex("data")).unwrap();
        assert_eq!(&out[..], &rec.hex("out")[..], "line {}", rec.line);
        assert_eq!(Some(out.len()), id.output_len());
    }
    assert_eq!(recs.len(), 19);
}

fn spi(b: &[u8]) -> [u8; 8] {
    b.try_into().unwrap()
}

#[test]
fn nist_ikev2_kdf_skeyseed_and_prf_plus() {
    for rec in common::load("ikev2_kdf_acvp.txt") {
        let id = PrfId(rec.num("prf") as u16);
        let (ni, nr, gir) = (rec.hex("ni"), rec.hex("nr"), rec.hex("gir"));
        let seed = skeyseed(id, &ni, &nr, &gir).unwrap();
        assert_eq!(seed.as_bytes(), rec.hex("skeyseed"), "line {}", rec.line);
        let dkm = rec.hex("dkm");
        let mut s = ni.clone();
        s.extend_from_slice(&nr);
        s.extend_from_slice(&rec.hex("spii"));
        s.extend_from_slice(&rec.hex("spir"));
        assert_eq!(&prf_plus(id, &seed, &s, dkm.len()).unwrap()[..], &dkm[..]);
    }
}

#[test]
fn nist_ikev2_kdf_ike_sa_keys_split() {
    // The seven keys are consecutive slices of DKM (RFC 7296 §2.14).
    for rec in common::load("ikev2_kdf_acvp.txt") {
        let id = PrfId(rec.num("prf") as u16);
        let plen = id.output_len().unwrap();
        let dkm = rec.hex("dkm");
        for suite in Suite::ALL {
            let (e, a) = (suite.enc_key_len().unwrap(), suite.integ_key_len());
            if 3 * plen + 2 * (e + a) > dkm.len() {
                continue;
            }
            let keys = IkeSaKeys::derive(
                id,
                suite,
                &rec.hex("ni"),
                &rec.hex("nr"),
                &rec.hex("gir"),
                spi(&rec.hex("spii")),
                spi(&rec.hex("spir")),
            )
            .unwrap();
            let mut at = 0;
            let mut next = |n: usize| {
                at += n;
                &dkm[at - n..at]
            };
            assert_eq!(keys.sk_d.as_bytes(), next(plen));
            assert_eq!(keys.sk_ai.as_bytes(), next(a));
            assert_eq!(keys.sk_ar.as_bytes(), next(a));
            assert_eq!(keys.sk_ei.as_bytes(), next(e), "{suite:?}");
            assert_eq!(keys.sk_er.as_bytes(), next(e));
            assert_eq!(keys.sk_pi.as_bytes(), next(plen));
            assert_eq!(keys.sk_pr.as_bytes(), next(plen));
            assert!(keys.initiator_cipher().is_ok() && keys.responder_cipher().is_ok());
            assert!(format!("{:?}", keys.sk_d).contains("redacted"));
        }
    }
}

#[test]
fn nist_ikev2_kdf_child_sa_and_rekey() {
    for rec in common::load("ikev2_kdf_acvp.txt") {
        let id = PrfId(rec.num("prf") as u16);
        let plen = id.output_len().unwrap();
        let sk_d = &rec.hex("dkm")[..plen];
        let (ni, nr, gir_new) = (rec.hex("ni"), rec.hex("nr"), rec.hex("gir_new"));
        let (child, child_dh) = (rec.hex("dkm_child"), rec.hex("dkm_child_dh"));
        for suite in Suite::ALL {
            let (e, a) = (suite.enc_key_len().unwrap(), suite.integ_key_len());
            let ck = child_keymat(id, sk_d, None, &ni, &nr, suite).unwrap();
            let km = [
                ck.i_to_r.enc.as_bytes(),
                ck.i_to_r.integ.as_bytes(),
                ck.r_to_i.enc.as_bytes(),
                ck.r_to_i.integ.as_bytes(),
            ]
            .concat();
            assert_eq!(km.len(), 2 * (e + a));
            assert_eq!(&km[..], &child[..km.len()], "{suite:?}");
            let ck = child_keymat(id, sk_d, Some(&gir_new), &ni, &nr, suite).unwrap();
            let km = [
                ck.i_to_r.enc.as_bytes(),
                ck.i_to_r.integ.as_bytes(),
                ck.r_to_i.enc.as_bytes(),
                ck.r_to_i.integ.as_bytes(),
            ]
            .concat();
            assert_eq!(&km[..], &child_dh[..km.len()], "{suite:?}");
            assert!(ck.i_to_r.cipher(suite).is_ok());
        }
        let seed = skeyseed_rekey(id, sk_d, &gir_new, &ni, &nr).unwrap();
        assert_eq!(seed.as_bytes(), rec.hex("skeyseed_rekey"));
        // derive_rekey = prf+ with the new PRF over the rekey SKEYSEED.
        let spi_i = [1u8; 8];
        let spi_r = [2u8; 8];
        for new_prf in [PrfId::HMAC_SHA2_256, PrfId::HMAC_SHA2_512] {
            let suite = Suite::AES256_GCM16;
            let k = IkeSaKeys::derive_rekey(
                id,
                sk_d,
                new_prf,
                suite,
                &gir_new,
                SaBinding {
                    ni: &ni,
                    nr: &nr,
                    spi_i,
                    spi_r,
                },
            )
            .unwrap();
            let mut s = ni.clone();
            s.extend_from_slice(&nr);
            s.extend_from_slice(&spi_i);
            s.extend_from_slice(&spi_r);
            let n = new_prf.output_len().unwrap();
            let dkm = prf_plus(new_prf, seed.as_bytes(), &s, n).unwrap();
            assert_eq!(k.sk_d.as_bytes(), &dkm[..]);
            assert_eq!(k.prf, new_prf);
            assert_eq!(k.sk_pr.len(), n);
        }
    }
}
