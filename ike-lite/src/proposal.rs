//! Algorithm proposals as written in Libreswan and strongSwan configs, and
//! their selection against SA payloads (RFC 7296 §2.7, §3.3).
//!
//! Syntax accepted by [`parse_ike_proposals`] / [`parse_esp_proposals`]:
//! a comma-separated list of proposals; each proposal is a `-` separated list
//! of algorithm tokens (strongSwan, several per class allowed:
//! `aes128-aes256-sha1-sha256-modp2048-modp1024`), optionally with the DH
//! part after a `;` (Libreswan: `aes128-sha1;modp1024`). An optional
//! `ike=`/`esp=` prefix and a trailing `!` are ignored.

use crate::crypto::{DhGroup, PrfId};
use crate::message::{Proposal, ProtocolId, Transform, TransformType};
use core::fmt;
use ipsec_core::crypto::{EncrId, IntegId, Suite};

/// An encryption algorithm with its key length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EncrAlg {
    /// Transform ID.
    pub id: EncrId,
    /// Key length in bits (0 for ENCR_NULL).
    pub key_bits: u16,
}

impl EncrAlg {
    /// AES-GCM with a 16-byte ICV.
    pub const fn aes_gcm16(key_bits: u16) -> Self {
        EncrAlg {
            id: EncrId::AES_GCM_16,
            key_bits,
        }
    }
    /// AES-CBC.
    pub const fn aes_cbc(key_bits: u16) -> Self {
        EncrAlg {
            id: EncrId::AES_CBC,
            key_bits,
        }
    }
    /// Whether this is a combined-mode (AEAD) cipher.
    pub fn is_aead(self) -> bool {
        self.id == EncrId::AES_GCM_16
    }
    fn transform(self) -> Transform {
        if self.id == EncrId::NULL {
            Transform::new(TransformType::ENCR, self.id.0)
        } else {
            Transform::with_key_len(TransformType::ENCR, self.id.0, self.key_bits)
        }
    }
}

/// One IKE SA proposal: every listed algorithm is acceptable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IkeProposal {
    /// Encryption algorithms.
    pub encr: Vec<EncrAlg>,
    /// Integrity algorithms (empty with AEAD).
    pub integ: Vec<IntegId>,
    /// PRFs.
    pub prf: Vec<PrfId>,
    /// Diffie-Hellman groups (the first is used for the initial KE).
    pub dh: Vec<DhGroup>,
}

/// One ESP proposal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EspProposal {
    /// Encryption algorithms.
    pub encr: Vec<EncrAlg>,
    /// Integrity algorithms (empty with AEAD).
    pub integ: Vec<IntegId>,
    /// DH groups for PFS (empty: no PFS).
    pub dh: Vec<DhGroup>,
    /// Acceptable ESN settings, in preference order.
    pub esn: Vec<bool>,
}

/// The algorithms chosen for an IKE SA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IkeChoice {
    /// SK payload suite (encryption + integrity).
    pub suite: Suite,
    /// PRF.
    pub prf: PrfId,
    /// DH group.
    pub dh: DhGroup,
}

impl IkeChoice {
    /// strongSwan-style proposal name of the negotiated algorithms, e.g.
    /// `aes128gcm16-prfsha256-modp2048` or `aes128-sha1-modp1024`. The PRF
    /// is omitted when it is the one that belongs to the integrity
    /// algorithm (as strongSwan infers it), so for every group that
    /// [`parse_ike_proposals`] knows the name parses back to a proposal
    /// holding exactly this choice.
    pub fn name(&self) -> String {
        let mut s = String::from(self.suite.name());
        let implied = match self.suite.integ {
            IntegId::HMAC_SHA1_96 => Some(PrfId::HMAC_SHA1),
            IntegId::HMAC_SHA2_256_128 => Some(PrfId::HMAC_SHA2_256),
            IntegId::HMAC_SHA2_384_192 => Some(PrfId::HMAC_SHA2_384),
            IntegId::HMAC_SHA2_512_256 => Some(PrfId::HMAC_SHA2_512),
            _ => None,
        };
        if implied != Some(self.prf) {
            s.push('-');
            s.push_str(&prf_name(self.prf));
        }
        s.push('-');
        s.push_str(&dh_name(self.dh));
        s
    }
}

impl fmt::Display for IkeChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// `prfsha256` etc. (strongSwan keywords).
fn prf_name(p: PrfId) -> String {
    match p {
        PrfId::HMAC_SHA1 => "prfsha1".into(),
        PrfId::HMAC_SHA2_256 => "prfsha256".into(),
        PrfId::HMAC_SHA2_384 => "prfsha384".into(),
        PrfId::HMAC_SHA2_512 => "prfsha512".into(),
        PrfId(n) => format!("prf{n}"),
    }
}

/// `modp2048`, `ecp256`, `curve25519` etc. (strongSwan keywords).
fn dh_name(g: DhGroup) -> String {
    let name = match g.0 {
        2 => "modp1024",
        5 => "modp1536",
        14 => "modp2048",
        15 => "modp3072",
        16 => "modp4096",
        17 => "modp6144",
        18 => "modp8192",
        19 => "ecp256",
        20 => "ecp384",
        21 => "ecp521",
        22 => "modp1024s160",
        23 => "modp2048s224",
        24 => "modp2048s256",
        31 => "curve25519",
        n => return format!("dh{n}"),
    };
    name.into()
}

/// The algorithms chosen for a Child SA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EspChoice {
    /// ESP suite.
    pub suite: Suite,
    /// PFS group, if any.
    pub dh: Option<DhGroup>,
    /// Extended sequence numbers.
    pub esn: bool,
}

/// Why a proposal string was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProposalError {
    /// The string holds no proposal (or an empty one between commas).
    Empty,
    /// A token names no known algorithm.
    UnknownToken(String),
    /// A known algorithm that this implementation does not support.
    Unsupported(String),
    /// The token's class is not allowed here (e.g. `esn` in an IKE proposal).
    Misplaced(String),
    /// A proposal mixes AEAD and non-AEAD ciphers.
    MixedAead(String),
    /// A non-AEAD proposal without an integrity algorithm.
    MissingIntegrity(String),
    /// A proposal without an encryption algorithm.
    MissingEncryption(String),
}

impl fmt::Display for ProposalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProposalError::Empty => f.write_str("empty proposal"),
            ProposalError::UnknownToken(t) => write!(f, "unknown algorithm {t:?}"),
            ProposalError::Unsupported(t) => write!(f, "unsupported algorithm {t:?}"),
            ProposalError::Misplaced(t) => write!(f, "algorithm {t:?} not allowed here"),
            ProposalError::MixedAead(p) => write!(f, "proposal {p:?} mixes AEAD and non-AEAD"),
            ProposalError::MissingIntegrity(p) => write!(f, "proposal {p:?} lacks integrity"),
            ProposalError::MissingEncryption(p) => write!(f, "proposal {p:?} lacks encryption"),
        }
    }
}

impl std::error::Error for ProposalError {}

enum Token {
    Encr(EncrAlg),
    /// Integrity with its matching PRF.
    Integ(IntegId, PrfId),
    Prf(PrfId),
    Dh(DhGroup),
    Esn(bool),
    NoDh,
}

fn hash_token(s: &str) -> Option<(IntegId, PrfId)> {
    Some(match s {
        "sha1" | "sha" | "sha1_96" => (IntegId::HMAC_SHA1_96, PrfId::HMAC_SHA1),
        "sha2" | "sha256" | "sha2_256" | "sha256_128" | "sha2_256_128" => {
            (IntegId::HMAC_SHA2_256_128, PrfId::HMAC_SHA2_256)
        }
        "sha384" | "sha2_384" | "sha384_192" | "sha2_384_192" => {
            (IntegId::HMAC_SHA2_384_192, PrfId::HMAC_SHA2_384)
        }
        "sha512" | "sha2_512" | "sha512_256" | "sha2_512_256" => {
            (IntegId::HMAC_SHA2_512_256, PrfId::HMAC_SHA2_512)
        }
        _ => return None,
    })
}

fn aes_bits(s: &str, tok: &str) -> Result<u16, ProposalError> {
    match s {
        "" | "128" => Ok(128),
        "256" => Ok(256),
        "192" => Err(ProposalError::Unsupported(tok.to_string())),
        _ => Err(ProposalError::UnknownToken(tok.to_string())),
    }
}

fn parse_token(tok: &str) -> Result<Token, ProposalError> {
    let unknown = || ProposalError::UnknownToken(tok.to_string());
    let t = tok.to_ascii_lowercase();
    let t = t.as_str();
    if let Some((i, p)) = hash_token(t) {
        return Ok(Token::Integ(i, p));
    }
    if let Some(rest) = t.strip_prefix("prf") {
        let rest = rest.strip_prefix('-').unwrap_or(rest);
        let rest = rest.strip_prefix("hmac_").unwrap_or(rest);
        return hash_token(rest)
            .map(|(_, p)| Token::Prf(p))
            .ok_or_else(unknown);
    }
    let dh = |n: u16| Ok(Token::Dh(DhGroup(n)));
    match t {
        "modp1024" | "dh2" => return dh(2),
        "modp1536" | "dh5" => return dh(5),
        "modp2048" | "dh14" => return dh(14),
        "modp3072" | "dh15" => return dh(15),
        "modp4096" | "dh16" => return dh(16),
        "modp6144" | "dh17" => return dh(17),
        "modp8192" | "dh18" => return dh(18),
        "ecp256" | "dh19" => return dh(19),
        "ecp384" | "dh20" => return dh(20),
        "ecp521" | "dh21" => return dh(21),
        "x25519" | "curve25519" | "dh31" => return dh(31),
        "modp768" | "dh1" | "x448" | "curve448" | "ecp192" | "ecp224" => {
            return Err(ProposalError::Unsupported(tok.to_string()))
        }
        "esn" => return Ok(Token::Esn(true)),
        "noesn" => return Ok(Token::Esn(false)),
        "none" => return Ok(Token::NoDh),
        "null" | "null_enc" => {
            return Ok(Token::Encr(EncrAlg {
                id: EncrId::NULL,
                key_bits: 0,
            }))
        }
        _ => {}
    }
    // AES-GCM: aes128gcm16, aes256gcm, aes_gcm16_256, aes_gcm_256, aes_gcm256, aes_gcm
    if let Some(rest) = t.strip_prefix("aes_gcm") {
        let rest = rest.strip_prefix("16").or(Some(rest)).unwrap_or(rest);
        if rest.starts_with("8") || rest.starts_with("12") && !rest.starts_with("128") {
            return Err(ProposalError::Unsupported(tok.to_string()));
        }
        let bits = rest.strip_prefix('_').unwrap_or(rest);
        let bits = if bits.is_empty() {
            Ok(256)
        } else {
            aes_bits(bits, tok)
        }?;
        return Ok(Token::Encr(EncrAlg::aes_gcm16(bits)));
    }
    if let Some(rest) = t.strip_prefix("aes") {
        if let Some(pos) = rest.find("gcm") {
            let bits = aes_bits(&rest[..pos], tok)?;
            return match &rest[pos + 3..] {
                "" | "16" | "128" => Ok(Token::Encr(EncrAlg::aes_gcm16(bits))),
                "8" | "12" | "64" | "96" => Err(ProposalError::Unsupported(tok.to_string())),
                _ => Err(unknown()),
            };
        }
        if rest.starts_with("ctr")
            || rest.starts_with("ccm")
            || rest.contains("ctr")
            || rest.contains("ccm")
        {
            return Err(ProposalError::Unsupported(tok.to_string()));
        }
        let rest = rest
            .strip_prefix("_cbc")
            .or_else(|| rest.strip_prefix("cbc"))
            .unwrap_or(rest);
        let rest = rest.strip_prefix('_').unwrap_or(rest);
        return Ok(Token::Encr(EncrAlg::aes_cbc(aes_bits(rest, tok)?)));
    }
    match t {
        "3des" | "des" | "blowfish" | "cast128" | "camellia" | "chacha20poly1305" | "md5"
        | "aesxcbc" | "aes_xcbc" | "aescmac" => Err(ProposalError::Unsupported(tok.to_string())),
        _ => Err(unknown()),
    }
}

struct Parsed {
    encr: Vec<EncrAlg>,
    integ: Vec<(IntegId, PrfId)>,
    prf: Vec<PrfId>,
    dh: Vec<DhGroup>,
    esn: Vec<bool>,
    no_dh: bool,
}

fn push_unique<T: PartialEq>(v: &mut Vec<T>, x: T) {
    if !v.contains(&x) {
        v.push(x);
    }
}

fn parse_one(p: &str) -> Result<Parsed, ProposalError> {
    let mut out = Parsed {
        encr: vec![],
        integ: vec![],
        prf: vec![],
        dh: vec![],
        esn: vec![],
        no_dh: false,
    };
    let p = p.trim().trim_end_matches('!');
    if p.is_empty() {
        return Err(ProposalError::Empty);
    }
    for tok in p.split(['-', ';', '+']).map(str::trim) {
        if tok.is_empty() {
            return Err(ProposalError::UnknownToken(String::new()));
        }
        match parse_token(tok)? {
            Token::Encr(e) => push_unique(&mut out.encr, e),
            Token::Integ(i, prf) => push_unique(&mut out.integ, (i, prf)),
            Token::Prf(prf) => push_unique(&mut out.prf, prf),
            Token::Dh(g) => push_unique(&mut out.dh, g),
            Token::Esn(e) => push_unique(&mut out.esn, e),
            Token::NoDh => out.no_dh = true,
        }
    }
    if out.encr.is_empty() {
        return Err(ProposalError::MissingEncryption(p.to_string()));
    }
    let aead = out.encr[0].is_aead();
    if out.encr.iter().any(|e| e.is_aead() != aead) {
        return Err(ProposalError::MixedAead(p.to_string()));
    }
    Ok(out)
}

fn strip_prefix<'a>(s: &'a str, prefix: &str) -> &'a str {
    let s = s.trim();
    s.strip_prefix(prefix).unwrap_or(s)
}

/// Default IKE groups: ECP-256, ECP-384, MODP-2048, Curve25519.
const DEFAULT_DH: [DhGroup; 4] = [DhGroup(19), DhGroup(20), DhGroup(14), DhGroup(31)];

/// Parses an `ike=` proposal list.
///
/// With AEAD ciphers a hash token names the PRF (Libreswan style); without
/// a PRF token the PRFs follow the integrity algorithms (strongSwan). A
/// missing DH part gets the strong default groups.
pub fn parse_ike_proposals(s: &str) -> Result<Vec<IkeProposal>, ProposalError> {
    let s = strip_prefix(s, "ike=");
    if s.trim().is_empty() {
        return Err(ProposalError::Empty);
    }
    s.split(',')
        .map(|p| {
            let x = parse_one(p)?;
            if let Some(e) = x.esn.first() {
                return Err(ProposalError::Misplaced(
                    if *e { "esn" } else { "noesn" }.into(),
                ));
            }
            if x.no_dh {
                return Err(ProposalError::Misplaced("none".into()));
            }
            let aead = x.encr[0].is_aead();
            let mut prf = x.prf;
            let integ = if aead {
                for (_, p) in &x.integ {
                    push_unique(&mut prf, *p);
                }
                if prf.is_empty() {
                    prf = vec![
                        PrfId::HMAC_SHA2_256,
                        PrfId::HMAC_SHA2_384,
                        PrfId::HMAC_SHA2_512,
                    ];
                }
                Vec::new()
            } else {
                if x.integ.is_empty() {
                    return Err(ProposalError::MissingIntegrity(p.trim().to_string()));
                }
                if prf.is_empty() {
                    for (_, p) in &x.integ {
                        push_unique(&mut prf, *p);
                    }
                }
                x.integ.iter().map(|(i, _)| *i).collect()
            };
            let dh = if x.dh.is_empty() {
                DEFAULT_DH.to_vec()
            } else {
                x.dh
            };
            Ok(IkeProposal {
                encr: x.encr,
                integ,
                prf,
                dh,
            })
        })
        .collect()
}

/// Parses an `esp=` proposal list. A DH group enables PFS for rekeys.
pub fn parse_esp_proposals(s: &str) -> Result<Vec<EspProposal>, ProposalError> {
    let s = strip_prefix(s, "esp=");
    if s.trim().is_empty() {
        return Err(ProposalError::Empty);
    }
    s.split(',')
        .map(|p| {
            let x = parse_one(p)?;
            if let Some(prf) = x.prf.first() {
                return Err(ProposalError::Misplaced(format!("prf {prf:?}")));
            }
            let aead = x.encr[0].is_aead();
            if aead && !x.integ.is_empty() {
                return Err(ProposalError::MixedAead(p.trim().to_string()));
            }
            if !aead && x.integ.is_empty() && x.encr.iter().all(|e| e.id != EncrId::NULL) {
                return Err(ProposalError::MissingIntegrity(p.trim().to_string()));
            }
            let esn = if x.esn.is_empty() { vec![false] } else { x.esn };
            Ok(EspProposal {
                encr: x.encr,
                integ: x.integ.iter().map(|(i, _)| *i).collect(),
                dh: if x.no_dh { Vec::new() } else { x.dh },
                esn,
            })
        })
        .collect()
}

impl IkeProposal {
    /// The default IKE proposals: AES-GCM-16 256/128 with SHA-2 PRFs and
    /// groups ECP-256, ECP-384, MODP-2048, Curve25519; then AES-CBC with
    /// SHA-2 integrity. No MODP-1024 and no SHA-1.
    pub fn defaults() -> Vec<IkeProposal> {
        vec![
            IkeProposal {
                encr: vec![EncrAlg::aes_gcm16(256), EncrAlg::aes_gcm16(128)],
                integ: vec![],
                prf: vec![
                    PrfId::HMAC_SHA2_256,
                    PrfId::HMAC_SHA2_384,
                    PrfId::HMAC_SHA2_512,
                ],
                dh: DEFAULT_DH.to_vec(),
            },
            IkeProposal {
                encr: vec![EncrAlg::aes_cbc(256), EncrAlg::aes_cbc(128)],
                integ: vec![IntegId::HMAC_SHA2_256_128, IntegId::HMAC_SHA2_512_256],
                prf: vec![PrfId::HMAC_SHA2_256, PrfId::HMAC_SHA2_512],
                dh: DEFAULT_DH.to_vec(),
            },
        ]
    }

    /// The wire form with proposal number `num` and SPI `spi`.
    pub fn to_wire(&self, num: u8, spi: &[u8]) -> Proposal {
        let mut t: Vec<Transform> = self.encr.iter().map(|e| e.transform()).collect();
        t.extend(
            self.prf
                .iter()
                .map(|p| Transform::new(TransformType::PRF, p.0)),
        );
        t.extend(
            self.integ
                .iter()
                .map(|i| Transform::new(TransformType::INTEG, i.0)),
        );
        t.extend(
            self.dh
                .iter()
                .map(|g| Transform::new(TransformType::DH, g.0)),
        );
        Proposal {
            num,
            protocol: ProtocolId::IKE,
            spi: spi.to_vec(),
            transforms: t,
        }
    }

    /// The wire form of a single chosen set (for responses and rekeys).
    pub fn choice_to_wire(c: &IkeChoice, num: u8, spi: &[u8]) -> Proposal {
        IkeProposal {
            encr: vec![EncrAlg {
                id: c.suite.encr,
                key_bits: c.suite.encr_key_bits,
            }],
            integ: if c.suite.integ == IntegId::NONE {
                vec![]
            } else {
                vec![c.suite.integ]
            },
            prf: vec![c.prf],
            dh: vec![c.dh],
        }
        .to_wire(num, spi)
    }
}

impl EspProposal {
    /// The default ESP proposals: AES-GCM-16 256/128, then AES-CBC with SHA-2,
    /// no PFS, no ESN.
    pub fn defaults() -> Vec<EspProposal> {
        vec![
            EspProposal {
                encr: vec![EncrAlg::aes_gcm16(256), EncrAlg::aes_gcm16(128)],
                integ: vec![],
                dh: vec![],
                esn: vec![false],
            },
            EspProposal {
                encr: vec![EncrAlg::aes_cbc(256), EncrAlg::aes_cbc(128)],
                integ: vec![IntegId::HMAC_SHA2_256_128, IntegId::HMAC_SHA2_512_256],
                dh: vec![],
                esn: vec![false],
            },
        ]
    }

    /// The wire form. `with_dh` adds the DH transforms (CREATE_CHILD_SA with
    /// PFS); in IKE_AUTH no DH is sent (RFC 7296 §1.2).
    pub fn to_wire(&self, num: u8, spi: u32, with_dh: bool) -> Proposal {
        let mut t: Vec<Transform> = self.encr.iter().map(|e| e.transform()).collect();
        t.extend(
            self.integ
                .iter()
                .map(|i| Transform::new(TransformType::INTEG, i.0)),
        );
        if with_dh {
            t.extend(
                self.dh
                    .iter()
                    .map(|g| Transform::new(TransformType::DH, g.0)),
            );
        }
        t.extend(
            self.esn
                .iter()
                .map(|e| Transform::new(TransformType::ESN, u16::from(*e))),
        );
        Proposal {
            num,
            protocol: ProtocolId::ESP,
            spi: spi.to_be_bytes().to_vec(),
            transforms: t,
        }
    }

    /// The wire form of a single chosen set.
    pub fn choice_to_wire(c: &EspChoice, num: u8, spi: u32) -> Proposal {
        EspProposal {
            encr: vec![EncrAlg {
                id: c.suite.encr,
                key_bits: c.suite.encr_key_bits,
            }],
            integ: if c.suite.integ == IntegId::NONE {
                vec![]
            } else {
                vec![c.suite.integ]
            },
            dh: c.dh.into_iter().collect(),
            esn: vec![c.esn],
        }
        .to_wire(num, spi, true)
    }
}

/// Encryption transforms of `p` that match a configured algorithm.
fn pick_encr(p: &Proposal, ours: &[EncrAlg]) -> Option<EncrAlg> {
    p.of_type(TransformType::ENCR)
        .filter(|t| !t.unknown_attrs)
        .find_map(|t| {
            let bits = t.key_len.unwrap_or(0);
            ours.iter()
                .copied()
                .find(|e| e.id.0 == t.id && e.key_bits == bits)
        })
}

fn pick<T: Copy>(p: &Proposal, ty: TransformType, ours: &[T], id: impl Fn(T) -> u16) -> Option<T> {
    p.of_type(ty)
        .filter(|t| !t.unknown_attrs)
        .find_map(|t| ours.iter().copied().find(|o| id(*o) == t.id))
}

fn has_unexpected(p: &Proposal, allowed: &[TransformType]) -> bool {
    p.transforms.iter().any(|t| !allowed.contains(&t.ty))
}

/// Picks a DH group from `p` that we accept, preferring `ke_group` (the group
/// of the KE payload that came with it). `None` if the proposal has no DH
/// transform.
fn pick_dh(p: &Proposal, ours: &[DhGroup], ke_group: Option<DhGroup>) -> Option<Option<DhGroup>> {
    let offered: Vec<u16> = p.of_type(TransformType::DH).map(|t| t.id).collect();
    if offered.is_empty() || offered == [0] {
        return Some(None);
    }
    if let Some(g) = ke_group {
        if offered.contains(&g.0) && ours.contains(&g) {
            return Some(Some(g));
        }
    }
    offered
        .iter()
        .find_map(|id| ours.iter().copied().find(|g| g.0 == *id))
        .map(Some)
}

/// Selects an IKE proposal (responder side): walks the peer's proposals in
/// order and returns the first with an acceptable algorithm of every type,
/// preferring the DH group of the KE payload. Returns the chosen proposal
/// number and algorithms.
pub fn select_ike(
    ours: &[IkeProposal],
    offered: &[Proposal],
    ke_group: Option<DhGroup>,
) -> Option<(u8, IkeChoice)> {
    for p in offered.iter().filter(|p| p.protocol == ProtocolId::IKE) {
        use TransformType as T;
        if has_unexpected(p, &[T::ENCR, T::PRF, T::INTEG, T::DH]) {
            continue;
        }
        for o in ours {
            let Some(encr) = pick_encr(p, &o.encr) else {
                continue;
            };
            let Some(prf) = pick(p, T::PRF, &o.prf, |x| x.0) else {
                continue;
            };
            let integ = if encr.is_aead() {
                if p.of_type(T::INTEG).any(|t| t.id != 0) {
                    continue;
                }
                IntegId::NONE
            } else {
                match pick(p, T::INTEG, &o.integ, |x| x.0) {
                    Some(i) => i,
                    None => continue,
                }
            };
            let Some(Some(dh)) = pick_dh(p, &o.dh, ke_group) else {
                continue;
            };
            let suite = Suite {
                encr: encr.id,
                encr_key_bits: encr.key_bits,
                integ,
            };
            return Some((p.num, IkeChoice { suite, prf, dh }));
        }
    }
    None
}

/// Selects an ESP proposal (responder side). `pfs_group` is the group of the
/// KE payload in CREATE_CHILD_SA (`None` in IKE_AUTH, where DH transforms are
/// ignored). Returns the proposal number, the peer's SPI and the choice.
pub fn select_esp(
    ours: &[EspProposal],
    offered: &[Proposal],
    in_ike_auth: bool,
    ke_group: Option<DhGroup>,
) -> Option<(u8, u32, EspChoice)> {
    for p in offered.iter().filter(|p| p.protocol == ProtocolId::ESP) {
        use TransformType as T;
        let Ok(spi) = <[u8; 4]>::try_from(p.spi.as_slice()) else {
            continue;
        };
        if has_unexpected(p, &[T::ENCR, T::INTEG, T::DH, T::ESN]) {
            continue;
        }
        for o in ours {
            let Some(encr) = pick_encr(p, &o.encr) else {
                continue;
            };
            let integ = if encr.is_aead() {
                if p.of_type(T::INTEG).any(|t| t.id != 0) {
                    continue;
                }
                IntegId::NONE
            } else {
                match pick(p, T::INTEG, &o.integ, |x| x.0) {
                    Some(i) => i,
                    None if encr.id == EncrId::NULL => continue,
                    None => continue,
                }
            };
            let dh = if in_ike_auth {
                None
            } else {
                match pick_dh(p, &o.dh, ke_group) {
                    Some(Some(g)) => Some(g),
                    // Peer offers no PFS: acceptable only if we do not insist.
                    Some(None) if o.dh.is_empty() => None,
                    _ => continue,
                }
            };
            let esn_offered: Vec<bool> = p.of_type(T::ESN).map(|t| t.id == 1).collect();
            let esn = if esn_offered.is_empty() {
                if o.esn.contains(&false) {
                    false
                } else {
                    continue;
                }
            } else {
                match esn_offered.iter().copied().find(|e| o.esn.contains(e)) {
                    Some(e) => e,
                    None => continue,
                }
            };
            let suite = Suite {
                encr: encr.id,
                encr_key_bits: encr.key_bits,
                integ,
            };
            return Some((p.num, u32::from_be_bytes(spi), EspChoice { suite, dh, esn }));
        }
    }
    None
}

/// Reads back a single-choice IKE proposal from a response (initiator side)
/// and checks that it is one we offered.
pub fn accept_ike(ours: &[IkeProposal], answer: &[Proposal]) -> Option<IkeChoice> {
    let [p] = answer else { return None };
    if p.transforms
        .iter()
        .filter(|t| t.ty != TransformType::INTEG || t.id != 0)
        .count()
        > 4
    {
        return None;
    }
    let (_, c) = select_ike(ours, answer, None)?;
    // Exactly one of each type.
    let count = |ty| p.of_type(ty).count();
    (count(TransformType::ENCR) == 1
        && count(TransformType::PRF) == 1
        && count(TransformType::DH) == 1)
        .then_some(c)
}

/// Reads back a single-choice ESP proposal from a response (initiator side).
pub fn accept_esp(
    ours: &[EspProposal],
    answer: &[Proposal],
    in_ike_auth: bool,
) -> Option<(u32, EspChoice)> {
    let [p] = answer else { return None };
    let count = |ty| p.of_type(ty).count();
    if count(TransformType::ENCR) != 1
        || count(TransformType::DH) > 1
        || count(TransformType::ESN) > 1
    {
        return None;
    }
    let (_, spi, c) = select_esp(ours, answer, in_ike_auth, None)?;
    Some((spi, c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ike(s: &str) -> Vec<IkeProposal> {
        parse_ike_proposals(s).unwrap()
    }

    #[test]
    fn strongswan_and_libreswan_forms() {
        let p = ike("aes128-sha1-modp1024");
        assert_eq!(
            p,
            vec![IkeProposal {
                encr: vec![EncrAlg::aes_cbc(128)],
                integ: vec![IntegId::HMAC_SHA1_96],
                prf: vec![PrfId::HMAC_SHA1],
                dh: vec![DhGroup::MODP_1024],
            }]
        );
        assert_eq!(ike("aes128-sha1;modp1024"), p);
        assert_eq!(ike("ike=aes128-sha1-modp1024!"), p);
        let g = ike("aes256gcm16-prfsha384-ecp384");
        assert_eq!(g[0].encr, vec![EncrAlg::aes_gcm16(256)]);
        assert_eq!(g[0].prf, vec![PrfId::HMAC_SHA2_384]);
        assert!(g[0].integ.is_empty());
        assert_eq!(g[0].dh, vec![DhGroup::ECP_384]);
        let c = ike("aes128gcm16-prfsha256-curve25519");
        assert_eq!(c[0].dh, vec![DhGroup::CURVE25519]);
        assert_eq!(ike("aes128gcm16-prfsha256-x25519"), c);
        let m = ike("aes128-aes256-sha1-sha256-modp2048-modp1024");
        assert_eq!(
            m[0].encr,
            vec![EncrAlg::aes_cbc(128), EncrAlg::aes_cbc(256)]
        );
        assert_eq!(
            m[0].integ,
            vec![IntegId::HMAC_SHA1_96, IntegId::HMAC_SHA2_256_128]
        );
        assert_eq!(m[0].prf, vec![PrfId::HMAC_SHA1, PrfId::HMAC_SHA2_256]);
        assert_eq!(m[0].dh, vec![DhGroup(14), DhGroup::MODP_1024]);
        let l = ike("aes256-sha2_256;modp2048, aes_gcm16_256-sha2_512-ecp256");
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].integ, vec![IntegId::HMAC_SHA2_256_128]);
        assert_eq!(l[1].encr, vec![EncrAlg::aes_gcm16(256)]);
        assert_eq!(l[1].prf, vec![PrfId::HMAC_SHA2_512]);
        assert_eq!(
            ike("aes-sha2-ecp256")[0].integ,
            vec![IntegId::HMAC_SHA2_256_128]
        );
        // Missing DH gets strong defaults, never MODP-1024.
        assert!(!ike("aes256-sha256")[0].dh.contains(&DhGroup::MODP_1024));
    }

    #[test]
    fn esp_forms() {
        let e = parse_esp_proposals("esp=aes128gcm16").unwrap();
        assert_eq!(
            e,
            vec![EspProposal {
                encr: vec![EncrAlg::aes_gcm16(128)],
                integ: vec![],
                dh: vec![],
                esn: vec![false]
            }]
        );
        let e = parse_esp_proposals("aes256-sha2_256-modp2048-esn,aes128-sha1").unwrap();
        assert_eq!(e[0].dh, vec![DhGroup(14)]);
        assert_eq!(e[0].esn, vec![true]);
        assert_eq!(e[1].integ, vec![IntegId::HMAC_SHA1_96]);
        assert_eq!(e[1].dh, vec![]);
    }

    #[test]
    fn errors_name_the_token() {
        assert_eq!(
            parse_ike_proposals("aes128-sha1-modp1023"),
            Err(ProposalError::UnknownToken("modp1023".into()))
        );
        assert_eq!(
            parse_ike_proposals("aes192-sha1"),
            Err(ProposalError::Unsupported("aes192".into()))
        );
        assert_eq!(
            parse_ike_proposals("3des-sha1"),
            Err(ProposalError::Unsupported("3des".into()))
        );
        assert_eq!(parse_ike_proposals(""), Err(ProposalError::Empty));
        assert_eq!(
            parse_ike_proposals("aes128-sha1,"),
            Err(ProposalError::Empty)
        );
        assert_eq!(
            parse_ike_proposals("aes128--sha1"),
            Err(ProposalError::UnknownToken(String::new()))
        );
        assert!(matches!(
            parse_ike_proposals("aes128-modp2048"),
            Err(ProposalError::MissingIntegrity(_))
        ));
        assert!(matches!(
            parse_ike_proposals("aes128-aes128gcm16-sha1"),
            Err(ProposalError::MixedAead(_))
        ));
        assert!(matches!(
            parse_ike_proposals("sha1-modp2048"),
            Err(ProposalError::MissingEncryption(_))
        ));
        assert!(matches!(
            parse_ike_proposals("aes128-sha1-esn"),
            Err(ProposalError::Misplaced(_))
        ));
        assert!(matches!(
            parse_esp_proposals("aes128gcm16-prfsha256"),
            Err(ProposalError::Misplaced(_))
        ));
        assert!(matches!(
            parse_esp_proposals("aes128gcm16-sha1"),
            Err(ProposalError::MixedAead(_))
        ));
    }

    #[test]
    fn defaults_are_strong() {
        for p in IkeProposal::defaults() {
            assert!(!p.dh.contains(&DhGroup::MODP_1024));
            assert!(!p.prf.contains(&PrfId::HMAC_SHA1));
            assert!(!p.integ.contains(&IntegId::HMAC_SHA1_96));
        }
        for p in EspProposal::defaults() {
            assert!(!p.integ.contains(&IntegId::HMAC_SHA1_96));
        }
    }

    #[test]
    fn selection() {
        let ours = ike("aes256gcm16-prfsha256-ecp256-curve25519,aes128-sha1-modp1024");
        let theirs =
            ike("aes128-sha256-modp2048,aes128gcm16-aes256gcm16-prfsha256-curve25519-ecp256");
        let wire: Vec<Proposal> = theirs
            .iter()
            .enumerate()
            .map(|(i, p)| p.to_wire(i as u8 + 1, &[]))
            .collect();
        let (num, c) = select_ike(&ours, &wire, None).unwrap();
        assert_eq!(num, 2);
        assert_eq!(
            c.suite,
            Suite {
                encr: EncrId::AES_GCM_16,
                encr_key_bits: 256,
                integ: IntegId::NONE
            }
        );
        assert_eq!(c.dh, DhGroup::CURVE25519);
        // The KE group is preferred when acceptable.
        let (_, c) = select_ike(&ours, &wire, Some(DhGroup::ECP_256)).unwrap();
        assert_eq!(c.dh, DhGroup::ECP_256);
        // Responder echoes the choice; initiator accepts it.
        let back = IkeProposal::choice_to_wire(&c, num, &[]);
        assert_eq!(accept_ike(&theirs, std::slice::from_ref(&back)), Some(c));
        // Nothing in common.
        let none = ike("aes128-sha1-modp2048");
        let wire: Vec<Proposal> = none.iter().map(|p| p.to_wire(1, &[])).collect();
        assert_eq!(select_ike(&ours, &wire, None), None);

        let esp_ours = parse_esp_proposals("aes128gcm16-ecp256,aes256-sha256").unwrap();
        let esp_theirs = parse_esp_proposals("aes256-sha1-sha256").unwrap();
        let w = esp_theirs[0].to_wire(1, 0x11223344, false);
        let (n, spi, c) = select_esp(&esp_ours, &[w], true, None).unwrap();
        assert_eq!((n, spi), (1, 0x11223344));
        assert_eq!(c.suite.integ, IntegId::HMAC_SHA2_256_128);
        assert_eq!(c.dh, None);
        // PFS required by us but not offered in CREATE_CHILD_SA.
        let nopfs = parse_esp_proposals("aes128gcm16").unwrap();
        let w = nopfs[0].to_wire(1, 1, true);
        assert_eq!(
            select_esp(&esp_ours[..1], std::slice::from_ref(&w), false, None),
            None
        );
        assert!(select_esp(&esp_ours[..1], &[w], true, None).is_some());
    }
}
