//! Traffic selectors in IKE: the TSi/TSr wire form (RFC 7296 §3.13.1) and
//! narrowing (§2.9).
//!
//! The selector type itself is [`ipsec_core::selector::TrafficSelector`],
//! shared with the ESP layer (re-exported here): what IKE negotiates is
//! exactly what the SAD and SPD enforce. IP protocol 0 on the wire ("any")
//! is `protocol: None`.

use ipsec_core::wire::IpProtocol;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use ipsec_core::selector::{SelectorError, TrafficSelector};

/// TS_IPV4_ADDR_RANGE.
const TS_IPV4: u8 = 7;
/// TS_IPV6_ADDR_RANGE.
const TS_IPV6: u8 = 8;
/// Fixed part of a selector: type, protocol, length, two ports.
const FIXED_LEN: usize = 8;

/// Why one selector of a TS payload did not decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WireError {
    /// Fewer bytes than the selector needs.
    Truncated,
    /// Neither TS_IPV4_ADDR_RANGE nor TS_IPV6_ADDR_RANGE.
    UnknownType,
    /// The selector length disagrees with its type.
    BadLength,
}

impl WireError {
    /// The text used in [`ParseError::Malformed`](crate::message::ParseError).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            WireError::Truncated => "selector truncated",
            WireError::UnknownType => "unknown selector type",
            WireError::BadLength => "selector length",
        }
    }
}

/// The wire's IP protocol ID (0 = any) as a selector protocol.
fn protocol_from_wire(b: u8) -> Option<IpProtocol> {
    (b != 0).then_some(IpProtocol(b))
}

/// A selector protocol as the wire's IP protocol ID (0 = any).
fn protocol_to_wire(p: Option<IpProtocol>) -> u8 {
    p.map_or(0, |p| p.0)
}

/// Decodes the selector at the start of `r`; returns it and its length.
pub(crate) fn decode(r: &[u8]) -> Result<(TrafficSelector, usize), WireError> {
    if r.len() < FIXED_LEN {
        return Err(WireError::Truncated);
    }
    let be16 = |o: usize| u16::from_be_bytes([r[o], r[o + 1]]);
    let len = usize::from(be16(2));
    let alen = match r[0] {
        TS_IPV4 => 4,
        TS_IPV6 => 16,
        _ => return Err(WireError::UnknownType),
    };
    if len != FIXED_LEN + 2 * alen || len > r.len() {
        return Err(WireError::BadLength);
    }
    let addr = |o: usize| -> IpAddr {
        if alen == 4 {
            IpAddr::V4(Ipv4Addr::new(r[o], r[o + 1], r[o + 2], r[o + 3]))
        } else {
            let mut a = [0u8; 16];
            a.copy_from_slice(&r[o..o + 16]);
            IpAddr::V6(Ipv6Addr::from(a))
        }
    };
    let ts = TrafficSelector {
        start: addr(FIXED_LEN),
        end: addr(FIXED_LEN + alen),
        protocol: protocol_from_wire(r[1]),
        start_port: be16(4),
        end_port: be16(6),
    };
    Ok((ts, len))
}

/// Appends the wire form of `s` to `out`.
pub(crate) fn encode(s: &TrafficSelector, out: &mut Vec<u8>) {
    let (ty, len) = if s.is_ipv4() {
        (TS_IPV4, 16u16)
    } else {
        (TS_IPV6, 40u16)
    };
    out.extend_from_slice(&[ty, protocol_to_wire(s.protocol)]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&s.start_port.to_be_bytes());
    out.extend_from_slice(&s.end_port.to_be_bytes());
    for a in [s.start, s.end] {
        match a {
            IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
            IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
        }
    }
}

/// Narrows `proposed` to what `allowed` permits (RFC 7296 §2.9): the
/// pairwise intersections, without duplicates. Empty means unacceptable.
pub fn narrow(allowed: &[TrafficSelector], proposed: &[TrafficSelector]) -> Vec<TrafficSelector> {
    let mut out = Vec::new();
    for p in proposed {
        for a in allowed {
            if let Some(ts) = a.intersect(p) {
                if !out.contains(&ts) {
                    out.push(ts);
                }
            }
        }
    }
    out
}

/// Whether every selector in `got` lies inside some selector of `within`.
pub fn all_within(within: &[TrafficSelector], got: &[TrafficSelector]) -> bool {
    !got.is_empty() && got.iter().all(|g| within.iter().any(|w| w.contains(g)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> TrafficSelector {
        s.parse().unwrap()
    }

    #[test]
    fn narrowing() {
        let (wide, part) = (ts("10.1.0.0/16"), ts("10.1.2.0/24"));
        let any = TrafficSelector::any_v4();
        assert_eq!(narrow(&[any], &[any]), vec![any]);
        assert_eq!(narrow(&[part], &[any]), vec![part]);
        assert_eq!(narrow(&[wide, part], &[any]), vec![wide, part]);
        assert!(narrow(&[ts("192.168.0.0/24")], &[part]).is_empty());
        assert!(narrow(&[TrafficSelector::any_v6()], &[any]).is_empty());
        assert!(all_within(&[wide], &[part]));
        assert!(!all_within(&[part], &[wide]));
        assert!(!all_within(&[wide], &[]));
    }

    #[test]
    fn wire_round_trip_and_any_protocol() {
        let web = TrafficSelector::any_v4()
            .with_protocol(IpProtocol::TCP)
            .with_ports(80, 90);
        for s in [web, ts("2001:db8::/32"), TrafficSelector::any_v4()] {
            let mut b = Vec::new();
            encode(&s, &mut b);
            assert_eq!(decode(&b), Ok((s, b.len())));
        }
        let mut b = Vec::new();
        encode(&TrafficSelector::any_v4(), &mut b);
        assert_eq!(b[1], 0, "any protocol is 0 on the wire");
        assert_eq!(decode(&b[..7]), Err(WireError::Truncated));
        let mut bad = b.clone();
        bad[0] = 9;
        assert_eq!(decode(&bad), Err(WireError::UnknownType));
        bad[0] = TS_IPV6;
        assert_eq!(decode(&bad), Err(WireError::BadLength));
    }
}
