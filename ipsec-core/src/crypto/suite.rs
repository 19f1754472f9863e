//! The supported transform combinations and the provider table that maps a
//! [`Suite`] plus key material to a [`Cipher`] implementation.

use super::cbc::AesCbcHmac;
use super::gcm::AesGcm;
use super::null::NullHmac;
use super::{Cipher, CryptoError, EncrId, IntegId, Suite};

/// Bytes of salt appended to the AES key in AES-GCM key material
/// (RFC 4106 §8.1, RFC 5282 §7.1).
pub const GCM_SALT_LEN: usize = 4;

const fn s(encr: EncrId, encr_key_bits: u16, integ: IntegId) -> Suite {
    Suite {
        encr,
        encr_key_bits,
        integ,
    }
}

impl Suite {
    /// AES-GCM with a 128-bit key and 16-byte ICV (`aes128gcm16`).
    pub const AES128_GCM16: Suite = s(EncrId::AES_GCM_16, 128, IntegId::NONE);
    /// AES-GCM with a 256-bit key and 16-byte ICV (`aes256gcm16`).
    pub const AES256_GCM16: Suite = s(EncrId::AES_GCM_16, 256, IntegId::NONE);
    /// AES-128-CBC with HMAC-SHA1-96 (`aes128-sha1`).
    pub const AES128_CBC_HMAC_SHA1_96: Suite = s(EncrId::AES_CBC, 128, IntegId::HMAC_SHA1_96);
    /// AES-256-CBC with HMAC-SHA1-96 (`aes256-sha1`).
    pub const AES256_CBC_HMAC_SHA1_96: Suite = s(EncrId::AES_CBC, 256, IntegId::HMAC_SHA1_96);
    /// AES-128-CBC with HMAC-SHA2-256-128 (`aes128-sha256`).
    pub const AES128_CBC_HMAC_SHA2_256_128: Suite =
        s(EncrId::AES_CBC, 128, IntegId::HMAC_SHA2_256_128);
    /// AES-256-CBC with HMAC-SHA2-256-128 (`aes256-sha256`).
    pub const AES256_CBC_HMAC_SHA2_256_128: Suite =
        s(EncrId::AES_CBC, 256, IntegId::HMAC_SHA2_256_128);
    /// AES-128-CBC with HMAC-SHA2-384-192 (`aes128-sha384`).
    pub const AES128_CBC_HMAC_SHA2_384_192: Suite =
        s(EncrId::AES_CBC, 128, IntegId::HMAC_SHA2_384_192);
    /// AES-256-CBC with HMAC-SHA2-384-192 (`aes256-sha384`).
    pub const AES256_CBC_HMAC_SHA2_384_192: Suite =
        s(EncrId::AES_CBC, 256, IntegId::HMAC_SHA2_384_192);
    /// AES-128-CBC with HMAC-SHA2-512-256 (`aes128-sha512`).
    pub const AES128_CBC_HMAC_SHA2_512_256: Suite =
        s(EncrId::AES_CBC, 128, IntegId::HMAC_SHA2_512_256);
    /// AES-256-CBC with HMAC-SHA2-512-256 (`aes256-sha512`).
    pub const AES256_CBC_HMAC_SHA2_512_256: Suite =
        s(EncrId::AES_CBC, 256, IntegId::HMAC_SHA2_512_256);
    /// ENCR_NULL with HMAC-SHA1-96 (`null-sha1`); integrity only, tests only.
    pub const NULL_HMAC_SHA1_96: Suite = s(EncrId::NULL, 0, IntegId::HMAC_SHA1_96);
    /// ENCR_NULL with HMAC-SHA2-256-128 (`null-sha256`); tests only.
    pub const NULL_HMAC_SHA2_256_128: Suite = s(EncrId::NULL, 0, IntegId::HMAC_SHA2_256_128);
    /// ENCR_NULL with HMAC-SHA2-384-192 (`null-sha384`); tests only.
    pub const NULL_HMAC_SHA2_384_192: Suite = s(EncrId::NULL, 0, IntegId::HMAC_SHA2_384_192);
    /// ENCR_NULL with HMAC-SHA2-512-256 (`null-sha512`); tests only.
    pub const NULL_HMAC_SHA2_512_256: Suite = s(EncrId::NULL, 0, IntegId::HMAC_SHA2_512_256);

    /// Every supported suite, strongest-preferred first.
    pub const ALL: [Suite; 14] = [
        Suite::AES256_GCM16,
        Suite::AES128_GCM16,
        Suite::AES256_CBC_HMAC_SHA2_512_256,
        Suite::AES256_CBC_HMAC_SHA2_384_192,
        Suite::AES256_CBC_HMAC_SHA2_256_128,
        Suite::AES128_CBC_HMAC_SHA2_512_256,
        Suite::AES128_CBC_HMAC_SHA2_384_192,
        Suite::AES128_CBC_HMAC_SHA2_256_128,
        Suite::AES256_CBC_HMAC_SHA1_96,
        Suite::AES128_CBC_HMAC_SHA1_96,
        Suite::NULL_HMAC_SHA2_512_256,
        Suite::NULL_HMAC_SHA2_384_192,
        Suite::NULL_HMAC_SHA2_256_128,
        Suite::NULL_HMAC_SHA1_96,
    ];

    /// Checks that this transform combination is supported.
    ///
    /// Rejected with [`CryptoError::UnsupportedSuite`]: AES-GCM with an
    /// integrity transform, AES-CBC or NULL without one, AES key sizes other
    /// than 128/256 bits, a NULL key size other than 0, unknown transform IDs.
    pub fn validate(&self) -> Result<(), CryptoError> {
        let integ_known = integ_icv_len(self.integ).is_some();
        let ok = match self.encr {
            EncrId::AES_GCM_16 => self.integ == IntegId::NONE && aes_bits_ok(self.encr_key_bits),
            EncrId::AES_CBC => integ_known && aes_bits_ok(self.encr_key_bits),
            EncrId::NULL => integ_known && self.encr_key_bits == 0,
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(CryptoError::UnsupportedSuite)
        }
    }

    /// Bytes of encryption key material (`SK_e*` / ESP `KEYMAT` share).
    ///
    /// For AES-GCM this includes the 4-byte salt: KEYMAT = key || salt
    /// (RFC 4106 §8.1, RFC 5282 §7.1), so 20 or 36 bytes. 0 for NULL.
    pub fn enc_key_len(&self) -> Result<usize, CryptoError> {
        self.validate()?;
        let aes = usize::from(self.encr_key_bits) / 8;
        Ok(match self.encr {
            EncrId::AES_GCM_16 => aes + GCM_SALT_LEN,
            _ => aes,
        })
    }

    /// Bytes of integrity key material: 0 for NONE (AES-GCM), 20 for
    /// HMAC-SHA1-96, 32/48/64 for HMAC-SHA2-256/384/512 (RFC 2404, RFC 4868).
    /// Unknown integrity transforms also yield 0; [`Suite::validate`] rejects
    /// them.
    pub fn integ_key_len(&self) -> usize {
        match self.integ {
            IntegId::HMAC_SHA1_96 => 20,
            IntegId::HMAC_SHA2_256_128 => 32,
            IntegId::HMAC_SHA2_384_192 => 48,
            IntegId::HMAC_SHA2_512_256 => 64,
            _ => 0,
        }
    }

    /// Bytes of explicit IV on the wire: 8 for GCM, 16 for CBC, 0 for NULL.
    pub fn iv_len(&self) -> Result<usize, CryptoError> {
        self.validate()?;
        Ok(match self.encr {
            EncrId::AES_GCM_16 => 8,
            EncrId::AES_CBC => 16,
            _ => 0,
        })
    }

    /// Bytes of ICV on the wire: 16 for GCM, the truncated HMAC length
    /// (12/16/24/32) otherwise.
    pub fn icv_len(&self) -> Result<usize, CryptoError> {
        self.validate()?;
        Ok(match self.encr {
            EncrId::AES_GCM_16 => 16,
            _ => integ_icv_len(self.integ).unwrap_or(0),
        })
    }

    /// Payload alignment required by the cipher: 16 for CBC, 1 otherwise.
    pub fn block_len(&self) -> Result<usize, CryptoError> {
        self.validate()?;
        Ok(if self.encr == EncrId::AES_CBC { 16 } else { 1 })
    }

    /// Short strongSwan-style name, e.g. `aes128gcm16`, `aes128-sha1`,
    /// `aes256-sha256`, `null-sha1`; `"unsupported"` if [`Suite::validate`]
    /// fails.
    pub fn name(&self) -> &'static str {
        const NAMES: [(Suite, &str); 14] = [
            (Suite::AES128_GCM16, "aes128gcm16"),
            (Suite::AES256_GCM16, "aes256gcm16"),
            (Suite::AES128_CBC_HMAC_SHA1_96, "aes128-sha1"),
            (Suite::AES256_CBC_HMAC_SHA1_96, "aes256-sha1"),
            (Suite::AES128_CBC_HMAC_SHA2_256_128, "aes128-sha256"),
            (Suite::AES256_CBC_HMAC_SHA2_256_128, "aes256-sha256"),
            (Suite::AES128_CBC_HMAC_SHA2_384_192, "aes128-sha384"),
            (Suite::AES256_CBC_HMAC_SHA2_384_192, "aes256-sha384"),
            (Suite::AES128_CBC_HMAC_SHA2_512_256, "aes128-sha512"),
            (Suite::AES256_CBC_HMAC_SHA2_512_256, "aes256-sha512"),
            (Suite::NULL_HMAC_SHA1_96, "null-sha1"),
            (Suite::NULL_HMAC_SHA2_256_128, "null-sha256"),
            (Suite::NULL_HMAC_SHA2_384_192, "null-sha384"),
            (Suite::NULL_HMAC_SHA2_512_256, "null-sha512"),
        ];
        NAMES
            .iter()
            .find(|(suite, _)| suite == self)
            .map_or("unsupported", |(_, name)| name)
    }

    /// The suite whose [`Suite::name`] is `name` (ASCII case-insensitive).
    pub fn from_name(name: &str) -> Option<Suite> {
        Suite::ALL
            .iter()
            .copied()
            .find(|suite| suite.name().eq_ignore_ascii_case(name))
    }

    /// Builds one keyed direction of this suite (the provider table).
    ///
    /// `enc_key` must be exactly [`Suite::enc_key_len`] bytes (key || salt for
    /// GCM) and `integ_key` exactly [`Suite::integ_key_len`] bytes (empty for
    /// GCM), else [`CryptoError::BadKeyLength`]. Backends: AES-GCM via
    /// `ring`, AES-CBC via RustCrypto `aes`/`cbc`, HMAC via RustCrypto
    /// `hmac`/`sha1`/`sha2` (see docs/CRYPTO_BACKEND.md for the measurements
    /// behind that choice).
    pub fn cipher(&self, enc_key: &[u8], integ_key: &[u8]) -> Result<Box<dyn Cipher>, CryptoError> {
        let enc_len = self.enc_key_len()?;
        if enc_key.len() != enc_len || integ_key.len() != self.integ_key_len() {
            return Err(CryptoError::BadKeyLength);
        }
        Ok(match self.encr {
            EncrId::AES_GCM_16 => Box::new(AesGcm::new(*self, enc_key)?),
            EncrId::AES_CBC => Box::new(AesCbcHmac::new(*self, enc_key, integ_key)?),
            _ => Box::new(NullHmac::new(*self, integ_key)?),
        })
    }
}

fn aes_bits_ok(bits: u16) -> bool {
    bits == 128 || bits == 256
}

/// Truncated ICV length of a supported HMAC transform.
pub(crate) fn integ_icv_len(integ: IntegId) -> Option<usize> {
    match integ {
        IntegId::HMAC_SHA1_96 => Some(12),
        IntegId::HMAC_SHA2_256_128 => Some(16),
        IntegId::HMAC_SHA2_384_192 => Some(24),
        IntegId::HMAC_SHA2_512_256 => Some(32),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_listed_suites_validate_and_have_unique_names() {
        for (i, suite) in Suite::ALL.iter().enumerate() {
            suite.validate().unwrap();
            assert_ne!(suite.name(), "unsupported");
            assert_eq!(Suite::from_name(suite.name()), Some(*suite));
            for other in &Suite::ALL[i + 1..] {
                assert_ne!(suite.name(), other.name());
            }
        }
    }

    #[test]
    fn key_lengths() {
        assert_eq!(Suite::AES128_GCM16.enc_key_len(), Ok(20));
        assert_eq!(Suite::AES256_GCM16.enc_key_len(), Ok(36));
        assert_eq!(Suite::AES128_GCM16.integ_key_len(), 0);
        assert_eq!(Suite::AES128_CBC_HMAC_SHA1_96.enc_key_len(), Ok(16));
        assert_eq!(Suite::AES256_CBC_HMAC_SHA1_96.enc_key_len(), Ok(32));
        assert_eq!(Suite::AES128_CBC_HMAC_SHA1_96.integ_key_len(), 20);
        assert_eq!(Suite::AES128_CBC_HMAC_SHA2_256_128.integ_key_len(), 32);
        assert_eq!(Suite::AES128_CBC_HMAC_SHA2_384_192.integ_key_len(), 48);
        assert_eq!(Suite::AES128_CBC_HMAC_SHA2_512_256.integ_key_len(), 64);
        assert_eq!(Suite::NULL_HMAC_SHA1_96.enc_key_len(), Ok(0));
    }

    #[test]
    fn wire_lengths() {
        let gcm = Suite::AES256_GCM16;
        assert_eq!(
            (gcm.iv_len(), gcm.icv_len(), gcm.block_len()),
            (Ok(8), Ok(16), Ok(1))
        );
        let cbc = Suite::AES128_CBC_HMAC_SHA2_384_192;
        assert_eq!(
            (cbc.iv_len(), cbc.icv_len(), cbc.block_len()),
            (Ok(16), Ok(24), Ok(16))
        );
        let null = Suite::NULL_HMAC_SHA1_96;
        assert_eq!(
            (null.iv_len(), null.icv_len(), null.block_len()),
            (Ok(0), Ok(12), Ok(1))
        );
        assert_eq!(Suite::AES256_CBC_HMAC_SHA2_512_256.icv_len(), Ok(32));
        assert_eq!(Suite::AES128_CBC_HMAC_SHA2_256_128.icv_len(), Ok(16));
    }

    #[test]
    fn invalid_combinations_are_unsupported() {
        let bad = [
            s(EncrId::AES_GCM_16, 128, IntegId::HMAC_SHA1_96),
            s(EncrId::AES_GCM_16, 192, IntegId::NONE),
            s(EncrId::AES_GCM_16, 0, IntegId::NONE),
            s(EncrId::AES_CBC, 128, IntegId::NONE),
            s(EncrId::AES_CBC, 192, IntegId::HMAC_SHA1_96),
            s(EncrId::AES_CBC, 128, IntegId(5)),
            s(EncrId::NULL, 0, IntegId::NONE),
            s(EncrId::NULL, 128, IntegId::HMAC_SHA1_96),
            s(EncrId(3), 128, IntegId::HMAC_SHA1_96),
        ];
        for suite in bad {
            assert_eq!(
                suite.validate(),
                Err(CryptoError::UnsupportedSuite),
                "{suite:?}"
            );
            assert_eq!(suite.enc_key_len(), Err(CryptoError::UnsupportedSuite));
            assert_eq!(suite.iv_len(), Err(CryptoError::UnsupportedSuite));
            assert_eq!(suite.name(), "unsupported");
            assert_eq!(
                suite.cipher(&[0; 16], &[0; 20]).err(),
                Some(CryptoError::UnsupportedSuite)
            );
        }
    }

    #[test]
    fn wrong_key_lengths_are_rejected() {
        for suite in Suite::ALL {
            let e = suite.enc_key_len().unwrap();
            let i = suite.integ_key_len();
            let ek = [7u8; 64];
            let ik = [9u8; 80];
            assert!(suite.cipher(&ek[..e], &ik[..i]).is_ok());
            assert_eq!(
                suite.cipher(&ek[..e + 1], &ik[..i]).err(),
                Some(CryptoError::BadKeyLength)
            );
            assert_eq!(
                suite.cipher(&ek[..e], &ik[..i + 1]).err(),
                Some(CryptoError::BadKeyLength)
            );
            if e > 0 {
                assert_eq!(
                    suite.cipher(&ek[..e - 1], &ik[..i]).err(),
                    Some(CryptoError::BadKeyLength)
                );
            }
        }
    }
}
