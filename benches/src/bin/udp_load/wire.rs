//! The generator's datagram header: sequence number and run id at the
//! start of every UDP payload, and the IP/UDP size arithmetic.

use std::fmt;

/// IPv4 header without options.
pub const IPV4_HEADER: usize = 20;
/// UDP header.
pub const UDP_HEADER: usize = 8;
/// Generator header at the start of the payload: sequence number (u64) and
/// run id (u64), both big-endian.
pub const HEADER_LEN: usize = 16;
/// Smallest `--size` (IP packet bytes) that holds the generator header.
pub const MIN_IP_SIZE: usize = IPV4_HEADER + UDP_HEADER + HEADER_LEN;
/// Largest IPv4 packet.
pub const MAX_IP_SIZE: usize = 65_535;
/// Sequence number of the end-of-run marker the sender sends after the data.
pub const END_MARKER_SEQ: u64 = u64::MAX;

/// UDP payload bytes of an IPv4 packet of `ip_size` bytes.
pub fn payload_len(ip_size: usize) -> usize {
    ip_size.saturating_sub(IPV4_HEADER + UDP_HEADER)
}

/// The generator header of one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Sequence number within the run (`END_MARKER_SEQ` = end marker).
    pub seq: u64,
    /// Run id; the receiver ignores datagrams of other runs.
    pub run_id: u64,
}

/// Why a received datagram is not a generator datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// Shorter than the header.
    Short {
        /// Datagram length.
        len: usize,
    },
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Short { len } => {
                write!(
                    f,
                    "datagram of {len} bytes is shorter than the {HEADER_LEN}-byte header"
                )
            }
        }
    }
}

impl Header {
    /// Writes the header into the first `HEADER_LEN` bytes of `buf`.
    /// Returns `Err` (and writes nothing) if `buf` is shorter.
    pub fn encode(&self, buf: &mut [u8]) -> Result<(), WireError> {
        let Some(h) = buf.get_mut(..HEADER_LEN) else {
            return Err(WireError::Short { len: buf.len() });
        };
        h[..8].copy_from_slice(&self.seq.to_be_bytes());
        h[8..].copy_from_slice(&self.run_id.to_be_bytes());
        Ok(())
    }

    /// Reads the header from the start of a received payload.
    pub fn decode(buf: &[u8]) -> Result<Header, WireError> {
        let (Some(s), Some(r)) = (buf.get(..8), buf.get(8..HEADER_LEN)) else {
            return Err(WireError::Short { len: buf.len() });
        };
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        let seq = u64::from_be_bytes(a);
        a.copy_from_slice(r);
        Ok(Header {
            seq,
            run_id: u64::from_be_bytes(a),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_layout_is_big_endian_seq_then_run_id() {
        let mut buf = [0xaau8; 20];
        Header {
            seq: 0x0102_0304_0506_0708,
            run_id: 0x1112_1314_1516_1718,
        }
        .encode(&mut buf)
        .unwrap();
        assert_eq!(
            buf,
            [
                1, 2, 3, 4, 5, 6, 7, 8, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0xaa, 0xaa,
                0xaa, 0xaa
            ]
        );
    }

    #[test]
    fn decode_roundtrip_and_short() {
        let h = Header {
            seq: 42,
            run_id: u64::MAX - 1,
        };
        let mut buf = vec![0u8; HEADER_LEN];
        h.encode(&mut buf).unwrap();
        assert_eq!(Header::decode(&buf), Ok(h));
        for len in 0..HEADER_LEN {
            assert_eq!(Header::decode(&buf[..len]), Err(WireError::Short { len }));
        }
        let mut short = [0u8; 15];
        assert_eq!(h.encode(&mut short), Err(WireError::Short { len: 15 }));
        assert_eq!(short, [0u8; 15]);
    }

    #[test]
    fn sizes() {
        assert_eq!(MIN_IP_SIZE, 44);
        assert_eq!(payload_len(64), 36);
        assert_eq!(payload_len(1400), 1372);
        assert_eq!(payload_len(MIN_IP_SIZE), HEADER_LEN);
        assert_eq!(payload_len(MAX_IP_SIZE), 65_507);
    }
}
