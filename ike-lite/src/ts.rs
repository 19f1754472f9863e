//! Traffic selectors (RFC 7296 §3.13.1) and their narrowing (§2.9).
//!
//! [`TrafficSelector`] is the simple type handed to the ESP layer in events:
//! an IP protocol (0 = any), a port range and an address range of one family.

use core::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One traffic selector: `ip_proto`, ports `start_port..=end_port` and
/// addresses `start..=end` (both of the same family).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TrafficSelector {
    /// IP protocol number, 0 for any.
    pub ip_proto: u8,
    /// First port (inclusive).
    pub start_port: u16,
    /// Last port (inclusive).
    pub end_port: u16,
    /// First address (inclusive).
    pub start: IpAddr,
    /// Last address (inclusive).
    pub end: IpAddr,
}

/// Why a traffic selector string or range is invalid.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TsError {
    /// The address part did not parse (the string is included).
    BadAddress(String),
    /// The prefix length is out of range.
    BadPrefix(String),
    /// Start and end are of different families or start > end.
    BadRange,
}

impl fmt::Display for TsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TsError::BadAddress(s) => write!(f, "bad address in traffic selector {s:?}"),
            TsError::BadPrefix(s) => write!(f, "bad prefix length in traffic selector {s:?}"),
            TsError::BadRange => f.write_str("traffic selector range is empty or mixes families"),
        }
    }
}

impl std::error::Error for TsError {}

fn to_u128(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

fn from_u128(v4: bool, v: u128) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from(v as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(v))
    }
}

impl TrafficSelector {
    /// Builds a selector from an address range; any protocol and port.
    pub fn range(start: IpAddr, end: IpAddr) -> Result<Self, TsError> {
        let ts = TrafficSelector {
            ip_proto: 0,
            start_port: 0,
            end_port: 0xffff,
            start,
            end,
        };
        if start.is_ipv4() != end.is_ipv4() || to_u128(start) > to_u128(end) {
            return Err(TsError::BadRange);
        }
        Ok(ts)
    }

    /// `0.0.0.0/0`, any protocol and port.
    pub fn any_v4() -> Self {
        TrafficSelector {
            ip_proto: 0,
            start_port: 0,
            end_port: 0xffff,
            start: Ipv4Addr::UNSPECIFIED.into(),
            end: Ipv4Addr::BROADCAST.into(),
        }
    }

    /// `::/0`, any protocol and port.
    pub fn any_v6() -> Self {
        TrafficSelector {
            ip_proto: 0,
            start_port: 0,
            end_port: 0xffff,
            start: Ipv6Addr::UNSPECIFIED.into(),
            end: Ipv6Addr::from(u128::MAX).into(),
        }
    }

    /// A single host address, any protocol and port.
    pub fn host(addr: IpAddr) -> Self {
        TrafficSelector {
            ip_proto: 0,
            start_port: 0,
            end_port: 0xffff,
            start: addr,
            end: addr,
        }
    }

    /// A subnet `addr/prefix` (host bits are ignored), any protocol and port.
    pub fn subnet(addr: IpAddr, prefix: u8) -> Result<Self, TsError> {
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > bits {
            return Err(TsError::BadPrefix(format!("{addr}/{prefix}")));
        }
        let v = to_u128(addr);
        let host_bits = u32::from(bits - prefix);
        let host_mask: u128 = if host_bits >= 128 {
            u128::MAX
        } else {
            (1u128 << host_bits) - 1
        };
        let start = v & !host_mask;
        let end = start | host_mask;
        Ok(TrafficSelector {
            ip_proto: 0,
            start_port: 0,
            end_port: 0xffff,
            start: from_u128(addr.is_ipv4(), start),
            end: from_u128(addr.is_ipv4(), end),
        })
    }

    /// Parses `a.b.c.d/n`, `x::/n` or a bare address.
    pub fn parse(s: &str) -> Result<Self, TsError> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| TsError::BadAddress(s.to_string()))?;
        match prefix {
            None => Ok(Self::host(addr)),
            Some(p) => {
                let p: u8 = p
                    .trim()
                    .parse()
                    .map_err(|_| TsError::BadPrefix(s.to_string()))?;
                Self::subnet(addr, p)
            }
        }
    }

    /// Whether this is an IPv4 selector.
    pub fn is_ipv4(&self) -> bool {
        self.start.is_ipv4()
    }

    /// Whether `addr` lies in the address range.
    pub fn contains_addr(&self, addr: IpAddr) -> bool {
        addr.is_ipv4() == self.is_ipv4()
            && to_u128(self.start) <= to_u128(addr)
            && to_u128(addr) <= to_u128(self.end)
    }

    /// Whether a packet with this protocol, address and port matches.
    pub fn matches(&self, ip_proto: u8, addr: IpAddr, port: u16) -> bool {
        (self.ip_proto == 0 || self.ip_proto == ip_proto)
            && self.contains_addr(addr)
            && (self.start_port..=self.end_port).contains(&port)
    }

    /// Whether `other` is entirely inside `self`.
    pub fn contains(&self, other: &TrafficSelector) -> bool {
        self.intersect(other).as_ref() == Some(other)
    }

    /// The intersection of two selectors, if not empty.
    pub fn intersect(&self, other: &TrafficSelector) -> Option<TrafficSelector> {
        if self.is_ipv4() != other.is_ipv4() {
            return None;
        }
        let ip_proto = match (self.ip_proto, other.ip_proto) {
            (0, p) | (p, 0) => p,
            (a, b) if a == b => a,
            _ => return None,
        };
        let start_port = self.start_port.max(other.start_port);
        let end_port = self.end_port.min(other.end_port);
        let start = to_u128(self.start).max(to_u128(other.start));
        let end = to_u128(self.end).min(to_u128(other.end));
        if start_port > end_port || start > end {
            return None;
        }
        let v4 = self.is_ipv4();
        Some(TrafficSelector {
            ip_proto,
            start_port,
            end_port,
            start: from_u128(v4, start),
            end: from_u128(v4, end),
        })
    }
}

impl fmt::Debug for TrafficSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)?;
        if self.ip_proto != 0 {
            write!(f, " proto {}", self.ip_proto)?;
        }
        if (self.start_port, self.end_port) != (0, 0xffff) {
            write!(f, " ports {}-{}", self.start_port, self.end_port)?;
        }
        Ok(())
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

    #[test]
    fn subnet_and_narrowing() {
        let a = TrafficSelector::parse("10.1.0.0/16").unwrap();
        assert_eq!(a.start, "10.1.0.0".parse::<IpAddr>().unwrap());
        assert_eq!(a.end, "10.1.255.255".parse::<IpAddr>().unwrap());
        let b = TrafficSelector::parse("10.1.2.0/24").unwrap();
        assert_eq!(a.intersect(&b), Some(b));
        assert!(a.contains(&b));
        assert!(!b.contains(&a));
        let any = TrafficSelector::any_v4();
        assert_eq!(narrow(&[any], &[any]), vec![any]);
        assert_eq!(narrow(&[b], &[any]), vec![b]);
        let c = TrafficSelector::parse("192.168.0.0/24").unwrap();
        assert!(narrow(&[c], &[b]).is_empty());
        assert!(narrow(&[TrafficSelector::any_v6()], &[any]).is_empty());
        let v6 = TrafficSelector::parse("2001:db8::/32").unwrap();
        assert!(TrafficSelector::any_v6().contains(&v6));
        assert_eq!(
            TrafficSelector::parse("::/0").unwrap(),
            TrafficSelector::any_v6()
        );
        assert_eq!(TrafficSelector::parse("0.0.0.0/0").unwrap(), any);
        assert!(TrafficSelector::parse("1.2.3.4/33").is_err());
        assert!(TrafficSelector::parse("x/3").is_err());
    }

    #[test]
    fn protocol_and_ports() {
        let mut tcp = TrafficSelector::any_v4();
        tcp.ip_proto = 6;
        tcp.start_port = 80;
        tcp.end_port = 90;
        let mut udp = tcp;
        udp.ip_proto = 17;
        assert_eq!(tcp.intersect(&udp), None);
        assert_eq!(TrafficSelector::any_v4().intersect(&tcp), Some(tcp));
        assert!(tcp.matches(6, "1.2.3.4".parse().unwrap(), 85));
        assert!(!tcp.matches(6, "1.2.3.4".parse().unwrap(), 91));
    }
}
