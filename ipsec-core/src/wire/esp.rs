//! ESP header and trailer (RFC 4303 §2).
//!
//! ```text
//! | SPI (4) | Sequence Number low (4) | IV | payload | padding | pad len | next hdr | ICV |
//! ```
//! The view covers the cleartext header; [`EspTrailer`] handles the
//! padding/pad-length/next-header trailer of a decrypted payload.

use super::{be32, IpProtocol, WireError};

/// Length of the SPI and sequence number fields.
pub const HEADER_LEN: usize = 8;
/// Length of the pad-length and next-header fields.
pub const TRAILER_LEN: usize = 2;

/// A view of an ESP packet (everything from the SPI to the end of the ICV).
#[derive(Debug, Clone)]
pub struct EspPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EspPacket<T> {
    /// Wraps a buffer without checks.
    pub const fn new_unchecked(buffer: T) -> Self {
        EspPacket { buffer }
    }

    /// Wraps a buffer after checking that the SPI and sequence number are
    /// present. IV, payload and ICV lengths depend on the SA and are checked
    /// there.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(Self::new_unchecked(buffer))
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Security Parameters Index.
    pub fn spi(&self) -> u32 {
        be32(self.buffer.as_ref(), 0)
    }

    /// Low 32 bits of the sequence number.
    pub fn seq(&self) -> u32 {
        be32(self.buffer.as_ref(), 4)
    }

    /// The 8 cleartext header bytes (authenticated, not encrypted).
    pub fn header(&self) -> &[u8] {
        &self.buffer.as_ref()[..HEADER_LEN]
    }

    /// Everything after the header: IV, ciphertext and ICV.
    pub fn body(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EspPacket<T> {
    /// Sets the SPI.
    pub fn set_spi(&mut self, spi: u32) {
        self.buffer.as_mut()[0..4].copy_from_slice(&spi.to_be_bytes());
    }

    /// Sets the low 32 bits of the sequence number.
    pub fn set_seq(&mut self, seq: u32) {
        self.buffer.as_mut()[4..8].copy_from_slice(&seq.to_be_bytes());
    }
}

/// The trailer of a decrypted ESP payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EspTrailer {
    /// Number of padding bytes before the pad-length field.
    pub pad_len: u8,
    /// Protocol of the payload (4 or 41 in tunnel mode, 59 for dummy packets).
    pub next_header: IpProtocol,
}

impl EspTrailer {
    /// Number of padding bytes needed after `inner_len` payload bytes so that
    /// payload + padding + 2 is a multiple of `block_len` and of 4.
    /// `block_len` must be 1, 2, 4, 8 or 16 (a power of two up to 128).
    pub fn pad_len_for(inner_len: usize, block_len: usize) -> u8 {
        let align = block_len.max(4);
        let rem = (inner_len + TRAILER_LEN) % align;
        // `align` is at most 128 by the contract, so this fits in u8.
        ((align - rem) % align) as u8
    }

    /// Parses and validates the trailer at the end of `plain` (the decrypted
    /// payload): the pad length must fit and the padding bytes must be the
    /// monotonic sequence 1, 2, 3, ... (RFC 4303 §2.4). Returns the trailer
    /// and the length of the protected data before the padding.
    #[inline]
    pub fn parse(plain: &[u8]) -> Result<(EspTrailer, usize), WireError> {
        let n = plain.len();
        if n < TRAILER_LEN {
            return Err(WireError::Truncated);
        }
        let pad_len = plain[n - 2];
        let next_header = IpProtocol(plain[n - 1]);
        let data_len = (n - TRAILER_LEN)
            .checked_sub(usize::from(pad_len))
            .ok_or(WireError::BadPadLength)?;
        let pad = &plain[data_len..n - TRAILER_LEN];
        // Non-short-circuit fold: the check costs the same for every input.
        let bad = pad
            .iter()
            .zip(1u8..=u8::MAX)
            .fold(0u8, |acc, (&b, want)| acc | (b ^ want));
        if bad != 0 {
            return Err(WireError::BadPadding);
        }
        Ok((
            EspTrailer {
                pad_len,
                next_header,
            },
            data_len,
        ))
    }

    /// Writes padding, pad length and next header into `buf`, which must be
    /// exactly `pad_len + 2` bytes long.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        let pl = usize::from(self.pad_len);
        if buf.len() != pl + TRAILER_LEN {
            return Err(WireError::BufferTooSmall);
        }
        for (b, v) in buf[..pl].iter_mut().zip(1u8..=u8::MAX) {
            *b = v;
        }
        buf[pl] = self.pad_len;
        buf[pl + 1] = self.next_header.0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The largest pad length (255) round-trips; the pad counter must not
    /// overflow past 255 (found by the `udp_encap_classify` fuzz target).
    #[test]
    fn trailer_with_maximum_padding() {
        let t = EspTrailer {
            pad_len: 255,
            next_header: IpProtocol(4),
        };
        let mut buf = vec![0u8; 3 + 255 + TRAILER_LEN];
        t.emit(&mut buf[3..]).unwrap();
        assert_eq!(buf[3 + 254], 255);
        let (parsed, data_len) = EspTrailer::parse(&buf).unwrap();
        assert_eq!(parsed.pad_len, 255);
        assert_eq!(data_len, 3);
    }

    #[test]
    fn header_fields() {
        let mut b = [0u8; 12];
        let mut p = EspPacket::new_checked(&mut b[..]).unwrap();
        p.set_spi(0x1234_5678);
        p.set_seq(0xdead_beef);
        assert_eq!(p.spi(), 0x1234_5678);
        assert_eq!(p.seq(), 0xdead_beef);
        assert_eq!(p.body().len(), 4);
        assert_eq!(
            EspPacket::new_checked(&b[..7]).unwrap_err(),
            WireError::Truncated
        );
    }

    #[test]
    fn pad_lengths() {
        assert_eq!(EspTrailer::pad_len_for(0, 1), 2);
        assert_eq!(EspTrailer::pad_len_for(2, 1), 0);
        assert_eq!(EspTrailer::pad_len_for(14, 16), 0);
        assert_eq!(EspTrailer::pad_len_for(15, 16), 15);
        for len in 0..100 {
            for bl in [1, 8, 16] {
                let p = usize::from(EspTrailer::pad_len_for(len, bl));
                assert_eq!((len + p + 2) % bl.max(4), 0);
                assert!(p < bl.max(4));
            }
        }
    }

    #[test]
    fn trailer_round_trip_and_errors() {
        let t = EspTrailer {
            pad_len: 5,
            next_header: IpProtocol::IPV4,
        };
        let mut buf = [0xaau8; 10];
        t.emit(&mut buf[3..]).unwrap();
        assert_eq!(&buf[3..], &[1, 2, 3, 4, 5, 5, 4]);
        assert_eq!(EspTrailer::parse(&buf).unwrap(), (t, 3));
        let mut bad = buf;
        bad[5] = 9;
        assert_eq!(EspTrailer::parse(&bad).unwrap_err(), WireError::BadPadding);
        let mut bad = buf;
        bad[8] = 9;
        assert_eq!(
            EspTrailer::parse(&bad).unwrap_err(),
            WireError::BadPadLength
        );
        assert_eq!(EspTrailer::parse(&[1]).unwrap_err(), WireError::Truncated);
        assert_eq!(
            t.emit(&mut [0u8; 3]).unwrap_err(),
            WireError::BufferTooSmall
        );
    }
}
