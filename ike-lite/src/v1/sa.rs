//! One ISAKMP SA: main mode with pre-shared keys (RFC 2409 §5.4), both
//! roles, NAT-T detection and the float to port 4500 (RFC 3947), the
//! phase-1 IV chain, retransmission with backoff and duplicate answers.
//! Quick mode lives in [`super::quick`], informational exchanges (DELETE,
//! DPD, notifications) in [`super::info`]; they extend [`IsakmpSa`].

use super::cbc::{Iv, MessageCipher};
use super::keys::{self, Phase1Inputs, Phase1Keys};
use super::proposal::{self as prop, Phase1Choice};
use super::quick::{Child, Quick};
use super::wire::{self, Exchange, Header, IdPayload, Kind, Message, SaPayload};
use super::Error;
use crate::config::{Config, ConnId, Identity, PeerConfig};
use crate::crypto::{KeyExchange, PrfId};
use crate::events::{AuthFailure, ChildDeleteReason, DownReason, Event, IkeSaStats, Transmit};
use rand_core::CryptoRngCore;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Vendor ID of RFC 3947 NAT traversal: MD5("RFC 3947").
pub const VID_NATT_RFC3947: [u8; 16] = [
    0x4a, 0x13, 0x1c, 0x81, 0x07, 0x03, 0x58, 0x45, 0x5c, 0x57, 0x28, 0xf2, 0x0e, 0x95, 0x45, 0x2f,
];
/// Vendor ID of Dead Peer Detection (RFC 3706 §5.1).
pub const VID_DPD: [u8; 16] = [
    0xaf, 0xca, 0xd7, 0x13, 0x68, 0xa1, 0xf1, 0xc9, 0x6b, 0x86, 0x96, 0xfc, 0x77, 0x57, 0x01, 0x00,
];

/// How long a replaced ISAKMP SA lingers for the peer's DELETE.
const RETIRED_GRACE: Duration = Duration::from_secs(30);

/// The keys Wireshark needs to decrypt an ISAKMP SA's messages (its
/// "IKEv1 Decryption Table": initiator cookie and encryption key); zeroized
/// on drop, redacted `Debug`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IsakmpSaSecrets {
    /// Connection.
    pub conn: ConnId,
    /// Initiator cookie.
    pub cookie_i: u64,
    /// Responder cookie.
    pub cookie_r: u64,
    /// Negotiated algorithms.
    pub algorithms: crate::proposal::IkeChoice,
    /// `Ka`, the message encryption key.
    pub enc_key: crate::crypto::SecretBytes,
}

/// What every SA call borrows from the endpoint.
pub(crate) struct Ctx<'a> {
    pub config: &'a Config,
    pub rng: &'a mut dyn CryptoRngCore,
    pub transmits: &'a mut VecDeque<Transmit>,
    pub events: &'a mut VecDeque<Event>,
}

/// A received datagram as the SA sees it.
pub(crate) struct Datagram<'a> {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub bytes: &'a [u8],
    pub header: Header,
}

/// A message we keep sending until the answer comes.
pub(crate) struct Outstanding {
    pub msg: Vec<u8>,
    pub next_at: Instant,
    pub interval: Duration,
    pub tries: u32,
}

impl Outstanding {
    pub fn new(now: Instant, msg: Vec<u8>, peer: &PeerConfig) -> Outstanding {
        Outstanding {
            msg,
            next_at: now + peer.retransmit.initial,
            interval: peer.retransmit.initial,
            tries: 0,
        }
    }

    /// On expiry: `true` and the next deadline set when one more
    /// retransmission is allowed.
    pub fn due(&mut self, now: Instant, peer: &PeerConfig) -> Option<bool> {
        if now < self.next_at {
            return None;
        }
        if self.tries >= peer.retransmit.max_retries {
            return Some(false);
        }
        self.tries += 1;
        self.interval = (self.interval * 2).min(peer.retransmit.max_interval);
        self.next_at = now + self.interval;
        Some(true)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// Initiator: sent SA, awaits the responder's SA.
    ISentSa,
    /// Initiator: sent KE/Ni, awaits KE/Nr.
    ISentKe,
    /// Initiator: sent IDii/HASH_I, awaits IDir/HASH_R.
    ISentAuth,
    /// Responder: sent SA, awaits KE/Ni.
    RSentSa,
    /// Responder: sent KE/Nr, awaits IDii/HASH_I.
    RSentKe,
    /// Phase 1 done.
    Established,
    /// Gone; the endpoint removes it.
    Closed,
}

/// The ISAKMP SA.
pub(crate) struct IsakmpSa {
    pub conn: ConnId,
    pub initiator: bool,
    pub cookie_i: u64,
    pub cookie_r: u64,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// Floated to the NAT-T port (messages carry the non-ESP marker, ESP
    /// is UDP-encapsulated).
    pub natt: bool,
    pub local_behind_nat: bool,
    pub(crate) state: State,
    peer_natt: bool,
    pub(crate) peer_dpd: bool,
    offers: Vec<Phase1Choice>,
    pub choice: Option<Phase1Choice>,
    sa_i_b: Vec<u8>,
    dh: Option<KeyExchange>,
    g_xi: Vec<u8>,
    g_xr: Vec<u8>,
    ni: Vec<u8>,
    nr: Vec<u8>,
    pub(crate) keys: Option<Phase1Keys>,
    pub(crate) cipher: Option<MessageCipher>,
    /// The phase-1 IV chain; after phase 1, its last block.
    pub(crate) iv: Iv,
    pub peer_id: Option<Identity>,
    pub(crate) out: Option<Outstanding>,
    /// The last message accepted and our answer to it, for duplicates.
    pub(crate) last_in: Vec<u8>,
    pub(crate) last_answer: Option<Vec<u8>>,
    pub(crate) quick: Vec<Quick>,
    pub(crate) children: Vec<Child>,
    pub rekey_at: Option<Instant>,
    pub expire_at: Option<Instant>,
    /// Next RFC 3948 NAT keepalive (we are behind a NAT).
    keepalive_at: Option<Instant>,
    pub(crate) dpd: super::info::Dpd,
    /// Send INITIAL-CONTACT in message 5 (a first SA, not a rekey).
    initial_contact: bool,
    /// The peer sent INITIAL-CONTACT (the endpoint drops older SAs).
    pub got_initial_contact: bool,
    /// Set when phase 1 completes; the endpoint takes it.
    pub just_established: bool,
    /// The endpoint should start a new phase 1 for this connection.
    pub wants_rekey: bool,
    /// Replaced by a newer ISAKMP SA (children moved): no IkeSaDown.
    pub replaced: bool,
    pub stats: IkeSaStats,
}

/// How long before expiry the side that did not create an SA rekeys it,
/// should its creator not have done so (creators use margins of minutes).
const FALLBACK_REKEY_MARGIN: Duration = Duration::from_secs(30);

/// When to rekey an SA of `lifetime`: the side that created it at the
/// configured margin (with fuzz); the other side only as a fallback just
/// before expiry (the creator's rekey, arriving first, retires the old SA
/// and so cancels it).
pub(crate) fn rekey_time(creator: bool, peer: &PeerConfig, lifetime: Duration, r: f64) -> Duration {
    if creator {
        peer.rekey_after(lifetime, r)
    } else {
        lifetime.saturating_sub(FALLBACK_REKEY_MARGIN.min(lifetime / 10))
    }
}

fn random_cookie(rng: &mut dyn CryptoRngCore) -> u64 {
    loop {
        let c = rng.next_u64();
        if c != 0 {
            return c;
        }
    }
}

fn nonce(rng: &mut dyn CryptoRngCore) -> Vec<u8> {
    let mut n = vec![0u8; 32];
    rng.fill_bytes(&mut n);
    n
}

/// NAT-D hash (RFC 3947 §3.2): HASH(CKY-I | CKY-R | IP | Port).
fn nat_d(prf: PrfId, ci: u64, cr: u64, addr: SocketAddr) -> Vec<u8> {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(a) => a.octets().to_vec(),
        std::net::IpAddr::V6(a) => a.octets().to_vec(),
    };
    keys::hash(
        prf,
        &[
            &ci.to_be_bytes(),
            &cr.to_be_bytes(),
            &ip,
            &addr.port().to_be_bytes(),
        ],
    )
    .unwrap_or_default()
}

fn id_body(id: &Identity) -> Vec<u8> {
    let p = id.to_payload();
    IdPayload {
        id_type: p.id_type.0,
        protocol: 17,
        port: 500,
        data: &p.data,
    }
    .emit()
}

fn identity_of(body: &[u8]) -> Option<Identity> {
    let id = IdPayload::parse(body).ok()?;
    let p = crate::message::IdPayload {
        id_type: crate::message::IdType(id.id_type),
        data: id.data.to_vec(),
    };
    Identity::from_payload(&p)
}

impl IsakmpSa {
    fn blank(
        conn: ConnId,
        initiator: bool,
        peer: &PeerConfig,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> IsakmpSa {
        IsakmpSa {
            conn,
            initiator,
            cookie_i: 0,
            cookie_r: 0,
            local,
            remote,
            natt: false,
            local_behind_nat: false,
            state: State::ISentSa,
            peer_natt: false,
            peer_dpd: false,
            offers: prop::phase1_offers(&peer.ike_proposals, peer.ike_lifetime),
            choice: None,
            sa_i_b: Vec::new(),
            dh: None,
            g_xi: Vec::new(),
            g_xr: Vec::new(),
            ni: Vec::new(),
            nr: Vec::new(),
            keys: None,
            cipher: None,
            iv: [0; 16],
            peer_id: None,
            out: None,
            last_in: Vec::new(),
            last_answer: None,
            quick: Vec::new(),
            children: Vec::new(),
            rekey_at: None,
            expire_at: None,
            keepalive_at: None,
            dpd: super::info::Dpd::default(),
            initial_contact: false,
            got_initial_contact: false,
            just_established: false,
            wants_rekey: false,
            replaced: false,
            stats: IkeSaStats::default(),
        }
    }

    /// Our cookie (the endpoint's lookup key is the initiator cookie).
    pub fn is_established(&self) -> bool {
        self.state == State::Established
    }

    pub(crate) fn prf(&self) -> PrfId {
        self.choice.map_or(PrfId::HMAC_SHA1, |c| c.prf)
    }

    pub(crate) fn header(&self, exchange: Exchange, message_id: u32) -> Header {
        Header {
            cookie_i: self.cookie_i,
            cookie_r: self.cookie_r,
            next: Kind::NONE,
            exchange,
            flags: 0,
            message_id,
            length: 0,
        }
    }

    /// Queues `msg` to the peer (with the non-ESP marker after the float).
    pub(crate) fn send(&mut self, msg: &[u8], cx: &mut Ctx<'_>) {
        let payload = if self.natt {
            let mut p = vec![0u8; 4];
            p.extend_from_slice(msg);
            p
        } else {
            msg.to_vec()
        };
        cx.transmits.push_back(Transmit {
            src: self.local,
            dst: self.remote,
            payload,
            non_esp_marker: self.natt,
        });
    }

    fn vendor_ids() -> Vec<(Kind, Vec<u8>)> {
        vec![
            (Kind::VENDOR_ID, VID_NATT_RFC3947.to_vec()),
            (Kind::VENDOR_ID, VID_DPD.to_vec()),
        ]
    }

    fn note_vendor_ids(&mut self, m: &Message<'_>) {
        for v in m.all(Kind::VENDOR_ID) {
            if v.body == VID_NATT_RFC3947 {
                self.peer_natt = true;
            }
            if v.body == VID_DPD {
                self.peer_dpd = true;
            }
        }
    }

    /// Starts main mode as initiator (message 1).
    pub fn initiate(
        now: Instant,
        conn: ConnId,
        peer: &PeerConfig,
        initial_contact: bool,
        cx: &mut Ctx<'_>,
    ) -> Result<IsakmpSa, Error> {
        let mut sa = IsakmpSa::blank(conn, true, peer, peer.local, peer.remote);
        if sa.offers.is_empty() {
            return Err(Error::NoProposalChosen);
        }
        sa.cookie_i = random_cookie(cx.rng);
        sa.initial_contact = initial_contact;
        sa.sa_i_b = prop::phase1_sa(&sa.offers).emit();
        let mut payloads = vec![(Kind::SA, sa.sa_i_b.clone())];
        payloads.extend(Self::vendor_ids());
        let msg = wire::emit_plain(sa.header(Exchange::MAIN, 0), &payloads);
        sa.send(&msg, cx);
        sa.stats.requests_sent += 1;
        sa.out = Some(Outstanding::new(now, msg, peer));
        Ok(sa)
    }

    /// Answers main mode message 1 as responder (message 2).
    pub fn respond(
        now: Instant,
        d: &Datagram<'_>,
        conn: ConnId,
        peer: &PeerConfig,
        cx: &mut Ctx<'_>,
    ) -> Result<IsakmpSa, Error> {
        let m = Message::parse(d.bytes)?;
        let sa_p = m.first(Kind::SA).ok_or(Error::MissingPayload(Kind::SA))?;
        let theirs = SaPayload::parse(sa_p.body)?;
        let mut sa = IsakmpSa::blank(conn, false, peer, d.local, d.remote);
        let (choice, echo) =
            prop::select_phase1(&sa.offers, &theirs).ok_or(Error::NoProposalChosen)?;
        sa.cookie_i = d.header.cookie_i;
        sa.cookie_r = random_cookie(cx.rng);
        sa.choice = Some(choice);
        sa.sa_i_b = sa_p.body.to_vec();
        sa.note_vendor_ids(&m);
        let mut payloads = vec![(Kind::SA, echo.emit())];
        payloads.extend(Self::vendor_ids());
        let msg = wire::emit_plain(sa.header(Exchange::MAIN, 0), &payloads);
        sa.send(&msg, cx);
        sa.stats.responses_sent += 1;
        sa.last_in = d.bytes.to_vec();
        sa.last_answer = Some(msg);
        sa.state = State::RSentSa;
        sa.expire_at = Some(now + cx.config.flood.half_open_timeout);
        Ok(sa)
    }

    fn ke_nonce_natd(&mut self, cx: &mut Ctx<'_>, peer: &PeerConfig) -> Vec<(Kind, Vec<u8>)> {
        let (ours, theirs) = if self.initiator {
            (&self.g_xi, &self.ni)
        } else {
            (&self.g_xr, &self.nr)
        };
        let mut payloads = vec![(Kind::KE, ours.clone()), (Kind::NONCE, theirs.clone())];
        if self.peer_natt {
            let prf = self.prf();
            let mut local_d = nat_d(prf, self.cookie_i, self.cookie_r, self.local);
            if peer.force_encap {
                // Like strongSwan's `encap = yes`: a NAT-D the peer cannot
                // match makes both sides float and encapsulate.
                cx.rng.fill_bytes(&mut local_d);
            }
            payloads.push((
                Kind::NAT_D,
                nat_d(prf, self.cookie_i, self.cookie_r, self.remote),
            ));
            payloads.push((Kind::NAT_D, local_d));
        }
        payloads
    }

    /// NAT-D of the peer's message 3 or 4: who is behind a NAT.
    fn check_nat(
        &mut self,
        m: &Message<'_>,
        d: &Datagram<'_>,
        peer: &PeerConfig,
        cx: &mut Ctx<'_>,
    ) {
        let hashes: Vec<&[u8]> = m.all(Kind::NAT_D).map(|p| p.body).collect();
        if hashes.len() < 2 {
            return;
        }
        let prf = self.prf();
        let ours = nat_d(prf, self.cookie_i, self.cookie_r, d.local);
        let theirs = nat_d(prf, self.cookie_i, self.cookie_r, d.remote);
        self.local_behind_nat = hashes[0] != ours.as_slice();
        let remote_behind_nat = !hashes[1..].contains(&theirs.as_slice());
        if self.local_behind_nat || remote_behind_nat || peer.force_encap {
            self.natt = true;
            cx.events.push_back(Event::NatDetected {
                conn: self.conn,
                local_behind_nat: self.local_behind_nat,
                remote_behind_nat,
            });
        }
    }

    /// After the float: our messages leave from the NAT-T port, to the
    /// peer's NAT-T port (unless a NAT already gave us another one).
    fn float(&mut self, cx: &Ctx<'_>) {
        if self.natt && self.local.port() != cx.config.natt_port {
            self.local.set_port(cx.config.natt_port);
            if self.remote.port() == cx.config.ike_port {
                self.remote.set_port(cx.config.natt_port);
            }
        }
    }

    fn derive(&mut self, peer: &PeerConfig) -> Result<(), Error> {
        let choice = self.choice.ok_or(Error::Unexpected)?;
        let dh = self.dh.as_ref().ok_or(Error::Unexpected)?;
        let peer_pub = if self.initiator {
            &self.g_xr
        } else {
            &self.g_xi
        };
        let g_xy = dh.agree(peer_pub).map_err(|_| Error::BadKeyExchange)?;
        let x = Phase1Inputs {
            psk: peer.psk.as_bytes(),
            ni: &self.ni,
            nr: &self.nr,
            g_xy: g_xy.as_bytes(),
            cookie_i: self.cookie_i,
            cookie_r: self.cookie_r,
        };
        let k = Phase1Keys::derive(choice.prf, &x, choice.enc_key_len())?;
        self.cipher = Some(MessageCipher::new(k.enc_key.clone()).map_err(|_| Error::Unexpected)?);
        self.iv = keys::phase1_iv(choice.prf, &self.g_xi, &self.g_xr)?;
        self.keys = Some(k);
        self.dh = None;
        Ok(())
    }

    fn hash_of(&self, own: bool, id_body: &[u8]) -> Result<Vec<u8>, Error> {
        let k = self.keys.as_ref().ok_or(Error::Unexpected)?;
        // HASH_I when the initiator's values come first.
        let i_first = own == self.initiator;
        let (ga, gb, ca, cb) = if i_first {
            (&self.g_xi, &self.g_xr, self.cookie_i, self.cookie_r)
        } else {
            (&self.g_xr, &self.g_xi, self.cookie_r, self.cookie_i)
        };
        Ok(k.hash_auth(ga, gb, ca, cb, &self.sa_i_b, id_body)?)
    }

    fn seal_p1(&mut self, payloads: &[(Kind, Vec<u8>)]) -> Result<Vec<u8>, Error> {
        let c = self.cipher.as_ref().ok_or(Error::Unexpected)?;
        let (msg, next) = c.seal(self.header(Exchange::MAIN, 0), payloads, &self.iv);
        self.iv = next;
        Ok(msg)
    }

    fn own_id_and_hash(&mut self, peer: &PeerConfig) -> Result<Vec<(Kind, Vec<u8>)>, Error> {
        let id = id_body(&peer.local_id);
        let hash = self.hash_of(true, &id)?;
        let mut payloads = vec![(Kind::ID, id), (Kind::HASH, hash)];
        if self.initiator && self.initial_contact {
            let spi = [self.cookie_i.to_be_bytes(), self.cookie_r.to_be_bytes()].concat();
            payloads.push((
                Kind::NOTIFY,
                wire::NotifyPayload {
                    protocol: wire::PROTO_ISAKMP,
                    kind: wire::notify::INITIAL_CONTACT,
                    spi: &spi,
                    data: &[],
                }
                .emit(),
            ));
        }
        Ok(payloads)
    }

    /// Checks the peer's ID and HASH of message 5 or 6.
    fn verify_peer(
        &mut self,
        m: &Message<'_>,
        peer: &PeerConfig,
        cx: &mut Ctx<'_>,
    ) -> Result<(), Error> {
        let id = m.first(Kind::ID).ok_or(Error::MissingPayload(Kind::ID))?;
        let hash = m
            .first(Kind::HASH)
            .ok_or(Error::MissingPayload(Kind::HASH))?;
        let want = self.hash_of(false, id.body)?;
        let who = identity_of(id.body);
        let conn = self.conn;
        let mut fail = |reason| {
            cx.events
                .push_back(Event::AuthenticationFailed { conn, reason });
        };
        if !bool::from(subtle::ConstantTimeEq::ct_eq(&want[..], hash.body)) {
            fail(AuthFailure::BadAuth);
            return Err(Error::BadHash);
        }
        if let Some(expected) = &peer.remote_id {
            if who.as_ref() != Some(expected) {
                fail(AuthFailure::UnknownIdentity);
                return Err(Error::Authentication);
            }
        }
        self.peer_id = who;
        Ok(())
    }

    /// A message of this SA arrived.
    pub fn handle(
        &mut self,
        now: Instant,
        d: &Datagram<'_>,
        peer: &PeerConfig,
        cx: &mut Ctx<'_>,
    ) -> Result<(), Error> {
        if d.bytes == self.last_in.as_slice() {
            if let Some(a) = self.last_answer.clone() {
                self.send(&a, cx);
                self.stats.responses_sent += 1;
            }
            return Ok(());
        }
        match d.header.exchange {
            Exchange::MAIN => self.handle_main(now, d, peer, cx),
            Exchange::QUICK if self.is_established() => self.handle_quick(now, d, peer, cx),
            Exchange::INFORMATIONAL if self.keys.is_some() => self.handle_info(now, d, peer, cx),
            Exchange::INFORMATIONAL if self.state == State::ISentSa => self.refused(d, cx),
            Exchange::AGGRESSIVE => Err(Error::AggressiveModeRefused),
            _ => Err(Error::Unexpected),
        }
    }

    fn accept(&mut self, d: &Datagram<'_>, answer: Option<Vec<u8>>) {
        self.last_in = d.bytes.to_vec();
        self.last_answer = answer;
        self.stats.messages_received += 1;
    }

    fn handle_main(
        &mut self,
        now: Instant,
        d: &Datagram<'_>,
        peer: &PeerConfig,
        cx: &mut Ctx<'_>,
    ) -> Result<(), Error> {
        match self.state {
            State::ISentSa => {
                let m = Message::parse(d.bytes)?;
                let sa_p = m.first(Kind::SA).ok_or(Error::MissingPayload(Kind::SA))?;
                let theirs = SaPayload::parse(sa_p.body)?;
                let choice =
                    prop::accept_phase1(&self.offers, &theirs).ok_or(Error::NoProposalChosen)?;
                self.cookie_r = d.header.cookie_r;
                self.choice = Some(choice);
                self.note_vendor_ids(&m);
                let dh = KeyExchange::generate_with(choice.dh, cx.rng)
                    .map_err(|_| Error::BadKeyExchange)?;
                self.g_xi = dh.public_value().to_vec();
                self.dh = Some(dh);
                self.ni = nonce(cx.rng);
                let payloads = self.ke_nonce_natd(cx, peer);
                let msg = wire::emit_plain(self.header(Exchange::MAIN, 0), &payloads);
                self.send(&msg, cx);
                self.accept(d, None);
                self.out = Some(Outstanding::new(now, msg, peer));
                self.state = State::ISentKe;
                Ok(())
            }
            State::ISentKe => {
                let m = Message::parse(d.bytes)?;
                let ke = m.first(Kind::KE).ok_or(Error::MissingPayload(Kind::KE))?;
                let nr = m
                    .first(Kind::NONCE)
                    .ok_or(Error::MissingPayload(Kind::NONCE))?;
                self.g_xr = ke.body.to_vec();
                self.nr = nr.body.to_vec();
                self.derive(peer)?;
                self.check_nat(&m, d, peer, cx);
                self.float(cx);
                let payloads = self.own_id_and_hash(peer)?;
                let msg = self.seal_p1(&payloads)?;
                self.send(&msg, cx);
                self.accept(d, None);
                self.out = Some(Outstanding::new(now, msg, peer));
                self.state = State::ISentAuth;
                Ok(())
            }
            State::ISentAuth => {
                let c = self.cipher.as_ref().ok_or(Error::Unexpected)?;
                let (h, body, next) = c.open(d.bytes, &self.iv)?;
                let m = Message::parse_body(h, &body)?;
                if let Err(e) = self.verify_peer(&m, peer, cx) {
                    self.close(DownReason::AuthFailed, cx);
                    return Err(e);
                }
                self.iv = next;
                self.remote = d.remote;
                self.accept(d, None);
                self.out = None;
                self.established(now, peer, cx);
                Ok(())
            }
            State::RSentSa => {
                let m = Message::parse(d.bytes)?;
                let ke = m.first(Kind::KE).ok_or(Error::MissingPayload(Kind::KE))?;
                let ni = m
                    .first(Kind::NONCE)
                    .ok_or(Error::MissingPayload(Kind::NONCE))?;
                let choice = self.choice.ok_or(Error::Unexpected)?;
                let dh = KeyExchange::generate_with(choice.dh, cx.rng)
                    .map_err(|_| Error::BadKeyExchange)?;
                self.g_xr = dh.public_value().to_vec();
                self.dh = Some(dh);
                self.g_xi = ke.body.to_vec();
                self.ni = ni.body.to_vec();
                self.nr = nonce(cx.rng);
                self.derive(peer)?;
                let payloads = self.ke_nonce_natd(cx, peer);
                let msg = wire::emit_plain(self.header(Exchange::MAIN, 0), &payloads);
                self.send(&msg, cx);
                // The float happens when message 5 arrives on the NAT-T port.
                self.check_nat(&m, d, peer, cx);
                self.natt = false;
                self.stats.responses_sent += 1;
                self.accept(d, Some(msg));
                self.state = State::RSentKe;
                Ok(())
            }
            State::RSentKe => {
                let c = self.cipher.as_ref().ok_or(Error::Unexpected)?;
                let (h, body, next) = c.open(d.bytes, &self.iv)?;
                // With another PSK the body decrypts to garbage.
                let m = match Message::parse_body(h, &body) {
                    Ok(m) if m.first(Kind::ID).is_some() => m,
                    _ => {
                        cx.events.push_back(Event::AuthenticationFailed {
                            conn: self.conn,
                            reason: AuthFailure::BadAuth,
                        });
                        self.state = State::Closed;
                        return Err(Error::BadHash);
                    }
                };
                if let Err(e) = self.verify_peer(&m, peer, cx) {
                    self.state = State::Closed;
                    return Err(e);
                }
                self.iv = next;
                self.got_initial_contact = m.all(Kind::NOTIFY).any(|n| {
                    wire::NotifyPayload::parse(n.body)
                        .is_ok_and(|n| n.kind == wire::notify::INITIAL_CONTACT)
                });
                // The peer may have floated (or a NAT mapped it anew).
                self.local = d.local;
                self.remote = d.remote;
                self.natt = d.local.port() == cx.config.natt_port;
                let payloads = self.own_id_and_hash(peer)?;
                let msg = self.seal_p1(&payloads)?;
                self.send(&msg, cx);
                self.stats.responses_sent += 1;
                self.accept(d, Some(msg));
                self.established(now, peer, cx);
                Ok(())
            }
            State::Established | State::Closed => Err(Error::Unexpected),
        }
    }

    fn established(&mut self, now: Instant, peer: &PeerConfig, cx: &mut Ctx<'_>) {
        let Some(choice) = self.choice else { return };
        self.state = State::Established;
        self.just_established = true;
        let r = (cx.rng.next_u32() as f64) / (u32::MAX as f64);
        self.rekey_at = Some(now + rekey_time(self.initiator, peer, choice.lifetime, r));
        self.expire_at = Some(now + choice.lifetime);
        self.dpd.schedule(now, peer);
        if self.natt && self.local_behind_nat {
            self.keepalive_at = Some(now + cx.config.keepalive_interval);
        }
        cx.events.push_back(Event::IkeSaUp {
            conn: self.conn,
            spi_i: self.cookie_i,
            spi_r: self.cookie_r,
            initiator: self.initiator,
            udp_encap: self.natt,
            algorithms: choice.ike_choice(),
        });
        if let (true, Some(k)) = (cx.config.export_ike_keys, &self.keys) {
            cx.events
                .push_back(Event::IsakmpSaSecrets(Box::new(IsakmpSaSecrets {
                    conn: self.conn,
                    cookie_i: self.cookie_i,
                    cookie_r: self.cookie_r,
                    algorithms: choice.ike_choice(),
                    enc_key: k.enc_key.clone(),
                })));
        }
    }

    /// Tears the SA down: every Child SA is reported deleted and, unless
    /// the SA was replaced by a newer one, the IKE SA down.
    pub fn close(&mut self, reason: DownReason, cx: &mut Ctx<'_>) {
        if self.state == State::Closed {
            return;
        }
        let established = self.is_established();
        self.state = State::Closed;
        for c in self.children.drain(..) {
            cx.events.push_back(Event::ChildSaDeleted {
                conn: self.conn,
                spi_in: c.spi_in,
                spi_out: c.spi_out,
                reason: ChildDeleteReason::IkeSaGone,
            });
        }
        if !self.replaced && (established || self.initiator) {
            cx.events.push_back(Event::IkeSaDown {
                conn: self.conn,
                reason,
            });
        }
    }

    /// Whether `msg` is the last message accepted (a retransmission).
    pub fn is_last_received(&self, msg: &[u8]) -> bool {
        !self.last_in.is_empty() && self.last_in == msg
    }

    /// Replaced by a newer ISAKMP SA: no more rekeys or probes, gone after
    /// a grace period (or the peer's DELETE) without an `IkeSaDown`.
    pub fn retire(&mut self, now: Instant) {
        self.replaced = true;
        self.rekey_at = None;
        self.dpd = super::info::Dpd::default();
        self.keepalive_at = None;
        self.quick.clear();
        self.expire_at = Some(now + RETIRED_GRACE);
    }

    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Timers: retransmissions, rekey, expiry, DPD, quick modes.
    pub fn handle_timeout(&mut self, now: Instant, peer: &PeerConfig, cx: &mut Ctx<'_>) {
        if self.is_closed() {
            return;
        }
        if let Some(o) = self.out.as_mut() {
            match o.due(now, peer) {
                Some(true) => {
                    let msg = o.msg.clone();
                    self.send(&msg, cx);
                    self.stats.retransmits += 1;
                }
                Some(false) => {
                    cx.events.push_back(Event::PeerDead { conn: self.conn });
                    self.close(DownReason::Timeout, cx);
                    return;
                }
                None => {}
            }
        }
        if self.expire_at.is_some_and(|t| now >= t) {
            let reason = if self.is_established() {
                DownReason::Expired
            } else {
                DownReason::Timeout
            };
            if self.is_established() && !self.replaced {
                self.send_delete_isakmp(cx);
            }
            self.close(reason, cx);
            return;
        }
        if !self.is_established() {
            return;
        }
        if self.rekey_at.is_some_and(|t| now >= t) {
            self.rekey_at = None;
            self.wants_rekey = true;
        }
        self.quick_timeouts(now, peer, cx);
        if self.is_closed() {
            return;
        }
        self.dpd_timeout(now, peer, cx);
        if self.keepalive_at.is_some_and(|t| now >= t) {
            cx.transmits.push_back(Transmit {
                src: self.local,
                dst: self.remote,
                payload: vec![0xff],
                non_esp_marker: false,
            });
            self.stats.keepalives_sent += 1;
            self.keepalive_at = Some(now + cx.config.keepalive_interval);
        }
    }

    pub fn next_timeout(&self) -> Option<Instant> {
        if self.is_closed() {
            return None;
        }
        let mut t = [
            self.out.as_ref().map(|o| o.next_at),
            self.expire_at,
            self.rekey_at,
            self.dpd.next_timeout(),
            self.quick_next_timeout(),
            self.keepalive_at,
        ]
        .into_iter()
        .flatten()
        .min();
        if !self.is_established() {
            t = [self.out.as_ref().map(|o| o.next_at), self.expire_at]
                .into_iter()
                .flatten()
                .min();
        }
        t
    }
}
