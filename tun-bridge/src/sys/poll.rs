//! Readiness multiplexing with epoll, and signals as a file descriptor.
//!
//! The runtime loop registers the TUN queues, UDP 500/4500, the raw ESP
//! socket, the control socket and a [`SignalFd`] under caller-chosen
//! [`Token`]s and calls [`Poller::wait`] with the next timer deadline.
//! Registrations are level-triggered: a source stays ready until drained.

use super::{cvt, nonblocking};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// Caller-chosen identifier of a registered source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token(pub u64);

/// What to wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interest {
    /// Readable.
    pub readable: bool,
    /// Writable.
    pub writable: bool,
}

impl Interest {
    /// Readable only.
    pub const READABLE: Interest = Interest {
        readable: true,
        writable: false,
    };
    /// Writable only.
    pub const WRITABLE: Interest = Interest {
        readable: false,
        writable: true,
    };
    /// Both.
    pub const BOTH: Interest = Interest {
        readable: true,
        writable: true,
    };

    fn bits(self) -> u32 {
        let mut b = 0;
        if self.readable {
            b |= libc::EPOLLIN as u32 | libc::EPOLLRDHUP as u32;
        }
        if self.writable {
            b |= libc::EPOLLOUT as u32;
        }
        b
    }
}

/// One readiness notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// The source's token.
    pub token: Token,
    /// Data can be read (or the peer hung up / an error is pending, which a
    /// read will report).
    pub readable: bool,
    /// Data can be written.
    pub writable: bool,
    /// Hang-up or error condition.
    pub hangup: bool,
}

/// An epoll instance plus its event buffer (allocated once).
#[derive(Debug)]
pub struct Poller {
    ep: OwnedFd,
    events: Vec<libc::epoll_event>,
    ready: usize,
}

impl Poller {
    /// New poller returning at most `capacity` events per wait.
    pub fn new(capacity: usize) -> io::Result<Poller> {
        // SAFETY: plain epoll_create1.
        let raw = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: fresh fd, owned here.
        let ep = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(Poller {
            ep,
            events: vec![libc::epoll_event { events: 0, u64: 0 }; capacity.max(1)],
            ready: 0,
        })
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, token: Token, interest: Interest) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: interest.bits(),
            u64: token.0,
        };
        // SAFETY: `ev` is valid for the call; the kernel copies it.
        cvt(unsafe { libc::epoll_ctl(self.ep.as_raw_fd(), op, fd, &mut ev) }).map(|_| ())
    }

    /// Register `fd` under `token`. The caller keeps `fd` open while it is
    /// registered (closing it removes it implicitly).
    pub fn add(&self, fd: &impl AsRawFd, token: Token, interest: Interest) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd.as_raw_fd(), token, interest)
    }

    /// Change token or interest of a registered `fd`.
    pub fn modify(&self, fd: &impl AsRawFd, token: Token, interest: Interest) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd.as_raw_fd(), token, interest)
    }

    /// Unregister `fd`.
    pub fn delete(&self, fd: &impl AsRawFd) -> io::Result<()> {
        // SAFETY: a null event is allowed for EPOLL_CTL_DEL (Linux >= 2.6.9).
        cvt(unsafe {
            libc::epoll_ctl(
                self.ep.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd.as_raw_fd(),
                std::ptr::null_mut(),
            )
        })
        .map(|_| ())
    }

    /// Wait for readiness, at most `timeout` (`None` = forever; rounded up
    /// to whole milliseconds). Returns the number of events, then read
    /// them with [`Poller::events`]. An interrupted wait returns 0.
    pub fn wait(&mut self, timeout: Option<Duration>) -> io::Result<usize> {
        let ms = match timeout {
            None => -1,
            Some(d) => {
                let ms = d.as_micros().div_ceil(1000);
                ms.min(i32::MAX as u128) as libc::c_int
            }
        };
        // SAFETY: `events` is a valid buffer of `len` epoll_event entries.
        let rc = unsafe {
            libc::epoll_wait(
                self.ep.as_raw_fd(),
                self.events.as_mut_ptr(),
                self.events.len() as libc::c_int,
                ms,
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            self.ready = 0;
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(0);
            }
            return Err(e);
        }
        self.ready = rc as usize;
        Ok(self.ready)
    }

    /// Events of the last [`Poller::wait`].
    pub fn events(&self) -> impl Iterator<Item = Event> + '_ {
        self.events[..self.ready].iter().map(|e| {
            let bits = e.events;
            let hang = bits
                & (libc::EPOLLHUP as u32 | libc::EPOLLERR as u32 | libc::EPOLLRDHUP as u32)
                != 0;
            Event {
                token: Token(e.u64),
                readable: bits & libc::EPOLLIN as u32 != 0 || hang,
                writable: bits & libc::EPOLLOUT as u32 != 0,
                hangup: hang,
            }
        })
    }
}

impl AsRawFd for Poller {
    fn as_raw_fd(&self) -> RawFd {
        self.ep.as_raw_fd()
    }
}

/// Signals delivered through a file descriptor (`signalfd`).
///
/// Creating it blocks the given signals in the calling thread; create it
/// on the main thread before spawning any other thread, so every thread
/// inherits the mask and the signals are only ever reported here.
#[derive(Debug)]
pub struct SignalFd {
    fd: OwnedFd,
}

impl SignalFd {
    /// Block `signals` in the calling thread and return a non-blocking fd
    /// that reports them.
    pub fn new(signals: &[libc::c_int]) -> io::Result<SignalFd> {
        // SAFETY: sigset manipulation on a local, zero-initialised set;
        // pthread_sigmask only changes this thread's mask.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for &s in signals {
                cvt(libc::sigaddset(&mut set, s))?;
            }
            let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            if rc != 0 {
                return Err(io::Error::from_raw_os_error(rc));
            }
            let raw = cvt(libc::signalfd(
                -1,
                &set,
                libc::SFD_NONBLOCK | libc::SFD_CLOEXEC,
            ))?;
            Ok(SignalFd {
                fd: OwnedFd::from_raw_fd(raw),
            })
        }
    }

    /// The next pending signal number, `None` if none is pending.
    pub fn read(&self) -> io::Result<Option<libc::c_int>> {
        nonblocking(|| {
            // SAFETY: zeroed siginfo is a valid buffer; read fills it.
            let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
            let sz = std::mem::size_of::<libc::signalfd_siginfo>();
            // SAFETY: `info` is writable for `sz` bytes.
            let n = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    (&mut info as *mut libc::signalfd_siginfo).cast(),
                    sz,
                )
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            if n as usize != sz {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "short signalfd read",
                ));
            }
            Ok(info.ssi_signo as libc::c_int)
        })
    }
}

impl AsRawFd for SignalFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;
    use std::time::Instant;

    #[test]
    fn readiness_and_timeout() {
        let mut p = Poller::new(8).unwrap();
        let (mut a, b) = UnixStream::pair().unwrap();
        p.add(&b, Token(7), Interest::READABLE).unwrap();
        let t0 = Instant::now();
        assert_eq!(p.wait(Some(Duration::from_millis(30))).unwrap(), 0);
        assert!(t0.elapsed() >= Duration::from_millis(29));
        a.write_all(b"x").unwrap();
        assert_eq!(p.wait(Some(Duration::from_secs(1))).unwrap(), 1);
        let ev: Vec<Event> = p.events().collect();
        assert_eq!(ev[0].token, Token(7));
        assert!(ev[0].readable && !ev[0].hangup);
        p.modify(&b, Token(8), Interest::BOTH).unwrap();
        p.wait(Some(Duration::from_secs(1))).unwrap();
        let ev: Vec<Event> = p.events().collect();
        assert_eq!(ev[0].token, Token(8));
        assert!(ev[0].writable);
        drop(a);
        p.wait(Some(Duration::from_secs(1))).unwrap();
        assert!(p.events().next().unwrap().hangup);
        p.delete(&b).unwrap();
        assert_eq!(p.wait(Some(Duration::from_millis(1))).unwrap(), 0);
    }

    #[test]
    fn signalfd_reports_signal() {
        // runs on its own thread so the blocked mask stays local to it
        std::thread::spawn(|| {
            let sfd = SignalFd::new(&[libc::SIGUSR2]).unwrap();
            assert_eq!(sfd.read().unwrap(), None);
            let mut p = Poller::new(2).unwrap();
            p.add(&sfd, Token(1), Interest::READABLE).unwrap();
            // SAFETY: signal this very thread; SIGUSR2 is blocked, so it is
            // queued for the signalfd instead of running a handler.
            let rc = unsafe { libc::pthread_kill(libc::pthread_self(), libc::SIGUSR2) };
            assert_eq!(rc, 0);
            assert_eq!(p.wait(Some(Duration::from_secs(2))).unwrap(), 1);
            assert_eq!(sfd.read().unwrap(), Some(libc::SIGUSR2));
            assert_eq!(sfd.read().unwrap(), None);
        })
        .join()
        .unwrap();
    }
}
