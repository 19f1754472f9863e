//! Security Policy Database (RFC 4301 §4.4.1): an ordered list of policies,
//! and the [`TunnelId`] that scopes policies and SAs to one tunnel.
//!
//! Each policy pairs a local and a remote [`TrafficSelector`] with an
//! [`Action`]. Lookups return the first matching policy in priority order
//! (lower `priority` first, insertion order among equals). One [`Spd`] holds
//! the policies of one tunnel; the data path keeps one per tunnel, so two
//! tunnels with identical selectors never see each other's policies.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::selector::TrafficSelector;
use crate::wire::FlowKey;

/// Names the tunnel (the virtual interface) a policy and an SA belong to,
/// like the `if_id` of Linux XFRM: outbound lookups only consider the
/// policies of the tunnel the packet was routed into, and an inbound SA
/// reports the tunnel whose interface receives what it decrypts. The value
/// is the caller's choice (an interface index, a configuration index).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TunnelId(pub u32);

impl core::fmt::Display for TunnelId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "tunnel {}", self.0)
    }
}

/// Identifies a policy; outbound SAs are bound to one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PolicyId(pub u32);

impl core::hash::Hash for PolicyId {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        state.write_u32(self.0);
    }
}

/// What to do with a packet that matches a policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Send through the policy's ESP SA (ACQUIRE one if none is installed).
    Protect,
    /// Send in the clear.
    Bypass,
    /// Drop.
    Discard,
}

/// One SPD entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Identifier (unique within a data path).
    pub id: PolicyId,
    /// The tunnel whose outbound packets this policy applies to.
    pub tunnel: TunnelId,
    /// Lower values are matched first.
    pub priority: u32,
    /// Selector for the local side (outbound source, inbound destination).
    pub local: TrafficSelector,
    /// Selector for the remote side (outbound destination, inbound source).
    pub remote: TrafficSelector,
    /// Action on match.
    pub action: Action,
}

impl Policy {
    /// Checks both selectors.
    pub fn validate(&self) -> Result<(), SpdError> {
        self.local.validate().map_err(SpdError::BadSelector)?;
        self.remote.validate().map_err(SpdError::BadSelector)
    }

    /// True if an outbound packet (local → remote) matches.
    #[inline]
    pub fn matches_outbound(&self, f: &FlowKey) -> bool {
        self.local.matches_src(f) && self.remote.matches_dst(f)
    }

    /// True if an inbound packet (remote → local) matches.
    #[inline]
    pub fn matches_inbound(&self, f: &FlowKey) -> bool {
        self.remote.matches_src(f) && self.local.matches_dst(f)
    }
}

/// Why a policy could not be inserted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpdError {
    /// A policy with this id exists.
    DuplicateId,
    /// A selector is malformed.
    BadSelector(crate::selector::SelectorError),
}

impl core::fmt::Display for SpdError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SpdError::DuplicateId => f.write_str("duplicate policy id"),
            SpdError::BadSelector(e) => write!(f, "bad selector: {e}"),
        }
    }
}

impl std::error::Error for SpdError {}

#[derive(Debug)]
struct Entry {
    policy: Policy,
    /// Last time an ACQUIRE was raised for this policy.
    last_acquire: Mutex<Option<Instant>>,
}

/// The ordered policy list (of one tunnel, when used by the data path).
#[derive(Debug, Default)]
pub struct Spd {
    entries: Vec<Entry>,
}

impl Spd {
    /// An empty SPD (every packet is "no policy").
    pub fn new() -> Spd {
        Spd::default()
    }

    /// Inserts a policy after every policy with a lower or equal priority.
    pub fn insert(&mut self, policy: Policy) -> Result<(), SpdError> {
        policy.validate()?;
        if self.get(policy.id).is_some() {
            return Err(SpdError::DuplicateId);
        }
        let at = self
            .entries
            .partition_point(|e| e.policy.priority <= policy.priority);
        self.entries.insert(
            at,
            Entry {
                policy,
                last_acquire: Mutex::new(None),
            },
        );
        Ok(())
    }

    /// Removes a policy; returns it if it existed.
    pub fn remove(&mut self, id: PolicyId) -> Option<Policy> {
        let i = self.entries.iter().position(|e| e.policy.id == id)?;
        Some(self.entries.remove(i).policy)
    }

    /// The policy with this id.
    pub fn get(&self, id: PolicyId) -> Option<&Policy> {
        self.entries
            .iter()
            .find(|e| e.policy.id == id)
            .map(|e| &e.policy)
    }

    /// Policies in match order.
    pub fn iter(&self) -> impl Iterator<Item = &Policy> {
        self.entries.iter().map(|e| &e.policy)
    }

    /// Number of policies.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if there are no policies.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// First policy matching an outbound packet.
    pub fn lookup_outbound(&self, f: &FlowKey) -> Option<&Policy> {
        self.entries
            .iter()
            .map(|e| &e.policy)
            .find(|p| p.matches_outbound(f))
    }

    /// First policy matching an inbound packet.
    pub fn lookup_inbound(&self, f: &FlowKey) -> Option<&Policy> {
        self.entries
            .iter()
            .map(|e| &e.policy)
            .find(|p| p.matches_inbound(f))
    }

    /// Rate limiter for ACQUIRE events: returns true (and records `now`) if
    /// no ACQUIRE was raised for `id` during the last `interval`.
    pub fn acquire_allowed(&self, id: PolicyId, now: Instant, interval: Duration) -> bool {
        let Some(e) = self.entries.iter().find(|e| e.policy.id == id) else {
            return false;
        };
        let mut last = e.last_acquire.lock().unwrap_or_else(|p| p.into_inner());
        match *last {
            Some(t) if now.saturating_duration_since(t) < interval => false,
            _ => {
                *last = Some(now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{IpProtocol, Ports};

    fn pol(id: u32, prio: u32, remote: &str, len: u8, action: Action) -> Policy {
        Policy {
            id: PolicyId(id),
            tunnel: TunnelId(0),
            priority: prio,
            local: TrafficSelector::any_v4(),
            remote: TrafficSelector::from_prefix(remote.parse().unwrap(), len).unwrap(),
            action,
        }
    }

    #[test]
    fn ordered_first_match() {
        let mut spd = Spd::new();
        spd.insert(pol(1, 100, "10.0.0.0", 8, Action::Protect))
            .unwrap();
        spd.insert(pol(2, 10, "10.1.0.0", 16, Action::Bypass))
            .unwrap();
        spd.insert(pol(3, 100, "0.0.0.0", 0, Action::Discard))
            .unwrap();
        assert_eq!(
            spd.insert(pol(3, 1, "0.0.0.0", 0, Action::Discard)),
            Err(SpdError::DuplicateId)
        );
        let ids: Vec<u32> = spd.iter().map(|p| p.id.0).collect();
        assert_eq!(ids, [2, 1, 3]);
        let f = |dst: &str| FlowKey {
            src: "192.168.0.1".parse().unwrap(),
            dst: dst.parse().unwrap(),
            protocol: IpProtocol::UDP,
            ports: Ports::Known { src: 1, dst: 2 },
        };
        assert_eq!(spd.lookup_outbound(&f("10.1.2.3")).unwrap().id, PolicyId(2));
        assert_eq!(spd.lookup_outbound(&f("10.2.2.3")).unwrap().id, PolicyId(1));
        assert_eq!(spd.lookup_outbound(&f("11.0.0.1")).unwrap().id, PolicyId(3));
        assert!(spd.lookup_outbound(&f("::1")).is_none());
        // Inbound swaps the sides.
        let back = FlowKey {
            src: "10.2.2.3".parse().unwrap(),
            dst: "192.168.0.1".parse().unwrap(),
            ..f("10.2.2.3")
        };
        assert_eq!(spd.lookup_inbound(&back).unwrap().id, PolicyId(1));
        assert_eq!(spd.remove(PolicyId(2)).unwrap().id, PolicyId(2));
        assert_eq!(spd.len(), 2);
        assert_eq!(spd.lookup_outbound(&f("10.1.2.3")).unwrap().id, PolicyId(1));
    }

    #[test]
    fn acquire_rate_limit() {
        let mut spd = Spd::new();
        spd.insert(pol(1, 1, "10.0.0.0", 8, Action::Protect))
            .unwrap();
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        assert!(spd.acquire_allowed(PolicyId(1), t0, s));
        assert!(!spd.acquire_allowed(PolicyId(1), t0 + Duration::from_millis(999), s));
        assert!(spd.acquire_allowed(PolicyId(1), t0 + s, s));
        assert!(!spd.acquire_allowed(PolicyId(9), t0, s));
    }
}
