//! One IKE SA: its exchanges (RFC 7296 §1.2-§1.4), Child SAs, timers,
//! retransmission, rekeying with collision handling (§2.8.1) and NAT-T.
//!
//! The SA's [`State`] carries the data of its phase: the key exchange and
//! nonce while IKE_SA_INIT runs, the keys and the negotiated algorithms
//! from then on. The endpoint drives an SA through a [`Ctx`] (time,
//! configuration, randomness, output queues) and learns what to do next
//! from the returned [`Outcome`]. This module knows `events` and `child`,
//! never the endpoint.

mod exchange;
mod glue;

use crate::child::{ChildSa, KeyMaterial};
use crate::config::{Config, ConnId, Identity, PeerConfig};
use crate::crypto::{DhGroup, KeyExchange};
use crate::events::{
    ApiError, AuthFailure, ChildDeleteReason, DatagramError, DownReason, Event, IkeSaSecrets,
    IkeSaStats, Transmit,
};
use crate::message::{
    find_error_notify, find_notify, parse_payloads, AuthMethod, Delete, ExchangeType, Flags,
    Header, KePayload, Message, Notify, NotifyType, ParseError, Payload, PayloadType, ProtocolId,
    Reassembler, TsPayload, HEADER_LEN,
};
use crate::proposal::{self, EspChoice, EspProposal, IkeChoice, IkeProposal};
use crate::ts::{self, TrafficSelector};
use glue::{Keys, NewIkeKeys};
use rand_core::CryptoRngCore;
use std::collections::VecDeque;
use std::mem;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// What an SA handler works with besides the SA: the configuration, the
/// endpoint's random number generator and its output queues.
pub(crate) struct Ctx<'a> {
    pub config: &'a Config,
    pub rng: &'a mut dyn CryptoRngCore,
    pub transmits: &'a mut VecDeque<Transmit>,
    pub events: &'a mut VecDeque<Event>,
}

/// One received IKE message and the addresses it came by.
pub(crate) struct Datagram<'a> {
    /// The local address it arrived on.
    pub local: SocketAddr,
    /// Its source.
    pub remote: SocketAddr,
    /// It came over the NAT-T port (its non-ESP marker is already removed).
    pub natt: bool,
    pub header: &'a Header,
    /// The IKE message.
    pub bytes: &'a [u8],
}

/// Where an SA stands after a call, as far as the endpoint's tables go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    /// A responder SA waiting for IKE_AUTH (in the half-open table).
    HalfOpen,
    /// Any other live SA.
    Live,
    /// Finished: remove it.
    Closed,
}

/// What the endpoint must do after an SA handled a call.
#[must_use]
pub(crate) struct Outcome {
    /// New IKE SAs (IKE rekey) to register.
    pub spawned: Vec<IkeSa>,
    /// The peer authenticated as this identity with INITIAL_CONTACT: its
    /// other IKE SAs of the same connection are stale (RFC 7296 §2.4).
    pub initial_contact: Option<Identity>,
    pub status: Status,
}

/// The result of handing a datagram to an SA.
pub(crate) struct Handled {
    /// Whether the datagram was acceptable.
    pub result: Result<(), DatagramError>,
    pub outcome: Outcome,
}

/// Work that needs the request window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Task {
    /// Rekey the Child SA with this inbound SPI.
    RekeyChild(u32),
    /// Rekey the IKE SA.
    RekeyIke,
    /// Liveness check.
    Dpd,
    /// Delete the Child SA with this inbound SPI.
    DeleteChild(u32, ChildDeleteReason),
    /// Delete the IKE SA.
    DeleteIke(DownReason),
}

/// The request in flight.
enum Req {
    Init,
    Auth {
        child_spi: u32,
    },
    RekeyChild(ChildRekey),
    RekeyIke(IkeRekey),
    Dpd,
    DeleteChild {
        spi_in: u32,
        reason: ChildDeleteReason,
    },
    DeleteIke {
        reason: DownReason,
    },
}

/// Our CREATE_CHILD_SA request rekeying a Child SA.
struct ChildRekey {
    old_spi_in: u32,
    new_spi_in: u32,
    ni: Vec<u8>,
    ke: Option<KeyExchange>,
}

/// Our CREATE_CHILD_SA request rekeying the IKE SA.
struct IkeRekey {
    new_spi: u64,
    ni: Vec<u8>,
    ke: KeyExchange,
}

struct Pending {
    msg_id: u32,
    datagrams: Vec<Vec<u8>>,
    req: Req,
    retries: u32,
    first_sent: Instant,
    next_at: Instant,
}

/// The phase of an IKE SA with the data that exists in that phase only.
enum State {
    /// Initiator: IKE_SA_INIT sent.
    InitSent(Box<InitSent>),
    /// Initiator: IKE_AUTH sent.
    AuthSent(Box<Handshake>),
    /// Responder: IKE_SA_INIT answered, waiting for IKE_AUTH.
    HalfOpen(Box<Handshake>),
    /// Authenticated.
    Established(Box<Keyed>),
    /// Replaced by a rekeyed IKE SA; only waits for the DELETE exchange.
    Replaced(Box<Keyed>),
    /// Lost an IKE rekey collision; will be deleted (by us or the peer).
    Redundant(Box<Keyed>),
    /// Finished; the endpoint removes it.
    Closed,
}

impl State {
    /// The algorithms and keys, once IKE_SA_INIT is done.
    fn keyed(&self) -> Option<&Keyed> {
        match self {
            State::AuthSent(h) | State::HalfOpen(h) => Some(&h.keyed),
            State::Established(k) | State::Replaced(k) | State::Redundant(k) => Some(k),
            State::InitSent(_) | State::Closed => None,
        }
    }
}

/// Initiator before the IKE_SA_INIT response.
struct InitSent {
    ke: KeyExchange,
    ni: Vec<u8>,
    /// The responder's cookie to echo (RFC 7296 §2.6).
    cookie: Option<Vec<u8>>,
    /// Restarts after COOKIE or INVALID_KE_PAYLOAD.
    retries: u8,
    /// The request as sent (AUTH signs it).
    request: Vec<u8>,
}

/// The negotiated algorithms and the keys of an SA past IKE_SA_INIT.
struct Keyed {
    choice: IkeChoice,
    keys: Keys,
}

/// IKE_SA_INIT done, IKE_AUTH not yet: AUTH needs both messages and the
/// nonces; the first Child SA's keys need the nonces.
struct Handshake {
    keyed: Keyed,
    ni: Vec<u8>,
    nr: Vec<u8>,
    init_req: Vec<u8>,
    init_resp: Vec<u8>,
}

/// Responder-side record of the peer's colliding rekey of the same SA.
struct ChildCollision {
    peer_ni: Vec<u8>,
    our_nr: Vec<u8>,
    new_spi_in: u32,
}

struct Child {
    spi_in: u32,
    spi_out: u32,
    ts_local: Vec<TrafficSelector>,
    ts_remote: Vec<TrafficSelector>,
    rekey_at: Option<Instant>,
    expire_at: Instant,
    /// Our rekey request for it is in flight.
    rekeying: bool,
    /// Replaced by a rekey; waits for the DELETE exchange.
    replaced: bool,
    /// We sent a DELETE for it.
    deleting: bool,
    /// The SA (inbound SPI) that takes over outbound traffic when this one
    /// is deleted by the peer.
    successor: Option<u32>,
    collision: Option<ChildCollision>,
}

struct IkeCollision {
    peer_ni: Vec<u8>,
    our_nr: Vec<u8>,
    new_sa: Box<IkeSa>,
}

/// One IKE SA.
pub(crate) struct IkeSa {
    pub conn: ConnId,
    /// Whether we are the original initiator of this IKE SA.
    initiator: bool,
    pub spi_i: u64,
    pub spi_r: u64,
    local: SocketAddr,
    remote: SocketAddr,
    encap: bool,
    nat_local: bool,
    nat_remote: bool,
    state: State,
    peer_frag: bool,
    next_req_id: u32,
    pending: Option<Pending>,
    tasks: VecDeque<Task>,
    next_peer_id: u32,
    last_resp: Option<(u32, Vec<Vec<u8>>)>,
    reasm: Reassembler,
    reasm_resp: Reassembler,
    children: Vec<Child>,
    rekey_at: Option<Instant>,
    expire_at: Option<Instant>,
    last_heard: Instant,
    keepalive_at: Option<Instant>,
    deadline: Option<Instant>,
    seal_ctr: u64,
    ike_collision: Option<IkeCollision>,
    stats: IkeSaStats,
    /// New IKE SAs (IKE rekey) not yet handed to the endpoint.
    spawned: Vec<IkeSa>,
    /// The peer sent INITIAL_CONTACT, not yet reported to the endpoint.
    initial_contact: bool,
    /// The identity the peer authenticated with (responder side), used to
    /// scope INITIAL_CONTACT to the SAs of that identity (RFC 7296 §2.4).
    peer_identity: Option<Identity>,
}

fn ke_of(payloads: &[Payload]) -> Option<&KePayload> {
    payloads.iter().find_map(|p| match p {
        Payload::Ke(k) => Some(k),
        _ => None,
    })
}

fn nonce_of(payloads: &[Payload]) -> Option<&[u8]> {
    payloads.iter().find_map(|p| match p {
        Payload::Nonce(n) => Some(n.as_slice()),
        _ => None,
    })
}

fn sa_of(payloads: &[Payload]) -> Option<&[proposal_wire::Proposal]> {
    payloads.iter().find_map(|p| match p {
        Payload::Sa(s) => Some(s.as_slice()),
        _ => None,
    })
}

mod proposal_wire {
    pub(crate) use crate::message::Proposal;
}

fn ts_of(payloads: &[Payload]) -> Option<(&[TrafficSelector], &[TrafficSelector])> {
    let i = payloads.iter().find_map(|p| match p {
        Payload::TsI(t) => Some(t.selectors.as_slice()),
        _ => None,
    })?;
    let r = payloads.iter().find_map(|p| match p {
        Payload::TsR(t) => Some(t.selectors.as_slice()),
        _ => None,
    })?;
    Some((i, r))
}

fn notify(ty: NotifyType) -> Payload {
    Payload::Notify(Notify::new(ty, Vec::new()))
}

fn notify_data(ty: NotifyType, data: Vec<u8>) -> Payload {
    Payload::Notify(Notify::new(ty, data))
}

fn with_marker(encap: bool, mut msg: Vec<u8>) -> Vec<u8> {
    if encap {
        msg.splice(0..0, [0u8; 4]);
    }
    msg
}

/// Answers a request with a major version above 2 (RFC 7296 §2.5).
pub(crate) fn answer_invalid_major(
    h: &Header,
    local: SocketAddr,
    remote: SocketAddr,
    natt: bool,
    tx: &mut VecDeque<Transmit>,
) {
    let mut header = Header::new(h.spi_i, h.spi_r, h.exchange, Flags::RESPONSE, h.message_id);
    if !h.is_initiator() {
        header.flags = header.flags | Flags::INITIATOR;
    }
    let msg = Message {
        header,
        payloads: vec![notify_data(NotifyType::INVALID_MAJOR_VERSION, vec![])],
    };
    tx.push_back(Transmit {
        src: local,
        dst: remote,
        payload: with_marker(natt, msg.emit()),
        non_esp_marker: natt,
    });
}

fn stateless_init_reply(d: &Datagram<'_>, n: Payload, cx: &mut Ctx<'_>) {
    let header = Header::new(
        d.header.spi_i,
        0,
        ExchangeType::IKE_SA_INIT,
        Flags::RESPONSE,
        0,
    );
    let msg = Message {
        header,
        payloads: vec![n],
    };
    cx.transmits.push_back(Transmit {
        src: d.local,
        dst: d.remote,
        payload: with_marker(d.natt, msg.emit()),
        non_esp_marker: d.natt,
    });
}

/// Index of the lowest of the four nonces: true when it belongs to the
/// exchange `(a_ni, a_nr)` (RFC 7296 §2.8.1).
fn lowest_in_first(a_ni: &[u8], a_nr: &[u8], b_ni: &[u8], b_nr: &[u8]) -> bool {
    let a = a_ni.min(a_nr);
    let b = b_ni.min(b_nr);
    a < b
}

impl IkeSa {
    fn blank(
        conn: ConnId,
        initiator: bool,
        (local, remote): (SocketAddr, SocketAddr),
        state: State,
        now: Instant,
    ) -> Self {
        IkeSa {
            conn,
            initiator,
            spi_i: 0,
            spi_r: 0,
            local,
            remote,
            encap: false,
            nat_local: false,
            nat_remote: false,
            state,
            peer_frag: false,
            next_req_id: 0,
            pending: None,
            tasks: VecDeque::new(),
            next_peer_id: 0,
            last_resp: None,
            reasm: Reassembler::new(),
            reasm_resp: Reassembler::new(),
            children: Vec::new(),
            rekey_at: None,
            expire_at: None,
            last_heard: now,
            keepalive_at: None,
            deadline: None,
            seal_ctr: 0,
            ike_collision: None,
            stats: IkeSaStats::default(),
            spawned: Vec::new(),
            initial_contact: false,
            peer_identity: None,
        }
    }

    /// What the endpoint must do now: the SAs spawned and the
    /// INITIAL_CONTACT seen since the last call, and the SA's status.
    fn outcome(&mut self) -> Outcome {
        let status = match self.state {
            State::HalfOpen(_) => Status::HalfOpen,
            State::Closed => Status::Closed,
            _ => Status::Live,
        };
        let initial_contact = if mem::take(&mut self.initial_contact) {
            self.peer_identity.clone()
        } else {
            None
        };
        Outcome {
            spawned: mem::take(&mut self.spawned),
            initial_contact,
            status,
        }
    }

    /// The algorithms and keys, once IKE_SA_INIT is done.
    fn keyed(&self) -> Option<&Keyed> {
        self.state.keyed()
    }

    /// The IKE_SA_INIT data kept for IKE_AUTH.
    fn handshake(&self) -> Option<&Handshake> {
        match &self.state {
            State::AuthSent(h) | State::HalfOpen(h) => Some(h),
            _ => None,
        }
    }

    fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// Moves an established SA to `Replaced` or `Redundant` (`retire` is
    /// the variant); other states are left alone.
    fn retire(&mut self, retire: fn(Box<Keyed>) -> State) {
        self.state = match mem::replace(&mut self.state, State::Closed) {
            State::Established(k) => retire(k),
            other => other,
        };
    }

    /// Our own SPI, the key for demultiplexing.
    pub fn our_spi(&self) -> u64 {
        if self.initiator {
            self.spi_i
        } else {
            self.spi_r
        }
    }

    pub fn is_established(&self) -> bool {
        matches!(self.state, State::Established(_))
    }

    /// The identity the peer authenticated with (responder side).
    pub fn peer_identity(&self) -> Option<&Identity> {
        self.peer_identity.as_ref()
    }

    /// Counters.
    pub fn stats(&self) -> IkeSaStats {
        self.stats
    }

    /// The negotiated algorithms (once IKE_SA_INIT is done).
    pub fn algorithms(&self) -> Option<IkeChoice> {
        self.keyed().map(|k| k.choice)
    }

    /// The exportable secrets (only kept with `Config::export_ike_keys`).
    pub fn secrets(&self) -> Option<IkeSaSecrets> {
        let keyed = self.keyed()?;
        let [sk_ei, sk_er, sk_ai, sk_ar] = keyed.keys.export.clone()?;
        Some(IkeSaSecrets {
            conn: self.conn,
            spi_i: self.spi_i,
            spi_r: self.spi_r,
            algorithms: keyed.choice,
            sk_ei,
            sk_er,
            sk_ai,
            sk_ar,
        })
    }

    /// Queues [`Event::IkeSaSecrets`] when secrets are exported.
    fn push_secrets(&self, cx: &mut Ctx<'_>) {
        if let Some(s) = self.secrets() {
            cx.events.push_back(Event::IkeSaSecrets(Box::new(s)));
        }
    }

    /// The scheduled IKE SA rekey.
    pub fn rekey_at(&self) -> Option<Instant> {
        self.rekey_at
    }

    /// The scheduled rekey of the Child SA with inbound SPI `spi_in`.
    pub fn child_rekey_at(&self, spi_in: u32) -> Option<Instant> {
        self.children
            .iter()
            .find(|c| c.spi_in == spi_in)
            .and_then(|c| c.rekey_at)
    }

    pub fn child_spis(&self) -> Vec<(u32, u32)> {
        self.children
            .iter()
            .map(|c| (c.spi_in, c.spi_out))
            .collect()
    }

    fn flags(&self, response: bool) -> Flags {
        let mut f = Flags::default();
        if self.initiator {
            f = f | Flags::INITIATOR;
        }
        if response {
            f = f | Flags::RESPONSE;
        }
        f
    }

    fn transmit(&self, payload: Vec<u8>, cx: &mut Ctx<'_>) {
        cx.transmits.push_back(Transmit {
            src: self.local,
            dst: self.remote,
            payload,
            non_esp_marker: self.encap,
        });
    }

    /// Builds and seals an encrypted message; returns the UDP payload.
    fn seal(
        &mut self,
        exchange: ExchangeType,
        response: bool,
        msg_id: u32,
        inner: &[Payload],
    ) -> Option<Vec<u8>> {
        let header = Header::new(
            self.spi_i,
            self.spi_r,
            exchange,
            self.flags(response),
            msg_id,
        );
        let (mut buf, off) = Message::emit_unsealed(&header, inner);
        let keys = &self.state.keyed()?.keys;
        self.seal_ctr += 1;
        if !glue::seal(keys.out.as_ref(), &mut buf, off, self.seal_ctr) {
            return None;
        }
        Some(with_marker(self.encap, buf))
    }

    /// Like [`Self::seal`], but splits the message into SKF fragments
    /// (RFC 7383) when the peer supports them and it exceeds
    /// `Config::fragment_size`.
    fn seal_all(
        &mut self,
        exchange: ExchangeType,
        response: bool,
        msg_id: u32,
        inner: &[Payload],
        max: usize,
    ) -> Option<Vec<Vec<u8>>> {
        let whole = self.seal(exchange, response, msg_id, inner)?;
        let marker = if self.encap { 4 } else { 0 };
        if !self.peer_frag || whole.len() - marker <= max {
            return Some(vec![whole]);
        }
        let c = self.state.keyed()?.keys.out.as_ref();
        let overhead = HEADER_LEN + 8 + c.iv_len() + c.icv_len() + c.block_len() + 1;
        let chunk = max.checked_sub(overhead).filter(|c| *c >= 64)?;
        let mut plain = Vec::new();
        let first = crate::message::emit_payloads(inner, &mut plain);
        let total = plain.len().div_ceil(chunk);
        let total16 = u16::try_from(total).ok()?;
        let mut out = Vec::with_capacity(total);
        for (i, part) in plain.chunks(chunk).enumerate() {
            let mut header = Header::new(
                self.spi_i,
                self.spi_r,
                exchange,
                self.flags(response),
                msg_id,
            );
            header.next_payload = PayloadType::SKF;
            let mut buf = vec![0u8; HEADER_LEN];
            let next = if i == 0 { first } else { PayloadType::NONE };
            buf.extend_from_slice(&[next.0, 0, 0, 0]);
            buf.extend_from_slice(&(i as u16 + 1).to_be_bytes());
            buf.extend_from_slice(&total16.to_be_bytes());
            buf.extend_from_slice(part);
            header.length = buf.len() as u32;
            header.emit(&mut buf[..HEADER_LEN]);
            let skf_len = (buf.len() - HEADER_LEN) as u16;
            buf[HEADER_LEN + 2..HEADER_LEN + 4].copy_from_slice(&skf_len.to_be_bytes());
            self.seal_ctr += 1;
            if !glue::seal_fragment(c, &mut buf, HEADER_LEN, self.seal_ctr) {
                return None;
            }
            out.push(with_marker(self.encap, buf));
        }
        Some(out)
    }

    fn respond(
        &mut self,
        exchange: ExchangeType,
        msg_id: u32,
        inner: &[Payload],
        cx: &mut Ctx<'_>,
    ) {
        if let Some(dgrams) = self.seal_all(exchange, true, msg_id, inner, cx.config.fragment_size)
        {
            for d in &dgrams {
                self.transmit(d.clone(), cx);
            }
            self.last_resp = Some((msg_id, dgrams));
            self.stats.responses_sent += 1;
        }
        self.next_peer_id = msg_id.wrapping_add(1);
    }

    fn send_request(
        &mut self,
        now: Instant,
        exchange: ExchangeType,
        inner: &[Payload],
        req: Req,
        peer: &PeerConfig,
        cx: &mut Ctx<'_>,
    ) {
        let msg_id = self.next_req_id;
        let Some(dgrams) = self.seal_all(exchange, false, msg_id, inner, cx.config.fragment_size)
        else {
            return;
        };
        self.next_req_id += 1;
        for d in &dgrams {
            self.transmit(d.clone(), cx);
        }
        self.stats.requests_sent += 1;
        self.pending = Some(Pending {
            msg_id,
            datagrams: dgrams,
            req,
            retries: 0,
            first_sent: now,
            next_at: now + peer.retransmit.initial,
        });
    }

    /// Drops this SA because the peer restarted (INITIAL_CONTACT on a newer SA).
    pub fn drop_stale(&mut self, cx: &mut Ctx<'_>) -> Outcome {
        self.down(DownReason::InitialContact, cx);
        self.outcome()
    }

    /// Closes the SA: reports its Child SAs deleted and, unless it was
    /// already replaced or redundant, the IKE SA down.
    fn down(&mut self, reason: DownReason, cx: &mut Ctx<'_>) {
        if self.is_closed() {
            return;
        }
        for c in self.children.drain(..) {
            cx.events.push_back(Event::ChildSaDeleted {
                conn: self.conn,
                spi_in: c.spi_in,
                spi_out: c.spi_out,
                reason: ChildDeleteReason::IkeSaGone,
            });
        }
        if matches!(
            self.state,
            State::Established(_) | State::AuthSent(_) | State::InitSent(_) | State::HalfOpen(_)
        ) {
            cx.events.push_back(Event::IkeSaDown {
                conn: self.conn,
                reason,
            });
        }
        self.state = State::Closed;
    }

    // ----------------------------------------------------------------- init

    pub fn initiate(
        now: Instant,
        conn: ConnId,
        peer: &PeerConfig,
        cx: &mut Ctx<'_>,
    ) -> Result<IkeSa, ApiError> {
        let group = peer
            .ike_proposals
            .first()
            .and_then(|p| p.dh.first())
            .copied()
            .ok_or(ApiError::BadConfig)?;
        let spi_i = glue::ike_spi(cx.rng);
        let ni = glue::random(cx.rng, 32);
        let ke = glue::kex(cx.rng, group).ok_or(ApiError::BadConfig)?;
        let init = InitSent {
            ke,
            ni,
            cookie: None,
            retries: 0,
            request: Vec::new(),
        };
        let addrs = (peer.local, peer.remote);
        let mut sa = IkeSa::blank(conn, true, addrs, State::InitSent(Box::new(init)), now);
        sa.spi_i = spi_i;
        sa.send_init(now, peer, cx);
        Ok(sa)
    }

    /// Sends (or, after COOKIE / INVALID_KE_PAYLOAD, re-sends) IKE_SA_INIT.
    fn send_init(&mut self, now: Instant, peer: &PeerConfig, cx: &mut Ctx<'_>) {
        let State::InitSent(init) = &self.state else {
            return;
        };
        let mut payloads = Vec::new();
        if let Some(c) = &init.cookie {
            payloads.push(notify_data(NotifyType::COOKIE, c.clone()));
        }
        let props = peer
            .ike_proposals
            .iter()
            .enumerate()
            .map(|(i, p)| p.to_wire(i as u8 + 1, &[]))
            .collect();
        payloads.push(Payload::Sa(props));
        payloads.push(Payload::Ke(KePayload {
            group: init.ke.group().0,
            data: init.ke.public_value().to_vec(),
        }));
        payloads.push(Payload::Nonce(init.ni.clone()));
        let src = if peer.force_encap {
            glue::random(cx.rng, 20)
        } else {
            glue::nat_hash(self.spi_i, 0, self.local)
        };
        payloads.push(notify_data(NotifyType::NAT_DETECTION_SOURCE_IP, src));
        payloads.push(notify_data(
            NotifyType::NAT_DETECTION_DESTINATION_IP,
            glue::nat_hash(self.spi_i, 0, self.remote),
        ));
        payloads.push(notify(NotifyType::IKEV2_FRAGMENTATION_SUPPORTED));
        let msg = Message {
            header: Header::new(
                self.spi_i,
                0,
                ExchangeType::IKE_SA_INIT,
                Flags::INITIATOR,
                0,
            ),
            payloads,
        };
        let bytes = msg.emit();
        if let State::InitSent(init) = &mut self.state {
            init.request = bytes.clone();
        }
        self.next_req_id = 1;
        self.transmit(bytes.clone(), cx);
        self.stats.requests_sent += 1;
        self.pending = Some(Pending {
            msg_id: 0,
            datagrams: vec![bytes],
            req: Req::Init,
            retries: 0,
            first_sent: now,
            next_at: now + peer.retransmit.initial,
        });
    }

    /// Re-sends the cached IKE_SA_INIT response for a retransmitted request.
    pub fn resend_init_response(&mut self, msg: &[u8], cx: &mut Ctx<'_>) -> Handled {
        let result = match &self.state {
            State::HalfOpen(h) if msg == h.init_req.as_slice() => {
                if let Some((_, d)) = &self.last_resp {
                    for d in d.clone() {
                        self.transmit(d, cx);
                    }
                    self.stats.responses_sent += 1;
                }
                Ok(())
            }
            _ => Err(DatagramError::Unexpected),
        };
        Handled {
            result,
            outcome: self.outcome(),
        }
    }

    /// Answers a new IKE_SA_INIT request that the endpoint admitted (its
    /// cookie, if one was required, is checked): a half-open responder SA,
    /// or a stateless refusal (INVALID_KE_PAYLOAD, no proposal).
    pub fn respond_init(
        now: Instant,
        d: &Datagram<'_>,
        peers: &[PeerConfig],
        cx: &mut Ctx<'_>,
    ) -> Result<IkeSa, DatagramError> {
        let (h, local, remote, natt) = (d.header, d.local, d.remote, d.natt);
        let msg = match Message::parse(d.bytes) {
            Ok(m) => m,
            Err(ParseError::UnsupportedCritical(t)) => {
                let n = notify_data(NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD, vec![t.0]);
                stateless_init_reply(d, n, cx);
                return Err(DatagramError::Parse(ParseError::UnsupportedCritical(t)));
            }
            Err(e) => return Err(DatagramError::Parse(e)),
        };
        if h.message_id != 0 || !h.is_initiator() {
            return Err(DatagramError::Unexpected);
        }
        let p = &msg.payloads;
        let (Some(offered), Some(ke), Some(ni)) = (sa_of(p), ke_of(p), nonce_of(p)) else {
            stateless_init_reply(d, notify(NotifyType::INVALID_SYNTAX), cx);
            return Err(DatagramError::Refused);
        };
        let refuse = |n: Payload, cx: &mut Ctx<'_>| {
            stateless_init_reply(d, n, cx);
            Err(DatagramError::Refused)
        };
        let candidates: Vec<usize> = (0..peers.len())
            .filter(|&i| peer_matches_addr(&peers[i], local, remote))
            .collect();
        let Some((conn, (num, choice))) = candidates.iter().find_map(|&i| {
            proposal::select_ike(&peers[i].ike_proposals, offered, Some(DhGroup(ke.group)))
                .map(|c| (i, c))
        }) else {
            return refuse(notify(NotifyType::NO_PROPOSAL_CHOSEN), cx);
        };
        if choice.dh.0 != ke.group {
            return refuse(
                notify_data(
                    NotifyType::INVALID_KE_PAYLOAD,
                    choice.dh.0.to_be_bytes().to_vec(),
                ),
                cx,
            );
        }
        let peer = &peers[conn];
        let Some(our_ke) = glue::kex(cx.rng, choice.dh) else {
            return refuse(notify(NotifyType::NO_PROPOSAL_CHOSEN), cx);
        };
        let Some(g_ir) = glue::agree(&our_ke, &ke.data) else {
            return refuse(notify(NotifyType::INVALID_SYNTAX), cx);
        };
        let spi_r = glue::ike_spi(cx.rng);
        let nr = glue::random(cx.rng, 32);
        let keys = glue::derive_ike(&NewIkeKeys {
            choice: &choice,
            g_ir: &g_ir,
            ni,
            nr: &nr,
            spi_i: h.spi_i,
            spi_r,
            initiator: false,
            export: cx.config.export_ike_keys,
        })
        .ok_or(DatagramError::Refused)?;
        // NAT detection: the request's hashes use SPIr = 0.
        let srcs: Vec<&Notify> = p
            .iter()
            .filter_map(|x| match x {
                Payload::Notify(n) if n.ty == NotifyType::NAT_DETECTION_SOURCE_IP => Some(n),
                _ => None,
            })
            .collect();
        let dst = find_notify(p, NotifyType::NAT_DETECTION_DESTINATION_IP);
        let natd = !srcs.is_empty() && dst.is_some();
        let (mut nat_local, mut nat_remote) = (false, false);
        if natd {
            let expect_src = glue::nat_hash(h.spi_i, 0, remote);
            nat_remote = !srcs.iter().any(|n| n.data == expect_src);
            nat_local = dst.is_some_and(|n| n.data != glue::nat_hash(h.spi_i, 0, local))
                || peer.force_encap;
        }
        let peer_frag = find_notify(p, NotifyType::IKEV2_FRAGMENTATION_SUPPORTED).is_some();
        let mut payloads = vec![
            Payload::Sa(vec![IkeProposal::choice_to_wire(&choice, num, &[])]),
            Payload::Ke(KePayload {
                group: choice.dh.0,
                data: our_ke.public_value().to_vec(),
            }),
            Payload::Nonce(nr.clone()),
        ];
        if natd {
            let src = if peer.force_encap {
                glue::random(cx.rng, 20)
            } else {
                glue::nat_hash(h.spi_i, spi_r, local)
            };
            payloads.push(notify_data(NotifyType::NAT_DETECTION_SOURCE_IP, src));
            payloads.push(notify_data(
                NotifyType::NAT_DETECTION_DESTINATION_IP,
                glue::nat_hash(h.spi_i, spi_r, remote),
            ));
        }
        if peer_frag {
            payloads.push(notify(NotifyType::IKEV2_FRAGMENTATION_SUPPORTED));
        }
        let resp = Message {
            header: Header::new(
                h.spi_i,
                spi_r,
                ExchangeType::IKE_SA_INIT,
                Flags::RESPONSE,
                0,
            ),
            payloads,
        }
        .emit();
        let handshake = Handshake {
            keyed: Keyed { choice, keys },
            ni: ni.to_vec(),
            nr,
            init_req: d.bytes.to_vec(),
            init_resp: resp.clone(),
        };
        let state = State::HalfOpen(Box::new(handshake));
        let mut sa = IkeSa::blank(ConnId(conn), false, (local, remote), state, now);
        sa.spi_i = h.spi_i;
        sa.spi_r = spi_r;
        sa.encap = natt;
        sa.nat_local = nat_local;
        sa.nat_remote = nat_remote;
        sa.peer_frag = peer_frag;
        let dgram = with_marker(natt, resp);
        sa.transmit(dgram.clone(), cx);
        sa.stats.responses_sent += 1;
        sa.last_resp = Some((0, vec![dgram]));
        sa.next_peer_id = 1;
        sa.deadline = Some(now + cx.config.flood.half_open_timeout);
        if sa.nat_local || sa.nat_remote {
            cx.events.push_back(Event::NatDetected {
                conn: sa.conn,
                local_behind_nat: sa.nat_local,
                remote_behind_nat: sa.nat_remote,
            });
        }
        Ok(sa)
    }

    fn handle_init_response(
        &mut self,
        now: Instant,
        msg: &Message,
        bytes: &[u8],
        peer: &PeerConfig,
        cx: &mut Ctx<'_>,
    ) -> Result<(), DatagramError> {
        let State::InitSent(init) = &mut self.state else {
            return Err(DatagramError::Unexpected);
        };
        let p = &msg.payloads;
        if let Some(c) = find_notify(p, NotifyType::COOKIE) {
            if init.cookie.is_some() && init.retries >= 3 || c.data.is_empty() || c.data.len() > 64
            {
                return Err(DatagramError::Unexpected);
            }
            init.retries += 1;
            init.cookie = Some(c.data.clone());
            self.send_init(now, peer, cx);
            return Ok(());
        }
        if let Some(n) = find_notify(p, NotifyType::INVALID_KE_PAYLOAD) {
            let Ok(g) = <[u8; 2]>::try_from(n.data.as_slice()) else {
                return Err(DatagramError::Unexpected);
            };
            let group = DhGroup(u16::from_be_bytes(g));
            let offered = peer.ike_proposals.iter().any(|p| p.dh.contains(&group));
            if !offered || init.ke.group() == group || init.retries >= 3 {
                self.down(DownReason::Refused(NotifyType::INVALID_KE_PAYLOAD), cx);
                return Ok(());
            }
            let Some(ke) = glue::kex(cx.rng, group) else {
                self.down(DownReason::Refused(NotifyType::INVALID_KE_PAYLOAD), cx);
                return Ok(());
            };
            init.retries += 1;
            init.ke = ke;
            self.send_init(now, peer, cx);
            return Ok(());
        }
        if let Some(n) = find_error_notify(p) {
            self.down(DownReason::Refused(n.ty), cx);
            return Ok(());
        }
        let (Some(sa), Some(kep), Some(nr)) = (sa_of(p), ke_of(p), nonce_of(p)) else {
            return Err(DatagramError::Unexpected);
        };
        let Some(choice) = proposal::accept_ike(&peer.ike_proposals, sa) else {
            self.down(DownReason::Protocol, cx);
            return Ok(());
        };
        let ke = &init.ke;
        let g_ir = (kep.group == ke.group().0 && choice.dh == ke.group() && msg.header.spi_r != 0)
            .then(|| glue::agree(ke, &kep.data))
            .flatten();
        let keys = g_ir.and_then(|g_ir| {
            glue::derive_ike(&NewIkeKeys {
                choice: &choice,
                g_ir: &g_ir,
                ni: &init.ni,
                nr,
                spi_i: self.spi_i,
                spi_r: msg.header.spi_r,
                initiator: true,
                export: cx.config.export_ike_keys,
            })
        });
        let Some(keys) = keys else {
            self.down(DownReason::Protocol, cx);
            return Ok(());
        };
        let State::InitSent(init) = mem::replace(&mut self.state, State::Closed) else {
            return Err(DatagramError::Unexpected);
        };
        let InitSent { ni, request, .. } = *init;
        self.state = State::AuthSent(Box::new(Handshake {
            keyed: Keyed { choice, keys },
            ni,
            nr: nr.to_vec(),
            init_req: request,
            init_resp: bytes.to_vec(),
        }));
        self.spi_r = msg.header.spi_r;
        self.peer_frag = find_notify(p, NotifyType::IKEV2_FRAGMENTATION_SUPPORTED).is_some();
        let srcs: Vec<&Notify> = p
            .iter()
            .filter_map(|x| match x {
                Payload::Notify(n) if n.ty == NotifyType::NAT_DETECTION_SOURCE_IP => Some(n),
                _ => None,
            })
            .collect();
        if let (false, Some(dst)) = (
            srcs.is_empty(),
            find_notify(p, NotifyType::NAT_DETECTION_DESTINATION_IP),
        ) {
            let expect_src = glue::nat_hash(self.spi_i, self.spi_r, self.remote);
            self.nat_remote = !srcs.iter().any(|n| n.data == expect_src);
            self.nat_local =
                dst.data != glue::nat_hash(self.spi_i, self.spi_r, self.local) || peer.force_encap;
            if self.nat_local || self.nat_remote {
                self.encap = true;
                self.local.set_port(cx.config.natt_port);
                self.remote.set_port(cx.config.natt_port);
                cx.events.push_back(Event::NatDetected {
                    conn: self.conn,
                    local_behind_nat: self.nat_local,
                    remote_behind_nat: self.nat_remote,
                });
            }
        }
        self.pending = None;
        self.send_auth(now, peer, cx);
        Ok(())
    }

    // ----------------------------------------------------------------- auth

    fn send_auth(&mut self, now: Instant, peer: &PeerConfig, cx: &mut Ctx<'_>) {
        let Some(h) = self.handshake() else {
            return;
        };
        let idi = peer.local_id.to_payload();
        let Some(auth) = glue::auth(
            &h.keyed.keys,
            peer.psk.as_bytes(),
            &h.init_req,
            &h.nr,
            &idi.body(),
        ) else {
            return self.down(DownReason::Protocol, cx);
        };
        let child_spi = glue::esp_spi(cx.rng);
        let mut inner = vec![Payload::IdI(idi)];
        if let Some(r) = &peer.remote_id {
            inner.push(Payload::IdR(r.to_payload()));
        }
        inner.push(Payload::Auth {
            method: AuthMethod::SHARED_KEY_MIC,
            data: auth,
        });
        inner.push(notify(NotifyType::INITIAL_CONTACT));
        let props = peer
            .esp_proposals
            .iter()
            .enumerate()
            .map(|(i, p)| p.to_wire(i as u8 + 1, child_spi, false))
            .collect();
        inner.push(Payload::Sa(props));
        inner.push(Payload::TsI(TsPayload {
            selectors: peer.local_ts.clone(),
        }));
        inner.push(Payload::TsR(TsPayload {
            selectors: peer.remote_ts.clone(),
        }));
        self.send_request(
            now,
            ExchangeType::IKE_AUTH,
            &inner,
            Req::Auth { child_spi },
            peer,
            cx,
        );
    }
}

/// Whether a connection may serve a peer at `remote` reached on `local`.
fn peer_matches_addr(peer: &PeerConfig, local: SocketAddr, remote: SocketAddr) -> bool {
    (peer.remote.ip().is_unspecified() || peer.remote.ip() == remote.ip())
        && (peer.local.ip().is_unspecified() || peer.local.ip() == local.ip())
}

/// Delay before the `retries`-th retransmission.
fn backoff(peer: &PeerConfig, retries: u32) -> Duration {
    let f = 1u32 << retries.min(16);
    peer.retransmit
        .initial
        .saturating_mul(f)
        .min(peer.retransmit.max_interval)
}

/// Retry delay after TEMPORARY_FAILURE.
const RETRY_AFTER: Duration = Duration::from_secs(2);
/// How long a replaced or redundant IKE SA waits for its DELETE exchange.
const REPLACED_LINGER: Duration = Duration::from_secs(30);

fn id_matches(want: &Option<Identity>, got: &Option<Identity>) -> bool {
    match want {
        None => true,
        Some(w) => got.as_ref() == Some(w),
    }
}

fn esp_group(peer: &PeerConfig) -> Option<DhGroup> {
    peer.esp_proposals
        .iter()
        .find_map(|p| p.dh.first().copied())
}

fn esp_wire(props: &[EspProposal], spi: u32, with_dh: bool) -> Vec<crate::message::Proposal> {
    props
        .iter()
        .enumerate()
        .map(|(i, p)| p.to_wire(i as u8 + 1, spi, with_dh))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Psk;

    struct Queues {
        config: Config,
        rng: rand_core::OsRng,
        transmits: VecDeque<Transmit>,
        events: VecDeque<Event>,
    }

    impl Queues {
        fn new() -> Queues {
            Queues {
                config: Config::default(),
                rng: rand_core::OsRng,
                transmits: VecDeque::new(),
                events: VecDeque::new(),
            }
        }

        fn ctx(&mut self) -> Ctx<'_> {
            Ctx {
                config: &self.config,
                rng: &mut self.rng,
                transmits: &mut self.transmits,
                events: &mut self.events,
            }
        }
    }

    fn peer() -> PeerConfig {
        PeerConfig::new(
            "192.0.2.1:500".parse().unwrap(),
            "192.0.2.2:500".parse().unwrap(),
            Identity::Fqdn("a.example".into()),
            Psk::new(b"psk"),
        )
    }

    #[test]
    fn keys_exist_only_after_ike_sa_init() {
        let mut q = Queues::new();
        let now = Instant::now();
        let mut sa = IkeSa::initiate(now, ConnId(0), &peer(), &mut q.ctx()).unwrap();
        assert!(matches!(sa.state, State::InitSent(_)));
        assert_eq!(q.transmits.len(), 1, "IKE_SA_INIT sent");
        assert!(sa.keyed().is_none() && sa.algorithms().is_none() && sa.secrets().is_none());
        assert!(!sa.is_established());
        // Nothing can be encrypted yet.
        assert!(sa
            .seal(ExchangeType::INFORMATIONAL, false, 1, &[])
            .is_none());
        let outcome = sa.request(now, Task::Dpd, &peer(), &mut q.ctx());
        assert_eq!(outcome.status, Status::Live);
        assert!(outcome.spawned.is_empty() && outcome.initial_contact.is_none());
        assert_eq!(q.transmits.len(), 1, "no request before IKE_AUTH");
    }

    #[test]
    fn closing_reports_once_and_stops_timers() {
        let mut q = Queues::new();
        let now = Instant::now();
        let mut sa = IkeSa::initiate(now, ConnId(0), &peer(), &mut q.ctx()).unwrap();
        assert!(sa.next_timeout(&[peer()]).is_some(), "retransmission timer");
        let outcome = sa.drop_stale(&mut q.ctx());
        assert_eq!(outcome.status, Status::Closed);
        assert_eq!(
            q.events.drain(..).collect::<Vec<_>>(),
            vec![Event::IkeSaDown {
                conn: ConnId(0),
                reason: DownReason::InitialContact
            }]
        );
        assert_eq!(sa.next_timeout(&[peer()]), None);
        let later = now + Duration::from_secs(3600);
        let outcome = sa.handle_timeout(later, &[peer()], &mut q.ctx());
        assert_eq!(outcome.status, Status::Closed);
        let _ = sa.drop_stale(&mut q.ctx());
        assert!(q.events.is_empty(), "reported once");
        assert_eq!(q.transmits.len(), 1, "no retransmission after closing");
    }
}
