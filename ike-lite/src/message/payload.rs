//! Payload bodies and payload chains (RFC 7296 §3.2-§3.16, RFC 7383 §2.5).

use super::{AuthMethod, IdType, NotifyType, ParseError, PayloadType, ProtocolId, TransformType};
use crate::ts::TrafficSelector;

/// Transform attribute type "Key Length" (RFC 7296 §3.3.5).
const ATTR_KEY_LENGTH: u16 = 14;

/// One transform of a proposal (RFC 7296 §3.3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Transform {
    /// Transform type.
    pub ty: TransformType,
    /// Transform ID within the type.
    pub id: u16,
    /// Key Length attribute in bits, if present.
    pub key_len: Option<u16>,
    /// Whether the transform carried attributes other than Key Length; such
    /// a transform must not be selected (RFC 7296 §3.3.6).
    pub unknown_attrs: bool,
}

impl Transform {
    /// A transform without attributes.
    pub fn new(ty: TransformType, id: u16) -> Self {
        Transform {
            ty,
            id,
            key_len: None,
            unknown_attrs: false,
        }
    }

    /// A transform with a Key Length attribute.
    pub fn with_key_len(ty: TransformType, id: u16, bits: u16) -> Self {
        Transform {
            ty,
            id,
            key_len: Some(bits),
            unknown_attrs: false,
        }
    }
}

/// One proposal of an SA payload (RFC 7296 §3.3.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proposal {
    /// Proposal number (1-based).
    pub num: u8,
    /// Protocol (IKE or ESP).
    pub protocol: ProtocolId,
    /// SPI (empty for the first IKE_SA_INIT, 8 bytes for IKE rekey, 4 for ESP).
    pub spi: Vec<u8>,
    /// Transforms.
    pub transforms: Vec<Transform>,
}

impl Proposal {
    /// The transforms of one type, in order.
    pub fn of_type(&self, ty: TransformType) -> impl Iterator<Item = &Transform> + '_ {
        self.transforms.iter().filter(move |t| t.ty == ty)
    }
}

/// Key Exchange payload (RFC 7296 §3.4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KePayload {
    /// Diffie-Hellman group number.
    pub group: u16,
    /// Public value.
    pub data: Vec<u8>,
}

/// Identification payload body (RFC 7296 §3.5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdPayload {
    /// ID type.
    pub id_type: IdType,
    /// Identification data.
    pub data: Vec<u8>,
}

impl IdPayload {
    /// The payload body as used for the AUTH computation (RFC 7296 §2.15):
    /// type, three reserved bytes, data.
    pub fn body(&self) -> Vec<u8> {
        let mut v = vec![self.id_type.0, 0, 0, 0];
        v.extend_from_slice(&self.data);
        v
    }
}

/// Traffic Selector payload body (RFC 7296 §3.13).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TsPayload {
    /// The selectors.
    pub selectors: Vec<TrafficSelector>,
}

/// Notify payload (RFC 7296 §3.10).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notify {
    /// Protocol the SPI belongs to (NONE without SPI).
    pub protocol: ProtocolId,
    /// SPI (often empty).
    pub spi: Vec<u8>,
    /// Notify message type.
    pub ty: NotifyType,
    /// Notification data.
    pub data: Vec<u8>,
}

impl Notify {
    /// A notify without SPI.
    pub fn new(ty: NotifyType, data: Vec<u8>) -> Self {
        Notify {
            protocol: ProtocolId::NONE,
            spi: Vec::new(),
            ty,
            data,
        }
    }
}

/// Delete payload (RFC 7296 §3.11).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delete {
    /// IKE (no SPIs) or ESP.
    pub protocol: ProtocolId,
    /// The SPIs to delete (all of the same size).
    pub spis: Vec<Vec<u8>>,
}

/// Encrypted payload (RFC 7296 §3.14): `IV | ciphertext | ICV`, opaque here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encrypted {
    /// Type of the first inner payload.
    pub first: PayloadType,
    /// IV, ciphertext and ICV.
    pub data: Vec<u8>,
}

/// Encrypted fragment payload (RFC 7383 §2.5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fragment {
    /// Type of the first inner payload (only in fragment 1, else NONE).
    pub first: PayloadType,
    /// Fragment number, 1-based.
    pub number: u16,
    /// Total number of fragments.
    pub total: u16,
    /// IV, ciphertext and ICV.
    pub data: Vec<u8>,
}

/// A parsed payload.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Payload {
    /// Security Association.
    Sa(Vec<Proposal>),
    /// Key Exchange.
    Ke(KePayload),
    /// Nonce.
    Nonce(Vec<u8>),
    /// Identification - Initiator.
    IdI(IdPayload),
    /// Identification - Responder.
    IdR(IdPayload),
    /// Authentication.
    Auth {
        /// Method.
        method: AuthMethod,
        /// Authentication data.
        data: Vec<u8>,
    },
    /// Traffic Selector - Initiator.
    TsI(TsPayload),
    /// Traffic Selector - Responder.
    TsR(TsPayload),
    /// Notify.
    Notify(Notify),
    /// Delete.
    Delete(Delete),
    /// Vendor ID.
    Vendor(Vec<u8>),
    /// A known payload type this endpoint does not interpret (CERT, CERTREQ,
    /// CP, EAP), kept opaque.
    Other {
        /// Payload type.
        ty: PayloadType,
        /// Body.
        body: Vec<u8>,
    },
    /// Encrypted and Authenticated (SK); always last.
    Encrypted(Encrypted),
    /// Encrypted and Authenticated Fragment (SKF); always last.
    Fragment(Fragment),
}

impl Payload {
    /// The payload type on the wire.
    pub fn ty(&self) -> PayloadType {
        match self {
            Payload::Sa(_) => PayloadType::SA,
            Payload::Ke(_) => PayloadType::KE,
            Payload::Nonce(_) => PayloadType::NONCE,
            Payload::IdI(_) => PayloadType::IDI,
            Payload::IdR(_) => PayloadType::IDR,
            Payload::Auth { .. } => PayloadType::AUTH,
            Payload::TsI(_) => PayloadType::TSI,
            Payload::TsR(_) => PayloadType::TSR,
            Payload::Notify(_) => PayloadType::NOTIFY,
            Payload::Delete(_) => PayloadType::DELETE,
            Payload::Vendor(_) => PayloadType::VENDOR,
            Payload::Other { ty, .. } => *ty,
            Payload::Encrypted(_) => PayloadType::SK,
            Payload::Fragment(_) => PayloadType::SKF,
        }
    }
}

fn be16(b: &[u8], o: usize) -> u16 {
    u16::from_be_bytes([b[o], b[o + 1]])
}

/// Parses a payload chain starting with type `first` that must span `buf`.
pub fn parse_payloads(first: PayloadType, buf: &[u8]) -> Result<Vec<Payload>, ParseError> {
    let mut out = Vec::new();
    let mut next = first;
    let mut off = 0usize;
    while next != PayloadType::NONE {
        let ty = next;
        let rest = &buf[off..];
        if rest.len() < 4 {
            return Err(ParseError::PayloadTruncated(ty));
        }
        let critical = rest[1] & 0x80 != 0;
        let len = be16(rest, 2) as usize;
        if len < 4 {
            return Err(ParseError::PayloadLength(ty));
        }
        if len > rest.len() {
            return Err(ParseError::PayloadTruncated(ty));
        }
        next = PayloadType(rest[0]);
        let body = &rest[4..len];
        off += len;
        match ty {
            PayloadType::SK | PayloadType::SKF => {
                if off != buf.len() {
                    return Err(ParseError::EncryptedNotLast);
                }
                if ty == PayloadType::SK {
                    out.push(Payload::Encrypted(Encrypted {
                        first: next,
                        data: body.to_vec(),
                    }));
                } else {
                    if body.len() < 4 {
                        return Err(ParseError::PayloadLength(ty));
                    }
                    let number = be16(body, 0);
                    let total = be16(body, 2);
                    if number == 0 || total == 0 || number > total {
                        return Err(ParseError::Malformed(ty, "fragment number"));
                    }
                    out.push(Payload::Fragment(Fragment {
                        first: next,
                        number,
                        total,
                        data: body[4..].to_vec(),
                    }));
                }
                return Ok(out);
            }
            _ => {}
        }
        match parse_body(ty, body)? {
            Some(p) => out.push(p),
            None if critical => return Err(ParseError::UnsupportedCritical(ty)),
            None => {}
        }
    }
    if off != buf.len() {
        return Err(ParseError::TrailingBytes);
    }
    Ok(out)
}

/// Parses one payload body; `None` for an unknown type.
fn parse_body(ty: PayloadType, b: &[u8]) -> Result<Option<Payload>, ParseError> {
    let short = |n: usize| {
        if b.len() < n {
            Err(ParseError::PayloadLength(ty))
        } else {
            Ok(())
        }
    };
    Ok(Some(match ty {
        PayloadType::SA => Payload::Sa(parse_sa(b)?),
        PayloadType::KE => {
            short(4)?;
            Payload::Ke(KePayload {
                group: be16(b, 0),
                data: b[4..].to_vec(),
            })
        }
        PayloadType::NONCE => {
            // RFC 7296 §3.9: between 16 and 256 octets.
            if b.len() < 16 || b.len() > 256 {
                return Err(ParseError::Malformed(ty, "nonce length"));
            }
            Payload::Nonce(b.to_vec())
        }
        PayloadType::IDI | PayloadType::IDR => {
            short(4)?;
            let id = IdPayload {
                id_type: IdType(b[0]),
                data: b[4..].to_vec(),
            };
            if ty == PayloadType::IDI {
                Payload::IdI(id)
            } else {
                Payload::IdR(id)
            }
        }
        PayloadType::AUTH => {
            short(4)?;
            Payload::Auth {
                method: AuthMethod(b[0]),
                data: b[4..].to_vec(),
            }
        }
        PayloadType::TSI | PayloadType::TSR => {
            let ts = parse_ts(ty, b)?;
            if ty == PayloadType::TSI {
                Payload::TsI(ts)
            } else {
                Payload::TsR(ts)
            }
        }
        PayloadType::NOTIFY => {
            short(4)?;
            let spi_len = b[1] as usize;
            short(4 + spi_len)?;
            Payload::Notify(Notify {
                protocol: ProtocolId(b[0]),
                spi: b[4..4 + spi_len].to_vec(),
                ty: NotifyType(be16(b, 2)),
                data: b[4 + spi_len..].to_vec(),
            })
        }
        PayloadType::DELETE => {
            short(4)?;
            let protocol = ProtocolId(b[0]);
            let spi_len = b[1] as usize;
            let n = be16(b, 2) as usize;
            if b.len() != 4 + spi_len * n {
                return Err(ParseError::Malformed(ty, "delete SPI count"));
            }
            if protocol == ProtocolId::IKE && (spi_len != 0 || n != 0) {
                return Err(ParseError::Malformed(ty, "IKE delete with SPIs"));
            }
            if (protocol == ProtocolId::ESP || protocol == ProtocolId::AH) && spi_len != 4 {
                return Err(ParseError::Malformed(ty, "child SPI size"));
            }
            let spis = if spi_len == 0 {
                Vec::new()
            } else {
                b[4..].chunks_exact(spi_len).map(<[u8]>::to_vec).collect()
            };
            Payload::Delete(Delete { protocol, spis })
        }
        PayloadType::VENDOR => Payload::Vendor(b.to_vec()),
        PayloadType::CERT | PayloadType::CERTREQ | PayloadType::CP | PayloadType::EAP => {
            Payload::Other {
                ty,
                body: b.to_vec(),
            }
        }
        _ => return Ok(None),
    }))
}

fn parse_sa(b: &[u8]) -> Result<Vec<Proposal>, ParseError> {
    const T: PayloadType = PayloadType::SA;
    let mut props = Vec::new();
    let mut off = 0;
    loop {
        let r = &b[off..];
        if r.len() < 8 {
            return Err(ParseError::Malformed(T, "proposal truncated"));
        }
        let last = r[0];
        let plen = be16(r, 2) as usize;
        if plen < 8 || plen > r.len() {
            return Err(ParseError::Malformed(T, "proposal length"));
        }
        let num = r[4];
        let protocol = ProtocolId(r[5]);
        let spi_len = r[6] as usize;
        let ntrans = r[7] as usize;
        if 8 + spi_len > plen {
            return Err(ParseError::Malformed(T, "proposal SPI size"));
        }
        let spi = r[8..8 + spi_len].to_vec();
        let transforms = parse_transforms(&r[8 + spi_len..plen], ntrans)?;
        props.push(Proposal {
            num,
            protocol,
            spi,
            transforms,
        });
        off += plen;
        match last {
            0 => break,
            2 => continue,
            _ => return Err(ParseError::Malformed(T, "proposal last substruc")),
        }
    }
    if off != b.len() {
        return Err(ParseError::Malformed(T, "bytes after last proposal"));
    }
    Ok(props)
}

fn parse_transforms(b: &[u8], n: usize) -> Result<Vec<Transform>, ParseError> {
    const T: PayloadType = PayloadType::SA;
    let mut out = Vec::with_capacity(n.min(64));
    let mut off = 0;
    for i in 0..n {
        let r = &b[off..];
        if r.len() < 8 {
            return Err(ParseError::Malformed(T, "transform truncated"));
        }
        let last = r[0];
        let tlen = be16(r, 2) as usize;
        if tlen < 8 || tlen > r.len() {
            return Err(ParseError::Malformed(T, "transform length"));
        }
        let expected_last = if i + 1 == n { 0 } else { 3 };
        if last != expected_last {
            return Err(ParseError::Malformed(T, "transform count"));
        }
        let mut t = Transform::new(TransformType(r[4]), be16(r, 6));
        let mut a = &r[8..tlen];
        while !a.is_empty() {
            if a.len() < 4 {
                return Err(ParseError::Malformed(T, "attribute truncated"));
            }
            let af = a[0] & 0x80 != 0;
            let aty = be16(a, 0) & 0x7fff;
            let used = if af {
                if aty == ATTR_KEY_LENGTH {
                    t.key_len = Some(be16(a, 2));
                } else {
                    t.unknown_attrs = true;
                }
                4
            } else {
                let vlen = be16(a, 2) as usize;
                if 4 + vlen > a.len() {
                    return Err(ParseError::Malformed(T, "attribute length"));
                }
                // Key Length must be TV; a TLV one is an attribute we do not know.
                t.unknown_attrs = true;
                4 + vlen
            };
            a = &a[used..];
        }
        out.push(t);
        off += tlen;
    }
    if off != b.len() {
        return Err(ParseError::Malformed(T, "transform count"));
    }
    Ok(out)
}

fn parse_ts(ty: PayloadType, b: &[u8]) -> Result<TsPayload, ParseError> {
    if b.len() < 4 {
        return Err(ParseError::PayloadLength(ty));
    }
    let n = b[0] as usize;
    let mut off = 4;
    let mut selectors = Vec::with_capacity(n);
    for _ in 0..n {
        let (ts, len) =
            crate::ts::decode(&b[off..]).map_err(|e| ParseError::Malformed(ty, e.as_str()))?;
        selectors.push(ts);
        off += len;
    }
    if off != b.len() {
        return Err(ParseError::Malformed(ty, "selector count"));
    }
    Ok(TsPayload { selectors })
}

/// Appends a payload chain to `out` and returns the type of its first payload
/// (to be written into the preceding header). An [`Payload::Encrypted`] or
/// [`Payload::Fragment`] must be last; its inner type goes into its own
/// Next Payload field.
pub fn emit_payloads(payloads: &[Payload], out: &mut Vec<u8>) -> PayloadType {
    let mut next_field: Option<usize> = None;
    for p in payloads {
        if let Some(at) = next_field {
            out[at] = p.ty().0;
        }
        let start = out.len();
        out.extend_from_slice(&[0, 0, 0, 0]);
        next_field = Some(start);
        emit_body(p, out);
        let len = (out.len() - start) as u16;
        out[start + 2..start + 4].copy_from_slice(&len.to_be_bytes());
        match p {
            Payload::Encrypted(e) => out[start] = e.first.0,
            Payload::Fragment(f) => out[start] = f.first.0,
            _ => {}
        }
    }
    payloads.first().map_or(PayloadType::NONE, Payload::ty)
}

fn emit_body(p: &Payload, out: &mut Vec<u8>) {
    match p {
        Payload::Sa(props) => {
            for (i, pr) in props.iter().enumerate() {
                let start = out.len();
                let last = if i + 1 == props.len() { 0 } else { 2 };
                out.extend_from_slice(&[last, 0, 0, 0, pr.num, pr.protocol.0]);
                out.push(pr.spi.len() as u8);
                out.push(pr.transforms.len() as u8);
                out.extend_from_slice(&pr.spi);
                for (j, t) in pr.transforms.iter().enumerate() {
                    let last = if j + 1 == pr.transforms.len() { 0 } else { 3 };
                    let tlen: u16 = if t.key_len.is_some() { 12 } else { 8 };
                    out.extend_from_slice(&[last, 0]);
                    out.extend_from_slice(&tlen.to_be_bytes());
                    out.extend_from_slice(&[t.ty.0, 0]);
                    out.extend_from_slice(&t.id.to_be_bytes());
                    if let Some(k) = t.key_len {
                        out.extend_from_slice(&(0x8000 | ATTR_KEY_LENGTH).to_be_bytes());
                        out.extend_from_slice(&k.to_be_bytes());
                    }
                }
                let plen = (out.len() - start) as u16;
                out[start + 2..start + 4].copy_from_slice(&plen.to_be_bytes());
            }
        }
        Payload::Ke(ke) => {
            out.extend_from_slice(&ke.group.to_be_bytes());
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&ke.data);
        }
        Payload::Nonce(n) | Payload::Vendor(n) => out.extend_from_slice(n),
        Payload::IdI(id) | Payload::IdR(id) => out.extend_from_slice(&id.body()),
        Payload::Auth { method, data } => {
            out.extend_from_slice(&[method.0, 0, 0, 0]);
            out.extend_from_slice(data);
        }
        Payload::TsI(ts) | Payload::TsR(ts) => {
            out.extend_from_slice(&[ts.selectors.len() as u8, 0, 0, 0]);
            for s in &ts.selectors {
                crate::ts::encode(s, out);
            }
        }
        Payload::Notify(n) => {
            out.extend_from_slice(&[n.protocol.0, n.spi.len() as u8]);
            out.extend_from_slice(&n.ty.0.to_be_bytes());
            out.extend_from_slice(&n.spi);
            out.extend_from_slice(&n.data);
        }
        Payload::Delete(d) => {
            let spi_len = d.spis.first().map_or(0, Vec::len) as u8;
            out.extend_from_slice(&[d.protocol.0, spi_len]);
            out.extend_from_slice(&(d.spis.len() as u16).to_be_bytes());
            for s in &d.spis {
                out.extend_from_slice(s);
            }
        }
        Payload::Other { body, .. } => out.extend_from_slice(body),
        Payload::Encrypted(e) => out.extend_from_slice(&e.data),
        Payload::Fragment(f) => {
            out.extend_from_slice(&f.number.to_be_bytes());
            out.extend_from_slice(&f.total.to_be_bytes());
            out.extend_from_slice(&f.data);
        }
    }
}
