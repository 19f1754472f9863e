//! `tun-bridge`: a userspace IPsec VPN endpoint (TUN device + ESP + IKEv2 PSK)
//! that reads the `ipsec.conf`/`ipsec.secrets` files AWS hands out.
//!
//! Modules: [`config`] (parsing and validation), [`cli`] (command line),
//! [`check`] and [`doctor`] (diagnostic subcommands), [`runtime`] (`up`,
//! `status`, `initiate`, `terminate`, `reload`, `demo`), [`engine`] (every tunnel decision, sans-IO),
//! [`dataplane`] (the data path and the engine's SA changes on it),
//! [`shell`] (the IO loop of `up`), [`packet`] (pure per-packet byte work: MSS clamp,
//! ICMP too-big, offloads, the TUN <-> ESP path), [`sys`] (system calls:
//! TUN, netlink, sockets, epoll, signals, credentials), [`control`] (the
//! control socket: status, initiate, terminate, reload), [`metrics`] (the
//! Prometheus exposition, pure), [`logging`] (`--log-format`, journald
//! detection, the `tracing` subscriber) and `demo` (the namespace demo, with the
//! `demo` cargo feature, on by default).
#![deny(missing_docs)]

pub mod check;
pub mod cli;
pub mod config;
pub mod control;
pub mod dataplane;
#[cfg(feature = "demo")]
pub mod demo;
#[cfg(feature = "demo")]
pub mod demo_bgp;
pub mod doctor;
pub mod engine;
pub mod logging;
pub mod metrics;
pub mod packet;
pub mod runtime;
pub mod shell;
pub mod sys;
