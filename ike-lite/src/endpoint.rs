//! The sans-IO IKEv2 endpoint (quinn-proto style).
//!
//! One [`Endpoint`] serves every IKE SA of the host and demultiplexes
//! datagrams by IKE SPI. It never reads a clock and never touches a socket:
//! the driver feeds datagrams ([`Endpoint::handle_datagram`]) and timer
//! expiries ([`Endpoint::handle_timeout`]) in, each with the current
//! `Instant`, and drains [`Endpoint::poll_transmit`],
//! [`Endpoint::poll_event`] and [`Endpoint::poll_timeout`].

use crate::config::{Config, PeerConfig};
use crate::events::{
    ApiError, ConnId, DatagramError, DownReason, Event, IkeSaSecrets, IkeSaStats, Transmit,
};
use crate::message::{Header, ParseError, HEADER_LEN};
use crate::proposal::IkeChoice;
use crate::sa::{self, IkeSa, Out};
use core::fmt;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;
use zeroize::Zeroizing;

/// A sans-IO IKEv2 endpoint serving many IKE SAs.
pub struct Endpoint {
    config: Config,
    peers: Vec<PeerConfig>,
    /// Boxed: a BTreeMap node holds 11 entries inline, mostly half empty.
    sas: BTreeMap<u64, Box<IkeSa>>,
    /// Our SPI -> SA id.
    by_spi: HashMap<u64, u64>,
    /// (initiator SPI, peer address) -> SA id for half-open responder SAs.
    half_open: HashMap<(u64, SocketAddr), u64>,
    next_id: u64,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    cookie_secret: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("peers", &self.peers.len())
            .field("ike_sas", &self.sas.len())
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// Creates an endpoint.
    pub fn new(config: Config) -> Self {
        let mut secret = Zeroizing::new([0u8; 32]);
        crate::sa::fill_random(&mut secret[..]);
        Endpoint {
            config,
            peers: Vec::new(),
            sas: BTreeMap::new(),
            by_spi: HashMap::new(),
            half_open: HashMap::new(),
            next_id: 1,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            cookie_secret: secret,
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

    /// Starts IKE_SA_INIT for `conn`.
    pub fn initiate(&mut self, now: Instant, conn: ConnId) -> Result<(), ApiError> {
        let peer = self.peers.get(conn.0).ok_or(ApiError::UnknownConn)?;
        let id = self.next_id;
        let mut out = Out {
            config: &self.config,
            transmits: &mut self.transmits,
            events: &mut self.events,
        };
        let sa = IkeSa::initiate(now, conn, peer, &mut out)?;
        self.next_id += 1;
        self.by_spi.insert(sa.our_spi(), id);
        self.sas.insert(id, Box::new(sa));
        Ok(())
    }

    fn established(&self, conn: ConnId) -> Result<u64, ApiError> {
        if conn.0 >= self.peers.len() {
            return Err(ApiError::UnknownConn);
        }
        self.sas
            .iter()
            .find(|(_, s)| s.conn == conn && s.is_established())
            .map(|(id, _)| *id)
            .ok_or(ApiError::NotEstablished)
    }

    fn with_sa<R>(
        &mut self,
        id: u64,
        f: impl FnOnce(&mut IkeSa, &[PeerConfig], &mut Out<'_>) -> R,
    ) -> R {
        let mut out = Out {
            config: &self.config,
            transmits: &mut self.transmits,
            events: &mut self.events,
        };
        let sa = self.sas.get_mut(&id).expect("SA id from lookup");
        let r = f(sa, &self.peers, &mut out);
        self.after(id);
        r
    }

    /// Starts rekeying the Child SA with inbound SPI `spi_in`.
    pub fn rekey_child(&mut self, now: Instant, conn: ConnId, spi_in: u32) -> Result<(), ApiError> {
        let id = self.established(conn)?;
        self.with_sa(id, |sa, peers, out| {
            sa.queue_rekey_child(now, spi_in, &peers[sa.conn.0], out)
        })
    }

    /// Starts rekeying the IKE SA of `conn`.
    pub fn rekey_ike(&mut self, now: Instant, conn: ConnId) -> Result<(), ApiError> {
        let id = self.established(conn)?;
        self.with_sa(id, |sa, peers, out| {
            sa.queue(now, sa::Task::RekeyIke, &peers[sa.conn.0], out);
            Ok(())
        })
    }

    /// Deletes the IKE SA of `conn` (and with it every Child SA).
    pub fn delete(&mut self, now: Instant, conn: ConnId) -> Result<(), ApiError> {
        let id = self.established(conn)?;
        self.with_sa(id, |sa, peers, out| {
            sa.queue(
                now,
                sa::Task::DeleteIke(DownReason::LocalDelete),
                &peers[sa.conn.0],
                out,
            );
            Ok(())
        })
    }

    /// Deletes one Child SA of `conn`.
    pub fn delete_child(
        &mut self,
        now: Instant,
        conn: ConnId,
        spi_in: u32,
    ) -> Result<(), ApiError> {
        let id = self.established(conn)?;
        self.with_sa(id, |sa, peers, out| {
            sa.queue_delete_child(now, spi_in, &peers[sa.conn.0], out)
        })
    }

    /// Sends a liveness check (empty INFORMATIONAL) now.
    pub fn check_liveness(&mut self, now: Instant, conn: ConnId) -> Result<(), ApiError> {
        let id = self.established(conn)?;
        self.with_sa(id, |sa, peers, out| {
            sa.queue(now, sa::Task::Dpd, &peers[sa.conn.0], out);
            Ok(())
        })
    }

    /// Counters of the established IKE SA of `conn`.
    pub fn stats(&self, conn: ConnId) -> Option<IkeSaStats> {
        let id = self.established(conn).ok()?;
        self.sas.get(&id).map(|s| s.stats)
    }

    /// (inbound, outbound) SPIs of the Child SAs of `conn`'s established IKE SA.
    pub fn child_sas(&self, conn: ConnId) -> Vec<(u32, u32)> {
        match self.established(conn) {
            Ok(id) => self.sas[&id].child_spis(),
            Err(_) => Vec::new(),
        }
    }

    /// SPIs (initiator, responder) of `conn`'s established IKE SA.
    pub fn ike_spis(&self, conn: ConnId) -> Option<(u64, u64)> {
        let id = self.established(conn).ok()?;
        self.sas.get(&id).map(|s| (s.spi_i, s.spi_r))
    }

    /// The negotiated algorithms of `conn`'s established IKE SA.
    pub fn ike_algorithms(&self, conn: ConnId) -> Option<IkeChoice> {
        let id = self.established(conn).ok()?;
        self.sas.get(&id).and_then(|s| s.algorithms())
    }

    /// The secrets of `conn`'s established IKE SA; `None` unless
    /// [`Config::export_ike_keys`] is set.
    pub fn ike_sa_secrets(&self, conn: ConnId) -> Option<IkeSaSecrets> {
        if !self.config.export_ike_keys {
            return None;
        }
        let id = self.established(conn).ok()?;
        self.sas.get(&id).and_then(|s| s.secrets())
    }

    /// When `conn`'s established IKE SA will start its rekey (the time
    /// chosen with fuzz when it was established); `None` when no rekey is
    /// scheduled (one is running, or the SA is not established).
    pub fn ike_rekey_at(&self, conn: ConnId) -> Option<Instant> {
        let id = self.established(conn).ok()?;
        self.sas.get(&id).and_then(|s| s.rekey_at())
    }

    /// When the Child SA with inbound SPI `spi_in` will be rekeyed (chosen
    /// with fuzz when it was installed); `None` when unknown, replaced, or
    /// its rekey is already running.
    pub fn child_rekey_at(&self, conn: ConnId, spi_in: u32) -> Option<Instant> {
        let id = self.established(conn).ok()?;
        self.sas.get(&id).and_then(|s| s.child_rekey_at(spi_in))
    }

    /// Number of IKE SAs held (any state).
    pub fn ike_sa_count(&self) -> usize {
        self.sas.len()
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
        let natt = local.port() == self.config.natt_port;
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
                    sa::answer_invalid_major(&h, local, remote, natt, &mut self.transmits);
                }
                return Err(DatagramError::Parse(ParseError::UnsupportedMajorVersion(
                    h.major,
                )));
            }
            Err(e) => return Err(DatagramError::Parse(e)),
        };
        // Our SPI is the responder SPI when the sender is the original initiator.
        let ours = if header.is_initiator() {
            header.spi_r
        } else {
            header.spi_i
        };
        let result = if header.exchange == crate::message::ExchangeType::IKE_SA_INIT
            && !header.is_response()
            && header.spi_r == 0
        {
            self.handle_init_request(now, local, remote, natt, &header, msg)
        } else {
            let id = *self.by_spi.get(&ours).ok_or(DatagramError::UnknownSpi)?;
            let mut out = Out {
                config: &self.config,
                transmits: &mut self.transmits,
                events: &mut self.events,
            };
            let sa = self.sas.get_mut(&id).expect("by_spi points to live SA");
            let r = sa.handle(
                now,
                local,
                remote,
                natt,
                &header,
                msg,
                &self.peers,
                &mut out,
            );
            self.after(id);
            r
        };
        result
    }

    fn handle_init_request(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        natt: bool,
        header: &Header,
        msg: &[u8],
    ) -> Result<(), DatagramError> {
        if let Some(id) = self.half_open.get(&(header.spi_i, remote)).copied() {
            let mut out = Out {
                config: &self.config,
                transmits: &mut self.transmits,
                events: &mut self.events,
            };
            let sa = self.sas.get_mut(&id).expect("half-open SA exists");
            return sa.resend_init_response(msg, &mut out);
        }
        let half_open = self.half_open.len();
        let mut out = Out {
            config: &self.config,
            transmits: &mut self.transmits,
            events: &mut self.events,
        };
        let sa = IkeSa::respond_init(
            now,
            local,
            remote,
            natt,
            header,
            msg,
            &self.peers,
            half_open >= self.config.cookie_threshold,
            &self.cookie_secret[..],
            &mut out,
        )?;
        let id = self.next_id;
        self.next_id += 1;
        self.by_spi.insert(sa.our_spi(), id);
        self.half_open.insert((header.spi_i, remote), id);
        self.sas.insert(id, Box::new(sa));
        Ok(())
    }

    /// Bookkeeping after an SA was touched: spawned SAs, removal, half-open.
    fn after(&mut self, id: u64) {
        let Some(sa) = self.sas.get_mut(&id) else {
            return;
        };
        let spawned = std::mem::take(&mut sa.spawned);
        if std::mem::take(&mut sa.initial_contact) {
            // RFC 7296 §2.4: only the SAs of the same authenticated identity
            // are stale; other peers served by the same connection stay.
            let conn = sa.conn;
            let who = sa.peer_identity.clone();
            let stale: Vec<u64> = self
                .sas
                .iter()
                .filter(|(k, s)| {
                    **k != id
                        && s.conn == conn
                        && s.is_established()
                        && who.is_some()
                        && s.peer_identity == who
                })
                .map(|(k, _)| *k)
                .collect();
            for k in stale {
                let mut out = Out {
                    config: &self.config,
                    transmits: &mut self.transmits,
                    events: &mut self.events,
                };
                if let Some(s) = self.sas.get_mut(&k) {
                    s.drop_stale(&mut out);
                }
                self.after(k);
            }
        }
        let Some(sa) = self.sas.get_mut(&id) else {
            return;
        };
        let done_half_open = sa.half_open_key.is_some() && !sa.is_half_open();
        let dead = sa.dead;
        if done_half_open {
            if let Some(k) = sa.half_open_key.take() {
                self.half_open.remove(&k);
            }
        }
        if dead {
            let sa = self.sas.remove(&id).expect("present");
            self.by_spi.remove(&sa.our_spi());
            if let Some(k) = sa.half_open_key {
                self.half_open.remove(&k);
            }
        }
        for new in spawned {
            let nid = self.next_id;
            self.next_id += 1;
            self.by_spi.insert(new.our_spi(), nid);
            self.sas.insert(nid, Box::new(new));
            // A spawned SA may already have queued work (a collision loser
            // deleting itself).
            self.after(nid);
        }
    }

    /// Processes timer expiries up to `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let ids: Vec<u64> = self.sas.keys().copied().collect();
        for id in ids {
            if !self.sas.contains_key(&id) {
                continue;
            }
            self.with_sa(id, |sa, peers, out| sa.handle_timeout(now, peers, out));
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
        self.sas
            .values()
            .filter_map(|s| s.next_timeout(&self.peers, &self.config))
            .min()
    }
}
