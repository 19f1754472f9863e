//! IKEv2 cryptography: key exchange, PRFs, key derivation, PSK
//! authentication, SK payload protection and NAT detection hashes.
//!
//! This module owns everything cryptographic that IKE needs on top of the
//! data-plane ciphers of [`ipsec_core::crypto`] (which it reuses for the SK
//! payload). It is sans-IO: callers hand in bytes and get bytes back.

pub mod dh;
mod modp_params;

pub use dh::{DhError, DhGroup, KeyExchange, SharedSecret};

use core::fmt;

/// The operating system random number generator failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RngError;

impl fmt::Display for RngError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("operating system random number generator failed")
    }
}

impl std::error::Error for RngError {}

/// Fills `buf` from the operating system CSPRNG (nonces, SPIs, keys).
pub fn fill_random(buf: &mut [u8]) -> Result<(), RngError> {
    getrandom::getrandom(buf).map_err(|_| RngError)
}
