//! Shared by the `ike_handshake` and `ike_memory` benches: one responder
//! [`Endpoint`] serving many configured clients, fresh initiator endpoints,
//! and a lossless in-memory exchange of IKE_SA_INIT + IKE_AUTH between them
//! on a virtual clock, timing only the responder's calls.

use ike_lite::proposal::{parse_esp_proposals, parse_ike_proposals};
use ike_lite::{
    ChildDeleteReason, Config, ConnId, DownReason, Endpoint, Event, Identity, PeerConfig, Psk,
    Transmit,
};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

/// The responder's address.
pub const RESPONDER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2)), 500);
const PSK: &[u8] = b"bench-pre-shared-key-0123456789";

/// Address of client `i` (distinct for up to 65 000 clients).
pub fn client_addr(i: usize) -> SocketAddr {
    let ip = Ipv4Addr::new(
        10,
        1 + (i / 65_000) as u8,
        ((i / 250) % 260) as u8,
        (i % 250) as u8 + 1,
    );
    SocketAddr::new(IpAddr::V4(ip), 500)
}

fn client_id(i: usize) -> Identity {
    Identity::Fqdn(format!("client-{i}.example"))
}

fn peer(
    local: SocketAddr,
    remote: SocketAddr,
    ours: Identity,
    theirs: Identity,
    ike: &str,
) -> PeerConfig {
    let mut p = PeerConfig::new(local, remote, ours, Psk::new(PSK));
    p.remote_id = Some(theirs);
    p.ike_proposals = parse_ike_proposals(ike).expect("IKE proposal");
    p.esp_proposals = parse_esp_proposals("aes128gcm16").expect("ESP proposal");
    p.rekey_fuzz = 0.0;
    p
}

/// A responder with one connection per client `0..clients` (exact peer
/// address and identity, so INITIAL_CONTACT from one client never tears
/// down another client's IKE SA).
pub fn responder(clients: usize, ike: &str) -> Endpoint {
    let mut ep = Endpoint::new(Config::default());
    for i in 0..clients {
        let id = Identity::Fqdn("gw.example".into());
        ep.add_peer(peer(RESPONDER, client_addr(i), id, client_id(i), ike));
    }
    ep
}

/// A fresh initiator endpoint for client `i` and its connection.
pub fn initiator(i: usize, ike: &str) -> (Endpoint, ConnId) {
    let mut ep = Endpoint::new(Config::default());
    let theirs = Identity::Fqdn("gw.example".into());
    let conn = ep.add_peer(peer(client_addr(i), RESPONDER, client_id(i), theirs, ike));
    (ep, conn)
}

/// What one handshake produced.
pub struct Handshake {
    /// Time spent in the responder's `handle_datagram` / `poll_*` calls.
    pub responder_time: Duration,
    /// UDP payload sizes: IKE_SA_INIT request, IKE_SA_INIT response,
    /// IKE_AUTH request, IKE_AUTH response.
    pub sizes: [usize; 4],
}

fn one(ep: &mut Endpoint) -> Transmit {
    let t = ep.poll_transmit().expect("a datagram to send");
    assert!(ep.poll_transmit().is_none(), "one datagram per step");
    t
}

/// Drains `ep`'s events; returns (IKE SAs up, Child SAs established).
/// A client that connects again replaces its previous IKE SA
/// (INITIAL_CONTACT); the resulting deletions are the only other events
/// allowed.
fn drain_events(ep: &mut Endpoint) -> (usize, usize) {
    let (mut ike, mut child) = (0, 0);
    while let Some(e) = ep.poll_event() {
        match e {
            Event::IkeSaUp { .. } => ike += 1,
            Event::ChildSaEstablished(_) => child += 1,
            Event::ChildSaDeleted {
                reason: ChildDeleteReason::IkeSaGone,
                ..
            }
            | Event::IkeSaDown {
                reason: DownReason::InitialContact,
                ..
            } => {}
            other => panic!("unexpected event {other:?}"),
        }
    }
    (ike, child)
}

/// Runs IKE_SA_INIT + IKE_AUTH (with the first Child SA) between a fresh
/// `initiator` and `resp`; panics unless both sides end up with one IKE SA
/// and one Child SA. Only the responder's calls are timed.
pub fn handshake(
    resp: &mut Endpoint,
    init: &mut Endpoint,
    conn: ConnId,
    now: Instant,
) -> Handshake {
    let mut timed = Duration::ZERO;
    init.initiate(now, conn).expect("initiate");
    let init_req = one(init);

    let t0 = Instant::now();
    let r = resp.handle_datagram(now, init_req.dst, init_req.src, &init_req.payload);
    let init_resp = resp.poll_transmit();
    let r_events = drain_events(resp);
    timed += t0.elapsed();
    r.expect("responder accepts IKE_SA_INIT");
    let init_resp = init_resp.expect("IKE_SA_INIT response");
    assert_eq!(r_events, (0, 0));

    init.handle_datagram(now, init_resp.dst, init_resp.src, &init_resp.payload)
        .expect("initiator accepts IKE_SA_INIT response");
    let auth_req = one(init);

    let t0 = Instant::now();
    let r = resp.handle_datagram(now, auth_req.dst, auth_req.src, &auth_req.payload);
    let auth_resp = resp.poll_transmit();
    let r_events = drain_events(resp);
    timed += t0.elapsed();
    r.expect("responder accepts IKE_AUTH");
    let auth_resp = auth_resp.expect("IKE_AUTH response");
    assert_eq!(r_events, (1, 1), "responder: IKE SA and Child SA up");

    init.handle_datagram(now, auth_resp.dst, auth_resp.src, &auth_resp.payload)
        .expect("initiator accepts IKE_AUTH response");
    assert_eq!(
        drain_events(init),
        (1, 1),
        "initiator: IKE SA and Child SA up"
    );
    assert!(init.poll_transmit().is_none() && resp.poll_transmit().is_none());
    Handshake {
        responder_time: timed,
        sizes: [
            init_req.payload.len(),
            init_resp.payload.len(),
            auth_req.payload.len(),
            auth_resp.payload.len(),
        ],
    }
}
