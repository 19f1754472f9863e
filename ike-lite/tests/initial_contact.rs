//! INITIAL_CONTACT is scoped to the authenticated identity (RFC 7296 §2.4):
//! one responder connection serving two clients keeps the other client's SA
//! when one of them restarts.

use ike_lite::proposal::{parse_esp_proposals, parse_ike_proposals};
use ike_lite::{Config, DownReason, Endpoint, Event, Identity, PeerConfig, Psk};
use std::net::SocketAddr;
use std::time::Instant;

const RESPONDER: &str = "198.51.100.2:500";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn client(local: &str, id: &str) -> (Endpoint, ike_lite::ConnId) {
    let mut p = PeerConfig::new(
        addr(local),
        addr(RESPONDER),
        Identity::Fqdn(id.into()),
        Psk::new(b"shared-psk-for-every-client"),
    );
    p.ike_proposals = parse_ike_proposals("aes128gcm16-prfsha256-ecp256").unwrap();
    p.esp_proposals = parse_esp_proposals("aes128gcm16").unwrap();
    let mut ep = Endpoint::new(Config::default());
    let conn = ep.add_peer(p);
    (ep, conn)
}

/// Delivers datagrams between the responder (index 0) and the clients until
/// the network is quiet.
fn pump(now: Instant, eps: &mut [&mut Endpoint], addrs: &[SocketAddr], events: &mut [Vec<Event>]) {
    for _ in 0..1000 {
        let mut moved = false;
        for i in 0..eps.len() {
            while let Some(t) = eps[i].poll_transmit() {
                moved = true;
                if t.payload == [0xff] {
                    continue;
                }
                let to = addrs
                    .iter()
                    .position(|a| a.ip() == t.dst.ip())
                    .expect("datagram to a known endpoint");
                let _ = eps[to].handle_datagram(now, t.dst, t.src, &t.payload);
            }
            while let Some(e) = eps[i].poll_event() {
                events[i].push(e);
            }
        }
        if !moved {
            return;
        }
    }
    panic!("message storm");
}

#[test]
fn initial_contact_drops_only_the_restarting_identity() {
    let now = Instant::now();
    // One wildcard connection on the responder: any address, any identity.
    let mut rp = PeerConfig::new(
        addr(RESPONDER),
        addr("0.0.0.0:500"),
        Identity::Fqdn("vgw.example".into()),
        Psk::new(b"shared-psk-for-every-client"),
    );
    rp.ike_proposals = parse_ike_proposals("aes128gcm16-prfsha256-ecp256").unwrap();
    rp.esp_proposals = parse_esp_proposals("aes128gcm16").unwrap();
    let mut resp = Endpoint::new(Config::default());
    let rconn = resp.add_peer(rp);

    let (mut c1, c1conn) = client("192.0.2.1:500", "site1.example");
    let (mut c2, c2conn) = client("192.0.2.3:500", "site2.example");
    let addrs = [
        addr(RESPONDER),
        addr("192.0.2.1:500"),
        addr("192.0.2.3:500"),
    ];
    let mut events = vec![Vec::new(), Vec::new(), Vec::new()];

    c1.initiate(now, c1conn).unwrap();
    c2.initiate(now, c2conn).unwrap();
    pump(now, &mut [&mut resp, &mut c1, &mut c2], &addrs, &mut events);
    assert_eq!(resp.ike_sa_count(), 2, "both clients established");

    // Client 1 restarts, forgets its SA and connects again with INITIAL_CONTACT.
    let (mut c1b, c1bconn) = client("192.0.2.1:500", "site1.example");
    c1b.initiate(now, c1bconn).unwrap();
    events[0].clear();
    pump(
        now,
        &mut [&mut resp, &mut c1b, &mut c2],
        &addrs,
        &mut events,
    );

    let dropped = events[0]
        .iter()
        .filter(|e| {
            matches!(e, Event::IkeSaDown { conn, reason: DownReason::InitialContact } if *conn == rconn)
        })
        .count();
    assert_eq!(dropped, 1, "exactly the stale SA of site1 goes");
    assert_eq!(
        resp.ike_sa_count(),
        2,
        "site2's SA survives, site1's new SA is up"
    );
    assert!(c2.ike_spis(c2conn).is_some(), "site2 still has its IKE SA");
    drop(c1);
}
