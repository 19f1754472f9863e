//! Informational exchanges of an established ISAKMP SA (RFC 2408 §4.8,
//! RFC 2409 §5.7): HASH(1) protected notifications and deletes, dead peer
//! detection (RFC 3706 R-U-THERE / R-U-THERE-ACK), DELETE of the ISAKMP SA
//! and of IPsec SAs, INITIAL-CONTACT after phase 1.

use super::keys;
use super::sa::{Ctx, Datagram, IsakmpSa};
use super::wire::{
    self, DeletePayload, Exchange, Kind, Message, NotifyPayload, PROTO_ESP, PROTO_ISAKMP,
};
use super::Error;
use crate::config::PeerConfig;
use crate::events::{ChildDeleteReason, DownReason, Event, Transmit};
use std::time::{Duration, Instant};

/// Interval between R-U-THERE retransmissions while a probe is pending.
const DPD_RESEND: Duration = Duration::from_secs(5);

/// Dead peer detection state.
#[derive(Default)]
pub(crate) struct Dpd {
    next_probe: Option<Instant>,
    /// (sequence number, give-up deadline, next resend).
    pending: Option<(u32, Instant, Instant)>,
    seq: u32,
}

impl Dpd {
    pub fn schedule(&mut self, now: Instant, peer: &PeerConfig) {
        self.next_probe = peer.dpd_delay.map(|d| now + d);
    }

    pub fn next_timeout(&self) -> Option<Instant> {
        [
            self.next_probe,
            self.pending.map(|p| p.1),
            self.pending.map(|p| p.2),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

/// An unprotected informational message answering `d` with the error
/// notification `kind` (phase 1, before any key exists); `natt`: `d` came
/// on the NAT-T port, so the answer needs the non-ESP marker.
pub(crate) fn refusal(d: &Datagram<'_>, kind: u16, natt: bool) -> Transmit {
    let h = d.header;
    let mut spi = [0u8; 16];
    spi[..8].copy_from_slice(&h.cookie_i.to_be_bytes());
    spi[8..].copy_from_slice(&h.cookie_r.to_be_bytes());
    let n = NotifyPayload {
        protocol: PROTO_ISAKMP,
        kind,
        spi: &spi,
        data: &[],
    };
    let header = wire::Header {
        exchange: Exchange::INFORMATIONAL,
        message_id: 0,
        flags: 0,
        ..h
    };
    let mut payload = if natt { vec![0u8; 4] } else { Vec::new() };
    payload.extend_from_slice(&wire::emit_plain(header, &[(Kind::NOTIFY, n.emit())]));
    Transmit {
        src: d.local,
        dst: d.remote,
        payload,
        non_esp_marker: natt,
    }
}

impl IsakmpSa {
    /// An unprotected informational during main mode message 1/2: the
    /// responder refused our proposals.
    pub(crate) fn refused(&mut self, d: &Datagram<'_>, cx: &mut Ctx<'_>) -> Result<(), Error> {
        let m = Message::parse(d.bytes)?;
        for p in m.all(Kind::NOTIFY) {
            let n = NotifyPayload::parse(p.body)?;
            if n.kind == wire::notify::NO_PROPOSAL_CHOSEN {
                self.close(
                    DownReason::Refused(crate::message::NotifyType::NO_PROPOSAL_CHOSEN),
                    cx,
                );
                return Err(Error::NoProposalChosen);
            }
        }
        Err(Error::Unexpected)
    }

    fn cookies(&self) -> [u8; 16] {
        let mut s = [0u8; 16];
        s[..8].copy_from_slice(&self.cookie_i.to_be_bytes());
        s[8..].copy_from_slice(&self.cookie_r.to_be_bytes());
        s
    }

    /// Sends one informational message: HASH(1) then `payloads`.
    pub(crate) fn send_info(&mut self, payloads: Vec<(Kind, Vec<u8>)>, cx: &mut Ctx<'_>) {
        let (Some(keys), Some(c)) = (self.keys.as_ref(), self.cipher.as_ref()) else {
            return;
        };
        let mid = loop {
            let m = cx.rng.next_u32();
            if m != 0 {
                break m;
            }
        };
        let Ok(hash) = keys.hash1(mid, &wire::emit_chain(&payloads).1) else {
            return;
        };
        let Ok(iv) = keys::phase2_iv(self.prf(), &self.iv, mid) else {
            return;
        };
        let mut all = vec![(Kind::HASH, hash)];
        all.extend(payloads);
        let (msg, _) = c.seal(self.header(Exchange::INFORMATIONAL, mid), &all, &iv);
        self.send(&msg, cx);
        self.stats.requests_sent += 1;
    }

    /// DELETE of this ISAKMP SA.
    pub(crate) fn send_delete_isakmp(&mut self, cx: &mut Ctx<'_>) {
        let spi = self.cookies();
        let d = DeletePayload {
            protocol: PROTO_ISAKMP,
            spis: vec![&spi],
        };
        self.send_info(vec![(Kind::DELETE, d.emit())], cx);
    }

    /// DELETE of IPsec SAs by our inbound SPIs.
    pub(crate) fn send_delete_esp(&mut self, spis_in: &[u32], cx: &mut Ctx<'_>) {
        let bytes: Vec<[u8; 4]> = spis_in.iter().map(|s| s.to_be_bytes()).collect();
        let d = DeletePayload {
            protocol: PROTO_ESP,
            spis: bytes.iter().map(|b| &b[..]).collect(),
        };
        self.send_info(vec![(Kind::DELETE, d.emit())], cx);
    }

    fn send_dpd(&mut self, kind: u16, seq: u32, cx: &mut Ctx<'_>) {
        let spi = self.cookies();
        let n = NotifyPayload {
            protocol: PROTO_ISAKMP,
            kind,
            spi: &spi,
            data: &seq.to_be_bytes(),
        };
        self.send_info(vec![(Kind::NOTIFY, n.emit())], cx);
    }

    /// Sends an R-U-THERE now (a liveness check).
    pub fn probe(&mut self, now: Instant, peer: &PeerConfig, cx: &mut Ctx<'_>) {
        self.dpd.seq = self.dpd.seq.wrapping_add(1).max(1);
        let seq = self.dpd.seq;
        self.dpd.pending = Some((seq, now + peer.dpd_timeout, now + DPD_RESEND));
        self.dpd.next_probe = None;
        self.send_dpd(wire::notify::R_U_THERE, seq, cx);
    }

    pub(crate) fn dpd_timeout(&mut self, now: Instant, peer: &PeerConfig, cx: &mut Ctx<'_>) {
        if let Some((seq, deadline, resend)) = self.dpd.pending {
            if now >= deadline {
                cx.events.push_back(Event::PeerDead { conn: self.conn });
                self.close(DownReason::Timeout, cx);
                return;
            }
            if now >= resend {
                self.dpd.pending = Some((seq, deadline, now + DPD_RESEND));
                self.stats.retransmits += 1;
                self.send_dpd(wire::notify::R_U_THERE, seq, cx);
            }
        } else if self.dpd.next_probe.is_some_and(|t| now >= t) {
            self.probe(now, peer, cx);
        }
    }

    pub(crate) fn handle_info(
        &mut self,
        now: Instant,
        d: &Datagram<'_>,
        peer: &PeerConfig,
        cx: &mut Ctx<'_>,
    ) -> Result<(), Error> {
        let keys = self.keys.clone().ok_or(Error::Unexpected)?;
        let c = self.cipher.as_ref().ok_or(Error::Unexpected)?;
        let mid = d.header.message_id;
        let iv = keys::phase2_iv(self.prf(), &self.iv, mid)?;
        let (h, body, _) = c.open(d.bytes, &iv)?;
        let m = Message::parse_body(h, &body)?;
        let hash = match m.payloads.first() {
            Some(p) if p.kind == Kind::HASH => p.body,
            _ => return Err(Error::MissingPayload(Kind::HASH)),
        };
        let rest: Vec<u8> = m.payloads[1..]
            .iter()
            .flat_map(|p| p.whole.iter().copied())
            .collect();
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            &keys.hash1(mid, &rest)?[..],
            hash,
        )) {
            return Err(Error::BadHash);
        }
        self.stats.messages_received += 1;
        // Any authenticated message shows the peer alive.
        if self.dpd.pending.is_none() {
            self.dpd.schedule(now, peer);
        }
        for p in &m.payloads[1..] {
            match p.kind {
                Kind::NOTIFY => {
                    let n = NotifyPayload::parse(p.body)?;
                    let seq = n
                        .data
                        .get(..4)
                        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                    match (n.kind, seq) {
                        (wire::notify::R_U_THERE, Some(seq)) => {
                            self.send_dpd(wire::notify::R_U_THERE_ACK, seq, cx);
                        }
                        (wire::notify::R_U_THERE_ACK, Some(seq))
                            if self.dpd.pending.is_some_and(|p| p.0 == seq) =>
                        {
                            self.dpd.pending = None;
                            self.dpd.schedule(now, peer);
                        }
                        (wire::notify::INITIAL_CONTACT, _) => self.got_initial_contact = true,
                        _ => {}
                    }
                }
                Kind::DELETE => {
                    let del = DeletePayload::parse(p.body)?;
                    if del.protocol == PROTO_ISAKMP && del.spis.contains(&&self.cookies()[..]) {
                        self.close(DownReason::PeerDeleted, cx);
                        return Ok(());
                    }
                    if del.protocol == PROTO_ESP {
                        for spi in del.spis {
                            let Ok(b) = <[u8; 4]>::try_from(spi) else {
                                continue;
                            };
                            let spi_out = u32::from_be_bytes(b);
                            let ours = self
                                .children
                                .iter()
                                .find(|c| c.spi_out == spi_out)
                                .map(|c| c.spi_in);
                            if let Some(spi_in) = ours {
                                self.drop_child(spi_in, ChildDeleteReason::PeerDeleted, cx);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}
