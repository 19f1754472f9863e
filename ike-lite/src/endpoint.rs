//! The sans-IO IKEv2 endpoint (quinn-proto style).
//!
//! One [`Endpoint`] serves every IKE SA of the host and demultiplexes
//! datagrams by IKE SPI. It never reads a clock and never touches a socket:
//! the driver feeds datagrams ([`Endpoint::handle_datagram`]) and timer
//! expiries ([`Endpoint::handle_timeout`]) in, each with the current
//! `Instant`, and drains [`Endpoint::poll_transmit`],
//! [`Endpoint::poll_event`] and [`Endpoint::poll_timeout`].
//!
//! It owns the SA tables (by id, by our SPI; half-open responder SAs in
//! [`flood`](crate::flood)'s table, by the initiator's SPI and address,
//! per source and by deadline) and applies what each SA call returns (new
//! SAs from an IKE rekey, INITIAL_CONTACT, removal). A new IKE_SA_INIT
//! request passes the flood guard (cookies, per-source and global
//! half-open limits) before any SA work; [`Endpoint::endpoint_stats`]
//! counts what happened. Randomness comes from one RNG, the operating
//! system's unless [`Endpoint::with_rng`] injects another.

use crate::config::{Config, ConnId, PeerConfig};
use crate::events::{
    ApiError, DatagramError, DownReason, Event, IkeSaSecrets, IkeSaStats, Transmit,
};
use crate::flood::{self, EndpointStats, Guard, HalfOpenTable, InitRequest, Verdict};
use crate::message::{ExchangeType, Header, ParseError, HEADER_LEN};
use crate::proposal::IkeChoice;
use crate::sa::{self, Ctx, Datagram, IkeSa, Outcome, Status, Task};
use core::fmt;
use rand_core::CryptoRngCore;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;
use zeroize::Zeroizing;

/// What every SA call borrows: the configuration, the RNG and the output
/// queues.
struct Shared {
    config: Config,
    rng: Box<dyn CryptoRngCore + Send>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
}

impl Shared {
    fn ctx(&mut self) -> Ctx<'_> {
        Ctx {
            config: &self.config,
            rng: &mut *self.rng,
            transmits: &mut self.transmits,
            events: &mut self.events,
        }
    }
}

/// A sans-IO IKEv2 endpoint serving many IKE SAs.
pub struct Endpoint {
    shared: Shared,
    peers: Vec<PeerConfig>,
    /// Every SA but the half-open responder ones. Boxed: a BTreeMap node
    /// holds 11 entries inline, mostly half empty.
    sas: BTreeMap<u64, Box<IkeSa>>,
    /// Half-open responder SAs (waiting for IKE_AUTH), apart so that the
    /// timers of the others are found without walking a flood's worth.
    half_open: HalfOpenTable<Box<IkeSa>>,
    /// Our SPI -> SA id (both tables).
    by_spi: HashMap<u64, u64>,
    next_id: u64,
    /// Admission of new IKE_SA_INIT requests, and the counters.
    guard: Guard,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("peers", &self.peers.len())
            .field("ike_sas", &self.sas.len())
            .field("half_open", &self.half_open.len())
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// Creates an endpoint that takes its randomness (SPIs, nonces,
    /// Diffie-Hellman private keys, the cookie secret) from the operating
    /// system.
    pub fn new(config: Config) -> Self {
        Endpoint::with_rng(config, Box::new(rand_core::OsRng))
    }

    /// Creates an endpoint that takes its randomness from `rng`. With a
    /// seeded RNG (and the same calls) it sends the same bytes every run.
    pub fn with_rng(config: Config, mut rng: Box<dyn CryptoRngCore + Send>) -> Self {
        let mut secret = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut secret[..]);
        Endpoint {
            shared: Shared {
                config,
                rng,
                transmits: VecDeque::new(),
                events: VecDeque::new(),
            },
            peers: Vec::new(),
            sas: BTreeMap::new(),
            half_open: HalfOpenTable::default(),
            by_spi: HashMap::new(),
            next_id: 1,
            guard: Guard::new(secret),
        }
    }

    /// Adds a connection definition (used as initiator and as responder).
    pub fn add_peer(&mut self, peer: PeerConfig) -> ConnId {
        self.peers.push(peer);
        ConnId(self.peers.len() - 1)
    }

    /// The configuration of a connection.
    pub fn peer(&self, conn: ConnId) -> Option<&PeerConfig> {
        self.peers.get(conn.0)
    }

    /// Replaces the configuration of `conn` (a reload). SAs of the
    /// connection stay; what they do next (DPD, retransmissions, rekeys,
    /// the proposals of the next rekey, a responder's match) follows
    /// `peer`. Returns the previous configuration.
    pub fn replace_peer(&mut self, conn: ConnId, peer: PeerConfig) -> Result<PeerConfig, ApiError> {
        let slot = self.peers.get_mut(conn.0).ok_or(ApiError::UnknownConn)?;
        Ok(std::mem::replace(slot, peer))
    }

    /// Retires `conn` (removed from the configuration): it no longer
    /// matches any IKE_SA_INIT or IKE_AUTH request, accepts no rekey and
    /// cannot be initiated; its SAs live on until deleted (see
    /// [`Endpoint::delete`]). Its [`ConnId`] is not reused.
    pub fn retire_peer(&mut self, conn: ConnId) -> Result<(), ApiError> {
        let peer = self.peers.get_mut(conn.0).ok_or(ApiError::UnknownConn)?;
        // Without proposals nothing can be negotiated with it; keys wiped.
        peer.ike_proposals.clear();
        peer.esp_proposals.clear();
        peer.psk = crate::config::Psk::new(Vec::new());
        Ok(())
    }

    /// Starts IKE_SA_INIT for `conn`.
    pub fn initiate(&mut self, now: Instant, conn: ConnId) -> Result<(), ApiError> {
        let peer = self.peers.get(conn.0).ok_or(ApiError::UnknownConn)?;
        if peer.ike_proposals.is_empty() {
            // Retired (or configured without proposals): nothing to offer.
            return Err(ApiError::UnknownConn);
        }
        let sa = IkeSa::initiate(now, conn, peer, &mut self.shared.ctx())?;
        self.insert(sa);
        Ok(())
    }

    /// Registers a new SA (not half-open); returns its id.
    fn insert(&mut self, sa: IkeSa) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.by_spi.insert(sa.our_spi(), id);
        self.sas.insert(id, Box::new(sa));
        id
    }

    /// Registers a new half-open responder SA started by the request
    /// `key` (initiator SPI, address); it is freed at `deadline`.
    fn insert_half_open(&mut self, sa: IkeSa, key: (u64, SocketAddr), deadline: Instant) {
        let id = self.next_id;
        self.next_id += 1;
        self.by_spi.insert(sa.our_spi(), id);
        let block = self.block_threshold();
        self.half_open
            .insert(id, key, deadline, Box::new(sa), block);
    }

    fn block_threshold(&self) -> u32 {
        self.shared.config.flood.effective_block_threshold()
    }

    /// Removes SA `id` from whichever table holds it.
    fn remove(&mut self, id: u64) {
        let block = self.block_threshold();
        let sa = match self.sas.remove(&id) {
            Some(sa) => sa,
            None => match self.half_open.remove(id, block) {
                Some(sa) => sa,
                None => return,
            },
        };
        self.by_spi.remove(&sa.our_spi());
    }

    fn established(&self, conn: ConnId) -> Result<u64, ApiError> {
        if conn.0 >= self.peers.len() {
            return Err(ApiError::UnknownConn);
        }
        self.sas
            .iter()
            .find(|(_, sa)| sa.conn == conn && sa.is_established())
            .map(|(id, _)| *id)
            .ok_or(ApiError::NotEstablished)
    }

    /// The established SA of `conn`.
    fn established_sa(&self, conn: ConnId) -> Option<&IkeSa> {
        let id = self.established(conn).ok()?;
        self.sas.get(&id).map(|sa| &**sa)
    }

    /// Runs `f` on SA `id` (`None` when there is no such SA). The caller
    /// applies the [`Outcome`] that `f` returns.
    fn call<R>(
        &mut self,
        id: u64,
        f: impl FnOnce(&mut IkeSa, &[PeerConfig], &mut Ctx<'_>) -> R,
    ) -> Option<R> {
        let sa = match self.sas.get_mut(&id) {
            Some(sa) => sa,
            None => self.half_open.get_mut(id)?,
        };
        Some(f(sa, &self.peers, &mut self.shared.ctx()))
    }

    /// Runs `f` on the established SA of `conn` with its configuration
    /// and applies the outcome.
    fn on_established(
        &mut self,
        conn: ConnId,
        f: impl FnOnce(&mut IkeSa, &PeerConfig, &mut Ctx<'_>) -> Result<Outcome, ApiError>,
    ) -> Result<(), ApiError> {
        let id = self.established(conn)?;
        let outcome = self
            .call(id, |sa, peers, cx| match peers.get(sa.conn.0) {
                Some(peer) => f(sa, peer, cx),
                None => Err(ApiError::UnknownConn),
            })
            .ok_or(ApiError::NotEstablished)??;
        self.apply(id, outcome);
        Ok(())
    }

    /// Starts `task` on the established SA of `conn`.
    fn request(&mut self, now: Instant, conn: ConnId, task: Task) -> Result<(), ApiError> {
        self.on_established(conn, |sa, peer, cx| Ok(sa.request(now, task, peer, cx)))
    }

    /// Starts rekeying the Child SA with inbound SPI `spi_in`.
    pub fn rekey_child(&mut self, now: Instant, conn: ConnId, spi_in: u32) -> Result<(), ApiError> {
        self.on_established(conn, |sa, peer, cx| {
            sa.queue_rekey_child(now, spi_in, peer, cx)
        })
    }

    /// Starts rekeying the IKE SA of `conn`.
    pub fn rekey_ike(&mut self, now: Instant, conn: ConnId) -> Result<(), ApiError> {
        self.request(now, conn, Task::RekeyIke)
    }

    /// Deletes the IKE SA of `conn` (and with it every Child SA).
    pub fn delete(&mut self, now: Instant, conn: ConnId) -> Result<(), ApiError> {
        self.request(now, conn, Task::DeleteIke(DownReason::LocalDelete))
    }

    /// Deletes one Child SA of `conn`.
    pub fn delete_child(
        &mut self,
        now: Instant,
        conn: ConnId,
        spi_in: u32,
    ) -> Result<(), ApiError> {
        self.on_established(conn, |sa, peer, cx| {
            sa.queue_delete_child(now, spi_in, peer, cx)
        })
    }

    /// Sends a liveness check (empty INFORMATIONAL) now.
    pub fn check_liveness(&mut self, now: Instant, conn: ConnId) -> Result<(), ApiError> {
        self.request(now, conn, Task::Dpd)
    }

    /// Counters of the established IKE SA of `conn`.
    pub fn stats(&self, conn: ConnId) -> Option<IkeSaStats> {
        self.established_sa(conn).map(IkeSa::stats)
    }

    /// (inbound, outbound) SPIs of the Child SAs of `conn`'s established IKE SA.
    pub fn child_sas(&self, conn: ConnId) -> Vec<(u32, u32)> {
        self.established_sa(conn)
            .map(IkeSa::child_spis)
            .unwrap_or_default()
    }

    /// SPIs (initiator, responder) of `conn`'s established IKE SA.
    pub fn ike_spis(&self, conn: ConnId) -> Option<(u64, u64)> {
        self.established_sa(conn).map(|s| (s.spi_i, s.spi_r))
    }

    /// The negotiated algorithms of `conn`'s established IKE SA.
    pub fn ike_algorithms(&self, conn: ConnId) -> Option<IkeChoice> {
        self.established_sa(conn).and_then(IkeSa::algorithms)
    }

    /// The secrets of `conn`'s established IKE SA; `None` unless
    /// [`Config::export_ike_keys`] is set.
    pub fn ike_sa_secrets(&self, conn: ConnId) -> Option<IkeSaSecrets> {
        if !self.shared.config.export_ike_keys {
            return None;
        }
        self.established_sa(conn).and_then(IkeSa::secrets)
    }

    /// When `conn`'s established IKE SA will start its rekey (the time
    /// chosen with fuzz when it was established); `None` when no rekey is
    /// scheduled (one is running, or the SA is not established).
    pub fn ike_rekey_at(&self, conn: ConnId) -> Option<Instant> {
        self.established_sa(conn).and_then(IkeSa::rekey_at)
    }

    /// When the Child SA with inbound SPI `spi_in` will be rekeyed (chosen
    /// with fuzz when it was installed); `None` when unknown, replaced, or
    /// its rekey is already running.
    pub fn child_rekey_at(&self, conn: ConnId, spi_in: u32) -> Option<Instant> {
        self.established_sa(conn)
            .and_then(|s| s.child_rekey_at(spi_in))
    }

    /// Number of IKE SAs held (any state, half-open ones included).
    pub fn ike_sa_count(&self) -> usize {
        self.sas.len() + self.half_open.len()
    }

    /// The endpoint-wide counters: half-open SAs, cookies, IKE_SA_INIT
    /// requests dropped by the flood limits, messages received.
    pub fn endpoint_stats(&self) -> EndpointStats {
        EndpointStats {
            half_open: self.half_open.len() as u64,
            blocked_sources: self.half_open.blocked(),
            ..self.guard.stats
        }
    }

    /// Processes one received UDP payload. `local` is the address it was
    /// received on (its port tells whether the non-ESP marker is present),
    /// `remote` its source.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
    ) -> Result<(), DatagramError> {
        let mut exchange = None;
        let result = self.dispatch(now, local, remote, data, &mut exchange);
        let received = &mut self.guard.stats.received;
        match exchange {
            None => received.unparsable += 1,
            Some(x) => received.count(
                x,
                match result {
                    Ok(()) => flood::Outcome::Handled,
                    Err(DatagramError::Refused) => flood::Outcome::Refused,
                    Err(_) => flood::Outcome::Dropped,
                },
            ),
        }
        result
    }

    /// [`Endpoint::handle_datagram`] without the counting; sets `exchange`
    /// once the header parsed.
    fn dispatch(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
        exchange: &mut Option<ExchangeType>,
    ) -> Result<(), DatagramError> {
        let natt = local.port() == self.shared.config.natt_port;
        let msg = if natt {
            match data {
                [0, 0, 0, 0, rest @ ..] => rest,
                _ => return Err(DatagramError::NotIke),
            }
        } else {
            data
        };
        if msg.len() < HEADER_LEN {
            return Err(DatagramError::NotIke);
        }
        let header = match Header::parse(msg) {
            Ok(h) => h,
            Err(ParseError::UnsupportedMajorVersion(_)) => {
                let h = Header::parse_unchecked(msg).map_err(DatagramError::Parse)?;
                if !h.is_response() {
                    sa::answer_invalid_major(&h, local, remote, natt, &mut self.shared.transmits);
                }
                return Err(DatagramError::Parse(ParseError::UnsupportedMajorVersion(
                    h.major,
                )));
            }
            Err(e) => return Err(DatagramError::Parse(e)),
        };
        *exchange = Some(header.exchange);
        let d = Datagram {
            local,
            remote,
            natt,
            header: &header,
            bytes: msg,
        };
        if header.exchange == ExchangeType::IKE_SA_INIT
            && !header.is_response()
            && header.spi_r == 0
        {
            return self.handle_init_request(now, &d);
        }
        // Our SPI is the responder SPI when the sender is the original initiator.
        let ours = if header.is_initiator() {
            header.spi_r
        } else {
            header.spi_i
        };
        let id = *self.by_spi.get(&ours).ok_or(DatagramError::UnknownSpi)?;
        let handled = self
            .call(id, |sa, peers, cx| sa.handle(now, &d, peers, cx))
            .ok_or(DatagramError::UnknownSpi)?;
        self.apply(id, handled.outcome);
        handled.result
    }

    /// An IKE_SA_INIT request without a responder SPI: a retransmission
    /// is answered from the half-open SA; a new one passes the flood guard
    /// before any work (no Diffie-Hellman, nonce or state when it is
    /// answered with a cookie or dropped).
    fn handle_init_request(&mut self, now: Instant, d: &Datagram<'_>) -> Result<(), DatagramError> {
        let key = (d.header.spi_i, d.remote);
        if let Some(id) = self.half_open.find(&key) {
            let handled = self
                .call(id, |sa, _, cx| sa.resend_init_response(d.bytes, cx))
                .ok_or(DatagramError::Unexpected)?;
            self.apply(id, handled.outcome);
            return handled.result;
        }
        let req = InitRequest {
            remote: d.remote.ip(),
            spi_i: d.header.spi_i,
            msg: d.bytes,
        };
        let limits = self.shared.config.flood;
        let global = self.half_open.count();
        let of_source = self.half_open.count_from(req.remote);
        match self
            .guard
            .check_init(&limits, now, &req, global, of_source, &mut *self.shared.rng)
        {
            Verdict::Admit => {}
            Verdict::Cookie(cookie) => {
                let msg = flood::cookie_response(d.header.spi_i, &cookie);
                self.shared.transmits.push_back(Transmit {
                    src: d.local,
                    dst: d.remote,
                    payload: if d.natt {
                        [&[0u8; 4][..], &msg].concat()
                    } else {
                        msg
                    },
                    non_esp_marker: d.natt,
                });
                return Err(DatagramError::Refused);
            }
            Verdict::Drop => return Err(DatagramError::Limited),
        }
        let sa = IkeSa::respond_init(now, d, &self.peers, &mut self.shared.ctx())?;
        self.insert_half_open(sa, key, now + limits.half_open_timeout);
        Ok(())
    }

    /// Applies what a call on SA `id` returned: INITIAL_CONTACT drops the
    /// peer's older SAs, a closed SA is removed, one that is no longer
    /// half-open leaves that table, spawned SAs are registered.
    fn apply(&mut self, id: u64, outcome: Outcome) {
        let Outcome {
            spawned,
            initial_contact,
            status,
        } = outcome;
        if let Some(who) = initial_contact {
            // RFC 7296 §2.4: only the SAs of the same authenticated identity
            // are stale; other peers served by the same connection stay.
            // The SA is usually still half-open (IKE_AUTH just completed).
            let conn = self
                .sas
                .get(&id)
                .or_else(|| self.half_open.get(id))
                .map(|sa| sa.conn);
            let stale: Vec<u64> = self
                .sas
                .iter()
                .filter(|(k, sa)| {
                    **k != id
                        && Some(sa.conn) == conn
                        && sa.is_established()
                        && sa.peer_identity() == Some(&who)
                })
                .map(|(k, _)| *k)
                .collect();
            for k in stale {
                if let Some(o) = self.call(k, |s, _, cx| s.drop_stale(cx)) {
                    self.apply(k, o);
                }
            }
        }
        match status {
            Status::Closed => self.remove(id),
            Status::Live if self.half_open.contains(id) => {
                let block = self.block_threshold();
                if let Some(sa) = self.half_open.remove(id, block) {
                    self.sas.insert(id, sa);
                }
            }
            Status::Live | Status::HalfOpen => {}
        }
        for new in spawned {
            self.insert(new);
        }
    }

    /// Processes timer expiries up to `now`: half-open SAs past their
    /// deadline are freed, the others run their timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        let expired = self.half_open.expired(now);
        if !expired.is_empty() {
            self.guard.stats.half_open_expired += expired.len() as u64;
            for id in expired {
                self.remove(id);
            }
            self.half_open.shrink();
            if self.by_spi.capacity() > 64 && self.by_spi.len() * 4 < self.by_spi.capacity() {
                self.by_spi.shrink_to(self.by_spi.len() * 2);
            }
        }
        let ids: Vec<u64> = self.sas.keys().copied().collect();
        for id in ids {
            if let Some(o) = self.call(id, |sa, peers, cx| sa.handle_timeout(now, peers, cx)) {
                self.apply(id, o);
            }
        }
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.shared.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.shared.events.pop_front()
    }

    /// When [`Endpoint::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.sas
            .values()
            .filter_map(|sa| sa.next_timeout(&self.peers))
            .chain(self.half_open.next_deadline())
            .min()
    }
}
