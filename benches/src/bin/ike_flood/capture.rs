//! The answers: an `AF_PACKET` socket on the interface the sources are
//! routed through sees the responder's packets to our (unowned) source
//! addresses; each is classified, and a COOKIE is answered when asked.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::args::Args;
use crate::wire::{Flood, RawSender};

/// What came back.
#[derive(Debug, Default)]
pub struct Counts {
    /// Requests sent and the time it took (set by the sender).
    pub sent: (u64, Duration),
    /// IKE_SA_INIT replies with a KE payload (the responder did the work).
    pub sa_init: u64,
    /// COOKIE notifies.
    pub cookie: u64,
    /// Other IKE_SA_INIT answers (error notifies).
    pub other: u64,
    /// Requests that got at least one answer.
    pub answered: u64,
    /// Requests sent again with their cookie.
    pub cookie_retries: u64,
}

pub struct Capture {
    fd: OwnedFd,
}

const ETH_P_IP: u16 = 0x0800;

impl Capture {
    pub fn open(iface: &str) -> io::Result<Capture> {
        let name = std::ffi::CString::new(iface).map_err(|_| io::Error::other("bad --iface"))?;
        // SAFETY: `name` is a valid C string.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if index == 0 {
            return Err(io::Error::other(format!("no interface {iface}")));
        }
        // SAFETY: plain socket(2); the result is checked.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                i32::from(ETH_P_IP.to_be()),
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_ll is plain data; zeroed is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETH_P_IP.to_be();
        sll.sll_ifindex = index as i32;
        // SAFETY: `sll` lives for the call and the length is its size.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 100_000,
        };
        let buf: libc::c_int = 32 << 20;
        // SAFETY: the option values live for the calls; lengths are theirs.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            );
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&buf as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        Ok(Capture { fd })
    }

    /// Reads answers until `stop` (or `hard_stop`).
    pub fn run(
        &self,
        flood: &Flood,
        a: &Args,
        stop: &AtomicBool,
        hard_stop: Instant,
    ) -> io::Result<Counts> {
        let tx = RawSender::open()?;
        let mut c = Counts::default();
        let n = usize::try_from(a.count).unwrap_or(usize::MAX);
        let mut answered = vec![false; n];
        let mut retried = vec![false; n];
        let mut buf = vec![0u8; 65536];
        let mut pkt = Vec::with_capacity(512);
        while !stop.load(Ordering::Relaxed) && Instant::now() < hard_stop {
            // SAFETY: `buf` is valid for writes of its length.
            let r =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if r < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => continue,
                    _ => return Err(e),
                }
            }
            let Some((i, kind, cookie)) = classify(&buf[..r as usize], a.dst, flood) else {
                continue;
            };
            let Some(slot) = usize::try_from(i).ok().filter(|&s| s < n) else {
                continue;
            };
            match kind {
                Kind::SaInit => c.sa_init += 1,
                Kind::Cookie => c.cookie += 1,
                Kind::Other => c.other += 1,
            }
            if !answered[slot] {
                answered[slot] = true;
                c.answered += 1;
            }
            if let (Some(cookie), true, false) = (cookie, a.answer_cookies, retried[slot]) {
                retried[slot] = true;
                flood.packet(i, Some(cookie), &mut pkt);
                if tx.send(&pkt, a.dst).is_ok() {
                    c.cookie_retries += 1;
                }
            }
        }
        Ok(c)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    SaInit,
    Cookie,
    Other,
}

/// An IKE_SA_INIT response from `dst`:500 to one of our sources: its
/// request index, kind and (for a COOKIE) the cookie.
pub fn classify<'a>(
    ip: &'a [u8],
    dst: Ipv4Addr,
    flood: &Flood,
) -> Option<(u64, Kind, Option<&'a [u8]>)> {
    let ihl = usize::from(*ip.first()? & 0x0f) * 4;
    if ip.first()? >> 4 != 4 || *ip.get(9)? != libc::IPPROTO_UDP as u8 {
        return None;
    }
    let src = Ipv4Addr::new(*ip.get(12)?, ip[13], ip[14], ip[15]);
    let to = Ipv4Addr::new(*ip.get(16)?, ip[17], ip[18], ip[19]);
    if src != dst || !flood.is_source(to) {
        return None;
    }
    let udp = ip.get(ihl..)?;
    if u16::from_be_bytes([*udp.first()?, *udp.get(1)?]) != 500 {
        return None;
    }
    let ike = udp.get(8..)?;
    let spi = u64::from_be_bytes(ike.get(..8)?.try_into().ok()?);
    let i = flood.index(spi)?;
    if *ike.get(18)? != 34 || ike.get(19)? & 0x20 == 0 {
        return None; // not an IKE_SA_INIT response
    }
    // Walk the payloads: a first-payload COOKIE, or a KE anywhere.
    let mut next = *ike.get(16)?;
    let mut rest = ike.get(28..)?;
    let mut first = true;
    let mut kind = Kind::Other;
    let mut cookie = None;
    while next != 0 {
        let len = usize::from(u16::from_be_bytes([*rest.get(2)?, *rest.get(3)?]));
        let body = rest.get(4..len)?;
        if next == 41 && first && body.len() >= 4 && u16::from_be_bytes([body[2], body[3]]) == 16390
        {
            let spi_len = usize::from(body[1]);
            cookie = Some(body.get(4 + spi_len..)?);
            kind = Kind::Cookie;
        } else if next == 34 {
            kind = Kind::SaInit;
        }
        first = false;
        next = rest[0];
        rest = &rest[len..];
    }
    Some((i, kind, cookie))
}
