//! The fixed 28-byte IKE header (RFC 7296 §3.1).

use super::{ExchangeType, ParseError, PayloadType};

/// Length of the IKE header.
pub const HEADER_LEN: usize = 28;

/// IKE header flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Flags(pub u8);

impl Flags {
    /// Sent by the original initiator of the IKE SA.
    pub const INITIATOR: Flags = Flags(0x08);
    /// Higher version supported.
    pub const VERSION: Flags = Flags(0x10);
    /// This message is a response.
    pub const RESPONSE: Flags = Flags(0x20);

    /// Whether every bit of `other` is set.
    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl core::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

/// The IKE header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// IKE SA initiator's SPI.
    pub spi_i: u64,
    /// IKE SA responder's SPI (0 in the first IKE_SA_INIT request).
    pub spi_r: u64,
    /// Type of the first payload.
    pub next_payload: PayloadType,
    /// Major version (2).
    pub major: u8,
    /// Minor version (0).
    pub minor: u8,
    /// Exchange type.
    pub exchange: ExchangeType,
    /// Flags.
    pub flags: Flags,
    /// Message ID.
    pub message_id: u32,
    /// Total message length including the header.
    pub length: u32,
}

impl Header {
    /// Creates a version 2.0 header; `length`/`next_payload` are set on emit.
    pub fn new(
        spi_i: u64,
        spi_r: u64,
        exchange: ExchangeType,
        flags: Flags,
        message_id: u32,
    ) -> Self {
        Header {
            spi_i,
            spi_r,
            next_payload: PayloadType::NONE,
            major: 2,
            minor: 0,
            exchange,
            flags,
            message_id,
            length: 0,
        }
    }

    /// Parses and validates the header of a whole datagram: the Length field
    /// must equal `buf.len()` and the major version must be 2.
    pub fn parse(buf: &[u8]) -> Result<Header, ParseError> {
        let h = Self::parse_unchecked(buf)?;
        if h.major != 2 {
            return Err(ParseError::UnsupportedMajorVersion(h.major));
        }
        if h.length as usize != buf.len() {
            return Err(ParseError::BadMessageLength);
        }
        Ok(h)
    }

    /// Parses the 28 header bytes without validating version or length.
    pub fn parse_unchecked(buf: &[u8]) -> Result<Header, ParseError> {
        if buf.len() < HEADER_LEN {
            return Err(ParseError::Truncated);
        }
        let u64_at = |o: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[o..o + 8]);
            u64::from_be_bytes(b)
        };
        let u32_at = |o: usize| u32::from_be_bytes([buf[o], buf[o + 1], buf[o + 2], buf[o + 3]]);
        Ok(Header {
            spi_i: u64_at(0),
            spi_r: u64_at(8),
            next_payload: PayloadType(buf[16]),
            major: buf[17] >> 4,
            minor: buf[17] & 0x0f,
            exchange: ExchangeType(buf[18]),
            flags: Flags(buf[19]),
            message_id: u32_at(20),
            length: u32_at(24),
        })
    }

    /// Writes the header into the first 28 bytes of `buf`.
    ///
    /// # Panics
    /// If `buf` is shorter than [`HEADER_LEN`] (a caller bug, never input).
    pub fn emit(&self, buf: &mut [u8]) {
        buf[0..8].copy_from_slice(&self.spi_i.to_be_bytes());
        buf[8..16].copy_from_slice(&self.spi_r.to_be_bytes());
        buf[16] = self.next_payload.0;
        buf[17] = (self.major << 4) | (self.minor & 0x0f);
        buf[18] = self.exchange.0;
        buf[19] = self.flags.0;
        buf[20..24].copy_from_slice(&self.message_id.to_be_bytes());
        buf[24..28].copy_from_slice(&self.length.to_be_bytes());
    }

    /// Whether the RESPONSE flag is set.
    pub fn is_response(&self) -> bool {
        self.flags.contains(Flags::RESPONSE)
    }

    /// Whether the INITIATOR flag is set (sender is the original initiator).
    pub fn is_initiator(&self) -> bool {
        self.flags.contains(Flags::INITIATOR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_checks() {
        let mut h = Header::new(1, 2, ExchangeType::IKE_AUTH, Flags::INITIATOR, 7);
        h.length = 28;
        let mut buf = [0u8; 28];
        h.emit(&mut buf);
        assert_eq!(Header::parse(&buf), Ok(h));
        assert_eq!(Header::parse(&buf[..27]), Err(ParseError::Truncated));
        let mut long = buf.to_vec();
        long.push(0);
        assert_eq!(Header::parse(&long), Err(ParseError::BadMessageLength));
        buf[17] = 0x30;
        assert_eq!(
            Header::parse(&buf),
            Err(ParseError::UnsupportedMajorVersion(3))
        );
    }
}
