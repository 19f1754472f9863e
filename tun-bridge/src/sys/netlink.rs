//! `NETLINK_ROUTE` client: addresses, routes, link state, MTU.
//!
//! Hand-rolled messages (rtnetlink(7)); every request carries `NLM_F_ACK`
//! and waits (bounded by a receive timeout) for the kernel's
//! `NLMSG_ERROR` answer, which becomes `Ok(())` or a typed
//! [`NetlinkError::Kernel`] including the extended-ACK message when the
//! kernel provides one. [`RouteTracker`] remembers installed routes and
//! removes them on exit.

use super::cvt;
use std::fmt;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

const NLMSG_HDR_LEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_CAPPED: u16 = 0x100;
const NLM_F_ACK_TLVS: u16 = 0x200;
const NLMSGERR_ATTR_MSG: u16 = 1;

const RTM_NEWLINK: u16 = 16;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;

const IFLA_MTU: u16 = 4;
const IFLA_TXQLEN: u16 = 13;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_F_NODAD: u8 = 0x02;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PRIORITY: u16 = 6;
const RTA_PREFSRC: u16 = 7;
const RTA_TABLE: u16 = 15;
const RT_TABLE_MAIN: u32 = 254;
const RT_TABLE_COMPAT: u8 = 252;
const RTPROT_STATIC: u8 = 4;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RT_SCOPE_LINK: u8 = 253;
const RT_SCOPE_NOWHERE: u8 = 255;
const RTN_UNICAST: u8 = 1;

const SOL_NETLINK: libc::c_int = 270;
const NETLINK_CAP_ACK: libc::c_int = 10;
const NETLINK_EXT_ACK: libc::c_int = 11;

/// Errors of netlink requests.
#[derive(Debug)]
#[non_exhaustive]
pub enum NetlinkError {
    /// Opening/binding/configuring the socket failed.
    Socket(io::Error),
    /// Sending a request failed.
    Send(io::Error),
    /// Receiving the answer failed (includes the receive timeout).
    Recv(io::Error),
    /// The kernel rejected the request.
    Kernel {
        /// Which operation (`"add route"`, ...).
        op: &'static str,
        /// Positive errno value (e.g. `libc::EEXIST`).
        errno: i32,
        /// Extended-ACK message, if the kernel sent one.
        message: Option<String>,
    },
    /// The kernel's answer could not be parsed.
    Malformed(&'static str),
    /// A request argument is inconsistent (e.g. prefix too long).
    InvalidArgument(&'static str),
}

impl NetlinkError {
    /// The kernel errno, for [`NetlinkError::Kernel`].
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetlinkError::Kernel { errno, .. } => Some(*errno),
            _ => None,
        }
    }

    /// The object already exists (`EEXIST`).
    pub fn is_exists(&self) -> bool {
        self.errno() == Some(libc::EEXIST)
    }

    /// The object (route, address, device) does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self.errno(),
            Some(libc::ESRCH) | Some(libc::ENODEV) | Some(libc::EADDRNOTAVAIL) | Some(libc::ENOENT)
        )
    }
}

impl fmt::Display for NetlinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetlinkError::Socket(e) => write!(f, "netlink socket: {e}"),
            NetlinkError::Send(e) => write!(f, "netlink send: {e}"),
            NetlinkError::Recv(e) => write!(f, "netlink receive: {e}"),
            NetlinkError::Kernel { op, errno, message } => {
                write!(f, "{op}: {}", io::Error::from_raw_os_error(*errno))?;
                if let Some(m) = message {
                    write!(f, " ({m})")?;
                }
                Ok(())
            }
            NetlinkError::Malformed(w) => write!(f, "malformed netlink answer: {w}"),
            NetlinkError::InvalidArgument(w) => write!(f, "invalid netlink request: {w}"),
        }
    }
}

impl std::error::Error for NetlinkError {}

/// A route to install: `dst/prefix_len dev IFINDEX [via GW] [src SRC]
/// [table T] [metric M]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Destination network address.
    pub dst: IpAddr,
    /// Destination prefix length.
    pub prefix_len: u8,
    /// Output interface index.
    pub ifindex: u32,
    /// Optional gateway (same family as `dst`).
    pub gateway: Option<IpAddr>,
    /// Optional preferred source address (same family).
    pub src: Option<IpAddr>,
    /// Routing table (default: main).
    pub table: Option<u32>,
    /// Metric / priority.
    pub metric: Option<u32>,
}

impl Route {
    /// `dst/prefix_len dev ifindex` in the main table.
    pub fn new(dst: IpAddr, prefix_len: u8, ifindex: u32) -> Route {
        Route {
            dst,
            prefix_len,
            ifindex,
            gateway: None,
            src: None,
            table: None,
            metric: None,
        }
    }

    fn validate(&self) -> Result<(), NetlinkError> {
        let max = if self.dst.is_ipv4() { 32 } else { 128 };
        if self.prefix_len > max {
            return Err(NetlinkError::InvalidArgument("prefix length"));
        }
        for a in [self.gateway, self.src].into_iter().flatten() {
            if a.is_ipv4() != self.dst.is_ipv4() {
                return Err(NetlinkError::InvalidArgument("address family mismatch"));
            }
        }
        Ok(())
    }
}

fn family(a: &IpAddr) -> u8 {
    if a.is_ipv4() {
        libc::AF_INET as u8
    } else {
        libc::AF_INET6 as u8
    }
}

fn addr_bytes(a: &IpAddr) -> ([u8; 16], usize) {
    let mut b = [0u8; 16];
    match a {
        IpAddr::V4(v) => {
            b[..4].copy_from_slice(&v.octets());
            (b, 4)
        }
        IpAddr::V6(v) => {
            b.copy_from_slice(&v.octets());
            (b, 16)
        }
    }
}

/// Builder for one request in a fixed buffer (no reallocation once sized).
struct Msg<'a> {
    buf: &'a mut Vec<u8>,
}

impl<'a> Msg<'a> {
    fn new(buf: &'a mut Vec<u8>, ty: u16, flags: u16, seq: u32) -> Self {
        buf.clear();
        buf.extend_from_slice(&0u32.to_ne_bytes());
        buf.extend_from_slice(&ty.to_ne_bytes());
        buf.extend_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes());
        Msg { buf }
    }
    fn bytes(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }
    fn align(&mut self) {
        while self.buf.len() % 4 != 0 {
            self.buf.push(0);
        }
    }
    fn attr(&mut self, ty: u16, data: &[u8]) {
        let len = (4 + data.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.align();
    }
    fn finish(self) {
        let len = self.buf.len() as u32;
        self.buf[..4].copy_from_slice(&len.to_ne_bytes());
    }
}

/// Outcome of parsing one answer datagram for a given sequence number.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ack {
    /// The kernel acknowledged (error 0).
    Ok,
    /// The kernel reported `errno` (positive) with an optional message.
    Err(i32, Option<String>),
    /// Nothing for our sequence number in this datagram.
    NotYet,
}

/// Parse a datagram of netlink messages looking for the ACK of `seq`.
/// Never panics on arbitrary input.
pub(crate) fn parse_ack(mut data: &[u8], seq: u32) -> Result<Ack, NetlinkError> {
    let u16_at = |d: &[u8], o: usize| d.get(o..o + 2).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    let u32_at = |d: &[u8], o: usize| {
        d.get(o..o + 4)
            .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    };
    while !data.is_empty() {
        let len = u32_at(data, 0).ok_or(NetlinkError::Malformed("short header"))? as usize;
        if len < NLMSG_HDR_LEN || len > data.len() {
            return Err(NetlinkError::Malformed("message length"));
        }
        let ty = u16_at(data, 4).ok_or(NetlinkError::Malformed("short header"))?;
        let flags = u16_at(data, 6).ok_or(NetlinkError::Malformed("short header"))?;
        let mseq = u32_at(data, 8).ok_or(NetlinkError::Malformed("short header"))?;
        let msg = &data[..len];
        if mseq == seq {
            match ty {
                NLMSG_ERROR => {
                    let code = u32_at(msg, NLMSG_HDR_LEN)
                        .ok_or(NetlinkError::Malformed("short error message"))?
                        as i32;
                    if code == 0 {
                        return Ok(Ack::Ok);
                    }
                    let errno = code.checked_neg().filter(|e| *e > 0).unwrap_or(libc::EIO);
                    let mut message = None;
                    if flags & NLM_F_ACK_TLVS != 0 {
                        // error code, then the original request: only its
                        // header when capped, else the whole message.
                        let orig_len = if flags & NLM_F_CAPPED != 0 {
                            NLMSG_HDR_LEN
                        } else {
                            u32_at(msg, NLMSG_HDR_LEN + 4).unwrap_or(0) as usize
                        };
                        let start = NLMSG_HDR_LEN + 4 + ((orig_len + 3) & !3);
                        let mut tlvs = msg.get(start..).unwrap_or(&[]);
                        while tlvs.len() >= 4 {
                            let alen = u16_at(tlvs, 0).unwrap_or(0) as usize;
                            let aty = u16_at(tlvs, 2).unwrap_or(0);
                            if alen < 4 || alen > tlvs.len() {
                                break;
                            }
                            if aty == NLMSGERR_ATTR_MSG {
                                let s = &tlvs[4..alen];
                                let s = s.split(|&b| b == 0).next().unwrap_or(&[]);
                                message = Some(String::from_utf8_lossy(s).into_owned());
                            }
                            let step = (alen + 3) & !3;
                            tlvs = tlvs.get(step..).unwrap_or(&[]);
                        }
                    }
                    return Ok(Ack::Err(errno, message));
                }
                NLMSG_DONE => return Ok(Ack::Ok),
                _ => {}
            }
        }
        let step = (len + 3) & !3;
        data = data.get(step..).unwrap_or(&[]);
    }
    Ok(Ack::NotYet)
}

/// A `NETLINK_ROUTE` socket for configuration requests (blocking, with a
/// receive timeout; not meant for the packet loop).
#[derive(Debug)]
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
    req: Vec<u8>,
    resp: Vec<u8>,
}

impl Netlink {
    /// Open a socket in the calling thread's network namespace; answers
    /// are awaited for at most 5 s.
    pub fn open() -> Result<Netlink, NetlinkError> {
        // SAFETY: plain socket(2) call.
        let raw = cvt(unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        })
        .map_err(NetlinkError::Socket)?;
        // SAFETY: fresh fd, owned here.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: zeroed sockaddr_nl is valid (pid 0 = kernel assigns).
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: `sa` is a valid sockaddr_nl of the given size.
        cvt(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        })
        .map_err(NetlinkError::Socket)?;
        let one: libc::c_int = 1;
        for opt in [NETLINK_EXT_ACK, NETLINK_CAP_ACK] {
            // SAFETY: int option; failure (old kernel) only loses messages.
            unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    SOL_NETLINK,
                    opt,
                    (&one as *const libc::c_int).cast(),
                    4,
                )
            };
        }
        let tv = libc::timeval {
            tv_sec: 5,
            tv_usec: 0,
        };
        // SAFETY: `tv` is a valid timeval for SO_RCVTIMEO.
        cvt(unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        })
        .map_err(NetlinkError::Socket)?;
        Ok(Netlink {
            fd,
            seq: 1,
            req: Vec::with_capacity(256),
            resp: vec![0; 16384],
        })
    }

    /// Change the answer timeout.
    pub fn set_timeout(&mut self, t: Duration) -> Result<(), NetlinkError> {
        let tv = libc::timeval {
            tv_sec: t.as_secs() as libc::time_t,
            tv_usec: t.subsec_micros() as libc::suseconds_t,
        };
        // SAFETY: `tv` is a valid timeval for SO_RCVTIMEO.
        cvt(unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        })
        .map_err(NetlinkError::Socket)?;
        Ok(())
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1).max(1);
        self.seq
    }

    fn transact(&mut self, op: &'static str, seq: u32) -> Result<(), NetlinkError> {
        // SAFETY: zeroed sockaddr_nl = the kernel (pid 0).
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        loop {
            // SAFETY: `req` and `sa` are valid for the given lengths.
            let rc = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    self.req.as_ptr().cast(),
                    self.req.len(),
                    0,
                    (&sa as *const libc::sockaddr_nl).cast(),
                    std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
                )
            };
            if rc >= 0 {
                break;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(NetlinkError::Send(e));
            }
        }
        loop {
            // SAFETY: `resp` is a valid writable buffer of its length.
            let rc = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.resp.as_mut_ptr().cast(),
                    self.resp.len(),
                    0,
                )
            };
            if rc < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(NetlinkError::Recv(e));
            }
            match parse_ack(&self.resp[..rc as usize], seq)? {
                Ack::Ok => return Ok(()),
                Ack::Err(errno, message) => {
                    return Err(NetlinkError::Kernel { op, errno, message })
                }
                Ack::NotYet => continue,
            }
        }
    }

    fn link_msg(&mut self, ifindex: u32, flags: u32, change: u32, attr: Option<(u16, u32)>) -> u32 {
        let seq = self.next_seq();
        let mut m = Msg::new(&mut self.req, RTM_NEWLINK, 0, seq);
        // ifinfomsg: family, pad, type, index, flags, change
        m.bytes(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
        m.bytes(&(ifindex as i32).to_ne_bytes());
        m.bytes(&flags.to_ne_bytes());
        m.bytes(&change.to_ne_bytes());
        if let Some((ty, v)) = attr {
            m.attr(ty, &v.to_ne_bytes());
        }
        m.finish();
        seq
    }

    /// Set the link administratively up or down.
    pub fn set_link_up(&mut self, ifindex: u32, up: bool) -> Result<(), NetlinkError> {
        let f = libc::IFF_UP as u32;
        let seq = self.link_msg(ifindex, if up { f } else { 0 }, f, None);
        self.transact(if up { "link up" } else { "link down" }, seq)
    }

    /// Set the link MTU.
    pub fn set_mtu(&mut self, ifindex: u32, mtu: u32) -> Result<(), NetlinkError> {
        let seq = self.link_msg(ifindex, 0, 0, Some((IFLA_MTU, mtu)));
        self.transact("set mtu", seq)
    }

    /// Set the link's transmit queue length (for a TUN: the packets the
    /// kernel may queue for the reader before dropping).
    pub fn set_txqlen(&mut self, ifindex: u32, qlen: u32) -> Result<(), NetlinkError> {
        let seq = self.link_msg(ifindex, 0, 0, Some((IFLA_TXQLEN, qlen)));
        self.transact("set txqueuelen", seq)
    }

    fn addr_msg(&mut self, ty: u16, flags: u16, ifindex: u32, addr: IpAddr, prefix_len: u8) -> u32 {
        let seq = self.next_seq();
        let mut m = Msg::new(&mut self.req, ty, flags, seq);
        let nodad = if addr.is_ipv6() { IFA_F_NODAD } else { 0 };
        m.bytes(&[family(&addr), prefix_len, nodad, RT_SCOPE_UNIVERSE]);
        m.bytes(&ifindex.to_ne_bytes());
        let (b, n) = addr_bytes(&addr);
        m.attr(IFA_LOCAL, &b[..n]);
        m.attr(IFA_ADDRESS, &b[..n]);
        m.finish();
        seq
    }

    /// Add `addr/prefix_len` to the interface (IPv6 without DAD).
    pub fn add_address(
        &mut self,
        ifindex: u32,
        addr: IpAddr,
        prefix_len: u8,
    ) -> Result<(), NetlinkError> {
        check_prefix(&addr, prefix_len)?;
        let seq = self.addr_msg(
            RTM_NEWADDR,
            NLM_F_CREATE | NLM_F_EXCL,
            ifindex,
            addr,
            prefix_len,
        );
        self.transact("add address", seq)
    }

    /// Remove `addr/prefix_len` from the interface.
    pub fn del_address(
        &mut self,
        ifindex: u32,
        addr: IpAddr,
        prefix_len: u8,
    ) -> Result<(), NetlinkError> {
        check_prefix(&addr, prefix_len)?;
        let seq = self.addr_msg(RTM_DELADDR, 0, ifindex, addr, prefix_len);
        self.transact("delete address", seq)
    }

    fn route_msg(&mut self, ty: u16, flags: u16, r: &Route) -> u32 {
        let seq = self.next_seq();
        let table = r.table.unwrap_or(RT_TABLE_MAIN);
        let scope = if ty == RTM_DELROUTE {
            RT_SCOPE_NOWHERE
        } else if r.gateway.is_some() {
            RT_SCOPE_UNIVERSE
        } else {
            RT_SCOPE_LINK
        };
        let mut m = Msg::new(&mut self.req, ty, flags, seq);
        let t8 = if table < 256 {
            table as u8
        } else {
            RT_TABLE_COMPAT
        };
        // rtmsg: family dst_len src_len tos table protocol scope type flags
        m.bytes(&[
            family(&r.dst),
            r.prefix_len,
            0,
            0,
            t8,
            RTPROT_STATIC,
            scope,
            RTN_UNICAST,
        ]);
        m.bytes(&0u32.to_ne_bytes());
        let (b, n) = addr_bytes(&r.dst);
        m.attr(RTA_DST, &b[..n]);
        m.attr(RTA_OIF, &r.ifindex.to_ne_bytes());
        if let Some(g) = r.gateway {
            let (b, n) = addr_bytes(&g);
            m.attr(RTA_GATEWAY, &b[..n]);
        }
        if let Some(s) = r.src {
            let (b, n) = addr_bytes(&s);
            m.attr(RTA_PREFSRC, &b[..n]);
        }
        if let Some(p) = r.metric {
            m.attr(RTA_PRIORITY, &p.to_ne_bytes());
        }
        m.attr(RTA_TABLE, &table.to_ne_bytes());
        m.finish();
        seq
    }

    /// Add a route (fails with `EEXIST` if an identical one exists).
    pub fn add_route(&mut self, r: &Route) -> Result<(), NetlinkError> {
        r.validate()?;
        let seq = self.route_msg(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, r);
        self.transact("add route", seq)
    }

    /// Add or replace a route.
    pub fn replace_route(&mut self, r: &Route) -> Result<(), NetlinkError> {
        r.validate()?;
        let seq = self.route_msg(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, r);
        self.transact("replace route", seq)
    }

    /// Delete a route.
    pub fn del_route(&mut self, r: &Route) -> Result<(), NetlinkError> {
        r.validate()?;
        let seq = self.route_msg(RTM_DELROUTE, 0, r);
        self.transact("delete route", seq)
    }
}

fn check_prefix(addr: &IpAddr, p: u8) -> Result<(), NetlinkError> {
    if p > if addr.is_ipv4() { 32 } else { 128 } {
        return Err(NetlinkError::InvalidArgument("prefix length"));
    }
    Ok(())
}

/// Routes installed by tun-bridge, removed again by
/// [`RouteTracker::remove_all`] or on drop.
#[derive(Debug)]
pub struct RouteTracker {
    nl: Netlink,
    routes: Vec<Route>,
}

impl RouteTracker {
    /// Track routes installed through `nl`.
    pub fn new(nl: Netlink) -> RouteTracker {
        RouteTracker {
            nl,
            routes: Vec::new(),
        }
    }

    /// Install `r` and remember it.
    pub fn add(&mut self, r: Route) -> Result<(), NetlinkError> {
        self.nl.add_route(&r)?;
        self.routes.push(r);
        Ok(())
    }

    /// Install or replace `r` (same destination, prefix and table, e.g.
    /// another device) and track it in place of the route it replaces.
    pub fn replace(&mut self, r: Route) -> Result<(), NetlinkError> {
        self.nl.replace_route(&r)?;
        match self
            .routes
            .iter_mut()
            .find(|t| t.dst == r.dst && t.prefix_len == r.prefix_len && t.table == r.table)
        {
            Some(t) => *t = r,
            None => self.routes.push(r),
        }
        Ok(())
    }

    /// Remove the tracked route to `dst/prefix_len` (main table), if any.
    /// A route already gone (its device disappeared) counts as removed.
    pub fn remove(&mut self, dst: IpAddr, prefix_len: u8) -> Result<(), NetlinkError> {
        let Some(k) = self
            .routes
            .iter()
            .position(|t| t.dst == dst && t.prefix_len == prefix_len && t.table.is_none())
        else {
            return Ok(());
        };
        let r = self.routes.remove(k);
        match self.nl.del_route(&r) {
            Err(e) if !e.is_not_found() => Err(e),
            _ => Ok(()),
        }
    }

    /// Currently tracked routes.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The underlying socket (for address/link requests).
    pub fn netlink(&mut self) -> &mut Netlink {
        &mut self.nl
    }

    /// Remove every tracked route (newest first). Routes that are already
    /// gone (e.g. their device disappeared) count as removed; the first
    /// other error is returned after trying all.
    pub fn remove_all(&mut self) -> Result<(), NetlinkError> {
        let mut first = None;
        while let Some(r) = self.routes.pop() {
            match self.nl.del_route(&r) {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => {
                    first.get_or_insert(e);
                }
            }
        }
        first.map_or(Ok(()), Err)
    }
}

impl Drop for RouteTracker {
    fn drop(&mut self) {
        let _ = self.remove_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err_msg(seq: u32, code: i32, msg: Option<&str>) -> Vec<u8> {
        let mut v = Vec::new();
        let mut flags = NLM_F_CAPPED;
        let mut tlv = Vec::new();
        if let Some(m) = msg {
            flags |= NLM_F_ACK_TLVS;
            let mut s = m.as_bytes().to_vec();
            s.push(0);
            tlv.extend_from_slice(&((4 + s.len()) as u16).to_ne_bytes());
            tlv.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
            tlv.extend_from_slice(&s);
            while tlv.len() % 4 != 0 {
                tlv.push(0);
            }
        }
        let len = (16 + 4 + 16 + tlv.len()) as u32;
        v.extend_from_slice(&len.to_ne_bytes());
        v.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        v.extend_from_slice(&flags.to_ne_bytes());
        v.extend_from_slice(&seq.to_ne_bytes());
        v.extend_from_slice(&0u32.to_ne_bytes());
        v.extend_from_slice(&code.to_ne_bytes());
        v.extend_from_slice(&[0u8; 16]);
        v.extend_from_slice(&tlv);
        v
    }

    #[test]
    fn ack_ok_and_errors() {
        assert_eq!(parse_ack(&err_msg(7, 0, None), 7).unwrap(), Ack::Ok);
        assert_eq!(
            parse_ack(&err_msg(7, -libc::EEXIST, None), 7).unwrap(),
            Ack::Err(libc::EEXIST, None)
        );
        assert_eq!(
            parse_ack(&err_msg(9, -libc::EINVAL, Some("Invalid prefix")), 9).unwrap(),
            Ack::Err(libc::EINVAL, Some("Invalid prefix".into()))
        );
        // other sequence number: not ours
        assert_eq!(parse_ack(&err_msg(3, 0, None), 4).unwrap(), Ack::NotYet);
        // two messages in one datagram
        let mut two = err_msg(3, 0, None);
        two.extend(err_msg(4, -libc::ENODEV, None));
        assert_eq!(parse_ack(&two, 4).unwrap(), Ack::Err(libc::ENODEV, None));
    }

    #[test]
    fn ack_malformed_never_panics() {
        let good = err_msg(5, -libc::EPERM, Some("nope"));
        for cut in 0..good.len() {
            let _ = parse_ack(&good[..cut], 5);
        }
        let mut bad_len = good.clone();
        bad_len[..4].copy_from_slice(&3u32.to_ne_bytes());
        assert!(matches!(
            parse_ack(&bad_len, 5),
            Err(NetlinkError::Malformed(_))
        ));
        let mut huge = good.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert!(parse_ack(&huge, 5).is_err());
        // tlv with bogus length inside an otherwise valid message
        let mut bogus_tlv = good;
        bogus_tlv[36..38].copy_from_slice(&500u16.to_ne_bytes());
        assert_eq!(
            parse_ack(&bogus_tlv, 5).unwrap(),
            Ack::Err(libc::EPERM, None)
        );
    }

    #[test]
    fn route_validation() {
        let r = Route::new("10.0.0.0".parse().unwrap(), 33, 1);
        assert!(matches!(
            r.validate(),
            Err(NetlinkError::InvalidArgument(_))
        ));
        let mut r = Route::new("10.0.0.0".parse().unwrap(), 8, 1);
        r.gateway = Some("::1".parse().unwrap());
        assert!(r.validate().is_err());
    }

    #[test]
    fn request_layout() {
        let mut buf = Vec::new();
        let mut m = Msg::new(&mut buf, RTM_NEWADDR, NLM_F_CREATE, 42);
        m.bytes(&[2, 24, 0, 0, 1, 0, 0, 0]);
        m.attr(IFA_LOCAL, &[10, 0, 0, 1]);
        m.attr(99, &[1]);
        m.finish();
        assert_eq!(buf.len(), 16 + 8 + 8 + 8);
        assert_eq!(u32::from_ne_bytes(buf[..4].try_into().unwrap()), 40);
        assert_eq!(
            u16::from_ne_bytes([buf[6], buf[7]]),
            NLM_F_CREATE | NLM_F_REQUEST | NLM_F_ACK
        );
        assert_eq!(u32::from_ne_bytes(buf[8..12].try_into().unwrap()), 42);
        assert_eq!(&buf[24..32], &[8, 0, 2, 0, 10, 0, 0, 1]);
        assert_eq!(&buf[32..40], &[5, 0, 99, 0, 1, 0, 0, 0]);
    }
}
