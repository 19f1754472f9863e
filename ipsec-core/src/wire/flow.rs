//! Extraction of the selector fields (RFC 4301 §4.4.1.1) from an IP packet.

use core::net::IpAddr;

use super::{be16, IpProtocol, Ipv4Packet, Ipv6Packet, WireError};

/// Transport "ports" of a packet as traffic selectors see them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ports {
    /// Source and destination port (TCP, UDP, UDP-Lite, SCTP); for ICMP and
    /// ICMPv6 both carry `type << 8 | code` (RFC 7296 §3.13.1).
    Known {
        /// Source port (or ICMP type/code).
        src: u16,
        /// Destination port (or ICMP type/code).
        dst: u16,
    },
    /// Not available: non-initial fragment, a first fragment too short to
    /// hold them, or a protocol without ports. Only "any port" selectors
    /// match (RFC 4301 §4.4.1.1 OPAQUE).
    Opaque,
}

/// Addresses, protocol and ports of an IP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Upper-layer protocol (after IPv6 extension headers).
    pub protocol: IpProtocol,
    /// Ports, or ICMP type/code.
    pub ports: Ports,
}

fn ports_at(protocol: IpProtocol, l4: &[u8]) -> Ports {
    match protocol {
        IpProtocol::TCP | IpProtocol::UDP | IpProtocol::UDPLITE | IpProtocol::SCTP
            if l4.len() >= 4 =>
        {
            Ports::Known {
                src: be16(l4, 0),
                dst: be16(l4, 2),
            }
        }
        IpProtocol::ICMP | IpProtocol::ICMPV6 if l4.len() >= 2 => {
            let tc = be16(l4, 0);
            Ports::Known { src: tc, dst: tc }
        }
        _ => Ports::Opaque,
    }
}

impl FlowKey {
    /// Parses an IPv4 or IPv6 packet (chosen by the version nibble) and
    /// returns its flow key and the length its header claims (which may be
    /// shorter than `packet`; callers needing an exact size compare it).
    pub fn parse(packet: &[u8]) -> Result<(FlowKey, usize), WireError> {
        match packet.first().map(|b| b >> 4) {
            Some(4) => Self::parse_v4(packet),
            Some(6) => Self::parse_v6(packet),
            Some(_) => Err(WireError::BadVersion),
            None => Err(WireError::Truncated),
        }
    }

    /// Parses an IPv4 packet; see [`FlowKey::parse`].
    #[inline(always)] // one caller per packet path; avoids a result copy
    pub fn parse_v4(packet: &[u8]) -> Result<(FlowKey, usize), WireError> {
        let p = Ipv4Packet::new_checked(packet)?;
        let protocol = p.protocol();
        let ports = if p.frag_offset() != 0 {
            Ports::Opaque
        } else {
            ports_at(protocol, p.payload())
        };
        Ok((
            FlowKey {
                src: p.src_addr().into(),
                dst: p.dst_addr().into(),
                protocol,
                ports,
            },
            usize::from(p.total_len()),
        ))
    }

    /// Parses an IPv6 packet; see [`FlowKey::parse`].
    #[inline(always)]
    pub fn parse_v6(packet: &[u8]) -> Result<(FlowKey, usize), WireError> {
        let p = Ipv6Packet::new_checked(packet)?;
        let ul = p.upper_layer()?;
        let total = p.total_len();
        let ports = if ul.non_initial_fragment {
            Ports::Opaque
        } else {
            ports_at(ul.protocol, &packet[ul.offset..total])
        };
        Ok((
            FlowKey {
                src: p.src_addr().into(),
                dst: p.dst_addr().into(),
                protocol: ul.protocol,
                ports,
            },
            total,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(proto: u8, frag: u16, l4: &[u8]) -> Vec<u8> {
        let mut v = vec![
            0x45, 0, 0, 0, 0, 0, 0, 0, 64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        v[6..8].copy_from_slice(&(frag >> 3).to_be_bytes());
        v.extend_from_slice(l4);
        let tl = v.len() as u16;
        v[2..4].copy_from_slice(&tl.to_be_bytes());
        v
    }

    #[test]
    fn v4_ports_and_icmp() {
        let (k, tl) = FlowKey::parse(&v4(6, 0, &[0, 80, 0x1f, 0x90, 0, 0])).unwrap();
        assert_eq!(tl, 26);
        assert_eq!(k.protocol, IpProtocol::TCP);
        assert_eq!(k.ports, Ports::Known { src: 80, dst: 8080 });
        assert_eq!(k.src, "10.0.0.1".parse::<IpAddr>().unwrap());
        let (k, _) = FlowKey::parse(&v4(1, 0, &[8, 0, 0, 0])).unwrap();
        assert_eq!(
            k.ports,
            Ports::Known {
                src: 0x0800,
                dst: 0x0800
            }
        );
        let (k, _) = FlowKey::parse(&v4(17, 8, &[0, 80, 0, 80])).unwrap();
        assert_eq!(k.ports, Ports::Opaque);
        let (k, _) = FlowKey::parse(&v4(17, 0, &[0, 80])).unwrap();
        assert_eq!(k.ports, Ports::Opaque);
        let (k, _) = FlowKey::parse(&v4(47, 0, &[0, 80, 0, 80])).unwrap();
        assert_eq!(k.ports, Ports::Opaque);
    }

    #[test]
    fn v6_ports() {
        let mut v = vec![0x60, 0, 0, 0, 0, 4, 17, 64];
        v.extend_from_slice(&[0u8; 32]);
        v.extend_from_slice(&[0x11, 0x94, 0, 53]);
        let (k, tl) = FlowKey::parse(&v).unwrap();
        assert_eq!(tl, 44);
        assert_eq!(k.ports, Ports::Known { src: 4500, dst: 53 });
    }

    #[test]
    fn bad_version() {
        assert_eq!(
            FlowKey::parse(&[0x50; 40]).unwrap_err(),
            WireError::BadVersion
        );
        assert_eq!(FlowKey::parse(&[]).unwrap_err(), WireError::Truncated);
    }
}
