//! IKEv1 SA payloads from the crate's proposal syntax ([`IkeProposal`],
//! [`EspProposal`]) and their selection: phase 1 (RFC 2409 App. A, one
//! KEY_IKE transform per algorithm combination, PSK authentication) and
//! quick mode (RFC 2407 §4.5, ESP with AES-CBC + HMAC or AES-GCM-16, PFS
//! group, tunnel or UDP-encapsulated tunnel mode). IKEv1 has no AEAD in
//! phase 1, so GCM entries of an `ike=` line are skipped there.

use super::wire::{Attr, Proposal, SaPayload, Transform, PROTO_ESP, PROTO_ISAKMP};
use crate::crypto::{DhGroup, PrfId};
use crate::proposal::{EspChoice, EspProposal, IkeChoice, IkeProposal};
use ipsec_core::crypto::{EncrId, IntegId, Suite};
use std::time::Duration;

/// Phase-1 attribute types.
mod p1 {
    pub const ENCR: u16 = 1;
    pub const HASH: u16 = 2;
    pub const AUTH: u16 = 3;
    pub const GROUP: u16 = 4;
    pub const LIFE_TYPE: u16 = 11;
    pub const LIFE_DURATION: u16 = 12;
    pub const KEY_LENGTH: u16 = 14;
    pub const ENCR_AES_CBC: u64 = 7;
    pub const AUTH_PSK: u64 = 1;
    pub const KEY_IKE: u8 = 1;
}

/// Phase-2 (IPsec DOI) attribute types.
pub(crate) mod p2 {
    pub const LIFE_TYPE: u16 = 1;
    pub const LIFE_DURATION: u16 = 2;
    pub const GROUP: u16 = 3;
    pub const ENCAP: u16 = 4;
    pub const AUTH: u16 = 5;
    pub const KEY_LENGTH: u16 = 6;
    pub const ENCAP_TUNNEL: u64 = 1;
    pub const ENCAP_UDP_TUNNEL: u64 = 3;
    /// draft-ietf-ipsec-nat-t-ike-00..03 value, still sent by old peers.
    pub const ENCAP_UDP_TUNNEL_DRAFT: u64 = 61443;
    pub const LIFE_SECONDS: u64 = 1;
}

/// Life type "seconds" (both phases).
const SECONDS: u64 = 1;

fn hash_id(prf: PrfId) -> Option<u64> {
    Some(match prf {
        PrfId::HMAC_SHA1 => 2,
        PrfId::HMAC_SHA2_256 => 4,
        PrfId::HMAC_SHA2_384 => 5,
        PrfId::HMAC_SHA2_512 => 6,
        _ => return None,
    })
}

fn prf_of_hash(h: u64) -> Option<PrfId> {
    Some(match h {
        2 => PrfId::HMAC_SHA1,
        4 => PrfId::HMAC_SHA2_256,
        5 => PrfId::HMAC_SHA2_384,
        6 => PrfId::HMAC_SHA2_512,
        _ => return None,
    })
}

/// The HMAC integrity of ESP/IKE that goes with a hash.
fn integ_of_prf(prf: PrfId) -> IntegId {
    match prf {
        PrfId::HMAC_SHA2_256 => IntegId::HMAC_SHA2_256_128,
        PrfId::HMAC_SHA2_384 => IntegId::HMAC_SHA2_384_192,
        PrfId::HMAC_SHA2_512 => IntegId::HMAC_SHA2_512_256,
        _ => IntegId::HMAC_SHA1_96,
    }
}

fn esp_auth_id(integ: IntegId) -> Option<u64> {
    Some(match integ {
        IntegId::HMAC_SHA1_96 => 2,
        IntegId::HMAC_SHA2_256_128 => 5,
        IntegId::HMAC_SHA2_384_192 => 6,
        IntegId::HMAC_SHA2_512_256 => 7,
        _ => return None,
    })
}

/// The negotiated phase-1 algorithms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Phase1Choice {
    /// AES-CBC key length in bits.
    pub key_bits: u16,
    /// PRF (HMAC with the negotiated hash).
    pub prf: PrfId,
    /// Diffie-Hellman group.
    pub dh: DhGroup,
    /// ISAKMP SA lifetime.
    pub lifetime: Duration,
}

impl Phase1Choice {
    /// As the crate's [`IkeChoice`] (status, events): AES-CBC with the HMAC
    /// that belongs to the hash, e.g. `aes128-sha1-modp1024`.
    pub fn ike_choice(&self) -> IkeChoice {
        IkeChoice {
            suite: Suite {
                encr: EncrId::AES_CBC,
                encr_key_bits: self.key_bits,
                integ: integ_of_prf(self.prf),
            },
            prf: self.prf,
            dh: self.dh,
        }
    }

    /// `Ka` length in bytes.
    pub fn enc_key_len(&self) -> usize {
        self.key_bits as usize / 8
    }

    fn to_transform(self, number: u8) -> Option<Transform> {
        Some(Transform {
            number,
            id: p1::KEY_IKE,
            attrs: vec![
                Attr {
                    kind: p1::ENCR,
                    value: p1::ENCR_AES_CBC,
                },
                Attr {
                    kind: p1::KEY_LENGTH,
                    value: self.key_bits as u64,
                },
                Attr {
                    kind: p1::HASH,
                    value: hash_id(self.prf)?,
                },
                Attr {
                    kind: p1::AUTH,
                    value: p1::AUTH_PSK,
                },
                Attr {
                    kind: p1::GROUP,
                    value: self.dh.0 as u64,
                },
                Attr {
                    kind: p1::LIFE_TYPE,
                    value: SECONDS,
                },
                Attr {
                    kind: p1::LIFE_DURATION,
                    value: self.lifetime.as_secs(),
                },
            ],
        })
    }

    fn from_transform(t: &Transform) -> Option<Phase1Choice> {
        if t.id != p1::KEY_IKE
            || t.attr(p1::ENCR)? != p1::ENCR_AES_CBC
            || t.attr(p1::AUTH)? != p1::AUTH_PSK
        {
            return None;
        }
        let key_bits = match t.attr(p1::KEY_LENGTH)? {
            b @ (128 | 192 | 256) => b as u16,
            _ => return None,
        };
        let lifetime = match (t.attr(p1::LIFE_TYPE), t.attr(p1::LIFE_DURATION)) {
            (Some(SECONDS), Some(s)) if s > 0 => Duration::from_secs(s),
            _ => Duration::from_secs(28_800),
        };
        Some(Phase1Choice {
            key_bits,
            prf: prf_of_hash(t.attr(p1::HASH)?)?,
            dh: DhGroup(u16::try_from(t.attr(p1::GROUP)?).ok()?),
            lifetime,
        })
    }
}

/// Every phase-1 combination of `ours` in order (AES-CBC only).
pub fn phase1_offers(ours: &[IkeProposal], lifetime: Duration) -> Vec<Phase1Choice> {
    let mut out = Vec::new();
    for p in ours {
        for e in p.encr.iter().filter(|e| e.id == EncrId::AES_CBC) {
            for prf in &p.prf {
                for dh in &p.dh {
                    let c = Phase1Choice {
                        key_bits: e.key_bits,
                        prf: *prf,
                        dh: *dh,
                        lifetime,
                    };
                    if hash_id(*prf).is_some() && dh.is_supported() && !out.contains(&c) {
                        out.push(c);
                    }
                }
            }
        }
    }
    out
}

/// The initiator's phase-1 SA payload.
pub fn phase1_sa(offers: &[Phase1Choice]) -> SaPayload {
    let transforms = offers
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.to_transform(u8::try_from(i + 1).ok()?))
        .collect();
    SaPayload {
        proposals: vec![Proposal {
            number: 1,
            protocol: PROTO_ISAKMP,
            spi: Vec::new(),
            transforms,
        }],
    }
}

fn same_algorithms(a: &Phase1Choice, b: &Phase1Choice) -> bool {
    (a.key_bits, a.prf, a.dh) == (b.key_bits, b.prf, b.dh)
}

/// Responder: the first transform of the peer's SA that we accept, and
/// the SA payload echoing it. The lifetime is the lower of both.
pub fn select_phase1(offers: &[Phase1Choice], sa: &SaPayload) -> Option<(Phase1Choice, SaPayload)> {
    let p = sa
        .proposals
        .first()
        .filter(|p| p.protocol == PROTO_ISAKMP)?;
    for t in &p.transforms {
        let Some(theirs) = Phase1Choice::from_transform(t) else {
            continue;
        };
        if let Some(ours) = offers.iter().find(|o| same_algorithms(o, &theirs)) {
            let choice = Phase1Choice {
                lifetime: theirs.lifetime.min(ours.lifetime),
                ..theirs
            };
            let echo = SaPayload {
                proposals: vec![Proposal {
                    transforms: vec![t.clone()],
                    ..p.clone()
                }],
            };
            return Some((choice, echo));
        }
    }
    None
}

/// Initiator: the responder's answer must be one of our transforms.
pub fn accept_phase1(offers: &[Phase1Choice], sa: &SaPayload) -> Option<Phase1Choice> {
    let p = sa
        .proposals
        .first()
        .filter(|p| p.protocol == PROTO_ISAKMP)?;
    let [t] = p.transforms.as_slice() else {
        return None;
    };
    let theirs = Phase1Choice::from_transform(t)?;
    let ours = offers.iter().find(|o| same_algorithms(o, &theirs))?;
    Some(Phase1Choice {
        lifetime: theirs.lifetime.min(ours.lifetime),
        ..theirs
    })
}

/// A negotiated quick-mode transform.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Phase2Choice {
    /// ESP suite and PFS group.
    pub esp: EspChoice,
    /// IPsec SA lifetime.
    pub lifetime: Duration,
}

fn esp_transform(c: &EspChoice, lifetime: Duration, udp: bool, number: u8) -> Option<Transform> {
    let id = u8::try_from(c.suite.encr.0).ok()?;
    let mut attrs = vec![
        Attr {
            kind: p2::LIFE_TYPE,
            value: p2::LIFE_SECONDS,
        },
        Attr {
            kind: p2::LIFE_DURATION,
            value: lifetime.as_secs(),
        },
        Attr {
            kind: p2::ENCAP,
            value: if udp {
                p2::ENCAP_UDP_TUNNEL
            } else {
                p2::ENCAP_TUNNEL
            },
        },
        Attr {
            kind: p2::KEY_LENGTH,
            value: c.suite.encr_key_bits as u64,
        },
    ];
    if c.suite.integ != IntegId::NONE {
        attrs.push(Attr {
            kind: p2::AUTH,
            value: esp_auth_id(c.suite.integ)?,
        });
    }
    if let Some(g) = c.dh {
        attrs.push(Attr {
            kind: p2::GROUP,
            value: g.0 as u64,
        });
    }
    Some(Transform { number, id, attrs })
}

fn esp_from_transform(t: &Transform) -> Option<(EspChoice, Duration, bool)> {
    let encr = EncrId(t.id as u16);
    let integ = match t.attr(p2::AUTH) {
        None => IntegId::NONE,
        Some(2) => IntegId::HMAC_SHA1_96,
        Some(5) => IntegId::HMAC_SHA2_256_128,
        Some(6) => IntegId::HMAC_SHA2_384_192,
        Some(7) => IntegId::HMAC_SHA2_512_256,
        Some(_) => return None,
    };
    let suite = Suite {
        encr,
        encr_key_bits: u16::try_from(t.attr(p2::KEY_LENGTH).unwrap_or(128)).ok()?,
        integ,
    };
    suite.validate().ok()?;
    let udp = match t.attr(p2::ENCAP)? {
        p2::ENCAP_TUNNEL => false,
        p2::ENCAP_UDP_TUNNEL | p2::ENCAP_UDP_TUNNEL_DRAFT => true,
        _ => return None,
    };
    let lifetime = match (t.attr(p2::LIFE_TYPE), t.attr(p2::LIFE_DURATION)) {
        (Some(p2::LIFE_SECONDS), Some(s)) if s > 0 => Duration::from_secs(s),
        _ => Duration::from_secs(28_800),
    };
    let dh = match t.attr(p2::GROUP) {
        Some(g) => Some(DhGroup(u16::try_from(g).ok()?)),
        None => None,
    };
    Some((
        EspChoice {
            suite,
            dh,
            esn: false,
        },
        lifetime,
        udp,
    ))
}

/// Every ESP combination of `ours` (ESN is not negotiated in IKEv1; PFS
/// uses the first group of a proposal, as one quick mode has one KE).
pub fn phase2_offers(ours: &[EspProposal]) -> Vec<EspChoice> {
    let mut out = Vec::new();
    for p in ours {
        let integs: Vec<IntegId> = if p.integ.is_empty() {
            vec![IntegId::NONE]
        } else {
            p.integ.clone()
        };
        for e in &p.encr {
            for i in &integs {
                let i = if e.is_aead() { IntegId::NONE } else { *i };
                let c = EspChoice {
                    suite: Suite {
                        encr: e.id,
                        encr_key_bits: e.key_bits,
                        integ: i,
                    },
                    dh: p.dh.first().copied(),
                    esn: false,
                };
                if c.suite.validate().is_ok() && !out.contains(&c) {
                    out.push(c);
                }
            }
        }
    }
    out
}

/// The PFS group of our offers (the first one's).
pub fn pfs_group(offers: &[EspChoice]) -> Option<DhGroup> {
    offers.first().and_then(|c| c.dh)
}

/// The initiator's quick-mode SA payload with our inbound `spi`.
pub fn phase2_sa(offers: &[EspChoice], lifetime: Duration, udp: bool, spi: u32) -> SaPayload {
    let transforms = offers
        .iter()
        .enumerate()
        .filter_map(|(i, c)| esp_transform(c, lifetime, udp, u8::try_from(i + 1).ok()?))
        .collect();
    SaPayload {
        proposals: vec![Proposal {
            number: 1,
            protocol: PROTO_ESP,
            spi: spi.to_be_bytes().to_vec(),
            transforms,
        }],
    }
}

/// Responder: the first acceptable transform of the peer's quick-mode SA.
/// Returns the choice (lifetime the lower of both), the peer's SPI, the
/// peer's proposed lifetime, and the answer SA with our `spi`.
pub fn select_phase2(
    offers: &[EspChoice],
    our_lifetime: Duration,
    sa: &SaPayload,
    spi: u32,
) -> Option<(Phase2Choice, u32, Duration, SaPayload)> {
    for p in sa.proposals.iter().filter(|p| p.protocol == PROTO_ESP) {
        let peer_spi = u32::from_be_bytes(p.spi.as_slice().try_into().ok()?);
        for t in &p.transforms {
            let Some((c, life, _udp)) = esp_from_transform(t) else {
                continue;
            };
            if offers.contains(&c) {
                let answer = SaPayload {
                    proposals: vec![Proposal {
                        number: p.number,
                        protocol: PROTO_ESP,
                        spi: spi.to_be_bytes().to_vec(),
                        transforms: vec![t.clone()],
                    }],
                };
                let choice = Phase2Choice {
                    esp: c,
                    lifetime: life.min(our_lifetime),
                };
                return Some((choice, peer_spi, life, answer));
            }
        }
    }
    None
}

/// Initiator: the responder's quick-mode answer: choice and its SPI.
pub fn accept_phase2(offers: &[EspChoice], sa: &SaPayload) -> Option<(Phase2Choice, u32)> {
    let p = sa.proposals.first().filter(|p| p.protocol == PROTO_ESP)?;
    let [t] = p.transforms.as_slice() else {
        return None;
    };
    let (c, lifetime, _) = esp_from_transform(t)?;
    if !offers.contains(&c) {
        return None;
    }
    let spi = u32::from_be_bytes(p.spi.as_slice().try_into().ok()?);
    Some((Phase2Choice { esp: c, lifetime }, spi))
}

/// The RESPONDER-LIFETIME notification data for `lifetime` in seconds.
pub fn responder_lifetime_data(lifetime: Duration) -> Vec<u8> {
    let mut out = Vec::new();
    super::wire::emit_attrs(
        &[
            Attr {
                kind: p2::LIFE_TYPE,
                value: p2::LIFE_SECONDS,
            },
            Attr {
                kind: p2::LIFE_DURATION,
                value: lifetime.as_secs(),
            },
        ],
        &mut out,
    );
    out
}

/// The lifetime in seconds of a RESPONDER-LIFETIME notification.
pub fn parse_responder_lifetime(data: &[u8]) -> Option<Duration> {
    let attrs = super::wire::parse_attrs(data).ok()?;
    let mut seconds = false;
    for a in attrs {
        match a.kind {
            p2::LIFE_TYPE => seconds = a.value == p2::LIFE_SECONDS,
            p2::LIFE_DURATION if seconds => return Some(Duration::from_secs(a.value)),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proposal::{parse_esp_proposals, parse_ike_proposals};

    #[test]
    fn phase1_select_and_accept() {
        let ours = parse_ike_proposals("aes128-sha1-modp1024,aes256-sha256-modp2048").unwrap();
        let offers = phase1_offers(&ours, Duration::from_secs(28_800));
        assert_eq!(offers.len(), 2);
        let sa = phase1_sa(&offers);
        let sa = SaPayload::parse(&sa.emit()).unwrap();
        let theirs = parse_ike_proposals("aes256-sha256-modp2048").unwrap();
        let their_offers = phase1_offers(&theirs, Duration::from_secs(3600));
        let (choice, echo) = select_phase1(&their_offers, &sa).unwrap();
        assert_eq!(choice.ike_choice().name(), "aes256-sha256-modp2048");
        assert_eq!(choice.lifetime, Duration::from_secs(3600));
        assert_eq!(echo.proposals[0].transforms[0].number, 2);
        assert_eq!(
            accept_phase1(&offers, &echo).unwrap().dh,
            DhGroup::MODP_2048
        );
        let gcm = parse_ike_proposals("aes128gcm16-prfsha256-modp2048").unwrap();
        assert!(select_phase1(&phase1_offers(&gcm, Duration::from_secs(1)), &sa).is_none());
    }

    #[test]
    fn phase2_select_pfs_and_lifetime() {
        let ours = parse_esp_proposals("aes128-sha1-modp1024").unwrap();
        let offers = phase2_offers(&ours);
        assert_eq!(pfs_group(&offers), Some(DhGroup::MODP_1024));
        let sa = phase2_sa(&offers, Duration::from_secs(3600), true, 0x1234);
        let sa = SaPayload::parse(&sa.emit()).unwrap();
        let (c, spi, life, answer) =
            select_phase2(&offers, Duration::from_secs(1200), &sa, 0x9999).unwrap();
        assert_eq!((spi, life), (0x1234, Duration::from_secs(3600)));
        assert_eq!(c.lifetime, Duration::from_secs(1200));
        let (c2, spi2) = accept_phase2(&offers, &answer).unwrap();
        assert_eq!((c2.esp, spi2), (c.esp, 0x9999));
        let nopfs = phase2_offers(&parse_esp_proposals("aes128-sha1").unwrap());
        assert!(select_phase2(&nopfs, Duration::from_secs(1), &sa, 1).is_none());
        let gcm = phase2_offers(&parse_esp_proposals("aes128gcm16").unwrap());
        assert_eq!(gcm[0].suite.integ, IntegId::NONE);
        // A zero lifetime means "not given": the RFC 2407 default of 8 h.
        let zero = phase2_sa(&offers, Duration::ZERO, false, 7);
        let (c, _, life, _) = select_phase2(&offers, Duration::from_secs(60), &zero, 1).unwrap();
        assert_eq!(
            (life, c.lifetime),
            (Duration::from_secs(28_800), Duration::from_secs(60))
        );
        let d = responder_lifetime_data(Duration::from_secs(100_000));
        assert_eq!(
            parse_responder_lifetime(&d),
            Some(Duration::from_secs(100_000))
        );
    }
}
