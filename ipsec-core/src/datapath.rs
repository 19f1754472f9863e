//! The data-path facade: per-tunnel SPDs + one SAD + events + counters.
//!
//! A TUN/socket IO loop owns one [`DataPath`] for all its tunnels and feeds
//! it packets. Policies and SAs belong to a tunnel ([`TunnelId`], like the
//! `if_id` of Linux XFRM):
//!
//! * [`DataPath::process_outbound`] takes an IP packet read from a tunnel's
//!   TUN device, matches it against that tunnel's policies only, and answers
//!   [`OutboundAction::Encapsulated`] (send the buffer to the peer, over
//!   UDP/4500 or raw ESP), [`OutboundAction::Bypass`],
//!   [`OutboundAction::Discard`] or [`OutboundAction::Acquire`].
//! * [`DataPath::process_inbound_udp`] / [`DataPath::process_inbound_esp`]
//!   take a UDP/4500 payload or a raw ESP packet and answer
//!   [`InboundAction::Inner`] (write the buffer to the TUN device of the
//!   tunnel it names: one SPI lookup finds the SA and its tunnel),
//!   [`InboundAction::Ike`], [`InboundAction::Keepalive`] or
//!   [`InboundAction::Discard`].
//!
//! Per-packet methods take `&self` and never allocate; management methods
//! (installing policies and SAs) take `&mut self`. Lifetime expiries and
//! ACQUIREs are queued and read with [`DataPath::poll_event`]; time-based
//! lifetimes of idle SAs fire from [`DataPath::handle_timeout`]. Counters
//! are kept per SA and summed per tunnel by [`DataPath::tunnel_stats`],
//! which keeps counting SAs after they are removed.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::buf::PacketBuf;
use crate::sa::{
    Counters, DropReason, Expiry, InboundSa, IpVersion, OutboundSa, SaError, SaParams, Stats,
    TunnelEndpoints, UdpEncap,
};
use crate::sad::{FlatMap, Sad};
pub use crate::spd::TunnelId;
use crate::spd::{Action, Policy, PolicyId, Spd, SpdError};
use crate::wire::{classify_udp_4500, esp, FlowKey, UdpDatagram};

/// Direction of an SA.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Receiving SA.
    Inbound,
    /// Sending SA.
    Outbound,
}

/// Something the control plane (IKE daemon) must react to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// An SA reached a soft (rekey) or hard (delete) lifetime.
    Expired {
        /// SPI of the SA.
        spi: u32,
        /// Its direction.
        direction: Direction,
        /// Soft or hard.
        kind: Expiry,
        /// The tunnel of the SA.
        tunnel: TunnelId,
    },
    /// A packet matched a PROTECT policy that has no SA: negotiate one.
    /// Raised at most once per [`DataPathConfig::acquire_interval`] per policy.
    Acquire {
        /// The policy.
        policy: PolicyId,
        /// The packet that triggered it.
        flow: FlowKey,
        /// The tunnel of the policy.
        tunnel: TunnelId,
    },
}

/// What to do with an outbound packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OutboundAction {
    /// The buffer now holds the ESP packet (SPI through ICV): send it to
    /// `endpoints.remote`, inside UDP if `udp_encap` is set, else as IP
    /// protocol 50.
    Encapsulated {
        /// SPI of the SA used.
        spi: u32,
        /// Outer addresses.
        endpoints: TunnelEndpoints,
        /// UDP ports for RFC 3948 encapsulation.
        udp_encap: Option<UdpEncap>,
    },
    /// Send the packet unchanged, in the clear.
    Bypass,
    /// Drop the packet.
    Discard(DropReason),
    /// The packet matched a PROTECT policy without an SA; it is not sent
    /// (an [`Event::Acquire`] is queued, rate-limited).
    Acquire(PolicyId),
}

/// What to do with an inbound datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InboundAction {
    /// The buffer now holds the authenticated, decrypted inner IP packet.
    Inner {
        /// SPI of the SA that carried it.
        spi: u32,
        /// IP version of the inner packet.
        version: IpVersion,
        /// The tunnel of that SA: its interface receives the packet.
        tunnel: TunnelId,
    },
    /// The buffer now holds an IKE message (non-ESP marker stripped).
    Ike,
    /// A NAT-keepalive; nothing to do.
    Keepalive,
    /// Drop the datagram.
    Discard(DropReason),
}

/// Data-path settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataPathConfig {
    /// Minimum time between two ACQUIRE events for one policy.
    pub acquire_interval: Duration,
    /// Maximum queued events; further events are counted as lost.
    pub event_capacity: usize,
}

impl Default for DataPathConfig {
    fn default() -> Self {
        DataPathConfig {
            acquire_interval: Duration::from_secs(1),
            event_capacity: 1024,
        }
    }
}

/// Counters of one tunnel: the sums over its SAs, including SAs already
/// removed, plus the outbound drops that happened before an SA was chosen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TunnelStats {
    /// Inner packets and bytes delivered by the tunnel's inbound SAs, and
    /// their drops (datagrams with an unknown SPI belong to no tunnel: see
    /// [`DataPath::inbound_stats`]).
    pub inbound: Stats,
    /// Inner packets and bytes encapsulated by the tunnel's outbound SAs,
    /// their drops, and the drops before an SA was chosen (no policy,
    /// DISCARD policy, no SA yet, malformed inner packet).
    pub outbound: Stats,
}

/// What the data path keeps per tunnel.
#[derive(Debug)]
struct TunnelState {
    id: TunnelId,
    /// The tunnel's policies.
    spd: Spd,
    /// Its inbound SAs (also in the SAD).
    inbound: Vec<Arc<InboundSa>>,
    /// Its distinct outbound SAs, with the number of its policies each is
    /// bound to (one SA commonly serves every policy of a Child SA).
    outbound: Vec<(Arc<OutboundSa>, usize)>,
    /// Counters of the SAs removed so far.
    retired: TunnelStats,
    /// Outbound drops before an SA was chosen.
    unprotected_drops: Counters,
}

impl TunnelState {
    fn new(id: TunnelId) -> TunnelState {
        TunnelState {
            id,
            spd: Spd::new(),
            inbound: Vec::new(),
            outbound: Vec::new(),
            retired: TunnelStats::default(),
            unprotected_drops: Counters::default(),
        }
    }

    fn bind_outbound(&mut self, sa: &Arc<OutboundSa>) {
        match self.outbound.iter_mut().find(|(s, _)| Arc::ptr_eq(s, sa)) {
            Some((_, bindings)) => *bindings += 1,
            None => self.outbound.push((Arc::clone(sa), 1)),
        }
    }

    /// Drops one binding of `sa`; after its last one, its counters move
    /// into the retired totals.
    fn unbind_outbound(&mut self, sa: &Arc<OutboundSa>) {
        let Some(i) = self.outbound.iter().position(|(s, _)| Arc::ptr_eq(s, sa)) else {
            return;
        };
        self.outbound[i].1 -= 1;
        if self.outbound[i].1 == 0 {
            let (sa, _) = self.outbound.swap_remove(i);
            self.retired.outbound.add(&sa.stats());
        }
    }

    fn remove_inbound(&mut self, sa: &Arc<InboundSa>) {
        if let Some(i) = self.inbound.iter().position(|s| Arc::ptr_eq(s, sa)) {
            let sa = self.inbound.swap_remove(i);
            self.retired.inbound.add(&sa.stats());
        }
    }

    fn stats(&self) -> TunnelStats {
        let mut t = self.retired;
        for sa in &self.inbound {
            t.inbound.add(&sa.stats());
        }
        for (sa, _) in &self.outbound {
            t.outbound.add(&sa.stats());
        }
        t.outbound.add(&self.unprotected_drops.snapshot());
        t
    }
}

/// Per-tunnel SPDs, the SAD, the event queue and the counters of drops that
/// happen before an SA is known.
#[derive(Debug)]
pub struct DataPath {
    config: DataPathConfig,
    /// Tunnels in no particular order (removal swaps the last one in).
    tunnels: Vec<TunnelState>,
    /// `TunnelId` -> index into `tunnels`.
    tunnel_index: FlatMap<u32>,
    /// `PolicyId` -> the tunnel of the policy (ids are unique per data path).
    policy_tunnel: FlatMap<TunnelId>,
    sad: Sad,
    events: Mutex<VecDeque<Event>>,
    events_lost: AtomicU64,
    outbound: Counters,
    inbound: Counters,
}

impl Default for DataPath {
    fn default() -> Self {
        DataPath::new(DataPathConfig::default())
    }
}

impl DataPath {
    /// An empty data path.
    pub fn new(config: DataPathConfig) -> DataPath {
        DataPath {
            config,
            tunnels: Vec::new(),
            tunnel_index: FlatMap::default(),
            policy_tunnel: FlatMap::default(),
            sad: Sad::new(),
            events: Mutex::new(VecDeque::with_capacity(config.event_capacity)),
            events_lost: AtomicU64::new(0),
            outbound: Counters::default(),
            inbound: Counters::default(),
        }
    }

    #[inline]
    fn tunnel(&self, id: TunnelId) -> Option<&TunnelState> {
        let &i = self.tunnel_index.get(id.0)?;
        self.tunnels.get(i as usize)
    }

    fn tunnel_mut(&mut self, id: TunnelId) -> Option<&mut TunnelState> {
        let &i = self.tunnel_index.get(id.0)?;
        self.tunnels.get_mut(i as usize)
    }

    /// The state of `id`, created on first use.
    fn tunnel_entry(&mut self, id: TunnelId) -> &mut TunnelState {
        let i = match self.tunnel_index.get(id.0) {
            Some(&i) => i as usize,
            None => {
                let i = self.tunnels.len();
                self.tunnels.push(TunnelState::new(id));
                // More than 2^32 tunnels cannot exist: each needs a TunnelId.
                self.tunnel_index.insert(id.0, i as u32);
                i
            }
        };
        &mut self.tunnels[i]
    }

    /// The policy database of a tunnel.
    pub fn spd(&self, tunnel: TunnelId) -> Option<&Spd> {
        self.tunnel(tunnel).map(|t| &t.spd)
    }

    /// The tunnels that have (or had, until [`DataPath::remove_tunnel`])
    /// policies or SAs.
    pub fn tunnels(&self) -> impl Iterator<Item = TunnelId> + '_ {
        self.tunnels.iter().map(|t| t.id)
    }

    /// The SA database.
    pub fn sad(&self) -> &Sad {
        &self.sad
    }

    /// Pre-sizes the SAD for `inbound` and `outbound` SAs.
    pub fn reserve_sas(&mut self, inbound: usize, outbound: usize) {
        if self.sad.inbound_len() == 0 && self.sad.outbound_len() == 0 {
            self.sad = Sad::with_capacity(inbound, outbound);
        }
    }

    /// Adds a policy to the SPD of its tunnel. Policy ids are unique across
    /// tunnels.
    pub fn add_policy(&mut self, policy: Policy) -> Result<(), SpdError> {
        policy.validate()?;
        if self.policy_tunnel.get(policy.id.0).is_some() {
            return Err(SpdError::DuplicateId);
        }
        self.tunnel_entry(policy.tunnel).spd.insert(policy)?;
        self.policy_tunnel.insert(policy.id.0, policy.tunnel);
        Ok(())
    }

    /// Removes a policy and unbinds its outbound SA.
    pub fn remove_policy(&mut self, id: PolicyId) -> Option<Policy> {
        self.remove_outbound(id);
        let tunnel = self.policy_tunnel.remove(id.0)?;
        self.tunnel_mut(tunnel)?.spd.remove(id)
    }

    /// Creates and installs an inbound SA in the tunnel
    /// `params.tunnel_id` (install it before the outbound SA of a rekey so
    /// no packet is lost).
    pub fn install_inbound(
        &mut self,
        params: &SaParams,
        now: Instant,
    ) -> Result<Arc<InboundSa>, SaError> {
        if self.sad.inbound(params.spi).is_some() {
            return Err(SaError::DuplicateSpi);
        }
        let sa = Arc::new(InboundSa::new(params, now)?);
        self.install_inbound_sa(Arc::clone(&sa))?;
        Ok(sa)
    }

    /// Installs an already created inbound SA (in its tunnel).
    pub fn install_inbound_sa(&mut self, sa: Arc<InboundSa>) -> Result<(), SaError> {
        self.sad.install_inbound(Arc::clone(&sa))?;
        self.tunnel_entry(sa.tunnel_id()).inbound.push(sa);
        Ok(())
    }

    /// Creates an outbound SA and binds it to `policy`, returning the SA it
    /// replaces (packets switch atomically to the new one). The policy must
    /// exist and belong to `params.tunnel_id`.
    pub fn install_outbound(
        &mut self,
        policy: PolicyId,
        params: &SaParams,
        now: Instant,
    ) -> Result<Option<Arc<OutboundSa>>, SaError> {
        self.check_binding(policy, params.tunnel_id)?;
        let sa = Arc::new(OutboundSa::new(params, now)?);
        self.install_outbound_sa(policy, sa)
    }

    fn check_binding(&self, policy: PolicyId, tunnel: TunnelId) -> Result<(), SaError> {
        match self.policy_tunnel.get(policy.0) {
            None => Err(SaError::UnknownPolicy),
            Some(&t) if t != tunnel => Err(SaError::TunnelMismatch),
            Some(_) => Ok(()),
        }
    }

    /// Binds an already created outbound SA to `policy` (of the SA's
    /// tunnel), returning the SA it replaces. One SA may be bound to several
    /// policies of its tunnel.
    pub fn install_outbound_sa(
        &mut self,
        policy: PolicyId,
        sa: Arc<OutboundSa>,
    ) -> Result<Option<Arc<OutboundSa>>, SaError> {
        let tunnel = sa.tunnel_id();
        self.check_binding(policy, tunnel)?;
        let old = self.sad.install_outbound(policy, Arc::clone(&sa));
        let t = self.tunnel_entry(tunnel);
        t.bind_outbound(&sa);
        if let Some(old) = &old {
            t.unbind_outbound(old);
        }
        Ok(old)
    }

    /// Removes an inbound SA; its counters stay in its tunnel's totals.
    pub fn remove_inbound(&mut self, spi: u32) -> Option<Arc<InboundSa>> {
        let sa = self.sad.remove_inbound(spi)?;
        if let Some(t) = self.tunnel_mut(sa.tunnel_id()) {
            t.remove_inbound(&sa);
        }
        Some(sa)
    }

    /// Unbinds the outbound SA of a policy; once it is bound to no policy,
    /// its counters stay in its tunnel's totals.
    pub fn remove_outbound(&mut self, policy: PolicyId) -> Option<Arc<OutboundSa>> {
        let sa = self.sad.remove_outbound(policy)?;
        if let Some(t) = self.tunnel_mut(sa.tunnel_id()) {
            t.unbind_outbound(&sa);
        }
        Some(sa)
    }

    /// Removes a tunnel: its policies, the outbound SAs bound to them, its
    /// inbound SAs and its counters, which it returns (`None` for an unknown
    /// tunnel).
    pub fn remove_tunnel(&mut self, tunnel: TunnelId) -> Option<TunnelStats> {
        let i = *self.tunnel_index.get(tunnel.0)? as usize;
        let stats = self.tunnels[i].stats();
        let t = self.tunnels.swap_remove(i);
        self.tunnel_index.remove(tunnel.0);
        if let Some(moved) = self.tunnels.get(i) {
            self.tunnel_index.insert(moved.id.0, i as u32);
        }
        for p in t.spd.iter() {
            self.sad.remove_outbound(p.id);
            self.policy_tunnel.remove(p.id.0);
        }
        for sa in &t.inbound {
            self.sad.remove_inbound(sa.spi());
        }
        Some(stats)
    }

    /// Counters of a tunnel, including its removed SAs (zero for an unknown
    /// tunnel). Cost is linear in the tunnel's SAs.
    pub fn tunnel_stats(&self, tunnel: TunnelId) -> TunnelStats {
        self.tunnel(tunnel)
            .map(TunnelState::stats)
            .unwrap_or_default()
    }

    /// Next queued event.
    pub fn poll_event(&self) -> Option<Event> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front()
    }

    /// Events dropped because the queue was full.
    pub fn events_lost(&self) -> u64 {
        self.events_lost.load(Ordering::Relaxed)
    }

    fn push_event(&self, e: Event) {
        let mut q = self.events.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() >= self.config.event_capacity {
            self.events_lost.fetch_add(1, Ordering::Relaxed);
        } else {
            q.push_back(e);
        }
    }

    fn expiry(&self, spi: u32, direction: Direction, tunnel: TunnelId, kind: Option<Expiry>) {
        if let Some(kind) = kind {
            self.push_event(Event::Expired {
                spi,
                direction,
                kind,
                tunnel,
            });
        }
    }

    /// Fires time-based lifetimes of every SA (also idle ones). Call it at
    /// [`DataPath::next_timeout`] or periodically; cost is linear in the
    /// number of SAs.
    pub fn handle_timeout(&self, now: Instant) {
        for sa in self.sad.inbound_sas() {
            let kind = sa.poll_lifetime(now);
            self.expiry(sa.spi(), Direction::Inbound, sa.tunnel_id(), kind);
        }
        for (_, sa) in self.sad.outbound_sas() {
            let kind = sa.poll_lifetime(now);
            self.expiry(sa.spi(), Direction::Outbound, sa.tunnel_id(), kind);
        }
    }

    /// Earliest time-based lifetime deadline over all SAs (linear scan).
    pub fn next_timeout(&self) -> Option<Instant> {
        let i = self.sad.inbound_sas().filter_map(|s| s.next_deadline());
        let o = self
            .sad
            .outbound_sas()
            .filter_map(|(_, s)| s.next_deadline());
        i.chain(o).min()
    }

    /// Counters of the outbound path over all tunnels: `packets`/`bytes`
    /// count encapsulated packets; drops count only packets dropped before
    /// an SA was chosen (per-SA drops are on the SA and in
    /// [`DataPath::tunnel_stats`]).
    pub fn outbound_stats(&self) -> Stats {
        self.outbound.snapshot()
    }

    /// Counters of the inbound path over all tunnels: `packets`/`bytes`
    /// count delivered inner packets; drops count only datagrams dropped
    /// before an SA was found.
    pub fn inbound_stats(&self) -> Stats {
        self.inbound.snapshot()
    }

    fn drop_out(&self, tunnel: Option<&TunnelState>, r: DropReason) -> OutboundAction {
        self.outbound.count_drop(r);
        if let Some(t) = tunnel {
            t.unprotected_drops.count_drop(r);
        }
        OutboundAction::Discard(r)
    }

    fn drop_in(&self, r: DropReason) -> InboundAction {
        self.inbound.count_drop(r);
        InboundAction::Discard(r)
    }

    /// Processes one outbound IP packet (the buffer's current range) read
    /// from `tunnel`'s interface: only that tunnel's policies are matched.
    pub fn process_outbound<S: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        tunnel: TunnelId,
        now: Instant,
        buf: &mut PacketBuf<S>,
    ) -> OutboundAction {
        self.process_outbound_in(self.tunnel(tunnel), now, buf)
    }

    #[inline]
    fn process_outbound_in<S: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        tunnel: Option<&TunnelState>,
        now: Instant,
        buf: &mut PacketBuf<S>,
    ) -> OutboundAction {
        let flow = match FlowKey::parse(buf.data()) {
            Ok((f, total)) if total == buf.len() => f,
            _ => return self.drop_out(tunnel, DropReason::BadInnerPacket),
        };
        let Some(t) = tunnel else {
            return self.drop_out(None, DropReason::NoPolicy);
        };
        let Some(policy) = t.spd.lookup_outbound(&flow) else {
            return self.drop_out(tunnel, DropReason::NoPolicy);
        };
        match policy.action {
            Action::Protect => {}
            Action::Bypass => return OutboundAction::Bypass,
            _ => return self.drop_out(tunnel, DropReason::PolicyDiscard),
        }
        let Some(sa) = self.sad.outbound(policy.id) else {
            self.outbound.count_drop(DropReason::NoSa);
            t.unprotected_drops.count_drop(DropReason::NoSa);
            if t.spd
                .acquire_allowed(policy.id, now, self.config.acquire_interval)
            {
                self.push_event(Event::Acquire {
                    policy: policy.id,
                    flow,
                    tunnel: t.id,
                });
            }
            return OutboundAction::Acquire(policy.id);
        };
        let range = buf.range();
        let inner_len = range.len();
        match sa.encapsulate(now, buf.storage_mut().as_mut(), range) {
            Ok(e) => {
                self.expiry(sa.spi(), Direction::Outbound, t.id, e.event);
                // The range returned by the SA is inside the storage.
                if buf.set_range(e.esp).is_err() {
                    return self.drop_out(tunnel, DropReason::BufferTooSmall);
                }
                self.outbound.count_packet(inner_len);
                OutboundAction::Encapsulated {
                    spi: sa.spi(),
                    endpoints: sa.tunnel(),
                    udp_encap: sa.udp_encap(),
                }
            }
            Err(d) => {
                self.expiry(sa.spi(), Direction::Outbound, t.id, d.event);
                OutboundAction::Discard(d.reason)
            }
        }
    }

    /// Processes a datagram received on UDP port 4500 (the buffer's range is
    /// the UDP payload): ESP-in-UDP, IKE, or NAT-keepalive.
    pub fn process_inbound_udp<S: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        now: Instant,
        buf: &mut PacketBuf<S>,
    ) -> InboundAction {
        match classify_udp_4500(buf.data()) {
            Ok(UdpDatagram::Esp) => self.process_inbound_esp(now, buf),
            Ok(UdpDatagram::Ike { offset }) => {
                let r = buf.range();
                match buf.set_range(r.start + offset..r.end) {
                    Ok(()) => InboundAction::Ike,
                    Err(_) => self.drop_in(DropReason::Truncated),
                }
            }
            Ok(UdpDatagram::Keepalive) => InboundAction::Keepalive,
            Err(_) => self.drop_in(DropReason::Truncated),
        }
    }

    /// Processes a raw ESP packet (IP protocol 50 payload, or ESP taken out
    /// of UDP). One SPI lookup finds the SA and so the tunnel.
    pub fn process_inbound_esp<S: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        now: Instant,
        buf: &mut PacketBuf<S>,
    ) -> InboundAction {
        let spi = match esp::EspPacket::new_checked(buf.data()) {
            Ok(p) => p.spi(),
            Err(_) => return self.drop_in(DropReason::Truncated),
        };
        let Some(sa) = self.sad.inbound(spi) else {
            return self.drop_in(DropReason::UnknownSpi);
        };
        let tunnel = sa.tunnel_id();
        let range = buf.range();
        match sa.decapsulate(now, buf.storage_mut().as_mut(), range) {
            Ok(d) => {
                self.expiry(spi, Direction::Inbound, tunnel, d.event);
                let len = d.inner.len();
                if buf.set_range(d.inner).is_err() {
                    return self.drop_in(DropReason::Truncated);
                }
                self.inbound.count_packet(len);
                InboundAction::Inner {
                    spi,
                    version: d.version,
                    tunnel,
                }
            }
            Err(d) => {
                self.expiry(spi, Direction::Inbound, tunnel, d.event);
                InboundAction::Discard(d.reason)
            }
        }
    }

    /// [`DataPath::process_outbound`] over a batch read from one tunnel's
    /// interface; writes one action per buffer into `actions` (up to the
    /// shorter length, which it returns).
    pub fn process_outbound_batch<S: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        tunnel: TunnelId,
        now: Instant,
        bufs: &mut [PacketBuf<S>],
        actions: &mut [OutboundAction],
    ) -> usize {
        let t = self.tunnel(tunnel);
        run_batch(bufs, actions, |b| self.process_outbound_in(t, now, b))
    }

    /// [`DataPath::process_inbound_udp`] over a batch.
    pub fn process_inbound_udp_batch<S: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        now: Instant,
        bufs: &mut [PacketBuf<S>],
        actions: &mut [InboundAction],
    ) -> usize {
        run_batch(bufs, actions, |b| self.process_inbound_udp(now, b))
    }

    /// [`DataPath::process_inbound_esp`] over a batch.
    pub fn process_inbound_esp_batch<S: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        now: Instant,
        bufs: &mut [PacketBuf<S>],
        actions: &mut [InboundAction],
    ) -> usize {
        run_batch(bufs, actions, |b| self.process_inbound_esp(now, b))
    }
}

/// Runs `process` over each buffer of a batch, writing one action per
/// buffer into `actions` (up to the shorter length, which it returns).
#[inline]
fn run_batch<S, A>(
    bufs: &mut [PacketBuf<S>],
    actions: &mut [A],
    mut process: impl FnMut(&mut PacketBuf<S>) -> A,
) -> usize {
    let n = bufs.len().min(actions.len());
    for (b, a) in bufs.iter_mut().zip(actions.iter_mut()) {
        *a = process(b);
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Suite;
    use crate::sa::SecretBytes;
    use crate::selector::TrafficSelector;

    fn policy(id: u32, tunnel: u32) -> Policy {
        Policy {
            id: PolicyId(id),
            tunnel: TunnelId(tunnel),
            priority: 0,
            local: TrafficSelector::any_v4(),
            remote: TrafficSelector::any_v4(),
            action: Action::Protect,
        }
    }

    fn params(spi: u32, tunnel: u32) -> SaParams {
        let mut p = SaParams::new(
            spi,
            Suite::AES128_GCM16,
            SecretBytes::new(vec![1; 20]),
            SecretBytes::default(),
            TunnelEndpoints {
                local: "192.0.2.1".parse().unwrap(),
                remote: "192.0.2.2".parse().unwrap(),
            },
        );
        p.tunnel_id = TunnelId(tunnel);
        p
    }

    /// Removing a tunnel moves the last one into its slot; every other
    /// tunnel must still be found with its own policies and SAs.
    #[test]
    fn removing_tunnels_keeps_the_others_reachable() {
        let now = Instant::now();
        let mut dp = DataPath::default();
        // Sparse, large ids (like interface indexes or XFRM if_ids).
        let ids = [7u32, 0x1000, 3, u32::MAX, 42];
        for (k, &t) in ids.iter().enumerate() {
            let k = k as u32;
            dp.add_policy(policy(100 + k, t)).unwrap();
            dp.install_outbound(PolicyId(100 + k), &params(0x1000 + k, t), now)
                .unwrap();
            dp.install_inbound(&params(0x2000 + k, t), now).unwrap();
        }
        assert!(dp.remove_tunnel(TunnelId(7)).is_some());
        assert!(dp.remove_tunnel(TunnelId(3)).is_some());
        assert!(dp.remove_tunnel(TunnelId(9)).is_none());
        let mut left: Vec<u32> = dp.tunnels().map(|t| t.0).collect();
        left.sort_unstable();
        assert_eq!(left, [42, 0x1000, u32::MAX]);
        for (k, &t) in ids.iter().enumerate() {
            let k = k as u32;
            let gone = t == 7 || t == 3;
            let spd = dp.spd(TunnelId(t));
            assert_eq!(spd.is_none(), gone, "{t}");
            if let Some(spd) = spd {
                assert_eq!(
                    spd.iter().map(|p| p.id).collect::<Vec<_>>(),
                    [PolicyId(100 + k)]
                );
            }
            assert_eq!(dp.sad().outbound(PolicyId(100 + k)).is_none(), gone);
            let inbound = dp.sad().inbound(0x2000 + k);
            assert_eq!(
                inbound.map(|s| s.tunnel_id()),
                (!gone).then_some(TunnelId(t))
            );
        }
        assert_eq!(dp.sad().inbound_len(), 3);
        assert_eq!(dp.sad().outbound_len(), 3);
    }

    /// A policy that failed validation leaves no empty tunnel behind.
    #[test]
    fn bad_policy_creates_no_tunnel() {
        let mut dp = DataPath::default();
        let mut bad = policy(1, 5);
        bad.remote.start = "10.0.0.9".parse().unwrap();
        bad.remote.end = "10.0.0.1".parse().unwrap();
        assert!(matches!(dp.add_policy(bad), Err(SpdError::BadSelector(_))));
        assert_eq!(dp.tunnels().count(), 0);
    }
}
