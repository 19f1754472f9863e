//! Socket plumbing the standard library lacks: socket options by number and
//! batched `sendmmsg`/`recvmmsg` over a fixed set of buffers.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

/// Sets an `int` socket option.
fn set_int(
    fd: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` lives for the call and `len` is its size.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&v as *const libc::c_int).cast(),
            len,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reads an `int` socket option.
fn get_int(fd: &impl AsRawFd, level: libc::c_int, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` and `len` are valid for writes and `len` is `v`'s size.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r == 0 {
        Ok(v)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Which option set a socket buffer size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BufOption {
    /// `SO_RCVBUFFORCE`/`SO_SNDBUFFORCE` (CAP_NET_ADMIN, ignores the sysctl cap).
    Force,
    /// `SO_RCVBUF`/`SO_SNDBUF` (capped by net.core.rmem_max/wmem_max).
    Plain,
}

impl BufOption {
    /// Name for the JSON report.
    pub fn name(self) -> &'static str {
        match self {
            BufOption::Force => "force",
            BufOption::Plain => "plain",
        }
    }
}

/// Sets the receive (`recv = true`) or send buffer to `bytes`, with the
/// FORCE variant first. Returns the option used and the size the kernel
/// reports (twice the request, bookkeeping included).
pub fn set_buf(fd: &impl AsRawFd, recv: bool, bytes: usize) -> io::Result<(BufOption, usize)> {
    let (force, plain) = if recv {
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF)
    } else {
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF)
    };
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    let how = if set_int(fd, libc::SOL_SOCKET, force, v).is_ok() {
        BufOption::Force
    } else {
        set_int(fd, libc::SOL_SOCKET, plain, v)?;
        BufOption::Plain
    };
    let got = get_int(fd, libc::SOL_SOCKET, plain)?;
    Ok((how, usize::try_from(got).unwrap_or(0)))
}

/// Sets the Don't-Fragment bit on every packet (`IP_PMTUDISC_DO`): a packet
/// larger than the known path MTU fails with `EMSGSIZE` instead of being
/// fragmented.
pub fn set_dont_fragment(fd: &impl AsRawFd) -> io::Result<()> {
    set_int(
        fd,
        libc::IPPROTO_IP,
        libc::IP_MTU_DISCOVER,
        libc::IP_PMTUDISC_DO,
    )
}

/// Path MTU the kernel knows for a connected socket (`IP_MTU`).
pub fn path_mtu(fd: &impl AsRawFd) -> io::Result<u32> {
    let v = get_int(fd, libc::IPPROTO_IP, libc::IP_MTU)?;
    Ok(u32::try_from(v).unwrap_or(0))
}

/// Lowers this thread's timer slack (default 50 us) so short sleeps of the
/// pacer are not stretched. Best effort.
pub fn set_timer_slack_ns(ns: libc::c_ulong) {
    // SAFETY: PR_SET_TIMERSLACK takes one unsigned long argument.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, ns);
    }
}

/// `SOL_UDP` option / control message: UDP segmentation offload.
const UDP_SEGMENT: libc::c_int = 103;

/// Most payload bytes of one GSO send.
pub const GSO_MAX_BYTES: usize = 65_000;

/// `n` fixed-size buffers with the `iovec`/`mmsghdr` arrays that describe
/// them, for one `sendmmsg` or `recvmmsg` call at a time.
pub struct Batch {
    slot: usize,
    bufs: Vec<u8>,
    iov: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

impl Batch {
    /// `n` zeroed buffers of `slot` bytes each.
    pub fn new(n: usize, slot: usize) -> Batch {
        let n = n.max(1);
        let slot = slot.max(1);
        let empty_iov = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        // SAFETY: an all-zero mmsghdr is valid (null pointers, zero lengths).
        let empty_hdr: libc::mmsghdr = unsafe { std::mem::zeroed() };
        Batch {
            slot,
            bufs: vec![0; n * slot],
            iov: vec![empty_iov; n],
            hdrs: vec![empty_hdr; n],
        }
    }

    /// Number of buffers.
    pub fn len(&self) -> usize {
        self.hdrs.len()
    }

    /// Buffer `i`, mutable.
    pub fn slot_mut(&mut self, i: usize) -> &mut [u8] {
        &mut self.bufs[i * self.slot..(i + 1) * self.slot]
    }

    /// Bytes of datagram `i` after `recv`: the datagram length capped at the
    /// slot size.
    pub fn received(&self, i: usize) -> &[u8] {
        let len = (self.hdrs[i].msg_len as usize).min(self.slot);
        &self.bufs[i * self.slot..i * self.slot + len]
    }

    /// Length of datagram `i` after `recv` (real length, even if truncated).
    pub fn received_len(&self, i: usize) -> usize {
        self.hdrs[i].msg_len as usize
    }

    /// Points headers `first..first + n` at their buffers, `len` bytes each.
    fn prepare(&mut self, first: usize, n: usize, len: usize) {
        let len = len.min(self.slot);
        let base = self.bufs.as_mut_ptr();
        for i in first..first + n {
            // SAFETY: i < self.len(), so the offset stays inside `bufs`.
            self.iov[i].iov_base = unsafe { base.add(i * self.slot) }.cast();
            self.iov[i].iov_len = len;
            let h = &mut self.hdrs[i];
            h.msg_hdr.msg_name = std::ptr::null_mut();
            h.msg_hdr.msg_namelen = 0;
            h.msg_hdr.msg_iov = &mut self.iov[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = std::ptr::null_mut();
            h.msg_hdr.msg_controllen = 0;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
    }

    /// Sends buffers `first..first + n` (`len` bytes each) on a connected
    /// socket with one `sendmmsg`. Returns how many were sent (>= 1), or the
    /// error of buffer `first`.
    pub fn send(&mut self, fd: RawFd, first: usize, n: usize, len: usize) -> io::Result<usize> {
        let n = n.min(self.len().saturating_sub(first));
        if n == 0 {
            return Ok(0);
        }
        self.prepare(first, n, len);
        let count = libc::c_uint::try_from(n).unwrap_or(libc::c_uint::MAX);
        // SAFETY: headers first..first+n point at live iovecs and buffers of
        // at least `len` bytes; the kernel only reads them.
        let r = unsafe { libc::sendmmsg(fd, self.hdrs.as_mut_ptr().add(first), count, 0) };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r as usize)
        }
    }

    /// Sends buffers `first..first + n` (`len` bytes each, `len` equal to
    /// the slot size so they lie back to back) as one UDP GSO `sendmsg`
    /// with segment size `len`; the caller keeps `n` <= 64 and
    /// `n * len` <= 65,000. Returns `n`, or the error.
    pub fn send_gso(&mut self, fd: RawFd, first: usize, n: usize, len: usize) -> io::Result<usize> {
        let n = n.min(self.len().saturating_sub(first));
        if n == 0 {
            return Ok(0);
        }
        if len != self.slot {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "GSO needs datagrams of the slot size",
            ));
        }
        let seg = u16::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let mut iov = libc::iovec {
            iov_base: self.bufs[first * self.slot..(first + n) * self.slot]
                .as_mut_ptr()
                .cast(),
            iov_len: n * self.slot,
        };
        #[repr(C, align(8))]
        struct Cmsg([u8; 32]);
        let mut cbuf = Cmsg([0; 32]);
        // SAFETY: CMSG_SPACE/CMSG_LEN are arithmetic.
        let (space, clen) = unsafe { (libc::CMSG_SPACE(2) as usize, libc::CMSG_LEN(2) as usize) };
        // SAFETY: an all-zero msghdr is valid.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.0.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: `msg` describes our own 8-aligned 32-byte control buffer,
        // which holds one cmsghdr with a 2-byte payload (`space` <= 32), so
        // CMSG_FIRSTHDR is non-null and the writes stay inside it.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_UDP;
            (*c).cmsg_type = UDP_SEGMENT;
            (*c).cmsg_len = clen as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), seg);
        }
        // SAFETY: `msg` points at live buffers (`iov` over our own bytes,
        // `cbuf`) for the whole call; the socket is connected.
        let r = unsafe { libc::sendmsg(fd, &msg, 0) };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n)
        }
    }

    /// Receives up to `len()` datagrams with one `recvmmsg` (waits for the
    /// first only, then takes what is queued; the socket's read timeout
    /// bounds the wait). Returns how many arrived.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        let n = self.len();
        self.prepare(0, n, self.slot);
        let count = libc::c_uint::try_from(n).unwrap_or(libc::c_uint::MAX);
        // MSG_TRUNC: msg_len is the datagram's real length when it is larger
        // than the slot (only the header is needed, so slots are small).
        let flags = libc::MSG_WAITFORONE | libc::MSG_TRUNC;
        // SAFETY: every header points at a live iovec covering its own
        // `slot`-byte buffer; the timeout pointer may be null.
        let r = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                count,
                flags,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r as usize)
        }
    }
}
