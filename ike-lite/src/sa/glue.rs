//! The only place that calls into `crate::crypto`: key derivation, AUTH,
//! SK sealing and randomness (always from the endpoint's injected RNG),
//! adapted to what the state machine needs.

use crate::child::KeyMaterial;
use crate::crypto::{self, DhGroup, KeyExchange, PrfId, SecretBytes};
use crate::proposal::IkeChoice;
use ipsec_core::crypto::{Cipher, Suite};
use rand_core::CryptoRngCore;
use std::net::SocketAddr;
use zeroize::Zeroizing;

/// Keys of an established IKE SA, from our point of view.
pub(crate) struct Keys {
    pub prf: PrfId,
    pub sk_d: Zeroizing<Vec<u8>>,
    pub sk_p_local: Zeroizing<Vec<u8>>,
    pub sk_p_remote: Zeroizing<Vec<u8>>,
    pub out: Box<dyn Cipher>,
    pub inp: Box<dyn Cipher>,
    /// SK_ei, SK_er, SK_ai, SK_ar, kept only with `Config::export_ike_keys`.
    pub export: Option<[SecretBytes; 4]>,
}

fn finish(
    keys: crypto::IkeSaKeys,
    choice: &IkeChoice,
    initiator: bool,
    export: bool,
) -> Option<Keys> {
    let (out, inp) = keys.ciphers(initiator).ok()?;
    let export = export.then(|| {
        [
            keys.sk_ei.clone(),
            keys.sk_er.clone(),
            keys.sk_ai.clone(),
            keys.sk_ar.clone(),
        ]
    });
    Some(Keys {
        export,
        prf: choice.prf,
        sk_d: Zeroizing::new(keys.sk_d.to_vec()),
        sk_p_local: Zeroizing::new(keys.sk_p_own(initiator).to_vec()),
        sk_p_remote: Zeroizing::new(keys.sk_p_peer(initiator).to_vec()),
        out,
        inp,
    })
}

/// What the keys of a new IKE SA are computed from.
pub(crate) struct NewIkeKeys<'a> {
    pub choice: &'a IkeChoice,
    /// The Diffie-Hellman shared secret.
    pub g_ir: &'a [u8],
    pub ni: &'a [u8],
    pub nr: &'a [u8],
    pub spi_i: u64,
    pub spi_r: u64,
    /// Whether we are the initiator of the exchange that made the SA.
    pub initiator: bool,
    /// Keep SK_e*/SK_a* for export (`Config::export_ike_keys`).
    pub export: bool,
}

impl NewIkeKeys<'_> {
    fn binding(&self) -> crypto::SaBinding<'_> {
        crypto::SaBinding {
            ni: self.ni,
            nr: self.nr,
            spi_i: self.spi_i.to_be_bytes(),
            spi_r: self.spi_r.to_be_bytes(),
        }
    }
}

/// Initial IKE SA keys (RFC 7296 §2.14).
pub(crate) fn derive_ike(n: &NewIkeKeys<'_>) -> Option<Keys> {
    let k = crypto::IkeSaKeys::derive(
        n.choice.prf,
        n.choice.suite,
        n.ni,
        n.nr,
        n.g_ir,
        n.spi_i.to_be_bytes(),
        n.spi_r.to_be_bytes(),
    )
    .ok()?;
    finish(k, n.choice, n.initiator, n.export)
}

/// Keys of a rekeyed IKE SA (RFC 7296 §2.18).
pub(crate) fn derive_ike_rekey(old: &Keys, n: &NewIkeKeys<'_>) -> Option<Keys> {
    let k = crypto::IkeSaKeys::derive_rekey(
        old.prf,
        &old.sk_d,
        n.choice.prf,
        n.choice.suite,
        n.g_ir,
        n.binding(),
    )
    .ok()?;
    finish(k, n.choice, n.initiator, n.export)
}

/// Child SA key material (i_to_r, r_to_i), RFC 7296 §2.17.
pub(crate) fn child_keys(
    keys: &Keys,
    g_ir: Option<&[u8]>,
    ni: &[u8],
    nr: &[u8],
    suite: Suite,
) -> Option<(KeyMaterial, KeyMaterial)> {
    let k = crypto::child_keymat(keys.prf, &keys.sk_d, g_ir, ni, nr, suite).ok()?;
    let conv = |d: &crypto::DirKeys| KeyMaterial::new(d.enc.clone(), d.integ.clone());
    Some((conv(&k.i_to_r), conv(&k.r_to_i)))
}

/// Our AUTH payload data.
pub(crate) fn auth(
    keys: &Keys,
    psk: &[u8],
    real_message: &[u8],
    peer_nonce: &[u8],
    id_body: &[u8],
) -> Option<Vec<u8>> {
    crypto::psk_auth(
        keys.prf,
        psk,
        real_message,
        peer_nonce,
        &keys.sk_p_local,
        id_body,
    )
    .ok()
    .map(|v| v.to_vec())
}

/// Checks the peer's AUTH payload data (constant time inside).
pub(crate) fn verify_auth(
    keys: &Keys,
    psk: &[u8],
    real_message: &[u8],
    peer_nonce: &[u8],
    id_body: &[u8],
    got: &[u8],
) -> bool {
    crypto::verify_psk_auth(
        keys.prf,
        psk,
        real_message,
        peer_nonce,
        &keys.sk_p_remote,
        id_body,
        got,
    )
}

/// Generates a key exchange for `group`.
pub(crate) fn kex(rng: &mut dyn CryptoRngCore, group: DhGroup) -> Option<KeyExchange> {
    KeyExchange::generate_with(group, rng).ok()
}

/// The shared secret with the peer's public value.
pub(crate) fn agree(ke: &KeyExchange, peer: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    ke.agree(peer)
        .ok()
        .map(|s| Zeroizing::new(s.as_bytes().to_vec()))
}

/// Seals `msg` (header | ... | SK header | plaintext) in place.
pub(crate) fn seal(c: &dyn Cipher, msg: &mut Vec<u8>, sk_offset: usize, iv_seed: u64) -> bool {
    crypto::sk_seal(c, msg, sk_offset, iv_seed).is_ok()
}

/// Seals one SKF fragment (`hdr_len` 8) in place.
pub(crate) fn seal_fragment(
    c: &dyn Cipher,
    msg: &mut Vec<u8>,
    sk_offset: usize,
    iv_seed: u64,
) -> bool {
    crypto::sk_seal_with_header_len(c, msg, sk_offset, crypto::SKF_HEADER_LEN, iv_seed).is_ok()
}

/// Opens an SK (hdr_len 4) or SKF (hdr_len 8) payload in place.
pub(crate) fn open(
    c: &dyn Cipher,
    msg: &mut [u8],
    sk_offset: usize,
    hdr_len: usize,
) -> Option<core::ops::Range<usize>> {
    crypto::sk_open(c, msg, sk_offset, hdr_len).ok()
}

/// NAT_DETECTION_*_IP hash.
pub(crate) fn nat_hash(spi_i: u64, spi_r: u64, addr: SocketAddr) -> Vec<u8> {
    crypto::nat_detection_hash(
        &spi_i.to_be_bytes(),
        &spi_r.to_be_bytes(),
        addr.ip(),
        addr.port(),
    )
    .to_vec()
}

/// Random bytes (nonces, fake NAT detection hashes).
pub(crate) fn random(rng: &mut dyn CryptoRngCore, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rng.fill_bytes(&mut v);
    v
}

/// A random non-zero IKE SPI.
pub(crate) fn ike_spi(rng: &mut dyn CryptoRngCore) -> u64 {
    loop {
        let v = rng.next_u64();
        if v != 0 {
            return v;
        }
    }
}

/// A random ESP SPI outside the reserved range 0..=255.
pub(crate) fn esp_spi(rng: &mut dyn CryptoRngCore) -> u32 {
    loop {
        let v = rng.next_u32();
        if v > 255 {
            return v;
        }
    }
}

/// A uniform random fraction in 0..1.
pub(crate) fn fraction(rng: &mut dyn CryptoRngCore) -> f64 {
    f64::from(rng.next_u32()) / (f64::from(u32::MAX) + 1.0)
}
