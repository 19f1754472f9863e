//! `tun-bridge`: a userspace IPsec VPN endpoint (TUN device + ESP + IKEv2 PSK)
//! that reads the `ipsec.conf`/`ipsec.secrets` files AWS hands out.
//!
//! Modules: [`config`] (parsing and validation), [`cli`] (command line),
//! [`check`] and [`doctor`] (diagnostic subcommands), [`runtime`] (`up`,
//! `status`, `demo`), [`sys`] (TUN, netlink, sockets, epoll) and
//! [`control`] (the control socket), [`demo`] (the namespace demo).
#![deny(missing_docs)]

pub mod check;
pub mod cli;
pub mod config;
pub mod control;
pub mod dataplane;
pub mod demo;
pub mod doctor;
pub mod engine;
pub mod runtime;
pub mod shell;
pub mod sys;
