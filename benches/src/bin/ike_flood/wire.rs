//! The requests: deterministic per index (SPI, source address and port,
//! nonce, key share), as IPv4/UDP/IKE packets for a raw socket.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use ike_lite::message::{
    ExchangeType, Flags, Header, KePayload, Message, Notify, NotifyType, Payload, Proposal,
    ProtocolId, Transform, TransformType,
};

use crate::args::Args;

/// ENCR_AES_GCM_16, PRF_HMAC_SHA2_256, Curve25519 (RFC 7296, RFC 8031).
const ENCR_AES_GCM_16: u16 = 20;
const PRF_HMAC_SHA2_256: u16 = 5;
const CURVE25519: u16 = 31;

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn bytes(seed: u64, n: usize) -> Vec<u8> {
    (0..n as u64)
        .step_by(8)
        .flat_map(|k| splitmix(seed ^ k.wrapping_mul(0x51)).to_le_bytes())
        .take(n)
        .collect()
}

/// What request `i` looks like.
pub struct Flood {
    seed: u64,
    /// High 32 bits of every SPI of this run (never 0).
    tag: u32,
    net: u32,
    hosts: u32,
}

impl Flood {
    pub fn new(a: &Args) -> Flood {
        let hosts = 1u32.checked_shl(32 - u32::from(a.src_net.1)).unwrap_or(1);
        Flood {
            seed: a.seed,
            tag: (splitmix(a.seed) as u32) | 0x8000_0000,
            net: u32::from(a.src_net.0) & !(hosts.wrapping_sub(1)),
            hosts,
        }
    }

    /// The initiator SPI of request `i`.
    pub fn spi(&self, i: u64) -> u64 {
        (u64::from(self.tag) << 32) | (i & 0xffff_ffff)
    }

    /// The request index of an SPI of this run.
    pub fn index(&self, spi: u64) -> Option<u64> {
        ((spi >> 32) as u32 == self.tag).then_some(spi & 0xffff_ffff)
    }

    /// Source address and port of request `i`.
    pub fn source(&self, i: u64) -> (Ipv4Addr, u16) {
        let h = splitmix(self.seed.rotate_left(17) ^ i);
        let host = (h as u32) % self.hosts;
        let port = 1024 + ((h >> 32) as u32 % 60_000) as u16;
        (Ipv4Addr::from(self.net | host), port)
    }

    /// Whether `a` is one of our source addresses.
    pub fn is_source(&self, a: Ipv4Addr) -> bool {
        u32::from(a) & !(self.hosts.wrapping_sub(1)) == self.net
    }

    /// The IKE_SA_INIT request `i` (with `cookie` as its first payload).
    pub fn ike(&self, i: u64, cookie: Option<&[u8]>) -> Vec<u8> {
        let proposal = Proposal {
            num: 1,
            protocol: ProtocolId::IKE,
            spi: Vec::new(),
            transforms: vec![
                Transform::with_key_len(TransformType::ENCR, ENCR_AES_GCM_16, 256),
                Transform::new(TransformType::PRF, PRF_HMAC_SHA2_256),
                Transform::new(TransformType::DH, CURVE25519),
            ],
        };
        let mut payloads = vec![
            Payload::Sa(vec![proposal]),
            Payload::Ke(KePayload {
                group: CURVE25519,
                data: bytes(self.seed ^ i ^ 0x6b65, 32),
            }),
            Payload::Nonce(bytes(self.seed ^ i ^ 0x6e6f, 32)),
        ];
        if let Some(c) = cookie {
            payloads.insert(
                0,
                Payload::Notify(Notify::new(NotifyType::COOKIE, c.to_vec())),
            );
        }
        Message {
            header: Header::new(
                self.spi(i),
                0,
                ExchangeType::IKE_SA_INIT,
                Flags::INITIATOR,
                0,
            ),
            payloads,
        }
        .emit()
    }

    /// Request `i` as an IPv4/UDP packet to `dst`:500 into `out`.
    pub fn packet(&self, i: u64, cookie: Option<&[u8]>, out: &mut Vec<u8>) -> Ipv4Addr {
        let ike = self.ike(i, cookie);
        let (src, sport) = self.source(i);
        out.clear();
        let total = 20 + 8 + ike.len();
        out.extend_from_slice(&[0x45, 0]);
        out.extend_from_slice(&(total as u16).to_be_bytes());
        out.extend_from_slice(&(i as u16).to_be_bytes()); // id
        out.extend_from_slice(&[0x40, 0, 64, libc::IPPROTO_UDP as u8, 0, 0]); // DF, TTL, proto, csum
        out.extend_from_slice(&src.octets());
        out.extend_from_slice(&[0; 4]); // destination, set by `send`
        out.extend_from_slice(&sport.to_be_bytes());
        out.extend_from_slice(&500u16.to_be_bytes());
        out.extend_from_slice(&((8 + ike.len()) as u16).to_be_bytes());
        out.extend_from_slice(&[0, 0]); // no UDP checksum (IPv4)
        out.extend_from_slice(&ike);
        src
    }
}

/// A raw IPv4 socket that sends whole packets (`IPPROTO_RAW` implies
/// `IP_HDRINCL`; the kernel fills in the IP checksum).
pub struct RawSender {
    fd: OwnedFd,
}

impl RawSender {
    pub fn open() -> io::Result<RawSender> {
        // SAFETY: plain socket(2); the result is checked.
        let fd = unsafe {
            libc::socket(
                libc::AF_INET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::IPPROTO_RAW,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new descriptor that nothing else owns.
        Ok(RawSender {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Sends `pkt` (from [`Flood::packet`]) to `dst`.
    pub fn send(&self, pkt: &[u8], dst: Ipv4Addr) -> io::Result<()> {
        let mut p = pkt.to_vec();
        if p.len() >= 20 {
            p[16..20].copy_from_slice(&dst.octets());
        }
        // SAFETY: sockaddr_in is plain data; zeroed is a valid value.
        let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        sa.sin_family = libc::AF_INET as libc::sa_family_t;
        sa.sin_addr.s_addr = u32::from_ne_bytes(dst.octets());
        // SAFETY: `p` and `sa` live for the call; lengths are theirs.
        let r = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                p.as_ptr().cast(),
                p.len(),
                0,
                (&sa as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flood() -> Flood {
        let a = crate::args::parse(
            &"--netns n --iface v --dst 10.0.0.1 --src-net 198.18.4.0/22"
                .split_whitespace()
                .map(String::from)
                .collect::<Vec<_>>(),
        )
        .unwrap()
        .unwrap();
        Flood::new(&a)
    }

    #[test]
    fn requests_are_valid_ike_sa_init_from_the_source_range() {
        let f = flood();
        let mut pkt = Vec::new();
        for i in [0u64, 1, 77, 99_999] {
            let src = f.packet(i, None, &mut pkt);
            assert!(f.is_source(src));
            assert!(src.octets()[..2] == [198, 18] && (4..8).contains(&src.octets()[2]));
            let m = Message::parse(&pkt[28..]).expect("parses");
            assert_eq!(m.header.exchange, ExchangeType::IKE_SA_INIT);
            assert_eq!(f.index(m.header.spi_i), Some(i));
            assert!(matches!(
                m.payloads[..],
                [Payload::Sa(_), Payload::Ke(_), Payload::Nonce(_)]
            ));
            assert_eq!(usize::from(u16::from_be_bytes([pkt[2], pkt[3]])), pkt.len());
        }
        let with = f.ike(5, Some(b"cookie"));
        let m = Message::parse(&with).unwrap();
        assert!(matches!(&m.payloads[0], Payload::Notify(n) if n.ty == NotifyType::COOKIE));
        // The same request again: same bytes but for the cookie.
        assert_eq!(
            Message::parse(&f.ike(5, None)).unwrap().payloads[..],
            m.payloads[1..]
        );
        assert_eq!(f.index(0x1234), None);
    }
}
