//! Offloads between a TUN device opened with `IFF_VNET_HDR` and the
//! per-packet path, the way wireguard-go uses them:
//!
//! * [`complete_csum`]: finish a partial (`NEEDS_CSUM`) checksum before a
//!   packet is encrypted (the kernel left it to the "device", us).
//! * [`Tso`]: split a TCP or UDP (USO) super-packet (up to 64 KiB, read in
//!   one `read`) into segments, each a complete IP packet with valid
//!   checksums, written into caller buffers (no allocation).
//! * [`Gro`]: coalesce consecutive decrypted TCP segments of one flow, IPv4
//!   and IPv6 alike (and, when the TUN takes USO, equal-sized UDP datagrams
//!   of one flow) into one super-packet written with one `write` and a GSO header,
//!   so the kernel forwards one packet instead of dozens.

use ipsec_core::wire::{checksum, IpProtocol, Ipv4Packet, Ipv6Packet};

use super::vnet::{VnetHdr, VNET_HDR_LEN};

const TCP: IpProtocol = IpProtocol::TCP;
const UDP: IpProtocol = IpProtocol::UDP;
const FIN: u8 = 0x01;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;
const CWR: u8 = 0x80;

fn be16(b: &[u8], i: usize) -> u16 {
    u16::from_be_bytes([b[i], b[i + 1]])
}

fn be32(b: &[u8], i: usize) -> u32 {
    u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// Completes a partial transport checksum: the field at `start + offset`
/// holds the folded pseudo-header sum; sum from `start` to the end and store
/// the complement there. Returns false if the offsets are outside `pkt`.
pub fn complete_csum(pkt: &mut [u8], start: usize, offset: usize) -> bool {
    let field = start.saturating_add(offset);
    if start > pkt.len() || field.saturating_add(2) > pkt.len() {
        return false;
    }
    let c = checksum::of(&pkt[start..]);
    pkt[field..field + 2].copy_from_slice(&c.to_be_bytes());
    true
}

/// Pseudo-header sum (not folded) for a TCP segment of `tcp_len` bytes.
fn pseudo(pkt: &[u8], v6: bool, tcp_len: usize) -> u32 {
    pseudo_for(pkt, v6, TCP, tcp_len)
}

/// Pseudo-header sum (not folded) for transport `proto` of `l4_len` bytes
/// behind the IP header at the start of `pkt`.
fn pseudo_for(pkt: &[u8], v6: bool, proto: IpProtocol, l4_len: usize) -> u32 {
    if v6 {
        let ip = Ipv6Packet::new_unchecked(pkt);
        checksum::pseudo_header_v6(ip.src_addr(), ip.dst_addr(), proto, l4_len)
    } else {
        let ip = Ipv4Packet::new_unchecked(pkt);
        checksum::pseudo_header_v4(ip.src_addr(), ip.dst_addr(), proto, l4_len)
    }
}

/// A TCP or UDP super-packet read behind a GSO virtio-net header, ready to
/// be split with [`Tso::segment`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tso {
    v6: bool,
    /// Transport: TCP or UDP.
    proto: IpProtocol,
    l3: usize,
    hlen: usize,
    mss: usize,
    payload: usize,
}

impl Tso {
    /// Checks `pkt` (IP header onward) against `hdr`; `None` if it is not a
    /// TCP or UDP super-packet this code can split (IPv4 with or without
    /// options, IPv6 without extension headers).
    pub fn new(pkt: &[u8], hdr: &VnetHdr) -> Option<Tso> {
        let gso = hdr.gso_type & !VnetHdr::GSO_ECN;
        let (v6, proto) = match (gso, pkt.first()? >> 4) {
            (VnetHdr::GSO_TCPV4, 4) => (false, TCP),
            (VnetHdr::GSO_TCPV6, 6) => (true, TCP),
            (VnetHdr::GSO_UDP_L4, 4) => (false, UDP),
            (VnetHdr::GSO_UDP_L4, 6) => (true, UDP),
            _ => return None,
        };
        let l3 = if v6 {
            if pkt.len() < 40 || Ipv6Packet::new_unchecked(pkt).next_header() != proto {
                return None;
            }
            40
        } else {
            let ip = Ipv4Packet::new_unchecked(pkt);
            let ihl = ip.header_len();
            if ihl < 20 || pkt.len() < ihl || ip.protocol() != proto {
                return None;
            }
            ihl
        };
        let thl = if proto == UDP {
            8
        } else {
            usize::from(*pkt.get(l3 + 12)? >> 4) * 4
        };
        let hlen = l3 + thl;
        let mss = usize::from(hdr.gso_size);
        if thl < 8 || (proto == TCP && thl < 20) || hlen > pkt.len() || mss == 0 {
            return None;
        }
        Some(Tso {
            v6,
            proto,
            l3,
            hlen,
            mss,
            payload: pkt.len() - hlen,
        })
    }

    /// Number of segments.
    pub fn count(&self) -> usize {
        self.payload.div_ceil(self.mss).max(1)
    }

    /// Length of the largest segment.
    pub fn max_segment_len(&self) -> usize {
        self.hlen + self.mss.min(self.payload)
    }

    /// Writes segment `i` of `pkt` (the super-packet given to [`Tso::new`])
    /// into `out` as a complete IP packet with valid checksums; returns its
    /// length, or `None` if `i` is out of range or `out` is too small.
    pub fn segment(&self, pkt: &[u8], i: usize, out: &mut [u8]) -> Option<usize> {
        let n = self.count();
        if i >= n || pkt.len() != self.hlen + self.payload {
            return None;
        }
        let off = i * self.mss;
        let plen = self.mss.min(self.payload - off);
        let len = self.hlen + plen;
        let out = out.get_mut(..len)?;
        out[..self.hlen].copy_from_slice(&pkt[..self.hlen]);
        out[self.hlen..].copy_from_slice(&pkt[self.hlen + off..self.hlen + off + plen]);
        let l3 = self.l3;
        if self.v6 {
            out[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
        } else {
            let mut ip = Ipv4Packet::new_unchecked(&mut *out);
            ip.set_total_len(len as u16);
            // IPv4 IDs are mod 2^16 (RFC 6864): consecutive per segment, as the kernel does.
            ip.set_ident(be16(pkt, 4).wrapping_add(i as u16));
            ip.fill_checksum();
        }
        if self.proto == UDP {
            out[l3 + 4..l3 + 6].copy_from_slice(&((len - l3) as u16).to_be_bytes());
            out[l3 + 6] = 0;
            out[l3 + 7] = 0;
            let acc = checksum::add(pseudo_for(out, self.v6, UDP, len - l3), &out[l3..]);
            // 0 means "no checksum" in UDP: send the other zero.
            let c = match checksum::finish(acc) {
                0 => 0xffff,
                c => c,
            };
            out[l3 + 6..l3 + 8].copy_from_slice(&c.to_be_bytes());
            return Some(len);
        }
        // TCP sequence numbers are mod 2^32 (RFC 9293 §3.4).
        let seq = be32(pkt, l3 + 4).wrapping_add(off as u32);
        out[l3 + 4..l3 + 8].copy_from_slice(&seq.to_be_bytes());
        if i + 1 != n {
            out[l3 + 13] &= !(FIN | PSH);
        }
        if i != 0 {
            out[l3 + 13] &= !CWR;
        }
        out[l3 + 16] = 0;
        out[l3 + 17] = 0;
        let acc = checksum::add(pseudo(out, self.v6, len - l3), &out[l3..]);
        let c = checksum::finish(acc);
        out[l3 + 16..l3 + 18].copy_from_slice(&c.to_be_bytes());
        Some(len)
    }
}

/// Most segments merged into one super-packet.
pub const GRO_MAX_SEGS: usize = 64;

/// Coalesces consecutive in-order TCP/IPv4 segments of one flow (same
/// addresses, ports, ACK, window, options, TOS, TTL; flags ACK or ACK|PSH;
/// equal-sized segments with at most a shorter last one) into one
/// super-packet behind a GSO virtio-net header. With [`Gro::with_udp`],
/// also consecutive UDP/IPv4 datagrams of one flow (same addresses, ports,
/// TOS, DF, TTL; equal payload sizes, at most a shorter last one) into one
/// USO super-packet.
pub struct Gro {
    /// Virtio-net header followed by the merged packet.
    buf: Vec<u8>,
    /// Bytes of packet in `buf` after the header (0 = empty).
    len: usize,
    segs: usize,
    l3: usize,
    hlen: usize,
    mss: usize,
    next_seq: u32,
    closed: bool,
    /// Transport of the held packet (TCP or UDP).
    proto: IpProtocol,
    /// The held packet is IPv6.
    v6: bool,
    /// UDP datagrams may be coalesced (the TUN took `TUN_F_USO4`).
    udp: bool,
}

impl Default for Gro {
    fn default() -> Self {
        Gro::new()
    }
}

impl Gro {
    /// An empty coalescer (allocates its 64 KiB buffer once).
    pub fn new() -> Gro {
        Gro {
            buf: vec![0; VNET_HDR_LEN + 65_535],
            len: 0,
            segs: 0,
            l3: 0,
            hlen: 0,
            mss: 0,
            next_seq: 0,
            closed: false,
            proto: TCP,
            v6: false,
            udp: false,
        }
    }

    /// Also coalesce UDP datagrams (only for a TUN that accepted
    /// `TUN_F_USO4 | TUN_F_USO6`: it must take `GSO_UDP_L4` packets).
    pub fn with_udp(mut self, on: bool) -> Gro {
        self.udp = on;
        self
    }

    /// UDP, not a fragment, at least one payload byte, length fields
    /// consistent: coalesce it.
    /// `pkt` is a checked IP packet of `l3` header bytes ([`ip_header`]).
    fn push_udp(&mut self, pkt: &[u8], l3: usize, v6: bool) -> bool {
        if pkt.len() <= l3 + 8 || usize::from(be16(pkt, l3 + 4)) != pkt.len() - l3 {
            return false;
        }
        let plen = pkt.len() - l3 - 8;
        if self.segs == 0 {
            self.buf[VNET_HDR_LEN..VNET_HDR_LEN + pkt.len()].copy_from_slice(pkt);
            self.len = pkt.len();
            self.segs = 1;
            self.l3 = l3;
            self.hlen = l3 + 8;
            self.mss = plen;
            self.closed = false;
            self.proto = UDP;
            self.v6 = v6;
            return true;
        }
        if self.proto != UDP
            || v6 != self.v6
            || self.closed
            || self.segs >= GRO_MAX_SEGS
            || l3 != self.l3
            || plen > self.mss
            || self.len + plen > 65_535
        {
            return false;
        }
        let held = &self.buf[VNET_HDR_LEN..VNET_HDR_LEN + l3 + 4];
        // IP header; ports.
        let same = same_ip(pkt, held, l3, v6) && pkt[l3..l3 + 4] == held[l3..l3 + 4];
        if !same {
            return false;
        }
        let at = VNET_HDR_LEN + self.len;
        self.buf[at..at + plen].copy_from_slice(&pkt[l3 + 8..]);
        self.len += plen;
        self.segs += 1;
        if plen < self.mss {
            self.closed = true;
        }
        true
    }

    /// True if nothing is held.
    pub fn is_empty(&self) -> bool {
        self.segs == 0
    }

    /// Offers one IP packet. `true`: it was taken (merged, or it started a
    /// new super-packet). `false`: it cannot join the held packet (flush
    /// with [`Gro::finish`] and offer it again) or it is not coalescable at
    /// all (a second offer to an empty coalescer also answers `false`:
    /// write it on its own).
    pub fn push(&mut self, pkt: &[u8]) -> bool {
        let Some((l3, v6, proto)) = ip_header(pkt) else {
            return false;
        };
        if proto == UDP && self.udp {
            return self.push_udp(pkt, l3, v6);
        }
        // TCP.
        if proto != TCP || pkt.len() < l3 + 20 {
            return false;
        }
        let hlen = l3 + usize::from(pkt[l3 + 12] >> 4) * 4;
        let flags = pkt[l3 + 13];
        if hlen < l3 + 20 || hlen >= pkt.len() || flags & !PSH != ACK {
            return false;
        }
        let plen = pkt.len() - hlen;
        let seq = be32(pkt, l3 + 4);
        if self.segs == 0 {
            self.buf[VNET_HDR_LEN..VNET_HDR_LEN + pkt.len()].copy_from_slice(pkt);
            self.len = pkt.len();
            self.segs = 1;
            self.l3 = l3;
            self.hlen = hlen;
            self.mss = plen;
            // TCP sequence numbers are mod 2^32 (RFC 9293 §3.4).
            self.next_seq = seq.wrapping_add(plen as u32);
            self.closed = flags & PSH != 0;
            self.proto = TCP;
            self.v6 = v6;
            return true;
        }
        if self.proto != TCP
            || v6 != self.v6
            || self.closed
            || self.segs >= GRO_MAX_SEGS
            || l3 != self.l3
            || hlen != self.hlen
            || plen > self.mss
            || seq != self.next_seq
            || self.len + plen > 65_535
        {
            return false;
        }
        let held = &self.buf[VNET_HDR_LEN..VNET_HDR_LEN + hlen];
        // IP header; ports; ACK number; offset..window; options.
        let same = same_ip(pkt, held, l3, v6)
            && pkt[l3..l3 + 4] == held[l3..l3 + 4]
            && pkt[l3 + 8..l3 + 12] == held[l3 + 8..l3 + 12]
            && pkt[l3 + 12] == held[l3 + 12]
            && pkt[l3 + 14..l3 + 16] == held[l3 + 14..l3 + 16]
            && pkt[l3 + 20..hlen] == held[l3 + 20..hlen];
        if !same {
            return false;
        }
        let at = VNET_HDR_LEN + self.len;
        self.buf[at..at + plen].copy_from_slice(&pkt[hlen..]);
        self.len += plen;
        self.segs += 1;
        // TCP sequence numbers are mod 2^32 (RFC 9293 §3.4).
        self.next_seq = seq.wrapping_add(plen as u32);
        if flags & PSH != 0 {
            self.buf[VNET_HDR_LEN + l3 + 13] |= PSH;
            self.closed = true;
        }
        if plen < self.mss {
            self.closed = true;
        }
        true
    }

    /// The held packet behind its virtio-net header (ready for one TUN
    /// `write`), and empties the coalescer; `None` if empty. A single
    /// segment is returned unchanged with an all-zero header.
    pub fn finish(&mut self) -> Option<&[u8]> {
        if self.segs == 0 {
            return None;
        }
        let segs = std::mem::take(&mut self.segs);
        let len = self.len;
        let (hdr, pkt) = self.buf.split_at_mut(VNET_HDR_LEN);
        let pkt = &mut pkt[..len];
        let mut v = VnetHdr::default();
        if segs > 1 && self.proto == UDP {
            let l3 = self.l3;
            set_ip_len(pkt, self.v6);
            pkt[l3 + 4..l3 + 6].copy_from_slice(&((len - l3) as u16).to_be_bytes());
            let p = checksum::fold(pseudo_for(pkt, self.v6, UDP, len - l3));
            pkt[l3 + 6..l3 + 8].copy_from_slice(&p.to_be_bytes());
            v = VnetHdr {
                flags: VnetHdr::F_NEEDS_CSUM,
                gso_type: VnetHdr::GSO_UDP_L4,
                hdr_len: (l3 + 8) as u16,
                gso_size: self.mss as u16,
                csum_start: l3 as u16,
                csum_offset: 6,
            };
        } else if segs > 1 {
            let l3 = self.l3;
            set_ip_len(pkt, self.v6);
            let p = checksum::fold(pseudo(pkt, self.v6, len - l3));
            pkt[l3 + 16..l3 + 18].copy_from_slice(&p.to_be_bytes());
            v = VnetHdr {
                flags: VnetHdr::F_NEEDS_CSUM,
                gso_type: if self.v6 {
                    VnetHdr::GSO_TCPV6
                } else {
                    VnetHdr::GSO_TCPV4
                },
                hdr_len: self.hlen as u16,
                gso_size: self.mss as u16,
                csum_start: l3 as u16,
                csum_offset: 16,
            };
        }
        let hdr: &mut [u8; VNET_HDR_LEN] = hdr.try_into().expect("header length");
        v.emit(hdr);
        Some(&self.buf[..VNET_HDR_LEN + len])
    }
}

/// A coalescable IP packet: IPv4 filling the buffer exactly and not a
/// fragment, or IPv6 filling it exactly with the transport right behind the
/// fixed header (no extension headers, no jumbogram). Returns the IP header
/// length, whether it is IPv6, and the transport protocol.
fn ip_header(pkt: &[u8]) -> Option<(usize, bool, IpProtocol)> {
    match pkt.first()? >> 4 {
        4 => {
            let ip = Ipv4Packet::new_checked(pkt).ok()?;
            if usize::from(ip.total_len()) != pkt.len() || ip.more_frags() || ip.frag_offset() != 0
            {
                return None;
            }
            Some((ip.header_len(), false, ip.protocol()))
        }
        6 => {
            let ip = Ipv6Packet::new_checked(pkt).ok()?;
            if ip.payload_len() == 0 || ip.total_len() != pkt.len() {
                return None;
            }
            Some((40, true, ip.next_header()))
        }
        _ => None,
    }
}

/// Same IP header as the held packet apart from lengths, IDs and checksums:
/// IPv4 TOS, DF, TTL, protocol, addresses and options; IPv6 traffic class,
/// flow label, next header, hop limit and addresses.
fn same_ip(pkt: &[u8], held: &[u8], l3: usize, v6: bool) -> bool {
    if v6 {
        pkt[..4] == held[..4] && pkt[6..40] == held[6..40]
    } else {
        pkt[1] == held[1]
            && pkt[6] & 0x40 == held[6] & 0x40
            && pkt[8..10] == held[8..10]
            && pkt[12..l3] == held[12..l3]
    }
}

/// Writes the merged packet's IP length field (and the IPv4 header
/// checksum). The caller keeps `pkt` at most 65,535 bytes.
fn set_ip_len(pkt: &mut [u8], v6: bool) {
    let len = pkt.len();
    if v6 {
        pkt[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
    } else {
        let mut ip = Ipv4Packet::new_unchecked(&mut *pkt);
        ip.set_total_len(len as u16);
        ip.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TCP/IPv4 packet with valid checksums.
    fn tcp4(seq: u32, flags: u8, payload: &[u8], opts: &[u8]) -> Vec<u8> {
        let thl = 20 + opts.len();
        let len = 20 + thl + payload.len();
        let mut p = vec![0u8; len];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        p[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
        p[6] = 0x40;
        p[8] = 64;
        p[9] = TCP.0;
        p[12..16].copy_from_slice(&[10, 1, 0, 2]);
        p[16..20].copy_from_slice(&[10, 2, 0, 2]);
        Ipv4Packet::new_unchecked(&mut p[..]).fill_checksum();
        p[20..22].copy_from_slice(&40000u16.to_be_bytes());
        p[22..24].copy_from_slice(&5201u16.to_be_bytes());
        p[24..28].copy_from_slice(&seq.to_be_bytes());
        p[28..32].copy_from_slice(&77u32.to_be_bytes());
        p[32] = ((thl / 4) as u8) << 4;
        p[33] = flags;
        p[34..36].copy_from_slice(&500u16.to_be_bytes());
        p[40..40 + opts.len()].copy_from_slice(opts);
        p[20 + thl..].copy_from_slice(payload);
        let c = checksum::finish(checksum::add(pseudo(&p, false, len - 20), &p[20..]));
        p[36..38].copy_from_slice(&c.to_be_bytes());
        p
    }

    /// A UDP/IPv4 datagram with a valid checksum.
    fn udp4(id: u16, payload: &[u8]) -> Vec<u8> {
        let len = 28 + payload.len();
        let mut p = vec![0u8; len];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        p[4..6].copy_from_slice(&id.to_be_bytes());
        p[8] = 64;
        p[9] = UDP.0;
        p[12..16].copy_from_slice(&[10, 1, 0, 2]);
        p[16..20].copy_from_slice(&[10, 2, 0, 2]);
        Ipv4Packet::new_unchecked(&mut p[..]).fill_checksum();
        p[20..22].copy_from_slice(&40000u16.to_be_bytes());
        p[22..24].copy_from_slice(&5201u16.to_be_bytes());
        p[24..26].copy_from_slice(&((len - 20) as u16).to_be_bytes());
        p[28..].copy_from_slice(payload);
        let c = checksum::finish(checksum::add(
            pseudo_for(&p, false, UDP, len - 20),
            &p[20..],
        ));
        p[26..28].copy_from_slice(&c.to_be_bytes());
        p
    }

    fn udp_valid(p: &[u8]) -> bool {
        checksum::of(&p[..20]) == 0
            && checksum::finish(checksum::add(
                pseudo_for(p, false, UDP, p.len() - 20),
                &p[20..],
            )) == 0
    }

    /// UDP GRO towards the TUN and USO segmentation from it are inverses:
    /// coalesced datagrams, split again, are the originals (IP IDs counted
    /// up from the first, as the kernel does).
    #[test]
    fn udp_gro_then_uso_roundtrip() {
        let dgrams: Vec<Vec<u8>> = (0..5u16)
            .map(|i| {
                let n = if i == 4 { 30 } else { 64 };
                udp4(0x100 + i, &vec![i as u8 + 1; n])
            })
            .collect();
        // Off by default: UDP is not taken.
        assert!(!Gro::new().push(&dgrams[0]));
        let mut gro = Gro::new().with_udp(true);
        for d in &dgrams {
            assert!(gro.push(d));
        }
        // closed by the shorter last datagram; a TCP segment cannot join
        assert!(!gro.push(&udp4(9, &[0; 64])));
        assert!(!gro.push(&tcp4(1, ACK, &[0; 64], &[])));
        let merged = gro.finish().unwrap().to_vec();
        let h = VnetHdr::parse(&merged).unwrap();
        assert_eq!(h.gso_type, VnetHdr::GSO_UDP_L4);
        assert_eq!(
            (h.gso_size, h.hdr_len, h.csum_start, h.csum_offset),
            (64, 28, 20, 6)
        );
        let sup = &merged[VNET_HDR_LEN..];
        assert_eq!(sup.len(), 28 + 4 * 64 + 30);
        let tso = Tso::new(sup, &h).unwrap();
        assert_eq!(tso.count(), 5);
        let mut out = vec![0u8; 200];
        for (i, d) in dgrams.iter().enumerate() {
            let n = tso.segment(sup, i, &mut out).unwrap();
            assert!(udp_valid(&out[..n]), "segment {i}");
            assert_eq!(&out[..n], &d[..], "segment {i}");
        }
        // other flow / fragment / length mismatch are refused
        let mut g = Gro::new().with_udp(true);
        assert!(g.push(&dgrams[0]));
        let mut other = dgrams[1].clone();
        other[21] ^= 1;
        assert!(!g.push(&other));
        let mut frag = dgrams[1].clone();
        frag[6] = 0x20;
        assert!(!g.push(&frag));
        let mut bad = dgrams[1].clone();
        bad[25] ^= 1;
        assert!(!g.push(&bad));
        assert!(g.push(&dgrams[1]));
    }

    fn valid(p: &[u8]) -> bool {
        let l3 = usize::from(p[0] & 0x0f) * 4;
        checksum::of(&p[..l3]) == 0
            && checksum::finish(checksum::add(pseudo(p, false, p.len() - l3), &p[l3..])) == 0
    }

    #[test]
    fn tso_then_gro_roundtrip() {
        let opts = [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2];
        let payload: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
        let mut sup = tcp4(1000, ACK | PSH, &payload, &opts);
        // as the kernel hands it over: partial checksum, big length
        let l3 = 20;
        let p = checksum::fold(pseudo(&sup, false, sup.len() - l3));
        sup[36..38].copy_from_slice(&p.to_be_bytes());
        let hdr = VnetHdr {
            flags: VnetHdr::F_NEEDS_CSUM,
            gso_type: VnetHdr::GSO_TCPV4,
            hdr_len: 52,
            gso_size: 1448,
            csum_start: 20,
            csum_offset: 16,
        };
        let tso = Tso::new(&sup, &hdr).unwrap();
        assert_eq!(tso.count(), 4);
        let mut gro = Gro::new();
        let mut out = vec![0u8; 2000];
        for i in 0..4 {
            let n = tso.segment(&sup, i, &mut out).unwrap();
            let seg = &out[..n];
            assert!(valid(seg), "segment {i}");
            assert_eq!(be32(seg, 24), 1000 + 1448 * i as u32);
            assert_eq!(seg[33] & PSH != 0, i == 3);
            assert_eq!(
                n,
                if i < 3 {
                    52 + 1448
                } else {
                    52 + 5000 - 3 * 1448
                }
            );
            assert!(gro.push(seg));
        }
        assert!(tso.segment(&sup, 4, &mut out).is_none());
        // closed after PSH / the short last segment
        let extra = tcp4(6000, ACK, &[1; 10], &opts);
        assert!(!gro.push(&extra));
        let merged = gro.finish().unwrap().to_vec();
        assert!(gro.is_empty());
        let h = VnetHdr::parse(&merged).unwrap();
        assert_eq!(h.gso_type, VnetHdr::GSO_TCPV4);
        assert_eq!(h.gso_size, 1448);
        assert_eq!(h.hdr_len, 52);
        let mut m = merged[VNET_HDR_LEN..].to_vec();
        assert_eq!(&m[52..], &payload[..]);
        assert!(complete_csum(&mut m, 20, 16));
        assert!(valid(&m));
        assert_eq!(be16(&m, 2) as usize, m.len());
        assert_eq!(m[33], ACK | PSH);
    }

    #[test]
    fn gro_refuses_gaps_other_flows_and_flags() {
        let mut gro = Gro::new();
        let a = tcp4(1, ACK, &[0; 100], &[]);
        assert!(gro.push(&a));
        assert!(!gro.push(&tcp4(500, ACK, &[0; 100], &[]))); // gap
        assert!(!gro.push(&tcp4(101, ACK | FIN, &[0; 100], &[]))); // FIN
        let mut other = tcp4(101, ACK, &[0; 100], &[]);
        other[20] ^= 1; // other source port
        assert!(!gro.push(&other));
        assert!(!gro.push(&tcp4(101, ACK, &[0; 101], &[]))); // larger than mss
        assert!(gro.push(&tcp4(101, ACK, &[0; 100], &[])));
        // one segment comes back unchanged with a zero header
        let mut g2 = Gro::new();
        assert!(g2.push(&a));
        let one = g2.finish().unwrap();
        assert_eq!(&one[..VNET_HDR_LEN], &[0; VNET_HDR_LEN]);
        assert_eq!(&one[VNET_HDR_LEN..], &a[..]);
        // not TCP / pure ACK: not coalescable
        let mut g3 = Gro::new();
        assert!(!g3.push(&tcp4(1, ACK, &[], &[])));
        let mut udp = a.clone();
        udp[9] = 17;
        assert!(!g3.push(&udp));
        assert!(g3.finish().is_none());
    }

    #[test]
    fn partial_checksum_completion() {
        let mut p = tcp4(9, ACK, &[5; 33], &[]);
        let want = p.clone();
        let f = checksum::fold(pseudo(&p, false, p.len() - 20));
        p[36..38].copy_from_slice(&f.to_be_bytes());
        assert!(complete_csum(&mut p, 20, 16));
        assert_eq!(p, want);
        assert!(!complete_csum(&mut p, 200, 16));
        assert!(!complete_csum(&mut p, 20, 70));
    }

    #[test]
    fn tso_rejects_non_tcp() {
        let mut p = tcp4(1, ACK, &[0; 10], &[]);
        p[9] = 17;
        let hdr = VnetHdr {
            gso_type: VnetHdr::GSO_TCPV4,
            gso_size: 4,
            ..VnetHdr::default()
        };
        assert!(Tso::new(&p, &hdr).is_none());
        assert!(Tso::new(&[0x60; 10], &hdr).is_none());
        let v = VnetHdr::default();
        assert!(Tso::new(&tcp4(1, ACK, &[0; 10], &[]), &v).is_none());
    }

    /// A TCP or UDP/IPv6 packet (no extension headers) with a valid
    /// checksum.
    fn l4v6(proto: IpProtocol, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        let thl = if proto == TCP { 20 } else { 8 };
        let len = 40 + thl + payload.len();
        let mut p = vec![0u8; len];
        p[0] = 0x60;
        p[1..4].copy_from_slice(&[0x0a, 0xbc, 0xde]); // TC and flow label
        p[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
        p[6] = proto.0;
        p[7] = 64;
        p[8..24].copy_from_slice(&"fd00:1::2".parse::<std::net::Ipv6Addr>().unwrap().octets());
        p[24..40].copy_from_slice(&"fd00:2::2".parse::<std::net::Ipv6Addr>().unwrap().octets());
        p[40..42].copy_from_slice(&40000u16.to_be_bytes());
        p[42..44].copy_from_slice(&5201u16.to_be_bytes());
        let csum_at = if proto == TCP {
            p[44..48].copy_from_slice(&seq.to_be_bytes());
            p[48..52].copy_from_slice(&77u32.to_be_bytes());
            p[52] = 5 << 4;
            p[53] = flags;
            p[54..56].copy_from_slice(&500u16.to_be_bytes());
            56
        } else {
            p[44..46].copy_from_slice(&((len - 40) as u16).to_be_bytes());
            46
        };
        p[40 + thl..].copy_from_slice(payload);
        let c = checksum::finish(checksum::add(
            pseudo_for(&p, true, proto, len - 40),
            &p[40..],
        ));
        p[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
        p
    }

    fn v6_valid(p: &[u8]) -> bool {
        checksum::finish(checksum::add(
            pseudo_for(p, true, IpProtocol(p[6]), p.len() - 40),
            &p[40..],
        )) == 0
    }

    /// TCP/IPv6: segments of one flow coalesce into one `GSO_TCPV6`
    /// super-packet, and TSO splits it back into the same segments.
    #[test]
    fn tcp_v6_gro_then_tso_roundtrip() {
        let segs: Vec<Vec<u8>> = (0..4u32)
            .map(|i| {
                let n = if i == 3 { 700 } else { 1400 };
                let flags = if i == 3 { ACK | PSH } else { ACK };
                l4v6(TCP, 1000 + 1400 * i, flags, &vec![i as u8 + 1; n])
            })
            .collect();
        let mut gro = Gro::new();
        for s in &segs {
            assert!(v6_valid(s));
            assert!(gro.push(s));
        }
        // closed by PSH and the short segment
        assert!(!gro.push(&l4v6(TCP, 1000 + 1400 * 3 + 700, ACK, &[0; 1400])));
        let merged = gro.finish().unwrap().to_vec();
        let h = VnetHdr::parse(&merged).unwrap();
        assert_eq!(h.gso_type, VnetHdr::GSO_TCPV6);
        assert_eq!(
            (h.gso_size, h.hdr_len, h.csum_start, h.csum_offset),
            (1400, 60, 40, 16)
        );
        let sup = &merged[VNET_HDR_LEN..];
        assert_eq!(sup.len(), 60 + 3 * 1400 + 700);
        assert_eq!(be16(sup, 4) as usize, sup.len() - 40);
        let mut whole = sup.to_vec();
        assert!(complete_csum(&mut whole, 40, 16));
        assert!(v6_valid(&whole));
        let tso = Tso::new(sup, &h).unwrap();
        assert_eq!(tso.count(), 4);
        let mut out = vec![0u8; 2000];
        for (i, s) in segs.iter().enumerate() {
            let n = tso.segment(sup, i, &mut out).unwrap();
            assert!(v6_valid(&out[..n]), "segment {i}");
            assert_eq!(&out[..n], &s[..], "segment {i}");
        }
    }

    /// UDP/IPv6 datagrams coalesce only when the TUN takes USO.
    #[test]
    fn udp_v6_gro_then_uso_roundtrip() {
        let dgrams: Vec<Vec<u8>> = (0..3u8)
            .map(|i| l4v6(UDP, 0, 0, &vec![i + 1; 512]))
            .collect();
        assert!(!Gro::new().push(&dgrams[0]));
        let mut gro = Gro::new().with_udp(true);
        for d in &dgrams {
            assert!(gro.push(d));
        }
        let merged = gro.finish().unwrap().to_vec();
        let h = VnetHdr::parse(&merged).unwrap();
        assert_eq!(h.gso_type, VnetHdr::GSO_UDP_L4);
        assert_eq!((h.gso_size, h.hdr_len, h.csum_start), (512, 48, 40));
        let sup = &merged[VNET_HDR_LEN..];
        let tso = Tso::new(sup, &h).unwrap();
        assert_eq!(tso.count(), 3);
        let mut out = vec![0u8; 1000];
        for (i, d) in dgrams.iter().enumerate() {
            let n = tso.segment(sup, i, &mut out).unwrap();
            assert!(v6_valid(&out[..n]), "datagram {i}");
            assert_eq!(&out[..n], &d[..], "datagram {i}");
        }
    }

    /// IPv6 and IPv4 never merge; other flow labels, hop limits, extension
    /// headers and length mismatches are refused.
    #[test]
    fn gro_v6_refusals() {
        let a = l4v6(TCP, 1, ACK, &[0; 100]);
        let next = l4v6(TCP, 101, ACK, &[0; 100]);
        let mut gro = Gro::new();
        assert!(gro.push(&a));
        let mut v4 = tcp4(101, ACK, &[0; 100], &[]);
        assert!(!gro.push(&v4));
        let mut label = next.clone();
        label[3] ^= 1;
        assert!(!gro.push(&label));
        let mut hop = next.clone();
        hop[7] = 63;
        assert!(!gro.push(&hop));
        let mut long = next.clone();
        long.push(0);
        assert!(!gro.push(&long));
        assert!(gro.push(&next));
        // an IPv4 flow first: IPv6 cannot join it
        let mut g4 = Gro::new();
        v4 = tcp4(1, ACK, &[0; 100], &[]);
        assert!(g4.push(&v4));
        assert!(!g4.push(&next));
        // a hop-by-hop header in front of TCP: not coalescable
        let mut ext = a.clone();
        ext[6] = 0;
        assert!(!Gro::new().push(&ext));
    }
}
