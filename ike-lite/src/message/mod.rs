//! IKEv2 message codec (RFC 7296 §3, RFC 7383 fragments).
//!
//! This module owns the wire format: the fixed IKE header ([`Header`]), every
//! payload the endpoint speaks ([`Payload`]), payload chains
//! ([`parse_payloads`], [`emit_payloads`]) and the reassembly of encrypted
//! fragments ([`Reassembler`]). Parsing is strict: every length field is
//! checked against the buffer, unknown non-critical payloads are skipped and
//! unknown critical ones are reported as
//! [`ParseError::UnsupportedCritical`] so that the caller can answer with
//! `UNSUPPORTED_CRITICAL_PAYLOAD`. Nothing here panics on network input.

mod frag;
mod header;
mod payload;
mod types;

pub use frag::{FragError, Reassembler};
pub use header::{Flags, Header, HEADER_LEN};
pub use payload::{
    emit_payloads, parse_payloads, Delete, Encrypted, Fragment, IdPayload, KePayload, Notify,
    Payload, Proposal, Transform, TsPayload,
};
pub use types::{
    AuthMethod, ExchangeType, IdType, NotifyType, PayloadType, ProtocolId, TransformType,
};

use core::fmt;

/// Why an IKE message or payload could not be parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseError {
    /// The datagram is shorter than the 28-byte IKE header.
    Truncated,
    /// The header's Length field does not match the datagram length.
    BadMessageLength,
    /// The major version is not 2 (answer with `INVALID_MAJOR_VERSION`).
    UnsupportedMajorVersion(u8),
    /// A generic payload header or payload body runs past the buffer.
    PayloadTruncated(PayloadType),
    /// A payload length field is smaller than the payload's fixed part.
    PayloadLength(PayloadType),
    /// A payload body is inconsistent (the `&str` names the field).
    Malformed(PayloadType, &'static str),
    /// An unknown payload with the critical bit set (RFC 7296 §2.5).
    UnsupportedCritical(PayloadType),
    /// An SK/SKF payload was not the last payload of the message.
    EncryptedNotLast,
    /// Bytes were left after the last payload of the chain.
    TrailingBytes,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Truncated => f.write_str("datagram shorter than the IKE header"),
            ParseError::BadMessageLength => f.write_str("IKE header length mismatch"),
            ParseError::UnsupportedMajorVersion(v) => write!(f, "unsupported major version {v}"),
            ParseError::PayloadTruncated(t) => write!(f, "payload {t:?} truncated"),
            ParseError::PayloadLength(t) => write!(f, "payload {t:?} has a bad length"),
            ParseError::Malformed(t, what) => write!(f, "payload {t:?} malformed: {what}"),
            ParseError::UnsupportedCritical(t) => write!(f, "unsupported critical payload {t:?}"),
            ParseError::EncryptedNotLast => f.write_str("encrypted payload is not last"),
            ParseError::TrailingBytes => f.write_str("trailing bytes after the last payload"),
        }
    }
}

impl std::error::Error for ParseError {}

/// A whole IKE message: header plus its (outer) payload chain.
///
/// An encrypted message carries a single [`Payload::Encrypted`] or
/// [`Payload::Fragment`] whose plaintext is parsed separately with
/// [`parse_payloads`] after decryption.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The IKE header (its `length` and `next_payload` are recomputed on emit).
    pub header: Header,
    /// The payload chain.
    pub payloads: Vec<Payload>,
}

impl Message {
    /// Parses a datagram (without the non-ESP marker).
    pub fn parse(buf: &[u8]) -> Result<Message, ParseError> {
        let header = Header::parse(buf)?;
        let payloads = parse_payloads(header.next_payload, &buf[HEADER_LEN..])?;
        Ok(Message { header, payloads })
    }

    /// Serializes the message, fixing up `length` and `next_payload`.
    pub fn emit(&self) -> Vec<u8> {
        let mut out = vec![0u8; HEADER_LEN];
        let first = emit_payloads(&self.payloads, &mut out);
        let mut header = self.header;
        header.next_payload = first;
        header.length = out.len() as u32;
        header.emit(&mut out[..HEADER_LEN]);
        out
    }

    /// Serializes `header` followed by an SK payload header whose plaintext is
    /// `inner`, ready for sealing. Returns the buffer and the offset of the SK
    /// generic payload header. Lengths are fixed up by the sealer.
    pub fn emit_unsealed(header: &Header, inner: &[Payload]) -> (Vec<u8>, usize) {
        let mut out = vec![0u8; HEADER_LEN + 4];
        let first = emit_payloads(inner, &mut out);
        let mut h = *header;
        h.next_payload = PayloadType::SK;
        h.length = out.len() as u32;
        h.emit(&mut out[..HEADER_LEN]);
        out[HEADER_LEN] = first.0;
        let sk_len = (out.len() - HEADER_LEN) as u16;
        out[HEADER_LEN + 2..HEADER_LEN + 4].copy_from_slice(&sk_len.to_be_bytes());
        (out, HEADER_LEN)
    }

    /// Finds the first notify of type `ty`.
    pub fn notify(&self, ty: NotifyType) -> Option<&Notify> {
        find_notify(&self.payloads, ty)
    }
}

/// Finds the first notify of type `ty` in a payload chain.
pub fn find_notify(payloads: &[Payload], ty: NotifyType) -> Option<&Notify> {
    payloads.iter().find_map(|p| match p {
        Payload::Notify(n) if n.ty == ty => Some(n),
        _ => None,
    })
}

/// Returns the first error notify (type below 16384) in a payload chain.
pub fn find_error_notify(payloads: &[Payload]) -> Option<&Notify> {
    payloads.iter().find_map(|p| match p {
        Payload::Notify(n) if n.ty.is_error() => Some(n),
        _ => None,
    })
}

#[cfg(test)]
mod tests;
