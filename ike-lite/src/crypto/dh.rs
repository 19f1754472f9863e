//! Diffie-Hellman key exchange for the IKEv2 KE payload.
//!
//! Owns the group registry ([`DhGroup`]), key generation, the KE payload
//! encodings and the peer public value checks of RFC 6989:
//!
//! * MODP (RFC 2409, RFC 3526, RFC 5114): public value is `g^x mod p`,
//!   big-endian, left-padded to the prime length; the shared secret is
//!   padded the same way (RFC 7296 §3.4). Peer values must satisfy
//!   `1 < y < p-1`, and for the RFC 5114 groups also `y^q = 1 mod p`.
//! * ECP (RFC 5903): public value is `x | y` without the SEC1 `0x04` prefix;
//!   the shared secret is the x coordinate only (RFC 5903 §7). Peer points
//!   must lie on the curve and not be the identity.
//! * Curve25519 (RFC 8031): 32-byte u coordinate; an all-zero shared secret
//!   is rejected.
//!
//! MODP arithmetic uses `num-bigint`, which is not constant time; prefer the
//! ECP groups or Curve25519 where the peer allows it.

use core::fmt;
use std::sync::OnceLock;

use num_bigint::BigUint;
use num_traits::One;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use super::modp_params as params;
use rand_core::CryptoRngCore;

/// IANA IKEv2 "Transform Type 4 - Key Exchange Method Transform IDs".
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DhGroup(pub u16);

impl DhGroup {
    /// 1024-bit MODP group (RFC 2409 group 2).
    pub const MODP_1024: DhGroup = DhGroup(2);
    /// 1536-bit MODP group (RFC 3526).
    pub const MODP_1536: DhGroup = DhGroup(5);
    /// 2048-bit MODP group (RFC 3526).
    pub const MODP_2048: DhGroup = DhGroup(14);
    /// 3072-bit MODP group (RFC 3526).
    pub const MODP_3072: DhGroup = DhGroup(15);
    /// 4096-bit MODP group (RFC 3526).
    pub const MODP_4096: DhGroup = DhGroup(16);
    /// 6144-bit MODP group (RFC 3526).
    pub const MODP_6144: DhGroup = DhGroup(17);
    /// 8192-bit MODP group (RFC 3526).
    pub const MODP_8192: DhGroup = DhGroup(18);
    /// 256-bit random ECP group, NIST P-256 (RFC 5903).
    pub const ECP_256: DhGroup = DhGroup(19);
    /// 384-bit random ECP group, NIST P-384 (RFC 5903).
    pub const ECP_384: DhGroup = DhGroup(20);
    /// 521-bit random ECP group, NIST P-521 (RFC 5903).
    pub const ECP_521: DhGroup = DhGroup(21);
    /// 1024-bit MODP group with 160-bit prime order subgroup (RFC 5114).
    pub const MODP_1024_160: DhGroup = DhGroup(22);
    /// 2048-bit MODP group with 224-bit prime order subgroup (RFC 5114).
    pub const MODP_2048_224: DhGroup = DhGroup(23);
    /// 2048-bit MODP group with 256-bit prime order subgroup (RFC 5114).
    pub const MODP_2048_256: DhGroup = DhGroup(24);
    /// Curve25519 (RFC 8031).
    pub const CURVE25519: DhGroup = DhGroup(31);

    /// Every group this module implements, in IANA order.
    pub const SUPPORTED: [DhGroup; 14] = [
        DhGroup::MODP_1024,
        DhGroup::MODP_1536,
        DhGroup::MODP_2048,
        DhGroup::MODP_3072,
        DhGroup::MODP_4096,
        DhGroup::MODP_6144,
        DhGroup::MODP_8192,
        DhGroup::ECP_256,
        DhGroup::ECP_384,
        DhGroup::ECP_521,
        DhGroup::MODP_1024_160,
        DhGroup::MODP_2048_224,
        DhGroup::MODP_2048_256,
        DhGroup::CURVE25519,
    ];

    /// Whether [`KeyExchange::generate`] accepts this group.
    pub fn is_supported(&self) -> bool {
        self.public_len().is_some()
    }

    /// Length in bytes of the KE payload data (and of the shared secret for
    /// MODP groups), or `None` for an unsupported group.
    pub fn public_len(&self) -> Option<usize> {
        Some(match *self {
            DhGroup::MODP_1024 | DhGroup::MODP_1024_160 => 128,
            DhGroup::MODP_1536 => 192,
            DhGroup::MODP_2048 | DhGroup::MODP_2048_224 | DhGroup::MODP_2048_256 => 256,
            DhGroup::MODP_3072 => 384,
            DhGroup::MODP_4096 => 512,
            DhGroup::MODP_6144 => 768,
            DhGroup::MODP_8192 => 1024,
            DhGroup::ECP_256 => 64,
            DhGroup::ECP_384 => 96,
            DhGroup::ECP_521 => 132,
            DhGroup::CURVE25519 => 32,
            _ => return None,
        })
    }

    /// Length in bytes of the shared secret `g^ir`, or `None` if unsupported.
    pub fn shared_len(&self) -> Option<usize> {
        match *self {
            DhGroup::ECP_256 | DhGroup::ECP_384 | DhGroup::ECP_521 => {
                self.public_len().map(|l| l / 2)
            }
            _ => self.public_len(),
        }
    }

    fn modp(&self) -> Option<&'static ModpGroup> {
        static GROUPS: OnceLock<Vec<(u16, ModpGroup)>> = OnceLock::new();
        let groups = GROUPS.get_or_init(|| {
            let safe =
                |id: u16, p: &str, exp_bits: usize| (id, ModpGroup::new(p, "02", None, exp_bits));
            let sub = |id: u16, p: &str, g: &str, q: &str| {
                let q_bits = parse_hex(q).bits() as usize;
                (id, ModpGroup::new(p, g, Some(q), q_bits))
            };
            vec![
                safe(2, params::MODP_1024_P, 256),
                safe(5, params::MODP_1536_P, 256),
                safe(14, params::MODP_2048_P, 256),
                safe(15, params::MODP_3072_P, 256),
                safe(16, params::MODP_4096_P, 320),
                safe(17, params::MODP_6144_P, 384),
                safe(18, params::MODP_8192_P, 512),
                sub(
                    22,
                    params::MODP_1024_160_P,
                    params::MODP_1024_160_G,
                    params::MODP_1024_160_Q,
                ),
                sub(
                    23,
                    params::MODP_2048_224_P,
                    params::MODP_2048_224_G,
                    params::MODP_2048_224_Q,
                ),
                sub(
                    24,
                    params::MODP_2048_256_P,
                    params::MODP_2048_256_G,
                    params::MODP_2048_256_Q,
                ),
            ]
        });
        groups.iter().find(|(id, _)| *id == self.0).map(|(_, g)| g)
    }
}

impl fmt::Debug for DhGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match *self {
            DhGroup::MODP_1024 => "MODP_1024",
            DhGroup::MODP_1536 => "MODP_1536",
            DhGroup::MODP_2048 => "MODP_2048",
            DhGroup::MODP_3072 => "MODP_3072",
            DhGroup::MODP_4096 => "MODP_4096",
            DhGroup::MODP_6144 => "MODP_6144",
            DhGroup::MODP_8192 => "MODP_8192",
            DhGroup::ECP_256 => "ECP_256",
            DhGroup::ECP_384 => "ECP_384",
            DhGroup::ECP_521 => "ECP_521",
            DhGroup::MODP_1024_160 => "MODP_1024_160",
            DhGroup::MODP_2048_224 => "MODP_2048_224",
            DhGroup::MODP_2048_256 => "MODP_2048_256",
            DhGroup::CURVE25519 => "CURVE25519",
            DhGroup(n) => return write!(f, "DhGroup({n})"),
        };
        f.write_str(name)
    }
}

/// Why a key exchange could not be set up or completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DhError {
    /// The group is not implemented.
    UnsupportedGroup(DhGroup),
    /// The peer's KE data does not have the group's length.
    BadPublicLength {
        /// Length the group requires.
        expected: usize,
        /// Length received.
        got: usize,
    },
    /// MODP: the peer value is not in `2..=p-2` (RFC 6989 §2.1).
    PublicOutOfRange,
    /// MODP RFC 5114 groups: the peer value is not in the order-q subgroup
    /// (RFC 6989 §2.2).
    PublicNotInSubgroup,
    /// ECP: the peer point is not on the curve or is the identity
    /// (RFC 6989 §2.3).
    PublicNotOnCurve,
    /// Curve25519: the shared secret is all zero, the peer sent a low-order
    /// point (RFC 8031 §2.3).
    LowOrderPublic,
    /// A private key given to [`KeyExchange::from_private`] is invalid for
    /// the group (wrong length, zero, or out of range).
    InvalidPrivateKey,
    /// The operating system random number generator failed.
    Rng,
}

impl fmt::Display for DhError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DhError::UnsupportedGroup(g) => write!(f, "unsupported DH group {g:?}"),
            DhError::BadPublicLength { expected, got } => {
                write!(f, "KE data is {got} bytes, group needs {expected}")
            }
            DhError::PublicOutOfRange => f.write_str("peer MODP public value out of range"),
            DhError::PublicNotInSubgroup => {
                f.write_str("peer MODP public value not in the prime-order subgroup")
            }
            DhError::PublicNotOnCurve => f.write_str("peer ECP public point invalid"),
            DhError::LowOrderPublic => f.write_str("peer Curve25519 public value has low order"),
            DhError::InvalidPrivateKey => f.write_str("invalid private key for the group"),
            DhError::Rng => f.write_str("random number generator failed"),
        }
    }
}

impl std::error::Error for DhError {}

/// The DH shared secret `g^ir` (zeroized on drop, redacted in Debug).
#[derive(Clone)]
pub struct SharedSecret(Zeroizing<Vec<u8>>);

impl SharedSecret {
    /// The secret bytes, in the encoding RFC 7296 feeds to the PRF.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for SharedSecret {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SharedSecret({} bytes, redacted)", self.0.len())
    }
}

struct ModpGroup {
    p: BigUint,
    g: BigUint,
    /// Subgroup order for the RFC 5114 groups.
    q: Option<BigUint>,
    p_minus_1: BigUint,
    len: usize,
    /// Bits of the random private exponent.
    exp_bits: usize,
}

fn parse_hex(s: &str) -> BigUint {
    // The parameter tables are compile-time constants checked by tests.
    BigUint::parse_bytes(s.as_bytes(), 16).unwrap_or_default()
}

impl ModpGroup {
    fn new(p: &str, g: &str, q: Option<&str>, exp_bits: usize) -> ModpGroup {
        let p = parse_hex(p);
        let len = (p.bits() as usize).div_ceil(8);
        ModpGroup {
            p_minus_1: &p - 1u32,
            g: parse_hex(g),
            q: q.map(parse_hex),
            len,
            exp_bits,
            p,
        }
    }

    fn pad(&self, v: &BigUint) -> Vec<u8> {
        let bytes = v.to_bytes_be();
        let mut out = vec![0u8; self.len];
        out[self.len - bytes.len()..].copy_from_slice(&bytes);
        bytes_zeroize(bytes);
        out
    }

    /// A uniformly random exponent: in `1..q` for subgroup groups, else
    /// `exp_bits` random bits with the top bit set.
    fn random_exponent(&self, rng: &mut dyn CryptoRngCore) -> Result<Zeroizing<Vec<u8>>, DhError> {
        let nbytes = self.exp_bits.div_ceil(8);
        let mut buf = Zeroizing::new(vec![0u8; nbytes]);
        loop {
            rng.try_fill_bytes(&mut buf).map_err(|_| DhError::Rng)?;
            let extra = nbytes * 8 - self.exp_bits;
            buf[0] &= 0xff >> extra;
            match &self.q {
                Some(q) => {
                    let x = BigUint::from_bytes_be(&buf);
                    if x > BigUint::one() && &x < q {
                        return Ok(buf);
                    }
                }
                None => {
                    buf[0] |= 0x80 >> extra;
                    return Ok(buf);
                }
            }
        }
    }

    fn check_peer(&self, y: &BigUint) -> Result<(), DhError> {
        if *y <= BigUint::one() || *y >= self.p_minus_1 {
            return Err(DhError::PublicOutOfRange);
        }
        if let Some(q) = &self.q {
            if !y.modpow(q, &self.p).is_one() {
                return Err(DhError::PublicNotInSubgroup);
            }
        }
        Ok(())
    }
}

fn bytes_zeroize(mut v: Vec<u8>) {
    v.zeroize();
}

enum Private {
    Modp(Zeroizing<Vec<u8>>),
    P256(::p256::SecretKey),
    P384(::p384::SecretKey),
    P521(::p521::SecretKey),
    X25519(x25519_dalek::StaticSecret),
}

/// One side of a key exchange: a private key and its KE payload data.
///
/// The private key is zeroized on drop and never shown by Debug.
pub struct KeyExchange {
    group: DhGroup,
    private: Private,
    public: Vec<u8>,
}

impl fmt::Debug for KeyExchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyExchange")
            .field("group", &self.group)
            .field("private", &"<redacted>")
            .field("public_len", &self.public.len())
            .finish()
    }
}

/// Encodes an uncompressed SEC1 point `04 | x | y` as the RFC 5903 KE data.
fn strip_sec1(encoded: &[u8]) -> Vec<u8> {
    encoded.get(1..).unwrap_or_default().to_vec()
}

fn sec1_from_ke(peer: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(peer.len() + 1);
    v.push(0x04);
    v.extend_from_slice(peer);
    v
}

macro_rules! ecp_impl {
    ($m:ident, $curve:ident, $variant:ident) => {
        mod $m {
            use super::*;
            use ::$curve::elliptic_curve::sec1::ToEncodedPoint;

            pub(super) fn generate(
                mut rng: &mut dyn CryptoRngCore,
            ) -> Result<(Private, Vec<u8>), DhError> {
                let sk = ::$curve::SecretKey::random(&mut rng);
                Ok(from_secret(sk))
            }

            pub(super) fn from_bytes(b: &[u8]) -> Result<(Private, Vec<u8>), DhError> {
                let sk =
                    ::$curve::SecretKey::from_slice(b).map_err(|_| DhError::InvalidPrivateKey)?;
                Ok(from_secret(sk))
            }

            fn from_secret(sk: ::$curve::SecretKey) -> (Private, Vec<u8>) {
                let public = strip_sec1(sk.public_key().to_encoded_point(false).as_bytes());
                (Private::$variant(sk), public)
            }

            pub(super) fn agree(
                sk: &::$curve::SecretKey,
                peer: &[u8],
            ) -> Result<Zeroizing<Vec<u8>>, DhError> {
                let point = ::$curve::PublicKey::from_sec1_bytes(&sec1_from_ke(peer))
                    .map_err(|_| DhError::PublicNotOnCurve)?;
                let shared =
                    ::$curve::ecdh::diffie_hellman(sk.to_nonzero_scalar(), point.as_affine());
                Ok(Zeroizing::new(shared.raw_secret_bytes().to_vec()))
            }
        }
    };
}

ecp_impl!(ecp256, p256, P256);
ecp_impl!(ecp384, p384, P384);
ecp_impl!(ecp521, p521, P521);

impl KeyExchange {
    /// Generates a fresh private key for `group` from the OS RNG.
    pub fn generate(group: DhGroup) -> Result<KeyExchange, DhError> {
        KeyExchange::generate_with(group, &mut rand_core::OsRng)
    }

    /// Generates a fresh private key for `group` from `rng` (a seeded RNG
    /// makes it reproducible in tests).
    pub fn generate_with(
        group: DhGroup,
        rng: &mut dyn CryptoRngCore,
    ) -> Result<KeyExchange, DhError> {
        let (private, public) = match group {
            DhGroup::ECP_256 => ecp256::generate(rng)?,
            DhGroup::ECP_384 => ecp384::generate(rng)?,
            DhGroup::ECP_521 => ecp521::generate(rng)?,
            DhGroup::CURVE25519 => {
                let mut k = Zeroizing::new([0u8; 32]);
                rng.try_fill_bytes(&mut k[..]).map_err(|_| DhError::Rng)?;
                return KeyExchange::from_private(group, &k[..]);
            }
            _ => {
                let m = group.modp().ok_or(DhError::UnsupportedGroup(group))?;
                let x = m.random_exponent(rng)?;
                return KeyExchange::from_private(group, &x);
            }
        };
        Ok(KeyExchange {
            group,
            private,
            public,
        })
    }

    /// Builds a key exchange from a known private key (for known-answer
    /// tests): the big-endian exponent for MODP, the big-endian scalar for
    /// ECP (field length), the 32-byte scalar for Curve25519 (RFC 7748).
    pub fn from_private(group: DhGroup, private: &[u8]) -> Result<KeyExchange, DhError> {
        let (private, public) = match group {
            DhGroup::ECP_256 => ecp256::from_bytes(private)?,
            DhGroup::ECP_384 => ecp384::from_bytes(private)?,
            DhGroup::ECP_521 => ecp521::from_bytes(private)?,
            DhGroup::CURVE25519 => {
                let k: [u8; 32] = private.try_into().map_err(|_| DhError::InvalidPrivateKey)?;
                let sk = x25519_dalek::StaticSecret::from(k);
                let public = x25519_dalek::PublicKey::from(&sk).as_bytes().to_vec();
                (Private::X25519(sk), public)
            }
            _ => {
                let m = group.modp().ok_or(DhError::UnsupportedGroup(group))?;
                let x = BigUint::from_bytes_be(private);
                if x <= BigUint::one() || x >= m.p_minus_1 {
                    return Err(DhError::InvalidPrivateKey);
                }
                let y = m.g.modpow(&x, &m.p);
                (Private::Modp(Zeroizing::new(private.to_vec())), m.pad(&y))
            }
        };
        Ok(KeyExchange {
            group,
            private,
            public,
        })
    }

    /// The group of this exchange.
    pub fn group(&self) -> DhGroup {
        self.group
    }

    /// The KE payload data to send to the peer.
    pub fn public_value(&self) -> &[u8] {
        &self.public
    }

    /// Checks the peer's KE data and computes the shared secret `g^ir`.
    pub fn agree(&self, peer_public: &[u8]) -> Result<SharedSecret, DhError> {
        let expected = self.public.len();
        if peer_public.len() != expected {
            return Err(DhError::BadPublicLength {
                expected,
                got: peer_public.len(),
            });
        }
        let secret = match &self.private {
            Private::P256(sk) => ecp256::agree(sk, peer_public)?,
            Private::P384(sk) => ecp384::agree(sk, peer_public)?,
            Private::P521(sk) => ecp521::agree(sk, peer_public)?,
            Private::X25519(sk) => {
                let mut u = [0u8; 32];
                u.copy_from_slice(peer_public);
                let shared = sk.diffie_hellman(&x25519_dalek::PublicKey::from(u));
                if bool::from(shared.as_bytes().ct_eq(&[0u8; 32])) {
                    return Err(DhError::LowOrderPublic);
                }
                Zeroizing::new(shared.as_bytes().to_vec())
            }
            Private::Modp(x) => {
                let m = self
                    .group
                    .modp()
                    .ok_or(DhError::UnsupportedGroup(self.group))?;
                let y = BigUint::from_bytes_be(peer_public);
                m.check_peer(&y)?;
                let x = BigUint::from_bytes_be(x);
                let z = y.modpow(&x, &m.p);
                Zeroizing::new(m.pad(&z))
            }
        };
        Ok(SharedSecret(secret))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modp_parameters_are_consistent() {
        for g in DhGroup::SUPPORTED {
            let Some(m) = g.modp() else { continue };
            assert_eq!(m.len, g.public_len().unwrap(), "{g:?}");
            assert_eq!(m.p.bits() as usize, m.len * 8, "{g:?}");
            assert!(m.p.bit(0), "{g:?} p odd");
            if let Some(q) = &m.q {
                assert!(m.g.modpow(q, &m.p).is_one(), "{g:?} g^q = 1");
            } else if m.len <= 256 {
                // Safe prime p = 2q+1 with g = 2 a quadratic residue: g^q = 1.
                let q = &m.p_minus_1 >> 1;
                assert!(m.g.modpow(&q, &m.p).is_one(), "{g:?} 2^q = 1");
            }
        }
    }

    #[test]
    fn unsupported_group() {
        assert!(!DhGroup(1).is_supported());
        assert_eq!(
            KeyExchange::generate(DhGroup(1)).unwrap_err(),
            DhError::UnsupportedGroup(DhGroup(1))
        );
        assert_eq!(DhGroup::ECP_521.shared_len(), Some(66));
    }

    #[test]
    fn modp_rejects_out_of_range_peer() {
        let a = KeyExchange::generate(DhGroup::MODP_1024).unwrap();
        let p = &a.group.modp().unwrap().p;
        for bad in [
            BigUint::from(0u32),
            BigUint::one(),
            p - 1u32,
            p.clone(),
            p + 1u32,
        ] {
            let mut enc = vec![0u8; 128];
            let b = bad.to_bytes_be();
            if b.len() > 128 {
                // p + 1 still fits in 128 bytes for this prime.
                continue;
            }
            enc[128 - b.len()..].copy_from_slice(&b);
            assert_eq!(a.agree(&enc).unwrap_err(), DhError::PublicOutOfRange);
        }
        assert!(matches!(
            a.agree(&[1u8; 127]),
            Err(DhError::BadPublicLength { .. })
        ));
    }

    #[test]
    fn modp_subgroup_check() {
        let a = KeyExchange::generate(DhGroup::MODP_1024_160).unwrap();
        // 2 is in range but (overwhelmingly likely) not in the q-subgroup.
        let mut enc = vec![0u8; 128];
        enc[127] = 2;
        assert_eq!(a.agree(&enc).unwrap_err(), DhError::PublicNotInSubgroup);
    }

    #[test]
    fn ecp_rejects_bad_points() {
        for g in [DhGroup::ECP_256, DhGroup::ECP_384, DhGroup::ECP_521] {
            let a = KeyExchange::generate(g).unwrap();
            let b = KeyExchange::generate(g).unwrap();
            let mut bad = b.public_value().to_vec();
            let last = bad.len() - 1;
            bad[last] ^= 1;
            assert_eq!(
                a.agree(&bad).unwrap_err(),
                DhError::PublicNotOnCurve,
                "{g:?}"
            );
            let zero = vec![0u8; bad.len()];
            assert_eq!(
                a.agree(&zero).unwrap_err(),
                DhError::PublicNotOnCurve,
                "{g:?}"
            );
        }
    }

    #[test]
    fn x25519_rejects_low_order() {
        let a = KeyExchange::generate(DhGroup::CURVE25519).unwrap();
        // u = 0 and u = 1 are low-order points (RFC 7748 §6.1).
        assert_eq!(a.agree(&[0u8; 32]).unwrap_err(), DhError::LowOrderPublic);
        let mut one = [0u8; 32];
        one[0] = 1;
        assert_eq!(a.agree(&one).unwrap_err(), DhError::LowOrderPublic);
    }

    #[test]
    fn debug_is_redacted() {
        let a = KeyExchange::from_private(DhGroup::CURVE25519, &[0x42; 32]).unwrap();
        let s = format!("{a:?}");
        assert!(!s.contains("42, 42") && !s.contains("4242"), "{s}");
        let b = KeyExchange::generate(DhGroup::CURVE25519).unwrap();
        let z = a.agree(b.public_value()).unwrap();
        assert!(format!("{z:?}").contains("redacted"));
    }
}
