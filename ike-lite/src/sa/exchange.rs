//! Handling of encrypted exchanges: IKE_AUTH, CREATE_CHILD_SA,
//! INFORMATIONAL, their responses, the request queue and timers.

use super::*;

type ChildSelection = (
    u8,
    u32,
    EspChoice,
    Vec<TrafficSelector>,
    Vec<TrafficSelector>,
);

/// A Child SA ready to be installed.
struct NewChild {
    spi_in: u32,
    spi_out: u32,
    choice: EspChoice,
    key_in: KeyMaterial,
    key_out: KeyMaterial,
    ts_local: Vec<TrafficSelector>,
    ts_remote: Vec<TrafficSelector>,
    /// For a rekey: the inbound SPI of the SA it replaces.
    rekey_of: Option<u32>,
}

/// The IKE SA an IKE rekey creates: our role in the rekey, its SPIs
/// (initiator, responder) and its algorithms and keys.
struct Successor {
    initiator: bool,
    spis: (u64, u64),
    keyed: Keyed,
}

impl IkeSa {
    /// Processes a datagram for this SA (everything but a new IKE_SA_INIT).
    pub fn handle(
        &mut self,
        now: Instant,
        d: &Datagram<'_>,
        peers: &[PeerConfig],
        cx: &mut Ctx<'_>,
    ) -> Handled {
        let result = self.handle_datagram(now, d, peers, cx);
        Handled {
            result,
            outcome: self.outcome(),
        }
    }

    fn handle_datagram(
        &mut self,
        now: Instant,
        d: &Datagram<'_>,
        peers: &[PeerConfig],
        out: &mut Ctx<'_>,
    ) -> Result<(), DatagramError> {
        let (h, bytes) = (d.header, d.bytes);
        let msg = match Message::parse(bytes) {
            Ok(m) => m,
            Err(e) => {
                self.stats.dropped += 1;
                return Err(DatagramError::Parse(e));
            }
        };
        if h.is_initiator() == self.initiator || h.spi_i != self.spi_i {
            self.stats.dropped += 1;
            return Err(DatagramError::UnknownSpi);
        }
        let peer = &peers[self.conn.0];
        if h.is_response() {
            if self.pending.as_ref().map(|p| p.msg_id) != Some(h.message_id) {
                self.stats.dropped += 1;
                return Err(DatagramError::UnexpectedMessageId);
            }
            if matches!(self.state, State::InitSent(_)) {
                if h.exchange != ExchangeType::IKE_SA_INIT {
                    return Err(DatagramError::Unexpected);
                }
                self.last_heard = now;
                self.stats.messages_received += 1;
                return self.handle_init_response(now, &msg, bytes, peer, out);
            }
            if h.spi_r != self.spi_r {
                return Err(DatagramError::UnknownSpi);
            }
            let Some((first, plain)) = self.decrypt(h, bytes, &msg, true, true)? else {
                return Ok(());
            };
            self.note_valid(now, d);
            let inner = match parse_payloads(first, &plain) {
                Ok(p) => p,
                Err(e) => {
                    self.stats.dropped += 1;
                    return Err(DatagramError::Parse(e));
                }
            };
            let Some(pending) = self.pending.take() else {
                return Err(DatagramError::UnexpectedMessageId);
            };
            self.handle_response(now, pending.req, &inner, peer, out);
            self.kick(now, peer, out);
            return Ok(());
        }
        if h.spi_r != self.spi_r {
            return Err(DatagramError::UnknownSpi);
        }
        // Retransmitted request: authenticate it, then resend our response.
        if let Some((id, resp)) = &self.last_resp {
            if *id == h.message_id && h.message_id.wrapping_add(1) == self.next_peer_id {
                let resp = resp.clone();
                let first_frag = match msg.payloads.last() {
                    Some(Payload::Fragment(f)) => f.number == 1,
                    _ => true,
                };
                if h.exchange == ExchangeType::IKE_SA_INIT {
                    return Err(DatagramError::Unexpected);
                }
                self.decrypt(h, bytes, &msg, false, false)?;
                if first_frag {
                    for d in resp {
                        self.transmit(d, out);
                    }
                    self.stats.responses_sent += 1;
                }
                return Ok(());
            }
        }
        if h.message_id != self.next_peer_id {
            self.stats.dropped += 1;
            return Err(DatagramError::UnexpectedMessageId);
        }
        let Some((first, plain)) = self.decrypt(h, bytes, &msg, true, false)? else {
            return Ok(());
        };
        self.note_valid(now, d);
        let inner = match parse_payloads(first, &plain) {
            Ok(p) => p,
            Err(e) => {
                let n = match e {
                    ParseError::UnsupportedCritical(t) => {
                        notify_data(NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD, vec![t.0])
                    }
                    _ => notify(NotifyType::INVALID_SYNTAX),
                };
                self.respond(h.exchange, h.message_id, &[n], out);
                self.stats.dropped += 1;
                return Err(DatagramError::Parse(e));
            }
        };
        let half_open = matches!(self.state, State::HalfOpen(_));
        match h.exchange {
            ExchangeType::IKE_AUTH if half_open => self.responder_auth(now, h, &inner, peers, out),
            ExchangeType::CREATE_CHILD_SA if self.keyed().is_some() && !half_open => {
                self.create_child_request(now, h, &inner, peer, out)
            }
            ExchangeType::INFORMATIONAL if !half_open => self.informational_request(h, &inner, out),
            _ => {
                self.respond(
                    h.exchange,
                    h.message_id,
                    &[notify(NotifyType::INVALID_SYNTAX)],
                    out,
                );
                return Err(DatagramError::Unexpected);
            }
        }
        let peer = &peers[self.conn.0];
        self.kick(now, peer, out);
        Ok(())
    }

    fn note_valid(&mut self, now: Instant, d: &Datagram<'_>) {
        let (local, remote, natt) = (d.local, d.remote, d.natt);
        self.last_heard = now;
        self.stats.messages_received += 1;
        if natt && !self.encap {
            self.encap = true;
            self.local = local;
        }
        if self.encap && natt && remote != self.remote {
            // NAT mapping changed (RFC 7296 §2.23).
            self.remote = remote;
        }
    }

    /// Authenticates and decrypts an SK or SKF payload. With `reassemble`,
    /// fragments are collected and `None` means "more to come".
    fn decrypt(
        &mut self,
        h: &Header,
        bytes: &[u8],
        msg: &Message,
        reassemble: bool,
        response: bool,
    ) -> Result<Option<(PayloadType, Vec<u8>)>, DatagramError> {
        let Some(keyed) = self.state.keyed() else {
            return Err(DatagramError::Unexpected);
        };
        let (off, hdr_len) = match msg.payloads.last() {
            Some(Payload::Encrypted(e)) => (bytes.len() - 4 - e.data.len(), 4),
            Some(Payload::Fragment(f)) => (bytes.len() - 8 - f.data.len(), 8),
            _ => {
                self.stats.dropped += 1;
                return Err(DatagramError::Unexpected);
            }
        };
        let mut buf = bytes.to_vec();
        let Some(range) = glue::open(keyed.keys.inp.as_ref(), &mut buf, off, hdr_len) else {
            self.stats.dropped += 1;
            return Err(DatagramError::Decrypt);
        };
        let plain = buf[range].to_vec();
        match msg.payloads.last() {
            Some(Payload::Fragment(f)) if reassemble => {
                let r = if response {
                    &mut self.reasm_resp
                } else {
                    &mut self.reasm
                };
                r.add(h.message_id, f.number, f.total, f.first, &plain)
                    .map_err(DatagramError::Fragment)
            }
            Some(Payload::Fragment(f)) => Ok(Some((f.first, plain))),
            Some(Payload::Encrypted(e)) => Ok(Some((e.first, plain))),
            _ => Err(DatagramError::Unexpected),
        }
    }

    fn handle_response(
        &mut self,
        now: Instant,
        req: Req,
        inner: &[Payload],
        peer: &PeerConfig,
        out: &mut Ctx<'_>,
    ) {
        match req {
            Req::Init => {}
            Req::Auth { child_spi } => {
                self.initiator_auth_response(now, child_spi, inner, peer, out)
            }
            Req::RekeyChild(req) => self.child_rekey_response(now, req, inner, peer, out),
            Req::RekeyIke(req) => self.ike_rekey_response(now, req, inner, peer, out),
            Req::Dpd => {}
            Req::DeleteChild { spi_in, reason } => {
                if let Some(i) = self.children.iter().position(|c| c.spi_in == spi_in) {
                    let c = self.children.remove(i);
                    out.events.push_back(Event::ChildSaDeleted {
                        conn: self.conn,
                        spi_in: c.spi_in,
                        spi_out: c.spi_out,
                        reason,
                    });
                }
            }
            Req::DeleteIke { reason } => {
                if matches!(self.state, State::Replaced(_) | State::Redundant(_)) {
                    self.state = State::Closed;
                } else {
                    self.down(reason, out);
                }
            }
        }
    }

    fn set_ike_timers(&mut self, now: Instant, peer: &PeerConfig, cx: &mut Ctx<'_>) {
        self.rekey_at = Some(now + peer.rekey_after(peer.ike_lifetime, glue::fraction(cx.rng)));
        self.expire_at = Some(now + peer.ike_lifetime);
        self.deadline = None;
        self.last_heard = now;
        if self.nat_local && self.encap {
            self.keepalive_at = Some(now + cx.config.keepalive_interval);
        }
    }

    /// Moves a handshake that just authenticated to `Established` (the
    /// IKE_SA_INIT messages, only needed for AUTH, are freed) and returns
    /// its nonces for the first Child SA's keys.
    fn establish(&mut self) -> Option<(IkeChoice, Vec<u8>, Vec<u8>)> {
        match mem::replace(&mut self.state, State::Closed) {
            State::AuthSent(h) | State::HalfOpen(h) => {
                let Handshake { keyed, ni, nr, .. } = *h;
                let choice = keyed.choice;
                self.state = State::Established(Box::new(keyed));
                Some((choice, ni, nr))
            }
            other => {
                self.state = other;
                None
            }
        }
    }

    fn install_child(&mut self, now: Instant, peer: &PeerConfig, new: NewChild, out: &mut Ctx<'_>) {
        let NewChild {
            spi_in,
            spi_out,
            choice,
            key_in,
            key_out,
            ts_local,
            ts_remote,
            rekey_of,
        } = new;
        // Kept for the SA's lifetime: no spare capacity (one Child SA per
        // IKE SA is the common case, so the Vec grows one at a time too).
        let (mut ts_local, mut ts_remote) = (ts_local, ts_remote);
        ts_local.shrink_to_fit();
        ts_remote.shrink_to_fit();
        out.events
            .push_back(Event::ChildSaEstablished(Box::new(ChildSa {
                conn: self.conn,
                spi_in,
                spi_out,
                suite: choice.suite,
                key_in,
                key_out,
                esn: choice.esn,
                ts_local: ts_local.clone(),
                ts_remote: ts_remote.clone(),
                local: self.local,
                remote: self.remote,
                udp_encap: self.encap,
                lifetime: peer.child_lifetime,
                replay_window: peer.replay_window,
                rekey_of,
            })));
        self.children.reserve_exact(1);
        self.children.push(Child {
            spi_in,
            spi_out,
            ts_local,
            ts_remote,
            rekey_at: Some(now + peer.rekey_after(peer.child_lifetime, glue::fraction(out.rng))),
            expire_at: now + peer.child_lifetime,
            rekeying: false,
            replaced: false,
            deleting: false,
            successor: None,
            collision: None,
        });
    }

    /// Responder side of child negotiation: proposal and selectors.
    fn select_child(
        peer: &PeerConfig,
        inner: &[Payload],
        in_ike_auth: bool,
        ke_group: Option<DhGroup>,
    ) -> Result<ChildSelection, NotifyType> {
        let sa = sa_of(inner).ok_or(NotifyType::INVALID_SYNTAX)?;
        let (tsi, tsr) = ts_of(inner).ok_or(NotifyType::INVALID_SYNTAX)?;
        let (num, spi, choice) =
            proposal::select_esp(&peer.esp_proposals, sa, in_ike_auth, ke_group)
                .ok_or(NotifyType::NO_PROPOSAL_CHOSEN)?;
        let tsi_n = ts::narrow(&peer.remote_ts, tsi);
        let tsr_n = ts::narrow(&peer.local_ts, tsr);
        if tsi_n.is_empty() || tsr_n.is_empty() {
            return Err(NotifyType::TS_UNACCEPTABLE);
        }
        Ok((num, spi, choice, tsi_n, tsr_n))
    }

    fn responder_auth(
        &mut self,
        now: Instant,
        h: &Header,
        inner: &[Payload],
        peers: &[PeerConfig],
        out: &mut Ctx<'_>,
    ) {
        let idi = inner.iter().find_map(|p| match p {
            Payload::IdI(i) => Some(i),
            _ => None,
        });
        let auth = inner.iter().find_map(|p| match p {
            Payload::Auth { method, data } => Some((*method, data)),
            _ => None,
        });
        let fail = |s: &mut Self, reason: AuthFailure, out: &mut Ctx<'_>| {
            s.respond(
                ExchangeType::IKE_AUTH,
                h.message_id,
                &[notify(NotifyType::AUTHENTICATION_FAILED)],
                out,
            );
            out.events.push_back(Event::AuthenticationFailed {
                conn: s.conn,
                reason,
            });
            s.state = State::Closed;
        };
        let (Some(idi), Some((method, auth_data))) = (idi, auth) else {
            return fail(self, AuthFailure::BadAuth, out);
        };
        if method != AuthMethod::SHARED_KEY_MIC {
            return fail(self, AuthFailure::UnsupportedMethod, out);
        }
        let Some(hs) = self.handshake() else {
            return fail(self, AuthFailure::BadAuth, out);
        };
        let c = hs.keyed.choice;
        let ident = Identity::from_payload(idi);
        let mut order: Vec<usize> = vec![self.conn.0];
        order.extend((0..peers.len()).filter(|&i| i != self.conn.0));
        let candidates: Vec<usize> = order
            .into_iter()
            .filter(|&i| {
                peer_matches_addr(&peers[i], self.local, self.remote)
                    && id_matches(&peers[i].remote_id, &ident)
            })
            .filter(|&i| {
                proposal::select_ike(
                    &peers[i].ike_proposals,
                    &[IkeProposal::choice_to_wire(&c, 1, &[])],
                    Some(c.dh),
                )
                .is_some()
            })
            .collect();
        if candidates.is_empty() {
            return fail(self, AuthFailure::UnknownIdentity, out);
        }
        let body = idi.body();
        let verified = candidates.iter().copied().find(|&i| {
            glue::verify_auth(
                &hs.keyed.keys,
                peers[i].psk.as_bytes(),
                &hs.init_req,
                &hs.nr,
                &body,
                auth_data,
            )
        });
        let Some(conn) = verified else {
            return fail(self, AuthFailure::BadAuth, out);
        };
        let peer = &peers[conn];
        let idr = peer.local_id.to_payload();
        let our_auth = glue::auth(
            &hs.keyed.keys,
            peer.psk.as_bytes(),
            &hs.init_resp,
            &hs.ni,
            &idr.body(),
        );
        let Some(our_auth) = our_auth else {
            return fail(self, AuthFailure::BadAuth, out);
        };
        self.conn = ConnId(conn);
        self.initial_contact = find_notify(inner, NotifyType::INITIAL_CONTACT).is_some();
        self.peer_identity = ident;
        let Some((algorithms, ni, nr)) = self.establish() else {
            return fail(self, AuthFailure::BadAuth, out);
        };
        self.set_ike_timers(now, peer, out);
        out.events.push_back(Event::IkeSaUp {
            conn: self.conn,
            spi_i: self.spi_i,
            spi_r: self.spi_r,
            initiator: false,
            udp_encap: self.encap,
            algorithms,
        });
        self.push_secrets(out);
        let mut resp = vec![
            Payload::IdR(idr),
            Payload::Auth {
                method: AuthMethod::SHARED_KEY_MIC,
                data: our_auth,
            },
        ];
        let failed = match Self::select_child(peer, inner, true, None) {
            Ok((num, spi_out, choice, tsi, tsr)) => {
                let spi_in = glue::esp_spi(out.rng);
                let keys = self
                    .keyed()
                    .and_then(|k| glue::child_keys(&k.keys, None, &ni, &nr, choice.suite));
                match keys {
                    Some((i2r, r2i)) => {
                        resp.push(Payload::Sa(vec![EspProposal::choice_to_wire(
                            &choice, num, spi_in,
                        )]));
                        resp.push(Payload::TsI(TsPayload {
                            selectors: tsi.clone(),
                        }));
                        resp.push(Payload::TsR(TsPayload {
                            selectors: tsr.clone(),
                        }));
                        self.respond(ExchangeType::IKE_AUTH, h.message_id, &resp, out);
                        let child = NewChild {
                            spi_in,
                            spi_out,
                            choice,
                            key_in: i2r,
                            key_out: r2i,
                            ts_local: tsr,
                            ts_remote: tsi,
                            rekey_of: None,
                        };
                        self.install_child(now, peer, child, out);
                        return;
                    }
                    None => NotifyType::NO_PROPOSAL_CHOSEN,
                }
            }
            Err(n) => n,
        };
        resp.push(notify(failed));
        out.events.push_back(Event::ChildSaFailed {
            conn: self.conn,
            notify: failed,
        });
        self.respond(ExchangeType::IKE_AUTH, h.message_id, &resp, out);
    }

    fn initiator_auth_response(
        &mut self,
        now: Instant,
        child_spi: u32,
        inner: &[Payload],
        peer: &PeerConfig,
        out: &mut Ctx<'_>,
    ) {
        if find_notify(inner, NotifyType::AUTHENTICATION_FAILED).is_some() {
            out.events.push_back(Event::AuthenticationFailed {
                conn: self.conn,
                reason: AuthFailure::RejectedByPeer,
            });
            return self.down(DownReason::AuthFailed, out);
        }
        let idr = inner.iter().find_map(|p| match p {
            Payload::IdR(i) => Some(i),
            _ => None,
        });
        let auth = inner.iter().find_map(|p| match p {
            Payload::Auth { method, data } => Some((*method, data)),
            _ => None,
        });
        let (Some(idr), Some((method, data))) = (idr, auth) else {
            let reason = find_error_notify(inner)
                .map_or(DownReason::Protocol, |n| DownReason::Refused(n.ty));
            return self.down(reason, out);
        };
        let Some(hs) = self.handshake() else {
            return self.down(DownReason::Protocol, out);
        };
        let reason = if method != AuthMethod::SHARED_KEY_MIC {
            Some(AuthFailure::UnsupportedMethod)
        } else if !id_matches(&peer.remote_id, &Identity::from_payload(idr)) {
            Some(AuthFailure::UnknownIdentity)
        } else if !glue::verify_auth(
            &hs.keyed.keys,
            peer.psk.as_bytes(),
            &hs.init_resp,
            &hs.ni,
            &idr.body(),
            data,
        ) {
            Some(AuthFailure::BadAuth)
        } else {
            None
        };
        if let Some(reason) = reason {
            out.events.push_back(Event::AuthenticationFailed {
                conn: self.conn,
                reason,
            });
            // Tell the peer, once, without waiting for an answer.
            let del = [Payload::Delete(Delete {
                protocol: ProtocolId::IKE,
                spis: vec![],
            })];
            if let Some(d) = self.seal(ExchangeType::INFORMATIONAL, false, self.next_req_id, &del) {
                self.transmit(d, out);
            }
            return self.down(DownReason::AuthFailed, out);
        }
        let Some((algorithms, ni, nr)) = self.establish() else {
            return self.down(DownReason::Protocol, out);
        };
        self.set_ike_timers(now, peer, out);
        out.events.push_back(Event::IkeSaUp {
            conn: self.conn,
            spi_i: self.spi_i,
            spi_r: self.spi_r,
            initiator: true,
            udp_encap: self.encap,
            algorithms,
        });
        self.push_secrets(out);
        if let Some(n) = find_error_notify(inner) {
            out.events.push_back(Event::ChildSaFailed {
                conn: self.conn,
                notify: n.ty,
            });
            return;
        }
        let accepted =
            sa_of(inner).and_then(|sa| proposal::accept_esp(&peer.esp_proposals, sa, true));
        let (Some((spi_out, choice)), Some((tsi, tsr))) = (accepted, ts_of(inner)) else {
            out.events.push_back(Event::ChildSaFailed {
                conn: self.conn,
                notify: NotifyType::NO_PROPOSAL_CHOSEN,
            });
            return;
        };
        if !ts::all_within(&peer.local_ts, tsi) || !ts::all_within(&peer.remote_ts, tsr) {
            out.events.push_back(Event::ChildSaFailed {
                conn: self.conn,
                notify: NotifyType::TS_UNACCEPTABLE,
            });
            return;
        }
        let keys = self
            .keyed()
            .and_then(|k| glue::child_keys(&k.keys, None, &ni, &nr, choice.suite));
        let Some((i2r, r2i)) = keys else {
            out.events.push_back(Event::ChildSaFailed {
                conn: self.conn,
                notify: NotifyType::NO_PROPOSAL_CHOSEN,
            });
            return;
        };
        let child = NewChild {
            spi_in: child_spi,
            spi_out,
            choice,
            key_in: r2i,
            key_out: i2r,
            ts_local: tsi.to_vec(),
            ts_remote: tsr.to_vec(),
            rekey_of: None,
        };
        self.install_child(now, peer, child, out);
    }

    fn create_child_request(
        &mut self,
        now: Instant,
        h: &Header,
        inner: &[Payload],
        peer: &PeerConfig,
        out: &mut Ctx<'_>,
    ) {
        let id = h.message_id;
        let ex = ExchangeType::CREATE_CHILD_SA;
        if !self.is_established() {
            return self.respond(ex, id, &[notify(NotifyType::TEMPORARY_FAILURE)], out);
        }
        if sa_of(inner).is_some_and(|s| s.iter().any(|p| p.protocol == ProtocolId::IKE)) {
            return self.rekey_ike_request(now, h, inner, peer, out);
        }
        let Some(ni) = nonce_of(inner).map(<[u8]>::to_vec) else {
            return self.respond(ex, id, &[notify(NotifyType::INVALID_SYNTAX)], out);
        };
        let mut old_idx = None;
        if let Some(n) = find_notify(inner, NotifyType::REKEY_SA) {
            let Ok(spi) = <[u8; 4]>::try_from(n.spi.as_slice()) else {
                return self.respond(ex, id, &[notify(NotifyType::INVALID_SYNTAX)], out);
            };
            let spi = u32::from_be_bytes(spi);
            match self.children.iter().position(|c| c.spi_out == spi) {
                None => {
                    let n = Notify {
                        protocol: ProtocolId::ESP,
                        spi: spi.to_be_bytes().to_vec(),
                        ty: NotifyType::CHILD_SA_NOT_FOUND,
                        data: vec![],
                    };
                    return self.respond(ex, id, &[Payload::Notify(n)], out);
                }
                Some(i) if self.children[i].replaced || self.children[i].deleting => {
                    return self.respond(ex, id, &[notify(NotifyType::TEMPORARY_FAILURE)], out);
                }
                Some(i) => old_idx = Some(i),
            }
        }
        let ke = ke_of(inner);
        let (num, spi_out, choice, tsi, tsr) =
            match Self::select_child(peer, inner, false, ke.map(|k| DhGroup(k.group))) {
                Ok(s) => s,
                Err(n) => return self.respond(ex, id, &[notify(n)], out),
            };
        let mut g_ir = None;
        let mut our_ke = None;
        if let Some(g) = choice.dh {
            let Some(ke) = ke.filter(|k| k.group == g.0) else {
                return self.respond(
                    ex,
                    id,
                    &[notify_data(
                        NotifyType::INVALID_KE_PAYLOAD,
                        g.0.to_be_bytes().to_vec(),
                    )],
                    out,
                );
            };
            let Some(k) = glue::kex(out.rng, g) else {
                return self.respond(ex, id, &[notify(NotifyType::NO_PROPOSAL_CHOSEN)], out);
            };
            let Some(s) = glue::agree(&k, &ke.data) else {
                return self.respond(ex, id, &[notify(NotifyType::INVALID_SYNTAX)], out);
            };
            g_ir = Some(s);
            our_ke = Some(k);
        }
        let nr = glue::random(out.rng, 32);
        let spi_in = glue::esp_spi(out.rng);
        let g_ir = g_ir.as_deref().map(|v| v.as_slice());
        let keys = self
            .keyed()
            .and_then(|k| glue::child_keys(&k.keys, g_ir, &ni, &nr, choice.suite));
        let Some((i2r, r2i)) = keys else {
            return self.respond(ex, id, &[notify(NotifyType::NO_PROPOSAL_CHOSEN)], out);
        };
        let mut resp = vec![
            Payload::Sa(vec![EspProposal::choice_to_wire(&choice, num, spi_in)]),
            Payload::Nonce(nr.clone()),
        ];
        if let (Some(k), Some(g)) = (&our_ke, choice.dh) {
            resp.push(Payload::Ke(KePayload {
                group: g.0,
                data: k.public_value().to_vec(),
            }));
        }
        resp.push(Payload::TsI(TsPayload {
            selectors: tsi.clone(),
        }));
        resp.push(Payload::TsR(TsPayload {
            selectors: tsr.clone(),
        }));
        self.respond(ex, id, &resp, out);
        let child = NewChild {
            spi_in,
            spi_out,
            choice,
            key_in: i2r,
            key_out: r2i,
            ts_local: tsr,
            ts_remote: tsi,
            rekey_of: old_idx.map(|i| self.children[i].spi_in),
        };
        self.install_child(now, peer, child, out);
        if let Some(i) = old_idx {
            let old = &mut self.children[i];
            if old.rekeying {
                old.collision = Some(ChildCollision {
                    peer_ni: ni,
                    our_nr: nr,
                    new_spi_in: spi_in,
                });
            } else {
                old.successor = Some(spi_in);
                old.replaced = true;
                old.rekey_at = None;
            }
        }
    }

    fn rekey_ike_request(
        &mut self,
        now: Instant,
        h: &Header,
        inner: &[Payload],
        peer: &PeerConfig,
        out: &mut Ctx<'_>,
    ) {
        let id = h.message_id;
        let ex = ExchangeType::CREATE_CHILD_SA;
        let our_rekey = matches!(
            self.pending,
            Some(Pending {
                req: Req::RekeyIke(_),
                ..
            })
        );
        let busy = matches!(&self.pending, Some(p) if !matches!(p.req, Req::RekeyIke(_) | Req::Dpd))
            || self.children.iter().any(|c| c.rekeying);
        if busy {
            return self.respond(ex, id, &[notify(NotifyType::TEMPORARY_FAILURE)], out);
        }
        let (Some(offered), Some(ke), Some(ni)) = (sa_of(inner), ke_of(inner), nonce_of(inner))
        else {
            return self.respond(ex, id, &[notify(NotifyType::INVALID_SYNTAX)], out);
        };
        let Some((num, choice)) =
            proposal::select_ike(&peer.ike_proposals, offered, Some(DhGroup(ke.group)))
        else {
            return self.respond(ex, id, &[notify(NotifyType::NO_PROPOSAL_CHOSEN)], out);
        };
        if choice.dh.0 != ke.group {
            return self.respond(
                ex,
                id,
                &[notify_data(
                    NotifyType::INVALID_KE_PAYLOAD,
                    choice.dh.0.to_be_bytes().to_vec(),
                )],
                out,
            );
        }
        let peer_spi = offered
            .iter()
            .find(|p| p.num == num && p.protocol == ProtocolId::IKE)
            .and_then(|p| <[u8; 8]>::try_from(p.spi.as_slice()).ok())
            .map(u64::from_be_bytes)
            .filter(|s| *s != 0);
        let Some(peer_spi) = peer_spi else {
            return self.respond(ex, id, &[notify(NotifyType::INVALID_SYNTAX)], out);
        };
        let Some(our_ke) = glue::kex(out.rng, choice.dh) else {
            return self.respond(ex, id, &[notify(NotifyType::NO_PROPOSAL_CHOSEN)], out);
        };
        let (nr, new_spi) = (glue::random(out.rng, 32), glue::ike_spi(out.rng));
        let Some(g_ir) = glue::agree(&our_ke, &ke.data) else {
            return self.respond(ex, id, &[notify(NotifyType::INVALID_SYNTAX)], out);
        };
        let new_keys = NewIkeKeys {
            choice: &choice,
            g_ir: &g_ir,
            ni,
            nr: &nr,
            spi_i: peer_spi,
            spi_r: new_spi,
            initiator: false,
            export: out.config.export_ike_keys,
        };
        let keys = self
            .keyed()
            .and_then(|old| glue::derive_ike_rekey(&old.keys, &new_keys));
        let Some(keys) = keys else {
            return self.respond(ex, id, &[notify(NotifyType::NO_PROPOSAL_CHOSEN)], out);
        };
        let resp = [
            Payload::Sa(vec![IkeProposal::choice_to_wire(
                &choice,
                num,
                &new_spi.to_be_bytes(),
            )]),
            Payload::Nonce(nr.clone()),
            Payload::Ke(KePayload {
                group: choice.dh.0,
                data: our_ke.public_value().to_vec(),
            }),
        ];
        self.respond(ex, id, &resp, out);
        let new_sa = self.successor_sa(
            now,
            Successor {
                initiator: false,
                spis: (peer_spi, new_spi),
                keyed: Keyed { choice, keys },
            },
            peer,
            out,
        );
        if our_rekey {
            self.ike_collision = Some(IkeCollision {
                peer_ni: ni.to_vec(),
                our_nr: nr,
                new_sa: Box::new(new_sa),
            });
        } else {
            self.hand_over(now, new_sa, out);
        }
    }

    /// The established IKE SA that an IKE rekey creates from this one.
    fn successor_sa(
        &self,
        now: Instant,
        new: Successor,
        peer: &PeerConfig,
        cx: &mut Ctx<'_>,
    ) -> IkeSa {
        let Successor {
            initiator,
            spis: (spi_i, spi_r),
            keyed,
        } = new;
        let state = State::Established(Box::new(keyed));
        let mut sa = IkeSa::blank(self.conn, initiator, (self.local, self.remote), state, now);
        sa.spi_i = spi_i;
        sa.spi_r = spi_r;
        sa.encap = self.encap;
        sa.nat_local = self.nat_local;
        sa.nat_remote = self.nat_remote;
        sa.peer_frag = self.peer_frag;
        sa.set_ike_timers(now, peer, cx);
        sa
    }

    /// Moves the Child SAs to `new` (an established successor) and retires
    /// this SA.
    fn hand_over(&mut self, now: Instant, mut new: IkeSa, out: &mut Ctx<'_>) {
        new.children = mem::take(&mut self.children);
        if let Some(algorithms) = new.algorithms() {
            out.events.push_back(Event::IkeSaRekeyed {
                conn: self.conn,
                old: (self.spi_i, self.spi_r),
                new: (new.spi_i, new.spi_r),
                algorithms,
            });
        }
        new.push_secrets(out);
        self.retire(State::Replaced);
        self.deadline = Some(now + REPLACED_LINGER);
        self.tasks.retain(|t| matches!(t, Task::DeleteIke(_)));
        self.spawned.push(new);
    }

    fn informational_request(&mut self, h: &Header, inner: &[Payload], out: &mut Ctx<'_>) {
        let mut delete_ike = false;
        let mut ours = Vec::new();
        for p in inner {
            let Payload::Delete(d) = p else { continue };
            if d.protocol == ProtocolId::IKE {
                delete_ike = true;
                continue;
            }
            if d.protocol != ProtocolId::ESP {
                continue;
            }
            for spi in &d.spis {
                let Ok(spi) = <[u8; 4]>::try_from(spi.as_slice()) else {
                    continue;
                };
                let spi = u32::from_be_bytes(spi);
                let Some(i) = self.children.iter().position(|c| c.spi_out == spi) else {
                    continue;
                };
                let c = self.children.remove(i);
                let succ = c
                    .successor
                    .and_then(|s| self.children.iter().find(|x| x.spi_in == s));
                if let Some(s) = succ {
                    out.events.push_back(Event::ChildSaOutboundSwitched {
                        conn: self.conn,
                        old_spi_out: c.spi_out,
                        new_spi_out: s.spi_out,
                    });
                }
                let reason = if succ.is_some() || c.replaced {
                    ChildDeleteReason::Rekeyed
                } else {
                    ChildDeleteReason::PeerDeleted
                };
                out.events.push_back(Event::ChildSaDeleted {
                    conn: self.conn,
                    spi_in: c.spi_in,
                    spi_out: c.spi_out,
                    reason,
                });
                if !c.deleting {
                    ours.push(c.spi_in.to_be_bytes().to_vec());
                }
            }
        }
        let resp = if ours.is_empty() || delete_ike {
            vec![]
        } else {
            vec![Payload::Delete(Delete {
                protocol: ProtocolId::ESP,
                spis: ours,
            })]
        };
        self.respond(ExchangeType::INFORMATIONAL, h.message_id, &resp, out);
        if delete_ike {
            if matches!(self.state, State::Replaced(_) | State::Redundant(_)) {
                self.state = State::Closed;
            } else {
                self.down(DownReason::PeerDeleted, out);
            }
        }
    }

    fn child_rekey_response(
        &mut self,
        now: Instant,
        req: ChildRekey,
        inner: &[Payload],
        peer: &PeerConfig,
        out: &mut Ctx<'_>,
    ) {
        let ChildRekey {
            old_spi_in,
            new_spi_in,
            ni,
            ke,
        } = req;
        let Some(oi) = self.children.iter().position(|c| c.spi_in == old_spi_in) else {
            return;
        };
        self.children[oi].rekeying = false;
        let collision = self.children[oi].collision.take();
        let peer_won = |s: &mut Self, col: Option<ChildCollision>| {
            if let Some(col) = col {
                let old = &mut s.children[oi];
                old.successor = Some(col.new_spi_in);
                old.replaced = true;
            }
        };
        if let Some(n) = find_error_notify(inner) {
            match n.ty {
                NotifyType::TEMPORARY_FAILURE => {
                    if collision.is_none() {
                        self.children[oi].rekey_at = Some(now + RETRY_AFTER);
                    }
                }
                NotifyType::CHILD_SA_NOT_FOUND => {
                    let c = self.children.remove(oi);
                    out.events.push_back(Event::ChildSaDeleted {
                        conn: self.conn,
                        spi_in: c.spi_in,
                        spi_out: c.spi_out,
                        reason: ChildDeleteReason::PeerDeleted,
                    });
                    return;
                }
                ty => out.events.push_back(Event::ChildSaFailed {
                    conn: self.conn,
                    notify: ty,
                }),
            }
            return peer_won(self, collision);
        }
        let accepted =
            sa_of(inner).and_then(|sa| proposal::accept_esp(&peer.esp_proposals, sa, false));
        let nr = nonce_of(inner).map(<[u8]>::to_vec);
        let (Some((spi_out, choice)), Some(nr)) = (accepted, nr) else {
            out.events.push_back(Event::ChildSaFailed {
                conn: self.conn,
                notify: NotifyType::NO_PROPOSAL_CHOSEN,
            });
            return peer_won(self, collision);
        };
        let g_ir = match (&ke, choice.dh, ke_of(inner)) {
            (None, None, _) => None,
            (Some(k), Some(g), Some(kr)) if k.group() == g && kr.group == g.0 => {
                match glue::agree(k, &kr.data) {
                    Some(s) => Some(s),
                    None => {
                        out.events.push_back(Event::ChildSaFailed {
                            conn: self.conn,
                            notify: NotifyType::INVALID_SYNTAX,
                        });
                        return peer_won(self, collision);
                    }
                }
            }
            _ => {
                out.events.push_back(Event::ChildSaFailed {
                    conn: self.conn,
                    notify: NotifyType::INVALID_KE_PAYLOAD,
                });
                return peer_won(self, collision);
            }
        };
        let g_ir = g_ir.as_deref().map(|v| v.as_slice());
        let keys = self
            .keyed()
            .and_then(|k| glue::child_keys(&k.keys, g_ir, &ni, &nr, choice.suite));
        let Some((i2r, r2i)) = keys else {
            return peer_won(self, collision);
        };
        let old = &self.children[oi];
        let (tsi, tsr) = match ts_of(inner) {
            Some((i, r))
                if ts::all_within(&old.ts_local, i) && ts::all_within(&old.ts_remote, r) =>
            {
                (i.to_vec(), r.to_vec())
            }
            _ => (old.ts_local.clone(), old.ts_remote.clone()),
        };
        let old_spi_out = old.spi_out;
        let child = NewChild {
            spi_in: new_spi_in,
            spi_out,
            choice,
            key_in: r2i,
            key_out: i2r,
            ts_local: tsi,
            ts_remote: tsr,
            rekey_of: Some(old_spi_in),
        };
        self.install_child(now, peer, child, out);
        self.stats.child_rekeys += 1;
        match collision {
            Some(col) if lowest_in_first(&ni, &nr, &col.peer_ni, &col.our_nr) => {
                // Our exchange holds the lowest nonce: our new SA is redundant.
                if let Some(c) = self.children.iter_mut().find(|c| c.spi_in == new_spi_in) {
                    c.rekey_at = None;
                    c.deleting = true;
                }
                self.tasks.push_back(Task::DeleteChild(
                    new_spi_in,
                    ChildDeleteReason::LocalDelete,
                ));
                peer_won(self, Some(col));
            }
            col => {
                if let Some(col) = col {
                    // The peer's SA is redundant; the peer deletes it.
                    if let Some(c) = self
                        .children
                        .iter_mut()
                        .find(|c| c.spi_in == col.new_spi_in)
                    {
                        c.rekey_at = None;
                    }
                }
                out.events.push_back(Event::ChildSaOutboundSwitched {
                    conn: self.conn,
                    old_spi_out,
                    new_spi_out: spi_out,
                });
                let old = &mut self.children[oi];
                old.replaced = true;
                old.successor = Some(new_spi_in);
                old.deleting = true;
                old.rekey_at = None;
                self.tasks
                    .push_back(Task::DeleteChild(old_spi_in, ChildDeleteReason::Rekeyed));
            }
        }
    }

    fn ike_rekey_response(
        &mut self,
        now: Instant,
        req: IkeRekey,
        inner: &[Payload],
        peer: &PeerConfig,
        out: &mut Ctx<'_>,
    ) {
        let IkeRekey { new_spi, ni, ke } = req;
        let collision = self.ike_collision.take();
        let failed = |s: &mut Self, col: Option<IkeCollision>, retry: bool, out: &mut Ctx<'_>| {
            if let Some(col) = col {
                s.hand_over(now, *col.new_sa, out);
            } else if retry {
                s.rekey_at = Some(now + RETRY_AFTER);
            }
        };
        if let Some(n) = find_error_notify(inner) {
            return failed(self, collision, n.ty == NotifyType::TEMPORARY_FAILURE, out);
        }
        let (Some(sa), Some(kr), Some(nr)) = (sa_of(inner), ke_of(inner), nonce_of(inner)) else {
            return failed(self, collision, false, out);
        };
        let Some(choice) = proposal::accept_ike(&peer.ike_proposals, sa) else {
            return failed(self, collision, false, out);
        };
        let peer_spi = sa[0]
            .spi
            .as_slice()
            .try_into()
            .ok()
            .map(u64::from_be_bytes)
            .filter(|s| *s != 0);
        let (Some(peer_spi), true) = (
            peer_spi,
            kr.group == ke.group().0 && choice.dh == ke.group(),
        ) else {
            return failed(self, collision, false, out);
        };
        let Some(g_ir) = glue::agree(&ke, &kr.data) else {
            return failed(self, collision, false, out);
        };
        let new_keys = NewIkeKeys {
            choice: &choice,
            g_ir: &g_ir,
            ni: &ni,
            nr,
            spi_i: new_spi,
            spi_r: peer_spi,
            initiator: true,
            export: out.config.export_ike_keys,
        };
        let keys = self
            .keyed()
            .and_then(|old| glue::derive_ike_rekey(&old.keys, &new_keys));
        let Some(keys) = keys else {
            return failed(self, collision, false, out);
        };
        let successor = Successor {
            initiator: true,
            spis: (new_spi, peer_spi),
            keyed: Keyed { choice, keys },
        };
        let mut ours = self.successor_sa(now, successor, peer, out);
        match collision {
            Some(col) if lowest_in_first(&ni, nr, &col.peer_ni, &col.our_nr) => {
                // Our new SA is redundant: the peer's one takes over and the
                // peer deletes the old SA; we delete ours.
                ours.retire(State::Redundant);
                ours.rekey_at = None;
                ours.deadline = Some(now + REPLACED_LINGER);
                ours.queue(now, Task::DeleteIke(DownReason::LocalDelete), peer, out);
                self.spawned.push(ours);
                self.hand_over(now, *col.new_sa, out);
            }
            col => {
                if let Some(col) = col {
                    let mut theirs = *col.new_sa;
                    theirs.retire(State::Redundant);
                    theirs.rekey_at = None;
                    theirs.deadline = Some(now + REPLACED_LINGER);
                    self.spawned.push(theirs);
                }
                self.hand_over(now, ours, out);
                self.tasks
                    .push_back(Task::DeleteIke(DownReason::LocalDelete));
            }
        }
    }

    // ------------------------------------------------------------ requests

    /// Starts `task` for the API (or queues it behind the request in
    /// flight).
    pub fn request(
        &mut self,
        now: Instant,
        task: Task,
        peer: &PeerConfig,
        cx: &mut Ctx<'_>,
    ) -> Outcome {
        self.queue(now, task, peer, cx);
        self.outcome()
    }

    /// Queues work needing the request window and starts it if idle.
    fn queue(&mut self, now: Instant, task: Task, peer: &PeerConfig, out: &mut Ctx<'_>) {
        if !self.tasks.contains(&task) {
            self.tasks.push_back(task);
        }
        self.kick(now, peer, out);
    }

    /// The Child SA whose inbound SPI is `spi_in`.
    fn child_mut(&mut self, spi_in: u32) -> Result<&mut Child, ApiError> {
        self.children
            .iter_mut()
            .find(|c| c.spi_in == spi_in)
            .ok_or(ApiError::UnknownChild)
    }

    pub fn queue_rekey_child(
        &mut self,
        now: Instant,
        spi_in: u32,
        peer: &PeerConfig,
        out: &mut Ctx<'_>,
    ) -> Result<Outcome, ApiError> {
        let c = self.child_mut(spi_in)?;
        c.rekey_at = None;
        self.queue(now, Task::RekeyChild(spi_in), peer, out);
        Ok(self.outcome())
    }

    pub fn queue_delete_child(
        &mut self,
        now: Instant,
        spi_in: u32,
        peer: &PeerConfig,
        out: &mut Ctx<'_>,
    ) -> Result<Outcome, ApiError> {
        let c = self.child_mut(spi_in)?;
        c.deleting = true;
        c.rekey_at = None;
        self.queue(
            now,
            Task::DeleteChild(spi_in, ChildDeleteReason::LocalDelete),
            peer,
            out,
        );
        Ok(self.outcome())
    }

    pub(super) fn kick(&mut self, now: Instant, peer: &PeerConfig, out: &mut Ctx<'_>) {
        if !matches!(
            self.state,
            State::Established(_) | State::Replaced(_) | State::Redundant(_)
        ) {
            return;
        }
        while self.pending.is_none() {
            let Some(t) = self.tasks.pop_front() else {
                break;
            };
            self.start_task(now, t, peer, out);
        }
    }

    fn start_task(&mut self, now: Instant, task: Task, peer: &PeerConfig, out: &mut Ctx<'_>) {
        let established = self.is_established();
        match task {
            Task::RekeyChild(spi) if established => {
                let Some(c) = self.children.iter_mut().find(|c| c.spi_in == spi) else {
                    return;
                };
                if c.rekeying || c.replaced || c.deleting {
                    return;
                }
                c.rekeying = true;
                c.rekey_at = None;
                let (ts_l, ts_r) = (c.ts_local.clone(), c.ts_remote.clone());
                let new_spi_in = glue::esp_spi(out.rng);
                let ni = glue::random(out.rng, 32);
                let ke = esp_group(peer).and_then(|g| glue::kex(out.rng, g));
                let mut inner = vec![
                    Payload::Notify(Notify {
                        protocol: ProtocolId::ESP,
                        spi: spi.to_be_bytes().to_vec(),
                        ty: NotifyType::REKEY_SA,
                        data: vec![],
                    }),
                    Payload::Sa(esp_wire(&peer.esp_proposals, new_spi_in, ke.is_some())),
                    Payload::Nonce(ni.clone()),
                ];
                if let Some(k) = &ke {
                    inner.push(Payload::Ke(KePayload {
                        group: k.group().0,
                        data: k.public_value().to_vec(),
                    }));
                }
                inner.push(Payload::TsI(TsPayload { selectors: ts_l }));
                inner.push(Payload::TsR(TsPayload { selectors: ts_r }));
                let req = Req::RekeyChild(ChildRekey {
                    old_spi_in: spi,
                    new_spi_in,
                    ni,
                    ke,
                });
                self.send_request(now, ExchangeType::CREATE_CHILD_SA, &inner, req, peer, out);
            }
            Task::RekeyIke if established => {
                let Some(choice) = self.algorithms() else {
                    return;
                };
                let Some(ke) = glue::kex(out.rng, choice.dh) else {
                    return;
                };
                self.rekey_at = None;
                let new_spi = glue::ike_spi(out.rng);
                let ni = glue::random(out.rng, 32);
                // Offer the current group first so that the KE matches.
                let props = peer
                    .ike_proposals
                    .iter()
                    .enumerate()
                    .map(|(i, p)| {
                        let mut p = p.clone();
                        if let Some(pos) = p.dh.iter().position(|g| *g == choice.dh) {
                            p.dh.swap(0, pos);
                        }
                        p.to_wire(i as u8 + 1, &new_spi.to_be_bytes())
                    })
                    .collect();
                let inner = [
                    Payload::Sa(props),
                    Payload::Nonce(ni.clone()),
                    Payload::Ke(KePayload {
                        group: choice.dh.0,
                        data: ke.public_value().to_vec(),
                    }),
                ];
                self.send_request(
                    now,
                    ExchangeType::CREATE_CHILD_SA,
                    &inner,
                    Req::RekeyIke(IkeRekey { new_spi, ni, ke }),
                    peer,
                    out,
                );
            }
            Task::Dpd => {
                self.send_request(now, ExchangeType::INFORMATIONAL, &[], Req::Dpd, peer, out)
            }
            Task::DeleteChild(spi, reason) => {
                let Some(c) = self.children.iter_mut().find(|c| c.spi_in == spi) else {
                    return;
                };
                c.deleting = true;
                let inner = [Payload::Delete(Delete {
                    protocol: ProtocolId::ESP,
                    spis: vec![spi.to_be_bytes().to_vec()],
                })];
                self.send_request(
                    now,
                    ExchangeType::INFORMATIONAL,
                    &inner,
                    Req::DeleteChild {
                        spi_in: spi,
                        reason,
                    },
                    peer,
                    out,
                );
            }
            Task::DeleteIke(reason) => {
                let inner = [Payload::Delete(Delete {
                    protocol: ProtocolId::IKE,
                    spis: vec![],
                })];
                self.send_request(
                    now,
                    ExchangeType::INFORMATIONAL,
                    &inner,
                    Req::DeleteIke { reason },
                    peer,
                    out,
                );
            }
            Task::RekeyChild(_) | Task::RekeyIke => {}
        }
    }

    // -------------------------------------------------------------- timers

    /// Processes the timers that expired by `now`.
    pub fn handle_timeout(
        &mut self,
        now: Instant,
        peers: &[PeerConfig],
        cx: &mut Ctx<'_>,
    ) -> Outcome {
        self.run_timers(now, peers, cx);
        self.outcome()
    }

    fn run_timers(&mut self, now: Instant, peers: &[PeerConfig], out: &mut Ctx<'_>) {
        let peer = &peers[self.conn.0];
        if self.is_closed() {
            return;
        }
        if self.deadline.is_some_and(|d| now >= d) {
            // Half-open, replaced or redundant SA that lingered too long.
            self.state = State::Closed;
            return;
        }
        if let Some(p) = &mut self.pending {
            if now >= p.next_at {
                let dpd_expired = matches!(p.req, Req::Dpd)
                    && now.duration_since(p.first_sent) >= peer.dpd_timeout;
                if p.retries >= peer.retransmit.max_retries || dpd_expired {
                    if self.is_established() {
                        out.events.push_back(Event::PeerDead { conn: self.conn });
                    }
                    self.down(DownReason::Timeout, out);
                    return;
                }
                p.retries += 1;
                let mut next = now + backoff(peer, p.retries);
                if matches!(p.req, Req::Dpd) {
                    next = next.min(p.first_sent + peer.dpd_timeout);
                }
                p.next_at = next;
                for d in p.datagrams.clone() {
                    self.transmit(d, out);
                }
                self.stats.retransmits += 1;
            }
        }
        if !self.is_established() {
            return;
        }
        if self.expire_at.is_some_and(|t| now >= t) {
            let del = [Payload::Delete(Delete {
                protocol: ProtocolId::IKE,
                spis: vec![],
            })];
            if let Some(d) = self.seal(ExchangeType::INFORMATIONAL, false, self.next_req_id, &del) {
                self.transmit(d, out);
            }
            for c in self.children.drain(..) {
                out.events.push_back(Event::ChildSaDeleted {
                    conn: self.conn,
                    spi_in: c.spi_in,
                    spi_out: c.spi_out,
                    reason: ChildDeleteReason::Expired,
                });
            }
            return self.down(DownReason::Expired, out);
        }
        if self.rekey_at.is_some_and(|t| now >= t) {
            self.rekey_at = None;
            self.queue(now, Task::RekeyIke, peer, out);
        }
        let mut tasks = Vec::new();
        for c in &mut self.children {
            if !c.deleting && now >= c.expire_at {
                c.deleting = true;
                c.rekey_at = None;
                tasks.push(Task::DeleteChild(c.spi_in, ChildDeleteReason::Expired));
            } else if c.rekey_at.is_some_and(|t| now >= t) {
                c.rekey_at = None;
                tasks.push(Task::RekeyChild(c.spi_in));
            }
        }
        for t in tasks {
            self.queue(now, t, peer, out);
        }
        if let Some(d) = peer.dpd_delay {
            if self.pending.is_none() && self.tasks.is_empty() && now >= self.last_heard + d {
                self.queue(now, Task::Dpd, peer, out);
            }
        }
        if let Some(k) = self.keepalive_at {
            if now >= k {
                out.transmits.push_back(Transmit {
                    src: self.local,
                    dst: self.remote,
                    payload: vec![0xff],
                    non_esp_marker: false,
                });
                self.stats.keepalives_sent += 1;
                self.keepalive_at = Some(now + out.config.keepalive_interval);
            }
        }
    }

    pub fn next_timeout(&self, peers: &[PeerConfig]) -> Option<Instant> {
        if self.is_closed() {
            return None;
        }
        let peer = &peers[self.conn.0];
        let mut t: Option<Instant> = None;
        let mut consider = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        consider(self.deadline);
        consider(self.pending.as_ref().map(|p| p.next_at));
        if self.is_established() {
            consider(self.rekey_at);
            consider(self.expire_at);
            consider(self.keepalive_at);
            for c in &self.children {
                if !c.deleting {
                    consider(Some(c.expire_at));
                    consider(c.rekey_at);
                }
            }
            if let (Some(d), None, true) = (peer.dpd_delay, &self.pending, self.tasks.is_empty()) {
                consider(Some(self.last_heard + d));
            }
        }
        t
    }
}
