//! Checked zero-copy views of the packets the ESP data plane touches.
//!
//! This module owns parsing and emitting of the ESP header and trailer
//! (RFC 4303 §2), the IPv4 and IPv6 headers (only the fields tunnel mode and
//! traffic selectors need), RFC 3948 UDP encapsulation classification, and the
//! extraction of a [`FlowKey`] (addresses, protocol, ports) from an inner packet,
//! and the Internet [`checksum`] every layer above uses.
//!
//! Every view follows the smoltcp pattern: `Packet::new_unchecked` wraps a
//! buffer, `Packet::new_checked` additionally validates every length the
//! accessors rely on, so accessors on a checked view never panic.

use core::fmt;

pub mod checksum;
pub mod esp;
pub mod flow;
pub mod ipv4;
pub mod ipv6;
pub mod udp;

pub use esp::{EspPacket, EspTrailer};
pub use flow::{FlowKey, Ports};
pub use ipv4::{Ipv4Packet, Ipv4Repr};
pub use ipv6::Ipv6Packet;
pub use udp::{classify_udp_4500, UdpDatagram, UdpRepr};

/// Why a buffer could not be viewed as a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireError {
    /// The buffer is shorter than the header or a length field requires.
    Truncated,
    /// The IP version nibble is not the expected one.
    BadVersion,
    /// A header length field is inconsistent (IHL < 5, total length smaller
    /// than the header, ...).
    BadHeaderLength,
    /// A length field disagrees with the number of bytes present.
    BadTotalLength,
    /// The ESP pad length points outside the payload.
    BadPadLength,
    /// The ESP padding bytes are not the monotonic 1, 2, 3, ... sequence.
    BadPadding,
    /// An output buffer is too small for the header to be emitted.
    BufferTooSmall,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WireError::Truncated => "packet truncated",
            WireError::BadVersion => "wrong IP version",
            WireError::BadHeaderLength => "bad header length",
            WireError::BadTotalLength => "length field disagrees with packet size",
            WireError::BadPadLength => "ESP pad length out of range",
            WireError::BadPadding => "ESP padding not monotonic",
            WireError::BufferTooSmall => "output buffer too small",
        })
    }
}

impl std::error::Error for WireError {}

/// IANA "Assigned Internet Protocol Numbers" (IPv4 protocol / IPv6 next header).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpProtocol(pub u8);

impl IpProtocol {
    /// IPv6 Hop-by-Hop options.
    pub const HOPOPT: IpProtocol = IpProtocol(0);
    /// ICMP for IPv4.
    pub const ICMP: IpProtocol = IpProtocol(1);
    /// IPv4 encapsulation (IP-in-IP); ESP next header for an inner IPv4 packet.
    pub const IPV4: IpProtocol = IpProtocol(4);
    /// TCP.
    pub const TCP: IpProtocol = IpProtocol(6);
    /// UDP.
    pub const UDP: IpProtocol = IpProtocol(17);
    /// IPv6 encapsulation; ESP next header for an inner IPv6 packet.
    pub const IPV6: IpProtocol = IpProtocol(41);
    /// IPv6 Routing header.
    pub const IPV6_ROUTE: IpProtocol = IpProtocol(43);
    /// IPv6 Fragment header.
    pub const IPV6_FRAG: IpProtocol = IpProtocol(44);
    /// Encapsulating Security Payload.
    pub const ESP: IpProtocol = IpProtocol(50);
    /// Authentication Header.
    pub const AH: IpProtocol = IpProtocol(51);
    /// ICMP for IPv6.
    pub const ICMPV6: IpProtocol = IpProtocol(58);
    /// "No next header": ESP dummy packets (RFC 4303 §2.6) carry this.
    pub const NO_NEXT_HEADER: IpProtocol = IpProtocol(59);
    /// IPv6 Destination options.
    pub const IPV6_OPTS: IpProtocol = IpProtocol(60);
    /// SCTP.
    pub const SCTP: IpProtocol = IpProtocol(132);
    /// UDP-Lite.
    pub const UDPLITE: IpProtocol = IpProtocol(136);
}

impl fmt::Debug for IpProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match *self {
            IpProtocol::HOPOPT => "HOPOPT",
            IpProtocol::ICMP => "ICMP",
            IpProtocol::IPV4 => "IPv4",
            IpProtocol::TCP => "TCP",
            IpProtocol::UDP => "UDP",
            IpProtocol::IPV6 => "IPv6",
            IpProtocol::IPV6_ROUTE => "IPv6-Route",
            IpProtocol::IPV6_FRAG => "IPv6-Frag",
            IpProtocol::ESP => "ESP",
            IpProtocol::AH => "AH",
            IpProtocol::ICMPV6 => "ICMPv6",
            IpProtocol::NO_NEXT_HEADER => "IPv6-NoNxt",
            IpProtocol::IPV6_OPTS => "IPv6-Opts",
            IpProtocol::SCTP => "SCTP",
            IpProtocol::UDPLITE => "UDPLite",
            IpProtocol(n) => return write!(f, "IpProtocol({n})"),
        };
        f.write_str(name)
    }
}

/// Reads a big-endian u16 at `at`; callers guarantee the bounds.
#[inline]
pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Reads a big-endian u32 at `at`; callers guarantee the bounds.
#[inline]
pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_debug_names() {
        assert_eq!(format!("{:?}", IpProtocol::ESP), "ESP");
        assert_eq!(format!("{:?}", IpProtocol(253)), "IpProtocol(253)");
    }
}
