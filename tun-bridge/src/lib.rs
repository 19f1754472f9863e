//! `tun-bridge` library: OS plumbing and the control socket of the
//! userspace IPsec endpoint (the binary lives in `main.rs`).
#![deny(missing_docs)]

pub mod control;
pub mod sys;
