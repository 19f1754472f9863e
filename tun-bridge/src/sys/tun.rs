//! TUN devices: `/dev/net/tun` with `IFF_TUN | IFF_NO_PI`, optionally
//! several queues (`IFF_MULTI_QUEUE`) and a virtio-net header
//! (`IFF_VNET_HDR`, for offloads).
//!
//! Address, MTU and link state are set through [`super::netlink`].

use super::{cvt, cvt_size, nonblocking};
use crate::packet::vnet::VNET_HDR_LEN;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

const TUN_PATH: &[u8] = b"/dev/net/tun\0";

/// `struct ifreq` as far as TUNSETIFF uses it (name + flags), padded to
/// the kernel's 40 bytes.
#[repr(C)]
struct IfReqFlags {
    name: [libc::c_char; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// How to open a TUN device.
#[derive(Debug, Clone)]
pub struct TunOptions {
    /// Interface name (at most 15 bytes); may contain `%d` for a
    /// kernel-chosen number.
    pub name: String,
    /// Number of queues to open (1 = single queue; more sets
    /// `IFF_MULTI_QUEUE`).
    pub queues: usize,
    /// Set `IFF_VNET_HDR` (every packet is prefixed by a
    /// `virtio_net_hdr`; required for [`Tun::set_offload`]).
    pub vnet_hdr: bool,
}

impl TunOptions {
    /// Single-queue, no vnet header.
    pub fn new(name: &str) -> TunOptions {
        TunOptions {
            name: name.into(),
            queues: 1,
            vnet_hdr: false,
        }
    }
}

/// One queue (file descriptor) of a TUN device; non-blocking.
#[derive(Debug)]
pub struct TunQueue {
    fd: OwnedFd,
}

impl TunQueue {
    /// Read one packet into `buf[headroom..]`; returns its length (the
    /// packet is `buf[headroom..headroom + len]`) or `None` if no packet is
    /// waiting. The headroom lets the caller prepend outer headers in place.
    pub fn read(&self, buf: &mut [u8], headroom: usize) -> io::Result<Option<usize>> {
        let Some(dst) = buf.get_mut(headroom..) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "headroom exceeds buffer",
            ));
        };
        nonblocking(|| {
            // SAFETY: `dst` is a valid writable slice for its whole length.
            cvt_size(unsafe { libc::read(self.fd.as_raw_fd(), dst.as_mut_ptr().cast(), dst.len()) })
        })
    }

    /// Write one packet; `None` if the queue is full (packet not written).
    pub fn write(&self, pkt: &[u8]) -> io::Result<Option<usize>> {
        nonblocking(|| {
            // SAFETY: `pkt` is a valid readable slice for its whole length.
            cvt_size(unsafe { libc::write(self.fd.as_raw_fd(), pkt.as_ptr().cast(), pkt.len()) })
        })
    }
}

impl TunQueue {
    /// Write one packet behind a virtio-net header (`IFF_VNET_HDR`
    /// devices) with one `writev`; `None` if the queue is full.
    pub fn write_vnet(&self, hdr: &[u8; VNET_HDR_LEN], pkt: &[u8]) -> io::Result<Option<usize>> {
        let iov = [
            libc::iovec {
                iov_base: hdr.as_ptr() as *mut libc::c_void,
                iov_len: hdr.len(),
            },
            libc::iovec {
                iov_base: pkt.as_ptr() as *mut libc::c_void,
                iov_len: pkt.len(),
            },
        ];
        nonblocking(|| {
            // SAFETY: both iovecs describe live, readable slices.
            cvt_size(unsafe { libc::writev(self.fd.as_raw_fd(), iov.as_ptr(), 2) })
        })
    }
}

impl AsRawFd for TunQueue {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for TunQueue {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// An open TUN device (non-persistent: it disappears when the last queue
/// is closed).
#[derive(Debug)]
pub struct Tun {
    name: String,
    queues: Vec<TunQueue>,
    vnet_hdr: bool,
}

fn open_queue(name: &str, flags: libc::c_int) -> io::Result<(OwnedFd, String)> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.as_bytes().contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "bad interface name",
        ));
    }
    // SAFETY: TUN_PATH is NUL-terminated; open returns a new fd or -1.
    let raw = cvt(unsafe {
        libc::open(
            TUN_PATH.as_ptr().cast(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: `raw` is a freshly opened fd owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut req = IfReqFlags {
        name: [0; libc::IFNAMSIZ],
        flags: flags as libc::c_short,
        _pad: [0; 22],
    };
    for (d, s) in req.name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: TUNSETIFF reads and writes a `struct ifreq` (40 bytes), which
    // `req` provides with the same layout for name and flags.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut req) })?;
    let len = req
        .name
        .iter()
        .position(|&c| c == 0)
        .unwrap_or(req.name.len());
    let actual: String = req.name[..len].iter().map(|&c| c as u8 as char).collect();
    Ok((fd, actual))
}

impl Tun {
    /// Create (or attach to) the TUN device described by `opts`.
    pub fn open(opts: &TunOptions) -> io::Result<Tun> {
        let mut flags = libc::IFF_TUN | libc::IFF_NO_PI;
        if opts.queues > 1 {
            flags |= libc::IFF_MULTI_QUEUE;
        }
        if opts.vnet_hdr {
            flags |= libc::IFF_VNET_HDR;
        }
        let (fd0, name) = open_queue(&opts.name, flags)?;
        let mut queues = vec![TunQueue { fd: fd0 }];
        for _ in 1..opts.queues.max(1) {
            let (fd, _) = open_queue(&name, flags)?;
            queues.push(TunQueue { fd });
        }
        Ok(Tun {
            name,
            queues,
            vnet_hdr: opts.vnet_hdr,
        })
    }

    /// The interface name the kernel assigned.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Interface index (in the namespace the device lives in; call from a
    /// thread in that namespace).
    pub fn ifindex(&self) -> io::Result<u32> {
        super::ifindex(&self.name)
    }

    /// All queues.
    pub fn queues(&self) -> &[TunQueue] {
        &self.queues
    }

    /// Queue `i`.
    pub fn queue(&self, i: usize) -> Option<&TunQueue> {
        self.queues.get(i)
    }

    /// Read from queue 0, see [`TunQueue::read`].
    pub fn read(&self, buf: &mut [u8], headroom: usize) -> io::Result<Option<usize>> {
        self.queues[0].read(buf, headroom)
    }

    /// Write to queue 0, see [`TunQueue::write`].
    pub fn write(&self, pkt: &[u8]) -> io::Result<Option<usize>> {
        self.queues[0].write(pkt)
    }

    /// True if the device was opened with `IFF_VNET_HDR`.
    pub fn vnet_hdr(&self) -> bool {
        self.vnet_hdr
    }

    /// Enable offloads (`TUN_F_*` bits) — needs `vnet_hdr`.
    pub fn set_offload(&self, flags: u32) -> io::Result<()> {
        if !self.vnet_hdr {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "offloads need IFF_VNET_HDR",
            ));
        }
        for q in &self.queues {
            // SAFETY: TUNSETOFFLOAD takes an unsigned long by value.
            cvt(unsafe {
                libc::ioctl(
                    q.as_raw_fd(),
                    libc::TUNSETOFFLOAD,
                    libc::c_ulong::from(flags),
                )
            })?;
        }
        Ok(())
    }
}

/// `TUNSETCARRIER` = `_IOW('T', 226, int)` (Linux 5.0+; not in libc).
const TUNSETCARRIER: libc::c_ulong = 0x4004_54e2;

impl Tun {
    /// Turns the interface's carrier on or off (`TUNSETCARRIER`): with it
    /// off the link is `NO-CARRIER`/`LOWER_DOWN` (routing daemons and
    /// `ip monitor` see it down) while its addresses stay.
    pub fn set_carrier(&self, on: bool) -> io::Result<()> {
        let Some(q) = self.queues.first() else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "TUN without a queue",
            ));
        };
        let v: libc::c_int = on.into();
        // SAFETY: TUNSETCARRIER reads one int through the pointer, which
        // points to a live local.
        cvt(unsafe { libc::ioctl(q.as_raw_fd(), TUNSETCARRIER as _, &v as *const libc::c_int) })?;
        Ok(())
    }
}

/// What the running kernel's TUN driver supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunFeatures {
    /// Raw `TUNGETFEATURES` flags.
    pub flags: u32,
    /// `IFF_MULTI_QUEUE` supported.
    pub multi_queue: bool,
    /// `IFF_VNET_HDR` supported.
    pub vnet_hdr: bool,
    /// `TUNSETOFFLOAD` accepted `TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6`.
    pub offload_tso: bool,
    /// `TUNSETOFFLOAD` accepted `TUN_F_CSUM | TUN_F_USO4 | TUN_F_USO6`.
    pub offload_uso: bool,
}

impl TunFeatures {
    /// Probe by `TUNGETFEATURES` and, if vnet headers are supported, by
    /// trying `TUNSETOFFLOAD` on a temporary device `tbprobe%d` (created in
    /// the calling thread's namespace, gone when this returns).
    pub fn probe() -> io::Result<TunFeatures> {
        // SAFETY: TUN_PATH is NUL-terminated.
        let raw =
            cvt(unsafe { libc::open(TUN_PATH.as_ptr().cast(), libc::O_RDWR | libc::O_CLOEXEC) })?;
        // SAFETY: fresh fd, owned here.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut flags: libc::c_uint = 0;
        // SAFETY: TUNGETFEATURES writes one unsigned int.
        cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNGETFEATURES, &mut flags) })?;
        let vnet_hdr = flags & libc::IFF_VNET_HDR as u32 != 0;
        let multi_queue = flags & libc::IFF_MULTI_QUEUE as u32 != 0;
        let (mut offload_tso, mut offload_uso) = (false, false);
        if vnet_hdr {
            let (q, _) = open_queue(
                "tbprobe%d",
                libc::IFF_TUN | libc::IFF_NO_PI | libc::IFF_VNET_HDR,
            )?;
            let try_flags = |f: libc::c_uint| {
                // SAFETY: TUNSETOFFLOAD takes an unsigned long by value.
                unsafe {
                    libc::ioctl(q.as_raw_fd(), libc::TUNSETOFFLOAD, libc::c_ulong::from(f)) == 0
                }
            };
            offload_tso = try_flags(libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6);
            offload_uso = try_flags(libc::TUN_F_CSUM | libc::TUN_F_USO4 | libc::TUN_F_USO6);
        }
        Ok(TunFeatures {
            flags,
            multi_queue,
            vnet_hdr,
            offload_tso,
            offload_uso,
        })
    }
}
