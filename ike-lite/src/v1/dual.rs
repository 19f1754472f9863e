//! [`DualEndpoint`]: the IKEv2 [`crate::Endpoint`] and the IKEv1
//! [`super::Endpoint`] behind one API, so a driver holds one endpoint and
//! says per connection which version it speaks. Datagrams go to the
//! version their ISAKMP header names; events, datagrams and timers of both
//! come out merged, with one [`ConnId`] space.

use super::Endpoint as V1Endpoint;
use crate::config::{Config, ConnId, PeerConfig};
use crate::events::{ApiError, DatagramError, Event, IkeSaSecrets, IkeSaStats, Transmit};
use crate::proposal::IkeChoice;
use crate::Endpoint as V2Endpoint;
use rand_core::CryptoRngCore;
use std::net::SocketAddr;
use std::time::Instant;

/// The IKE version of a connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum IkeVersion {
    /// IKEv1 (RFC 2409): main mode + quick mode with PSK.
    V1,
    /// IKEv2 (RFC 7296).
    #[default]
    V2,
}

/// Both endpoints; see the module documentation.
#[derive(Debug)]
pub struct DualEndpoint {
    v2: V2Endpoint,
    v1: V1Endpoint,
    natt_port: u16,
    /// Outer connection -> (version, the inner endpoint's id).
    conns: Vec<(IkeVersion, ConnId)>,
    /// Inner id -> outer id, per version.
    from_v2: Vec<ConnId>,
    from_v1: Vec<ConnId>,
}

impl DualEndpoint {
    /// Both endpoints with the operating system's randomness.
    pub fn new(config: Config) -> Self {
        DualEndpoint::with_rngs(
            config,
            Box::new(rand_core::OsRng),
            Box::new(rand_core::OsRng),
        )
    }

    /// The IKEv2 endpoint takes its randomness from `rng`, the IKEv1 one
    /// from the operating system.
    pub fn with_rng(config: Config, rng: Box<dyn CryptoRngCore + Send>) -> Self {
        DualEndpoint::with_rngs(config, rng, Box::new(rand_core::OsRng))
    }

    /// Each endpoint with its own randomness.
    pub fn with_rngs(
        config: Config,
        rng_v2: Box<dyn CryptoRngCore + Send>,
        rng_v1: Box<dyn CryptoRngCore + Send>,
    ) -> Self {
        DualEndpoint {
            natt_port: config.natt_port,
            v1: V1Endpoint::with_rng(config.clone(), rng_v1),
            v2: V2Endpoint::with_rng(config, rng_v2),
            conns: Vec::new(),
            from_v2: Vec::new(),
            from_v1: Vec::new(),
        }
    }

    /// Adds a connection speaking `version`.
    pub fn add_peer(&mut self, peer: PeerConfig, version: IkeVersion) -> ConnId {
        let outer = ConnId(self.conns.len());
        let inner = match version {
            IkeVersion::V2 => {
                let c = self.v2.add_peer(peer);
                self.from_v2.push(outer);
                c
            }
            IkeVersion::V1 => {
                let c = self.v1.add_peer(peer);
                self.from_v1.push(outer);
                c
            }
        };
        self.conns.push((version, inner));
        outer
    }

    /// Replaces the configuration of `conn` (a reload); its version stays.
    /// Returns the old configuration.
    pub fn replace_peer(&mut self, conn: ConnId, peer: PeerConfig) -> Result<PeerConfig, ApiError> {
        match self.inner(conn)? {
            (IkeVersion::V2, c) => self.v2.replace_peer(c, peer),
            (IkeVersion::V1, c) => self.v1.replace_peer(c, peer),
        }
    }

    /// Retires `conn` (removed by a reload): it negotiates nothing more;
    /// its SAs live on until deleted. The id is not reused.
    pub fn retire_peer(&mut self, conn: ConnId) -> Result<(), ApiError> {
        match self.inner(conn)? {
            (IkeVersion::V2, c) => self.v2.retire_peer(c),
            (IkeVersion::V1, c) => self.v1.retire_peer(c),
        }
    }

    /// The flood-protection and message counters: the IKEv2 endpoint's,
    /// with IKEv1's half-open main modes, blocked sources and dropped
    /// message 1s added to the gauges and `init_dropped` (the per-exchange
    /// `received` counters are IKEv2's only).
    pub fn endpoint_stats(&self) -> crate::EndpointStats {
        let mut s = self.v2.endpoint_stats();
        let v1 = self.v1.main_mode_drops();
        s.half_open += self.v1.half_open() as u64;
        s.blocked_sources += self.v1.blocked_sources();
        s.init_dropped.blocked_source += v1.blocked_source;
        s.init_dropped.half_open_limit += v1.half_open_limit;
        s.init_dropped.oversized += v1.oversized;
        s
    }

    /// The version of `conn`.
    pub fn ike_version(&self, conn: ConnId) -> Option<IkeVersion> {
        self.conns.get(conn.0).map(|c| c.0)
    }

    /// The configuration of `conn`.
    pub fn peer(&self, conn: ConnId) -> Option<&PeerConfig> {
        match *self.conns.get(conn.0)? {
            (IkeVersion::V2, c) => self.v2.peer(c),
            (IkeVersion::V1, c) => self.v1.peer(c),
        }
    }

    fn inner(&self, conn: ConnId) -> Result<(IkeVersion, ConnId), ApiError> {
        self.conns.get(conn.0).copied().ok_or(ApiError::UnknownConn)
    }

    /// Starts IKE (IKE_SA_INIT, or main mode) for `conn`.
    pub fn initiate(&mut self, now: Instant, conn: ConnId) -> Result<(), ApiError> {
        match self.inner(conn)? {
            (IkeVersion::V2, c) => self.v2.initiate(now, c),
            (IkeVersion::V1, c) => self.v1.initiate(now, c),
        }
    }

    /// Rekeys the Child SA with inbound SPI `spi_in`.
    pub fn rekey_child(&mut self, now: Instant, conn: ConnId, spi_in: u32) -> Result<(), ApiError> {
        match self.inner(conn)? {
            (IkeVersion::V2, c) => self.v2.rekey_child(now, c, spi_in),
            (IkeVersion::V1, c) => self.v1.rekey_child(now, c, spi_in),
        }
    }

    /// Rekeys the IKE (ISAKMP) SA of `conn`.
    pub fn rekey_ike(&mut self, now: Instant, conn: ConnId) -> Result<(), ApiError> {
        match self.inner(conn)? {
            (IkeVersion::V2, c) => self.v2.rekey_ike(now, c),
            (IkeVersion::V1, c) => self.v1.rekey_ike(now, c),
        }
    }

    /// Deletes the IKE SA of `conn` with its Child SAs.
    pub fn delete(&mut self, now: Instant, conn: ConnId) -> Result<(), ApiError> {
        match self.inner(conn)? {
            (IkeVersion::V2, c) => self.v2.delete(now, c),
            (IkeVersion::V1, c) => self.v1.delete(now, c),
        }
    }

    /// Deletes one Child SA.
    pub fn delete_child(
        &mut self,
        now: Instant,
        conn: ConnId,
        spi_in: u32,
    ) -> Result<(), ApiError> {
        match self.inner(conn)? {
            (IkeVersion::V2, c) => self.v2.delete_child(now, c, spi_in),
            (IkeVersion::V1, c) => self.v1.delete_child(now, c, spi_in),
        }
    }

    /// Sends a liveness check now.
    pub fn check_liveness(&mut self, now: Instant, conn: ConnId) -> Result<(), ApiError> {
        match self.inner(conn)? {
            (IkeVersion::V2, c) => self.v2.check_liveness(now, c),
            (IkeVersion::V1, c) => self.v1.check_liveness(now, c),
        }
    }

    /// Counters of `conn`'s IKE SA.
    pub fn stats(&self, conn: ConnId) -> Option<IkeSaStats> {
        match self.inner(conn).ok()? {
            (IkeVersion::V2, c) => self.v2.stats(c),
            (IkeVersion::V1, c) => self.v1.stats(c),
        }
    }

    /// (inbound, outbound) SPIs of `conn`'s Child SAs.
    pub fn child_sas(&self, conn: ConnId) -> Vec<(u32, u32)> {
        match self.inner(conn) {
            Ok((IkeVersion::V2, c)) => self.v2.child_sas(c),
            Ok((IkeVersion::V1, c)) => self.v1.child_sas(c),
            Err(_) => Vec::new(),
        }
    }

    /// SPIs (IKEv2) or cookies (IKEv1) of `conn`'s IKE SA.
    pub fn ike_spis(&self, conn: ConnId) -> Option<(u64, u64)> {
        match self.inner(conn).ok()? {
            (IkeVersion::V2, c) => self.v2.ike_spis(c),
            (IkeVersion::V1, c) => self.v1.ike_spis(c),
        }
    }

    /// The negotiated IKE algorithms of `conn`.
    pub fn ike_algorithms(&self, conn: ConnId) -> Option<IkeChoice> {
        match self.inner(conn).ok()? {
            (IkeVersion::V2, c) => self.v2.ike_algorithms(c),
            (IkeVersion::V1, c) => self.v1.ike_algorithms(c),
        }
    }

    /// IKEv2 SA secrets (see [`crate::Endpoint::ike_sa_secrets`]); `None`
    /// for IKEv1.
    pub fn ike_sa_secrets(&self, conn: ConnId) -> Option<IkeSaSecrets> {
        match self.inner(conn).ok()? {
            (IkeVersion::V2, c) => self.v2.ike_sa_secrets(c).map(|mut s| {
                s.conn = conn;
                s
            }),
            (IkeVersion::V1, _) => None,
        }
    }

    /// When `conn`'s IKE SA will be rekeyed.
    pub fn ike_rekey_at(&self, conn: ConnId) -> Option<Instant> {
        match self.inner(conn).ok()? {
            (IkeVersion::V2, c) => self.v2.ike_rekey_at(c),
            (IkeVersion::V1, c) => self.v1.ike_rekey_at(c),
        }
    }

    /// When the Child SA with inbound SPI `spi_in` will be rekeyed.
    pub fn child_rekey_at(&self, conn: ConnId, spi_in: u32) -> Option<Instant> {
        match self.inner(conn).ok()? {
            (IkeVersion::V2, c) => self.v2.child_rekey_at(c, spi_in),
            (IkeVersion::V1, c) => self.v1.child_rekey_at(c, spi_in),
        }
    }

    /// IKE SAs held by both endpoints.
    pub fn ike_sa_count(&self) -> usize {
        self.v2.ike_sa_count() + self.v1.ike_sa_count()
    }

    /// Processes one received UDP payload: an ISAKMP header of major
    /// version 1 goes to the IKEv1 endpoint when any IKEv1 connection is
    /// configured; everything else to the IKEv2 endpoint (which answers
    /// INVALID_MAJOR_VERSION to an IKEv1 request it cannot serve).
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
    ) -> Result<(), DatagramError> {
        let off = if local.port() == self.natt_port { 4 } else { 0 };
        let major = data.get(off + 17).map(|v| v >> 4);
        if major == Some(1) && !self.from_v1.is_empty() {
            return self
                .v1
                .handle_datagram(now, local, remote, data)
                .map_err(|e| match e {
                    // A flood drop reads the same for both versions.
                    super::Error::Limited => DatagramError::Limited,
                    e => DatagramError::V1(e),
                });
        }
        self.v2.handle_datagram(now, local, remote, data)
    }

    /// Processes timer expiries up to `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.v2.poll_timeout().is_some_and(|t| t <= now) {
            self.v2.handle_timeout(now);
        }
        if self.v1.poll_timeout().is_some_and(|t| t <= now) {
            self.v1.handle_timeout(now);
        }
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.v2.poll_transmit().or_else(|| self.v1.poll_transmit())
    }

    /// The next event (connection ids are this endpoint's).
    pub fn poll_event(&mut self) -> Option<Event> {
        if let Some(e) = self.v2.poll_event() {
            let map = &self.from_v2;
            return Some(with_conn(e, |c| map.get(c.0).copied().unwrap_or(c)));
        }
        let e = self.v1.poll_event()?;
        let map = &self.from_v1;
        Some(with_conn(e, |c| map.get(c.0).copied().unwrap_or(c)))
    }

    /// When [`DualEndpoint::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.v2.poll_timeout(), self.v1.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }
}

/// `ev` with its connection id mapped by `f`.
fn with_conn(ev: Event, f: impl Fn(ConnId) -> ConnId) -> Event {
    match ev {
        Event::IkeSaUp {
            conn,
            spi_i,
            spi_r,
            initiator,
            udp_encap,
            algorithms,
        } => Event::IkeSaUp {
            conn: f(conn),
            spi_i,
            spi_r,
            initiator,
            udp_encap,
            algorithms,
        },
        Event::IkeSaRekeyed {
            conn,
            old,
            new,
            algorithms,
        } => Event::IkeSaRekeyed {
            conn: f(conn),
            old,
            new,
            algorithms,
        },
        Event::IkeSaSecrets(mut s) => {
            s.conn = f(s.conn);
            Event::IkeSaSecrets(s)
        }
        Event::IsakmpSaSecrets(mut s) => {
            s.conn = f(s.conn);
            Event::IsakmpSaSecrets(s)
        }
        Event::IkeSaDown { conn, reason } => Event::IkeSaDown {
            conn: f(conn),
            reason,
        },
        Event::ChildSaEstablished(mut c) => {
            c.conn = f(c.conn);
            Event::ChildSaEstablished(c)
        }
        Event::ChildSaOutboundSwitched {
            conn,
            old_spi_out,
            new_spi_out,
        } => Event::ChildSaOutboundSwitched {
            conn: f(conn),
            old_spi_out,
            new_spi_out,
        },
        Event::ChildSaDeleted {
            conn,
            spi_in,
            spi_out,
            reason,
        } => Event::ChildSaDeleted {
            conn: f(conn),
            spi_in,
            spi_out,
            reason,
        },
        Event::ChildSaFailed { conn, notify } => Event::ChildSaFailed {
            conn: f(conn),
            notify,
        },
        Event::AuthenticationFailed { conn, reason } => Event::AuthenticationFailed {
            conn: f(conn),
            reason,
        },
        Event::PeerDead { conn } => Event::PeerDead { conn: f(conn) },
        Event::NatDetected {
            conn,
            local_behind_nat,
            remote_behind_nat,
        } => Event::NatDetected {
            conn: f(conn),
            local_behind_nat,
            remote_behind_nat,
        },
    }
}
