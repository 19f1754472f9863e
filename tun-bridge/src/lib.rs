//! `tun-bridge`: a userspace IPsec VPN endpoint (TUN device + ESP + IKEv2 PSK)
//! that reads the `ipsec.conf`/`ipsec.secrets` files AWS hands out.
//!
//! Modules: [`config`] (parsing and validation), [`cli`] (command line),
//! [`check`] and [`doctor`] (diagnostic subcommands), [`runtime`] (`up`,
//! `status`, `demo`), [`packet`] (pure per-packet byte work: MSS clamp,
//! ICMP too-big, offloads, the TUN <-> ESP path), [`sys`] (system calls:
//! TUN, netlink, sockets, epoll, signals, credentials) and [`control`]
//! (the control socket), `demo` (the namespace demo, with the `demo`
//! cargo feature, on by default).
#![deny(missing_docs)]

pub mod check;
pub mod cli;
pub mod config;
pub mod control;
#[cfg(feature = "demo")]
pub mod demo;
pub mod doctor;
pub mod packet;
pub mod runtime;
pub mod sys;
