//! System calls of the `tun-bridge` binary (Linux only), and nothing else:
//! packet bytes are worked on in [`crate::packet`].
//!
//! Owns every system call the program makes; nothing outside this module
//! touches file descriptors directly or uses `unsafe`:
//! * [`tun`]: TUN devices (`/dev/net/tun`, multi-queue, offload probing).
//! * [`netlink`]: `NETLINK_ROUTE` — addresses, routes (tracked for removal
//!   on exit), link state, MTU.
//! * [`udp`]: IKE/NAT-T UDP sockets with `IP_PKTINFO`, raw ESP sockets.
//! * [`poll`]: epoll readiness, signalfd.
//! * [`cred`]: effective uid, `SO_PEERCRED` of Unix socket peers.
//! * [`heap`]: returning freed heap to the kernel (`malloc_trim`).
//! * [`stdio`]: what stderr is (for journald detection).
//!
//! All I/O is non-blocking and works on caller-owned buffers: a receive
//! reports `Ok(None)` when it would block, nothing allocates per packet.
//! `unsafe` is confined to small, commented FFI blocks.

pub mod cred;
pub mod heap;
pub mod netlink;
pub mod poll;
pub mod stdio;
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
