//! Security Association Database: inbound SAs by SPI, outbound SAs by policy.
//!
//! Every SA names its tunnel ([`crate::sa::InboundSa::tunnel_id`]), so the
//! one SPI lookup of an inbound packet also resolves the tunnel it belongs
//! to.
//!
//! Both maps are flat open-addressing tables keyed by a 32-bit integer (SPI,
//! policy id): a power-of-two array of `(key, Arc)` pairs, 16 bytes each,
//! indexed by a multiplicative hash and probed linearly at a load factor of
//! at most 1/4 (8 MiB of table for 100,000 SAs). A hit is one multiply and
//! almost always a single slot, one cache line, whatever the number of SAs;
//! short probe runs keep misses cheap too. SAs are held in
//! `Arc`s: the data path can keep using an SA that is being
//! replaced. Rekeying is make-before-break: install the new inbound SA, then
//! switch the policy's outbound SA ([`Sad::install_outbound`] returns the
//! old one), and remove the old inbound SA only after the peer switched too.

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

/// A flat open-addressing map from `u32` keys: linear probing, backward-shift
/// deletion (no tombstones), load factor at most 1/4.
#[derive(Debug)]
pub(crate) struct FlatMap<V> {
    slots: Vec<Option<(u32, V)>>,
    /// `64 - log2(slots.len())`: the hash uses the multiply's high bits.
    shift: u32,
    len: usize,
}

impl<V> Default for FlatMap<V> {
    fn default() -> Self {
        FlatMap {
            slots: Vec::new(),
            shift: 63, // unused while empty
            len: 0,
        }
    }
}

impl<V> FlatMap<V> {
    pub(crate) fn with_capacity(n: usize) -> Self {
        let mut m = FlatMap::default();
        if n > 0 {
            m.resize(Self::slots_for(n));
        }
        m
    }

    /// Table size for `n` entries at load factor <= 1/4 (at least 8).
    fn slots_for(n: usize) -> usize {
        n.saturating_mul(4).next_power_of_two().max(8)
    }

    #[inline]
    fn home(&self, key: u32) -> usize {
        // Golden-ratio multiply; the high bits are well mixed. `shift` is
        // 64 - log2(len) with len >= 8, so the result is < len.
        (u64::from(key).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> self.shift) as usize
    }

    #[inline]
    fn mask(&self) -> usize {
        self.slots.len().wrapping_sub(1)
    }

    /// Index of `key`'s slot, if present.
    #[inline]
    fn find(&self, key: u32) -> Option<usize> {
        if self.len == 0 {
            return None;
        }
        let mask = self.mask();
        let mut i = self.home(key);
        // Terminates: at load <= 1/4 there is always an empty slot.
        loop {
            match self.slots.get(i)? {
                Some((k, _)) if *k == key => return Some(i),
                Some(_) => i = (i + 1) & mask,
                None => return None,
            }
        }
    }

    #[inline]
    pub(crate) fn get(&self, key: u32) -> Option<&V> {
        let i = self.find(key)?;
        self.slots.get(i)?.as_ref().map(|(_, v)| v)
    }

    fn resize(&mut self, slots: usize) {
        let old = std::mem::take(&mut self.slots);
        self.slots.resize_with(slots, || None);
        self.shift = 64 - slots.trailing_zeros();
        self.len = 0;
        for (k, v) in old.into_iter().flatten() {
            self.insert_new(k, v);
        }
    }

    /// Inserts a key known to be absent, with room guaranteed.
    fn insert_new(&mut self, key: u32, value: V) {
        let mask = self.mask();
        let mut i = self.home(key);
        while self.slots[i].is_some() {
            i = (i + 1) & mask;
        }
        self.slots[i] = Some((key, value));
        self.len += 1;
    }

    /// Inserts or replaces; returns the replaced value.
    pub(crate) fn insert(&mut self, key: u32, value: V) -> Option<V> {
        if let Some(i) = self.find(key) {
            let slot = self.slots[i].as_mut().map(|(_, v)| v)?;
            return Some(std::mem::replace(slot, value));
        }
        if (self.len + 1) * 4 > self.slots.len() {
            self.resize(Self::slots_for(self.len + 1));
        }
        self.insert_new(key, value);
        None
    }

    pub(crate) fn remove(&mut self, key: u32) -> Option<V> {
        let mut hole = self.find(key)?;
        let (_, value) = self.slots[hole].take()?;
        self.len -= 1;
        // Backward-shift deletion: move later members of the probe run
        // into the hole when their home slot does not lie (cyclically)
        // after the hole, so every key stays reachable from its home.
        let mask = self.mask();
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let Some((k, _)) = &self.slots[j] else {
                break;
            };
            let home = self.home(*k);
            // Distance from home to j vs. from hole to j.
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                self.slots[hole] = self.slots[j].take();
                hole = j;
            }
        }
        Some(value)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &V)> {
        self.slots.iter().flatten().map(|(k, v)| (*k, v))
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

/// The SA database.
#[derive(Debug, Default)]
pub struct Sad {
    inbound: FlatMap<Arc<InboundSa>>,
    outbound: FlatMap<Arc<OutboundSa>>,
}

impl Sad {
    /// An empty SAD.
    pub fn new() -> Sad {
        Sad::default()
    }

    /// An empty SAD with room for `inbound` and `outbound` SAs.
    pub fn with_capacity(inbound: usize, outbound: usize) -> Sad {
        Sad {
            inbound: FlatMap::with_capacity(inbound),
            outbound: FlatMap::with_capacity(outbound),
        }
    }

    /// Installs an inbound SA; fails if its SPI is taken.
    pub fn install_inbound(&mut self, sa: Arc<InboundSa>) -> Result<(), SaError> {
        if self.inbound.find(sa.spi()).is_some() {
            return Err(SaError::DuplicateSpi);
        }
        self.inbound.insert(sa.spi(), sa);
        Ok(())
    }

    /// Removes an inbound SA.
    pub fn remove_inbound(&mut self, spi: u32) -> Option<Arc<InboundSa>> {
        self.inbound.remove(spi)
    }

    /// Binds `sa` to `policy`, returning the SA it replaces (if any).
    pub fn install_outbound(
        &mut self,
        policy: PolicyId,
        sa: Arc<OutboundSa>,
    ) -> Option<Arc<OutboundSa>> {
        self.outbound.insert(policy.0, sa)
    }

    /// Unbinds the outbound SA of `policy`.
    pub fn remove_outbound(&mut self, policy: PolicyId) -> Option<Arc<OutboundSa>> {
        self.outbound.remove(policy.0)
    }

    /// Inbound SA by SPI.
    #[inline]
    pub fn inbound(&self, spi: u32) -> Option<&Arc<InboundSa>> {
        self.inbound.get(spi)
    }

    /// Outbound SA of a policy.
    #[inline]
    pub fn outbound(&self, policy: PolicyId) -> Option<&Arc<OutboundSa>> {
        self.outbound.get(policy.0)
    }

    /// All inbound SAs.
    pub fn inbound_sas(&self) -> impl Iterator<Item = &Arc<InboundSa>> {
        self.inbound.iter().map(|(_, s)| s)
    }

    /// All outbound SAs with their policy.
    pub fn outbound_sas(&self) -> impl Iterator<Item = (PolicyId, &Arc<OutboundSa>)> {
        self.outbound.iter().map(|(p, s)| (PolicyId(p), s))
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

#[cfg(test)]
mod tests {
    use super::FlatMap;
    use std::collections::HashMap;

    /// Random inserts, replacements and removals against `HashMap`, with
    /// keys from a small range (long probe runs, wrap-around at the end of
    /// the table) and from the full range.
    #[test]
    fn flat_map_matches_hash_map() {
        for range in [64u32, 1 << 12, u32::MAX] {
            let mut m = FlatMap::with_capacity(if range == 64 { 0 } else { 16 });
            let mut r: HashMap<u32, u64> = HashMap::new();
            let mut x = 0x2545_f491_4f6c_dd1du64;
            for step in 0..200_000u64 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let key = (x >> 32) as u32 % range;
                match x % 5 {
                    0 | 1 => assert_eq!(m.insert(key, step), r.insert(key, step)),
                    2 | 3 => assert_eq!(m.remove(key), r.remove(&key)),
                    _ => assert_eq!(m.get(key), r.get(&key)),
                }
                assert_eq!(m.len(), r.len());
                assert!(m.len() * 4 <= m.slots.len().max(1));
            }
            for (k, v) in &r {
                assert_eq!(m.get(*k), Some(v));
            }
            assert_eq!(m.iter().count(), r.len());
            for k in 0..range.min(1 << 12) {
                assert_eq!(m.get(k), r.get(&k), "key {k}");
            }
        }
    }
}
