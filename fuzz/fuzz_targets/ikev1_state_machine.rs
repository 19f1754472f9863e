#![no_main]
//! Two IKEv1 endpoints (A initiates, B responds; ECP-256 keeps the genuine
//! exchange cheap) run the genuine exchange
//! for a number of messages chosen by the input, then both are fed
//! arbitrary datagrams, genuine ones with a byte flipped, and clock jumps:
//! main mode at every step, quick mode, informational exchanges. Nothing
//! may panic.
//!
//! Input: `[steps][records...]`, a record being `[flags][len u16][bytes]`.
//! flags bit 0: to B (else A); bit 1: on port 4500; bit 2: write the live
//! cookies over the first 16 bytes; bit 3: take genuine message
//! `bytes[0]` of the exchange instead and XOR `bytes[2]` into its byte
//! `bytes[1]`; bits 4-7: then advance the clock by that many seconds x 4.

use ike_lite::v1::Endpoint;
use ike_lite::{Config, Identity, PeerConfig, Psk, Transmit};
use libfuzzer_sys::fuzz_target;
use rand_core::{CryptoRng, RngCore};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

struct Rng(u64);
impl RngCore for Rng {
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn fill_bytes(&mut self, d: &mut [u8]) {
        for c in d.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }
    fn try_fill_bytes(&mut self, d: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(d);
        Ok(())
    }
}
impl CryptoRng for Rng {}

fn peer(l: &str, r: &str) -> PeerConfig {
    let la: SocketAddr = l.parse().unwrap();
    let mut p = PeerConfig::new(
        la,
        r.parse().unwrap(),
        Identity::from_ip(la.ip()),
        Psk::new(&b"k"[..]),
    );
    p.ike_proposals = ike_lite::proposal::parse_ike_proposals("aes128-sha256-ecp256").unwrap();
    p.esp_proposals = ike_lite::proposal::parse_esp_proposals("aes128-sha1-ecp256").unwrap();
    p.dpd_delay = Some(Duration::from_secs(10));
    p
}

fuzz_target!(|data: &[u8]| {
    let Some((&steps, mut rest)) = data.split_first() else {
        return;
    };
    let (a_addr, b_addr) = ("192.0.2.1:500", "198.51.100.2:500");
    let mut a = Endpoint::with_rng(Config::default(), Box::new(Rng(1)));
    let mut b = Endpoint::with_rng(Config::default(), Box::new(Rng(2)));
    let conn = a.add_peer(peer(a_addr, b_addr));
    b.add_peer(peer(b_addr, a_addr));
    let mut now = Instant::now();
    a.initiate(now, conn).expect("initiates");
    let mut genuine: Vec<(bool, Transmit)> = Vec::new();
    // The genuine exchange, up to `steps` messages.
    for _ in 0..(steps % 16) {
        let (to_b, t) = match a.poll_transmit() {
            Some(t) => (true, t),
            None => match b.poll_transmit() {
                Some(t) => (false, t),
                None => break,
            },
        };
        let ep = if to_b { &mut b } else { &mut a };
        let _ = ep.handle_datagram(now, t.dst, t.src, &t.payload);
        genuine.push((to_b, t));
    }
    let cookies: Vec<u8> = genuine
        .iter()
        .rev()
        .find_map(|(_, t)| {
            let p = if t.non_esp_marker {
                &t.payload[4..]
            } else {
                &t.payload[..]
            };
            p.get(..16).map(<[u8]>::to_vec)
        })
        .unwrap_or_else(|| vec![0; 16]);
    while rest.len() >= 3 {
        let flags = rest[0];
        let len = usize::from(u16::from_be_bytes([rest[1], rest[2]])).min(rest.len() - 3);
        let bytes = &rest[3..3 + len];
        rest = &rest[3 + len..];
        let to_b = flags & 1 != 0;
        let natt = flags & 2 != 0;
        let mut dgram = if flags & 8 != 0 && !genuine.is_empty() && bytes.len() >= 3 {
            let (_, t) = &genuine[bytes[0] as usize % genuine.len()];
            let mut p = t.payload.clone();
            let i = bytes[1] as usize % p.len().max(1);
            if let Some(x) = p.get_mut(i) {
                *x ^= bytes[2];
            }
            p
        } else {
            let mut p = if natt { vec![0u8; 4] } else { Vec::new() };
            p.extend_from_slice(bytes);
            p
        };
        if flags & 4 != 0 {
            let off = if natt { 4 } else { 0 };
            if dgram.len() >= off + 16 {
                dgram[off..off + 16].copy_from_slice(&cookies);
            }
        }
        let port = if natt { 4500 } else { 500 };
        let (ep, local, remote) = if to_b {
            (&mut b, b_addr, a_addr)
        } else {
            (&mut a, a_addr, b_addr)
        };
        let mut local: SocketAddr = local.parse().unwrap();
        local.set_port(port);
        let mut remote: SocketAddr = remote.parse().unwrap();
        remote.set_port(port);
        let _ = ep.handle_datagram(now, local, remote, &dgram);
        if flags >> 4 != 0 {
            now += Duration::from_secs(u64::from(flags >> 4) * 4);
            a.handle_timeout(now);
            b.handle_timeout(now);
        }
        // Let the endpoints talk to each other too.
        for _ in 0..8 {
            let mut moved = false;
            while let Some(t) = a.poll_transmit() {
                let _ = b.handle_datagram(now, t.dst, t.src, &t.payload);
                moved = true;
            }
            while let Some(t) = b.poll_transmit() {
                let _ = a.handle_datagram(now, t.dst, t.src, &t.payload);
                moved = true;
            }
            if !moved {
                break;
            }
        }
        while a.poll_event().is_some() {}
        while b.poll_event().is_some() {}
        let _ = (a.poll_timeout(), b.poll_timeout());
    }
});
