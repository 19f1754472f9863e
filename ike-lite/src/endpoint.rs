//! The sans-IO IKEv2 endpoint (quinn-proto style).
//!
//! One [`Endpoint`] serves every IKE SA of the host and demultiplexes
//! datagrams by IKE SPI. It never reads a clock and never touches a socket:
//! the driver feeds datagrams ([`Endpoint::handle_datagram`]) and timer
//! expiries ([`Endpoint::handle_timeout`]) in, each with the current
//! `Instant`, and drains [`Endpoint::poll_transmit`],
//! [`Endpoint::poll_event`] and [`Endpoint::poll_timeout`].

use crate::config::{Config, PeerConfig};
use crate::message::{FragError, Header, NotifyType, ParseError, HEADER_LEN};
use crate::sa::{self, IkeSa};
use crate::ts::TrafficSelector;
use core::fmt;
use ipsec_core::crypto::Suite;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// Identifies a configured connection ([`Endpoint::add_peer`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub usize);

/// A datagram to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Local address (and port: 500, or 4500 with NAT-T) to send from.
    pub src: SocketAddr,
    /// Destination.
    pub dst: SocketAddr,
    /// The exact UDP payload. With `non_esp_marker` it already starts with
    /// the four zero bytes of RFC 3948; a NAT keepalive is the single byte
    /// `0xff`.
    pub payload: Vec<u8>,
    /// Whether this goes over the NAT-T port (UDP encapsulation).
    pub non_esp_marker: bool,
}

/// Key material of one direction of a Child SA, handed to the ESP layer.
/// Zeroized on drop, redacted `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyMaterial {
    enc: Zeroizing<Vec<u8>>,
    integ: Zeroizing<Vec<u8>>,
}

impl KeyMaterial {
    pub(crate) fn new(enc: Vec<u8>, integ: Vec<u8>) -> Self {
        KeyMaterial {
            enc: Zeroizing::new(enc),
            integ: Zeroizing::new(integ),
        }
    }

    /// Encryption key (including the 4-byte salt for AES-GCM).
    pub fn enc_key(&self) -> &[u8] {
        &self.enc
    }

    /// Integrity key (empty for AES-GCM).
    pub fn integ_key(&self) -> &[u8] {
        &self.integ
    }

    /// Builds the ESP cipher for this direction
    /// ([`Suite::cipher`](ipsec_core::crypto::Suite::cipher)).
    pub fn cipher(
        &self,
        suite: Suite,
    ) -> Result<Box<dyn ipsec_core::crypto::Cipher>, ipsec_core::crypto::CryptoError> {
        suite.cipher(&self.enc, &self.integ)
    }
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "KeyMaterial(<{}+{} bytes redacted>)",
            self.enc.len(),
            self.integ.len()
        )
    }
}

/// Everything the ESP layer needs to install one Child SA (both directions).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildSa {
    /// The connection.
    pub conn: ConnId,
    /// SPI of inbound ESP packets (chosen by us).
    pub spi_in: u32,
    /// SPI of outbound ESP packets (chosen by the peer).
    pub spi_out: u32,
    /// ESP suite.
    pub suite: Suite,
    /// Inbound key material.
    pub key_in: KeyMaterial,
    /// Outbound key material.
    pub key_out: KeyMaterial,
    /// Extended sequence numbers.
    pub esn: bool,
    /// Our side's negotiated selectors.
    pub ts_local: Vec<TrafficSelector>,
    /// The peer side's negotiated selectors.
    pub ts_remote: Vec<TrafficSelector>,
    /// Our address (tunnel endpoint).
    pub local: SocketAddr,
    /// The peer's address (tunnel endpoint; port is the NAT-T port when
    /// `udp_encap`).
    pub remote: SocketAddr,
    /// Whether ESP is UDP-encapsulated (RFC 3948).
    pub udp_encap: bool,
    /// Hard lifetime.
    pub lifetime: Duration,
    /// Anti-replay window.
    pub replay_window: u32,
    /// For a rekey: the inbound SPI of the SA this one replaces.
    pub rekey_of: Option<u32>,
}

/// Why an IKE SA went away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DownReason {
    /// Deleted by the peer.
    PeerDeleted,
    /// Deleted by [`Endpoint::delete`].
    LocalDelete,
    /// Hard lifetime reached without rekey.
    Expired,
    /// No answer to a request (retransmissions or DPD timed out).
    Timeout,
    /// Authentication failed (see [`Event::AuthenticationFailed`]).
    AuthFailed,
    /// The peer started over with INITIAL_CONTACT on a new IKE SA.
    InitialContact,
    /// The peer refused with this error notify during setup.
    Refused(NotifyType),
    /// The peer's answer was unusable (bad proposal, missing payloads, ...).
    Protocol,
}

/// Why authentication failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthFailure {
    /// The peer's AUTH payload did not verify (wrong PSK).
    BadAuth,
    /// The peer answered AUTHENTICATION_FAILED (it rejected our AUTH).
    RejectedByPeer,
    /// The peer's identity matches no configured connection.
    UnknownIdentity,
    /// The peer used an authentication method other than PSK.
    UnsupportedMethod,
}

/// Why a Child SA was deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChildDeleteReason {
    /// Replaced by a rekeyed SA.
    Rekeyed,
    /// The peer deleted it.
    PeerDeleted,
    /// Deleted locally (API call or redundant collision result).
    LocalDelete,
    /// Hard lifetime reached.
    Expired,
    /// Its IKE SA went away.
    IkeSaGone,
}

/// Something the driver must act upon.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// An IKE SA was authenticated.
    IkeSaUp {
        /// Connection.
        conn: ConnId,
        /// Initiator SPI.
        spi_i: u64,
        /// Responder SPI.
        spi_r: u64,
        /// Whether we initiated it.
        initiator: bool,
        /// Whether NAT-T is in use.
        udp_encap: bool,
    },
    /// An IKE SA was rekeyed (Child SAs moved to the new one).
    IkeSaRekeyed {
        /// Connection.
        conn: ConnId,
        /// SPIs (initiator, responder) of the old SA.
        old: (u64, u64),
        /// SPIs (initiator, responder) of the new SA.
        new: (u64, u64),
    },
    /// An IKE SA is gone (its Child SAs were reported deleted before).
    IkeSaDown {
        /// Connection.
        conn: ConnId,
        /// Why.
        reason: DownReason,
    },
    /// Install this Child SA. For a first SA both directions are usable at
    /// once; for a rekey (`rekey_of` set) accept inbound now but keep
    /// sending on the old SA until [`Event::ChildSaOutboundSwitched`].
    ChildSaEstablished(Box<ChildSa>),
    /// Send on `new_spi_out` from now on instead of `old_spi_out`.
    ChildSaOutboundSwitched {
        /// Connection.
        conn: ConnId,
        /// Outbound SPI of the old SA.
        old_spi_out: u32,
        /// Outbound SPI of the new SA.
        new_spi_out: u32,
    },
    /// Remove this Child SA (both directions).
    ChildSaDeleted {
        /// Connection.
        conn: ConnId,
        /// Inbound SPI.
        spi_in: u32,
        /// Outbound SPI.
        spi_out: u32,
        /// Why.
        reason: ChildDeleteReason,
    },
    /// A Child SA could not be created; the IKE SA stays up.
    ChildSaFailed {
        /// Connection.
        conn: ConnId,
        /// The error notify (e.g. NO_PROPOSAL_CHOSEN, TS_UNACCEPTABLE).
        notify: NotifyType,
    },
    /// Authentication failed.
    AuthenticationFailed {
        /// Connection (the tentative one for a responder).
        conn: ConnId,
        /// Why.
        reason: AuthFailure,
    },
    /// The peer stopped answering (DPD or retransmission give-up).
    PeerDead {
        /// Connection.
        conn: ConnId,
    },
    /// NAT detection result of IKE_SA_INIT, when a NAT (or forced
    /// encapsulation) moves the SA to the NAT-T port.
    NatDetected {
        /// Connection.
        conn: ConnId,
        /// We are behind a NAT (we send keepalives).
        local_behind_nat: bool,
        /// The peer is behind a NAT.
        remote_behind_nat: bool,
    },
}

/// Per-IKE-SA counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IkeSaStats {
    /// Requests sent (first transmissions).
    pub requests_sent: u64,
    /// Request retransmissions.
    pub retransmits: u64,
    /// Responses sent (including retransmitted ones).
    pub responses_sent: u64,
    /// Valid messages received.
    pub messages_received: u64,
    /// Messages dropped (bad integrity, out of window, malformed).
    pub dropped: u64,
    /// Child SA rekeys completed.
    pub child_rekeys: u64,
    /// NAT keepalives sent.
    pub keepalives_sent: u64,
}

/// Why a datagram was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DatagramError {
    /// Not an IKE message (ESP on the NAT-T port, a keepalive, too short).
    NotIke,
    /// The IKE message did not parse.
    Parse(ParseError),
    /// No IKE SA has this SPI.
    UnknownSpi,
    /// The message ID is outside the window, or a response matches no request.
    UnexpectedMessageId,
    /// The SK/SKF payload failed integrity or decryption.
    Decrypt,
    /// A fragment was refused.
    Fragment(FragError),
    /// The message is valid but not acceptable in the SA's state.
    Unexpected,
    /// An IKE_SA_INIT request was turned away (cookie, INVALID_KE, no
    /// proposal); an answer may have been queued.
    Refused,
}

impl fmt::Display for DatagramError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatagramError::NotIke => f.write_str("not an IKE message"),
            DatagramError::Parse(e) => write!(f, "parse error: {e}"),
            DatagramError::UnknownSpi => f.write_str("unknown IKE SPI"),
            DatagramError::UnexpectedMessageId => f.write_str("unexpected message ID"),
            DatagramError::Decrypt => f.write_str("integrity check failed"),
            DatagramError::Fragment(e) => write!(f, "fragment refused: {e}"),
            DatagramError::Unexpected => f.write_str("message not expected in this state"),
            DatagramError::Refused => f.write_str("request refused"),
        }
    }
}

impl std::error::Error for DatagramError {}

/// Why an API call could not be carried out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApiError {
    /// No connection with this id.
    UnknownConn,
    /// The connection has no established IKE SA.
    NotEstablished,
    /// No Child SA with this inbound SPI.
    UnknownChild,
    /// A configured proposal cannot be used (e.g. unsupported DH group).
    BadConfig,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ApiError::UnknownConn => "unknown connection",
            ApiError::NotEstablished => "no established IKE SA",
            ApiError::UnknownChild => "unknown Child SA",
            ApiError::BadConfig => "unusable configuration",
        })
    }
}

impl std::error::Error for ApiError {}

/// Output queues shared by all SAs during one call.
pub(crate) struct Out<'a> {
    pub config: &'a Config,
    pub transmits: &'a mut VecDeque<Transmit>,
    pub events: &'a mut VecDeque<Event>,
}

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
            let conn = sa.conn;
            let stale: Vec<u64> = self
                .sas
                .iter()
                .filter(|(k, s)| **k != id && s.conn == conn && s.is_established())
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
