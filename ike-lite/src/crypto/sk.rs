//! Encrypted (SK) and Encrypted Fragment (SKF) payload protection
//! (RFC 7296 §3.14, RFC 5282 for AES-GCM, RFC 7383 §2.5 for SKF).
//!
//! Wire layout, starting at the payload header at `sk_offset`:
//!
//! ```text
//! generic header (4) [| Fragment Number (2) | Total Fragments (2)]
//! | IV | encrypted(inner payloads | padding | Pad Length) | ICV
//! ```
//!
//! The bytes from the IKE header through the end of the payload header are
//! authenticated (GCM AAD, RFC 5282 §5.1; for HMAC suites the ICV covers them
//! too, together with the IV and ciphertext). The ciphers come from
//! [`ipsec_core::crypto`]. Nothing here panics on any input.

use core::fmt;
use core::ops::Range;

use ipsec_core::crypto::{Cipher, CryptoError};

/// Length of the IKE header (RFC 7296 §3.1).
pub const IKE_HEADER_LEN: usize = 28;
/// Length of the Encrypted payload header (the generic payload header).
pub const SK_HEADER_LEN: usize = 4;
/// Length of the Encrypted Fragment payload header (RFC 7383 §2.5).
pub const SKF_HEADER_LEN: usize = 8;

/// Why an SK payload could not be sealed or opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SkError {
    /// `sk_offset` is inside the IKE header, or `hdr_len` is not 4 or 8.
    BadOffset,
    /// The message ends before the payload header, IV, one cipher block
    /// and the ICV.
    Truncated,
    /// The SK payload Length field does not reach exactly to the end of the
    /// message (the SK payload must be the last one, RFC 7296 §3.14).
    LengthMismatch,
    /// The encrypted part is not a multiple of the cipher block length.
    NotBlockAligned,
    /// Sealing would exceed the 16-bit payload or 32-bit message length.
    TooLong,
    /// The ICV did not verify; nothing of the payload may be used.
    AuthFailed,
    /// The Pad Length byte points before the start of the plaintext.
    BadPadding,
    /// The cipher refused the buffers (should not happen for valid lengths).
    Crypto(CryptoError),
}

impl fmt::Display for SkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkError::BadOffset => f.write_str("SK payload offset or header length invalid"),
            SkError::Truncated => f.write_str("SK payload truncated"),
            SkError::LengthMismatch => f.write_str("SK payload length does not match message"),
            SkError::NotBlockAligned => f.write_str("SK ciphertext not block aligned"),
            SkError::TooLong => f.write_str("SK payload too long"),
            SkError::AuthFailed => f.write_str("SK payload integrity check failed"),
            SkError::BadPadding => f.write_str("SK payload pad length invalid"),
            SkError::Crypto(e) => write!(f, "SK payload: {e}"),
        }
    }
}

impl std::error::Error for SkError {}

fn check_offset(sk_offset: usize, hdr_len: usize) -> Result<(), SkError> {
    if sk_offset < IKE_HEADER_LEN || (hdr_len != SK_HEADER_LEN && hdr_len != SKF_HEADER_LEN) {
        return Err(SkError::BadOffset);
    }
    Ok(())
}

/// Encrypts an Encrypted (SK) payload in place; see
/// [`sk_seal_with_header_len`] (with `hdr_len` = [`SK_HEADER_LEN`]).
pub fn sk_seal(
    cipher: &dyn Cipher,
    msg: &mut Vec<u8>,
    sk_offset: usize,
    iv_seed: u64,
) -> Result<(), SkError> {
    sk_seal_with_header_len(cipher, msg, sk_offset, SK_HEADER_LEN, iv_seed)
}

/// Encrypts an SK (`hdr_len` 4) or SKF (`hdr_len` 8) payload in place.
///
/// On input `msg` is the IKE header, any unencrypted payloads, the payload
/// header at `sk_offset` (Next Payload already set to the first inner
/// payload; for SKF the fragment numbers filled in) and then the plaintext
/// inner payloads. The IV is inserted, the plaintext padded (zero bytes plus
/// the Pad Length byte) to the cipher's block length, room for the ICV
/// appended, the IKE header Length and the payload Length fixed, and the
/// result sealed. `iv_seed` must not repeat under one key (use the message
/// ID or a per-SA counter).
pub fn sk_seal_with_header_len(
    cipher: &dyn Cipher,
    msg: &mut Vec<u8>,
    sk_offset: usize,
    hdr_len: usize,
    iv_seed: u64,
) -> Result<(), SkError> {
    check_offset(sk_offset, hdr_len)?;
    let body = sk_offset.checked_add(hdr_len).ok_or(SkError::BadOffset)?;
    if msg.len() < body {
        return Err(SkError::Truncated);
    }
    let (iv_len, icv_len) = (cipher.iv_len(), cipher.icv_len());
    let block = cipher.block_len().max(1);
    let plain_len = msg.len() - body;
    let pad_len = (block - (plain_len + 1) % block) % block;
    let enc_len = plain_len + pad_len + 1;
    let sk_len = hdr_len + iv_len + enc_len + icv_len;
    let total = sk_offset + sk_len;
    let sk_len16 = u16::try_from(sk_len).map_err(|_| SkError::TooLong)?;
    let total32 = u32::try_from(total).map_err(|_| SkError::TooLong)?;
    // pad_len < block <= 255 for every real cipher; refuse anything else.
    let pad_byte = u8::try_from(pad_len).map_err(|_| SkError::Crypto(CryptoError::BadLength))?;

    msg.splice(body..body, core::iter::repeat_n(0u8, iv_len));
    msg.resize(msg.len() + pad_len, 0);
    msg.push(pad_byte);
    msg.resize(total, 0);
    msg[24..28].copy_from_slice(&total32.to_be_bytes());
    msg[sk_offset + 2..sk_offset + 4].copy_from_slice(&sk_len16.to_be_bytes());

    let (header, rest) = msg.split_at_mut(body);
    let (iv, rest) = rest.split_at_mut(iv_len);
    let (payload, icv) = rest.split_at_mut(enc_len);
    cipher
        .seal(header, None, iv_seed, iv, payload, icv)
        .map_err(SkError::Crypto)
}

/// Verifies and decrypts an SK (`hdr_len` 4) or SKF (`hdr_len` 8) payload
/// in place and returns the range of the inner payloads within `msg`.
///
/// `msg` is the whole IKE message and the payload at `sk_offset` must be its
/// last payload. The ICV is checked before anything is decrypted; on error
/// the contents of `msg` after the payload header must not be used.
pub fn sk_open(
    cipher: &dyn Cipher,
    msg: &mut [u8],
    sk_offset: usize,
    hdr_len: usize,
) -> Result<Range<usize>, SkError> {
    check_offset(sk_offset, hdr_len)?;
    let body = sk_offset.checked_add(hdr_len).ok_or(SkError::BadOffset)?;
    if msg.len() < body {
        return Err(SkError::Truncated);
    }
    let sk_len = usize::from(u16::from_be_bytes([msg[sk_offset + 2], msg[sk_offset + 3]]));
    if sk_offset + sk_len != msg.len() {
        return Err(SkError::LengthMismatch);
    }
    let (iv_len, icv_len) = (cipher.iv_len(), cipher.icv_len());
    let block = cipher.block_len().max(1);
    let body_len = msg.len() - body;
    if body_len < iv_len + icv_len + block {
        return Err(SkError::Truncated);
    }
    let enc_len = body_len - iv_len - icv_len;
    if enc_len % block != 0 {
        return Err(SkError::NotBlockAligned);
    }

    let (header, rest) = msg.split_at_mut(body);
    let (iv, rest) = rest.split_at_mut(iv_len);
    let (payload, icv) = rest.split_at_mut(enc_len);
    cipher
        .open(header, None, iv, payload, icv)
        .map_err(|e| match e {
            CryptoError::AuthFailed => SkError::AuthFailed,
            other => SkError::Crypto(other),
        })?;
    let pad_len = usize::from(payload[enc_len - 1]);
    if pad_len + 1 > enc_len {
        return Err(SkError::BadPadding);
    }
    let start = body + iv_len;
    Ok(start..start + enc_len - pad_len - 1)
}
