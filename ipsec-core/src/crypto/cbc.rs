//! AES-CBC (RFC 3602) with a truncated HMAC (RFC 2404 / RFC 4868), on
//! RustCrypto `aes` (AES-NI, key schedules zeroized on drop) and `cbc`.
//!
//! ICV = HMAC(header || IV || ciphertext [|| seq-high]) truncated
//! (encrypt-then-MAC, RFC 4303 §3.3.2); it is verified in constant time
//! before anything is decrypted.
//!
//! # IV generation
//!
//! CBC needs an IV that the attacker cannot predict (RFC 3602 §2.4), so the
//! sequence number cannot be used directly. Each cipher draws a random
//! 128-bit `iv_key` from the OS at construction and derives
//! `IV = AES-128-ECB_{iv_key}(0^64 || iv_seed BE)`. Because AES is a
//! permutation, distinct seeds give distinct IVs, and without `iv_key` they
//! are indistinguishable from random. The `iv_key` never leaves the process
//! and is independent of the negotiated keys.

use core::fmt;

use aes::cipher::block_padding::NoPadding;
use aes::cipher::{BlockDecryptMut, BlockEncrypt, BlockEncryptMut, InnerIvInit, KeyInit};
use aes::{Aes128, Aes128Enc, Aes256};
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use super::integ::Integ;
use super::{check_lengths, Cipher, CryptoError, Suite};

const BLOCK: usize = 16;

/// AES key schedule of either size (zeroized on drop by the `aes` crate).
// Boxed once per SA inside `Box<dyn Cipher>`; an extra indirection per
// packet would cost more than the 256 bytes saved for AES-128.
#[allow(clippy::large_enum_variant)]
enum AesKey {
    A128(Aes128),
    A256(Aes256),
}

impl AesKey {
    fn new(key: &[u8]) -> Result<Self, CryptoError> {
        match key.len() {
            16 => Aes128::new_from_slice(key).map(AesKey::A128),
            32 => Aes256::new_from_slice(key).map(AesKey::A256),
            _ => return Err(CryptoError::BadKeyLength),
        }
        .map_err(|_| CryptoError::BadKeyLength)
    }

    /// CBC-encrypts block-aligned `buf` in place.
    fn encrypt(&self, iv: &[u8; BLOCK], buf: &mut [u8]) -> Result<(), CryptoError> {
        let len = buf.len();
        let r = match self {
            AesKey::A128(k) => cbc::Encryptor::<&Aes128>::inner_iv_init(k, iv.into())
                .encrypt_padded_mut::<NoPadding>(buf, len)
                .map(drop),
            AesKey::A256(k) => cbc::Encryptor::<&Aes256>::inner_iv_init(k, iv.into())
                .encrypt_padded_mut::<NoPadding>(buf, len)
                .map(drop),
        };
        r.map_err(|_| CryptoError::BadLength)
    }

    /// CBC-decrypts block-aligned `buf` in place.
    fn decrypt(&self, iv: &[u8; BLOCK], buf: &mut [u8]) -> Result<(), CryptoError> {
        let r = match self {
            AesKey::A128(k) => cbc::Decryptor::<&Aes128>::inner_iv_init(k, iv.into())
                .decrypt_padded_mut::<NoPadding>(buf)
                .map(drop),
            AesKey::A256(k) => cbc::Decryptor::<&Aes256>::inner_iv_init(k, iv.into())
                .decrypt_padded_mut::<NoPadding>(buf)
                .map(drop),
        };
        r.map_err(|_| CryptoError::BadLength)
    }
}

/// One keyed direction of AES-CBC + HMAC.
pub(crate) struct AesCbcHmac {
    suite: Suite,
    key: AesKey,
    /// Random per-cipher key for IV derivation (see module docs).
    iv_key: Aes128Enc,
    integ: Integ,
}

impl fmt::Debug for AesCbcHmac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "AesCbcHmac {{ suite: {}, key: <redacted>, iv_key: <redacted>, integ: <redacted> }}",
            self.suite.name()
        )
    }
}

impl AesCbcHmac {
    pub(crate) fn new(suite: Suite, enc_key: &[u8], integ_key: &[u8]) -> Result<Self, CryptoError> {
        if usize::from(suite.encr_key_bits) / 8 != enc_key.len() {
            return Err(CryptoError::BadKeyLength);
        }
        let key = AesKey::new(enc_key)?;
        let integ = Integ::new(suite.integ, integ_key)?;
        let mut iv_key = Zeroizing::new([0u8; BLOCK]);
        SystemRandom::new()
            .fill(&mut *iv_key)
            .map_err(|_| CryptoError::UnsupportedSuite)?;
        let iv_key = Aes128Enc::new_from_slice(&*iv_key).map_err(|_| CryptoError::BadKeyLength)?;
        Ok(AesCbcHmac {
            suite,
            key,
            iv_key,
            integ,
        })
    }

    /// IV = AES-ECB_{iv_key}(0^64 || seed BE).
    fn derive_iv(&self, seed: u64) -> [u8; BLOCK] {
        let mut block = [0u8; BLOCK];
        block[8..].copy_from_slice(&seed.to_be_bytes());
        self.iv_key.encrypt_block((&mut block).into());
        block
    }

    /// Encrypt-then-MAC with a caller-chosen IV (used by `seal` and by the
    /// RFC 3602 known-answer tests).
    fn seal_with_iv(
        &self,
        header: &[u8],
        esn_hi: Option<u32>,
        iv: &[u8; BLOCK],
        payload: &mut [u8],
        icv: &mut [u8],
    ) -> Result<(), CryptoError> {
        self.key.encrypt(iv, payload)?;
        self.integ.compute(header, iv, payload, esn_hi, icv);
        Ok(())
    }
}

impl Cipher for AesCbcHmac {
    fn suite(&self) -> Suite {
        self.suite
    }
    fn iv_len(&self) -> usize {
        BLOCK
    }
    fn icv_len(&self) -> usize {
        self.integ.icv_len()
    }
    fn block_len(&self) -> usize {
        BLOCK
    }

    fn seal(
        &self,
        header: &[u8],
        esn_hi: Option<u32>,
        iv_seed: u64,
        iv: &mut [u8],
        payload: &mut [u8],
        icv: &mut [u8],
    ) -> Result<(), CryptoError> {
        check_lengths(self, header, esn_hi, iv, payload, icv)?;
        let derived = self.derive_iv(iv_seed);
        iv.copy_from_slice(&derived);
        self.seal_with_iv(header, esn_hi, &derived, payload, icv)
    }

    fn open(
        &self,
        header: &[u8],
        esn_hi: Option<u32>,
        iv: &[u8],
        payload: &mut [u8],
        icv: &[u8],
    ) -> Result<(), CryptoError> {
        check_lengths(self, header, esn_hi, iv, payload, icv)?;
        self.integ.verify(header, iv, payload, esn_hi, icv)?;
        let iv: &[u8; BLOCK] = iv.try_into().map_err(|_| CryptoError::BadLength)?;
        self.key.decrypt(iv, payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTORS: &str = include_str!("../../tests/vectors/aes_cbc.txt");

    fn records() -> Vec<Vec<(String, Vec<u8>)>> {
        let mut out = vec![];
        let mut cur = vec![];
        for line in VECTORS.lines().map(str::trim) {
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

    /// RFC 3602 §4 cases 1-4 and NIST SP 800-38A F.2.5, encrypt direction
    /// through the same path `seal` uses (with the vector's IV).
    #[test]
    fn cbc_known_answers_encrypt() {
        let mut n = 0;
        for r in records() {
            let f = |name: &str| r.iter().find(|(k, _)| k == name).unwrap().1.clone();
            let (key, iv, pt, ct) = (f("key"), f("iv"), f("plaintext"), f("ciphertext"));
            let suite = if key.len() == 16 {
                Suite::AES128_CBC_HMAC_SHA1_96
            } else {
                Suite::AES256_CBC_HMAC_SHA1_96
            };
            let c = AesCbcHmac::new(suite, &key, &[0x11; 20]).unwrap();
            let mut buf = pt.clone();
            let mut icv = [0u8; 12];
            let iv: [u8; 16] = iv.try_into().unwrap();
            c.seal_with_iv(&[0; 8], None, &iv, &mut buf, &mut icv)
                .unwrap();
            assert_eq!(buf, ct);
            // And back through the public open path.
            c.open(&[0; 8], None, &iv, &mut buf, &icv).unwrap();
            assert_eq!(buf, pt);
            n += 1;
        }
        assert_eq!(n, 5);
    }

    #[test]
    fn derived_ivs_differ_per_seed_and_per_cipher() {
        let a = AesCbcHmac::new(Suite::AES128_CBC_HMAC_SHA1_96, &[1; 16], &[2; 20]).unwrap();
        let b = AesCbcHmac::new(Suite::AES128_CBC_HMAC_SHA1_96, &[1; 16], &[2; 20]).unwrap();
        assert_ne!(a.derive_iv(1), a.derive_iv(2));
        assert_eq!(a.derive_iv(7), a.derive_iv(7));
        // Independent random iv_keys (a collision has probability 2^-128).
        assert_ne!(a.derive_iv(1), b.derive_iv(1));
        assert_ne!(a.derive_iv(0), [0u8; 16]);
    }

    #[test]
    fn debug_is_redacted() {
        let c = AesCbcHmac::new(
            Suite::AES256_CBC_HMAC_SHA2_256_128,
            &[0x42; 32],
            &[0x43; 32],
        )
        .unwrap();
        let s = format!("{c:?}");
        assert!(
            s.contains("<redacted>") && s.contains("aes256-sha256"),
            "{s}"
        );
        assert!(!s.contains("42") && !s.contains("66"), "{s}");
    }
}
