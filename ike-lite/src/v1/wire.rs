//! The ISAKMP (RFC 2408) wire format as IKEv1 (RFC 2409) uses it: the
//! 28-byte header, the generic payload chain and typed views of the SA
//! (proposal / transform / attributes), KE, ID, HASH, Nonce, Notification,
//! Delete, Vendor ID and NAT-D (RFC 3947) payloads, plus their encoders.
//!
//! [`Message::parse`] checks the header and walks the payload chain once;
//! afterwards every payload is a borrowed slice whose generic header is
//! known to be sound. The typed decoders (`SaPayload::parse`,
//! `IdPayload::parse`, ...) check their own fixed parts and never panic.
//! Encryption of the body lives in [`super::cbc`].

use core::fmt;

/// Length of the ISAKMP header.
pub const HEADER_LEN: usize = 28;
/// Length of the generic payload header.
pub const GENERIC_LEN: usize = 4;
/// Version byte of ISAKMP 1.0.
pub const VERSION_1_0: u8 = 0x10;
/// IPsec DOI (RFC 2407).
pub const DOI_IPSEC: u32 = 1;
/// SIT_IDENTITY_ONLY (RFC 2407 §4.2).
pub const SIT_IDENTITY_ONLY: u32 = 1;

/// Why an ISAKMP message or payload was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireError {
    /// Shorter than a header, or a fixed part is truncated.
    Truncated,
    /// The header's major version is not 1.
    BadVersion(u8),
    /// The header's length field disagrees with the datagram.
    BadLength,
    /// A payload's length is below its minimum or runs past its parent.
    BadPayloadLength,
    /// Bytes after the last payload of an unencrypted message.
    TrailingBytes,
    /// An SA payload's DOI or situation is not IPsec / identity-only.
    BadDoi,
    /// A payload inside an SA payload is not a proposal / transform.
    BadSaStructure,
    /// A variable-length attribute longer than 8 bytes.
    AttributeTooLong,
    /// The encrypted body is empty or not a multiple of the block size.
    BadCiphertextLength,
    /// The message was expected to be encrypted (or not) and is not.
    EncryptionFlag,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Truncated => f.write_str("truncated ISAKMP message"),
            WireError::BadVersion(v) => write!(f, "ISAKMP version {v:#04x} is not 1.x"),
            WireError::BadLength => f.write_str("ISAKMP length field does not match"),
            WireError::BadPayloadLength => f.write_str("bad payload length"),
            WireError::TrailingBytes => f.write_str("bytes after the last payload"),
            WireError::BadDoi => f.write_str("SA payload is not IPsec DOI / identity only"),
            WireError::BadSaStructure => f.write_str("malformed proposal/transform chain"),
            WireError::AttributeTooLong => f.write_str("SA attribute longer than 8 bytes"),
            WireError::BadCiphertextLength => f.write_str("encrypted body not block aligned"),
            WireError::EncryptionFlag => f.write_str("unexpected encryption flag"),
        }
    }
}

impl std::error::Error for WireError {}

/// ISAKMP exchange type (RFC 2408 §3.1, RFC 2409 §5).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Exchange(pub u8);

impl Exchange {
    /// Identity Protection = main mode.
    pub const MAIN: Exchange = Exchange(2);
    /// Aggressive mode (refused).
    pub const AGGRESSIVE: Exchange = Exchange(4);
    /// Informational.
    pub const INFORMATIONAL: Exchange = Exchange(5);
    /// Quick mode.
    pub const QUICK: Exchange = Exchange(32);
}

impl fmt::Debug for Exchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Exchange::MAIN => f.write_str("MAIN"),
            Exchange::AGGRESSIVE => f.write_str("AGGRESSIVE"),
            Exchange::INFORMATIONAL => f.write_str("INFORMATIONAL"),
            Exchange::QUICK => f.write_str("QUICK"),
            Exchange(n) => write!(f, "Exchange({n})"),
        }
    }
}

/// ISAKMP payload type (RFC 2408 §3.1, RFC 3947 for NAT-D).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Kind(pub u8);

impl Kind {
    /// End of the chain.
    pub const NONE: Kind = Kind(0);
    /// Security Association.
    pub const SA: Kind = Kind(1);
    /// Proposal (inside SA).
    pub const PROPOSAL: Kind = Kind(2);
    /// Transform (inside a proposal).
    pub const TRANSFORM: Kind = Kind(3);
    /// Key Exchange.
    pub const KE: Kind = Kind(4);
    /// Identification.
    pub const ID: Kind = Kind(5);
    /// Hash.
    pub const HASH: Kind = Kind(8);
    /// Nonce.
    pub const NONCE: Kind = Kind(10);
    /// Notification.
    pub const NOTIFY: Kind = Kind(11);
    /// Delete.
    pub const DELETE: Kind = Kind(12);
    /// Vendor ID.
    pub const VENDOR_ID: Kind = Kind(13);
    /// NAT Discovery (RFC 3947).
    pub const NAT_D: Kind = Kind(20);
}

impl fmt::Debug for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = match self.0 {
            0 => "NONE",
            1 => "SA",
            2 => "P",
            3 => "T",
            4 => "KE",
            5 => "ID",
            8 => "HASH",
            10 => "NONCE",
            11 => "N",
            12 => "D",
            13 => "VID",
            20 => "NAT-D",
            n => return write!(f, "Kind({n})"),
        };
        f.write_str(n)
    }
}

/// Header flag: the body is encrypted.
pub const FLAG_ENCRYPTED: u8 = 0x01;
/// Header flag: commit.
pub const FLAG_COMMIT: u8 = 0x02;

/// The ISAKMP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Initiator cookie.
    pub cookie_i: u64,
    /// Responder cookie (zero in main mode message 1).
    pub cookie_r: u64,
    /// Type of the first payload.
    pub next: Kind,
    /// Exchange type.
    pub exchange: Exchange,
    /// Flags (`FLAG_*`).
    pub flags: u8,
    /// Message ID (zero in phase 1).
    pub message_id: u32,
    /// Total length, header included.
    pub length: u32,
}

fn be16(b: &[u8], at: usize) -> Result<u16, WireError> {
    match b.get(at..at + 2) {
        Some(s) => Ok(u16::from_be_bytes([s[0], s[1]])),
        None => Err(WireError::Truncated),
    }
}

fn be32(b: &[u8], at: usize) -> Result<u32, WireError> {
    match b.get(at..at + 4) {
        Some(s) => Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]])),
        None => Err(WireError::Truncated),
    }
}

fn be64(b: &[u8], at: usize) -> Result<u64, WireError> {
    Ok(((be32(b, at)? as u64) << 32) | be32(b, at + 4)? as u64)
}

impl Header {
    /// Parses and checks the header of `msg`: major version 1, length
    /// field equal to the datagram's length.
    pub fn parse(msg: &[u8]) -> Result<Header, WireError> {
        if msg.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if msg[17] >> 4 != 1 {
            return Err(WireError::BadVersion(msg[17]));
        }
        let h = Header {
            cookie_i: be64(msg, 0)?,
            cookie_r: be64(msg, 8)?,
            next: Kind(msg[16]),
            exchange: Exchange(msg[18]),
            flags: msg[19],
            message_id: be32(msg, 20)?,
            length: be32(msg, 24)?,
        };
        if h.length as usize != msg.len() {
            return Err(WireError::BadLength);
        }
        Ok(h)
    }

    /// Whether the body is encrypted.
    pub fn is_encrypted(&self) -> bool {
        self.flags & FLAG_ENCRYPTED != 0
    }

    /// Appends the 28 header bytes.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.cookie_i.to_be_bytes());
        out.extend_from_slice(&self.cookie_r.to_be_bytes());
        out.push(self.next.0);
        out.push(VERSION_1_0);
        out.push(self.exchange.0);
        out.push(self.flags);
        out.extend_from_slice(&self.message_id.to_be_bytes());
        out.extend_from_slice(&self.length.to_be_bytes());
    }
}

/// One payload of a chain: its type, its body (after the generic header)
/// and the whole payload (generic header included, as quick-mode hashes
/// cover it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawPayload<'a> {
    /// Payload type.
    pub kind: Kind,
    /// Body without the generic header.
    pub body: &'a [u8],
    /// The payload with its generic header.
    pub whole: &'a [u8],
}

/// Walks a payload chain starting with type `first`. With
/// `allow_padding`, bytes after the last payload are ignored (the CBC
/// padding of an encrypted body); otherwise they are an error.
pub fn parse_chain(
    first: Kind,
    mut rest: &[u8],
    allow_padding: bool,
) -> Result<Vec<RawPayload<'_>>, WireError> {
    let mut out = Vec::new();
    let mut kind = first;
    while kind != Kind::NONE {
        if rest.len() < GENERIC_LEN {
            return Err(WireError::Truncated);
        }
        let next = Kind(rest[0]);
        let len = be16(rest, 2)? as usize;
        if len < GENERIC_LEN || len > rest.len() {
            return Err(WireError::BadPayloadLength);
        }
        let (whole, tail) = rest.split_at(len);
        out.push(RawPayload {
            kind,
            body: &whole[GENERIC_LEN..],
            whole,
        });
        rest = tail;
        kind = next;
    }
    if !rest.is_empty() && !allow_padding {
        return Err(WireError::TrailingBytes);
    }
    Ok(out)
}

/// A parsed message: header and payload chain (of the plaintext body).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    /// The header.
    pub header: Header,
    /// The payloads in order.
    pub payloads: Vec<RawPayload<'a>>,
}

impl<'a> Message<'a> {
    /// Parses an unencrypted message.
    pub fn parse(msg: &'a [u8]) -> Result<Message<'a>, WireError> {
        let header = Header::parse(msg)?;
        if header.is_encrypted() {
            return Err(WireError::EncryptionFlag);
        }
        let payloads = parse_chain(header.next, &msg[HEADER_LEN..], false)?;
        Ok(Message { header, payloads })
    }

    /// Parses a decrypted body under an already parsed header.
    pub fn parse_body(header: Header, body: &'a [u8]) -> Result<Message<'a>, WireError> {
        let payloads = parse_chain(header.next, body, true)?;
        Ok(Message { header, payloads })
    }

    /// The first payload of type `kind`.
    pub fn first(&self, kind: Kind) -> Option<&RawPayload<'a>> {
        self.payloads.iter().find(|p| p.kind == kind)
    }

    /// Every payload of type `kind`.
    pub fn all(&self, kind: Kind) -> impl Iterator<Item = &RawPayload<'a>> {
        self.payloads.iter().filter(move |p| p.kind == kind)
    }
}

/// Encodes a payload chain; returns the first payload's type and the bytes.
pub fn emit_chain(payloads: &[(Kind, Vec<u8>)]) -> (Kind, Vec<u8>) {
    let mut out = Vec::new();
    for (i, (_, body)) in payloads.iter().enumerate() {
        let next = payloads.get(i + 1).map_or(Kind::NONE, |p| p.0);
        emit_generic(&mut out, next, body);
    }
    (payloads.first().map_or(Kind::NONE, |p| p.0), out)
}

fn emit_generic(out: &mut Vec<u8>, next: Kind, body: &[u8]) {
    // Bodies are built by this crate; none comes near 64 KiB.
    let len = u16::try_from(body.len() + GENERIC_LEN).unwrap_or(u16::MAX);
    out.push(next.0);
    out.push(0);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
}

/// An unencrypted message: header (length filled in) and chain.
pub fn emit_plain(mut header: Header, payloads: &[(Kind, Vec<u8>)]) -> Vec<u8> {
    let (first, body) = emit_chain(payloads);
    header.next = first;
    header.flags &= !FLAG_ENCRYPTED;
    header.length = (HEADER_LEN + body.len()) as u32;
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    header.emit(&mut out);
    out.extend_from_slice(&body);
    out
}

/// One SA attribute (RFC 2408 §3.3): type and value. Values that fit in 16
/// bits and whose type allows it are sent in the basic (TV) format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attr {
    /// Attribute type (without the AF bit).
    pub kind: u16,
    /// Value (variable-length values of at most 8 bytes, big-endian).
    pub value: u64,
}

/// A transform payload's contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transform {
    /// Transform number.
    pub number: u8,
    /// Transform ID (KEY_IKE = 1 for phase 1, ESP_* for phase 2).
    pub id: u8,
    /// Attributes.
    pub attrs: Vec<Attr>,
}

impl Transform {
    /// The value of attribute `kind`, if present.
    pub fn attr(&self, kind: u16) -> Option<u64> {
        self.attrs.iter().find(|a| a.kind == kind).map(|a| a.value)
    }
}

/// A proposal payload's contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proposal {
    /// Proposal number.
    pub number: u8,
    /// Protocol (1 ISAKMP, 3 ESP).
    pub protocol: u8,
    /// SPI (empty for ISAKMP, 4 bytes for ESP).
    pub spi: Vec<u8>,
    /// Transforms (alternatives).
    pub transforms: Vec<Transform>,
}

/// Protocol ID ISAKMP.
pub const PROTO_ISAKMP: u8 = 1;
/// Protocol ID IPSEC_ESP.
pub const PROTO_ESP: u8 = 3;

/// An SA payload (IPsec DOI, identity-only situation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SaPayload {
    /// Proposals.
    pub proposals: Vec<Proposal>,
}

pub(crate) fn parse_attrs(mut b: &[u8]) -> Result<Vec<Attr>, WireError> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let t = be16(b, 0)?;
        let v = be16(b, 2)?;
        if t & 0x8000 != 0 {
            out.push(Attr {
                kind: t & 0x7fff,
                value: v as u64,
            });
            b = &b[4..];
        } else {
            let len = v as usize;
            let val = b.get(4..4 + len).ok_or(WireError::Truncated)?;
            if len > 8 {
                return Err(WireError::AttributeTooLong);
            }
            let value = val.iter().fold(0u64, |a, x| (a << 8) | *x as u64);
            out.push(Attr { kind: t, value });
            b = &b[4 + len..];
        }
    }
    Ok(out)
}

pub(crate) fn emit_attrs(attrs: &[Attr], out: &mut Vec<u8>) {
    for a in attrs {
        if a.value <= 0xffff {
            out.extend_from_slice(&(a.kind | 0x8000).to_be_bytes());
            out.extend_from_slice(&(a.value as u16).to_be_bytes());
        } else {
            let bytes = a.value.to_be_bytes();
            let v: &[u8] = if a.value <= u32::MAX as u64 {
                &bytes[4..]
            } else {
                &bytes[..]
            };
            out.extend_from_slice(&a.kind.to_be_bytes());
            out.extend_from_slice(&(v.len() as u16).to_be_bytes());
            out.extend_from_slice(v);
        }
    }
}

impl SaPayload {
    /// Decodes an SA payload body.
    pub fn parse(body: &[u8]) -> Result<SaPayload, WireError> {
        if be32(body, 0)? != DOI_IPSEC {
            return Err(WireError::BadDoi);
        }
        if be32(body, 4)? != SIT_IDENTITY_ONLY {
            return Err(WireError::BadDoi);
        }
        let mut proposals = Vec::new();
        for p in parse_chain(Kind::PROPOSAL, &body[8..], false)? {
            if p.kind != Kind::PROPOSAL {
                return Err(WireError::BadSaStructure);
            }
            proposals.push(parse_proposal(p.body)?);
        }
        Ok(SaPayload { proposals })
    }

    /// Encodes the SA payload body.
    pub fn emit(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&DOI_IPSEC.to_be_bytes());
        out.extend_from_slice(&SIT_IDENTITY_ONLY.to_be_bytes());
        for (i, p) in self.proposals.iter().enumerate() {
            let mut body = vec![
                p.number,
                p.protocol,
                p.spi.len() as u8,
                p.transforms.len() as u8,
            ];
            body.extend_from_slice(&p.spi);
            for (j, t) in p.transforms.iter().enumerate() {
                let mut tb = vec![t.number, t.id, 0, 0];
                emit_attrs(&t.attrs, &mut tb);
                let next = if j + 1 < p.transforms.len() {
                    Kind::TRANSFORM
                } else {
                    Kind::NONE
                };
                emit_generic(&mut body, next, &tb);
            }
            let next = if i + 1 < self.proposals.len() {
                Kind::PROPOSAL
            } else {
                Kind::NONE
            };
            emit_generic(&mut out, next, &body);
        }
        out
    }
}

fn parse_proposal(b: &[u8]) -> Result<Proposal, WireError> {
    if b.len() < 4 {
        return Err(WireError::Truncated);
    }
    let (number, protocol, spi_len, count) = (b[0], b[1], b[2] as usize, b[3] as usize);
    let spi = b.get(4..4 + spi_len).ok_or(WireError::Truncated)?.to_vec();
    let mut transforms = Vec::new();
    for t in parse_chain(Kind::TRANSFORM, &b[4 + spi_len..], false)? {
        if t.kind != Kind::TRANSFORM || t.body.len() < 4 {
            return Err(WireError::BadSaStructure);
        }
        transforms.push(Transform {
            number: t.body[0],
            id: t.body[1],
            attrs: parse_attrs(&t.body[4..])?,
        });
    }
    if transforms.len() != count {
        return Err(WireError::BadSaStructure);
    }
    Ok(Proposal {
        number,
        protocol,
        spi,
        transforms,
    })
}

/// ID types (RFC 2407 §4.6.2.1).
pub mod id_type {
    /// ID_IPV4_ADDR.
    pub const IPV4_ADDR: u8 = 1;
    /// ID_FQDN.
    pub const FQDN: u8 = 2;
    /// ID_USER_FQDN.
    pub const USER_FQDN: u8 = 3;
    /// ID_IPV4_ADDR_SUBNET.
    pub const IPV4_ADDR_SUBNET: u8 = 4;
    /// ID_IPV6_ADDR.
    pub const IPV6_ADDR: u8 = 5;
    /// ID_IPV6_ADDR_SUBNET.
    pub const IPV6_ADDR_SUBNET: u8 = 6;
    /// ID_IPV4_ADDR_RANGE.
    pub const IPV4_ADDR_RANGE: u8 = 7;
    /// ID_IPV6_ADDR_RANGE.
    pub const IPV6_ADDR_RANGE: u8 = 8;
}

/// An identification payload (RFC 2407 §4.6.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdPayload<'a> {
    /// ID type.
    pub id_type: u8,
    /// IP protocol (0 = any).
    pub protocol: u8,
    /// Port (0 = any).
    pub port: u16,
    /// Identification data.
    pub data: &'a [u8],
}

impl<'a> IdPayload<'a> {
    /// Decodes an ID payload body.
    pub fn parse(body: &'a [u8]) -> Result<IdPayload<'a>, WireError> {
        if body.len() < 4 {
            return Err(WireError::Truncated);
        }
        Ok(IdPayload {
            id_type: body[0],
            protocol: body[1],
            port: be16(body, 2)?,
            data: &body[4..],
        })
    }

    /// Encodes the body.
    pub fn emit(&self) -> Vec<u8> {
        let mut out = vec![self.id_type, self.protocol];
        out.extend_from_slice(&self.port.to_be_bytes());
        out.extend_from_slice(self.data);
        out
    }
}

/// A notification payload (RFC 2408 §3.14).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotifyPayload<'a> {
    /// Protocol.
    pub protocol: u8,
    /// Message type.
    pub kind: u16,
    /// SPI (the two cookies for ISAKMP, 4 bytes for ESP, or empty).
    pub spi: &'a [u8],
    /// Notification data.
    pub data: &'a [u8],
}

impl<'a> NotifyPayload<'a> {
    /// Decodes a notification body.
    pub fn parse(body: &'a [u8]) -> Result<NotifyPayload<'a>, WireError> {
        let _doi = be32(body, 0)?;
        let spi_len = *body.get(5).ok_or(WireError::Truncated)? as usize;
        let kind = be16(body, 6)?;
        let spi = body.get(8..8 + spi_len).ok_or(WireError::Truncated)?;
        Ok(NotifyPayload {
            protocol: body[4],
            kind,
            spi,
            data: &body[8 + spi_len..],
        })
    }

    /// Encodes the body (IPsec DOI).
    pub fn emit(&self) -> Vec<u8> {
        let mut out = DOI_IPSEC.to_be_bytes().to_vec();
        out.push(self.protocol);
        out.push(self.spi.len() as u8);
        out.extend_from_slice(&self.kind.to_be_bytes());
        out.extend_from_slice(self.spi);
        out.extend_from_slice(self.data);
        out
    }
}

/// Notify message types used here.
pub mod notify {
    /// INVALID-PAYLOAD-TYPE.
    pub const INVALID_PAYLOAD_TYPE: u16 = 1;
    /// NO-PROPOSAL-CHOSEN.
    pub const NO_PROPOSAL_CHOSEN: u16 = 14;
    /// INVALID-ID-INFORMATION.
    pub const INVALID_ID_INFORMATION: u16 = 18;
    /// AUTHENTICATION-FAILED.
    pub const AUTHENTICATION_FAILED: u16 = 24;
    /// INVALID-HASH-INFORMATION.
    pub const INVALID_HASH_INFORMATION: u16 = 23;
    /// RESPONDER-LIFETIME (RFC 2407 §4.6.3.1).
    pub const RESPONDER_LIFETIME: u16 = 24576;
    /// INITIAL-CONTACT (RFC 2407 §4.6.3.3).
    pub const INITIAL_CONTACT: u16 = 24578;
    /// R-U-THERE (RFC 3706).
    pub const R_U_THERE: u16 = 36136;
    /// R-U-THERE-ACK (RFC 3706).
    pub const R_U_THERE_ACK: u16 = 36137;
}

/// A delete payload (RFC 2408 §3.15).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeletePayload<'a> {
    /// Protocol.
    pub protocol: u8,
    /// The SPIs (each of the announced size).
    pub spis: Vec<&'a [u8]>,
}

impl<'a> DeletePayload<'a> {
    /// Decodes a delete body.
    pub fn parse(body: &'a [u8]) -> Result<DeletePayload<'a>, WireError> {
        let _doi = be32(body, 0)?;
        let protocol = *body.get(4).ok_or(WireError::Truncated)?;
        let spi_len = *body.get(5).ok_or(WireError::Truncated)? as usize;
        let count = be16(body, 6)? as usize;
        let rest = &body[8..];
        if spi_len == 0 || rest.len() != spi_len.saturating_mul(count) {
            return Err(WireError::BadPayloadLength);
        }
        Ok(DeletePayload {
            protocol,
            spis: rest.chunks(spi_len).collect(),
        })
    }

    /// Encodes the body; every SPI must have the length of the first.
    pub fn emit(&self) -> Vec<u8> {
        let mut out = DOI_IPSEC.to_be_bytes().to_vec();
        out.push(self.protocol);
        out.push(self.spis.first().map_or(0, |s| s.len() as u8));
        out.extend_from_slice(&(self.spis.len() as u16).to_be_bytes());
        for s in &self.spis {
            out.extend_from_slice(s);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            cookie_i: 0x0102030405060708,
            cookie_r: 0,
            next: Kind::NONE,
            exchange: Exchange::MAIN,
            flags: 0,
            message_id: 0,
            length: 0,
        }
    }

    #[test]
    fn sa_roundtrip_with_long_lifetime() {
        let sa = SaPayload {
            proposals: vec![Proposal {
                number: 1,
                protocol: PROTO_ESP,
                spi: vec![1, 2, 3, 4],
                transforms: vec![Transform {
                    number: 1,
                    id: 12,
                    attrs: vec![
                        Attr { kind: 1, value: 1 },
                        Attr {
                            kind: 2,
                            value: 86_400,
                        },
                        Attr {
                            kind: 6,
                            value: 128,
                        },
                    ],
                }],
            }],
        };
        let body = sa.emit();
        assert_eq!(SaPayload::parse(&body).unwrap(), sa);
        let msg = emit_plain(
            header(),
            &[(Kind::SA, body), (Kind::VENDOR_ID, vec![7; 16])],
        );
        let m = Message::parse(&msg).unwrap();
        assert_eq!(m.header.cookie_i, 0x0102030405060708);
        assert_eq!(m.payloads.len(), 2);
        assert_eq!(m.first(Kind::VENDOR_ID).unwrap().body, &[7; 16]);
    }

    #[test]
    fn malformed_is_refused() {
        let msg = emit_plain(header(), &[(Kind::NONCE, vec![1; 16])]);
        let mut bad = msg.clone();
        bad[17] = 0x20;
        assert_eq!(Message::parse(&bad), Err(WireError::BadVersion(0x20)));
        let mut bad = msg.clone();
        bad[HEADER_LEN + 3] = 200;
        assert_eq!(Message::parse(&bad), Err(WireError::BadPayloadLength));
        let mut bad = msg.clone();
        bad.push(0);
        assert_eq!(Message::parse(&bad), Err(WireError::BadLength));
        assert_eq!(Message::parse(&msg[..20]), Err(WireError::Truncated));
        assert_eq!(
            DeletePayload::parse(&[0, 0, 0, 1, 3, 4, 0, 2, 1, 2, 3, 4]),
            Err(WireError::BadPayloadLength)
        );
        assert_eq!(
            SaPayload::parse(&[0, 0, 0, 2, 0, 0, 0, 1]),
            Err(WireError::BadDoi)
        );
    }

    #[test]
    fn notify_and_delete_roundtrip() {
        let n = NotifyPayload {
            protocol: PROTO_ISAKMP,
            kind: notify::R_U_THERE,
            spi: &[9; 16],
            data: &[0, 0, 0, 5],
        };
        assert_eq!(NotifyPayload::parse(&n.emit()).unwrap(), n);
        let d = DeletePayload {
            protocol: PROTO_ESP,
            spis: vec![&[1, 2, 3, 4], &[5, 6, 7, 8]],
        };
        assert_eq!(DeletePayload::parse(&d.emit()).unwrap(), d);
        let id = IdPayload {
            id_type: id_type::IPV4_ADDR_SUBNET,
            protocol: 0,
            port: 0,
            data: &[10, 1, 0, 0, 255, 255, 255, 0],
        };
        assert_eq!(IdPayload::parse(&id.emit()).unwrap(), id);
    }
}
