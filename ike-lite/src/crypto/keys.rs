//! IKE SA and Child SA key derivation (RFC 7296 §2.13, §2.14, §2.17, §2.18).
//!
//! ```text
//! SKEYSEED = prf(Ni | Nr, g^ir)
//! {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr}
//!          = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr)
//! rekey:   SKEYSEED = prf_old(SK_d_old, g^ir_new | Ni | Nr)
//! KEYMAT   = prf+(SK_d, [g^ir_new |] Ni | Nr)
//! ```
//!
//! Encryption key lengths come from [`Suite::enc_key_len`] (for AES-GCM they
//! include the 4-byte salt, RFC 4106 §8.1 / RFC 5282 §7.1), integrity key
//! lengths from [`Suite::integ_key_len`] (0 for AES-GCM).

use core::fmt;

use ipsec_core::crypto::{Cipher, CryptoError, Suite};
pub use ipsec_core::secret::SecretBytes;
use zeroize::Zeroizing;

use super::prf::{prf_parts, prf_plus_parts, PrfError, PrfId};

/// Why keys could not be derived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// The PRF failed (unsupported, or too much output requested).
    Prf(PrfError),
    /// The ESP / SK suite is not supported by `ipsec_core`.
    Suite(CryptoError),
}

impl From<PrfError> for KeyError {
    fn from(e: PrfError) -> Self {
        KeyError::Prf(e)
    }
}

impl From<CryptoError> for KeyError {
    fn from(e: CryptoError) -> Self {
        KeyError::Suite(e)
    }
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Prf(e) => write!(f, "key derivation: {e}"),
            KeyError::Suite(e) => write!(f, "key derivation: {e}"),
        }
    }
}

impl std::error::Error for KeyError {}

/// Splits key material into consecutive pieces.
struct Splitter<'a> {
    km: &'a [u8],
    at: usize,
}

impl Splitter<'_> {
    fn take(&mut self, n: usize) -> SecretBytes {
        let piece = SecretBytes::new(self.km[self.at..self.at + n].to_vec());
        self.at += n;
        piece
    }
}

/// `SKEYSEED = prf(Ni | Nr, g^ir)` (RFC 7296 §2.14).
pub fn skeyseed(prf: PrfId, ni: &[u8], nr: &[u8], g_ir: &[u8]) -> Result<SecretBytes, KeyError> {
    let mut key = Zeroizing::new(Vec::with_capacity(ni.len() + nr.len()));
    key.extend_from_slice(ni);
    key.extend_from_slice(nr);
    let s = prf_parts(prf, &key, &[g_ir])?;
    Ok(SecretBytes::new(s.to_vec()))
}

/// `SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr)` for an IKE SA rekey
/// (RFC 7296 §2.18), computed with the old IKE SA's PRF.
pub fn skeyseed_rekey(
    old_prf: PrfId,
    old_sk_d: &[u8],
    g_ir_new: &[u8],
    ni: &[u8],
    nr: &[u8],
) -> Result<SecretBytes, KeyError> {
    let s = prf_parts(old_prf, old_sk_d, &[g_ir_new, ni, nr])?;
    Ok(SecretBytes::new(s.to_vec()))
}

/// `(outbound, inbound)` SK ciphers.
pub type CipherPair = (Box<dyn Cipher>, Box<dyn Cipher>);

/// What a new IKE SA's keys are bound to: the nonces of the exchange that
/// created it and its SPIs as they appear in the IKE header
/// (`Ni | Nr | SPIi | SPIr`, RFC 7296 §2.14 and §2.18).
#[derive(Clone, Copy, Debug)]
pub struct SaBinding<'a> {
    /// Initiator's nonce.
    pub ni: &'a [u8],
    /// Responder's nonce.
    pub nr: &'a [u8],
    /// Initiator's SPI.
    pub spi_i: [u8; 8],
    /// Responder's SPI.
    pub spi_r: [u8; 8],
}

/// The seven IKE SA secrets of RFC 7296 §2.14.
#[derive(Clone, Debug)]
pub struct IkeSaKeys {
    /// The negotiated PRF (used with SK_d, SK_pi, SK_pr).
    pub prf: PrfId,
    /// The SK payload suite the SK_e / SK_a keys are for.
    pub suite: Suite,
    /// Key for deriving Child SA keys and the next IKE SA's SKEYSEED.
    pub sk_d: SecretBytes,
    /// Integrity key, initiator to responder (empty for AES-GCM).
    pub sk_ai: SecretBytes,
    /// Integrity key, responder to initiator (empty for AES-GCM).
    pub sk_ar: SecretBytes,
    /// Encryption key (incl. GCM salt), initiator to responder.
    pub sk_ei: SecretBytes,
    /// Encryption key (incl. GCM salt), responder to initiator.
    pub sk_er: SecretBytes,
    /// Key for the initiator's AUTH payload.
    pub sk_pi: SecretBytes,
    /// Key for the responder's AUTH payload.
    pub sk_pr: SecretBytes,
}

impl IkeSaKeys {
    /// Derives the keys of a new IKE SA from IKE_SA_INIT (RFC 7296 §2.14).
    /// `spi_i` / `spi_r` are the SPIs as they appear in the IKE header.
    pub fn derive(
        prf: PrfId,
        sk: Suite,
        ni: &[u8],
        nr: &[u8],
        g_ir: &[u8],
        spi_i: [u8; 8],
        spi_r: [u8; 8],
    ) -> Result<IkeSaKeys, KeyError> {
        let seed = skeyseed(prf, ni, nr, g_ir)?;
        IkeSaKeys::from_skeyseed(prf, sk, &seed, ni, nr, spi_i, spi_r)
    }

    /// Derives the keys of a rekeyed IKE SA (RFC 7296 §2.18): SKEYSEED with
    /// the old PRF and old SK_d, then `prf+` with the new PRF. `new` holds
    /// the nonces of the CREATE_CHILD_SA exchange and the new SA's SPIs.
    pub fn derive_rekey(
        old_prf: PrfId,
        old_sk_d: &[u8],
        new_prf: PrfId,
        suite: Suite,
        g_ir_new: &[u8],
        new: SaBinding<'_>,
    ) -> Result<IkeSaKeys, KeyError> {
        let SaBinding {
            ni,
            nr,
            spi_i,
            spi_r,
        } = new;
        let seed = skeyseed_rekey(old_prf, old_sk_d, g_ir_new, ni, nr)?;
        IkeSaKeys::from_skeyseed(new_prf, suite, &seed, ni, nr, spi_i, spi_r)
    }

    /// Expands a given SKEYSEED: `prf+(SKEYSEED, Ni | Nr | SPIi | SPIr)`.
    pub fn from_skeyseed(
        prf: PrfId,
        sk: Suite,
        skeyseed: &[u8],
        ni: &[u8],
        nr: &[u8],
        spi_i: [u8; 8],
        spi_r: [u8; 8],
    ) -> Result<IkeSaKeys, KeyError> {
        let prf_len = prf.output_len().ok_or(PrfError::Unsupported(prf))?;
        let (enc, integ) = suite_key_lens(sk)?;
        let total = 3 * prf_len + 2 * integ + 2 * enc;
        let km = prf_plus_parts(prf, skeyseed, &[ni, nr, &spi_i, &spi_r], total)?;
        let mut s = Splitter { km: &km, at: 0 };
        Ok(IkeSaKeys {
            prf,
            suite: sk,
            sk_d: s.take(prf_len),
            sk_ai: s.take(integ),
            sk_ar: s.take(integ),
            sk_ei: s.take(enc),
            sk_er: s.take(enc),
            sk_pi: s.take(prf_len),
            sk_pr: s.take(prf_len),
        })
    }

    /// The SK cipher for messages sent by the initiator (SK_ei, SK_ai).
    pub fn initiator_cipher(&self) -> Result<Box<dyn Cipher>, CryptoError> {
        self.suite.cipher(&self.sk_ei, &self.sk_ai)
    }

    /// The SK cipher for messages sent by the responder (SK_er, SK_ar).
    pub fn responder_cipher(&self) -> Result<Box<dyn Cipher>, CryptoError> {
        self.suite.cipher(&self.sk_er, &self.sk_ar)
    }

    /// `(outbound, inbound)` SK ciphers for our role.
    pub fn ciphers(&self, we_are_initiator: bool) -> Result<CipherPair, CryptoError> {
        let (i, r) = (self.initiator_cipher()?, self.responder_cipher()?);
        Ok(if we_are_initiator { (i, r) } else { (r, i) })
    }

    /// SK_p for our own AUTH payload (SK_pi for the initiator).
    pub fn sk_p_own(&self, we_are_initiator: bool) -> &[u8] {
        if we_are_initiator {
            &self.sk_pi
        } else {
            &self.sk_pr
        }
    }

    /// SK_p for verifying the peer's AUTH payload.
    pub fn sk_p_peer(&self, we_are_initiator: bool) -> &[u8] {
        self.sk_p_own(!we_are_initiator)
    }
}

fn suite_key_lens(suite: Suite) -> Result<(usize, usize), KeyError> {
    suite.validate()?;
    Ok((suite.enc_key_len()?, suite.integ_key_len()))
}

/// Keys for one direction of a Child SA.
#[derive(Clone, Debug)]
pub struct DirKeys {
    /// Encryption key (incl. the 4-byte salt for AES-GCM).
    pub enc: SecretBytes,
    /// Integrity key (empty for AES-GCM).
    pub integ: SecretBytes,
}

impl DirKeys {
    /// Builds the ESP cipher for this direction.
    pub fn cipher(&self, suite: Suite) -> Result<Box<dyn Cipher>, CryptoError> {
        suite.cipher(&self.enc, &self.integ)
    }
}

/// Child SA key material, split per RFC 7296 §2.17.
#[derive(Clone, Debug)]
pub struct ChildKeys {
    /// The ESP suite these keys are for.
    pub suite: Suite,
    /// Keys protecting traffic from initiator to responder.
    pub i_to_r: DirKeys,
    /// Keys protecting traffic from responder to initiator.
    pub r_to_i: DirKeys,
}

impl ChildKeys {
    /// `(outbound, inbound)` keys for our role.
    pub fn for_role(&self, we_are_initiator: bool) -> (&DirKeys, &DirKeys) {
        if we_are_initiator {
            (&self.i_to_r, &self.r_to_i)
        } else {
            (&self.r_to_i, &self.i_to_r)
        }
    }
}

/// `KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr)`, split as initiator to
/// responder encryption, integrity, then responder to initiator encryption,
/// integrity (RFC 7296 §2.17). `ni` / `nr` are the nonces of the exchange
/// that created the Child SA (IKE_SA_INIT for the first one).
pub fn child_keymat(
    prf: PrfId,
    sk_d: &[u8],
    g_ir: Option<&[u8]>,
    ni: &[u8],
    nr: &[u8],
    esp: Suite,
) -> Result<ChildKeys, KeyError> {
    let (enc, integ) = suite_key_lens(esp)?;
    let total = 2 * (enc + integ);
    let km = match g_ir {
        Some(g) => prf_plus_parts(prf, sk_d, &[g, ni, nr], total)?,
        None => prf_plus_parts(prf, sk_d, &[ni, nr], total)?,
    };
    let mut s = Splitter { km: &km, at: 0 };
    let i_to_r = DirKeys {
        enc: s.take(enc),
        integ: s.take(integ),
    };
    let r_to_i = DirKeys {
        enc: s.take(enc),
        integ: s.take(integ),
    };
    Ok(ChildKeys {
        suite: esp,
        i_to_r,
        r_to_i,
    })
}
