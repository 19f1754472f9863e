//! The data-path facade: SPD + SAD + events + counters.
//!
//! A TUN/socket IO loop owns one [`DataPath`] and feeds it packets:
//!
//! * [`DataPath::process_outbound`] takes an IP packet read from the TUN
//!   device and answers [`OutboundAction::Encapsulated`] (send the buffer to
//!   the peer, over UDP/4500 or raw ESP), [`OutboundAction::Bypass`],
//!   [`OutboundAction::Discard`] or [`OutboundAction::Acquire`].
//! * [`DataPath::process_inbound_udp`] / [`DataPath::process_inbound_esp`]
//!   take a UDP/4500 payload or a raw ESP packet and answer
//!   [`InboundAction::Inner`] (write the buffer to the TUN device),
//!   [`InboundAction::Ike`], [`InboundAction::Keepalive`] or
//!   [`InboundAction::Discard`].
//!
//! Per-packet methods take `&self` and never allocate; management methods
//! (installing policies and SAs) take `&mut self`. Lifetime expiries and
//! ACQUIREs are queued and read with [`DataPath::poll_event`]; time-based
//! lifetimes of idle SAs fire from [`DataPath::handle_timeout`].

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::buf::PacketBuf;
use crate::sa::{
    Counters, DropReason, Expiry, InboundSa, IpVersion, OutboundSa, SaError, SaParams, Stats,
    TunnelEndpoints, UdpEncap,
};
use crate::sad::Sad;
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
    },
    /// A packet matched a PROTECT policy that has no SA: negotiate one.
    /// Raised at most once per [`DataPathConfig::acquire_interval`] per policy.
    Acquire {
        /// The policy.
        policy: PolicyId,
        /// The packet that triggered it.
        flow: FlowKey,
    },
}

/// What to do with an outbound packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OutboundAction {
    /// The buffer now holds the ESP packet (SPI through ICV): send it to
    /// `tunnel.remote`, inside UDP if `udp_encap` is set, else as IP
    /// protocol 50.
    Encapsulated {
        /// SPI of the SA used.
        spi: u32,
        /// Outer addresses.
        tunnel: TunnelEndpoints,
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

/// SPD, SAD, event queue and the counters of drops that happen before an
/// SA is known.
#[derive(Debug)]
pub struct DataPath {
    config: DataPathConfig,
    spd: Spd,
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
            spd: Spd::new(),
            sad: Sad::new(),
            events: Mutex::new(VecDeque::with_capacity(config.event_capacity)),
            events_lost: AtomicU64::new(0),
            outbound: Counters::default(),
            inbound: Counters::default(),
        }
    }

    /// The policy database.
    pub fn spd(&self) -> &Spd {
        &self.spd
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

    /// Adds a policy.
    pub fn add_policy(&mut self, policy: Policy) -> Result<(), SpdError> {
        self.spd.insert(policy)
    }

    /// Removes a policy and unbinds its outbound SA.
    pub fn remove_policy(&mut self, id: PolicyId) -> Option<Policy> {
        self.sad.remove_outbound(id);
        self.spd.remove(id)
    }

    /// Creates and installs an inbound SA (install it before the outbound
    /// SA of a rekey so no packet is lost).
    pub fn install_inbound(
        &mut self,
        params: &SaParams,
        now: Instant,
    ) -> Result<Arc<InboundSa>, SaError> {
        if self.sad.inbound(params.spi).is_some() {
            return Err(SaError::DuplicateSpi);
        }
        let sa = Arc::new(InboundSa::new(params, now)?);
        self.sad.install_inbound(Arc::clone(&sa))?;
        Ok(sa)
    }

    /// Installs an already created inbound SA.
    pub fn install_inbound_sa(&mut self, sa: Arc<InboundSa>) -> Result<(), SaError> {
        self.sad.install_inbound(sa)
    }

    /// Creates an outbound SA and binds it to `policy`, returning the SA it
    /// replaces (packets switch atomically to the new one).
    pub fn install_outbound(
        &mut self,
        policy: PolicyId,
        params: &SaParams,
        now: Instant,
    ) -> Result<Option<Arc<OutboundSa>>, SaError> {
        let sa = Arc::new(OutboundSa::new(params, now)?);
        Ok(self.sad.install_outbound(policy, sa))
    }

    /// Binds an already created outbound SA to `policy`.
    pub fn install_outbound_sa(
        &mut self,
        policy: PolicyId,
        sa: Arc<OutboundSa>,
    ) -> Option<Arc<OutboundSa>> {
        self.sad.install_outbound(policy, sa)
    }

    /// Removes an inbound SA.
    pub fn remove_inbound(&mut self, spi: u32) -> Option<Arc<InboundSa>> {
        self.sad.remove_inbound(spi)
    }

    /// Unbinds the outbound SA of a policy.
    pub fn remove_outbound(&mut self, policy: PolicyId) -> Option<Arc<OutboundSa>> {
        self.sad.remove_outbound(policy)
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

    fn expiry(&self, spi: u32, direction: Direction, kind: Option<Expiry>) {
        if let Some(kind) = kind {
            self.push_event(Event::Expired {
                spi,
                direction,
                kind,
            });
        }
    }

    /// Fires time-based lifetimes of every SA (also idle ones). Call it at
    /// [`DataPath::next_timeout`] or periodically; cost is linear in the
    /// number of SAs.
    pub fn handle_timeout(&self, now: Instant) {
        for sa in self.sad.inbound_sas() {
            self.expiry(sa.spi(), Direction::Inbound, sa.poll_lifetime(now));
        }
        for (_, sa) in self.sad.outbound_sas() {
            self.expiry(sa.spi(), Direction::Outbound, sa.poll_lifetime(now));
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

    /// Counters of the outbound path: `packets`/`bytes` count encapsulated
    /// packets; drops count only packets dropped before an SA was chosen
    /// (per-SA drops are on the SA).
    pub fn outbound_stats(&self) -> Stats {
        self.outbound.snapshot()
    }

    /// Counters of the inbound path: `packets`/`bytes` count delivered inner
    /// packets; drops count only datagrams dropped before an SA was found.
    pub fn inbound_stats(&self) -> Stats {
        self.inbound.snapshot()
    }

    fn drop_out(&self, r: DropReason) -> OutboundAction {
        self.outbound.count_drop(r);
        OutboundAction::Discard(r)
    }

    fn drop_in(&self, r: DropReason) -> InboundAction {
        self.inbound.count_drop(r);
        InboundAction::Discard(r)
    }

    /// Processes one outbound IP packet (the buffer's current range).
    pub fn process_outbound<S: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        now: Instant,
        buf: &mut PacketBuf<S>,
    ) -> OutboundAction {
        let flow = match FlowKey::parse(buf.data()) {
            Ok((f, total)) if total == buf.len() => f,
            _ => return self.drop_out(DropReason::BadInnerPacket),
        };
        let Some(policy) = self.spd.lookup_outbound(&flow) else {
            return self.drop_out(DropReason::NoPolicy);
        };
        match policy.action {
            Action::Protect => {}
            Action::Bypass => return OutboundAction::Bypass,
            _ => return self.drop_out(DropReason::PolicyDiscard),
        }
        let Some(sa) = self.sad.outbound(policy.id) else {
            self.outbound.count_drop(DropReason::NoSa);
            if self
                .spd
                .acquire_allowed(policy.id, now, self.config.acquire_interval)
            {
                self.push_event(Event::Acquire {
                    policy: policy.id,
                    flow,
                });
            }
            return OutboundAction::Acquire(policy.id);
        };
        let range = buf.range();
        let inner_len = range.len();
        match sa.encapsulate(now, buf.storage_mut().as_mut(), range) {
            Ok(e) => {
                self.expiry(sa.spi(), Direction::Outbound, e.event);
                // The range returned by the SA is inside the storage.
                if buf.set_range(e.esp).is_err() {
                    return self.drop_out(DropReason::BufferTooSmall);
                }
                self.outbound.count_packet(inner_len);
                OutboundAction::Encapsulated {
                    spi: sa.spi(),
                    tunnel: sa.tunnel(),
                    udp_encap: sa.udp_encap(),
                }
            }
            Err(d) => {
                self.expiry(sa.spi(), Direction::Outbound, d.event);
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
    /// of UDP).
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
        let range = buf.range();
        match sa.decapsulate(now, buf.storage_mut().as_mut(), range) {
            Ok(d) => {
                self.expiry(spi, Direction::Inbound, d.event);
                let len = d.inner.len();
                if buf.set_range(d.inner).is_err() {
                    return self.drop_in(DropReason::Truncated);
                }
                self.inbound.count_packet(len);
                InboundAction::Inner {
                    spi,
                    version: d.version,
                }
            }
            Err(d) => {
                self.expiry(spi, Direction::Inbound, d.event);
                InboundAction::Discard(d.reason)
            }
        }
    }

    /// [`DataPath::process_outbound`] over a batch; writes one action per
    /// buffer into `actions` (up to the shorter length, which it returns).
    pub fn process_outbound_batch<S: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        now: Instant,
        bufs: &mut [PacketBuf<S>],
        actions: &mut [OutboundAction],
    ) -> usize {
        run_batch(bufs, actions, |b| self.process_outbound(now, b))
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
