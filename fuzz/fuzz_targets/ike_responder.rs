#![no_main]
//! A responder endpoint fed arbitrary datagrams (port 500 or 4500) with
//! clock jumps in between; it must never panic.

use ike_lite::{Config, Endpoint, FloodLimits, Identity, PeerConfig, Psk};
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    // Small flood limits, so that cookies, blocking and the cap are reached.
    let mut ep = Endpoint::new(Config {
        flood: FloodLimits {
            cookie_threshold: 2,
            cookie_threshold_ip: 1,
            block_threshold: 2,
            init_limit_half_open: 3,
            ..Default::default()
        },
        ..Default::default()
    });
    let local = "198.51.100.2:500".parse().unwrap();
    let local_natt = "198.51.100.2:4500".parse().unwrap();
    let remote = "192.0.2.1:500".parse().unwrap();
    let mut peer = PeerConfig::new(
        local,
        "0.0.0.0:500".parse().unwrap(),
        Identity::Fqdn("b".into()),
        Psk::new(&b"k"[..]),
    );
    peer.dpd_delay = Some(Duration::from_secs(5));
    ep.add_peer(peer);
    let mut now = Instant::now();
    // Records: [flags u8][len u16][bytes...]
    let mut rest = data;
    while rest.len() >= 3 {
        let flags = rest[0];
        let len = usize::from(u16::from_be_bytes([rest[1], rest[2]])).min(rest.len() - 3);
        let dgram = &rest[3..3 + len];
        rest = &rest[3 + len..];
        let to = if flags & 1 == 0 { local } else { local_natt };
        let _ = ep.handle_datagram(now, to, remote, dgram);
        if flags & 2 != 0 {
            now += Duration::from_secs(u64::from(flags >> 2));
            ep.handle_timeout(now);
        }
        while ep.poll_transmit().is_some() {}
        while ep.poll_event().is_some() {}
    }
});
