//! Known answers from a real peer: IKEv1 main mode + quick mode PSK
//! exchanges between two strongSwan 5.9.8 charons, captured on the wire,
//! with the secrets charon logged at `ike = 4`
//! (`tests/vectors/strongswan_ikev1_psk.txt`).
//!
//! From the captured messages (cookies, SA, nonces) and the logged g^xy this
//! derives SKEYID, SKEYID_d/a/e and Ka with `ike_lite::v1::keys` and
//! compares them with strongSwan's; checks the first IV from the captured
//! KE payloads; decrypts main mode messages 5 and 6 along the IV chain and
//! recomputes HASH_I / HASH_R over the captured SA and ID payloads;
//! decrypts quick mode with the phase-2 IV and checks HASH(1..3); derives
//! KEYMAT for both SPIs (with the logged PFS secret where there is one) and
//! decrypts the captured ESP packets (an ICMP echo and its reply).

mod common;

use common::Record;
use ike_lite::crypto::PrfId;
use ike_lite::proposal::parse_esp_proposals;
use ike_lite::v1::cbc::{Iv, MessageCipher};
use ike_lite::v1::keys::{phase1_iv, phase2_iv, Phase1Inputs, Phase1Keys};
use ike_lite::v1::wire::{IdPayload, Kind, Message, SaPayload, PROTO_ESP};
use ipsec_core::crypto::Suite;

fn prf_of(suite: &str) -> PrfId {
    if suite.contains("sha256") {
        PrfId::HMAC_SHA2_256
    } else {
        assert!(suite.contains("sha1"));
        PrfId::HMAC_SHA1
    }
}

fn enc_len(suite: &str) -> usize {
    if suite.starts_with("aes256") {
        32
    } else {
        16
    }
}

fn body<'a>(m: &'a Message<'a>, k: Kind) -> &'a [u8] {
    m.first(k).unwrap_or_else(|| panic!("{k:?} payload")).body
}

/// Decrypts one message; returns its plaintext body and the next IV.
fn open(c: &MessageCipher, msg: &[u8], iv: &Iv) -> (ike_lite::v1::wire::Header, Vec<u8>, Iv) {
    c.open(msg, iv).expect("decrypts")
}

/// The bytes after the HASH payload (which must come first).
fn after_hash<'a>(m: &'a Message<'a>) -> Vec<u8> {
    assert_eq!(m.payloads[0].kind, Kind::HASH);
    m.payloads[1..]
        .iter()
        .flat_map(|p| p.whole.iter().copied())
        .collect()
}

fn esp_suite(esp: &str) -> Suite {
    let p = &parse_esp_proposals(esp).unwrap()[0];
    Suite {
        encr: p.encr[0].id,
        encr_key_bits: p.encr[0].key_bits,
        integ: p
            .integ
            .first()
            .copied()
            .unwrap_or(ipsec_core::crypto::IntegId::NONE),
    }
}

/// Decrypts a captured ESP packet (UDP payload) and returns the inner IP
/// packet's first byte and the next-header byte.
fn open_esp(suite: Suite, keymat: &[u8], pkt: &[u8]) -> (u8, u8) {
    let enc = suite.enc_key_len().unwrap();
    let cipher = suite.cipher(&keymat[..enc], &keymat[enc..]).unwrap();
    let (iv_len, icv_len) = (cipher.iv_len(), cipher.icv_len());
    let mut p = pkt.to_vec();
    let (hdr, rest) = p.split_at_mut(8);
    let (iv, rest) = rest.split_at_mut(iv_len);
    let split = rest.len() - icv_len;
    let (payload, icv) = rest.split_at_mut(split);
    cipher
        .open(hdr, None, iv, payload, icv)
        .expect("ESP decrypts");
    (payload[0], payload[payload.len() - 1])
}

fn check(r: &Record) {
    let suite = r.text("suite");
    let prf = prf_of(suite);
    let mm: Vec<Vec<u8>> = (1..=6).map(|k| r.hex(&format!("mm{k}"))).collect();
    let qm: Vec<Vec<u8>> = (1..=3).map(|k| r.hex(&format!("qm{k}"))).collect();
    let m1 = Message::parse(&mm[0]).unwrap();
    let m3 = Message::parse(&mm[2]).unwrap();
    let m4 = Message::parse(&mm[3]).unwrap();
    let sa_i_b = body(&m1, Kind::SA);
    SaPayload::parse(sa_i_b).unwrap();
    let (gxi, gxr) = (body(&m3, Kind::KE), body(&m4, Kind::KE));
    let (ni, nr) = (body(&m3, Kind::NONCE), body(&m4, Kind::NONCE));
    let (ci, cr) = (m4.header.cookie_i, m4.header.cookie_r);
    let psk = r.hex("psk");
    let gxy = r.hex("gxy");
    let x = Phase1Inputs {
        psk: &psk,
        ni,
        nr,
        g_xy: &gxy,
        cookie_i: ci,
        cookie_r: cr,
    };
    let keys = Phase1Keys::derive(prf, &x, enc_len(suite)).unwrap();
    assert_eq!(&keys.skeyid[..], &r.hex("skeyid")[..], "{suite}: SKEYID");
    assert_eq!(
        &keys.skeyid_d[..],
        &r.hex("skeyid_d")[..],
        "{suite}: SKEYID_d"
    );
    assert_eq!(
        &keys.skeyid_a[..],
        &r.hex("skeyid_a")[..],
        "{suite}: SKEYID_a"
    );
    assert_eq!(
        &keys.skeyid_e[..],
        &r.hex("skeyid_e")[..],
        "{suite}: SKEYID_e"
    );
    assert_eq!(&keys.enc_key[..], &r.hex("ka")[..], "{suite}: Ka");
    let iv1 = phase1_iv(prf, gxi, gxr).unwrap();
    assert_eq!(&iv1[..], &r.hex("iv1")[..], "{suite}: initial IV");

    // Main mode 5 and 6 along the IV chain.
    let c = MessageCipher::new(keys.enc_key.clone()).unwrap();
    let (h5, b5, iv) = open(&c, &mm[4], &iv1);
    let m5 = Message::parse_body(h5, &b5).unwrap();
    let id_i = body(&m5, Kind::ID);
    assert_eq!(IdPayload::parse(id_i).unwrap().data, &[192, 0, 2, 1]);
    let hash_i = keys.hash_auth(gxi, gxr, ci, cr, sa_i_b, id_i).unwrap();
    assert_eq!(hash_i, body(&m5, Kind::HASH), "{suite}: HASH_I on the wire");
    assert_eq!(hash_i, r.hex("hash_i"), "{suite}: HASH_I logged");
    let (h6, b6, last_p1) = open(&c, &mm[5], &iv);
    let m6 = Message::parse_body(h6, &b6).unwrap();
    let id_r = body(&m6, Kind::ID);
    let hash_r = keys.hash_auth(gxr, gxi, cr, ci, sa_i_b, id_r).unwrap();
    assert_eq!(hash_r, body(&m6, Kind::HASH), "{suite}: HASH_R on the wire");
    assert_eq!(hash_r, r.hex("hash_r"), "{suite}: HASH_R logged");
    // A wrong PSK gives another HASH_I.
    let wrong = Phase1Keys::derive(prf, &Phase1Inputs { psk: b"wrong", ..x }, 16).unwrap();
    assert_ne!(
        wrong.hash_auth(gxi, gxr, ci, cr, sa_i_b, id_i).unwrap(),
        hash_i
    );

    // Quick mode.
    let mid = u32::from_be_bytes(qm[0][20..24].try_into().unwrap());
    let iv = phase2_iv(prf, &last_p1, mid).unwrap();
    let (hq1, bq1, iv) = open(&c, &qm[0], &iv);
    let q1 = Message::parse_body(hq1, &bq1).unwrap();
    let h1 = keys.hash1(mid, &after_hash(&q1)).unwrap();
    assert_eq!(h1, body(&q1, Kind::HASH), "{suite}: HASH(1)");
    assert_eq!(h1, r.hex("qm_hash1"));
    let (hq2, bq2, iv) = open(&c, &qm[1], &iv);
    let q2 = Message::parse_body(hq2, &bq2).unwrap();
    let (qni, qnr) = (body(&q1, Kind::NONCE), body(&q2, Kind::NONCE));
    let h2 = keys.hash2(mid, qni, &after_hash(&q2)).unwrap();
    assert_eq!(h2, body(&q2, Kind::HASH), "{suite}: HASH(2)");
    assert_eq!(h2, r.hex("qm_hash2"));
    let (hq3, bq3, _) = open(&c, &qm[2], &iv);
    let q3 = Message::parse_body(hq3, &bq3).unwrap();
    let h3 = keys.hash3(mid, qni, qnr).unwrap();
    assert_eq!(h3, body(&q3, Kind::HASH), "{suite}: HASH(3)");
    assert_eq!(h3, r.hex("qm_hash3"));
    assert_eq!(q1.first(Kind::KE).is_some(), !r.hex("g_qm").is_empty());

    let spi = |m: &Message<'_>| {
        let sa = SaPayload::parse(body(m, Kind::SA)).unwrap();
        assert_eq!(sa.proposals[0].protocol, PROTO_ESP);
        u32::from_be_bytes(sa.proposals[0].spi[..].try_into().unwrap())
    };
    let (spi_i, spi_r) = (spi(&q1), spi(&q2));
    let esp = esp_suite(r.text("esp"));
    let len = esp.enc_key_len().unwrap() + esp.integ_key_len();
    let g_qm = r.hex("g_qm");
    let g = (!g_qm.is_empty()).then_some(&g_qm[..]);
    // The initiator-to-responder SA uses the SPI the responder chose.
    let i2r = keys.keymat(g, PROTO_ESP, spi_r, qni, qnr, len).unwrap();
    let r2i = keys.keymat(g, PROTO_ESP, spi_i, qni, qnr, len).unwrap();
    let enc = esp.enc_key_len().unwrap();
    assert_eq!(&i2r[..enc], &r.hex("enc_i")[..], "{suite}: KEYMAT i->r");
    assert_eq!(&r2i[..enc], &r.hex("enc_r")[..], "{suite}: KEYMAT r->i");
    assert_eq!(&i2r[enc..], &r.hex("integ_i")[..]);
    assert_eq!(&r2i[enc..], &r.hex("integ_r")[..]);

    let esp_i2r = r.hex("esp_i2r");
    let esp_r2i = r.hex("esp_r2i");
    assert_eq!(u32::from_be_bytes(esp_i2r[..4].try_into().unwrap()), spi_r);
    assert_eq!(u32::from_be_bytes(esp_r2i[..4].try_into().unwrap()), spi_i);
    assert_eq!(
        open_esp(esp, &i2r, &esp_i2r),
        (0x45, 4),
        "{suite}: ESP i->r"
    );
    assert_eq!(
        open_esp(esp, &r2i, &esp_r2i),
        (0x45, 4),
        "{suite}: ESP r->i"
    );
}

#[test]
fn strongswan_ikev1_exchanges_reproduce() {
    let records = common::load("strongswan_ikev1_psk.txt");
    assert_eq!(records.len(), 3);
    for r in &records {
        check(r);
    }
}
