//! TCP MSS clamping and the tunnel MTU/MSS computation.
//!
//! [`clamp_mss`] rewrites the MSS option of SYN / SYN-ACK segments inside
//! an IPv4 or IPv6 packet in place and fixes the TCP checksum
//! incrementally (RFC 1624, eqn. 3). [`TunnelMtu`] derives the largest
//! inner packet that fits the outer path after ESP overhead (RFC 4303
//! padding to the cipher's block size, NAT-T UDP header of RFC 3948), and
//! the AWS-recommended clamp of 1399 / 1359.

use ipsec_core::wire::{checksum, IpProtocol, Ipv4Packet, Ipv6Packet, WireError};

/// Result of [`clamp_mss`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MssClamp {
    /// Not a TCP segment (or a non-first fragment): untouched.
    NotTcp,
    /// TCP without SYN: untouched.
    NotSyn,
    /// SYN without an MSS option: untouched.
    NoMssOption,
    /// The MSS was already at or below the limit.
    Unchanged(u16),
    /// The MSS was lowered.
    Clamped {
        /// Original MSS.
        from: u16,
        /// New MSS.
        to: u16,
    },
    /// Header lengths or options are inconsistent: untouched.
    Malformed,
}

/// Offset and end of the TCP segment inside an IP packet, `None` if the
/// packet does not carry (the first fragment of) a TCP segment.
fn tcp_span(pkt: &[u8]) -> Result<Option<(usize, usize)>, WireError> {
    match pkt.first().map(|b| b >> 4) {
        Some(4) => {
            let ip = Ipv4Packet::new_checked(pkt)?;
            if ip.protocol() != IpProtocol::TCP || ip.frag_offset() != 0 {
                return Ok(None);
            }
            Ok(Some((ip.header_len(), usize::from(ip.total_len()))))
        }
        Some(6) => {
            let ip = Ipv6Packet::new_checked(pkt)?;
            let upper = ip.upper_layer()?;
            if upper.protocol != IpProtocol::TCP || upper.non_initial_fragment {
                return Ok(None);
            }
            Ok(Some((upper.offset, ip.total_len())))
        }
        _ => Err(WireError::BadVersion),
    }
}

/// Clamp the MSS option of a SYN or SYN-ACK in `pkt` (an IPv4 or IPv6
/// packet) to at most `max_mss`, updating the TCP checksum incrementally.
/// Never panics; anything it does not understand is left untouched.
pub fn clamp_mss(pkt: &mut [u8], max_mss: u16) -> MssClamp {
    let (start, end) = match tcp_span(pkt) {
        Ok(Some(s)) => s,
        Ok(None) => return MssClamp::NotTcp,
        Err(_) => return MssClamp::Malformed,
    };
    let Some(tcp) = pkt.get_mut(start..end) else {
        return MssClamp::Malformed;
    };
    if tcp.len() < 20 {
        return MssClamp::Malformed;
    }
    if tcp[13] & 0x02 == 0 {
        return MssClamp::NotSyn;
    }
    let doff = usize::from(tcp[12] >> 4) * 4;
    if doff < 20 || doff > tcp.len() {
        return MssClamp::Malformed;
    }
    let mut i = 20;
    while i < doff {
        match tcp[i] {
            0 => break,
            1 => i += 1,
            kind => {
                let Some(&len) = tcp.get(i + 1) else {
                    return MssClamp::Malformed;
                };
                let len = usize::from(len);
                if len < 2 || i + len > doff {
                    return MssClamp::Malformed;
                }
                if kind == 2 {
                    if len != 4 {
                        return MssClamp::Malformed;
                    }
                    let p = i + 2;
                    let old = u16::from_be_bytes([tcp[p], tcp[p + 1]]);
                    if old <= max_mss {
                        return MssClamp::Unchanged(old);
                    }
                    tcp[p..p + 2].copy_from_slice(&max_mss.to_be_bytes());
                    // A 16-bit field at an odd offset contributes its bytes
                    // swapped to the 16-bit one's-complement sum.
                    let (m, m2) = if p % 2 == 1 {
                        (old.swap_bytes(), max_mss.swap_bytes())
                    } else {
                        (old, max_mss)
                    };
                    let hc = u16::from_be_bytes([tcp[16], tcp[17]]);
                    let hc2 = checksum::update_u16(hc, m, m2);
                    tcp[16..18].copy_from_slice(&hc2.to_be_bytes());
                    return MssClamp::Clamped {
                        from: old,
                        to: max_mss,
                    };
                }
                i += len;
            }
        }
    }
    MssClamp::NoMssOption
}

/// ESP overhead parameters of a cipher suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EspOverhead {
    /// Bytes of IV carried in each packet.
    pub iv_len: u16,
    /// Bytes of ICV (integrity check value / AEAD tag).
    pub icv_len: u16,
    /// Padding alignment: cipher block size, at least 4.
    pub block_size: u16,
}

impl EspOverhead {
    /// AES-GCM with 16-byte ICV (RFC 4106): 8-byte IV, 4-byte alignment.
    pub const AES_GCM_16: EspOverhead = EspOverhead {
        iv_len: 8,
        icv_len: 16,
        block_size: 4,
    };
    /// AES-CBC + HMAC-SHA1-96.
    pub const AES_CBC_SHA1_96: EspOverhead = EspOverhead {
        iv_len: 16,
        icv_len: 12,
        block_size: 16,
    };
    /// AES-CBC + HMAC-SHA2-256-128.
    pub const AES_CBC_SHA256_128: EspOverhead = EspOverhead {
        iv_len: 16,
        icv_len: 16,
        block_size: 16,
    };
    /// AES-CBC + HMAC-SHA2-384-192.
    pub const AES_CBC_SHA384_192: EspOverhead = EspOverhead {
        iv_len: 16,
        icv_len: 24,
        block_size: 16,
    };
    /// AES-CBC + HMAC-SHA2-512-256.
    pub const AES_CBC_SHA512_256: EspOverhead = EspOverhead {
        iv_len: 16,
        icv_len: 32,
        block_size: 16,
    };
}

/// How ESP travels on the outer path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Encapsulation {
    /// ESP-in-UDP (NAT-T, RFC 3948): 8 bytes of UDP header.
    Udp,
    /// IP protocol 50.
    Raw,
}

/// Outer IP version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OuterFamily {
    /// IPv4: 20-byte header.
    V4,
    /// IPv6: 40-byte header.
    V6,
}

/// AWS Site-to-Site VPN's recommended tunnel MTU.
pub const AWS_MAX_MTU: u16 = 1399;
/// AWS Site-to-Site VPN's recommended TCP MSS (IPv4).
pub const AWS_MAX_MSS: u16 = 1359;

/// Tunnel (TUN) MTU and the TCP MSS values that go with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelMtu {
    /// Largest inner IP packet.
    pub mtu: u16,
    /// MSS for inner IPv4 TCP (`mtu - 40`).
    pub mss_v4: u16,
    /// MSS for inner IPv6 TCP (`mtu - 60`).
    pub mss_v6: u16,
}

impl TunnelMtu {
    /// Largest inner packet whose ESP encapsulation fits `path_mtu`: outer
    /// IP + UDP (NAT-T) + ESP header (SPI, sequence: 8) + IV, then the
    /// payload plus pad-length and next-header bytes padded to the block
    /// size, then the ICV. Returns `None` if nothing fits.
    pub fn compute(
        path_mtu: u16,
        outer: OuterFamily,
        encap: Encapsulation,
        esp: EspOverhead,
    ) -> Option<TunnelMtu> {
        let ip = match outer {
            OuterFamily::V4 => 20,
            OuterFamily::V6 => 40,
        };
        let udp = match encap {
            Encapsulation::Udp => 8,
            Encapsulation::Raw => 0,
        };
        let block = esp.block_size.max(4);
        let overhead = [udp, 8, esp.iv_len, esp.icv_len]
            .into_iter()
            .try_fold(ip, u16::checked_add)?;
        let avail = path_mtu.checked_sub(overhead)?;
        let mtu = (avail / block * block).checked_sub(2)?;
        Some(TunnelMtu::from_mtu(mtu))
    }

    /// [`TunnelMtu::compute`] clamped to AWS's recommendation (MTU 1399,
    /// MSS 1359), which covers every algorithm AWS offers.
    pub fn aws(
        path_mtu: u16,
        outer: OuterFamily,
        encap: Encapsulation,
        esp: EspOverhead,
    ) -> Option<TunnelMtu> {
        let t = Self::compute(path_mtu, outer, encap, esp)?;
        Some(TunnelMtu::from_mtu(t.mtu.min(AWS_MAX_MTU)))
    }

    fn from_mtu(mtu: u16) -> TunnelMtu {
        TunnelMtu {
            mtu,
            mss_v4: mtu.saturating_sub(40),
            mss_v6: mtu.saturating_sub(60),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROTO_TCP: u8 = 6;

    /// Full TCP checksum over pseudo-header + segment.
    fn tcp_csum(pkt: &[u8]) -> u16 {
        let (start, end) = tcp_span(pkt).unwrap().unwrap();
        let seg = &pkt[start..end];
        let acc = if pkt[0] >> 4 == 4 {
            let ip = Ipv4Packet::new_checked(pkt).unwrap();
            checksum::pseudo_header_v4(ip.src_addr(), ip.dst_addr(), IpProtocol::TCP, seg.len())
        } else {
            let ip = Ipv6Packet::new_checked(pkt).unwrap();
            checksum::pseudo_header_v6(ip.src_addr(), ip.dst_addr(), IpProtocol::TCP, seg.len())
        };
        checksum::finish(checksum::add(acc, seg))
    }

    fn fill_csum(pkt: &mut [u8]) {
        let (start, _) = tcp_span(pkt).unwrap().unwrap();
        pkt[start + 16] = 0;
        pkt[start + 17] = 0;
        let c = tcp_csum(pkt);
        pkt[start + 16..start + 18].copy_from_slice(&c.to_be_bytes());
    }

    fn syn_v4(options: &[u8], flags: u8) -> Vec<u8> {
        let tcp_len = 20 + options.len();
        let total = 20 + tcp_len;
        let mut p = vec![
            0x45,
            0,
            (total >> 8) as u8,
            total as u8,
            0x12,
            0x34,
            0x40,
            0,
            64,
            PROTO_TCP,
            0,
            0,
            10,
            1,
            0,
            2,
            10,
            2,
            0,
            2,
        ];
        let ip_c = checksum::of(&p);
        p[10..12].copy_from_slice(&ip_c.to_be_bytes());
        p.extend_from_slice(&[0xc3, 0x50, 0x00, 0x50, 1, 2, 3, 4, 0, 0, 0, 0]);
        p.push(((tcp_len / 4) as u8) << 4);
        p.push(flags);
        p.extend_from_slice(&[0xfa, 0xf0, 0, 0, 0, 0]);
        p.extend_from_slice(options);
        fill_csum(&mut p);
        p
    }

    fn syn_v6(options: &[u8], with_ext: bool) -> Vec<u8> {
        let tcp_len = 20 + options.len();
        let ext = if with_ext { 8 } else { 0 };
        let plen = tcp_len + ext;
        let mut p = vec![
            0x60,
            0,
            0,
            0,
            (plen >> 8) as u8,
            plen as u8,
            if with_ext { 0 } else { PROTO_TCP },
            64,
        ];
        p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        if with_ext {
            // hop-by-hop options header with PadN
            p.extend_from_slice(&[PROTO_TCP, 0, 1, 4, 0, 0, 0, 0]);
        }
        p.extend_from_slice(&[0xc3, 0x50, 0x01, 0xbb, 9, 9, 9, 9, 0, 0, 0, 0]);
        p.push(((tcp_len / 4) as u8) << 4);
        p.push(0x12); // SYN-ACK
        p.extend_from_slice(&[0xfa, 0xf0, 0, 0, 0, 0]);
        p.extend_from_slice(options);
        fill_csum(&mut p);
        p
    }

    #[test]
    fn clamps_ipv4_syn_and_fixes_checksum() {
        // MSS 1460, SACK-permitted, timestamps, NOP, window scale
        let opts = [
            2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
        ];
        let mut p = syn_v4(&opts, 0x02);
        assert_eq!(tcp_csum(&p), 0, "test packet checksum");
        assert_eq!(
            clamp_mss(&mut p, 1359),
            MssClamp::Clamped {
                from: 1460,
                to: 1359
            }
        );
        assert_eq!(&p[42..44], &1359u16.to_be_bytes());
        assert_eq!(tcp_csum(&p), 0, "checksum after clamp");
        // idempotent
        assert_eq!(clamp_mss(&mut p, 1359), MssClamp::Unchanged(1359));
        assert_eq!(clamp_mss(&mut p, 1400), MssClamp::Unchanged(1359));
    }

    #[test]
    fn clamps_option_at_odd_offset() {
        // one NOP before MSS puts the MSS value at an odd offset
        let opts = [1, 2, 4, 0x23, 0x28, 1, 1, 1];
        for mss in [0u16, 1, 536, 1200, 1359, 8999] {
            let mut p = syn_v4(&opts, 0x12);
            assert_eq!(
                clamp_mss(&mut p, mss),
                MssClamp::Clamped {
                    from: 9000,
                    to: mss
                }
            );
            assert_eq!(tcp_csum(&p), 0, "mss {mss}");
        }
    }

    #[test]
    fn clamps_ipv6_syn_ack_with_extension_header() {
        let opts = [2, 4, 0x05, 0xa0, 1, 1, 4, 2];
        for ext in [false, true] {
            let mut p = syn_v6(&opts, ext);
            assert_eq!(tcp_csum(&p), 0);
            assert_eq!(
                clamp_mss(&mut p, 1339),
                MssClamp::Clamped {
                    from: 1440,
                    to: 1339
                }
            );
            assert_eq!(tcp_csum(&p), 0);
        }
    }

    #[test]
    fn leaves_other_packets_alone() {
        let opts = [2, 4, 0x05, 0xb4];
        let mut ack = syn_v4(&opts, 0x10);
        let orig = ack.clone();
        assert_eq!(clamp_mss(&mut ack, 1000), MssClamp::NotSyn);
        assert_eq!(ack, orig);
        let mut no_mss = syn_v4(&[1, 1, 1, 1], 0x02);
        assert_eq!(clamp_mss(&mut no_mss, 1000), MssClamp::NoMssOption);
        let mut udp = syn_v4(&opts, 0x02);
        udp[9] = 17;
        assert_eq!(clamp_mss(&mut udp, 1000), MssClamp::NotTcp);
        let mut frag = syn_v4(&opts, 0x02);
        frag[7] = 1; // fragment offset 8
        assert_eq!(clamp_mss(&mut frag, 1000), MssClamp::NotTcp);
        let mut bad_opt = syn_v4(&[2, 9, 0x05, 0xb4], 0x02);
        assert_eq!(clamp_mss(&mut bad_opt, 1000), MssClamp::Malformed);
        assert_eq!(clamp_mss(&mut [], 1000), MssClamp::Malformed);
    }

    #[test]
    fn never_panics_on_truncation_or_garbage() {
        let opts = [1, 2, 4, 0x23, 0x28, 1, 1, 1];
        let p = syn_v4(&opts, 0x02);
        for cut in 0..p.len() {
            let mut q = p[..cut].to_vec();
            let _ = clamp_mss(&mut q, 100);
        }
        let p6 = syn_v6(&opts, true);
        for cut in 0..p6.len() {
            let mut q = p6[..cut].to_vec();
            let _ = clamp_mss(&mut q, 100);
        }
        // pseudo-random bytes with plausible version nibbles
        let mut x = 0x1234_5678u32;
        for _ in 0..2000 {
            let mut q: Vec<u8> = (0..80)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            q[0] = if x & 1 == 0 { 0x45 } else { 0x60 };
            let _ = clamp_mss(&mut q, 100);
        }
    }

    #[test]
    fn tunnel_mtu_from_overhead() {
        use Encapsulation::*;
        use OuterFamily::*;
        // GCM, raw ESP over IPv4/1500: 1500-20-8-8-16 = 1448 -> 1446
        // (the 1446/1406 maximum AWS documents for its tunnels)
        let t = TunnelMtu::compute(1500, V4, Raw, EspOverhead::AES_GCM_16).unwrap();
        assert_eq!((t.mtu, t.mss_v4, t.mss_v6), (1446, 1406, 1386));
        // GCM in UDP: 1440 -> 1438
        assert_eq!(
            TunnelMtu::compute(1500, V4, Udp, EspOverhead::AES_GCM_16)
                .unwrap()
                .mtu,
            1438
        );
        // CBC/SHA1 in UDP: 1500-20-8-8-16-12 = 1436 -> 1424 - 2
        assert_eq!(
            TunnelMtu::compute(1500, V4, Udp, EspOverhead::AES_CBC_SHA1_96)
                .unwrap()
                .mtu,
            1422
        );
        // CBC/SHA512 over IPv6 in UDP: 1500-40-8-8-16-32 = 1396 -> 1392 - 2
        assert_eq!(
            TunnelMtu::compute(1500, V6, Udp, EspOverhead::AES_CBC_SHA512_256)
                .unwrap()
                .mtu,
            1390
        );
        // AWS clamp
        let a = TunnelMtu::aws(1500, V4, Udp, EspOverhead::AES_GCM_16).unwrap();
        assert_eq!((a.mtu, a.mss_v4), (AWS_MAX_MTU, AWS_MAX_MSS));
        let a6 = TunnelMtu::aws(1500, V6, Udp, EspOverhead::AES_CBC_SHA512_256).unwrap();
        assert_eq!(a6.mtu, 1390);
        assert!(TunnelMtu::compute(60, V4, Udp, EspOverhead::AES_CBC_SHA512_256).is_none());
        // every result really fits: inner + 2 padded to block + overhead <= path
        for path in 576..=1500u16 {
            for esp in [
                EspOverhead::AES_GCM_16,
                EspOverhead::AES_CBC_SHA1_96,
                EspOverhead::AES_CBC_SHA384_192,
            ] {
                let t = TunnelMtu::compute(path, V4, Udp, esp).unwrap();
                let padded = (t.mtu + 2).div_ceil(esp.block_size) * esp.block_size;
                let outer = 20 + 8 + 8 + esp.iv_len + padded + esp.icv_len;
                assert!(outer <= path, "path {path}");
                let padded1 = (t.mtu + 3).div_ceil(esp.block_size) * esp.block_size;
                assert!(
                    20 + 8 + 8 + esp.iv_len + padded1 + esp.icv_len > path,
                    "not maximal at {path}"
                );
            }
        }
    }
}
