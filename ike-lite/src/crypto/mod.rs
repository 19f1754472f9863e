//! IKEv2 cryptography: key exchange, PRFs, key derivation, PSK
//! authentication, SK payload protection and NAT detection hashes.
//!
//! This module owns everything cryptographic that IKE needs on top of the
//! data-plane ciphers of [`ipsec_core::crypto`] (which it reuses for the SK
//! payload). It is sans-IO: callers hand in bytes and get bytes back.

pub mod auth;
pub mod dh;
pub mod keys;
mod modp_params;
pub mod prf;
pub mod sk;

pub use auth::{psk_auth, verify_psk_auth};
pub use dh::{DhError, DhGroup, KeyExchange, SharedSecret};
pub use keys::{
    child_keymat, skeyseed, skeyseed_rekey, ChildKeys, DirKeys, IkeSaKeys, KeyError, SaBinding,
    SecretBytes,
};
pub use prf::{prf, prf_parts, prf_plus, prf_plus_parts, PrfError, PrfId};
pub use sk::{sk_open, sk_seal, sk_seal_with_header_len, SkError, SKF_HEADER_LEN, SK_HEADER_LEN};

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

/// NAT_DETECTION_SOURCE_IP / _DESTINATION_IP notification data
/// (RFC 7296 §2.23): `SHA-1(SPIi | SPIr | IP | Port)`, with the address in
/// network byte order (4 or 16 bytes) and the port big-endian. During
/// IKE_SA_INIT `spi_r` is zero.
pub fn nat_detection_hash(
    spi_i: &[u8; 8],
    spi_r: &[u8; 8],
    addr: std::net::IpAddr,
    port: u16,
) -> [u8; 20] {
    use sha1::{Digest, Sha1};
    let mut h = Sha1::new();
    h.update(spi_i);
    h.update(spi_r);
    match addr {
        std::net::IpAddr::V4(a) => h.update(a.octets()),
        std::net::IpAddr::V6(a) => h.update(a.octets()),
    }
    h.update(port.to_be_bytes());
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha1::{Digest, Sha1};
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    #[test]
    fn nat_detection_hash_layout() {
        // RFC 7296 §2.23: SHA-1(SPIi | SPIr | IP address | port), network order.
        let (si, sr) = ([1u8, 2, 3, 4, 5, 6, 7, 8], [0u8; 8]);
        let v4 = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let mut input = si.to_vec();
        input.extend_from_slice(&sr);
        input.extend_from_slice(&[192, 0, 2, 1, 0x01, 0xf4]);
        let want: [u8; 20] = Sha1::digest(&input).into();
        assert_eq!(nat_detection_hash(&si, &sr, v4, 500), want);
        assert_ne!(nat_detection_hash(&si, &sr, v4, 4500), want);
        let v6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
        let mut input6 = si.to_vec();
        input6.extend_from_slice(&sr);
        input6.extend_from_slice(&v6_octets());
        input6.extend_from_slice(&500u16.to_be_bytes());
        let want6: [u8; 20] = Sha1::digest(&input6).into();
        assert_eq!(nat_detection_hash(&si, &sr, v6, 500), want6);
    }

    fn v6_octets() -> [u8; 16] {
        let mut o = [0u8; 16];
        o[0] = 0x20;
        o[1] = 0x01;
        o[2] = 0x0d;
        o[3] = 0xb8;
        o[15] = 1;
        o
    }

    #[test]
    fn random_fills() {
        let mut a = [0u8; 32];
        let mut b = [0u8; 32];
        fill_random(&mut a).unwrap();
        fill_random(&mut b).unwrap();
        assert_ne!(a, b);
    }
}
