//! The packet paths of the IO shell: TUN reads to ESP sends (TSO split,
//! batched `sendmmsg` / UDP GSO), ESP receives to TUN writes (GRO), and IKE
//! datagrams handed to the engine. Per-packet work is in
//! [`crate::packet`]; nothing here allocates per packet.

use std::net::SocketAddr;
use std::time::Instant;

use ipsec_core::datapath::{InboundAction, OutboundAction};
use ipsec_core::sa::{TunnelEndpoints, UdpEncap};
use tracing::{debug, warn};

use super::setup::{LocalSocks, TunDev};
use super::{Buf, Bufs, GroState, LocalDrop, Shell};
use crate::engine::TunnelId;
use crate::packet::forward::{
    self, classify_4500, esp_to_tun, tun_to_esp, TunVerdict, Udp4500, HEADROOM,
};
use crate::packet::offload::{complete_csum, Tso};
use crate::packet::vnet::{VnetHdr, VNET_HDR_LEN};
use crate::sys::tun::Tun;
use crate::sys::udp::{BATCH_MAX, NATT_PORT};

/// Reads (or batched receives) per readiness event before polling again
/// (fairness).
pub(super) const BURST: usize = 64;
/// Largest inner packet a segment buffer holds (TUN MTU upper bound).
pub(super) const SEG_MAX: usize = 9216;

impl Shell {
    /// Reads what the kernel routed into interface `k`, encrypts it with
    /// the SA of its tunnel (of the matching one, on a shared interface)
    /// and sends it.
    pub(super) fn on_tun(&mut self, now: Instant, k: usize, bufs: &mut Bufs) {
        let Some(vnet) = self.tun_dev(k).map(|d| d.tun.vnet_hdr()) else {
            return;
        };
        let at = if vnet {
            HEADROOM - VNET_HDR_LEN
        } else {
            HEADROOM
        };
        for _ in 0..BURST {
            let st = bufs.pkt.storage_mut();
            let Some(dev) = self.tun_dev(k) else { break };
            let n = match dev.tun.read(&mut st[..HEADROOM + forward::MAX_PACKET], at) {
                Ok(Some(n)) => n,
                Ok(None) => break,
                Err(e) => {
                    warn!(tun = %dev.tun.name(), "TUN read: {e}");
                    break;
                }
            };
            let (hdr, len) = if vnet {
                match VnetHdr::parse(&st[at..at + n]) {
                    Some(h) => (h, n - VNET_HDR_LEN),
                    None => continue,
                }
            } else {
                (VnetHdr::default(), n)
            };
            let pkt = &mut st[HEADROOM..HEADROOM + len];
            if hdr.gso_type != VnetHdr::GSO_NONE {
                let Some(tso) = Tso::new(pkt, &hdr) else {
                    self.count(k, LocalDrop::TooBig);
                    continue;
                };
                for s in 0..tso.count() {
                    self.make_room(k, bufs);
                    let slot = bufs.out.len();
                    let (src, dst) = (bufs.pkt.storage(), &mut bufs.segs[slot]);
                    let Some(m) = tso.segment(
                        &src[HEADROOM..HEADROOM + len],
                        s,
                        &mut dst.storage_mut()[HEADROOM..HEADROOM + SEG_MAX],
                    ) else {
                        break;
                    };
                    if dst.set_range(HEADROOM..HEADROOM + m).is_ok() {
                        self.outbound_one(now, k, slot, bufs);
                    }
                }
                continue;
            }
            if hdr.flags & VnetHdr::F_NEEDS_CSUM != 0
                && !complete_csum(
                    pkt,
                    usize::from(hdr.csum_start),
                    usize::from(hdr.csum_offset),
                )
            {
                continue;
            }
            self.make_room(k, bufs);
            let slot = bufs.out.len();
            if len > SEG_MAX {
                // Bigger than any segment buffer: handle in place.
                if bufs.pkt.set_range(HEADROOM..HEADROOM + len).is_ok() {
                    std::mem::swap(&mut bufs.pkt, &mut bufs.segs[slot]);
                    self.outbound_one(now, k, slot, bufs);
                    self.flush_out(k, bufs);
                    std::mem::swap(&mut bufs.pkt, &mut bufs.segs[slot]);
                }
                continue;
            }
            let (src, dst) = (bufs.pkt.storage(), &mut bufs.segs[slot]);
            if dst.load(HEADROOM, &src[HEADROOM..HEADROOM + len]).is_ok() {
                self.outbound_one(now, k, slot, bufs);
            }
        }
        self.flush_out(k, bufs);
    }

    fn make_room(&mut self, k: usize, bufs: &mut Bufs) {
        if bufs.out.len() >= self.tuning.batch || bufs.out.len() >= bufs.segs.len() {
            self.flush_out(k, bufs);
        }
    }

    fn count(&mut self, k: usize, d: LocalDrop) {
        if let Some(dev) = self.tuns.get_mut(k).and_then(Option::as_mut) {
            dev.drops[d as usize] += 1;
        }
    }

    /// Interface `k`, unless a reload closed it.
    pub(super) fn tun_dev(&self, k: usize) -> Option<&TunDev> {
        self.tuns.get(k).and_then(Option::as_ref)
    }

    /// Runs the outbound path on `bufs.segs[slot]`; queues it for sending.
    fn outbound_one(&mut self, now: Instant, k: usize, slot: usize, bufs: &mut Bufs) {
        let Some(dev) = self.tun_dev(k) else { return };
        let dp = self.plane.datapath();
        let pkt = bufs.segs[slot].data();
        let tunnel = forward::pick_tunnel(dp, &dev.tunnels, pkt);
        // The peer's inside address answers "too big" for its own family
        // only (an IPv6 packet on a tunnel with an IPv4 inside /30 is
        // answered from its destination).
        let v4 = pkt.first().is_some_and(|b| b >> 4 == 4);
        let reply_src = dev.remote_inside.filter(|a| a.is_ipv4() == v4);
        let v = tun_to_esp(
            dp,
            tunnel,
            now,
            &mut bufs.segs[slot],
            &dev.mtu,
            reply_src,
            &mut bufs.scratch,
        );
        match v {
            TunVerdict::Send(OutboundAction::Encapsulated {
                endpoints,
                udp_encap,
                ..
            }) => bufs.out.push((slot, endpoints, udp_encap)),
            TunVerdict::TooBig(len) => {
                self.count(k, LocalDrop::TooBig);
                if let Some(dev) = self.tun_dev(k) {
                    let _ = tun_write(&dev.tun, &bufs.scratch[..len]);
                }
            }
            TunVerdict::TooBigNoReply => self.count(k, LocalDrop::TooBig),
            TunVerdict::Other(OutboundAction::Bypass) => self.count(k, LocalDrop::Bypass),
            TunVerdict::Other(_) | TunVerdict::Send(_) => {}
        }
    }

    /// Sends the queued ESP packets, one `sendmmsg` per run of packets with
    /// the same outer addresses.
    fn flush_out(&mut self, k: usize, bufs: &mut Bufs) {
        let mut s = 0;
        while s < bufs.out.len() {
            let (_, tunnel, encap) = bufs.out[s];
            let mut e = s + 1;
            while e < bufs.out.len() && bufs.out[e].1 == tunnel && bufs.out[e].2 == encap {
                e += 1;
            }
            let mut pkts: [&[u8]; BATCH_MAX] = [&[]; BATCH_MAX];
            for (p, &(slot, _, _)) in pkts.iter_mut().zip(&bufs.out[s..e]) {
                *p = bufs.segs[slot].data();
            }
            let (why, n) = send_esp_many(&self.socks, &pkts[..e - s], tunnel, encap);
            if let Some(dev) = self.tuns.get_mut(k).and_then(Option::as_mut) {
                dev.drops[why as usize] += n as u64;
            }
            s = e;
        }
        bufs.out.clear();
    }

    /// Decrypts one ESP packet and writes it (coalesced where possible) to
    /// the TUN of the tunnel its SA belongs to.
    fn deliver(&mut self, now: Instant, buf: &mut Buf, g: &mut GroState) {
        let (tuns, links) = (&self.tuns, &self.links);
        let mtu_of = |t: TunnelId| {
            links
                .tun_of(t)
                .and_then(|i| tuns.get(i))
                .and_then(Option::as_ref)
                .map(|d| d.mtu)
        };
        let (k, dev) = match esp_to_tun(self.plane.datapath(), now, buf, mtu_of) {
            InboundAction::Inner { tunnel, .. } => {
                match self
                    .links
                    .tun_of(tunnel)
                    .and_then(|k| Some((k, self.tun_dev(k)?)))
                {
                    Some(x) => x,
                    None => return,
                }
            }
            _ => return,
        };
        if !dev.tun.vnet_hdr() {
            if !matches!(dev.tun.write(buf.data()), Ok(Some(_))) {
                self.count(k, LocalDrop::TunWriteFull);
            }
            return;
        }
        if g.owner != Some(k) {
            self.flush_gro(g);
            g.owner = Some(k);
        }
        if g.gro.push(buf.data()) {
            return;
        }
        self.flush_gro(g);
        g.owner = Some(k);
        if !g.gro.push(buf.data())
            && !self
                .tun_dev(k)
                .is_some_and(|d| matches!(tun_write(&d.tun, buf.data()), Ok(Some(_))))
        {
            self.count(k, LocalDrop::TunWriteFull);
        }
    }

    /// Writes the coalesced packet (if any) to its TUN.
    pub(super) fn flush_gro(&mut self, g: &mut GroState) {
        let Some(k) = g.owner else { return };
        if let Some(p) = g.gro.finish() {
            let written = self
                .tuns
                .get(k)
                .and_then(Option::as_ref)
                .and_then(|d| d.tun.queue(0))
                .map(|q| q.write(p));
            if !matches!(written, Some(Ok(Some(_)))) {
                self.count(k, LocalDrop::TunWriteFull);
            }
        }
    }

    /// IKE on UDP 500 of socket set `j`.
    pub(super) fn on_ike500(&mut self, now: Instant, j: usize, bufs: &mut Bufs) {
        for _ in 0..BURST {
            let s = &self.socks[j];
            let meta = match s.ike.ike.recv(bufs.pkt.storage_mut()) {
                Ok(Some(m)) => m,
                Ok(None) => return,
                Err(e) => {
                    debug!("recv 500: {e}");
                    return;
                }
            };
            let local = SocketAddr::new(meta.dst.unwrap_or(s.ip), 500);
            let data = &bufs.pkt.storage()[..meta.len];
            if let Err(e) = self.engine.handle_ike(now, local, meta.src, data) {
                debug!(from = %meta.src, "IKE datagram dropped: {e}");
            }
        }
    }

    /// ESP-in-UDP, IKE and keepalives on UDP 4500 of socket set `j`.
    pub(super) fn on_natt(&mut self, now: Instant, j: usize, bufs: &mut Bufs) {
        let batch = self.tuning.batch;
        for _ in 0..BURST {
            let s = &self.socks[j];
            let got = match s
                .ike
                .natt
                .recv_many(&mut bufs.rx[..batch], &mut bufs.metas[..batch])
            {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    debug!("recv 4500: {e}");
                    break;
                }
            };
            let ip = s.ip;
            for i in 0..got {
                let meta = bufs.metas[i];
                let buf = &mut bufs.rx[i];
                // One datagram, or several coalesced by UDP GRO.
                for r in meta.datagrams() {
                    if r.end > forward::BUF_SIZE {
                        break;
                    }
                    match classify_4500(&buf.storage()[r.clone()]) {
                        Udp4500::Ike => {
                            let local = SocketAddr::new(meta.dst.unwrap_or(ip), NATT_PORT);
                            let data = &buf.storage()[r];
                            if let Err(e) = self.engine.handle_ike(now, local, meta.src, data) {
                                debug!(from = %meta.src, "IKE datagram dropped: {e}");
                            }
                        }
                        Udp4500::Esp(_) => {
                            if buf.set_range(r).is_ok() {
                                self.deliver(now, buf, &mut bufs.gro);
                            }
                        }
                        Udp4500::Keepalive | Udp4500::Junk => {}
                    }
                }
            }
            if got < batch {
                break;
            }
        }
        self.flush_gro(&mut bufs.gro);
    }

    /// Raw ESP (IP protocol 50) of socket set `j`.
    pub(super) fn on_raw(&mut self, now: Instant, j: usize, bufs: &mut Bufs) {
        let batch = self.tuning.batch;
        for _ in 0..BURST {
            let Some(raw) = &self.socks[j].raw else {
                return;
            };
            let got = match raw.recv_many(&mut bufs.rx[..batch], &mut bufs.metas[..batch]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    debug!("recv ESP: {e}");
                    break;
                }
            };
            for i in 0..got {
                let meta = bufs.metas[i];
                let buf = &mut bufs.rx[i];
                if meta.len == 0 {
                    continue;
                }
                let end = (meta.offset + meta.len).min(forward::BUF_SIZE);
                if buf.set_range(meta.offset..end).is_err() {
                    continue;
                }
                self.deliver(now, buf, &mut bufs.gro);
            }
            if got < batch {
                break;
            }
        }
        self.flush_gro(&mut bufs.gro);
    }
}

/// Writes one plain IP packet to a TUN (behind an all-zero virtio-net
/// header if the device has one).
pub(super) fn tun_write(tun: &Tun, pkt: &[u8]) -> std::io::Result<Option<usize>> {
    match tun.queue(0) {
        Some(q) if tun.vnet_hdr() => q.write_vnet(&[0; VNET_HDR_LEN], pkt),
        _ => tun.write(pkt),
    }
}

/// Sends ESP packets to one peer with `sendmmsg` (UDP GSO where the kernel
/// takes it); returns the drop reason and how many packets were not sent.
fn send_esp_many(
    socks: &[LocalSocks],
    esp: &[&[u8]],
    tunnel: TunnelEndpoints,
    udp_encap: Option<UdpEncap>,
) -> (LocalDrop, usize) {
    let Some(s) = socks.iter().find(|s| s.ip == tunnel.local) else {
        return (LocalDrop::SendFailed, esp.len());
    };
    let mut sent = 0;
    while sent < esp.len() {
        let rest = &esp[sent..];
        let r = match udp_encap {
            Some(u) if rest.len() == 1 => s
                .ike
                .natt
                .send_to(
                    rest[0],
                    SocketAddr::new(tunnel.remote, u.remote_port),
                    Some(tunnel.local),
                )
                .map(|r| usize::from(r.is_some())),
            Some(u) => {
                let dst = SocketAddr::new(tunnel.remote, u.remote_port);
                if s.gso.get() {
                    match s.ike.natt.send_many_gso(rest, dst, Some(tunnel.local)) {
                        Err(e) if e.raw_os_error() == Some(libc::EIO) => {
                            warn!(local = %s.ip, "UDP GSO refused by the kernel ({e}); sending without it");
                            s.gso.set(false);
                            s.ike.natt.send_many(rest, dst, Some(tunnel.local))
                        }
                        r => r,
                    }
                } else {
                    s.ike.natt.send_many(rest, dst, Some(tunnel.local))
                }
            }
            None => match &s.raw {
                Some(raw) if rest.len() == 1 => raw
                    .send_to(rest[0], tunnel.remote, Some(tunnel.local))
                    .map(|r| usize::from(r.is_some())),
                Some(raw) => raw.send_many(rest, tunnel.remote, Some(tunnel.local)),
                None => return (LocalDrop::NoRawSocket, esp.len()),
            },
        };
        match r {
            Ok(n) if n > 0 => sent += n,
            _ => break,
        }
    }
    (LocalDrop::SendFailed, esp.len() - sent)
}
