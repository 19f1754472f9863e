//! The per-packet path between a TUN device and ESP, free of IO and
//! allocation: functions that take a caller-owned [`PacketBuf`] and a
//! shared `&DataPath`, so a later multi-queue/multi-core loop can call them
//! from several threads. Outbound: MSS clamp, "too big" check, ESP
//! encapsulation; inbound: ESP decapsulation, MSS clamp; plus the RFC 3948
//! classification of UDP/4500 datagrams.

use std::time::Instant;

use ipsec_core::buf::PacketBuf;
use ipsec_core::datapath::{DataPath, InboundAction, OutboundAction, TunnelId};
use ipsec_core::wire::{classify_udp_4500, EspPacket, FlowKey, UdpDatagram};

use super::icmp::{build_too_big, needs_too_big};
use super::mss::{clamp_mss, TunnelMtu};

pub use ipsec_core::buf::{RECOMMENDED_HEADROOM as HEADROOM, RECOMMENDED_TAILROOM as TAILROOM};

/// Largest packet read from a TUN or a socket.
pub const MAX_PACKET: usize = 65_535;
/// Size of one packet buffer (headroom + packet + tailroom).
pub const BUF_SIZE: usize = HEADROOM + MAX_PACKET + TAILROOM;

/// A packet buffer sized for the runtime (allocated once, reused).
pub fn new_buf() -> PacketBuf<Vec<u8>> {
    PacketBuf::with_capacity(HEADROOM, MAX_PACKET, TAILROOM)
}

/// What to do with a packet read from a TUN device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TunVerdict {
    /// ESP packet in the buffer: send it (see [`OutboundAction::Encapsulated`]).
    Send(OutboundAction),
    /// Too big for the tunnel with DF set (or IPv6): an ICMP "too big" of
    /// this many bytes is in the scratch buffer, write it back to the TUN.
    TooBig(usize),
    /// Too big, but no ICMP reply could be built.
    TooBigNoReply,
    /// Any other data-path answer (acquire, bypass, discard).
    Other(OutboundAction),
}

/// Outbound path for one packet (the buffer's range, read from the TUN of
/// `tunnel`): MSS clamp, "too big" check, then ESP encapsulation.
pub fn tun_to_esp<S: AsRef<[u8]> + AsMut<[u8]>>(
    dp: &DataPath,
    tunnel: TunnelId,
    now: Instant,
    buf: &mut PacketBuf<S>,
    mtu: &TunnelMtu,
    reply_src: Option<std::net::IpAddr>,
    scratch: &mut [u8],
) -> TunVerdict {
    clamp_inner(buf.data_mut(), mtu);
    if needs_too_big(buf.data(), mtu.mtu) {
        return match build_too_big(buf.data(), mtu.mtu, reply_src, scratch) {
            Ok(n) => TunVerdict::TooBig(n),
            Err(_) => TunVerdict::TooBigNoReply,
        };
    }
    match dp.process_outbound(tunnel, now, buf) {
        a @ OutboundAction::Encapsulated { .. } => TunVerdict::Send(a),
        a => TunVerdict::Other(a),
    }
}

/// The tunnel of a packet read from an interface several tunnels share
/// (Libreswan's shared `ipsec-interface=`): the first of `tunnels` whose
/// policies match it and that has an outbound SA, else the first whose
/// policies match, else the first. With one tunnel, that one.
pub fn pick_tunnel(dp: &DataPath, tunnels: &[TunnelId], pkt: &[u8]) -> TunnelId {
    let first = tunnels.first().copied().unwrap_or(TunnelId(0));
    if tunnels.len() < 2 {
        return first;
    }
    let Ok((flow, _)) = FlowKey::parse(pkt) else {
        return first;
    };
    let mut matching = None;
    for &t in tunnels {
        let Some(p) = dp.spd(t).and_then(|spd| spd.lookup_outbound(&flow)) else {
            continue;
        };
        if dp.sad().outbound(p.id).is_some() {
            return t;
        }
        matching.get_or_insert(t);
    }
    matching.unwrap_or(first)
}

fn clamp_inner(pkt: &mut [u8], mtu: &TunnelMtu) {
    let mss = match pkt.first().map(|b| b >> 4) {
        Some(6) => mtu.mss_v6,
        _ => mtu.mss_v4,
    };
    let _ = clamp_mss(pkt, mss);
}

/// Inbound path for one ESP packet (raw protocol 50, or taken out of
/// UDP/4500): decrypt, and clamp the MSS of the inner packet to the MTU of
/// the tunnel the SA belongs to (`mtu_of`; no clamp if it has none).
pub fn esp_to_tun<S: AsRef<[u8]> + AsMut<[u8]>>(
    dp: &DataPath,
    now: Instant,
    buf: &mut PacketBuf<S>,
    mtu_of: impl FnOnce(TunnelId) -> Option<TunnelMtu>,
) -> InboundAction {
    let a = dp.process_inbound_esp(now, buf);
    if let InboundAction::Inner { tunnel, .. } = a {
        if let Some(mtu) = mtu_of(tunnel) {
            clamp_inner(buf.data_mut(), &mtu);
        }
    }
    a
}

/// What a UDP/4500 datagram is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Udp4500 {
    /// ESP with this SPI (find the connection, then [`esp_to_tun`]).
    Esp(u32),
    /// IKE (non-ESP marker present; hand the whole datagram to ike-lite).
    Ike,
    /// NAT keepalive.
    Keepalive,
    /// Too short to be anything.
    Junk,
}

/// Classifies a UDP/4500 payload with ipsec-core's RFC 3948 classifier.
pub fn classify_4500(payload: &[u8]) -> Udp4500 {
    match classify_udp_4500(payload) {
        Ok(UdpDatagram::Esp) => Udp4500::Esp(esp_spi(payload).unwrap_or(0)),
        Ok(UdpDatagram::Ike { .. }) => Udp4500::Ike,
        Ok(UdpDatagram::Keepalive) => Udp4500::Keepalive,
        _ => Udp4500::Junk,
    }
}

/// The SPI of an ESP packet; `None` if it is shorter than the ESP header
/// (SPI and sequence number, 8 bytes).
pub fn esp_spi(esp: &[u8]) -> Option<u32> {
    EspPacket::new_checked(esp).ok().map(|p| p.spi())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipsec_core::crypto::Suite;
    use ipsec_core::sa::{SaParams, SecretBytes, TunnelEndpoints};
    use ipsec_core::selector::TrafficSelector;
    use ipsec_core::spd::{Action, Policy, PolicyId};

    fn ping(src: [u8; 4], dst: [u8; 4], len: usize, df: bool) -> Vec<u8> {
        let mut p = vec![0u8; len];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        if df {
            p[6] = 0x40;
        }
        p[8] = 64;
        p[9] = 1;
        p[12..16].copy_from_slice(&src);
        p[16..20].copy_from_slice(&dst);
        ipsec_core::wire::Ipv4Packet::new_unchecked(&mut p[..]).fill_checksum();
        p[20] = 8;
        p
    }

    fn dp_pair() -> (DataPath, DataPath) {
        let t = TunnelEndpoints {
            local: "192.0.2.1".parse().unwrap(),
            remote: "192.0.2.2".parse().unwrap(),
        };
        let key = SecretBytes::new(vec![7u8; 20]);
        let mk = |tunnel| {
            let mut p = SaParams::new(
                0x1234,
                Suite::AES128_GCM16,
                key.clone(),
                SecretBytes::new(vec![]),
                tunnel,
            );
            p.replay_window = 64;
            p
        };
        let now = Instant::now();
        let mut a = DataPath::default();
        a.add_policy(Policy {
            id: PolicyId(1),
            tunnel: TunnelId(0),
            priority: 1,
            local: TrafficSelector::any_v4(),
            remote: TrafficSelector::any_v4(),
            action: Action::Protect,
        })
        .unwrap();
        a.install_outbound(PolicyId(1), &mk(t), now).unwrap();
        let mut b = DataPath::default();
        let back = TunnelEndpoints {
            local: t.remote,
            remote: t.local,
        };
        b.install_inbound(&mk(back), now).unwrap();
        (a, b)
    }

    #[test]
    fn roundtrip_and_too_big() {
        let (a, b) = dp_pair();
        let mtu = TunnelMtu {
            mtu: 1400,
            mss_v4: 1360,
            mss_v6: 1340,
        };
        let now = Instant::now();
        let mut buf = new_buf();
        let mut scratch = [0u8; 1500];
        let pkt = ping([10, 1, 0, 2], [10, 2, 0, 2], 84, true);
        buf.load(HEADROOM, &pkt).unwrap();
        let v = tun_to_esp(&a, TunnelId(0), now, &mut buf, &mtu, None, &mut scratch);
        let TunVerdict::Send(OutboundAction::Encapsulated { spi, udp_encap, .. }) = v else {
            panic!("{v:?}")
        };
        assert_eq!(spi, 0x1234);
        assert_eq!(udp_encap, None);
        assert_eq!(classify_4500(buf.data()), Udp4500::Esp(0x1234));
        let a2 = esp_to_tun(&b, now, &mut buf, |_| Some(mtu));
        assert!(
            matches!(a2, InboundAction::Inner { spi: 0x1234, .. }),
            "{a2:?}"
        );
        assert_eq!(buf.data(), &pkt[..]);
        let big = ping([10, 1, 0, 2], [10, 2, 0, 2], 1450, true);
        buf.load(HEADROOM, &big).unwrap();
        match tun_to_esp(&a, TunnelId(0), now, &mut buf, &mtu, None, &mut scratch) {
            TunVerdict::TooBig(n) => {
                assert_eq!(scratch[20], 3);
                assert_eq!(scratch[21], 4);
                assert_eq!(u16::from_be_bytes([scratch[26], scratch[27]]), 1400);
                assert!(n > 28);
            }
            v => panic!("{v:?}"),
        }
        // without DF the packet is encapsulated (the outer path fragments)
        let big = ping([10, 1, 0, 2], [10, 2, 0, 2], 1450, false);
        buf.load(HEADROOM, &big).unwrap();
        assert!(matches!(
            tun_to_esp(&a, TunnelId(0), now, &mut buf, &mtu, None, &mut scratch),
            TunVerdict::Send(_)
        ));
    }

    #[test]
    fn shared_interface_picks_the_tunnel_with_an_sa() {
        // Tunnel 0 (from dp_pair) has 0/0 and an SA; tunnel 1 has 0/0
        // without SA; tunnel 2 only 10.9.0.0/16 without SA.
        let (mut a, _) = dp_pair();
        let net = |p: &str| {
            let (addr, len) = p.split_once('/').unwrap();
            TrafficSelector::from_prefix(addr.parse().unwrap(), len.parse().unwrap()).unwrap()
        };
        for (id, t, remote) in [(2, 1, "0.0.0.0/0"), (3, 2, "10.9.0.0/16")] {
            a.add_policy(Policy {
                id: PolicyId(id),
                tunnel: TunnelId(t),
                priority: 1,
                local: TrafficSelector::any_v4(),
                remote: net(remote),
                action: Action::Protect,
            })
            .unwrap();
        }
        let to = |d| ping([10, 1, 0, 2], d, 84, false);
        let t = |n| TunnelId(n);
        assert_eq!(pick_tunnel(&a, &[t(1), t(0)], &to([10, 2, 0, 2])), t(0));
        assert_eq!(pick_tunnel(&a, &[t(2), t(1)], &to([10, 9, 0, 2])), t(2));
        assert_eq!(pick_tunnel(&a, &[t(2), t(1)], &to([10, 2, 0, 2])), t(1));
        assert_eq!(pick_tunnel(&a, &[t(2)], &to([10, 2, 0, 2])), t(2));
        assert_eq!(pick_tunnel(&a, &[t(2), t(1)], &[0x45, 0]), t(2));
    }

    #[test]
    fn classifier() {
        assert_eq!(classify_4500(&[0xff]), Udp4500::Keepalive);
        assert_eq!(classify_4500(&[0, 0, 0, 0, 1, 2]), Udp4500::Ike);
        assert_eq!(classify_4500(&[1, 2]), Udp4500::Junk);
        assert_eq!(classify_4500(&[0, 0, 1, 0, 0, 0, 0, 1]), Udp4500::Esp(256));
        assert_eq!(esp_spi(&[0, 0, 1, 0, 0, 0, 0, 1, 9]), Some(256));
        assert_eq!(esp_spi(&[0, 0, 1, 0, 0, 0, 0]), None);
    }
}
