//! IKEv2 pseudo-random functions and `prf+` (RFC 7296 §2.13).
//!
//! Only the HMAC PRFs (RFC 2104 with SHA-1, RFC 4868 with SHA-2) are
//! implemented; their preferred key size is the hash output length.

use core::fmt;

use hmac::{Hmac, Mac};
use zeroize::Zeroizing;

/// IANA IKEv2 "Transform Type 2 - Pseudorandom Function Transform IDs".
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PrfId(pub u16);

impl PrfId {
    /// PRF_HMAC_SHA1 (RFC 2104).
    pub const HMAC_SHA1: PrfId = PrfId(2);
    /// PRF_HMAC_SHA2_256 (RFC 4868).
    pub const HMAC_SHA2_256: PrfId = PrfId(5);
    /// PRF_HMAC_SHA2_384 (RFC 4868).
    pub const HMAC_SHA2_384: PrfId = PrfId(6);
    /// PRF_HMAC_SHA2_512 (RFC 4868).
    pub const HMAC_SHA2_512: PrfId = PrfId(7);

    /// Whether this PRF is implemented.
    pub fn is_supported(&self) -> bool {
        self.output_len().is_some()
    }

    /// Output length in bytes (also the preferred key length, and so the
    /// length of SK_d, SK_pi and SK_pr), or `None` if unsupported.
    pub fn output_len(&self) -> Option<usize> {
        match *self {
            PrfId::HMAC_SHA1 => Some(20),
            PrfId::HMAC_SHA2_256 => Some(32),
            PrfId::HMAC_SHA2_384 => Some(48),
            PrfId::HMAC_SHA2_512 => Some(64),
            _ => None,
        }
    }
}

impl fmt::Debug for PrfId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            PrfId::HMAC_SHA1 => f.write_str("PRF_HMAC_SHA1"),
            PrfId::HMAC_SHA2_256 => f.write_str("PRF_HMAC_SHA2_256"),
            PrfId::HMAC_SHA2_384 => f.write_str("PRF_HMAC_SHA2_384"),
            PrfId::HMAC_SHA2_512 => f.write_str("PRF_HMAC_SHA2_512"),
            PrfId(n) => write!(f, "PrfId({n})"),
        }
    }
}

/// Why a PRF computation was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PrfError {
    /// The PRF transform is not implemented.
    Unsupported(PrfId),
    /// `prf+` was asked for more than 255 output blocks (RFC 7296 §2.13).
    OutputTooLong {
        /// Bytes requested.
        requested: usize,
        /// The maximum for this PRF.
        max: usize,
    },
}

impl fmt::Display for PrfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrfError::Unsupported(id) => write!(f, "unsupported PRF {id:?}"),
            PrfError::OutputTooLong { requested, max } => {
                write!(f, "prf+ output of {requested} bytes exceeds {max}")
            }
        }
    }
}

impl std::error::Error for PrfError {}

fn hmac_parts<M: Mac + hmac::digest::KeyInit>(key: &[u8], parts: &[&[u8]]) -> Zeroizing<Vec<u8>> {
    // HMAC accepts keys of any length.
    let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    for p in parts {
        mac.update(p);
    }
    Zeroizing::new(mac.finalize().into_bytes().to_vec())
}

/// `prf(key, parts[0] | parts[1] | ...)`, without concatenating the parts.
pub fn prf_parts(id: PrfId, key: &[u8], parts: &[&[u8]]) -> Result<Zeroizing<Vec<u8>>, PrfError> {
    Ok(match id {
        PrfId::HMAC_SHA1 => hmac_parts::<Hmac<sha1::Sha1>>(key, parts),
        PrfId::HMAC_SHA2_256 => hmac_parts::<Hmac<sha2::Sha256>>(key, parts),
        PrfId::HMAC_SHA2_384 => hmac_parts::<Hmac<sha2::Sha384>>(key, parts),
        PrfId::HMAC_SHA2_512 => hmac_parts::<Hmac<sha2::Sha512>>(key, parts),
        _ => return Err(PrfError::Unsupported(id)),
    })
}

/// `prf(key, data)`.
pub fn prf(id: PrfId, key: &[u8], data: &[u8]) -> Result<Zeroizing<Vec<u8>>, PrfError> {
    prf_parts(id, key, &[data])
}

/// `prf+(key, seed)` truncated to `len` bytes (RFC 7296 §2.13):
/// `T1 = prf(K, S | 0x01)`, `Tn = prf(K, Tn-1 | S | n)`, at most 255 blocks.
pub fn prf_plus(
    id: PrfId,
    key: &[u8],
    seed: &[u8],
    len: usize,
) -> Result<Zeroizing<Vec<u8>>, PrfError> {
    prf_plus_parts(id, key, &[seed], len)
}

/// [`prf_plus`] with the seed given as parts to be concatenated.
pub fn prf_plus_parts(
    id: PrfId,
    key: &[u8],
    seed: &[&[u8]],
    len: usize,
) -> Result<Zeroizing<Vec<u8>>, PrfError> {
    let block = id.output_len().ok_or(PrfError::Unsupported(id))?;
    let max = block * 255;
    if len > max {
        return Err(PrfError::OutputTooLong {
            requested: len,
            max,
        });
    }
    let mut out = Zeroizing::new(Vec::with_capacity(len.div_ceil(block) * block));
    let mut prev: Zeroizing<Vec<u8>> = Zeroizing::new(Vec::new());
    let mut counter: u8 = 1;
    while out.len() < len {
        let ctr = [counter];
        let mut parts: Vec<&[u8]> = Vec::with_capacity(seed.len() + 2);
        parts.push(&prev);
        parts.extend_from_slice(seed);
        parts.push(&ctr);
        let t = prf_parts(id, key, &parts)?;
        out.extend_from_slice(&t);
        prev = t;
        counter = counter.wrapping_add(1);
    }
    out.truncate(len);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prf_plus_is_prefix_consistent_and_chained() {
        let id = PrfId::HMAC_SHA2_256;
        let long = prf_plus(id, b"key", b"seed", 100).unwrap();
        let short = prf_plus(id, b"key", b"seed", 33).unwrap();
        assert_eq!(&long[..33], &short[..]);
        // T1 = prf(K, S | 0x01); T2 = prf(K, T1 | S | 0x02).
        let t1 = prf(id, b"key", b"seed\x01").unwrap();
        assert_eq!(&long[..32], &t1[..]);
        let mut d = t1.to_vec();
        d.extend_from_slice(b"seed\x02");
        assert_eq!(&long[32..64], &prf(id, b"key", &d).unwrap()[..]);
    }

    #[test]
    fn limits() {
        assert_eq!(
            prf_plus(PrfId::HMAC_SHA1, b"k", b"s", 20 * 255 + 1).unwrap_err(),
            PrfError::OutputTooLong {
                requested: 5101,
                max: 5100
            }
        );
        assert_eq!(
            prf_plus(PrfId::HMAC_SHA1, b"k", b"s", 5100).unwrap().len(),
            5100
        );
        assert_eq!(
            prf(PrfId(1), b"k", b"d").unwrap_err(),
            PrfError::Unsupported(PrfId(1))
        );
        assert!(!PrfId(8).is_supported());
    }
}
