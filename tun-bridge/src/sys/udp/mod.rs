//! Outer sockets: UDP 500/4500 for IKE and ESP-in-UDP, raw IP protocol 50
//! for ESP without NAT traversal.
//!
//! The 4500 socket is a plain UDP socket (no `UDP_ENCAP`): it delivers both
//! ESP-in-UDP and non-ESP-marker IKE datagrams raw; classifying them is the
//! job of ipsec-core's wire module. `IP_PKTINFO` / `IPV6_RECVPKTINFO` report
//! the local (destination) address of every datagram, and sends can choose
//! their source address the same way.

use super::{cvt, cvt_size, nonblocking};
use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

mod batch;
#[cfg(test)]
use batch::gso_runs;
use batch::{recv_many_raw, send_gso_raw, send_many_raw};
pub use batch::{RecvSlot, BATCH_MAX};

/// IKE port (RFC 7296).
pub const IKE_PORT: u16 = 500;
/// NAT-T port for IKE with non-ESP marker and ESP-in-UDP (RFC 3948).
pub const NATT_PORT: u16 = 4500;
/// IP protocol number of ESP.
pub const IPPROTO_ESP: libc::c_int = 50;

/// Where a received datagram came from and went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvMeta {
    /// Bytes of payload (for raw ESP: starting at `offset`).
    pub len: usize,
    /// Offset of the payload in the buffer (0 for UDP; the IPv4 header
    /// length for raw ESP over IPv4).
    pub offset: usize,
    /// Sender address (port 0 for raw ESP).
    pub src: SocketAddr,
    /// Local address the datagram was sent to (from packet info), if known.
    pub dst: Option<IpAddr>,
    /// Interface index the datagram arrived on (0 if unknown).
    pub ifindex: u32,
    /// With UDP GRO on ([`UdpSock::enable_gro`]): the size of each of the
    /// coalesced datagrams in the buffer (the last may be shorter); 0 when
    /// the buffer holds one datagram.
    pub segment: usize,
}

impl RecvMeta {
    /// The datagrams in the received payload `[offset, offset + len)` as
    /// ranges of the buffer: one, or several when UDP GRO coalesced them.
    pub fn datagrams(&self) -> impl Iterator<Item = std::ops::Range<usize>> {
        let (start, end) = (self.offset, self.offset + self.len);
        let step = if self.segment == 0 {
            self.len.max(1)
        } else {
            self.segment
        };
        (start..end)
            .step_by(step)
            .map(move |a| a..(a + step).min(end))
    }
}

/// `SOL_UDP` socket option: segmentation offload (send side).
const UDP_SEGMENT: libc::c_int = 103;
/// `SOL_UDP` socket option: receive coalescing (GRO).
const UDP_GRO: libc::c_int = 104;
/// Most segments the kernel takes in one UDP GSO send (`UDP_MAX_SEGMENTS`
/// of older kernels; newer ones take 128).
pub const GSO_MAX_SEGMENTS: usize = 64;
/// Most payload bytes of one UDP GSO send (below the 64 KiB IP limit).
pub const GSO_MAX_BYTES: usize = 65_000;

fn sockaddr_from(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match ss.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: family says the storage holds a sockaddr_in.
            let sin: &libc::sockaddr_in = unsafe { &*(ss as *const _ as *const libc::sockaddr_in) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: family says the storage holds a sockaddr_in6.
            let sin6: &libc::sockaddr_in6 =
                unsafe { &*(ss as *const _ as *const libc::sockaddr_in6) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

fn sockaddr_to(a: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut ss: libc::sockaddr_storage = unsafe { zeroed() };
    match a {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in.
            let sin: &mut libc::sockaddr_in =
                unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = v4.port().to_be();
            sin.sin_addr.s_addr = u32::from(*v4.ip()).to_be();
            (ss, size_of::<libc::sockaddr_in>() as libc::socklen_t)
        }
        SocketAddr::V6(v6) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in6.
            let sin6: &mut libc::sockaddr_in6 =
                unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = v6.port().to_be();
            sin6.sin6_addr.s6_addr = v6.ip().octets();
            sin6.sin6_flowinfo = v6.flowinfo();
            sin6.sin6_scope_id = v6.scope_id();
            (ss, size_of::<libc::sockaddr_in6>() as libc::socklen_t)
        }
    }
}

fn setsockopt_int(
    fd: RawFd,
    level: libc::c_int,
    opt: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    // SAFETY: int-valued socket option.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (&v as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}

/// Control-message buffer, aligned for `cmsghdr`, big enough for one
/// packet-info message of either family plus one `UDP_GRO`/`UDP_SEGMENT`
/// message.
#[repr(C, align(8))]
struct CmsgBuf([u8; 128]);

impl CmsgBuf {
    const fn new() -> CmsgBuf {
        CmsgBuf([0; 128])
    }
}

/// A `msghdr` for one datagram: address `ss` (`namelen` bytes valid),
/// the single buffer `iov` and the control bytes `control` (none when
/// empty). The raw pointers in it are only valid while those borrows live.
fn msghdr_for(
    ss: &mut libc::sockaddr_storage,
    namelen: libc::socklen_t,
    iov: &mut libc::iovec,
    control: &mut [u8],
) -> libc::msghdr {
    // SAFETY: all-zero is a valid msghdr (null pointers, zero lengths).
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_name = (ss as *mut libc::sockaddr_storage).cast();
    msg.msg_namelen = namelen;
    msg.msg_iov = iov;
    msg.msg_iovlen = 1;
    if !control.is_empty() {
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = control.len() as _;
    }
    msg
}

/// The local address and interface index from the packet-info control
/// message of a received `msg` (`(None, 0)` if there is none).
///
/// # Safety
///
/// `msg.msg_control` must be null or point to a live, `cmsghdr`-aligned
/// buffer of at least `msg.msg_controllen` bytes that `recvmsg`/`recvmmsg`
/// filled in.
unsafe fn read_pktinfo(msg: &libc::msghdr) -> (Option<IpAddr>, u32, usize) {
    let (mut dst, mut ifindex, mut segment) = (None, 0u32, 0usize);
    // SAFETY: CMSG_* walk the control buffer the kernel filled in, bounded
    // by msg_controllen (caller's contract); the data is read unaligned.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            let data = libc::CMSG_DATA(c);
            if (*c).cmsg_level == libc::IPPROTO_IP && (*c).cmsg_type == libc::IP_PKTINFO {
                let pi: libc::in_pktinfo = std::ptr::read_unaligned(data.cast());
                dst = Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(pi.ipi_addr.s_addr))));
                ifindex = pi.ipi_ifindex as u32;
            } else if (*c).cmsg_level == libc::IPPROTO_IPV6 && (*c).cmsg_type == libc::IPV6_PKTINFO
            {
                let pi: libc::in6_pktinfo = std::ptr::read_unaligned(data.cast());
                dst = Some(IpAddr::V6(Ipv6Addr::from(pi.ipi6_addr.s6_addr)));
                ifindex = pi.ipi6_ifindex;
            } else if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == UDP_GRO {
                let seg: libc::c_int = std::ptr::read_unaligned(data.cast());
                segment = usize::try_from(seg).unwrap_or(0);
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    (dst, ifindex, segment)
}

/// Writes one packet-info control message choosing source address `src`
/// at the start of `cbuf`; returns its length (`CMSG_SPACE`) for
/// `msg_controllen`.
fn write_src_pktinfo(cbuf: &mut CmsgBuf, src: IpAddr) -> usize {
    match src {
        IpAddr::V4(a) => {
            // SAFETY: all-zero is a valid in_pktinfo.
            let mut pi: libc::in_pktinfo = unsafe { zeroed() };
            pi.ipi_spec_dst.s_addr = u32::from(a).to_be();
            put_cmsg(cbuf, libc::IPPROTO_IP, libc::IP_PKTINFO, pi)
        }
        IpAddr::V6(a) => {
            // SAFETY: all-zero is a valid in6_pktinfo.
            let mut pi: libc::in6_pktinfo = unsafe { zeroed() };
            pi.ipi6_addr.s6_addr = a.octets();
            put_cmsg(cbuf, libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, pi)
        }
    }
}

/// Writes one control message (`level`, `ty`, `data`) at the start of
/// `cbuf`; returns its `CMSG_SPACE`.
fn put_cmsg<T: Copy>(cbuf: &mut CmsgBuf, level: libc::c_int, ty: libc::c_int, data: T) -> usize {
    put_cmsg_at(cbuf, 0, level, ty, data)
}

/// Writes one control message at byte `at` of `cbuf` (a multiple of the
/// `cmsghdr` alignment, e.g. the `CMSG_SPACE` of the messages before it);
/// returns its `CMSG_SPACE`.
fn put_cmsg_at<T: Copy>(
    cbuf: &mut CmsgBuf,
    at: usize,
    level: libc::c_int,
    ty: libc::c_int,
    data: T,
) -> usize {
    let dlen = size_of::<T>() as u32;
    // SAFETY: CMSG_SPACE is pure arithmetic on its argument.
    let space = unsafe { libc::CMSG_SPACE(dlen) } as usize;
    assert!(at % 8 == 0 && at + space <= cbuf.0.len(), "cmsg overflow");
    // SAFETY: all-zero is a valid msghdr; it only carries `cbuf` to
    // CMSG_FIRSTHDR.
    let mut tmp: libc::msghdr = unsafe { zeroed() };
    tmp.msg_control = cbuf.0[at..].as_mut_ptr().cast();
    tmp.msg_controllen = space as _;
    // SAFETY: `tmp` describes `space` bytes of our own 8-aligned buffer
    // starting at the 8-aligned offset `at` (checked above), so
    // CMSG_FIRSTHDR is non-null and header and data lie inside `cbuf`; the
    // data is written unaligned.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&tmp);
        (*c).cmsg_level = level;
        (*c).cmsg_type = ty;
        (*c).cmsg_len = libc::CMSG_LEN(dlen) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<T>(), data);
    }
    space
}

/// `recvmsg` into `buf`; parses packet info. `Ok(None)` = would block.
fn recv_with_info(fd: RawFd, buf: &mut [u8]) -> io::Result<Option<RecvMeta>> {
    nonblocking(|| {
        // SAFETY: all-zero is a valid sockaddr_storage.
        let mut ss: libc::sockaddr_storage = unsafe { zeroed() };
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let mut cbuf = CmsgBuf::new();
        let namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let mut msg = msghdr_for(&mut ss, namelen, &mut iov, &mut cbuf.0);
        // SAFETY: every pointer in `msg` refers to live buffers of the
        // stated lengths for the duration of the call.
        let n = cvt_size(unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT) })?;
        let src = sockaddr_from(&ss)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unknown address family"))?;
        // SAFETY: `msg`'s control buffer is `cbuf`, still live and filled
        // in by the kernel, with `msg_controllen` updated by `recvmsg`.
        let (dst, ifindex, segment) = unsafe { read_pktinfo(&msg) };
        Ok(RecvMeta {
            len: n,
            offset: 0,
            src,
            dst,
            ifindex,
            segment,
        })
    })
}

/// `sendmsg` of `data` to `dst`, optionally forcing source address `src`.
fn send_with_src(
    fd: RawFd,
    data: &[u8],
    dst: &SocketAddr,
    src: Option<IpAddr>,
) -> io::Result<Option<usize>> {
    let (mut ss, sslen) = sockaddr_to(dst);
    nonblocking(|| {
        let mut iov = libc::iovec {
            iov_base: data.as_ptr() as *mut libc::c_void,
            iov_len: data.len(),
        };
        let mut cbuf = CmsgBuf::new();
        let clen = src.map_or(0, |a| write_src_pktinfo(&mut cbuf, a));
        let msg = msghdr_for(&mut ss, sslen, &mut iov, &mut cbuf.0[..clen]);
        // SAFETY: all pointers in `msg` refer to live buffers.
        cvt_size(unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) })
    })
}

fn enable_pktinfo(fd: RawFd, v6: bool) -> io::Result<()> {
    if v6 {
        setsockopt_int(fd, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)
    } else {
        setsockopt_int(fd, libc::IPPROTO_IP, libc::IP_PKTINFO, 1)
    }
}

fn set_buffers(fd: RawFd, recv: usize, send: usize) -> io::Result<()> {
    for (force, plain, v) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, recv),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, send),
    ] {
        let v = v.min(i32::MAX as usize) as libc::c_int;
        if setsockopt_int(fd, libc::SOL_SOCKET, force, v).is_err() {
            setsockopt_int(fd, libc::SOL_SOCKET, plain, v)?;
        }
    }
    Ok(())
}

/// A non-blocking UDP socket with packet-info (local address) reporting.
#[derive(Debug)]
pub struct UdpSock {
    sock: std::net::UdpSocket,
}

impl UdpSock {
    /// Bind to `addr` (IPv6 sockets are v6-only), non-blocking, with packet
    /// info enabled.
    pub fn bind(addr: SocketAddr) -> io::Result<UdpSock> {
        let fam = if addr.is_ipv4() {
            libc::AF_INET
        } else {
            libc::AF_INET6
        };
        // SAFETY: plain socket(2).
        let raw = cvt(unsafe {
            libc::socket(
                fam,
                libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        })?;
        // SAFETY: fresh fd, owned here.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        if addr.is_ipv6() {
            setsockopt_int(raw, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1)?;
        }
        enable_pktinfo(raw, addr.is_ipv6())?;
        let (ss, len) = sockaddr_to(&addr);
        // SAFETY: `ss` holds a sockaddr of length `len`.
        cvt(unsafe { libc::bind(raw, (&ss as *const libc::sockaddr_storage).cast(), len) })?;
        Ok(UdpSock {
            sock: std::net::UdpSocket::from(fd),
        })
    }

    /// The bound local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.local_addr()
    }

    /// Receive one datagram into `buf` (payload at `buf[..meta.len]`);
    /// `None` if nothing is waiting. Oversized datagrams are truncated.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<RecvMeta>> {
        recv_with_info(self.sock.as_raw_fd(), buf)
    }

    /// Send `data` to `dst`, from source address `src` if given; `None` if
    /// the socket buffer is full.
    pub fn send_to(
        &self,
        data: &[u8],
        dst: SocketAddr,
        src: Option<IpAddr>,
    ) -> io::Result<Option<usize>> {
        send_with_src(self.sock.as_raw_fd(), data, &dst, src)
    }

    /// Receive up to [`BATCH_MAX`] datagrams with one `recvmmsg`; returns
    /// how many (0 = nothing waiting). A truncated datagram has `len` 0.
    pub fn recv_many<B: RecvSlot>(
        &self,
        bufs: &mut [B],
        metas: &mut [RecvMeta],
    ) -> io::Result<usize> {
        recv_many_raw(self.sock.as_raw_fd(), bufs, metas)
    }

    /// Send every packet to `dst` with one `sendmmsg` (at most
    /// [`BATCH_MAX`]); returns how many were taken.
    pub fn send_many(
        &self,
        pkts: &[&[u8]],
        dst: SocketAddr,
        src: Option<IpAddr>,
    ) -> io::Result<usize> {
        send_many_raw(self.sock.as_raw_fd(), pkts, &dst, src)
    }

    /// Set kernel receive/send buffer sizes (forced beyond rmem_max when
    /// privileged).
    pub fn set_buffer_sizes(&self, recv: usize, send: usize) -> io::Result<()> {
        set_buffers(self.sock.as_raw_fd(), recv, send)
    }

    /// Whether this kernel takes UDP GSO sends (`UDP_SEGMENT`, Linux 4.18).
    pub fn gso_supported(&self) -> bool {
        let mut v: libc::c_int = 0;
        let mut len = size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: int-valued getsockopt into a local.
        let r = unsafe {
            libc::getsockopt(
                self.sock.as_raw_fd(),
                libc::SOL_UDP,
                UDP_SEGMENT,
                (&mut v as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        r == 0
    }

    /// Send every packet to `dst` with UDP GSO (`batch::gso_runs`: equal-sized
    /// neighbours in one message), all messages in one `sendmmsg`; takes at
    /// most [`BATCH_MAX`] packets and returns how many were taken. An
    /// `EIO` error means the outgoing device cannot segment (no checksum
    /// offload): fall back to [`UdpSock::send_many`].
    pub fn send_many_gso(
        &self,
        pkts: &[&[u8]],
        dst: SocketAddr,
        src: Option<IpAddr>,
    ) -> io::Result<usize> {
        send_gso_raw(self.sock.as_raw_fd(), pkts, &dst, src)
    }

    /// Ask the kernel to coalesce received datagrams of one flow (UDP GRO,
    /// Linux 5.0): one receive may then carry several equal-sized datagrams,
    /// reported in [`RecvMeta::segment`]. Receive buffers must hold 64 KiB.
    pub fn enable_gro(&self) -> io::Result<()> {
        setsockopt_int(self.sock.as_raw_fd(), libc::SOL_UDP, UDP_GRO, 1)
    }
}

impl AsRawFd for UdpSock {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

impl AsFd for UdpSock {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

/// The two IKE sockets of one local address: 500 and 4500.
#[derive(Debug)]
pub struct IkeSockets {
    /// UDP 500: IKE without marker.
    pub ike: UdpSock,
    /// UDP 4500: IKE with non-ESP marker and ESP-in-UDP.
    pub natt: UdpSock,
}

impl IkeSockets {
    /// Bind `local:500` and `local:4500`.
    pub fn bind(local: IpAddr) -> io::Result<IkeSockets> {
        Self::bind_ports(local, IKE_PORT, NATT_PORT)
    }

    /// Bind with explicit ports (tests, non-standard setups; 0 = any).
    pub fn bind_ports(local: IpAddr, ike: u16, natt: u16) -> io::Result<IkeSockets> {
        Ok(IkeSockets {
            ike: UdpSock::bind(SocketAddr::new(local, ike))?,
            natt: UdpSock::bind(SocketAddr::new(local, natt))?,
        })
    }
}

/// A raw IP socket for protocol 50 (ESP without UDP encapsulation).
#[derive(Debug)]
pub struct RawEspSocket {
    fd: OwnedFd,
    v6: bool,
}

impl RawEspSocket {
    /// Open for `local`'s family and bind to it (unspecified = any local
    /// address). Needs CAP_NET_RAW.
    pub fn open(local: IpAddr) -> io::Result<RawEspSocket> {
        let v6 = local.is_ipv6();
        let fam = if v6 { libc::AF_INET6 } else { libc::AF_INET };
        // SAFETY: plain socket(2).
        let raw = cvt(unsafe {
            libc::socket(
                fam,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                IPPROTO_ESP,
            )
        })?;
        // SAFETY: fresh fd, owned here.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        enable_pktinfo(raw, v6)?;
        let (ss, len) = sockaddr_to(&SocketAddr::new(local, 0));
        // SAFETY: `ss` holds a sockaddr of length `len`.
        cvt(unsafe { libc::bind(raw, (&ss as *const libc::sockaddr_storage).cast(), len) })?;
        Ok(RawEspSocket { fd, v6 })
    }

    /// Receive one ESP packet into `buf`. For IPv4 the kernel delivers the
    /// IP header too: the ESP payload is `buf[meta.offset..][..meta.len]`
    /// (no copy). `dst` is the outer destination address.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<RecvMeta>> {
        loop {
            let Some(mut m) = recv_with_info(self.fd.as_raw_fd(), buf)? else {
                return Ok(None);
            };
            if self.v6 {
                return Ok(Some(m));
            }
            // Drop anything that is not a well-formed IPv4 header (cannot
            // happen for kernel-delivered packets, but never trust lengths).
            if strip_ipv4_header(buf, &mut m) {
                return Ok(Some(m));
            }
        }
    }

    /// Send one ESP payload (SPI onward) to `dst`; the kernel adds the IP
    /// header, with source `src` if given.
    pub fn send_to(
        &self,
        esp: &[u8],
        dst: IpAddr,
        src: Option<IpAddr>,
    ) -> io::Result<Option<usize>> {
        send_with_src(self.fd.as_raw_fd(), esp, &SocketAddr::new(dst, 0), src)
    }

    /// Receive up to [`BATCH_MAX`] ESP packets with one `recvmmsg`; the
    /// metadata is as for [`RawEspSocket::recv`]. Malformed or truncated
    /// packets are reported with `len` 0.
    pub fn recv_many<B: RecvSlot>(
        &self,
        bufs: &mut [B],
        metas: &mut [RecvMeta],
    ) -> io::Result<usize> {
        let got = recv_many_raw(self.fd.as_raw_fd(), bufs, metas)?;
        if self.v6 {
            return Ok(got);
        }
        for (b, m) in bufs.iter_mut().zip(metas.iter_mut()).take(got) {
            if !strip_ipv4_header(b.slot(), m) {
                m.len = 0;
            }
        }
        Ok(got)
    }

    /// Send ESP payloads to `dst` with one `sendmmsg`; returns how many
    /// were taken.
    pub fn send_many(&self, esp: &[&[u8]], dst: IpAddr, src: Option<IpAddr>) -> io::Result<usize> {
        send_many_raw(self.fd.as_raw_fd(), esp, &SocketAddr::new(dst, 0), src)
    }

    /// Set kernel receive/send buffer sizes.
    pub fn set_buffer_sizes(&self, recv: usize, send: usize) -> io::Result<()> {
        set_buffers(self.fd.as_raw_fd(), recv, send)
    }
}

/// For a raw IPv4 ESP packet received into `buf` (`m.len` bytes from the
/// start): point `m` past the IPv4 header (`offset`, `len`) and set `dst`
/// to its destination address. `false` (and `m` untouched) if `buf` does
/// not start with a well-formed IPv4 header.
fn strip_ipv4_header(buf: &[u8], m: &mut RecvMeta) -> bool {
    let n = m.len.min(buf.len());
    let pkt = &buf[..n];
    if n < 20 || pkt[0] >> 4 != 4 {
        return false;
    }
    let ihl = usize::from(pkt[0] & 0x0f) * 4;
    if ihl < 20 || ihl > n {
        return false;
    }
    m.dst = Some(IpAddr::V4(Ipv4Addr::new(
        pkt[16], pkt[17], pkt[18], pkt[19],
    )));
    m.offset = ihl;
    m.len = n - ihl;
    true
}

impl AsRawFd for RawEspSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for RawEspSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddr_roundtrip() {
        for a in ["192.0.2.1:4500", "[2001:db8::1]:500"] {
            let a: SocketAddr = a.parse().unwrap();
            let (ss, _) = sockaddr_to(&a);
            assert_eq!(sockaddr_from(&ss), Some(a));
        }
    }

    fn runs_of(lens: &[usize]) -> Vec<(usize, usize, usize)> {
        let bufs: Vec<Vec<u8>> = lens.iter().map(|&n| vec![0u8; n]).collect();
        let pkts: Vec<&[u8]> = bufs.iter().map(|b| b.as_slice()).collect();
        let mut out = Vec::new();
        gso_runs(&pkts, |a, n, seg| out.push((a, n, seg)));
        out
    }

    #[test]
    fn gso_runs_group_equal_sizes_with_a_shorter_tail() {
        assert_eq!(runs_of(&[]), vec![]);
        assert_eq!(runs_of(&[100]), vec![(0, 1, 100)]);
        // Equal run, a shorter packet ends it, then a new run starts.
        assert_eq!(
            runs_of(&[100, 100, 100, 60, 100, 100]),
            vec![(0, 4, 100), (4, 2, 100)]
        );
        // A longer packet cannot join a run.
        assert_eq!(runs_of(&[60, 100, 100]), vec![(0, 1, 60), (1, 2, 100)]);
        // Segment and byte limits.
        let many = vec![1000; 70];
        assert_eq!(runs_of(&many), vec![(0, 64, 1000), (64, 6, 1000)]);
        let big = vec![9000; 10];
        assert_eq!(runs_of(&big), vec![(0, 7, 9000), (7, 3, 9000)]);
        // Every packet lands in exactly one run, in order.
        let lens = [1400, 1400, 1400, 1400, 76, 76, 1400, 20, 20, 20];
        let r = runs_of(&lens);
        assert_eq!(r.iter().map(|x| x.1).sum::<usize>(), lens.len());
        assert!(r.windows(2).all(|w| w[0].0 + w[0].1 == w[1].0));
    }

    fn recv_all(s: &UdpSock, want: usize) -> Vec<(RecvMeta, Vec<u8>)> {
        let mut bufs: Vec<Vec<u8>> = (0..8).map(|_| vec![0u8; 65_536]).collect();
        let mut metas = [RecvMeta {
            len: 0,
            offset: 0,
            src: "0.0.0.0:0".parse().unwrap(),
            dst: None,
            ifindex: 0,
            segment: 0,
        }; 8];
        let mut out = Vec::new();
        let mut total = 0;
        for _ in 0..200 {
            let n = s.recv_many(&mut bufs, &mut metas).unwrap();
            for k in 0..n {
                total += metas[k].datagrams().count();
                out.push((metas[k], bufs[k][..metas[k].len].to_vec()));
            }
            if total >= want {
                break;
            }
            if n == 0 {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
        out
    }

    /// UDP GSO send on loopback: datagram boundaries survive, both to a
    /// receiver without GRO (the kernel segments) and to one with GRO
    /// (coalesced, split again by `RecvMeta::datagrams`).
    #[test]
    fn gso_send_and_gro_receive_keep_datagram_boundaries() {
        let tx = UdpSock::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        if !tx.gso_supported() {
            eprintln!("skipped: kernel without UDP GSO");
            return;
        }
        let lens = [1200usize, 1200, 1200, 1200, 1200, 333, 1200, 1200, 80];
        let data: Vec<Vec<u8>> = lens
            .iter()
            .enumerate()
            .map(|(i, &n)| (0..n).map(|j| (i * 31 + j) as u8).collect())
            .collect();
        let pkts: Vec<&[u8]> = data.iter().map(|d| d.as_slice()).collect();
        for gro in [false, true] {
            let rx = UdpSock::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            if gro {
                rx.enable_gro().unwrap();
            }
            let dst = rx.local_addr().unwrap();
            let sent = tx.send_many_gso(&pkts, dst, None).unwrap();
            assert_eq!(sent, pkts.len());
            let got = recv_all(&rx, pkts.len());
            let mut dgrams = Vec::new();
            for (m, b) in &got {
                for r in m.datagrams() {
                    dgrams.push(b[r].to_vec());
                }
            }
            assert_eq!(dgrams, data, "gro={gro}");
            if gro {
                assert!(
                    got.iter().any(|(m, _)| m.segment == 1200),
                    "GRO receive reported no coalesced datagrams: {:?}",
                    got.iter()
                        .map(|(m, _)| (m.len, m.segment))
                        .collect::<Vec<_>>()
                );
            } else {
                assert_eq!(got.len(), pkts.len());
            }
        }
    }

    #[test]
    fn datagrams_of_a_meta() {
        let mut m = RecvMeta {
            len: 10,
            offset: 20,
            src: "0.0.0.0:0".parse().unwrap(),
            dst: None,
            ifindex: 0,
            segment: 0,
        };
        assert_eq!(m.datagrams().collect::<Vec<_>>(), vec![20..30]);
        m.segment = 4;
        assert_eq!(
            m.datagrams().collect::<Vec<_>>(),
            vec![20..24, 24..28, 28..30]
        );
        m.len = 0;
        assert_eq!(m.datagrams().count(), 0);
    }

    /// Loopback in the current namespace; unprivileged ports.
    #[test]
    fn udp_pktinfo_and_source_selection() {
        let a = UdpSock::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let b = UdpSock::bind("0.0.0.0:0".parse().unwrap()).unwrap();
        let b_port = b.local_addr().unwrap().port();
        let mut buf = [0u8; 64];
        assert!(b.recv(&mut buf).unwrap().is_none());
        let dst = SocketAddr::new("127.0.0.2".parse().unwrap(), b_port);
        a.send_to(b"hello", dst, None).unwrap().unwrap();
        let mut got = None;
        for _ in 0..100 {
            if let Some(m) = b.recv(&mut buf).unwrap() {
                got = Some(m);
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let m = got.expect("datagram");
        assert_eq!(&buf[..m.len], b"hello");
        assert_eq!(m.src, a.local_addr().unwrap());
        assert_eq!(m.dst, Some("127.0.0.2".parse().unwrap()));
        assert_ne!(m.ifindex, 0);
        // reply from the address the datagram was sent to
        b.send_to(b"back", m.src, m.dst).unwrap().unwrap();
        let mut got = None;
        for _ in 0..100 {
            if let Some(m) = a.recv(&mut buf).unwrap() {
                got = Some(m);
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let m = got.expect("reply");
        assert_eq!(&buf[..m.len], b"back");
        assert_eq!(m.src, SocketAddr::new("127.0.0.2".parse().unwrap(), b_port));
    }
}
