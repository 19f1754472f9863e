//! The sans-IO IKEv1 endpoint: every ISAKMP SA of a process, looked up by
//! initiator cookie, driven exactly like the IKEv2 [`crate::Endpoint`]
//! (`handle_datagram` / `handle_timeout` in, `poll_transmit` /
//! `poll_event` / `poll_timeout` out) and reporting the same
//! [`Event`]s. It also applies what spans SAs: the quick mode that follows
//! a first main mode, phase-1 rekeys (a new main mode, Child SAs moved to
//! it, the old SA deleted) and INITIAL-CONTACT.
//!
//! New main modes pass the IKEv2 flood limits of [`Config::flood`] (as
//! charon applies them to IKEv1 too): a source with `block_threshold`
//! half-open responder SAs, or `init_limit_half_open` half-open SAs in all,
//! gets no answer; a half-open SA is freed after `half_open_timeout`. Main
//! mode has no stateless cookie round trip, so the cookie rules do not
//! apply. The IKEv1 and IKEv2 endpoints each count their own half-open
//! SAs against the cap.

use super::sa::{Ctx, Datagram, IsakmpSa};
use super::wire::{self, Exchange, Header};
use super::Error;
use crate::config::{Config, ConnId, PeerConfig};
use crate::events::{ApiError, ChildDeleteReason, DownReason, Event, IkeSaStats, Transmit};
use crate::flood::InitDrops;
use crate::proposal::IkeChoice;
use core::fmt;
use rand_core::CryptoRngCore;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

/// A sans-IO IKEv1 endpoint serving many ISAKMP SAs.
pub struct Endpoint {
    config: Config,
    rng: Box<dyn CryptoRngCore + Send>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    peers: Vec<PeerConfig>,
    sas: BTreeMap<u64, IsakmpSa>,
    /// Initiator cookie -> SA id.
    by_cookie: HashMap<u64, u64>,
    /// SA id of a rekeying SA -> the SA it replaces.
    replaces: HashMap<u64, u64>,
    /// Responder SAs whose main mode is not complete: SA id -> source.
    half_open: HashMap<u64, IpAddr>,
    /// Half-open responder SAs per source address.
    half_open_per_source: HashMap<IpAddr, u32>,
    /// New main modes dropped by the flood limits, by reason.
    main_mode_drops: InitDrops,
    next_id: u64,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("v1::Endpoint")
            .field("peers", &self.peers.len())
            .field("isakmp_sas", &self.sas.len())
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// An endpoint that takes its randomness from the operating system.
    pub fn new(config: Config) -> Self {
        Endpoint::with_rng(config, Box::new(rand_core::OsRng))
    }

    /// An endpoint that takes its randomness from `rng`.
    pub fn with_rng(config: Config, rng: Box<dyn CryptoRngCore + Send>) -> Self {
        Endpoint {
            config,
            rng,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            peers: Vec::new(),
            sas: BTreeMap::new(),
            by_cookie: HashMap::new(),
            replaces: HashMap::new(),
            half_open: HashMap::new(),
            half_open_per_source: HashMap::new(),
            main_mode_drops: InitDrops::default(),
            next_id: 1,
        }
    }

    /// Adds a connection (used as initiator and as responder; as responder
    /// it is chosen by the peer's address, since main mode with PSK must
    /// pick the key before the identity is known).
    pub fn add_peer(&mut self, peer: PeerConfig) -> ConnId {
        self.peers.push(peer);
        ConnId(self.peers.len() - 1)
    }

    /// The configuration of a connection.
    pub fn peer(&self, conn: ConnId) -> Option<&PeerConfig> {
        self.peers.get(conn.0)
    }

    /// Replaces the configuration of `conn` (a reload); its SAs stay and
    /// follow `peer` from now on (timers, proposals of the next exchange).
    /// Returns the previous configuration.
    pub fn replace_peer(&mut self, conn: ConnId, peer: PeerConfig) -> Result<PeerConfig, ApiError> {
        let slot = self.peers.get_mut(conn.0).ok_or(ApiError::UnknownConn)?;
        Ok(std::mem::replace(slot, peer))
    }

    /// Retires `conn`: no proposal is left to offer or accept (so it can
    /// neither be initiated nor answer a main mode or quick mode) and its
    /// PSK is wiped; its SAs live on until deleted. The id is not reused.
    pub fn retire_peer(&mut self, conn: ConnId) -> Result<(), ApiError> {
        let peer = self.peers.get_mut(conn.0).ok_or(ApiError::UnknownConn)?;
        peer.ike_proposals.clear();
        peer.esp_proposals.clear();
        peer.psk = crate::config::Psk::new(Vec::new());
        Ok(())
    }

    fn split(&mut self) -> (Ctx<'_>, &[PeerConfig], &mut BTreeMap<u64, IsakmpSa>) {
        (
            Ctx {
                config: &self.config,
                rng: &mut *self.rng,
                transmits: &mut self.transmits,
                events: &mut self.events,
            },
            &self.peers,
            &mut self.sas,
        )
    }

    fn insert(&mut self, sa: IsakmpSa) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.by_cookie.insert(sa.cookie_i, id);
        self.sas.insert(id, sa);
        id
    }

    /// Starts main mode for `conn`; quick mode follows when it completes.
    pub fn initiate(&mut self, now: Instant, conn: ConnId) -> Result<(), ApiError> {
        let (mut cx, peers, _) = self.split();
        let peer = peers.get(conn.0).ok_or(ApiError::UnknownConn)?;
        let sa =
            IsakmpSa::initiate(now, conn, peer, true, &mut cx).map_err(|_| ApiError::BadConfig)?;
        self.insert(sa);
        Ok(())
    }

    /// The newest established, not replaced SA of `conn`.
    fn established(&self, conn: ConnId) -> Result<u64, ApiError> {
        if conn.0 >= self.peers.len() {
            return Err(ApiError::UnknownConn);
        }
        self.sas
            .iter()
            .rev()
            .find(|(_, s)| s.conn == conn && s.is_established() && !s.replaced)
            .map(|(id, _)| *id)
            .ok_or(ApiError::NotEstablished)
    }

    fn on_established(
        &mut self,
        now: Instant,
        conn: ConnId,
        f: impl FnOnce(&mut IsakmpSa, &PeerConfig, &mut Ctx<'_>) -> Result<(), ApiError>,
    ) -> Result<(), ApiError> {
        let id = self.established(conn)?;
        let (mut cx, peers, sas) = self.split();
        let peer = peers.get(conn.0).ok_or(ApiError::UnknownConn)?;
        let sa = sas.get_mut(&id).ok_or(ApiError::NotEstablished)?;
        let r = f(sa, peer, &mut cx);
        self.after(now, id);
        r
    }

    /// Rekeys the Child SA with inbound SPI `spi_in` (a new quick mode).
    pub fn rekey_child(&mut self, now: Instant, conn: ConnId, spi_in: u32) -> Result<(), ApiError> {
        self.on_established(now, conn, |sa, peer, cx| {
            if !sa.child_spis().iter().any(|c| c.0 == spi_in) {
                return Err(ApiError::UnknownChild);
            }
            sa.start_quick(now, peer, Some(spi_in), cx)
                .map_err(|_| ApiError::BadConfig)
        })
    }

    /// Starts a new quick mode for an additional Child SA.
    pub fn create_child(&mut self, now: Instant, conn: ConnId) -> Result<(), ApiError> {
        self.on_established(now, conn, |sa, peer, cx| {
            sa.start_quick(now, peer, None, cx)
                .map_err(|_| ApiError::BadConfig)
        })
    }

    /// Rekeys the ISAKMP SA of `conn` (a new main mode).
    pub fn rekey_ike(&mut self, now: Instant, conn: ConnId) -> Result<(), ApiError> {
        self.on_established(now, conn, |sa, _, _| {
            sa.wants_rekey = true;
            Ok(())
        })
    }

    /// Deletes the ISAKMP SA of `conn` and its IPsec SAs (DELETE for each).
    pub fn delete(&mut self, now: Instant, conn: ConnId) -> Result<(), ApiError> {
        self.on_established(now, conn, |sa, _, cx| {
            let spis: Vec<u32> = sa.child_spis().iter().map(|c| c.0).collect();
            if !spis.is_empty() {
                sa.send_delete_esp(&spis, cx);
            }
            sa.send_delete_isakmp(cx);
            sa.close(DownReason::LocalDelete, cx);
            Ok(())
        })
    }

    /// Deletes one IPsec SA (DELETE to the peer).
    pub fn delete_child(
        &mut self,
        now: Instant,
        conn: ConnId,
        spi_in: u32,
    ) -> Result<(), ApiError> {
        self.on_established(now, conn, |sa, _, cx| {
            if !sa.child_spis().iter().any(|c| c.0 == spi_in) {
                return Err(ApiError::UnknownChild);
            }
            sa.send_delete_esp(&[spi_in], cx);
            sa.drop_child(spi_in, ChildDeleteReason::LocalDelete, cx);
            Ok(())
        })
    }

    /// Sends an R-U-THERE now.
    pub fn check_liveness(&mut self, now: Instant, conn: ConnId) -> Result<(), ApiError> {
        self.on_established(now, conn, |sa, peer, cx| {
            sa.probe(now, peer, cx);
            Ok(())
        })
    }

    fn established_sa(&self, conn: ConnId) -> Option<&IsakmpSa> {
        self.established(conn).ok().and_then(|id| self.sas.get(&id))
    }

    /// Counters of `conn`'s established ISAKMP SA.
    pub fn stats(&self, conn: ConnId) -> Option<IkeSaStats> {
        self.established_sa(conn).map(|s| s.stats)
    }

    /// (inbound, outbound) SPIs of `conn`'s IPsec SAs.
    pub fn child_sas(&self, conn: ConnId) -> Vec<(u32, u32)> {
        self.established_sa(conn)
            .map(IsakmpSa::child_spis)
            .unwrap_or_default()
    }

    /// Cookies (initiator, responder) of `conn`'s established ISAKMP SA.
    pub fn ike_spis(&self, conn: ConnId) -> Option<(u64, u64)> {
        self.established_sa(conn).map(|s| (s.cookie_i, s.cookie_r))
    }

    /// The phase-1 algorithms of `conn`, e.g. `aes128-sha1-modp1024`.
    pub fn ike_algorithms(&self, conn: ConnId) -> Option<IkeChoice> {
        self.established_sa(conn)
            .and_then(|s| s.choice.map(|c| c.ike_choice()))
    }

    /// When `conn`'s ISAKMP SA will be rekeyed (we rekey the SAs we
    /// initiated).
    pub fn ike_rekey_at(&self, conn: ConnId) -> Option<Instant> {
        self.established_sa(conn).and_then(|s| s.rekey_at)
    }

    /// When the IPsec SA with inbound SPI `spi_in` will be rekeyed.
    pub fn child_rekey_at(&self, conn: ConnId, spi_in: u32) -> Option<Instant> {
        self.established_sa(conn)
            .and_then(|s| s.child_rekey_at(spi_in))
    }

    /// Half-open responder ISAKMP SAs now (main mode message 2 sent, not
    /// yet established).
    pub fn half_open(&self) -> usize {
        self.half_open.len()
    }

    /// Source addresses now at the block threshold.
    pub fn blocked_sources(&self) -> u64 {
        let block = self.config.flood.effective_block_threshold();
        if block == 0 {
            return 0;
        }
        self.half_open_per_source
            .values()
            .filter(|n| **n >= block)
            .count() as u64
    }

    /// New main modes dropped by the flood limits since the endpoint was
    /// created (`blocked_source`, `half_open_limit`, `oversized`).
    pub fn main_mode_drops(&self) -> InitDrops {
        self.main_mode_drops
    }

    /// Number of ISAKMP SAs held (any state).
    pub fn ike_sa_count(&self) -> usize {
        self.sas.len()
    }

    /// Processes one received UDP payload (`local`: the address and port it
    /// arrived on; on the NAT-T port it must carry the non-ESP marker).
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
    ) -> Result<(), Error> {
        let msg = if local.port() == self.config.natt_port {
            match data {
                [0, 0, 0, 0, rest @ ..] => rest,
                _ => return Err(Error::NotIsakmp),
            }
        } else {
            data
        };
        let header = Header::parse(msg)?;
        if header.exchange == Exchange::AGGRESSIVE {
            return Err(Error::AggressiveModeRefused);
        }
        let d = Datagram {
            local,
            remote,
            bytes: msg,
            header,
        };
        let Some(&id) = self.by_cookie.get(&header.cookie_i) else {
            if header.exchange == Exchange::MAIN && header.cookie_r == 0 && !header.is_encrypted() {
                return self.respond(now, &d);
            }
            return Err(Error::UnknownCookie);
        };
        let (mut cx, peers, sas) = self.split();
        let sa = sas.get_mut(&id).ok_or(Error::UnknownCookie)?;
        // A retransmitted message 1 still carries a zero responder cookie.
        let resent_first = header.cookie_r == 0 && sa.is_last_received(msg);
        if sa.cookie_r != 0 && header.cookie_r != sa.cookie_r && !resent_first {
            return Err(Error::UnknownCookie);
        }
        let peer = peers.get(sa.conn.0).ok_or(Error::UnknownCookie)?;
        let r = sa.handle(now, &d, peer, &mut cx);
        if r.is_err() {
            sa.stats.dropped += 1;
        }
        self.after(now, id);
        r
    }

    /// The flood limits for a new main mode from `d.remote`.
    fn admit(&mut self, d: &Datagram<'_>) -> Result<(), Error> {
        let limits = self.config.flood;
        let ip = d.remote.ip();
        let block = limits.effective_block_threshold();
        if d.bytes.len() > limits.max_init_request_len {
            self.main_mode_drops.oversized += 1;
        } else if block != 0 && self.half_open_per_source.get(&ip).copied().unwrap_or(0) >= block {
            self.main_mode_drops.blocked_source += 1;
        } else if limits.init_limit_half_open != 0
            && self.half_open.len() >= limits.init_limit_half_open as usize
        {
            self.main_mode_drops.half_open_limit += 1;
        } else {
            return Ok(());
        }
        Err(Error::Limited)
    }

    /// SA `id` is no longer half-open (established, closed or removed).
    fn leave_half_open(&mut self, id: u64) {
        let Some(ip) = self.half_open.remove(&id) else {
            return;
        };
        if let Some(n) = self.half_open_per_source.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.half_open_per_source.remove(&ip);
            }
        }
        if self.half_open.is_empty() && self.half_open.capacity() > 64 {
            self.half_open.shrink_to_fit();
            self.half_open_per_source.shrink_to_fit();
        }
    }

    fn respond(&mut self, now: Instant, d: &Datagram<'_>) -> Result<(), Error> {
        self.admit(d)?;
        let ip = d.remote.ip();
        let conn = self
            .peers
            .iter()
            .position(|p| p.remote.ip() == ip)
            .or_else(|| {
                self.peers
                    .iter()
                    .position(|p| p.remote.ip().is_unspecified())
            })
            .map(ConnId)
            .ok_or(Error::NoMatchingPeer)?;
        let (mut cx, peers, _) = self.split();
        let sa = match IsakmpSa::respond(now, d, conn, &peers[conn.0], &mut cx) {
            Ok(sa) => sa,
            Err(Error::NoProposalChosen) => {
                // Tell the initiator at once (unprotected, as nothing is
                // keyed yet) instead of letting it retransmit into silence.
                let natt = d.local.port() == cx.config.natt_port;
                cx.transmits.push_back(super::info::refusal(
                    d,
                    wire::notify::NO_PROPOSAL_CHOSEN,
                    natt,
                ));
                return Err(Error::NoProposalChosen);
            }
            Err(e) => return Err(e),
        };
        let id = self.insert(sa);
        self.half_open.insert(id, ip);
        *self.half_open_per_source.entry(ip).or_insert(0) += 1;
        Ok(())
    }

    /// Applies what spans SAs after a call on SA `id`.
    fn after(&mut self, now: Instant, id: u64) {
        let Some(sa) = self.sas.get_mut(&id) else {
            self.leave_half_open(id);
            return;
        };
        if sa.is_established() || sa.is_closed() {
            self.leave_half_open(id);
        }
        let Some(sa) = self.sas.get_mut(&id) else {
            return;
        };
        let up = std::mem::take(&mut sa.just_established);
        let rekey = std::mem::take(&mut sa.wants_rekey);
        let (conn, initiator, initial_contact) = (sa.conn, sa.initiator, sa.got_initial_contact);
        if up {
            self.on_up(now, id, conn, initiator, initial_contact);
        }
        if rekey {
            let (mut cx, peers, _) = self.split();
            if let Some(peer) = peers.get(conn.0) {
                if let Ok(new) = IsakmpSa::initiate(now, conn, peer, false, &mut cx) {
                    let new_id = self.insert(new);
                    self.replaces.insert(new_id, id);
                }
            }
        }
        if self.sas.get(&id).is_some_and(IsakmpSa::is_closed) {
            if let Some(sa) = self.sas.remove(&id) {
                self.by_cookie.remove(&sa.cookie_i);
            }
            self.replaces.remove(&id);
        }
    }

    /// Phase 1 of SA `id` completed.
    fn on_up(&mut self, now: Instant, id: u64, conn: ConnId, initiator: bool, ic: bool) {
        let old: Vec<u64> = self
            .sas
            .iter()
            .filter(|(k, s)| **k != id && s.conn == conn && s.is_established() && !s.replaced)
            .map(|(k, _)| *k)
            .collect();
        let replaced = self.replaces.remove(&id);
        let (mut cx, peers, sas) = self.split();
        let Some(peer) = peers.get(conn.0) else {
            return;
        };
        if ic && !initiator {
            for k in &old {
                if let Some(s) = sas.get_mut(k) {
                    s.close(DownReason::InitialContact, &mut cx);
                }
            }
        } else if let Some(&old_id) = old.first() {
            // A phase-1 rekey: the IPsec SAs move to the new ISAKMP SA.
            // The rekeying side deletes the old one; the other keeps it a
            // while to take that DELETE.
            let mut moved = Vec::new();
            let mut old_spis = (0, 0);
            if let Some(o) = sas.get_mut(&old_id) {
                moved = std::mem::take(&mut o.children);
                old_spis = (o.cookie_i, o.cookie_r);
                o.retire(now);
                if initiator {
                    o.send_delete_isakmp(&mut cx);
                    o.close(DownReason::LocalDelete, &mut cx);
                }
            }
            if let Some(n) = sas.get_mut(&id) {
                n.children.extend(moved);
                if let Some(c) = n.choice {
                    cx.events.push_back(Event::IkeSaRekeyed {
                        conn,
                        old: old_spis,
                        new: (n.cookie_i, n.cookie_r),
                        algorithms: c.ike_choice(),
                    });
                }
            }
        } else if initiator || replaced.is_some() {
            if let Some(n) = sas.get_mut(&id) {
                let _ = n.start_quick(now, peer, None, &mut cx);
            }
        }
        for k in old {
            if self.sas.get(&k).is_some_and(IsakmpSa::is_closed) {
                if let Some(s) = self.sas.remove(&k) {
                    self.by_cookie.remove(&s.cookie_i);
                }
            }
        }
    }

    /// Processes timer expiries up to `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let ids: Vec<u64> = self.sas.keys().copied().collect();
        for id in ids {
            let (mut cx, peers, sas) = self.split();
            if let Some(sa) = sas.get_mut(&id) {
                if let Some(peer) = peers.get(sa.conn.0) {
                    sa.handle_timeout(now, peer, &mut cx);
                }
            }
            self.after(now, id);
        }
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Endpoint::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.sas.values().filter_map(IsakmpSa::next_timeout).min()
    }
}
