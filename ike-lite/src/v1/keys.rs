//! IKEv1 key derivation with pre-shared keys (RFC 2409 §5, §5.5, App. B):
//! SKEYID and SKEYID_d/a/e, the encryption key `Ka` (expanded when the PRF
//! output is too short), the first IVs, HASH_I / HASH_R, the quick-mode
//! and informational HASHes and the quick-mode KEYMAT (with and without
//! PFS, expanded `K1 | K2 | ...`). The PRF is HMAC with the negotiated
//! hash ([`PrfId`]); the IV hashes use the bare hash.

use crate::crypto::{prf_parts, PrfError, PrfId, SecretBytes};
use sha1::Digest;

use super::cbc::{Iv, BLOCK};

/// The negotiated hash (not HMAC) over `parts`.
pub fn hash(id: PrfId, parts: &[&[u8]]) -> Result<Vec<u8>, PrfError> {
    fn run<D: Digest>(parts: &[&[u8]]) -> Vec<u8> {
        let mut d = D::new();
        for p in parts {
            d.update(p);
        }
        d.finalize().to_vec()
    }
    Ok(match id {
        PrfId::HMAC_SHA1 => run::<sha1::Sha1>(parts),
        PrfId::HMAC_SHA2_256 => run::<sha2::Sha256>(parts),
        PrfId::HMAC_SHA2_384 => run::<sha2::Sha384>(parts),
        PrfId::HMAC_SHA2_512 => run::<sha2::Sha512>(parts),
        _ => return Err(PrfError::Unsupported(id)),
    })
}

fn first_block(h: &[u8]) -> Iv {
    let mut iv = [0u8; BLOCK];
    let n = h.len().min(BLOCK);
    iv[..n].copy_from_slice(&h[..n]);
    iv
}

/// The first IV of phase 1: `hash(g^xi | g^xr)` truncated to the block.
pub fn phase1_iv(id: PrfId, g_xi: &[u8], g_xr: &[u8]) -> Result<Iv, PrfError> {
    Ok(first_block(&hash(id, &[g_xi, g_xr])?))
}

/// The first IV of a quick mode or informational exchange:
/// `hash(last phase-1 block | M-ID)` truncated.
pub fn phase2_iv(id: PrfId, last_phase1_block: &Iv, message_id: u32) -> Result<Iv, PrfError> {
    Ok(first_block(&hash(
        id,
        &[last_phase1_block, &message_id.to_be_bytes()],
    )?))
}

fn secret(v: zeroize::Zeroizing<Vec<u8>>) -> SecretBytes {
    SecretBytes::new(v.to_vec())
}

/// `K1 | K2 | ...` truncated to `len`, with `K1 = prf(key, seed_first)`
/// and `Kn = prf(key, Kn-1 | seed_rest)` (App. B and §5.5 share the shape).
fn expand(
    id: PrfId,
    key: &[u8],
    first: &[&[u8]],
    rest: &[&[u8]],
    len: usize,
) -> Result<SecretBytes, PrfError> {
    let mut out = zeroize::Zeroizing::new(Vec::with_capacity(len + 64));
    let mut prev = prf_parts(id, key, first)?;
    out.extend_from_slice(&prev);
    while out.len() < len {
        let mut parts: Vec<&[u8]> = vec![&prev];
        parts.extend_from_slice(rest);
        let next = prf_parts(id, key, &parts)?;
        out.extend_from_slice(&next);
        prev = next;
    }
    out.truncate(len);
    Ok(SecretBytes::new(out.to_vec()))
}

/// The keys of one ISAKMP SA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Phase1Keys {
    /// The PRF (HMAC with the negotiated hash).
    pub prf: PrfId,
    /// SKEYID = prf(psk, Ni_b | Nr_b).
    pub skeyid: SecretBytes,
    /// SKEYID_d: quick-mode keying material.
    pub skeyid_d: SecretBytes,
    /// SKEYID_a: phase-2 HASHes.
    pub skeyid_a: SecretBytes,
    /// SKEYID_e: source of `Ka`.
    pub skeyid_e: SecretBytes,
    /// Ka: the message encryption key.
    pub enc_key: SecretBytes,
}

/// The inputs of phase-1 key derivation.
#[derive(Clone, Copy, Debug)]
pub struct Phase1Inputs<'a> {
    /// The pre-shared key.
    pub psk: &'a [u8],
    /// Initiator nonce body.
    pub ni: &'a [u8],
    /// Responder nonce body.
    pub nr: &'a [u8],
    /// Diffie-Hellman shared secret g^xy.
    pub g_xy: &'a [u8],
    /// Initiator cookie.
    pub cookie_i: u64,
    /// Responder cookie.
    pub cookie_r: u64,
}

impl Phase1Keys {
    /// Derives every phase-1 key for a PSK SA whose cipher takes
    /// `enc_key_len` bytes.
    pub fn derive(id: PrfId, x: &Phase1Inputs<'_>, enc_key_len: usize) -> Result<Self, PrfError> {
        let skeyid = secret(prf_parts(id, x.psk, &[x.ni, x.nr])?);
        let (ci, cr) = (x.cookie_i.to_be_bytes(), x.cookie_r.to_be_bytes());
        let d = secret(prf_parts(id, &skeyid, &[x.g_xy, &ci, &cr, &[0]])?);
        let a = secret(prf_parts(id, &skeyid, &[&d, x.g_xy, &ci, &cr, &[1]])?);
        let e = secret(prf_parts(id, &skeyid, &[&a, x.g_xy, &ci, &cr, &[2]])?);
        let enc_key = if e.len() >= enc_key_len {
            SecretBytes::from_slice(&e[..enc_key_len])
        } else {
            expand(id, &e, &[&[0]], &[], enc_key_len)?
        };
        Ok(Phase1Keys {
            prf: id,
            skeyid,
            skeyid_d: d,
            skeyid_a: a,
            skeyid_e: e,
            enc_key,
        })
    }

    /// HASH_I = prf(SKEYID, g^xi | g^xr | CKY-I | CKY-R | SAi_b | IDii_b);
    /// HASH_R swaps the DH values and cookies and takes IDir_b. Pass the
    /// sender's values first: `(g_own, g_peer, cky_own, cky_peer)`.
    pub fn hash_auth(
        &self,
        g_own: &[u8],
        g_peer: &[u8],
        cky_own: u64,
        cky_peer: u64,
        sa_i_body: &[u8],
        id_body: &[u8],
    ) -> Result<Vec<u8>, PrfError> {
        let (a, b) = (cky_own.to_be_bytes(), cky_peer.to_be_bytes());
        Ok(prf_parts(
            self.prf,
            &self.skeyid,
            &[g_own, g_peer, &a, &b, sa_i_body, id_body],
        )?
        .to_vec())
    }

    /// HASH(1) of quick mode and of informational exchanges:
    /// prf(SKEYID_a, M-ID | everything after the HASH payload).
    pub fn hash1(&self, message_id: u32, rest: &[u8]) -> Result<Vec<u8>, PrfError> {
        Ok(prf_parts(self.prf, &self.skeyid_a, &[&message_id.to_be_bytes(), rest])?.to_vec())
    }

    /// HASH(2) = prf(SKEYID_a, M-ID | Ni_b | everything after HASH).
    pub fn hash2(&self, message_id: u32, ni: &[u8], rest: &[u8]) -> Result<Vec<u8>, PrfError> {
        Ok(prf_parts(
            self.prf,
            &self.skeyid_a,
            &[&message_id.to_be_bytes(), ni, rest],
        )?
        .to_vec())
    }

    /// HASH(3) = prf(SKEYID_a, 0 | M-ID | Ni_b | Nr_b).
    pub fn hash3(&self, message_id: u32, ni: &[u8], nr: &[u8]) -> Result<Vec<u8>, PrfError> {
        Ok(prf_parts(
            self.prf,
            &self.skeyid_a,
            &[&[0], &message_id.to_be_bytes(), ni, nr],
        )?
        .to_vec())
    }

    /// KEYMAT of one direction (the SA whose receiver chose `spi`):
    /// `K1 = prf(SKEYID_d, [g(qm)^xy |] protocol | SPI | Ni_b | Nr_b)`,
    /// `Kn = prf(SKEYID_d, Kn-1 | [g(qm)^xy |] protocol | SPI | Ni_b | Nr_b)`.
    pub fn keymat(
        &self,
        g_qm: Option<&[u8]>,
        protocol: u8,
        spi: u32,
        ni: &[u8],
        nr: &[u8],
        len: usize,
    ) -> Result<SecretBytes, PrfError> {
        let (p, s) = ([protocol], spi.to_be_bytes());
        let mut seed: Vec<&[u8]> = Vec::with_capacity(5);
        if let Some(g) = g_qm {
            seed.push(g);
        }
        seed.extend_from_slice(&[&p, &s, ni, nr]);
        expand(self.prf, &self.skeyid_d, &seed, &seed, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::prf;

    fn inputs() -> Phase1Inputs<'static> {
        Phase1Inputs {
            psk: b"secret",
            ni: &[1; 16],
            nr: &[2; 16],
            g_xy: &[3; 128],
            cookie_i: 0x1111,
            cookie_r: 0x2222,
        }
    }

    #[test]
    fn enc_key_expands_when_prf_output_is_short() {
        let k = Phase1Keys::derive(PrfId::HMAC_SHA1, &inputs(), 32).unwrap();
        assert_eq!(k.skeyid_e.len(), 20);
        let k1 = prf(PrfId::HMAC_SHA1, &k.skeyid_e, &[0]).unwrap();
        let k2 = prf(PrfId::HMAC_SHA1, &k.skeyid_e, &k1).unwrap();
        assert_eq!(&k.enc_key[..20], &k1[..]);
        assert_eq!(&k.enc_key[20..], &k2[..12]);
        let short = Phase1Keys::derive(PrfId::HMAC_SHA1, &inputs(), 16).unwrap();
        assert_eq!(&short.enc_key[..], &short.skeyid_e[..16]);
        assert_eq!(short.skeyid_d, k.skeyid_d);
    }

    #[test]
    fn keymat_chains_blocks_and_depends_on_pfs() {
        let k = Phase1Keys::derive(PrfId::HMAC_SHA1, &inputs(), 16).unwrap();
        let m = k.keymat(None, 3, 0xabcd, b"ni", b"nr", 52).unwrap();
        let seed = [&[3u8][..], &0xabcdu32.to_be_bytes(), b"ni", b"nr"].concat();
        let k1 = prf(PrfId::HMAC_SHA1, &k.skeyid_d, &seed).unwrap();
        let k2 = prf(PrfId::HMAC_SHA1, &k.skeyid_d, &[&k1[..], &seed].concat()).unwrap();
        assert_eq!(&m[..20], &k1[..]);
        assert_eq!(&m[20..40], &k2[..]);
        let pfs = k
            .keymat(Some(&[9; 128]), 3, 0xabcd, b"ni", b"nr", 52)
            .unwrap();
        assert_ne!(pfs, m);
        assert_ne!(k.keymat(None, 3, 0xabce, b"ni", b"nr", 52).unwrap(), m);
    }

    #[test]
    fn ivs() {
        let iv = phase1_iv(PrfId::HMAC_SHA2_256, b"gi", b"gr").unwrap();
        assert_eq!(
            &iv[..],
            &hash(PrfId::HMAC_SHA2_256, &[b"gigr"]).unwrap()[..16]
        );
        let iv2 = phase2_iv(PrfId::HMAC_SHA1, &iv, 7).unwrap();
        let h = hash(PrfId::HMAC_SHA1, &[&iv, &[0, 0, 0, 7]]).unwrap();
        assert_eq!(&iv2[..], &h[..16]);
    }
}
