//! Batched datagram IO: `recvmmsg`/`sendmmsg` over caller-owned buffers,
//! and UDP GSO sends (`UDP_SEGMENT`) that group equal-sized packets.

use super::*;

/// Most datagrams one [`recv_many`]/[`send_many`] call moves.
pub const BATCH_MAX: usize = 64;

/// A receive slot for [`UdpSock::recv_many`] / [`RawEspSocket::recv_many`]:
/// the whole writable storage of a buffer.
pub trait RecvSlot {
    /// The bytes a datagram may be received into.
    fn slot(&mut self) -> &mut [u8];
}

impl RecvSlot for Vec<u8> {
    fn slot(&mut self) -> &mut [u8] {
        self
    }
}

impl<S: AsRef<[u8]> + AsMut<[u8]>> RecvSlot for ipsec_core::buf::PacketBuf<S> {
    fn slot(&mut self) -> &mut [u8] {
        self.storage_mut().as_mut()
    }
}

/// `recvmmsg` into up to [`BATCH_MAX`] slots; fills `metas` (offset 0) and
/// returns how many datagrams arrived (0 = would block). Truncated
/// datagrams are reported with `len` 0.
pub(super) fn recv_many_raw<B: RecvSlot>(
    fd: RawFd,
    bufs: &mut [B],
    metas: &mut [RecvMeta],
) -> io::Result<usize> {
    let n = bufs.len().min(metas.len()).min(BATCH_MAX);
    if n == 0 {
        return Ok(0);
    }
    // SAFETY: all-zero is a valid value for these plain C structs.
    let mut ss: [libc::sockaddr_storage; BATCH_MAX] = unsafe { zeroed() };
    // SAFETY: as above.
    let mut iov: [libc::iovec; BATCH_MAX] = unsafe { zeroed() };
    let mut cbuf: [CmsgBuf; BATCH_MAX] = std::array::from_fn(|_| CmsgBuf::new());
    // SAFETY: as above.
    let mut hdrs: [libc::mmsghdr; BATCH_MAX] = unsafe { zeroed() };
    for (i, b) in bufs.iter_mut().take(n).enumerate() {
        let s = b.slot();
        iov[i] = libc::iovec {
            iov_base: s.as_mut_ptr().cast(),
            iov_len: s.len(),
        };
        let namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        hdrs[i].msg_hdr = msghdr_for(&mut ss[i], namelen, &mut iov[i], &mut cbuf[i].0);
    }
    let got = nonblocking(|| {
        // SAFETY: `hdrs[..n]` point into live buffers (slots, addresses,
        // control buffers) of the stated lengths for the whole call.
        let r = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        cvt(r)
    })?;
    let Some(got) = got else { return Ok(0) };
    let got = got as usize;
    for i in 0..got {
        let m = &hdrs[i].msg_hdr;
        let src =
            sockaddr_from(&ss[i]).unwrap_or(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0));
        // SAFETY: `m`'s control buffer is `cbuf[i]`, still live and filled
        // in by the kernel, with `msg_controllen` updated by `recvmmsg`.
        let (dst, ifindex, segment) = unsafe { read_pktinfo(m) };
        let truncated = m.msg_flags & libc::MSG_TRUNC != 0;
        metas[i] = RecvMeta {
            len: if truncated {
                0
            } else {
                hdrs[i].msg_len as usize
            },
            offset: 0,
            src,
            dst,
            ifindex,
            segment,
        };
    }
    Ok(got)
}

/// The iovecs of the first [`BATCH_MAX`] packets of `pkts` (the rest of
/// the array zeroed). They point into `pkts`: use them while it lives.
fn iovecs(pkts: &[&[u8]]) -> [libc::iovec; BATCH_MAX] {
    // SAFETY: all-zero is a valid value for this plain C struct.
    let mut iov: [libc::iovec; BATCH_MAX] = unsafe { zeroed() };
    for (v, p) in iov.iter_mut().zip(pkts) {
        *v = libc::iovec {
            iov_base: p.as_ptr() as *mut libc::c_void,
            iov_len: p.len(),
        };
    }
    iov
}

/// `sendmmsg` of every packet of `pkts` to `dst` (source `src` if given),
/// up to [`BATCH_MAX`]; returns how many the kernel took (the rest did not
/// fit the socket buffer).
pub(super) fn send_many_raw(
    fd: RawFd,
    pkts: &[&[u8]],
    dst: &SocketAddr,
    src: Option<IpAddr>,
) -> io::Result<usize> {
    let n = pkts.len().min(BATCH_MAX);
    if n == 0 {
        return Ok(0);
    }
    let (mut ss, sslen) = sockaddr_to(dst);
    let mut cbuf = CmsgBuf::new();
    let clen = src.map_or(0, |a| write_src_pktinfo(&mut cbuf, a));
    let mut iov = iovecs(&pkts[..n]);
    // SAFETY: all-zero is a valid value for this plain C struct.
    let mut hdrs: [libc::mmsghdr; BATCH_MAX] = unsafe { zeroed() };
    for (h, v) in hdrs.iter_mut().zip(iov.iter_mut()).take(n) {
        h.msg_hdr = msghdr_for(&mut ss, sslen, v, &mut cbuf.0[..clen]);
    }
    // SAFETY: `hdrs[..n]` point into live buffers for the whole call; the
    // kernel only reads the shared address and control buffers.
    unsafe { sendmmsg_nb(fd, &mut hdrs[..n]) }
}

/// Non-blocking `sendmmsg` of `hdrs`; returns how many messages the kernel
/// took (0 if the socket buffer is full).
///
/// # Safety
///
/// Every pointer in `hdrs` (address, iovecs and the buffers they describe,
/// control buffer) must be valid for reads of its stated length for the
/// duration of the call.
unsafe fn sendmmsg_nb(fd: RawFd, hdrs: &mut [libc::mmsghdr]) -> io::Result<usize> {
    let r = nonblocking(|| {
        // SAFETY: the caller's contract.
        cvt(unsafe {
            libc::sendmmsg(
                fd,
                hdrs.as_mut_ptr(),
                hdrs.len() as libc::c_uint,
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        })
    })?;
    Ok(r.map_or(0, |k| k as usize))
}

/// Splits `pkts` into UDP GSO sends: runs of at most
/// [`GSO_MAX_SEGMENTS`] packets and [`GSO_MAX_BYTES`] bytes where every
/// packet has the length of the first except the last, which may be
/// shorter. Calls `f(first, count, segment)` for each run in order.
pub(super) fn gso_runs(pkts: &[&[u8]], mut f: impl FnMut(usize, usize, usize)) {
    let mut k = 0;
    while k < pkts.len() {
        let seg = pkts[k].len();
        let (mut e, mut bytes) = (k + 1, seg);
        while e < pkts.len()
            && e - k < GSO_MAX_SEGMENTS
            && bytes + pkts[e].len() <= GSO_MAX_BYTES
            && pkts[e].len() <= seg
            && seg > 0
        {
            bytes += pkts[e].len();
            e += 1;
            if pkts[e - 1].len() < seg {
                break;
            }
        }
        f(k, e - k, seg);
        k = e;
    }
}

/// `sendmmsg` of `pkts` to `dst` (source `src` if given) with UDP GSO:
/// equal-sized neighbours go out as one message with a `UDP_SEGMENT`
/// control message, so the stack is traversed once per run instead of
/// once per packet. Takes up to [`BATCH_MAX`] packets; returns how many
/// the kernel took.
pub(super) fn send_gso_raw(
    fd: RawFd,
    pkts: &[&[u8]],
    dst: &SocketAddr,
    src: Option<IpAddr>,
) -> io::Result<usize> {
    let n = pkts.len().min(BATCH_MAX);
    if n == 0 {
        return Ok(0);
    }
    let pkts = &pkts[..n];
    let (mut ss, sslen) = sockaddr_to(dst);
    let mut iov = iovecs(pkts);
    let mut cbuf: [CmsgBuf; BATCH_MAX] = std::array::from_fn(|_| CmsgBuf::new());
    // SAFETY: all-zero is a valid value for this plain C struct.
    let mut hdrs: [libc::mmsghdr; BATCH_MAX] = unsafe { zeroed() };
    let mut runs = [(0usize, 0usize); BATCH_MAX];
    let mut m = 0;
    gso_runs(pkts, |first, count, seg| {
        let c = &mut cbuf[m];
        let mut clen = src.map_or(0, |a| write_src_pktinfo(c, a));
        if count > 1 {
            let seg = u16::try_from(seg).unwrap_or(u16::MAX);
            clen += put_cmsg_at(c, clen, libc::SOL_UDP, UDP_SEGMENT, seg);
        }
        // SAFETY: all-zero is a valid msghdr.
        let mut msg: libc::msghdr = unsafe { zeroed() };
        msg.msg_name = (&mut ss as *mut libc::sockaddr_storage).cast();
        msg.msg_namelen = sslen;
        msg.msg_iov = iov[first..].as_mut_ptr();
        msg.msg_iovlen = count as _;
        if clen > 0 {
            msg.msg_control = c.0.as_mut_ptr().cast();
            msg.msg_controllen = clen as _;
        }
        hdrs[m].msg_hdr = msg;
        runs[m] = (first, count);
        m += 1;
    });
    // SAFETY: `hdrs[..m]` point into live buffers (packets via `iov`, the
    // shared address, per-message control buffers) for the whole call; the
    // kernel only reads them.
    let sent = unsafe { sendmmsg_nb(fd, &mut hdrs[..m]) }?;
    Ok(runs[..sent].iter().map(|&(_, c)| c).sum())
}
