//! OS plumbing for the `tun-bridge` binary (Linux only).
//!
//! Owns every system call the data path makes; nothing above this module
//! touches file descriptors directly:
//! * [`tun`]: TUN devices (`/dev/net/tun`, multi-queue, offload probing).
//! * [`netlink`]: `NETLINK_ROUTE` — addresses, routes (tracked for removal
//!   on exit), link state, MTU.
//! * [`udp`]: IKE/NAT-T UDP sockets with `IP_PKTINFO`, raw ESP sockets.
//! * [`mss`]: TCP MSS clamping and the tunnel MTU/MSS computation.
//! * [`icmp`]: ICMP "fragmentation needed" / ICMPv6 "packet too big".
//! * [`poll`]: epoll readiness, signalfd.
//!
//! All I/O is non-blocking and works on caller-owned buffers: a receive
//! reports `Ok(None)` when it would block, nothing allocates per packet.
//! `unsafe` is confined to small, commented FFI blocks.

pub mod icmp;
pub mod mss;
pub mod netlink;
pub mod poll;
pub mod tun;
pub mod udp;

use std::ffi::CString;
use std::io;

/// Map a libc return value (`-1` = error in `errno`) to `io::Result`.
pub(crate) fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Like [`cvt`] for `ssize_t` returns.
pub(crate) fn cvt_size(rc: libc::ssize_t) -> io::Result<usize> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as usize)
    }
}

/// Turn `WouldBlock` into `Ok(None)`, retrying `EINTR`.
pub(crate) fn nonblocking<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<Option<T>> {
    loop {
        match f() {
            Ok(v) => return Ok(Some(v)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(e),
        }
    }
}

/// Interface index of `name` in the calling thread's network namespace.
pub fn ifindex(name: &str) -> io::Result<u32> {
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a valid NUL-terminated string for the call's duration.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(idx)
    }
}

/// One's-complement sum of `data` (big-endian 16-bit words, odd tail padded
/// with zero), added to `acc`; not folded.
pub(crate) fn csum_add(mut acc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc = acc.wrapping_add(u32::from(u16::from_be_bytes([c[0], c[1]])));
    }
    if let [b] = chunks.remainder() {
        acc = acc.wrapping_add(u32::from(*b) << 8);
    }
    acc
}

/// Fold a 32-bit one's-complement accumulator and complement it.
pub(crate) fn csum_finish(mut acc: u32) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}
