//! Traffic selectors (RFC 4301 §4.4.1, RFC 7296 §3.13.1).
//!
//! A [`TrafficSelector`] is an inclusive address range of one family, an IP
//! protocol (or any) and an inclusive port range. The IKE layer maps the
//! negotiated TSi/TSr payloads onto these one to one.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::wire::{FlowKey, IpProtocol, Ports};

/// One traffic selector: addresses, protocol and ports.
///
/// Port semantics follow IKEv2: `0..=65535` is "any port" (matches opaque
/// ports too); `start_port > end_port` (IKEv2 uses 65535..=0) is OPAQUE and
/// matches only packets whose ports are unavailable; any other range matches
/// packets with known ports in range. For ICMP/ICMPv6 the "port" is
/// `type << 8 | code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TrafficSelector {
    /// First address (inclusive).
    pub start: IpAddr,
    /// Last address (inclusive); same family as `start`.
    pub end: IpAddr,
    /// IP protocol, or `None` for any.
    pub protocol: Option<IpProtocol>,
    /// First port (inclusive).
    pub start_port: u16,
    /// Last port (inclusive).
    pub end_port: u16,
}

/// Why a traffic selector is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SelectorError {
    /// Start and end addresses are of different families.
    MixedFamilies,
    /// The start address is greater than the end address.
    EmptyRange,
    /// A prefix length longer than the address.
    BadPrefix,
    /// Text that is not an address, `address/prefix` or `start-end`.
    BadAddress,
}

impl core::fmt::Display for SelectorError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            SelectorError::MixedFamilies => "selector mixes IPv4 and IPv6",
            SelectorError::EmptyRange => "selector start address above end address",
            SelectorError::BadPrefix => "prefix length too long",
            SelectorError::BadAddress => "not an address, prefix or address range",
        })
    }
}

impl std::error::Error for SelectorError {}

fn key(a: IpAddr) -> (bool, u128) {
    match a {
        IpAddr::V4(v) => (false, u128::from(u32::from(v))),
        IpAddr::V6(v) => (true, u128::from(v)),
    }
}

fn from_key(v6: bool, v: u128) -> IpAddr {
    if v6 {
        IpAddr::V6(v.into())
    } else {
        // Only ever called with values that came from an IPv4 address.
        IpAddr::V4(Ipv4Addr::from(u32::try_from(v).unwrap_or(u32::MAX)))
    }
}

impl TrafficSelector {
    /// Every IPv4 address, any protocol, any port.
    pub const fn any_v4() -> TrafficSelector {
        TrafficSelector {
            start: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            end: IpAddr::V4(Ipv4Addr::BROADCAST),
            protocol: None,
            start_port: 0,
            end_port: u16::MAX,
        }
    }

    /// Every IPv6 address, any protocol, any port.
    pub const fn any_v6() -> TrafficSelector {
        TrafficSelector {
            start: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            end: IpAddr::V6(Ipv6Addr::new(
                0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff,
            )),
            protocol: None,
            start_port: 0,
            end_port: u16::MAX,
        }
    }

    /// The addresses of `addr/prefix_len`, any protocol, any port.
    pub fn from_prefix(addr: IpAddr, prefix_len: u8) -> Result<TrafficSelector, SelectorError> {
        let (start, end) = match addr {
            IpAddr::V4(a) => {
                if prefix_len > 32 {
                    return Err(SelectorError::BadPrefix);
                }
                let host = u32::MAX.checked_shr(u32::from(prefix_len)).unwrap_or(0);
                let a = u32::from(a);
                (
                    IpAddr::V4((a & !host).into()),
                    IpAddr::V4((a | host).into()),
                )
            }
            IpAddr::V6(a) => {
                if prefix_len > 128 {
                    return Err(SelectorError::BadPrefix);
                }
                let host = u128::MAX.checked_shr(u32::from(prefix_len)).unwrap_or(0);
                let a = u128::from(a);
                (
                    IpAddr::V6((a & !host).into()),
                    IpAddr::V6((a | host).into()),
                )
            }
        };
        Ok(TrafficSelector {
            start,
            end,
            protocol: None,
            start_port: 0,
            end_port: u16::MAX,
        })
    }

    /// A single address, any protocol, any port.
    pub fn host(addr: IpAddr) -> TrafficSelector {
        TrafficSelector {
            start: addr,
            end: addr,
            protocol: None,
            start_port: 0,
            end_port: u16::MAX,
        }
    }

    /// An address range `start..=end`, any protocol, any port.
    pub fn range(start: IpAddr, end: IpAddr) -> Result<TrafficSelector, SelectorError> {
        let ts = TrafficSelector {
            start,
            end,
            protocol: None,
            start_port: 0,
            end_port: u16::MAX,
        };
        ts.validate()?;
        Ok(ts)
    }

    /// Restricts the selector to one protocol.
    pub const fn with_protocol(mut self, protocol: IpProtocol) -> TrafficSelector {
        self.protocol = Some(protocol);
        self
    }

    /// Restricts the selector to the ports `start..=end`.
    pub const fn with_ports(mut self, start: u16, end: u16) -> TrafficSelector {
        self.start_port = start;
        self.end_port = end;
        self
    }

    /// Checks that both addresses have one family and `start <= end`.
    pub fn validate(&self) -> Result<(), SelectorError> {
        let (f1, s) = key(self.start);
        let (f2, e) = key(self.end);
        if f1 != f2 {
            return Err(SelectorError::MixedFamilies);
        }
        if s > e {
            return Err(SelectorError::EmptyRange);
        }
        Ok(())
    }

    /// Whether this is an IPv4 selector.
    pub fn is_ipv4(&self) -> bool {
        self.start.is_ipv4()
    }

    /// The intersection of two selectors (addresses, protocol and ports),
    /// or `None` when it is empty or the families differ. An OPAQUE port
    /// range (`start_port > end_port`) counts as empty here.
    pub fn intersect(&self, other: &TrafficSelector) -> Option<TrafficSelector> {
        let ((f1, s1), (_, e1)) = (key(self.start), key(self.end));
        let ((f2, s2), (_, e2)) = (key(other.start), key(other.end));
        if f1 != f2 {
            return None;
        }
        let protocol = match (self.protocol, other.protocol) {
            (None, p) | (p, None) => p,
            (Some(a), Some(b)) if a == b => Some(a),
            _ => return None,
        };
        let start_port = self.start_port.max(other.start_port);
        let end_port = self.end_port.min(other.end_port);
        let (start, end) = (s1.max(s2), e1.min(e2));
        if start_port > end_port || start > end {
            return None;
        }
        Some(TrafficSelector {
            start: from_key(f1, start),
            end: from_key(f1, end),
            protocol,
            start_port,
            end_port,
        })
    }

    /// True if every packet `other` matches is matched by `self` too.
    pub fn contains(&self, other: &TrafficSelector) -> bool {
        self.intersect(other).as_ref() == Some(other)
    }

    /// True if `addr` is inside the address range.
    #[inline]
    pub fn contains_addr(&self, addr: IpAddr) -> bool {
        match (self.start, self.end, addr) {
            (IpAddr::V4(s), IpAddr::V4(e), IpAddr::V4(a)) => s <= a && a <= e,
            (IpAddr::V6(s), IpAddr::V6(e), IpAddr::V6(a)) => s <= a && a <= e,
            _ => false,
        }
    }

    /// True if the protocol and `port` (`None` = opaque) match.
    #[inline]
    pub fn matches_proto_port(&self, protocol: IpProtocol, port: Option<u16>) -> bool {
        if let Some(p) = self.protocol {
            if p != protocol {
                return false;
            }
        }
        if self.start_port == 0 && self.end_port == u16::MAX {
            return true;
        }
        match port {
            Some(x) => self.start_port <= x && x <= self.end_port,
            None => self.start_port > self.end_port,
        }
    }

    /// True if the packet's source side (address and source port) matches.
    #[inline]
    pub fn matches_src(&self, f: &FlowKey) -> bool {
        let port = match f.ports {
            Ports::Known { src, .. } => Some(src),
            Ports::Opaque => None,
        };
        self.contains_addr(f.src) && self.matches_proto_port(f.protocol, port)
    }

    /// True if the packet's destination side (address and port) matches.
    #[inline]
    pub fn matches_dst(&self, f: &FlowKey) -> bool {
        let port = match f.ports {
            Ports::Known { dst, .. } => Some(dst),
            Ports::Opaque => None,
        };
        self.contains_addr(f.dst) && self.matches_proto_port(f.protocol, port)
    }
}

/// Parses `a.b.c.d/n`, `x::/n`, a bare address (one host) or an address
/// range `start-end`; any protocol and port.
impl core::str::FromStr for TrafficSelector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<TrafficSelector, SelectorError> {
        let addr = |a: &str| {
            a.trim()
                .parse::<IpAddr>()
                .map_err(|_| SelectorError::BadAddress)
        };
        if let Some((a, p)) = s.split_once('/') {
            let p: u8 = p.trim().parse().map_err(|_| SelectorError::BadPrefix)?;
            return TrafficSelector::from_prefix(addr(a)?, p);
        }
        if let Some((a, b)) = s.split_once('-') {
            return TrafficSelector::range(addr(a)?, addr(b)?);
        }
        Ok(TrafficSelector::host(addr(s)?))
    }
}

/// `start-end`, then ` proto N` and ` ports A-B` unless they are "any".
impl core::fmt::Display for TrafficSelector {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}-{}", self.start, self.end)?;
        if let Some(p) = self.protocol {
            write!(f, " proto {}", p.0)?;
        }
        if (self.start_port, self.end_port) != (0, u16::MAX) {
            write!(f, " ports {}-{}", self.start_port, self.end_port)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(src: &str, dst: &str, proto: u8, ports: Ports) -> FlowKey {
        FlowKey {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            protocol: IpProtocol(proto),
            ports,
        }
    }

    #[test]
    fn prefixes() {
        let ts = TrafficSelector::from_prefix("10.1.2.3".parse().unwrap(), 16).unwrap();
        assert_eq!(ts.start, "10.1.0.0".parse::<IpAddr>().unwrap());
        assert_eq!(ts.end, "10.1.255.255".parse::<IpAddr>().unwrap());
        let all = TrafficSelector::from_prefix("10.1.2.3".parse().unwrap(), 0).unwrap();
        assert_eq!(all, TrafficSelector::any_v4());
        let h = TrafficSelector::from_prefix("2001:db8::7".parse().unwrap(), 128).unwrap();
        assert_eq!(h, TrafficSelector::host("2001:db8::7".parse().unwrap()));
        let v6 = TrafficSelector::from_prefix("2001:db8::7".parse().unwrap(), 0).unwrap();
        assert_eq!(v6, TrafficSelector::any_v6());
        assert_eq!(
            TrafficSelector::from_prefix("10.0.0.0".parse().unwrap(), 33),
            Err(SelectorError::BadPrefix)
        );
        assert!(ts.contains_addr("10.1.200.1".parse().unwrap()));
        assert!(!ts.contains_addr("10.2.0.0".parse().unwrap()));
        assert!(!ts.contains_addr("::1".parse().unwrap()));
    }

    #[test]
    fn parsing_and_display() {
        let net: TrafficSelector = "10.1.0.0/16".parse().unwrap();
        assert_eq!(net.to_string(), "10.1.0.0-10.1.255.255");
        assert_eq!(
            "::/0".parse::<TrafficSelector>(),
            Ok(TrafficSelector::any_v6())
        );
        assert_eq!(
            "192.0.2.7".parse::<TrafficSelector>(),
            Ok(TrafficSelector::host("192.0.2.7".parse().unwrap()))
        );
        let r: TrafficSelector = "10.0.0.5 - 10.0.0.9".parse().unwrap();
        assert_eq!(r.end, "10.0.0.9".parse::<IpAddr>().unwrap());
        assert_eq!(
            "1.2.3.4/33".parse::<TrafficSelector>(),
            Err(SelectorError::BadPrefix)
        );
        assert_eq!(
            "1.2.3.4/x".parse::<TrafficSelector>(),
            Err(SelectorError::BadPrefix)
        );
        assert_eq!(
            "x/3".parse::<TrafficSelector>(),
            Err(SelectorError::BadAddress)
        );
        assert_eq!(
            "10.0.0.9-10.0.0.1".parse::<TrafficSelector>(),
            Err(SelectorError::EmptyRange)
        );
        let web = TrafficSelector::any_v4()
            .with_protocol(IpProtocol::TCP)
            .with_ports(80, 90);
        assert_eq!(
            web.to_string(),
            "0.0.0.0-255.255.255.255 proto 6 ports 80-90"
        );
    }

    #[test]
    fn intersection_and_containment() {
        let wide: TrafficSelector = "10.1.0.0/16".parse().unwrap();
        let narrow: TrafficSelector = "10.1.2.0/24".parse().unwrap();
        assert_eq!(wide.intersect(&narrow), Some(narrow));
        assert!(wide.contains(&narrow) && !narrow.contains(&wide));
        let other: TrafficSelector = "192.168.0.0/24".parse().unwrap();
        assert_eq!(other.intersect(&narrow), None);
        assert_eq!(TrafficSelector::any_v6().intersect(&wide), None);
        let tcp = TrafficSelector::any_v4()
            .with_protocol(IpProtocol::TCP)
            .with_ports(80, 90);
        let udp = TrafficSelector::any_v4()
            .with_protocol(IpProtocol::UDP)
            .with_ports(85, 95);
        assert_eq!(tcp.intersect(&udp), None);
        assert_eq!(TrafficSelector::any_v4().intersect(&tcp), Some(tcp));
        let both = tcp.intersect(&TrafficSelector::any_v4().with_ports(85, 100));
        assert_eq!(both, Some(tcp.with_ports(85, 90)));
        let v6: TrafficSelector = "2001:db8::/32".parse().unwrap();
        assert!(TrafficSelector::any_v6().contains(&v6));
        assert_eq!(TrafficSelector::any_v6().intersect(&v6), Some(v6));
    }

    #[test]
    fn validation() {
        let a: IpAddr = "10.0.0.2".parse().unwrap();
        let b: IpAddr = "10.0.0.1".parse().unwrap();
        let c: IpAddr = "::1".parse().unwrap();
        assert_eq!(TrafficSelector::range(a, b), Err(SelectorError::EmptyRange));
        assert_eq!(
            TrafficSelector::range(a, c),
            Err(SelectorError::MixedFamilies)
        );
        assert!(TrafficSelector::range(b, a).is_ok());
    }

    #[test]
    fn protocols_and_ports() {
        let web = TrafficSelector::any_v4()
            .with_protocol(IpProtocol::TCP)
            .with_ports(443, 443);
        let f = flow(
            "1.1.1.1",
            "2.2.2.2",
            6,
            Ports::Known {
                src: 5000,
                dst: 443,
            },
        );
        assert!(web.matches_dst(&f));
        assert!(!web.matches_src(&f));
        let udp = flow(
            "1.1.1.1",
            "2.2.2.2",
            17,
            Ports::Known {
                src: 5000,
                dst: 443,
            },
        );
        assert!(!web.matches_dst(&udp));
        let frag = flow("1.1.1.1", "2.2.2.2", 6, Ports::Opaque);
        assert!(!web.matches_dst(&frag));
        assert!(TrafficSelector::any_v4().matches_dst(&frag));
        let opaque = TrafficSelector::any_v4().with_ports(65535, 0);
        assert!(opaque.matches_dst(&frag));
        assert!(!opaque.matches_dst(&f));
        // ICMP echo request: type 8 code 0 -> 0x0800.
        let echo = TrafficSelector::any_v4()
            .with_protocol(IpProtocol::ICMP)
            .with_ports(0x0800, 0x08ff);
        let ping = flow(
            "1.1.1.1",
            "2.2.2.2",
            1,
            Ports::Known {
                src: 0x800,
                dst: 0x800,
            },
        );
        assert!(echo.matches_src(&ping) && echo.matches_dst(&ping));
    }
}
