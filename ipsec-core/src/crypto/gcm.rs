//! AES-GCM-16 for ESP (RFC 4106) and the IKEv2 SK payload (RFC 5282), on
//! `ring`'s AES-GCM (AES-NI/VAES + CLMUL assembly).
//!
//! Nonce = 4-byte salt (last 4 bytes of the key material) || 8-byte explicit
//! IV; the explicit IV is `iv_seed` big-endian, so it never repeats as long as
//! the caller's sequence number / message counter does not.

use core::fmt;

use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, AES_128_GCM, AES_256_GCM};
use zeroize::Zeroizing;

use super::suite::GCM_SALT_LEN;
use super::{check_lengths, Cipher, CryptoError, Suite};

/// One keyed direction of AES-GCM-16.
pub(crate) struct AesGcm {
    suite: Suite,
    /// Opaque ring key schedule (ring keeps no raw key bytes accessible).
    key: LessSafeKey,
    salt: Zeroizing<[u8; GCM_SALT_LEN]>,
}

impl fmt::Debug for AesGcm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AesGcm { key: <redacted> }")
    }
}

impl AesGcm {
    /// `keymat` = AES key (16 or 32 bytes) || 4-byte salt.
    pub(crate) fn new(suite: Suite, keymat: &[u8]) -> Result<Self, CryptoError> {
        let alg = match suite.encr_key_bits {
            128 => &AES_128_GCM,
            256 => &AES_256_GCM,
            _ => return Err(CryptoError::UnsupportedSuite),
        };
        if keymat.len() != alg.key_len() + GCM_SALT_LEN {
            return Err(CryptoError::BadKeyLength);
        }
        let (key, salt_bytes) = keymat.split_at(alg.key_len());
        let key = UnboundKey::new(alg, key).map_err(|_| CryptoError::BadKeyLength)?;
        let mut salt = Zeroizing::new([0u8; GCM_SALT_LEN]);
        salt.copy_from_slice(salt_bytes);
        Ok(AesGcm {
            suite,
            key: LessSafeKey::new(key),
            salt,
        })
    }

    fn nonce(&self, iv: &[u8]) -> Nonce {
        let mut n = [0u8; 12];
        n[..GCM_SALT_LEN].copy_from_slice(&*self.salt);
        n[GCM_SALT_LEN..].copy_from_slice(iv);
        Nonce::assume_unique_for_key(n)
    }
}

/// AAD: `header`, or `SPI | seq-high | seq-low` with ESN (RFC 4106 §5).
fn aad_bytes<'a>(header: &'a [u8], esn_hi: Option<u32>, buf: &'a mut [u8; 12]) -> &'a [u8] {
    match esn_hi {
        Some(hi) => {
            buf[..4].copy_from_slice(&header[..4]);
            buf[4..8].copy_from_slice(&hi.to_be_bytes());
            buf[8..].copy_from_slice(&header[4..8]);
            &buf[..]
        }
        None => header,
    }
}

impl Cipher for AesGcm {
    fn suite(&self) -> Suite {
        self.suite
    }
    fn iv_len(&self) -> usize {
        8
    }
    fn icv_len(&self) -> usize {
        16
    }
    fn block_len(&self) -> usize {
        1
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
        iv.copy_from_slice(&iv_seed.to_be_bytes());
        let mut buf = [0u8; 12];
        let aad = aad_bytes(header, esn_hi, &mut buf);
        let tag = self
            .key
            .seal_in_place_separate_tag(self.nonce(iv), Aad::from(aad), payload)
            .map_err(|_| CryptoError::BadLength)?;
        icv.copy_from_slice(tag.as_ref());
        Ok(())
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
        let tag = Tag::try_from(icv).map_err(|_| CryptoError::BadLength)?;
        let mut buf = [0u8; 12];
        let aad = aad_bytes(header, esn_hi, &mut buf);
        self.key
            .open_in_place_separate_tag(self.nonce(iv), Aad::from(aad), tag, payload, 0..)
            .map_err(|_| CryptoError::AuthFailed)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let c = AesGcm::new(Suite::AES128_GCM16, &[0x42; 20]).unwrap();
        assert_eq!(format!("{c:?}"), "AesGcm { key: <redacted> }");
    }

    #[test]
    fn explicit_iv_is_seed_big_endian() {
        let c = AesGcm::new(Suite::AES256_GCM16, &[1; 36]).unwrap();
        let mut iv = [0u8; 8];
        let mut icv = [0u8; 16];
        c.seal(
            &[0; 8],
            None,
            0x0102_0304_0506_0708,
            &mut iv,
            &mut [],
            &mut icv,
        )
        .unwrap();
        assert_eq!(iv, [1, 2, 3, 4, 5, 6, 7, 8]);
    }
}
