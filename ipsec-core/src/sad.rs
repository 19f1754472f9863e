//! Security Association Database: inbound SAs by SPI, outbound SAs by policy.
//!
//! Both maps are hash maps with a multiplicative hasher for 32-bit keys, so a
//! lookup is one multiply plus a probe regardless of the number of SAs. SAs
//! are held in `Arc`s: the data path can keep using an SA that is being
//! replaced. Rekeying is make-before-break: install the new inbound SA, then
//! switch the policy's outbound SA ([`Sad::install_outbound`] returns the
//! old one), and remove the old inbound SA only after the peer switched too.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use crate::sa::{InboundSa, OutboundSa, SaError};
use crate::spd::PolicyId;

/// A hasher for small integer keys (SPIs, policy ids): one 64-bit multiply
/// by a golden-ratio constant, whose high bits the hash table uses. SPIs
/// are chosen by the receiver, so attackers cannot choose colliding keys
/// that get inserted.
#[derive(Default, Clone, Copy, Debug)]
pub struct IntHasher(u64);

impl Hasher for IntHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.0 = (self.0 ^ u64::from(n)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// `BuildHasher` for [`IntHasher`].
pub type IntBuildHasher = BuildHasherDefault<IntHasher>;

/// The SA database.
#[derive(Debug, Default)]
pub struct Sad {
    inbound: HashMap<u32, Arc<InboundSa>, IntBuildHasher>,
    outbound: HashMap<PolicyId, Arc<OutboundSa>, IntBuildHasher>,
}

impl Sad {
    /// An empty SAD.
    pub fn new() -> Sad {
        Sad::default()
    }

    /// An empty SAD with room for `inbound` and `outbound` SAs.
    pub fn with_capacity(inbound: usize, outbound: usize) -> Sad {
        Sad {
            inbound: HashMap::with_capacity_and_hasher(inbound, IntBuildHasher::default()),
            outbound: HashMap::with_capacity_and_hasher(outbound, IntBuildHasher::default()),
        }
    }

    /// Installs an inbound SA; fails if its SPI is taken.
    pub fn install_inbound(&mut self, sa: Arc<InboundSa>) -> Result<(), SaError> {
        match self.inbound.entry(sa.spi()) {
            std::collections::hash_map::Entry::Occupied(_) => Err(SaError::DuplicateSpi),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(sa);
                Ok(())
            }
        }
    }

    /// Removes an inbound SA.
    pub fn remove_inbound(&mut self, spi: u32) -> Option<Arc<InboundSa>> {
        self.inbound.remove(&spi)
    }

    /// Binds `sa` to `policy`, returning the SA it replaces (if any).
    pub fn install_outbound(
        &mut self,
        policy: PolicyId,
        sa: Arc<OutboundSa>,
    ) -> Option<Arc<OutboundSa>> {
        self.outbound.insert(policy, sa)
    }

    /// Unbinds the outbound SA of `policy`.
    pub fn remove_outbound(&mut self, policy: PolicyId) -> Option<Arc<OutboundSa>> {
        self.outbound.remove(&policy)
    }

    /// Inbound SA by SPI.
    #[inline]
    pub fn inbound(&self, spi: u32) -> Option<&Arc<InboundSa>> {
        self.inbound.get(&spi)
    }

    /// Outbound SA of a policy.
    #[inline]
    pub fn outbound(&self, policy: PolicyId) -> Option<&Arc<OutboundSa>> {
        self.outbound.get(&policy)
    }

    /// All inbound SAs.
    pub fn inbound_sas(&self) -> impl Iterator<Item = &Arc<InboundSa>> {
        self.inbound.values()
    }

    /// All outbound SAs with their policy.
    pub fn outbound_sas(&self) -> impl Iterator<Item = (PolicyId, &Arc<OutboundSa>)> {
        self.outbound.iter().map(|(p, s)| (*p, s))
    }

    /// Number of inbound SAs.
    pub fn inbound_len(&self) -> usize {
        self.inbound.len()
    }

    /// Number of outbound SAs.
    pub fn outbound_len(&self) -> usize {
        self.outbound.len()
    }
}
