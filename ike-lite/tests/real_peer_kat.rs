//! Known answers from a real peer: IKEv2 PSK exchanges between two
//! strongSwan 5.9.8 charons, captured on the wire, with the secrets charon
//! logged at `ike = 4` (`tests/vectors/strongswan_ikev2_psk.txt`).
//!
//! From the captured IKE_SA_INIT messages (SPIs, nonces, proposal) and the
//! logged g^ir this derives SKEYSEED and SK_* with `ike_lite::crypto` and
//! compares them with strongSwan's; decrypts both captured IKE_AUTH messages
//! with the derived keys, recomputes each side's PSK AUTH over the real
//! message bytes and compares it with the AUTH payload strongSwan sent (and
//! with the octets / AUTH it logged); finally derives the first Child SA's
//! KEYMAT and decrypts the captured ESP packets (an ICMP echo and its reply).

mod common;

use common::Record;
use ike_lite::crypto::{
    child_keymat, prf, psk_auth, sk_open, skeyseed, verify_psk_auth, DhGroup, IkeSaKeys,
    SK_HEADER_LEN,
};
use ike_lite::message::{
    parse_payloads, AuthMethod, Header, IdPayload, Message, Payload, PayloadType, HEADER_LEN,
};
use ike_lite::proposal::{accept_esp, accept_ike, parse_esp_proposals, parse_ike_proposals};
use ike_lite::Identity;
use ipsec_core::crypto::Suite;
use std::net::Ipv4Addr;

fn nonce(m: &Message) -> Vec<u8> {
    m.payloads
        .iter()
        .find_map(|p| match p {
            Payload::Nonce(n) => Some(n.clone()),
            _ => None,
        })
        .expect("nonce payload")
}

fn ke(m: &Message) -> (u16, usize) {
    m.payloads
        .iter()
        .find_map(|p| match p {
            Payload::Ke(k) => Some((k.group, k.data.len())),
            _ => None,
        })
        .expect("KE payload")
}

fn sa(payloads: &[Payload]) -> Vec<ike_lite::message::Proposal> {
    payloads
        .iter()
        .find_map(|p| match p {
            Payload::Sa(s) => Some(s.clone()),
            _ => None,
        })
        .expect("SA payload")
}

/// Decrypts an IKE_AUTH message with the cipher of its sender and returns
/// its inner payloads.
fn open_auth(msg: &[u8], cipher: &dyn ipsec_core::crypto::Cipher) -> Vec<Payload> {
    let mut m = msg.to_vec();
    let h = Header::parse(&m).unwrap();
    assert_eq!(
        h.next_payload,
        PayloadType::SK,
        "SK must be the first payload"
    );
    let first = PayloadType(m[HEADER_LEN]);
    let r = sk_open(cipher, &mut m, HEADER_LEN, SK_HEADER_LEN).expect("ICV verifies");
    parse_payloads(first, &m[r]).unwrap()
}

fn auth_of(p: &[Payload]) -> Vec<u8> {
    p.iter()
        .find_map(|x| match x {
            Payload::Auth { method, data } => {
                assert_eq!(*method, AuthMethod::SHARED_KEY_MIC);
                Some(data.clone())
            }
            _ => None,
        })
        .expect("AUTH payload")
}

fn id_of(p: &[Payload], initiator: bool) -> IdPayload {
    p.iter()
        .find_map(|x| match (x, initiator) {
            (Payload::IdI(i), true) | (Payload::IdR(i), false) => Some(i.clone()),
            _ => None,
        })
        .expect("ID payload")
}

/// Opens one captured UDP-encapsulated ESP packet and returns the inner IP
/// packet (checks the trailer: padding 1, 2, ..., next header 4).
fn open_esp(pkt: &[u8], spi: u32, suite: Suite, enc: &[u8], integ: &[u8]) -> Vec<u8> {
    let c = suite.cipher(enc, integ).unwrap();
    assert_eq!(u32::from_be_bytes(pkt[..4].try_into().unwrap()), spi);
    let (iv_len, icv_len) = (c.iv_len(), c.icv_len());
    let (hdr, rest) = pkt.split_at(8);
    let (iv, rest) = rest.split_at(iv_len);
    let (ct, icv) = rest.split_at(rest.len() - icv_len);
    let mut pt = ct.to_vec();
    c.open(hdr, None, iv, &mut pt, icv)
        .expect("ESP ICV verifies");
    let next = pt.pop().unwrap();
    assert_eq!(next, 4, "IPv4 inside");
    let pad = usize::from(pt.pop().unwrap());
    let body = pt.len() - pad;
    assert!(pt[body..]
        .iter()
        .enumerate()
        .all(|(i, b)| usize::from(*b) == i + 1));
    pt.truncate(body);
    pt
}

fn check(rec: &Record) {
    let suite_text = rec.text("suite");
    let psk = rec.hex("psk");
    let (init_req, init_resp) = (rec.hex("init_req"), rec.hex("init_resp"));
    let (mi, mr) = (
        Message::parse(&init_req).unwrap(),
        Message::parse(&init_resp).unwrap(),
    );
    let (spi_i, spi_r) = (mr.header.spi_i, mr.header.spi_r);
    assert_eq!(mi.header.spi_i, spi_i);
    let (ni, nr) = (nonce(&mi), nonce(&mr));

    // The responder's choice, read with our proposal code.
    let ours = parse_ike_proposals(suite_text).unwrap();
    let choice = accept_ike(&ours, &sa(&mr.payloads)).expect("strongSwan's choice is acceptable");
    assert_eq!(choice.name(), suite_text);
    let gir = rec.hex("gir");
    let (gi, gi_len) = ke(&mi);
    assert_eq!((DhGroup(gi), ke(&mr).0), (choice.dh, gi));
    assert_eq!(gir.len(), gi_len, "g^ir is as long as the public values");

    // SKEYSEED and the seven SK_* keys.
    let seed = skeyseed(choice.prf, &ni, &nr, &gir).unwrap();
    assert_eq!(seed.as_bytes(), rec.hex("skeyseed"), "SKEYSEED");
    let keys = IkeSaKeys::derive(
        choice.prf,
        choice.suite,
        &ni,
        &nr,
        &gir,
        spi_i.to_be_bytes(),
        spi_r.to_be_bytes(),
    )
    .unwrap();
    for (name, got) in [
        ("sk_d", &keys.sk_d),
        ("sk_ai", &keys.sk_ai),
        ("sk_ar", &keys.sk_ar),
        ("sk_ei", &keys.sk_ei),
        ("sk_er", &keys.sk_er),
        ("sk_pi", &keys.sk_pi),
        ("sk_pr", &keys.sk_pr),
    ] {
        assert_eq!(got.as_bytes(), rec.hex(name), "{suite_text}: {name}");
    }

    // IKE_AUTH: decrypt both messages with the derived keys.
    let (auth_req, auth_resp) = (rec.hex("auth_req"), rec.hex("auth_resp"));
    let inner_i = open_auth(&auth_req, keys.initiator_cipher().unwrap().as_ref());
    let inner_r = open_auth(&auth_resp, keys.responder_cipher().unwrap().as_ref());
    // The other direction's keys must not open them.
    let mut wrong = auth_req.clone();
    assert!(sk_open(
        keys.responder_cipher().unwrap().as_ref(),
        &mut wrong,
        HEADER_LEN,
        SK_HEADER_LEN
    )
    .is_err());

    let (idi, idr) = (id_of(&inner_i, true), id_of(&inner_r, false));
    assert_eq!(
        Identity::from_payload(&idi),
        Some(Identity::Ipv4(Ipv4Addr::new(192, 0, 2, 1)))
    );
    assert_eq!(
        Identity::from_payload(&idr),
        Some(Identity::Ipv4(Ipv4Addr::new(192, 0, 2, 2)))
    );

    // Initiator AUTH: its IKE_SA_INIT request | Nr | prf(SK_pi, IDi').
    let mut octets_i = init_req.clone();
    octets_i.extend_from_slice(&nr);
    octets_i.extend_from_slice(&prf(choice.prf, &keys.sk_pi, &idi.body()).unwrap());
    assert_eq!(octets_i, rec.hex("octets_i"), "initiator's signed octets");
    let a_i = psk_auth(choice.prf, &psk, &init_req, &nr, &keys.sk_pi, &idi.body()).unwrap();
    assert_eq!(&a_i[..], &auth_of(&inner_i)[..], "initiator AUTH payload");
    assert_eq!(&a_i[..], &rec.hex("auth_i")[..]);
    // Responder AUTH: its IKE_SA_INIT response | Ni | prf(SK_pr, IDr').
    let mut octets_r = init_resp.clone();
    octets_r.extend_from_slice(&ni);
    octets_r.extend_from_slice(&prf(choice.prf, &keys.sk_pr, &idr.body()).unwrap());
    assert_eq!(octets_r, rec.hex("octets_r"), "responder's signed octets");
    let got_r = auth_of(&inner_r);
    let a_r = psk_auth(choice.prf, &psk, &init_resp, &ni, &keys.sk_pr, &idr.body()).unwrap();
    assert_eq!(&a_r[..], &got_r[..], "responder AUTH payload");
    assert_eq!(&a_r[..], &rec.hex("auth_r")[..]);
    assert!(verify_psk_auth(
        choice.prf,
        &psk,
        &init_resp,
        &ni,
        &keys.sk_pr,
        &idr.body(),
        &got_r
    ));
    assert!(!verify_psk_auth(
        choice.prf,
        b"wrong psk",
        &init_resp,
        &ni,
        &keys.sk_pr,
        &idr.body(),
        &got_r
    ));

    // First Child SA: KEYMAT = prf+(SK_d, Ni | Nr); decrypt the ESP packets.
    let esp_ours = parse_esp_proposals(rec.text("esp")).unwrap();
    let offered = sa(&inner_i);
    assert_eq!(offered.len(), 1);
    let spi_at_i = u32::from_be_bytes(offered[0].spi[..].try_into().unwrap());
    let (spi_at_r, esp) = accept_esp(&esp_ours, &sa(&inner_r), true).unwrap();
    let ck = child_keymat(choice.prf, &keys.sk_d, None, &ni, &nr, esp.suite).unwrap();
    // i->r packets carry the SPI the responder chose, r->i the initiator's.
    let req = open_esp(
        &rec.hex("esp_i2r"),
        spi_at_r,
        esp.suite,
        &ck.i_to_r.enc,
        &ck.i_to_r.integ,
    );
    let rep = open_esp(
        &rec.hex("esp_r2i"),
        spi_at_i,
        esp.suite,
        &ck.r_to_i.enc,
        &ck.r_to_i.integ,
    );
    // IPv4 10.1.0.1 -> 10.2.0.1 ICMP echo request, and the reply.
    assert_eq!(
        (req[9], &req[12..16], &req[16..20]),
        (1, &[10, 1, 0, 1][..], &[10, 2, 0, 1][..])
    );
    assert_eq!(req[20], 8, "echo request");
    assert_eq!(
        (rep[9], &rep[12..16], &rep[16..20]),
        (1, &[10, 2, 0, 1][..], &[10, 1, 0, 1][..])
    );
    assert_eq!(rep[20], 0, "echo reply");
    assert_eq!(req[24..28], rep[24..28], "same ICMP id/seq");
}

#[test]
fn strongswan_aes128gcm16_prfsha256_modp2048() {
    let recs = common::load("strongswan_ikev2_psk.txt");
    let rec = recs
        .iter()
        .find(|r| r.text("suite") == "aes128gcm16-prfsha256-modp2048")
        .expect("record");
    check(rec);
}

#[test]
fn strongswan_aes128_sha1_modp1024() {
    let recs = common::load("strongswan_ikev2_psk.txt");
    let rec = recs
        .iter()
        .find(|r| r.text("suite") == "aes128-sha1-modp1024")
        .expect("record");
    check(rec);
}

#[test]
fn every_record_is_checked() {
    let recs = common::load("strongswan_ikev2_psk.txt");
    assert_eq!(recs.len(), 2);
    for r in &recs {
        check(r);
    }
}
