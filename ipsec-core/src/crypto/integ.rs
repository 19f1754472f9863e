//! Truncated HMAC integrity transforms (RFC 2404, RFC 4868) on RustCrypto
//! `hmac` + `sha1`/`sha2`, which measured faster than `ring::hmac` on the
//! target (SHA-NI); see docs/CRYPTO_BACKEND.md.
//!
//! The keyed state is the precomputed inner/outer hash state (what HMAC
//! derives from the key); no raw key copy is kept. Each packet clones that
//! state on the stack, so nothing allocates.

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Sha256, Sha384, Sha512};
use subtle::ConstantTimeEq;

use super::{CryptoError, IntegId};

/// A keyed HMAC whose output is truncated to the transform's ICV length.
pub(crate) enum Integ {
    Sha1(Hmac<Sha1>),
    Sha256(Hmac<Sha256>),
    Sha384(Hmac<Sha384>),
    Sha512(Hmac<Sha512>),
}

impl Integ {
    /// Keys `id` with `key` (any length, as HMAC allows; the suite layer
    /// enforces the RFC 4868 key sizes).
    pub(crate) fn new(id: IntegId, key: &[u8]) -> Result<Self, CryptoError> {
        fn k<M: Mac + KeyInit>(key: &[u8]) -> Result<M, CryptoError> {
            <M as Mac>::new_from_slice(key).map_err(|_| CryptoError::BadKeyLength)
        }
        Ok(match id {
            IntegId::HMAC_SHA1_96 => Integ::Sha1(k(key)?),
            IntegId::HMAC_SHA2_256_128 => Integ::Sha256(k(key)?),
            IntegId::HMAC_SHA2_384_192 => Integ::Sha384(k(key)?),
            IntegId::HMAC_SHA2_512_256 => Integ::Sha512(k(key)?),
            _ => return Err(CryptoError::UnsupportedSuite),
        })
    }

    /// Truncated output length in bytes (12, 16, 24 or 32).
    pub(crate) fn icv_len(&self) -> usize {
        match self {
            Integ::Sha1(_) => 12,
            Integ::Sha256(_) => 16,
            Integ::Sha384(_) => 24,
            Integ::Sha512(_) => 32,
        }
    }

    /// Writes the first `out.len()` bytes of
    /// HMAC(header || iv || payload [|| esn_hi BE]) into `out`.
    /// `out` must not be longer than the full MAC.
    pub(crate) fn compute(
        &self,
        header: &[u8],
        iv: &[u8],
        payload: &[u8],
        esn_hi: Option<u32>,
        out: &mut [u8],
    ) {
        fn run<M: Mac + Clone>(m: &M, parts: [&[u8]; 3], esn_hi: Option<u32>, out: &mut [u8]) {
            let mut m = m.clone();
            for p in parts {
                m.update(p);
            }
            if let Some(hi) = esn_hi {
                m.update(&hi.to_be_bytes());
            }
            let tag = m.finalize().into_bytes();
            out.copy_from_slice(&tag[..out.len()]);
        }
        let parts = [header, iv, payload];
        match self {
            Integ::Sha1(m) => run(m, parts, esn_hi, out),
            Integ::Sha256(m) => run(m, parts, esn_hi, out),
            Integ::Sha384(m) => run(m, parts, esn_hi, out),
            Integ::Sha512(m) => run(m, parts, esn_hi, out),
        }
    }

    /// Recomputes the truncated ICV and compares it with `icv` in constant
    /// time. `icv.len()` must equal [`Integ::icv_len`].
    pub(crate) fn verify(
        &self,
        header: &[u8],
        iv: &[u8],
        payload: &[u8],
        esn_hi: Option<u32>,
        icv: &[u8],
    ) -> Result<(), CryptoError> {
        let mut expect = [0u8; 32];
        let expect = &mut expect[..self.icv_len()];
        self.compute(header, iv, payload, esn_hi, expect);
        if bool::from(expect.ct_eq(icv)) {
            Ok(())
        } else {
            Err(CryptoError::AuthFailed)
        }
    }
}

impl Drop for Integ {
    /// Best-effort wipe: the precomputed HMAC state is key-equivalent, and the
    /// hash crates do not implement `Zeroize`, so it is overwritten with the
    /// state of an all-zero key (and kept observable so the store stays).
    fn drop(&mut self) {
        fn wipe<M: KeyInit>(m: &mut M) {
            *m = M::new(&Default::default());
            core::hint::black_box(&*m);
        }
        match self {
            Integ::Sha1(m) => wipe(m),
            Integ::Sha256(m) => wipe(m),
            Integ::Sha384(m) => wipe(m),
            Integ::Sha512(m) => wipe(m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::IntegId;

    const RFC2202: &str = include_str!("../../tests/vectors/hmac_sha1_rfc2202.txt");
    const RFC4231: &str = include_str!("../../tests/vectors/hmac_sha2_rfc4231.txt");

    /// Parses `name = value` records separated by blank lines; `#` comments.
    /// A value in double quotes is ASCII, otherwise hex.
    fn records(text: &str) -> Vec<Vec<(String, Vec<u8>)>> {
        let mut out = vec![];
        let mut cur = vec![];
        for line in text.lines().map(str::trim) {
            if line.starts_with('#') {
                continue;
            }
            if line.is_empty() {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                continue;
            }
            let (k, v) = line.split_once('=').unwrap();
            let v = v.trim();
            let bytes = match v.strip_prefix('"') {
                Some(s) => s.strip_suffix('"').unwrap().as_bytes().to_vec(),
                None => hex::decode(v).unwrap(),
            };
            cur.push((k.trim().to_string(), bytes));
        }
        if !cur.is_empty() {
            out.push(cur);
        }
        out
    }

    fn field<'a>(r: &'a [(String, Vec<u8>)], name: &str) -> &'a [u8] {
        &r.iter().find(|(k, _)| k == name).unwrap().1
    }

    fn check(text: &str, algs: &[(&str, IntegId)]) -> usize {
        let mut n = 0;
        for r in records(text) {
            let key = field(&r, "key");
            let data = field(&r, "data");
            for (alg, id) in algs {
                let Some((_, want)) = r.iter().find(|(k, _)| k == &format!("mac_{alg}")) else {
                    continue;
                };
                let integ = Integ::new(*id, key).unwrap();
                // Full-length MAC, split across the three input parts.
                let mut full = vec![0u8; want.len()];
                let (a, rest) = data.split_at(data.len() / 3);
                let (b, c) = rest.split_at(rest.len() / 2);
                integ.compute(a, b, c, None, &mut full);
                assert_eq!(&full, want, "{alg} {r:?}");
                // Truncated per RFC 2404 / RFC 4868, verified in constant time.
                let t = integ.icv_len();
                integ.verify(data, &[], &[], None, &want[..t]).unwrap();
                let mut bad = want[..t].to_vec();
                bad[t - 1] ^= 1;
                assert_eq!(
                    integ.verify(data, &[], &[], None, &bad),
                    Err(CryptoError::AuthFailed)
                );
                n += 1;
            }
        }
        n
    }

    #[test]
    fn rfc2202_hmac_sha1() {
        assert_eq!(check(RFC2202, &[("sha1", IntegId::HMAC_SHA1_96)]), 7);
    }

    #[test]
    fn rfc4231_hmac_sha2() {
        let algs = [
            ("sha256", IntegId::HMAC_SHA2_256_128),
            ("sha384", IntegId::HMAC_SHA2_384_192),
            ("sha512", IntegId::HMAC_SHA2_512_256),
        ];
        assert_eq!(check(RFC4231, &algs), 18);
    }

    #[test]
    fn unknown_integ_is_unsupported() {
        assert!(matches!(
            Integ::new(IntegId::NONE, &[0; 20]),
            Err(CryptoError::UnsupportedSuite)
        ));
    }
}
