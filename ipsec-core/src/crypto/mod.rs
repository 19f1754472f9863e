//! Crypto suites for ESP and for the IKEv2 SK payload.
//!
//! This module owns every cipher and integrity algorithm of the data plane.
//! Callers pick a [`Suite`] (IANA transform numbers), hand it the negotiated key
//! material with [`Suite::cipher`], and then only talk to the [`Cipher`] trait
//! object it returns. The same trait serves ESP (RFC 4303, RFC 4106) and the
//! IKEv2 Encrypted payload (RFC 7296 §3.14, RFC 5282), because both have the
//! shape `header | IV | payload | ICV`.

use core::fmt;

/// IANA IKEv2 "Transform Type 1 - Encryption Algorithm Transform IDs".
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EncrId(pub u16);

impl EncrId {
    /// ENCR_NULL (RFC 2410), for tests only.
    pub const NULL: EncrId = EncrId(11);
    /// ENCR_AES_CBC (RFC 3602).
    pub const AES_CBC: EncrId = EncrId(12);
    /// ENCR_AES_GCM_16 (RFC 4106 / RFC 5282), 16-byte ICV.
    pub const AES_GCM_16: EncrId = EncrId(20);
}

impl fmt::Debug for EncrId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            EncrId::NULL => f.write_str("ENCR_NULL"),
            EncrId::AES_CBC => f.write_str("ENCR_AES_CBC"),
            EncrId::AES_GCM_16 => f.write_str("ENCR_AES_GCM_16"),
            EncrId(n) => write!(f, "EncrId({n})"),
        }
    }
}

/// IANA IKEv2 "Transform Type 3 - Integrity Algorithm Transform IDs".
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IntegId(pub u16);

impl IntegId {
    /// NONE (used with combined-mode ciphers such as AES-GCM).
    pub const NONE: IntegId = IntegId(0);
    /// AUTH_HMAC_SHA1_96 (RFC 2404).
    pub const HMAC_SHA1_96: IntegId = IntegId(2);
    /// AUTH_HMAC_SHA2_256_128 (RFC 4868).
    pub const HMAC_SHA2_256_128: IntegId = IntegId(12);
    /// AUTH_HMAC_SHA2_384_192 (RFC 4868).
    pub const HMAC_SHA2_384_192: IntegId = IntegId(13);
    /// AUTH_HMAC_SHA2_512_256 (RFC 4868).
    pub const HMAC_SHA2_512_256: IntegId = IntegId(14);
}

impl fmt::Debug for IntegId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            IntegId::NONE => f.write_str("NONE"),
            IntegId::HMAC_SHA1_96 => f.write_str("AUTH_HMAC_SHA1_96"),
            IntegId::HMAC_SHA2_256_128 => f.write_str("AUTH_HMAC_SHA2_256_128"),
            IntegId::HMAC_SHA2_384_192 => f.write_str("AUTH_HMAC_SHA2_384_192"),
            IntegId::HMAC_SHA2_512_256 => f.write_str("AUTH_HMAC_SHA2_512_256"),
            IntegId(n) => write!(f, "IntegId({n})"),
        }
    }
}

/// A negotiated encryption + integrity pair (ESP or IKE SK payload).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Suite {
    /// Encryption transform.
    pub encr: EncrId,
    /// Key length attribute in bits (128 or 256 for AES; 0 for NULL).
    pub encr_key_bits: u16,
    /// Integrity transform ([`IntegId::NONE`] for AES-GCM).
    pub integ: IntegId,
}

/// Why a suite could not be built or a packet could not be processed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CryptoError {
    /// The transform combination is not supported (e.g. GCM with an integrity
    /// algorithm, NULL without one, an unknown key length).
    UnsupportedSuite,
    /// Key material of the wrong length was supplied.
    BadKeyLength,
    /// A buffer had the wrong length (IV, ICV, payload not block aligned, ...).
    BadLength,
    /// The ICV did not verify. Nothing about the plaintext may be used.
    AuthFailed,
}

impl fmt::Display for CryptoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CryptoError::UnsupportedSuite => "unsupported transform combination",
            CryptoError::BadKeyLength => "key material has the wrong length",
            CryptoError::BadLength => "buffer has the wrong length",
            CryptoError::AuthFailed => "integrity check failed",
        })
    }
}

impl std::error::Error for CryptoError {}

/// One keyed direction of a suite: seals or opens `header | IV | payload | ICV`.
///
/// * `header` is authenticated but not encrypted: for ESP the 8-byte
///   `SPI | seq-low`, for IKE the IKE header through the SK payload header.
/// * `esn_hi` is `Some(high 32 bits)` for ESP SAs with extended sequence
///   numbers: for AES-GCM the AAD becomes `SPI | seq-high | seq-low` (RFC 4106
///   §5), for HMAC suites the 4 bytes are appended after the payload for the
///   ICV computation only (RFC 4303 §2.2.1). Must be `None` unless `header`
///   is exactly 8 bytes.
/// * `payload` is already padded by the caller to a multiple of
///   [`Cipher::block_len`]; it is encrypted or decrypted in place.
/// * Nothing allocates; implementations are `Send + Sync` and keep their keys
///   in fixed-size buffers that are zeroized on drop.
pub trait Cipher: Send + Sync {
    /// The suite this cipher implements.
    fn suite(&self) -> Suite;
    /// Bytes of explicit IV on the wire (8 for GCM, 16 for CBC, 0 for NULL).
    fn iv_len(&self) -> usize;
    /// Bytes of ICV on the wire.
    fn icv_len(&self) -> usize;
    /// The payload must be a multiple of this (16 for CBC, 1 otherwise;
    /// ESP's own 4-byte alignment is applied by the caller on top).
    fn block_len(&self) -> usize;
    /// Encrypts `payload` in place and writes `iv` and `icv`.
    ///
    /// `iv_seed` must never repeat under one key (ESP passes the 64-bit
    /// sequence number, IKE its message counter): AES-GCM uses it as the
    /// explicit IV, AES-CBC derives an unpredictable IV from it with a
    /// per-key secret, NULL ignores it.
    fn seal(
        &self,
        header: &[u8],
        esn_hi: Option<u32>,
        iv_seed: u64,
        iv: &mut [u8],
        payload: &mut [u8],
        icv: &mut [u8],
    ) -> Result<(), CryptoError>;
    /// Verifies the ICV (in constant time) and then decrypts `payload` in
    /// place. On error `payload` must not be used.
    fn open(
        &self,
        header: &[u8],
        esn_hi: Option<u32>,
        iv: &[u8],
        payload: &mut [u8],
        icv: &[u8],
    ) -> Result<(), CryptoError>;
}

mod cbc;
mod gcm;
mod integ;
mod null;
mod suite;

pub use suite::GCM_SALT_LEN;

/// Returns `Err(BadLength)` unless the per-packet slice lengths fit `c`.
fn check_lengths(
    c: &dyn Cipher,
    header: &[u8],
    esn_hi: Option<u32>,
    iv: &[u8],
    payload: &[u8],
    icv: &[u8],
) -> Result<(), CryptoError> {
    if iv.len() != c.iv_len()
        || icv.len() != c.icv_len()
        || payload.len() % c.block_len() != 0
        || (esn_hi.is_some() && header.len() != 8)
    {
        return Err(CryptoError::BadLength);
    }
    Ok(())
}
