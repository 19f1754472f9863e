//! Known-answer tests for `ike_lite::crypto::dh` against published vectors.

mod common;

use ike_lite::crypto::{DhError, DhGroup, KeyExchange};

fn check_agreement_records(file: &str) -> usize {
    let mut n = 0;
    for rec in common::load(file) {
        if !rec.has("group") {
            continue;
        }
        let group = DhGroup(rec.num("group") as u16);
        let i = KeyExchange::from_private(group, &rec.hex("i")).unwrap();
        let r = KeyExchange::from_private(group, &rec.hex("r")).unwrap();
        assert_eq!(i.public_value(), rec.hex("ke_i"), "{group:?} ke_i");
        assert_eq!(r.public_value(), rec.hex("ke_r"), "{group:?} ke_r");
        assert_eq!(group.public_len(), Some(i.public_value().len()));
        let s1 = i.agree(&rec.hex("ke_r")).unwrap();
        let s2 = r.agree(&rec.hex("ke_i")).unwrap();
        assert_eq!(s1.as_bytes(), rec.hex("shared"), "{group:?} shared");
        assert_eq!(s2.as_bytes(), rec.hex("shared"), "{group:?} shared");
        assert_eq!(group.shared_len(), Some(s1.as_bytes().len()));
        n += 1;
    }
    n
}

#[test]
fn rfc5903_ecp_groups() {
    assert_eq!(check_agreement_records("rfc5903_ecp.txt"), 3);
}

#[test]
fn rfc7748_x25519_agreement() {
    assert_eq!(check_agreement_records("rfc7748_x25519.txt"), 1);
}

#[test]
fn rfc7748_x25519_scalar_mult() {
    // Section 5.2: X25519(k, u) is what agree() computes with private k.
    let mut n = 0;
    for rec in common::load("rfc7748_x25519.txt") {
        if !rec.has("k") {
            continue;
        }
        let kx = KeyExchange::from_private(DhGroup::CURVE25519, &rec.hex("k")).unwrap();
        assert_eq!(kx.agree(&rec.hex("u")).unwrap().as_bytes(), rec.hex("out"));
        n += 1;
    }
    assert_eq!(n, 2);
}

#[test]
fn rfc5114_modp_groups() {
    assert_eq!(check_agreement_records("rfc5114_modp.txt"), 3);
}

#[test]
fn every_group_round_trips() {
    for group in DhGroup::SUPPORTED {
        // The big MODP groups are slow without optimisation.
        if cfg!(debug_assertions) && group.public_len().unwrap() > 384 {
            continue;
        }
        let a = KeyExchange::generate(group).unwrap();
        let b = KeyExchange::generate(group).unwrap();
        assert_eq!(a.group(), group);
        assert_eq!(a.public_value().len(), group.public_len().unwrap());
        assert_ne!(a.public_value(), b.public_value(), "{group:?}");
        let s1 = a.agree(b.public_value()).unwrap();
        let s2 = b.agree(a.public_value()).unwrap();
        assert_eq!(s1.as_bytes(), s2.as_bytes(), "{group:?}");
        assert_eq!(s1.as_bytes().len(), group.shared_len().unwrap());
        // A peer value of the wrong length is refused, never truncated.
        let mut long = b.public_value().to_vec();
        long.push(0);
        assert!(matches!(
            a.agree(&long),
            Err(DhError::BadPublicLength { .. })
        ));
    }
}

#[test]
fn modp_subgroup_vectors_reject_foreign_values() {
    // yB of group 23 is not in the order-q subgroup of group 24 (RFC 6989).
    let recs = common::load("rfc5114_modp.txt");
    let g23 = recs.iter().find(|r| r.num("group") == 23).unwrap();
    let g24 = recs.iter().find(|r| r.num("group") == 24).unwrap();
    let kx = KeyExchange::from_private(DhGroup::MODP_2048_256, &g24.hex("i")).unwrap();
    assert_eq!(
        kx.agree(&g23.hex("ke_r")).unwrap_err(),
        DhError::PublicNotInSubgroup
    );
}
