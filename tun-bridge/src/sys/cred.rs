//! Process and peer credentials: the effective uid of this process and the
//! uid of the process at the other end of a Unix stream socket
//! (`SO_PEERCRED`).

use std::io;
use std::os::fd::{AsFd, AsRawFd};

/// Effective user id of this process.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// True if this process runs with effective uid 0.
pub fn is_root() -> bool {
    effective_uid() == 0
}

/// The uid of the peer of a connected Unix socket, as the kernel recorded
/// it at `connect` (`SO_PEERCRED`).
pub fn peer_uid(socket: &impl AsFd) -> io::Result<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid, writable and sized for
    // SO_PEERCRED; the kernel writes at most `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    super::cvt(rc)?;
    Ok(cred.uid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    #[test]
    fn peer_of_a_socket_pair_is_this_process() {
        let (a, _b) = UnixStream::pair().unwrap();
        assert_eq!(peer_uid(&a).unwrap(), effective_uid());
        assert_eq!(is_root(), effective_uid() == 0);
    }
}
