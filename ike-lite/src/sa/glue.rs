//! The only place that calls into `crate::crypto`: key derivation, AUTH,
//! SK sealing and randomness, adapted to what the state machine needs.

use crate::child::KeyMaterial;
use crate::crypto::{self, DhGroup, KeyExchange, PrfId, SecretBytes};
use crate::proposal::IkeChoice;
use ipsec_core::crypto::{Cipher, Suite};
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

/// Initial IKE SA keys (RFC 7296 §2.14); `export` keeps SK_e*/SK_a*.
#[allow(clippy::too_many_arguments)]
pub(crate) fn derive_ike(
    choice: &IkeChoice,
    ni: &[u8],
    nr: &[u8],
    g_ir: &[u8],
    spi_i: u64,
    spi_r: u64,
    initiator: bool,
    export: bool,
) -> Option<Keys> {
    let k = crypto::IkeSaKeys::derive(
        choice.prf,
        choice.suite,
        ni,
        nr,
        g_ir,
        spi_i.to_be_bytes(),
        spi_r.to_be_bytes(),
    )
    .ok()?;
    finish(k, choice, initiator, export)
}

/// Keys of a rekeyed IKE SA (RFC 7296 §2.18).
#[allow(clippy::too_many_arguments)]
pub(crate) fn derive_ike_rekey(
    old: &Keys,
    choice: &IkeChoice,
    g_ir: &[u8],
    ni: &[u8],
    nr: &[u8],
    spi_i: u64,
    spi_r: u64,
    initiator: bool,
    export: bool,
) -> Option<Keys> {
    let k = crypto::IkeSaKeys::derive_rekey(
        old.prf,
        &old.sk_d,
        choice.prf,
        choice.suite,
        g_ir,
        ni,
        nr,
        spi_i.to_be_bytes(),
        spi_r.to_be_bytes(),
    )
    .ok()?;
    finish(k, choice, initiator, export)
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
pub(crate) fn kex(group: DhGroup) -> Option<KeyExchange> {
    KeyExchange::generate(group).ok()
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

/// Stateless cookie (RFC 7296 §2.6): prf(secret, Ni | IPi | SPIi).
pub(crate) fn cookie(secret: &[u8], ni: &[u8], ip: std::net::IpAddr, spi_i: u64) -> Vec<u8> {
    let mut data = ni.to_vec();
    match ip {
        std::net::IpAddr::V4(a) => data.extend_from_slice(&a.octets()),
        std::net::IpAddr::V6(a) => data.extend_from_slice(&a.octets()),
    }
    data.extend_from_slice(&spi_i.to_be_bytes());
    crypto::prf(PrfId::HMAC_SHA2_256, secret, &data)
        .map(|v| v.to_vec())
        .unwrap_or_default()
}

/// Constant-time equality of two byte strings.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Fills `buf` from the OS CSPRNG. Without randomness no SPI, nonce or key
/// can be made safely, so a broken RNG is a fatal host error.
pub(crate) fn fill(buf: &mut [u8]) {
    crypto::fill_random(buf).expect("operating system RNG failed");
}

/// Random bytes.
pub(crate) fn random(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    fill(&mut v);
    v
}

/// A random non-zero IKE SPI.
pub(crate) fn ike_spi() -> u64 {
    loop {
        let mut b = [0u8; 8];
        fill(&mut b);
        let v = u64::from_be_bytes(b);
        if v != 0 {
            return v;
        }
    }
}

/// A random ESP SPI outside the reserved range 0..=255.
pub(crate) fn esp_spi() -> u32 {
    loop {
        let mut b = [0u8; 4];
        fill(&mut b);
        let v = u32::from_be_bytes(b);
        if v > 255 {
            return v;
        }
    }
}

/// A uniform random fraction in 0..1.
pub(crate) fn fraction() -> f64 {
    let mut b = [0u8; 4];
    fill(&mut b);
    f64::from(u32::from_be_bytes(b)) / (f64::from(u32::MAX) + 1.0)
}
