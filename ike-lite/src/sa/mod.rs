//! One IKE SA: its exchanges (RFC 7296 §1.2-§1.4), Child SAs, timers,
//! retransmission, rekeying with collision handling (§2.8.1) and NAT-T.

mod exchange;
mod glue;

pub(crate) use glue::fill as fill_random;

use crate::child::{ChildSa, KeyMaterial};
use crate::config::{Config, Identity, PeerConfig};
use crate::crypto::{DhGroup, KeyExchange};
use crate::events::{
    ApiError, AuthFailure, ChildDeleteReason, ConnId, DatagramError, DownReason, Event,
    IkeSaSecrets, IkeSaStats, Transmit,
};
use crate::message::{
    find_error_notify, find_notify, parse_payloads, AuthMethod, Delete, ExchangeType, Flags,
    Header, KePayload, Message, Notify, NotifyType, ParseError, Payload, PayloadType, ProtocolId,
    Reassembler, TsPayload, HEADER_LEN,
};
use crate::proposal::{self, EspChoice, EspProposal, IkeChoice, IkeProposal};
use crate::ts::{self, TrafficSelector};
use glue::Keys;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Output queues shared by all SAs during one call.
pub(crate) struct Out<'a> {
    pub config: &'a Config,
    pub transmits: &'a mut VecDeque<Transmit>,
    pub events: &'a mut VecDeque<Event>,
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
    RekeyChild {
        old_spi_in: u32,
        new_spi_in: u32,
        ni: Vec<u8>,
        ke: Option<KeyExchange>,
    },
    RekeyIke {
        new_spi: u64,
        ni: Vec<u8>,
        ke: KeyExchange,
    },
    Dpd,
    DeleteChild {
        spi_in: u32,
        reason: ChildDeleteReason,
    },
    DeleteIke {
        reason: DownReason,
    },
}

struct Pending {
    msg_id: u32,
    datagrams: Vec<Vec<u8>>,
    req: Req,
    retries: u32,
    first_sent: Instant,
    next_at: Instant,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Initiator: IKE_SA_INIT sent.
    InitSent,
    /// Initiator: IKE_AUTH sent.
    AuthSent,
    /// Responder: IKE_SA_INIT answered, waiting for IKE_AUTH.
    HalfOpen,
    /// Authenticated.
    Established,
    /// Replaced by a rekeyed IKE SA; only waits for the DELETE exchange.
    Replaced,
    /// Lost an IKE rekey collision; will be deleted (by us or the peer).
    Redundant,
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
    choice: Option<IkeChoice>,
    keys: Option<Keys>,
    ni: Vec<u8>,
    nr: Vec<u8>,
    ke: Option<KeyExchange>,
    init_req: Vec<u8>,
    init_resp: Vec<u8>,
    cookie: Option<Vec<u8>>,
    init_retries: u8,
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
    pub stats: IkeSaStats,
    /// New IKE SAs for the endpoint to register (IKE rekey).
    pub spawned: Vec<IkeSa>,
    /// Remove this SA.
    pub dead: bool,
    /// Key in the endpoint's half-open table.
    pub half_open_key: Option<(u64, SocketAddr)>,
    /// The peer sent INITIAL_CONTACT: older IKE SAs of this connection go.
    pub initial_contact: bool,
    /// The identity the peer authenticated with (responder side), used to
    /// scope INITIAL_CONTACT to the SAs of that identity (RFC 7296 §2.4).
    pub peer_identity: Option<Identity>,
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

fn stateless_init_reply(
    h: &Header,
    local: SocketAddr,
    remote: SocketAddr,
    natt: bool,
    n: Payload,
    out: &mut Out<'_>,
) {
    let header = Header::new(h.spi_i, 0, ExchangeType::IKE_SA_INIT, Flags::RESPONSE, 0);
    let msg = Message {
        header,
        payloads: vec![n],
    };
    out.transmits.push_back(Transmit {
        src: local,
        dst: remote,
        payload: with_marker(natt, msg.emit()),
        non_esp_marker: natt,
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
        local: SocketAddr,
        remote: SocketAddr,
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
            state: State::InitSent,
            choice: None,
            keys: None,
            ni: Vec::new(),
            nr: Vec::new(),
            ke: None,
            init_req: Vec::new(),
            init_resp: Vec::new(),
            cookie: None,
            init_retries: 0,
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
            dead: false,
            half_open_key: None,
            initial_contact: false,
            peer_identity: None,
        }
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
        self.state == State::Established && !self.dead
    }

    pub fn is_half_open(&self) -> bool {
        self.state == State::HalfOpen
    }

    /// The negotiated algorithms (once IKE_SA_INIT is done).
    pub fn algorithms(&self) -> Option<IkeChoice> {
        self.choice
    }

    /// The exportable secrets (only kept with `Config::export_ike_keys`).
    pub fn secrets(&self) -> Option<IkeSaSecrets> {
        let [sk_ei, sk_er, sk_ai, sk_ar] = self.keys.as_ref()?.export.clone()?;
        Some(IkeSaSecrets {
            conn: self.conn,
            spi_i: self.spi_i,
            spi_r: self.spi_r,
            algorithms: self.choice?,
            sk_ei,
            sk_er,
            sk_ai,
            sk_ar,
        })
    }

    /// Queues [`Event::IkeSaSecrets`] when secrets are exported.
    fn push_secrets(&self, out: &mut Out<'_>) {
        if let Some(s) = self.secrets() {
            out.events.push_back(Event::IkeSaSecrets(Box::new(s)));
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

    fn transmit(&self, payload: Vec<u8>, out: &mut Out<'_>) {
        out.transmits.push_back(Transmit {
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
        let keys = self.keys.as_ref()?;
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
        let keys = self.keys.as_ref()?;
        let c = keys.out.as_ref();
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
        out: &mut Out<'_>,
    ) {
        if let Some(dgrams) = self.seal_all(exchange, true, msg_id, inner, out.config.fragment_size)
        {
            for d in &dgrams {
                self.transmit(d.clone(), out);
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
        out: &mut Out<'_>,
    ) {
        let msg_id = self.next_req_id;
        let Some(dgrams) = self.seal_all(exchange, false, msg_id, inner, out.config.fragment_size)
        else {
            return;
        };
        self.next_req_id += 1;
        for d in &dgrams {
            self.transmit(d.clone(), out);
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
    pub fn drop_stale(&mut self, out: &mut Out<'_>) {
        self.down(DownReason::InitialContact, out);
    }

    fn down(&mut self, reason: DownReason, out: &mut Out<'_>) {
        if self.dead {
            return;
        }
        for c in self.children.drain(..) {
            out.events.push_back(Event::ChildSaDeleted {
                conn: self.conn,
                spi_in: c.spi_in,
                spi_out: c.spi_out,
                reason: ChildDeleteReason::IkeSaGone,
            });
        }
        if matches!(
            self.state,
            State::Established | State::AuthSent | State::InitSent | State::HalfOpen
        ) {
            out.events.push_back(Event::IkeSaDown {
                conn: self.conn,
                reason,
            });
        }
        self.dead = true;
    }

    // ----------------------------------------------------------------- init

    pub fn initiate(
        now: Instant,
        conn: ConnId,
        peer: &PeerConfig,
        out: &mut Out<'_>,
    ) -> Result<IkeSa, ApiError> {
        let group = peer
            .ike_proposals
            .first()
            .and_then(|p| p.dh.first())
            .copied()
            .ok_or(ApiError::BadConfig)?;
        let mut sa = IkeSa::blank(conn, true, peer.local, peer.remote, now);
        sa.spi_i = glue::ike_spi();
        sa.ni = glue::random(32);
        sa.ke = Some(glue::kex(group).ok_or(ApiError::BadConfig)?);
        sa.send_init(now, peer, out);
        Ok(sa)
    }

    fn send_init(&mut self, now: Instant, peer: &PeerConfig, out: &mut Out<'_>) {
        let Some(ke) = self.ke.as_ref() else { return };
        let mut payloads = Vec::new();
        if let Some(c) = &self.cookie {
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
            group: ke.group().0,
            data: ke.public_value().to_vec(),
        }));
        payloads.push(Payload::Nonce(self.ni.clone()));
        let src = if peer.force_encap {
            glue::random(20)
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
        self.init_req = bytes.clone();
        self.next_req_id = 1;
        self.transmit(bytes.clone(), out);
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
    pub fn resend_init_response(
        &mut self,
        msg: &[u8],
        out: &mut Out<'_>,
    ) -> Result<(), DatagramError> {
        if self.state != State::HalfOpen || msg != self.init_req.as_slice() {
            return Err(DatagramError::Unexpected);
        }
        if let Some((_, d)) = &self.last_resp {
            for d in d.clone() {
                self.transmit(d, out);
            }
            self.stats.responses_sent += 1;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub fn respond_init(
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        natt: bool,
        h: &Header,
        bytes: &[u8],
        peers: &[PeerConfig],
        require_cookie: bool,
        cookie_secret: &[u8],
        out: &mut Out<'_>,
    ) -> Result<IkeSa, DatagramError> {
        let msg = match Message::parse(bytes) {
            Ok(m) => m,
            Err(ParseError::UnsupportedCritical(t)) => {
                let n = notify_data(NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD, vec![t.0]);
                stateless_init_reply(h, local, remote, natt, n, out);
                return Err(DatagramError::Parse(ParseError::UnsupportedCritical(t)));
            }
            Err(e) => return Err(DatagramError::Parse(e)),
        };
        if h.message_id != 0 || !h.is_initiator() {
            return Err(DatagramError::Unexpected);
        }
        let p = &msg.payloads;
        let (Some(offered), Some(ke), Some(ni)) = (sa_of(p), ke_of(p), nonce_of(p)) else {
            stateless_init_reply(
                h,
                local,
                remote,
                natt,
                notify(NotifyType::INVALID_SYNTAX),
                out,
            );
            return Err(DatagramError::Refused);
        };
        let refuse = |n: Payload, out: &mut Out<'_>| {
            stateless_init_reply(h, local, remote, natt, n, out);
            Err(DatagramError::Refused)
        };
        if require_cookie {
            let expected = glue::cookie(cookie_secret, ni, remote.ip(), h.spi_i);
            let ok = matches!(p.first(), Some(Payload::Notify(n)) if n.ty == NotifyType::COOKIE && glue::ct_eq(&n.data, &expected));
            if !ok {
                return refuse(notify_data(NotifyType::COOKIE, expected), out);
            }
        }
        let candidates: Vec<usize> = (0..peers.len())
            .filter(|&i| peer_matches_addr(&peers[i], local, remote))
            .collect();
        let Some((conn, (num, choice))) = candidates.iter().find_map(|&i| {
            proposal::select_ike(&peers[i].ike_proposals, offered, Some(DhGroup(ke.group)))
                .map(|c| (i, c))
        }) else {
            return refuse(notify(NotifyType::NO_PROPOSAL_CHOSEN), out);
        };
        if choice.dh.0 != ke.group {
            return refuse(
                notify_data(
                    NotifyType::INVALID_KE_PAYLOAD,
                    choice.dh.0.to_be_bytes().to_vec(),
                ),
                out,
            );
        }
        let peer = &peers[conn];
        let Some(our_ke) = glue::kex(choice.dh) else {
            return refuse(notify(NotifyType::NO_PROPOSAL_CHOSEN), out);
        };
        let Some(g_ir) = glue::agree(&our_ke, &ke.data) else {
            return refuse(notify(NotifyType::INVALID_SYNTAX), out);
        };
        let mut sa = IkeSa::blank(ConnId(conn), false, local, remote, now);
        sa.spi_i = h.spi_i;
        sa.spi_r = glue::ike_spi();
        sa.ni = ni.to_vec();
        sa.nr = glue::random(32);
        sa.choice = Some(choice);
        sa.keys = Some(
            glue::derive_ike(
                &choice,
                &sa.ni,
                &sa.nr,
                &g_ir,
                sa.spi_i,
                sa.spi_r,
                false,
                out.config.export_ike_keys,
            )
            .ok_or(DatagramError::Refused)?,
        );
        sa.encap = natt;
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
        if natd {
            let expect_src = glue::nat_hash(h.spi_i, 0, remote);
            sa.nat_remote = !srcs.iter().any(|n| n.data == expect_src);
            sa.nat_local = dst.is_some_and(|n| n.data != glue::nat_hash(h.spi_i, 0, local))
                || peer.force_encap;
        }
        sa.peer_frag = find_notify(p, NotifyType::IKEV2_FRAGMENTATION_SUPPORTED).is_some();
        let mut payloads = vec![
            Payload::Sa(vec![IkeProposal::choice_to_wire(&choice, num, &[])]),
            Payload::Ke(KePayload {
                group: choice.dh.0,
                data: our_ke.public_value().to_vec(),
            }),
            Payload::Nonce(sa.nr.clone()),
        ];
        if natd {
            let src = if peer.force_encap {
                glue::random(20)
            } else {
                glue::nat_hash(sa.spi_i, sa.spi_r, local)
            };
            payloads.push(notify_data(NotifyType::NAT_DETECTION_SOURCE_IP, src));
            payloads.push(notify_data(
                NotifyType::NAT_DETECTION_DESTINATION_IP,
                glue::nat_hash(sa.spi_i, sa.spi_r, remote),
            ));
        }
        if sa.peer_frag {
            payloads.push(notify(NotifyType::IKEV2_FRAGMENTATION_SUPPORTED));
        }
        let resp = Message {
            header: Header::new(
                sa.spi_i,
                sa.spi_r,
                ExchangeType::IKE_SA_INIT,
                Flags::RESPONSE,
                0,
            ),
            payloads,
        }
        .emit();
        sa.init_req = bytes.to_vec();
        sa.init_resp = resp.clone();
        let dgram = with_marker(natt, resp);
        sa.transmit(dgram.clone(), out);
        sa.stats.responses_sent += 1;
        sa.last_resp = Some((0, vec![dgram]));
        sa.next_peer_id = 1;
        sa.state = State::HalfOpen;
        sa.half_open_key = Some((h.spi_i, remote));
        sa.deadline = Some(now + out.config.half_open_timeout);
        if sa.nat_local || sa.nat_remote {
            out.events.push_back(Event::NatDetected {
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
        out: &mut Out<'_>,
    ) -> Result<(), DatagramError> {
        let p = &msg.payloads;
        if let Some(c) = find_notify(p, NotifyType::COOKIE) {
            if self.cookie.is_some() && self.init_retries >= 3
                || c.data.is_empty()
                || c.data.len() > 64
            {
                return Err(DatagramError::Unexpected);
            }
            self.init_retries += 1;
            self.cookie = Some(c.data.clone());
            self.send_init(now, peer, out);
            return Ok(());
        }
        if let Some(n) = find_notify(p, NotifyType::INVALID_KE_PAYLOAD) {
            let Ok(g) = <[u8; 2]>::try_from(n.data.as_slice()) else {
                return Err(DatagramError::Unexpected);
            };
            let group = DhGroup(u16::from_be_bytes(g));
            let offered = peer.ike_proposals.iter().any(|p| p.dh.contains(&group));
            let current = self.ke.as_ref().map(KeyExchange::group);
            if !offered || current == Some(group) || self.init_retries >= 3 {
                self.down(DownReason::Refused(NotifyType::INVALID_KE_PAYLOAD), out);
                return Ok(());
            }
            let Some(ke) = glue::kex(group) else {
                self.down(DownReason::Refused(NotifyType::INVALID_KE_PAYLOAD), out);
                return Ok(());
            };
            self.init_retries += 1;
            self.ke = Some(ke);
            self.send_init(now, peer, out);
            return Ok(());
        }
        if let Some(n) = find_error_notify(p) {
            self.down(DownReason::Refused(n.ty), out);
            return Ok(());
        }
        let (Some(sa), Some(kep), Some(nr)) = (sa_of(p), ke_of(p), nonce_of(p)) else {
            return Err(DatagramError::Unexpected);
        };
        let fail = |s: &mut Self, out: &mut Out<'_>| {
            s.down(DownReason::Protocol, out);
            Ok(())
        };
        let Some(choice) = proposal::accept_ike(&peer.ike_proposals, sa) else {
            return fail(self, out);
        };
        let Some(ke) = self.ke.take() else {
            return fail(self, out);
        };
        if kep.group != ke.group().0 || choice.dh != ke.group() || msg.header.spi_r == 0 {
            return fail(self, out);
        }
        let Some(g_ir) = glue::agree(&ke, &kep.data) else {
            return fail(self, out);
        };
        self.spi_r = msg.header.spi_r;
        self.nr = nr.to_vec();
        let Some(keys) = glue::derive_ike(
            &choice,
            &self.ni,
            &self.nr,
            &g_ir,
            self.spi_i,
            self.spi_r,
            true,
            out.config.export_ike_keys,
        ) else {
            return fail(self, out);
        };
        self.choice = Some(choice);
        self.keys = Some(keys);
        self.init_resp = bytes.to_vec();
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
                self.local.set_port(out.config.natt_port);
                self.remote.set_port(out.config.natt_port);
                out.events.push_back(Event::NatDetected {
                    conn: self.conn,
                    local_behind_nat: self.nat_local,
                    remote_behind_nat: self.nat_remote,
                });
            }
        }
        self.pending = None;
        self.send_auth(now, peer, out);
        Ok(())
    }

    // ----------------------------------------------------------------- auth

    fn send_auth(&mut self, now: Instant, peer: &PeerConfig, out: &mut Out<'_>) {
        let Some(keys) = self.keys.as_ref() else {
            return;
        };
        let idi = peer.local_id.to_payload();
        let Some(auth) = glue::auth(
            keys,
            peer.psk.as_bytes(),
            &self.init_req,
            &self.nr,
            &idi.body(),
        ) else {
            return self.down(DownReason::Protocol, out);
        };
        let child_spi = glue::esp_spi();
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
        self.state = State::AuthSent;
        self.send_request(
            now,
            ExchangeType::IKE_AUTH,
            &inner,
            Req::Auth { child_spi },
            peer,
            out,
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
