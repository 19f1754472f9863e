#![no_main]
//! An initiator that has sent IKE_SA_INIT, fed arbitrary responses. The
//! first 8 bytes of every response are replaced by the initiator's SPI so
//! that input reaches the SA's state machine.

use ike_lite::{Config, Endpoint, Identity, PeerConfig, Psk};
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let mut ep = Endpoint::new(Config::default());
    let local = "192.0.2.1:500".parse().unwrap();
    let remote = "198.51.100.2:500".parse().unwrap();
    let conn = ep.add_peer(PeerConfig::new(
        local,
        remote,
        Identity::Fqdn("a".into()),
        Psk::new(&b"k"[..]),
    ));
    let mut now = Instant::now();
    ep.initiate(now, conn).expect("default config initiates");
    let first = ep.poll_transmit().expect("IKE_SA_INIT sent");
    let spi: [u8; 8] = first.payload[..8].try_into().unwrap();
    let mut rest = data;
    while rest.len() >= 3 {
        let flags = rest[0];
        let len = usize::from(u16::from_be_bytes([rest[1], rest[2]])).min(rest.len() - 3);
        let mut dgram = rest[3..3 + len].to_vec();
        rest = &rest[3 + len..];
        if dgram.len() >= 8 {
            dgram[..8].copy_from_slice(&spi);
        }
        let _ = ep.handle_datagram(now, local, remote, &dgram);
        if flags & 1 != 0 {
            now += Duration::from_millis(u64::from(flags) * 100);
            ep.handle_timeout(now);
        }
        while ep.poll_transmit().is_some() {}
        while ep.poll_event().is_some() {}
    }
});
