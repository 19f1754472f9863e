//! Quick-mode client identities (IDci / IDcr, RFC 2407 §4.6.2) to and
//! from the crate's [`TrafficSelector`]: a single address, a subnet or a
//! range, with the protocol and a single port (0 = any).

use super::wire::{id_type, IdPayload};
use crate::ts::TrafficSelector;
use ipsec_core::wire::IpProtocol;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fn bits(a: IpAddr) -> (u128, u32) {
    match a {
        IpAddr::V4(v) => (u32::from(v) as u128, 32),
        IpAddr::V6(v) => (u128::from(v), 128),
    }
}

fn addr(v: u128, width: u32) -> IpAddr {
    if width == 32 {
        IpAddr::V4(Ipv4Addr::from(v as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(v))
    }
}

fn octets(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(v) => v.octets().to_vec(),
        IpAddr::V6(v) => v.octets().to_vec(),
    }
}

/// The prefix length when `start..=end` is exactly one prefix.
fn prefix_len(start: IpAddr, end: IpAddr) -> Option<u8> {
    let ((s, w), (e, _)) = (bits(start), bits(end));
    let host = s ^ e;
    if host & host.wrapping_add(1) != 0 || s & host != 0 || e != s | host {
        return None;
    }
    let host_bits = host.count_ones();
    Some((w - host_bits) as u8)
}

/// The ID payload body for a selector.
pub fn encode(ts: &TrafficSelector) -> Vec<u8> {
    let v4 = ts.is_ipv4();
    let (id_type, data) = match prefix_len(ts.start, ts.end) {
        Some(p) if p as u32 == bits(ts.start).1 => (
            if v4 {
                id_type::IPV4_ADDR
            } else {
                id_type::IPV6_ADDR
            },
            octets(ts.start),
        ),
        Some(p) => {
            let w = bits(ts.start).1;
            let mask = if p == 0 {
                0
            } else {
                (u128::MAX << (128 - p as u32)) >> (128 - w)
            };
            let mut d = octets(ts.start);
            d.extend_from_slice(&octets(addr(mask, w)));
            (
                if v4 {
                    id_type::IPV4_ADDR_SUBNET
                } else {
                    id_type::IPV6_ADDR_SUBNET
                },
                d,
            )
        }
        None => {
            let mut d = octets(ts.start);
            d.extend_from_slice(&octets(ts.end));
            (
                if v4 {
                    id_type::IPV4_ADDR_RANGE
                } else {
                    id_type::IPV6_ADDR_RANGE
                },
                d,
            )
        }
    };
    let port = if ts.start_port == ts.end_port {
        ts.start_port
    } else {
        0
    };
    IdPayload {
        id_type,
        protocol: ts.protocol.map_or(0, |p| p.0),
        port,
        data: &data,
    }
    .emit()
}

fn ip(b: &[u8]) -> Option<IpAddr> {
    Some(match b.len() {
        4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(b).ok()?)),
        16 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(b).ok()?)),
        _ => return None,
    })
}

/// The selector of a client ID payload; `None` for other ID types or
/// malformed data (a non-contiguous mask, a range running backwards).
pub fn decode(id: &IdPayload<'_>) -> Option<TrafficSelector> {
    let d = id.data;
    let mut ts = match id.id_type {
        id_type::IPV4_ADDR | id_type::IPV6_ADDR => TrafficSelector::host(ip(d)?),
        id_type::IPV4_ADDR_SUBNET | id_type::IPV6_ADDR_SUBNET => {
            let half = d.len() / 2;
            let (a, m) = (ip(&d[..half])?, ip(&d[half..])?);
            let (mv, w) = bits(m);
            let p = mv.count_ones();
            let expect = if p == 0 {
                0
            } else {
                (u128::MAX << (128 - p)) >> (128 - w)
            };
            if mv != expect || (id.id_type == id_type::IPV4_ADDR_SUBNET) != a.is_ipv4() {
                return None;
            }
            let (av, _) = bits(a);
            TrafficSelector::from_prefix(addr(av & mv, w), p as u8).ok()?
        }
        id_type::IPV4_ADDR_RANGE | id_type::IPV6_ADDR_RANGE => {
            let half = d.len() / 2;
            TrafficSelector::range(ip(&d[..half])?, ip(&d[half..])?).ok()?
        }
        _ => return None,
    };
    if id.protocol != 0 {
        ts.protocol = Some(IpProtocol(id.protocol));
    }
    if id.port != 0 {
        ts.start_port = id.port;
        ts.end_port = id.port;
    }
    Some(ts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(s: &str) -> TrafficSelector {
        let ts: TrafficSelector = s.parse().unwrap();
        let body = encode(&ts);
        decode(&IdPayload::parse(&body).unwrap()).unwrap()
    }

    #[test]
    fn subnets_hosts_ranges() {
        for s in ["10.1.0.0/24", "0.0.0.0/0", "2001:db8::/32", "::/0"] {
            assert_eq!(roundtrip(s), s.parse().unwrap(), "{s}");
        }
        let host: TrafficSelector = "192.0.2.7/32".parse().unwrap();
        let body = encode(&host);
        assert_eq!(body[0], id_type::IPV4_ADDR);
        let r = TrafficSelector::range("10.0.0.5".parse().unwrap(), "10.0.0.9".parse().unwrap())
            .unwrap();
        let body = encode(&r);
        assert_eq!(body[0], id_type::IPV4_ADDR_RANGE);
        assert_eq!(decode(&IdPayload::parse(&body).unwrap()), Some(r));
        let bad_mask = [
            id_type::IPV4_ADDR_SUBNET,
            0,
            0,
            0,
            10,
            0,
            0,
            0,
            255,
            0,
            255,
            0,
        ];
        assert_eq!(decode(&IdPayload::parse(&bad_mask).unwrap()), None);
        let fqdn = [id_type::FQDN, 0, 0, 0, b'a'];
        assert_eq!(decode(&IdPayload::parse(&fqdn).unwrap()), None);
    }
}
