//! `ipsec-core`: a sans-IO ESP (RFC 4303) data plane.
//!
//! No sockets, no clock: callers pass time in and own every buffer.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod buf;
pub mod crypto;
pub mod datapath;
pub mod replay;
pub mod sa;
pub mod sad;
pub mod secret;
pub mod selector;
pub mod spd;
pub mod wire;
