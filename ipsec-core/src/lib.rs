//! `ipsec-core`: a sans-IO ESP (RFC 4303) data plane.
//!
//! No sockets, no clock: callers pass time in and own every buffer.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod crypto;
pub mod replay;
pub mod selector;
pub mod spd;
pub mod wire;
