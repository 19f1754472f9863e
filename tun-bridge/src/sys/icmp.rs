//! "Packet too big" replies for inner packets that exceed the tunnel MTU.
//!
//! An IPv4 packet with DF set (RFC 1191) or any IPv6 packet (RFC 8201)
//! larger than the tunnel MTU is answered with ICMP type 3 code 4
//! ("fragmentation needed", next-hop MTU) or ICMPv6 type 2 ("packet too
//! big"), written back into the TUN so the sender's PMTU discovery adapts.
//! No error is generated about ICMP errors, non-first fragments, or
//! packets from unspecified/multicast/broadcast sources (RFC 1812 4.3.2.7,
//! RFC 4443 2.4).

use super::{csum_add, csum_finish};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why no "too big" reply was built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TooBigError {
    /// Not an IPv4/IPv6 packet or header truncated.
    Malformed,
    /// The packet fits, or (IPv4) may be fragmented: no error is due.
    NotTooBig,
    /// RFC rules forbid an ICMP error about this packet.
    Suppressed,
    /// `reply_src` is of the other address family.
    FamilyMismatch,
    /// The output buffer cannot hold the reply.
    BufferTooSmall,
}

impl fmt::Display for TooBigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TooBigError::Malformed => "malformed packet",
            TooBigError::NotTooBig => "packet not too big",
            TooBigError::Suppressed => "ICMP error suppressed for this packet",
            TooBigError::FamilyMismatch => "address family mismatch",
            TooBigError::BufferTooSmall => "output buffer too small",
        })
    }
}

impl std::error::Error for TooBigError {}

/// Minimum IPv4 reassembly size: an ICMPv4 error never exceeds it.
const V4_MAX_ERROR: usize = 576;
/// IPv6 minimum MTU: an ICMPv6 error never exceeds it.
const V6_MAX_ERROR: usize = 1280;

/// `true` if `pkt` is larger than `mtu` and must not be fragmented (IPv4
/// with DF, or any IPv6 packet).
pub fn needs_too_big(pkt: &[u8], mtu: u16) -> bool {
    if pkt.len() <= usize::from(mtu) {
        return false;
    }
    match pkt.first().map(|b| b >> 4) {
        Some(4) => pkt.len() >= 20 && pkt[6] & 0x40 != 0,
        Some(6) => true,
        _ => false,
    }
}

/// Build the ICMP(v6) "too big" reply for `pkt` into `out`, advertising
/// `mtu`, addressed to the packet's source. Returns the reply length.
///
/// The reply is written into the TUN, so the kernel sees it arrive from
/// the tunnel: `reply_src` must **not** be one of the host's own addresses
/// (such packets are dropped as martians). Use the tunnel's remote inside
/// address, or `None` to answer from the packet's destination address.
pub fn build_too_big(
    pkt: &[u8],
    mtu: u16,
    reply_src: Option<IpAddr>,
    out: &mut [u8],
) -> Result<usize, TooBigError> {
    match pkt.first().map(|b| b >> 4) {
        Some(4) => {
            let src = match reply_src {
                Some(IpAddr::V4(a)) => a,
                Some(IpAddr::V6(_)) => return Err(TooBigError::FamilyMismatch),
                None => {
                    let d = pkt.get(16..20).ok_or(TooBigError::Malformed)?;
                    Ipv4Addr::new(d[0], d[1], d[2], d[3])
                }
            };
            build_v4(pkt, mtu, src, out)
        }
        Some(6) => {
            let src = match reply_src {
                Some(IpAddr::V6(a)) => a,
                Some(IpAddr::V4(_)) => return Err(TooBigError::FamilyMismatch),
                None => {
                    let d = pkt.get(24..40).ok_or(TooBigError::Malformed)?;
                    let mut o = [0u8; 16];
                    o.copy_from_slice(d);
                    Ipv6Addr::from(o)
                }
            };
            build_v6(pkt, mtu, src, out)
        }
        _ => Err(TooBigError::Malformed),
    }
}

fn build_v4(pkt: &[u8], mtu: u16, me: Ipv4Addr, out: &mut [u8]) -> Result<usize, TooBigError> {
    if pkt.len() < 20 {
        return Err(TooBigError::Malformed);
    }
    let ihl = usize::from(pkt[0] & 0x0f) * 4;
    if ihl < 20 || ihl > pkt.len() {
        return Err(TooBigError::Malformed);
    }
    if !needs_too_big(pkt, mtu) {
        return Err(TooBigError::NotTooBig);
    }
    if u16::from_be_bytes([pkt[6], pkt[7]]) & 0x1fff != 0 {
        return Err(TooBigError::Suppressed);
    }
    let dst = Ipv4Addr::new(pkt[12], pkt[13], pkt[14], pkt[15]);
    if dst.is_unspecified() || dst.is_multicast() || dst.is_broadcast() || dst.is_loopback() {
        return Err(TooBigError::Suppressed);
    }
    if pkt[9] == 1 {
        // ICMP: only informational messages (echo, timestamp, ...) get errors
        match pkt.get(ihl) {
            Some(0 | 8 | 13 | 14 | 15 | 16 | 17 | 18) => {}
            _ => return Err(TooBigError::Suppressed),
        }
    }
    let quote = pkt.len().min(V4_MAX_ERROR - 28);
    let total = 28 + quote;
    let out = out.get_mut(..total).ok_or(TooBigError::BufferTooSmall)?;
    out[..20].copy_from_slice(&[
        0x45,
        0xc0,
        (total >> 8) as u8,
        total as u8,
        0,
        0,
        0,
        0,
        64,
        1,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
    ]);
    out[12..16].copy_from_slice(&me.octets());
    out[16..20].copy_from_slice(&dst.octets());
    let c = csum_finish(csum_add(0, &out[..20]));
    out[10..12].copy_from_slice(&c.to_be_bytes());
    out[20..28].copy_from_slice(&[3, 4, 0, 0, 0, 0, (mtu >> 8) as u8, mtu as u8]);
    out[28..].copy_from_slice(&pkt[..quote]);
    let c = csum_finish(csum_add(0, &out[20..]));
    out[22..24].copy_from_slice(&c.to_be_bytes());
    Ok(total)
}

fn build_v6(pkt: &[u8], mtu: u16, me: Ipv6Addr, out: &mut [u8]) -> Result<usize, TooBigError> {
    if pkt.len() < 40 {
        return Err(TooBigError::Malformed);
    }
    if !needs_too_big(pkt, mtu) {
        return Err(TooBigError::NotTooBig);
    }
    let mut s = [0u8; 16];
    s.copy_from_slice(&pkt[8..24]);
    let dst = Ipv6Addr::from(s);
    if dst.is_unspecified() || dst.is_multicast() || dst.is_loopback() {
        return Err(TooBigError::Suppressed);
    }
    // ICMPv6 errors (type < 128) directly after the fixed header
    if pkt[6] == 58 && pkt.get(40).is_some_and(|t| *t < 128) {
        return Err(TooBigError::Suppressed);
    }
    let quote = pkt.len().min(V6_MAX_ERROR - 48);
    let plen = 8 + quote;
    let total = 40 + plen;
    let out = out.get_mut(..total).ok_or(TooBigError::BufferTooSmall)?;
    out[..8].copy_from_slice(&[0x60, 0, 0, 0, (plen >> 8) as u8, plen as u8, 58, 64]);
    out[8..24].copy_from_slice(&me.octets());
    out[24..40].copy_from_slice(&dst.octets());
    out[40..48].copy_from_slice(&[2, 0, 0, 0, 0, 0, (mtu >> 8) as u8, mtu as u8]);
    out[48..].copy_from_slice(&pkt[..quote]);
    let mut acc = csum_add(0, &out[8..40]);
    // Cannot wrap (`csum_add` returns a folded 16-bit sum); any carry folds in `csum_finish`.
    acc = acc.wrapping_add(plen as u32).wrapping_add(58);
    let c = csum_finish(csum_add(acc, &out[40..]));
    out[42..44].copy_from_slice(&c.to_be_bytes());
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo_v4(len: usize, df: bool) -> Vec<u8> {
        let mut p = vec![0u8; len];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        p[6] = if df { 0x40 } else { 0 };
        p[8] = 64;
        p[9] = 1;
        p[12..16].copy_from_slice(&[10, 1, 0, 2]);
        p[16..20].copy_from_slice(&[10, 2, 0, 2]);
        let c = csum_finish(csum_add(0, &p[..20]));
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p[20] = 8;
        p
    }

    #[test]
    fn v4_frag_needed() {
        let p = echo_v4(1500, true);
        let mut out = [0u8; 600];
        let n = build_too_big(&p, 1399, Some("10.1.0.1".parse().unwrap()), &mut out).unwrap();
        assert_eq!(n, 576);
        let r = &out[..n];
        assert_eq!(csum_finish(csum_add(0, &r[..20])), 0, "IP header checksum");
        assert_eq!(csum_finish(csum_add(0, &r[20..])), 0, "ICMP checksum");
        assert_eq!(&r[12..16], &[10, 1, 0, 1]);
        assert_eq!(&r[16..20], &[10, 1, 0, 2]);
        assert_eq!((r[9], r[20], r[21]), (1, 3, 4));
        assert_eq!(u16::from_be_bytes([r[26], r[27]]), 1399);
        assert_eq!(&r[28..48], &p[..20]);
        assert_eq!(u16::from_be_bytes([r[2], r[3]]) as usize, n);
        let n = build_too_big(&p, 1399, None, &mut out).unwrap();
        assert_eq!(&out[12..16], &p[16..20]);
        assert_eq!(csum_finish(csum_add(0, &out[20..n])), 0);
    }

    #[test]
    fn v4_rules() {
        let me = Some("10.1.0.1".parse::<IpAddr>().unwrap());
        let mut out = [0u8; 600];
        assert_eq!(
            build_too_big(&echo_v4(1500, false), 1399, me, &mut out),
            Err(TooBigError::NotTooBig)
        );
        assert_eq!(
            build_too_big(&echo_v4(1399, true), 1399, me, &mut out),
            Err(TooBigError::NotTooBig)
        );
        let mut err = echo_v4(1500, true);
        err[20] = 3;
        assert_eq!(
            build_too_big(&err, 1399, me, &mut out),
            Err(TooBigError::Suppressed)
        );
        let mut frag = echo_v4(1500, true);
        frag[7] = 10;
        assert_eq!(
            build_too_big(&frag, 1399, me, &mut out),
            Err(TooBigError::Suppressed)
        );
        let mut bcast = echo_v4(1500, true);
        bcast[12..16].copy_from_slice(&[255; 4]);
        assert_eq!(
            build_too_big(&bcast, 1399, me, &mut out),
            Err(TooBigError::Suppressed)
        );
        assert_eq!(
            build_too_big(
                &echo_v4(1500, true),
                1399,
                Some("::1".parse().unwrap()),
                &mut out
            ),
            Err(TooBigError::FamilyMismatch)
        );
        assert_eq!(
            build_too_big(&echo_v4(1500, true), 1399, me, &mut [0u8; 100]),
            Err(TooBigError::BufferTooSmall)
        );
        let p = echo_v4(1500, true);
        for cut in 0..40 {
            let _ = build_too_big(&p[..cut], 10, me, &mut out);
        }
    }

    #[test]
    fn v6_packet_too_big() {
        let len = 1500;
        let mut p = vec![0u8; len];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
        p[6] = 17;
        p[7] = 64;
        p[8..24].copy_from_slice(&"2001:db8:1::2".parse::<Ipv6Addr>().unwrap().octets());
        p[24..40].copy_from_slice(&"2001:db8:2::2".parse::<Ipv6Addr>().unwrap().octets());
        let me: Ipv6Addr = "2001:db8:1::1".parse().unwrap();
        let mut out = [0u8; 1400];
        let n = build_too_big(&p, 1380, Some(IpAddr::V6(me)), &mut out).unwrap();
        assert_eq!(n, 1280);
        let r = &out[..n];
        // verify checksum with pseudo-header
        let mut acc = csum_add(0, &r[8..40]);
        acc = acc.wrapping_add((n - 40) as u32).wrapping_add(58);
        assert_eq!(csum_finish(csum_add(acc, &r[40..])), 0);
        assert_eq!(&r[24..40], &p[8..24]);
        assert_eq!((r[6], r[40], r[41]), (58, 2, 0));
        assert_eq!(u32::from_be_bytes([r[44], r[45], r[46], r[47]]), 1380);
        // an ICMPv6 error is never answered
        let mut e = p.clone();
        e[6] = 58;
        e[40] = 1;
        assert_eq!(
            build_too_big(&e, 1380, Some(IpAddr::V6(me)), &mut out),
            Err(TooBigError::Suppressed)
        );
        // default source: the packet's destination
        let n = build_too_big(&p, 1380, None, &mut out).unwrap();
        assert_eq!(&out[8..24], &p[24..40]);
        assert_eq!(n, 1280);
    }
}
