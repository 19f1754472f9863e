use super::*;
use crate::ts::TrafficSelector;
use std::str::FromStr;

fn sample() -> Message {
    let header = Header::new(
        0x0102030405060708,
        0,
        ExchangeType::IKE_SA_INIT,
        Flags::INITIATOR,
        0,
    );
    Message {
        header,
        payloads: vec![
            Payload::Sa(vec![
                Proposal {
                    num: 1,
                    protocol: ProtocolId::IKE,
                    spi: vec![],
                    transforms: vec![
                        Transform::with_key_len(TransformType::ENCR, 20, 256),
                        Transform::new(TransformType::PRF, 5),
                        Transform::new(TransformType::DH, 19),
                    ],
                },
                Proposal {
                    num: 2,
                    protocol: ProtocolId::IKE,
                    spi: vec![],
                    transforms: vec![
                        Transform::with_key_len(TransformType::ENCR, 12, 128),
                        Transform::new(TransformType::PRF, 2),
                        Transform::new(TransformType::INTEG, 2),
                        Transform::new(TransformType::DH, 2),
                    ],
                },
            ]),
            Payload::Ke(KePayload {
                group: 19,
                data: vec![7; 64],
            }),
            Payload::Nonce(vec![1; 32]),
            Payload::Notify(Notify::new(
                NotifyType::NAT_DETECTION_SOURCE_IP,
                vec![9; 20],
            )),
            Payload::Notify(Notify {
                protocol: ProtocolId::ESP,
                spi: vec![1, 2, 3, 4],
                ty: NotifyType::REKEY_SA,
                data: vec![],
            }),
            Payload::IdI(IdPayload {
                id_type: IdType::FQDN,
                data: b"a.example".to_vec(),
            }),
            Payload::Auth {
                method: AuthMethod::SHARED_KEY_MIC,
                data: vec![3; 32],
            },
            Payload::TsI(TsPayload {
                selectors: vec![
                    TrafficSelector::from_str("10.0.0.0/8").unwrap(),
                    TrafficSelector::from_str("2001:db8::/32").unwrap(),
                ],
            }),
            Payload::TsR(TsPayload {
                selectors: vec![TrafficSelector::any_v4()],
            }),
            Payload::Delete(Delete {
                protocol: ProtocolId::ESP,
                spis: vec![vec![1, 2, 3, 4], vec![5, 6, 7, 8]],
            }),
            Payload::Delete(Delete {
                protocol: ProtocolId::IKE,
                spis: vec![],
            }),
            Payload::Vendor(b"vendor".to_vec()),
        ],
    }
}

#[test]
fn roundtrip_all_payloads() {
    let m = sample();
    let bytes = m.emit();
    assert_eq!(
        bytes.len() as u32,
        u32::from_be_bytes([bytes[24], bytes[25], bytes[26], bytes[27]])
    );
    let p = Message::parse(&bytes).unwrap();
    assert_eq!(p.payloads, m.payloads);
    assert_eq!(p.header.next_payload, PayloadType::SA);
    assert_eq!(p.emit(), bytes);
    assert!(p.notify(NotifyType::REKEY_SA).is_some());
    assert!(p.notify(NotifyType::COOKIE).is_none());
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = sample().emit();
    for n in 0..bytes.len() {
        let mut t = bytes[..n].to_vec();
        if t.len() >= HEADER_LEN {
            // Make the header length consistent so the payload checks run.
            t[24..28].copy_from_slice(&(n as u32).to_be_bytes());
        }
        assert!(Message::parse(&t).is_err(), "prefix of {n} bytes parsed");
    }
}

/// A hand-built IKE_SA_INIT-like message checked byte by byte.
#[test]
fn known_bytes() {
    let m = Message {
        header: Header::new(1, 0, ExchangeType::IKE_SA_INIT, Flags::INITIATOR, 0),
        payloads: vec![
            Payload::Sa(vec![Proposal {
                num: 1,
                protocol: ProtocolId::IKE,
                spi: vec![],
                transforms: vec![Transform::with_key_len(TransformType::ENCR, 20, 128)],
            }]),
            Payload::Notify(Notify::new(
                NotifyType::IKEV2_FRAGMENTATION_SUPPORTED,
                vec![],
            )),
        ],
    };
    let b = m.emit();
    let expected: Vec<u8> = [
        &[0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0][..],
        &[33, 0x20, 34, 0x08, 0, 0, 0, 0, 0, 0, 0, 28 + 24 + 8],
        // SA payload: next=Notify, len 24; proposal len 20
        &[41, 0, 0, 24, 0, 0, 0, 20, 1, 1, 0, 1],
        // transform: last, len 12, ENCR, id 20, key length 128
        &[0, 0, 0, 12, 1, 0, 0, 20, 0x80, 14, 0, 128],
        // notify: len 8, proto 0, spi size 0, type 16430
        &[0, 0, 0, 8, 0, 0, 0x40, 0x2e],
    ]
    .concat();
    assert_eq!(b, expected);
}

fn raw_with_extra(ty: u8, critical: bool) -> Vec<u8> {
    let mut m = Message {
        header: Header::new(1, 2, ExchangeType::INFORMATIONAL, Flags::default(), 1),
        payloads: vec![Payload::Nonce(vec![0; 16])],
    }
    .emit();
    // Append an unknown payload after the nonce.
    m[HEADER_LEN] = ty;
    m.extend_from_slice(&[0, if critical { 0x80 } else { 0 }, 0, 6, 0xaa, 0xbb]);
    let len = m.len() as u32;
    m[24..28].copy_from_slice(&len.to_be_bytes());
    m
}

#[test]
fn unknown_payloads() {
    let p = Message::parse(&raw_with_extra(200, false)).unwrap();
    assert_eq!(p.payloads.len(), 1);
    assert_eq!(
        Message::parse(&raw_with_extra(200, true)),
        Err(ParseError::UnsupportedCritical(PayloadType(200)))
    );
}

#[test]
fn strict_lengths() {
    // Payload length smaller than generic header.
    let mut m = raw_with_extra(200, false);
    let n = m.len();
    m[n - 4] = 0;
    m[n - 3] = 3;
    assert!(matches!(
        Message::parse(&m),
        Err(ParseError::PayloadLength(_))
    ));
    // Trailing garbage after the last payload.
    let mut m = Message {
        header: Header::new(1, 2, ExchangeType::INFORMATIONAL, Flags::default(), 1),
        payloads: vec![Payload::Vendor(vec![1])],
    }
    .emit();
    m.push(0);
    let len = m.len() as u32;
    m[24..28].copy_from_slice(&len.to_be_bytes());
    assert_eq!(Message::parse(&m), Err(ParseError::TrailingBytes));
    // Nonce too short.
    let m = Message {
        header: Header::new(1, 2, ExchangeType::INFORMATIONAL, Flags::default(), 1),
        payloads: vec![Payload::Nonce(vec![1; 15])],
    }
    .emit();
    assert!(matches!(
        Message::parse(&m),
        Err(ParseError::Malformed(PayloadType::NONCE, _))
    ));
}

#[test]
fn encrypted_must_be_last_and_fragments() {
    let h = Header::new(1, 2, ExchangeType::IKE_AUTH, Flags::INITIATOR, 1);
    let m = Message {
        header: h,
        payloads: vec![Payload::Fragment(Fragment {
            first: PayloadType::IDI,
            number: 1,
            total: 2,
            data: vec![5; 40],
        })],
    };
    let b = m.emit();
    assert_eq!(
        Message::parse(&b).unwrap(),
        Message {
            header: Message::parse(&b).unwrap().header,
            ..m
        }
    );
    let m = Message {
        header: h,
        payloads: vec![
            Payload::Encrypted(Encrypted {
                first: PayloadType::IDI,
                data: vec![0; 32],
            }),
            Payload::Vendor(vec![1]),
        ],
    };
    assert_eq!(Message::parse(&m.emit()), Err(ParseError::EncryptedNotLast));
    let (unsealed, off) = Message::emit_unsealed(&h, &[Payload::Nonce(vec![0; 16])]);
    assert_eq!(off, HEADER_LEN);
    let p = Message::parse(&unsealed).unwrap();
    match &p.payloads[..] {
        [Payload::Encrypted(e)] => {
            assert_eq!(e.first, PayloadType::NONCE);
            assert_eq!(
                parse_payloads(e.first, &e.data).unwrap(),
                vec![Payload::Nonce(vec![0; 16])]
            );
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn transform_attributes() {
    let mut m = Message {
        header: Header::new(1, 0, ExchangeType::IKE_SA_INIT, Flags::INITIATOR, 0),
        payloads: vec![Payload::Sa(vec![Proposal {
            num: 1,
            protocol: ProtocolId::ESP,
            spi: vec![1, 2, 3, 4],
            transforms: vec![Transform::new(TransformType::ENCR, 12)],
        }])],
    }
    .emit();
    // Append an unknown TLV attribute to the transform: grow transform,
    // proposal, payload and message lengths by 6.
    m.extend_from_slice(&[0x00, 0x20, 0x00, 0x02, 0xde, 0xad]);
    let bump = |m: &mut Vec<u8>, at: usize| {
        let v = u16::from_be_bytes([m[at], m[at + 1]]) + 6;
        m[at..at + 2].copy_from_slice(&v.to_be_bytes());
    };
    bump(&mut m, HEADER_LEN + 2);
    bump(&mut m, HEADER_LEN + 4 + 2);
    bump(&mut m, HEADER_LEN + 4 + 12 + 2);
    let len = m.len() as u32;
    m[24..28].copy_from_slice(&len.to_be_bytes());
    let p = Message::parse(&m).unwrap();
    match &p.payloads[0] {
        Payload::Sa(props) => assert!(props[0].transforms[0].unknown_attrs),
        other => panic!("unexpected {other:?}"),
    }
}
