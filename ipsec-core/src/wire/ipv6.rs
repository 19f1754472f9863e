//! IPv6 header view (RFC 8200), with a bounded walk over extension headers to
//! find the upper-layer protocol for traffic-selector matching.

use core::net::Ipv6Addr;

use super::{be16, IpProtocol, WireError};

/// Length of the fixed IPv6 header.
pub const HEADER_LEN: usize = 40;

/// Extension headers walked at most before giving up.
const MAX_EXT_HEADERS: usize = 16;

/// A read view of an IPv6 packet.
#[derive(Debug, Clone)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

/// The upper-layer header found behind the IPv6 extension headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpperLayer {
    /// Upper-layer protocol (TCP, UDP, ICMPv6, ... or the last header seen).
    pub protocol: IpProtocol,
    /// Offset of the upper-layer header from the start of the IPv6 packet.
    pub offset: usize,
    /// True if a Fragment header with a non-zero offset was seen: the
    /// upper-layer header is not in this packet.
    pub non_initial_fragment: bool,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Wraps a buffer without checks.
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv6Packet { buffer }
    }

    /// Wraps a buffer after checking the version and that the payload length
    /// fits in the buffer (trailing bytes are allowed).
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Performs the checks of [`Ipv6Packet::new_checked`].
    pub fn check_len(&self) -> Result<(), WireError> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if b[0] >> 4 != 6 {
            return Err(WireError::BadVersion);
        }
        if HEADER_LEN + usize::from(self.payload_len()) > b.len() {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// IP version nibble (6 for a checked packet).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[0] >> 4
    }

    /// Traffic class byte.
    pub fn traffic_class(&self) -> u8 {
        let b = self.buffer.as_ref();
        (b[0] << 4) | (b[1] >> 4)
    }

    /// Payload length field (bytes after the fixed header).
    pub fn payload_len(&self) -> u16 {
        be16(self.buffer.as_ref(), 4)
    }

    /// Total packet length implied by the header (40 + payload length).
    pub fn total_len(&self) -> usize {
        HEADER_LEN + usize::from(self.payload_len())
    }

    /// Next header of the fixed header.
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol(self.buffer.as_ref()[6])
    }

    /// Hop limit.
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[7]
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[8..24]);
        Ipv6Addr::from(a)
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[24..40]);
        Ipv6Addr::from(a)
    }

    /// The payload (extension headers included).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.total_len()]
    }

    /// Walks Hop-by-Hop, Routing, Fragment, Destination Options and AH
    /// headers to the upper-layer protocol. Fails with
    /// [`WireError::Truncated`] if an extension header runs past the packet
    /// or the chain is longer than 16 headers.
    pub fn upper_layer(&self) -> Result<UpperLayer, WireError> {
        let b = &self.buffer.as_ref()[..self.total_len()];
        let mut nh = self.next_header();
        let mut off = HEADER_LEN;
        let mut non_initial_fragment = false;
        for _ in 0..MAX_EXT_HEADERS {
            let len = match nh {
                IpProtocol::HOPOPT | IpProtocol::IPV6_ROUTE | IpProtocol::IPV6_OPTS => {
                    let l = b.get(off + 1).ok_or(WireError::Truncated)?;
                    (usize::from(*l) + 1) * 8
                }
                IpProtocol::IPV6_FRAG => {
                    let fo = b.get(off + 2..off + 4).ok_or(WireError::Truncated)?;
                    if u16::from_be_bytes([fo[0], fo[1]]) & 0xfff8 != 0 {
                        non_initial_fragment = true;
                    }
                    8
                }
                IpProtocol::AH => {
                    let l = b.get(off + 1).ok_or(WireError::Truncated)?;
                    (usize::from(*l) + 2) * 4
                }
                protocol => {
                    return Ok(UpperLayer {
                        protocol,
                        offset: off,
                        non_initial_fragment,
                    })
                }
            };
            let next = *b.get(off).ok_or(WireError::Truncated)?;
            if off + len > b.len() {
                return Err(WireError::Truncated);
            }
            if non_initial_fragment {
                // Nothing after a non-initial fragment header is parseable.
                return Ok(UpperLayer {
                    protocol: IpProtocol(next),
                    offset: off + len,
                    non_initial_fragment,
                });
            }
            nh = IpProtocol(next);
            off += len;
        }
        Err(WireError::Truncated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(next: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0x60, 0, 0, 0];
        v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        v.push(next);
        v.push(64);
        v.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        v.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn fields() {
        let v = packet(17, &[1, 2, 3, 4, 5, 6, 7, 8]);
        let p = Ipv6Packet::new_checked(&v[..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(p.next_header(), IpProtocol::UDP);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.src_addr(), Ipv6Addr::LOCALHOST);
        assert_eq!(p.payload().len(), 8);
        let ul = p.upper_layer().unwrap();
        assert_eq!(ul.protocol, IpProtocol::UDP);
        assert_eq!(ul.offset, 40);
    }

    #[test]
    fn walks_extension_headers() {
        // Hop-by-hop (8 bytes) -> Fragment (offset 0) -> TCP.
        let mut pl = vec![44, 0, 0, 0, 0, 0, 0, 0];
        pl.extend_from_slice(&[6, 0, 0, 0, 0, 0, 0, 1]);
        pl.extend_from_slice(&[0u8; 20]);
        let v = packet(0, &pl);
        let ul = Ipv6Packet::new_checked(&v[..])
            .unwrap()
            .upper_layer()
            .unwrap();
        assert_eq!(ul.protocol, IpProtocol::TCP);
        assert_eq!(ul.offset, 56);
        assert!(!ul.non_initial_fragment);
        // Same with fragment offset 8: non-initial.
        let mut pl2 = pl.clone();
        pl2[10..12].copy_from_slice(&8u16.to_be_bytes());
        let v = packet(0, &pl2);
        let ul = Ipv6Packet::new_checked(&v[..])
            .unwrap()
            .upper_layer()
            .unwrap();
        assert!(ul.non_initial_fragment);
        assert_eq!(ul.protocol, IpProtocol::TCP);
    }

    #[test]
    fn rejects_bad_inputs() {
        assert_eq!(
            Ipv6Packet::new_checked(&[0x60u8; 39][..]).unwrap_err(),
            WireError::Truncated
        );
        let mut v = packet(17, &[0; 4]);
        v[0] = 0x40;
        assert_eq!(
            Ipv6Packet::new_checked(&v[..]).unwrap_err(),
            WireError::BadVersion
        );
        v[0] = 0x60;
        v[5] = 5;
        assert_eq!(
            Ipv6Packet::new_checked(&v[..]).unwrap_err(),
            WireError::Truncated
        );
        // Extension header running past the end.
        let v = packet(0, &[6, 3, 0, 0]);
        let p = Ipv6Packet::new_checked(&v[..]).unwrap();
        assert_eq!(p.upper_layer().unwrap_err(), WireError::Truncated);
        // Endless chain of destination options.
        let pl: Vec<u8> = [60u8, 0, 0, 0, 0, 0, 0, 0].repeat(20);
        let v = packet(60, &pl);
        let p = Ipv6Packet::new_checked(&v[..]).unwrap();
        assert_eq!(p.upper_layer().unwrap_err(), WireError::Truncated);
    }
}
