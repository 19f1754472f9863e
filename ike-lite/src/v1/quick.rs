//! Quick mode (RFC 2409 §5.5): HASH(1) SA Ni [KE] [IDci IDcr] ->
//! HASH(2) SA Nr [KE] [IDci IDcr] [RESPONDER-LIFETIME] -> HASH(3), both
//! roles, with and without PFS; the IPsec SAs it creates ([`Child`]), their
//! rekey make-before-break (new SA installed, outbound switched a moment
//! later, then the old one deleted) and expiry.

use super::cbc::Iv;
use super::keys;
use super::proposal::{self as prop, Phase2Choice};
use super::sa::{Ctx, Datagram, IsakmpSa, Outstanding};
use super::wire::{self, Exchange, Kind, Message, NotifyPayload, SaPayload, PROTO_ESP};
use super::{ts as idts, Error};
use crate::child::{ChildSa, KeyMaterial};
use crate::config::PeerConfig;
use crate::crypto::{KeyExchange, SecretBytes};
use crate::events::{ChildDeleteReason, Event};
use crate::proposal::EspChoice;
use crate::ts::{all_within, TrafficSelector};
use std::time::{Duration, Instant};

/// How long the quick-mode initiator keeps sending on the old SA after
/// installing a rekeyed one, so that the responder (which installs on
/// HASH(3)) is ready for the new SPI.
pub const OUTBOUND_SWITCH_DELAY: Duration = Duration::from_secs(1);
/// How long a finished quick mode is kept to answer duplicates.
const KEEP_DONE: Duration = Duration::from_secs(30);

/// An installed IPsec SA pair.
pub(crate) struct Child {
    pub spi_in: u32,
    pub spi_out: u32,
    /// Our and the peer's selector (a quick mode for the same pair is a
    /// rekey of this SA).
    pub ts: (TrafficSelector, TrafficSelector),
    pub rekey_at: Option<Instant>,
    pub expire_at: Instant,
    /// A newer SA replaced this one (it is being retired).
    pub replaced: bool,
    /// Rekey initiator: when to switch outbound from `old_spi_out` and
    /// delete the old SA (`old_spi_in`).
    pub switch: Option<(Instant, u32, u32)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum QState {
    ISent1,
    RSent2,
    Done,
}

/// One quick-mode exchange.
pub(crate) struct Quick {
    mid: u32,
    initiator: bool,
    iv: Iv,
    state: QState,
    ni: Vec<u8>,
    nr: Vec<u8>,
    dh: Option<KeyExchange>,
    g_qm: Option<SecretBytes>,
    spi_in: u32,
    spi_out: u32,
    offers: Vec<EspChoice>,
    choice: Option<Phase2Choice>,
    ts_local: TrafficSelector,
    ts_remote: TrafficSelector,
    rekey_of: Option<u32>,
    out: Option<Outstanding>,
    last_in: Vec<u8>,
    last_answer: Option<Vec<u8>>,
    done_at: Option<Instant>,
}

fn random_nonzero(cx: &mut Ctx<'_>) -> u32 {
    loop {
        let v = cx.rng.next_u32();
        if v >= 0x100 {
            return v;
        }
    }
}

/// Every payload after the first (the HASH), as the HASHes cover them.
fn chain_after_first(m: &Message<'_>) -> Vec<u8> {
    m.payloads
        .iter()
        .skip(1)
        .flat_map(|p| p.whole.iter().copied())
        .collect()
}

fn first_hash<'a>(m: &'a Message<'a>) -> Result<&'a [u8], Error> {
    match m.payloads.first() {
        Some(p) if p.kind == Kind::HASH => Ok(p.body),
        _ => Err(Error::MissingPayload(Kind::HASH)),
    }
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    bool::from(subtle::ConstantTimeEq::ct_eq(a, b))
}

impl IsakmpSa {
    /// Starts a quick mode (a first Child SA, or the rekey of `rekey_of`).
    pub fn start_quick(
        &mut self,
        now: Instant,
        peer: &PeerConfig,
        rekey_of: Option<u32>,
        cx: &mut Ctx<'_>,
    ) -> Result<(), Error> {
        let keys = self.keys.as_ref().ok_or(Error::Unexpected)?;
        let offers = prop::phase2_offers(&peer.esp_proposals);
        if offers.is_empty() {
            return Err(Error::NoProposalChosen);
        }
        let (Some(ts_local), Some(ts_remote)) = (peer.local_ts.first(), peer.remote_ts.first())
        else {
            return Err(Error::Unexpected);
        };
        let mid = random_nonzero(cx);
        let spi_in = random_nonzero(cx);
        let mut ni = vec![0u8; 32];
        cx.rng.fill_bytes(&mut ni);
        let dh = match prop::pfs_group(&offers) {
            Some(g) => {
                Some(KeyExchange::generate_with(g, cx.rng).map_err(|_| Error::BadKeyExchange)?)
            }
            None => None,
        };
        let sa = prop::phase2_sa(&offers, peer.child_lifetime, self.natt, spi_in);
        let mut rest = vec![(Kind::SA, sa.emit()), (Kind::NONCE, ni.clone())];
        if let Some(k) = &dh {
            rest.push((Kind::KE, k.public_value().to_vec()));
        }
        rest.push((Kind::ID, idts::encode(ts_local)));
        rest.push((Kind::ID, idts::encode(ts_remote)));
        let hash = keys.hash1(mid, &wire::emit_chain(&rest).1)?;
        rest.insert(0, (Kind::HASH, hash));
        let iv = keys::phase2_iv(self.prf(), &self.iv, mid)?;
        let c = self.cipher.as_ref().ok_or(Error::Unexpected)?;
        let (msg, iv) = c.seal(self.header(Exchange::QUICK, mid), &rest, &iv);
        self.send(&msg, cx);
        self.stats.requests_sent += 1;
        self.quick.push(Quick {
            mid,
            initiator: true,
            iv,
            state: QState::ISent1,
            ni,
            nr: Vec::new(),
            dh,
            g_qm: None,
            spi_in,
            spi_out: 0,
            offers,
            choice: None,
            ts_local: *ts_local,
            ts_remote: *ts_remote,
            rekey_of,
            out: Some(Outstanding::new(now, msg, peer)),
            last_in: Vec::new(),
            last_answer: None,
            done_at: None,
        });
        Ok(())
    }

    pub(crate) fn handle_quick(
        &mut self,
        now: Instant,
        d: &Datagram<'_>,
        peer: &PeerConfig,
        cx: &mut Ctx<'_>,
    ) -> Result<(), Error> {
        let mid = d.header.message_id;
        let Some(i) = self.quick.iter().position(|q| q.mid == mid) else {
            return self.respond_quick(now, d, peer, cx);
        };
        if self.quick[i].last_in == d.bytes {
            if let Some(a) = self.quick[i].last_answer.clone() {
                self.send(&a, cx);
                self.stats.responses_sent += 1;
            }
            return Ok(());
        }
        match self.quick[i].state {
            QState::ISent1 => self.quick_answer(now, i, d, peer, cx),
            QState::RSent2 => self.quick_commit(now, i, d, peer, cx),
            QState::Done => Err(Error::Unexpected),
        }
    }

    fn open_quick(&self, d: &Datagram<'_>, iv: &Iv) -> Result<(Vec<u8>, Iv, wire::Header), Error> {
        let c = self.cipher.as_ref().ok_or(Error::Unexpected)?;
        let (h, body, next) = c.open(d.bytes, iv)?;
        Ok((body, next, h))
    }

    /// Responder: quick mode message 1.
    fn respond_quick(
        &mut self,
        now: Instant,
        d: &Datagram<'_>,
        peer: &PeerConfig,
        cx: &mut Ctx<'_>,
    ) -> Result<(), Error> {
        let mid = d.header.message_id;
        let keys = self.keys.clone().ok_or(Error::Unexpected)?;
        let iv = keys::phase2_iv(self.prf(), &self.iv, mid)?;
        let (body, iv, h) = self.open_quick(d, &iv)?;
        let m = Message::parse_body(h, &body)?;
        if !ct_eq(&keys.hash1(mid, &chain_after_first(&m))?, first_hash(&m)?) {
            return Err(Error::BadHash);
        }
        let sa = SaPayload::parse(
            m.first(Kind::SA)
                .ok_or(Error::MissingPayload(Kind::SA))?
                .body,
        )?;
        let ni = m
            .first(Kind::NONCE)
            .ok_or(Error::MissingPayload(Kind::NONCE))?
            .body;
        let ids: Vec<&[u8]> = m.all(Kind::ID).map(|p| p.body).collect();
        let (ts_remote, ts_local) = match ids.as_slice() {
            [ci, cr] => (
                idts::decode(&wire::IdPayload::parse(ci)?).ok_or(Error::Unacceptable)?,
                idts::decode(&wire::IdPayload::parse(cr)?).ok_or(Error::Unacceptable)?,
            ),
            [] => (
                TrafficSelector::host(self.remote.ip()),
                TrafficSelector::host(self.local.ip()),
            ),
            _ => return Err(Error::Unacceptable),
        };
        if !all_within(&peer.remote_ts, &[ts_remote]) || !all_within(&peer.local_ts, &[ts_local]) {
            return Err(Error::Unacceptable);
        }
        let offers = prop::phase2_offers(&peer.esp_proposals);
        let spi_in = random_nonzero(cx);
        let (choice, spi_out, proposed_life, answer) =
            prop::select_phase2(&offers, peer.child_lifetime, &sa, spi_in)
                .ok_or(Error::NoProposalChosen)?;
        let mut nr = vec![0u8; 32];
        cx.rng.fill_bytes(&mut nr);
        let mut rest = vec![(Kind::SA, answer.emit()), (Kind::NONCE, nr.clone())];
        let mut g_qm = None;
        if let Some(g) = choice.esp.dh {
            let ke = m.first(Kind::KE).ok_or(Error::MissingPayload(Kind::KE))?;
            let dh = KeyExchange::generate_with(g, cx.rng).map_err(|_| Error::BadKeyExchange)?;
            let shared = dh.agree(ke.body).map_err(|_| Error::BadKeyExchange)?;
            g_qm = Some(SecretBytes::from_slice(shared.as_bytes()));
            rest.push((Kind::KE, dh.public_value().to_vec()));
        }
        for id in &ids {
            rest.push((Kind::ID, id.to_vec()));
        }
        if choice.lifetime < proposed_life {
            let spi = spi_out.to_be_bytes();
            rest.push((
                Kind::NOTIFY,
                NotifyPayload {
                    protocol: PROTO_ESP,
                    kind: wire::notify::RESPONDER_LIFETIME,
                    spi: &spi,
                    data: &prop::responder_lifetime_data(choice.lifetime),
                }
                .emit(),
            ));
        }
        let hash = keys.hash2(mid, ni, &wire::emit_chain(&rest).1)?;
        rest.insert(0, (Kind::HASH, hash));
        let c = self.cipher.as_ref().ok_or(Error::Unexpected)?;
        let (msg, iv) = c.seal(self.header(Exchange::QUICK, mid), &rest, &iv);
        self.send(&msg, cx);
        self.stats.responses_sent += 1;
        self.stats.messages_received += 1;
        // A quick mode for selectors we already have is a rekey by the peer.
        let rekey_of = self
            .children
            .iter()
            .find(|c| !c.replaced && c.ts == (ts_local, ts_remote))
            .map(|c| c.spi_in);
        self.quick.push(Quick {
            mid,
            initiator: false,
            iv,
            state: QState::RSent2,
            ni: ni.to_vec(),
            nr,
            dh: None,
            g_qm,
            spi_in,
            spi_out,
            offers,
            choice: Some(choice),
            ts_local,
            ts_remote,
            rekey_of,
            out: Some(Outstanding::new(now, msg.clone(), peer)),
            last_in: d.bytes.to_vec(),
            last_answer: Some(msg),
            done_at: None,
        });
        Ok(())
    }

    /// Initiator: quick mode message 2; sends HASH(3) and installs.
    fn quick_answer(
        &mut self,
        now: Instant,
        i: usize,
        d: &Datagram<'_>,
        peer: &PeerConfig,
        cx: &mut Ctx<'_>,
    ) -> Result<(), Error> {
        let keys = self.keys.clone().ok_or(Error::Unexpected)?;
        let (body, iv, h) = self.open_quick(d, &self.quick[i].iv)?;
        let m = Message::parse_body(h, &body)?;
        let q = &self.quick[i];
        if !ct_eq(
            &keys.hash2(q.mid, &q.ni, &chain_after_first(&m))?,
            first_hash(&m)?,
        ) {
            return Err(Error::BadHash);
        }
        let sa = SaPayload::parse(
            m.first(Kind::SA)
                .ok_or(Error::MissingPayload(Kind::SA))?
                .body,
        )?;
        let nr = m
            .first(Kind::NONCE)
            .ok_or(Error::MissingPayload(Kind::NONCE))?
            .body;
        let (mut choice, spi_out) =
            prop::accept_phase2(&q.offers, &sa).ok_or(Error::NoProposalChosen)?;
        // Never longer than we asked for (the answer's value is the peer's).
        choice.lifetime = choice.lifetime.min(peer.child_lifetime);
        for n in m.all(Kind::NOTIFY) {
            let n = NotifyPayload::parse(n.body)?;
            if n.kind == wire::notify::RESPONDER_LIFETIME {
                if let Some(l) = prop::parse_responder_lifetime(n.data) {
                    choice.lifetime = choice.lifetime.min(l);
                }
            }
        }
        let g_qm = match (&q.dh, choice.esp.dh) {
            (Some(dh), Some(g)) if g == dh.group() => {
                let ke = m.first(Kind::KE).ok_or(Error::MissingPayload(Kind::KE))?;
                let s = dh.agree(ke.body).map_err(|_| Error::BadKeyExchange)?;
                Some(SecretBytes::from_slice(s.as_bytes()))
            }
            (None, None) => None,
            _ => return Err(Error::NoProposalChosen),
        };
        let hash3 = keys.hash3(q.mid, &q.ni, nr)?;
        let c = self.cipher.as_ref().ok_or(Error::Unexpected)?;
        let (msg, _) = c.seal(
            self.header(Exchange::QUICK, q.mid),
            &[(Kind::HASH, hash3)],
            &iv,
        );
        self.send(&msg, cx);
        self.stats.messages_received += 1;
        let q = &mut self.quick[i];
        q.nr = nr.to_vec();
        q.spi_out = spi_out;
        q.choice = Some(choice);
        q.g_qm = g_qm;
        q.dh = None;
        q.out = None;
        q.state = QState::Done;
        q.done_at = Some(now);
        q.last_in = d.bytes.to_vec();
        q.last_answer = Some(msg);
        self.install(now, i, peer, cx)
    }

    /// Responder: HASH(3); installs.
    fn quick_commit(
        &mut self,
        now: Instant,
        i: usize,
        d: &Datagram<'_>,
        peer: &PeerConfig,
        cx: &mut Ctx<'_>,
    ) -> Result<(), Error> {
        let keys = self.keys.clone().ok_or(Error::Unexpected)?;
        let (body, _, h) = self.open_quick(d, &self.quick[i].iv)?;
        let m = Message::parse_body(h, &body)?;
        let q = &self.quick[i];
        if !ct_eq(&keys.hash3(q.mid, &q.ni, &q.nr)?, first_hash(&m)?) {
            return Err(Error::BadHash);
        }
        self.stats.messages_received += 1;
        let q = &mut self.quick[i];
        q.out = None;
        q.state = QState::Done;
        q.done_at = Some(now);
        q.last_in = d.bytes.to_vec();
        q.last_answer = None;
        self.install(now, i, peer, cx)
    }

    fn install(
        &mut self,
        now: Instant,
        i: usize,
        peer: &PeerConfig,
        cx: &mut Ctx<'_>,
    ) -> Result<(), Error> {
        let keys = self.keys.clone().ok_or(Error::Unexpected)?;
        let q = &self.quick[i];
        let choice = q.choice.ok_or(Error::Unexpected)?;
        let suite = choice.esp.suite;
        let enc = suite.enc_key_len().map_err(|_| Error::NoProposalChosen)?;
        let len = enc + suite.integ_key_len();
        let g = q.g_qm.as_ref().map(|s| s.as_bytes());
        let (ni, nr) = (&q.ni, &q.nr);
        let k_in = keys.keymat(g, PROTO_ESP, q.spi_in, ni, nr, len)?;
        let k_out = keys.keymat(g, PROTO_ESP, q.spi_out, ni, nr, len)?;
        let split = |k: &SecretBytes| {
            KeyMaterial::new(
                SecretBytes::from_slice(&k[..enc]),
                SecretBytes::from_slice(&k[enc..]),
            )
        };
        let rekey_of = q.rekey_of.filter(|old| {
            self.children
                .iter()
                .any(|c| c.spi_in == *old && !c.replaced)
        });
        let mut remote = self.remote;
        if self.natt && remote.port() == cx.config.ike_port {
            remote.set_port(cx.config.natt_port);
        }
        let child = ChildSa {
            conn: self.conn,
            spi_in: q.spi_in,
            spi_out: q.spi_out,
            suite,
            key_in: split(&k_in),
            key_out: split(&k_out),
            esn: false,
            ts_local: vec![q.ts_local],
            ts_remote: vec![q.ts_remote],
            local: self.local,
            remote,
            udp_encap: self.natt,
            lifetime: choice.lifetime,
            replay_window: peer.replay_window,
            rekey_of,
        };
        let (spi_in, spi_out, initiator) = (q.spi_in, q.spi_out, q.initiator);
        let r = (cx.rng.next_u32() as f64) / (u32::MAX as f64);
        let mut new = Child {
            spi_in,
            spi_out,
            ts: (q.ts_local, q.ts_remote),
            rekey_at: Some(now + super::sa::rekey_time(initiator, peer, choice.lifetime, r)),
            expire_at: now + choice.lifetime,
            replaced: false,
            switch: None,
        };
        cx.events
            .push_back(Event::ChildSaEstablished(Box::new(child)));
        if let Some(old_in) = rekey_of {
            let old = self.children.iter_mut().find(|c| c.spi_in == old_in);
            if let Some(old) = old {
                old.replaced = true;
                old.rekey_at = None;
                if initiator {
                    new.switch = Some((now + OUTBOUND_SWITCH_DELAY, old.spi_out, old.spi_in));
                } else {
                    cx.events.push_back(Event::ChildSaOutboundSwitched {
                        conn: self.conn,
                        old_spi_out: old.spi_out,
                        new_spi_out: spi_out,
                    });
                }
            }
        }
        self.stats.child_rekeys += u64::from(rekey_of.is_some());
        self.children.push(new);
        Ok(())
    }

    /// Removes a Child SA and reports it.
    pub(crate) fn drop_child(&mut self, spi_in: u32, reason: ChildDeleteReason, cx: &mut Ctx<'_>) {
        if let Some(pos) = self.children.iter().position(|c| c.spi_in == spi_in) {
            let c = self.children.remove(pos);
            let reason = if c.replaced {
                ChildDeleteReason::Rekeyed
            } else {
                reason
            };
            cx.events.push_back(Event::ChildSaDeleted {
                conn: self.conn,
                spi_in: c.spi_in,
                spi_out: c.spi_out,
                reason,
            });
        }
    }

    pub(crate) fn quick_timeouts(&mut self, now: Instant, peer: &PeerConfig, cx: &mut Ctx<'_>) {
        let mut dead = false;
        let mut resend = Vec::new();
        for q in &mut self.quick {
            if let Some(o) = q.out.as_mut() {
                match o.due(now, peer) {
                    Some(true) => resend.push(o.msg.clone()),
                    // Our own request unanswered: the peer is gone.
                    Some(false) if q.initiator => dead = true,
                    // A message 1 whose sender never confirmed (lost, or
                    // replayed by someone else): only this exchange ends.
                    Some(false) => {
                        q.out = None;
                        q.done_at = Some(now);
                        q.state = QState::Done;
                    }
                    None => {}
                }
            }
        }
        for m in resend {
            self.send(&m, cx);
            self.stats.retransmits += 1;
        }
        if dead {
            cx.events.push_back(Event::PeerDead { conn: self.conn });
            self.close(crate::events::DownReason::Timeout, cx);
            return;
        }
        self.quick
            .retain(|q| q.done_at.is_none_or(|t| now < t + KEEP_DONE));
        // Outbound switches and deletes of rekeyed SAs.
        let mut switches = Vec::new();
        for c in &mut self.children {
            if let Some((at, old_out, old_in)) = c.switch {
                if now >= at {
                    c.switch = None;
                    switches.push((old_out, c.spi_out, old_in));
                }
            }
        }
        for (old_out, new_out, old_in) in switches {
            cx.events.push_back(Event::ChildSaOutboundSwitched {
                conn: self.conn,
                old_spi_out: old_out,
                new_spi_out: new_out,
            });
            self.send_delete_esp(&[old_in], cx);
            self.drop_child(old_in, ChildDeleteReason::Rekeyed, cx);
        }
        let rekeys: Vec<u32> = self
            .children
            .iter()
            .filter(|c| c.rekey_at.is_some_and(|t| now >= t))
            .map(|c| c.spi_in)
            .collect();
        for spi in rekeys {
            if let Some(c) = self.children.iter_mut().find(|c| c.spi_in == spi) {
                c.rekey_at = None;
            }
            let _ = self.start_quick(now, peer, Some(spi), cx);
        }
        let expired: Vec<u32> = self
            .children
            .iter()
            .filter(|c| now >= c.expire_at)
            .map(|c| c.spi_in)
            .collect();
        for spi in expired {
            self.send_delete_esp(&[spi], cx);
            self.drop_child(spi, ChildDeleteReason::Expired, cx);
        }
    }

    pub(crate) fn quick_next_timeout(&self) -> Option<Instant> {
        let q = self.quick.iter().filter_map(|q| {
            q.out
                .as_ref()
                .map(|o| o.next_at)
                .or(q.done_at.map(|t| t + KEEP_DONE))
        });
        let c = self.children.iter().flat_map(|c| {
            [Some(c.expire_at), c.rekey_at, c.switch.map(|s| s.0)]
                .into_iter()
                .flatten()
        });
        q.chain(c).min()
    }

    /// When the Child SA with inbound SPI `spi_in` will be rekeyed.
    pub fn child_rekey_at(&self, spi_in: u32) -> Option<Instant> {
        self.children
            .iter()
            .find(|c| c.spi_in == spi_in)
            .and_then(|c| c.rekey_at)
    }

    /// (inbound, outbound) SPIs of the Child SAs.
    pub fn child_spis(&self) -> Vec<(u32, u32)> {
        self.children
            .iter()
            .map(|c| (c.spi_in, c.spi_out))
            .collect()
    }
}
