//! UDP encapsulation of ESP (RFC 3948) and a minimal UDP header emitter.
//!
//! On UDP port 4500 three kinds of payload share the socket:
//! ESP (first four bytes are a non-zero SPI), IKE (prefixed by the four-byte
//! zero "non-ESP marker") and NAT-keepalives (a single 0xFF byte).

use core::net::IpAddr;

use super::{be16, checksum, IpProtocol, WireError};

/// The NAT-T port (RFC 3948).
pub const NAT_T_PORT: u16 = 4500;
/// The UDP header length.
pub const HEADER_LEN: usize = 8;
/// Length of the non-ESP marker that prefixes IKE messages on port 4500.
pub const NON_ESP_MARKER_LEN: usize = 4;

/// What a UDP/4500 payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UdpDatagram {
    /// An ESP packet starting at offset 0 (SPI non-zero, at least 8 bytes).
    Esp,
    /// An IKE message starting after the 4-byte non-ESP marker.
    Ike {
        /// Offset of the IKE header in the payload (always 4).
        offset: usize,
    },
    /// A NAT-keepalive (RFC 3948 §2.3): a single 0xFF byte.
    Keepalive,
}

/// Classifies the payload of a datagram received on UDP port 4500.
///
/// Fails with [`WireError::Truncated`] for payloads that are none of the
/// three kinds (empty, 1 byte other than 0xFF, fewer than 8 bytes of ESP).
pub fn classify_udp_4500(payload: &[u8]) -> Result<UdpDatagram, WireError> {
    match payload {
        [0xff] => Ok(UdpDatagram::Keepalive),
        [0, 0, 0, 0, ..] => Ok(UdpDatagram::Ike {
            offset: NON_ESP_MARKER_LEN,
        }),
        p if p.len() >= super::esp::HEADER_LEN => Ok(UdpDatagram::Esp),
        _ => Err(WireError::Truncated),
    }
}

/// A UDP header to emit in front of an encapsulated ESP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
}

impl UdpRepr {
    /// Parses the ports of a UDP header.
    pub fn parse(header: &[u8]) -> Result<UdpRepr, WireError> {
        if header.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(UdpRepr {
            src_port: be16(header, 0),
            dst_port: be16(header, 2),
        })
    }

    /// Writes the 8-byte header into `datagram[..8]`; the payload must
    /// already be in `datagram[8..]`. For IPv4 the checksum is left zero as
    /// RFC 3948 §3.1 recommends; for IPv6 it is computed over the pseudo
    /// header (RFC 8200 §8.1).
    pub fn emit(&self, datagram: &mut [u8], src: IpAddr, dst: IpAddr) -> Result<(), WireError> {
        if datagram.len() < HEADER_LEN {
            return Err(WireError::BufferTooSmall);
        }
        let len = u16::try_from(datagram.len()).map_err(|_| WireError::BadTotalLength)?;
        datagram[0..2].copy_from_slice(&self.src_port.to_be_bytes());
        datagram[2..4].copy_from_slice(&self.dst_port.to_be_bytes());
        datagram[4..6].copy_from_slice(&len.to_be_bytes());
        datagram[6..8].copy_from_slice(&[0, 0]);
        if let (IpAddr::V6(s), IpAddr::V6(d)) = (src, dst) {
            let acc = checksum::pseudo_header_v6(s, d, IpProtocol::UDP, datagram.len());
            let c = match checksum::finish(checksum::add(acc, datagram)) {
                0 => 0xffff,
                c => c,
            };
            datagram[6..8].copy_from_slice(&c.to_be_bytes());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify() {
        assert_eq!(classify_udp_4500(&[0xff]), Ok(UdpDatagram::Keepalive));
        assert_eq!(
            classify_udp_4500(&[0, 0, 0, 0, 1, 2]),
            Ok(UdpDatagram::Ike { offset: 4 })
        );
        assert_eq!(
            classify_udp_4500(&[0, 0, 0, 1, 0, 0, 0, 1]),
            Ok(UdpDatagram::Esp)
        );
        assert_eq!(classify_udp_4500(&[]), Err(WireError::Truncated));
        assert_eq!(classify_udp_4500(&[0xfe]), Err(WireError::Truncated));
        assert_eq!(classify_udp_4500(&[0, 0, 0]), Err(WireError::Truncated));
        assert_eq!(
            classify_udp_4500(&[1, 2, 3, 4, 5, 6, 7]),
            Err(WireError::Truncated)
        );
    }

    #[test]
    fn emit_v6_checksum_verifies() {
        let src: IpAddr = "2001:db8::1".parse().unwrap();
        let dst: IpAddr = "2001:db8::2".parse().unwrap();
        let mut d = [0u8; 13];
        d[8..].copy_from_slice(b"hello");
        UdpRepr {
            src_port: 4500,
            dst_port: 4500,
        }
        .emit(&mut d, src, dst)
        .unwrap();
        let (IpAddr::V6(s), IpAddr::V6(t)) = (src, dst) else {
            unreachable!()
        };
        let acc = checksum::pseudo_header_v6(s, t, IpProtocol::UDP, 13);
        assert_eq!(checksum::finish(checksum::add(acc, &d)), 0);
        assert_eq!(UdpRepr::parse(&d).unwrap().dst_port, 4500);
        // IPv4: checksum zero.
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        UdpRepr {
            src_port: 1,
            dst_port: 2,
        }
        .emit(&mut d, v4, v4)
        .unwrap();
        assert_eq!(&d[4..8], &[0, 13, 0, 0]);
    }
}
