//! IKEv1 PSK handshakes per second on the responder, beside the IKEv2
//! `ike_handshake` bench.
//!
//! Each iteration is one complete main mode (6 messages) + quick mode (3
//! messages, PFS with the phase-1 group) between a fresh initiator
//! `ike_lite::v1::Endpoint` and one long-lived responder endpoint, over an
//! in-memory exchange with a virtual clock. Only the responder's
//! `handle_datagram` / `poll_*` calls are timed (`iter_custom`). The
//! responder serves 256 clients at distinct addresses (IKEv1 with PSK picks
//! the connection by the peer's address) and holds up to 256 ISAKMP SAs.
//!
//! Run: `cargo bench -p ipsec-benches --bench ikev1_handshake`

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use ike_lite::proposal::{parse_esp_proposals, parse_ike_proposals};
use ike_lite::v1::Endpoint;
use ike_lite::{Config, ConnId, Event, Identity, PeerConfig, Psk};

const CLIENTS: usize = 256;
const RESPONDER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2)), 500);
const PSK: &[u8] = b"bench-pre-shared-key-0123456789";

/// (name, ike=, esp=): the AWS Generic suite and a stronger one.
const CASES: [(&str, &str, &str); 2] = [
    (
        "aes128-sha1-modp1024",
        "aes128-sha1-modp1024",
        "aes128-sha1-modp1024",
    ),
    (
        "aes256-sha256-modp2048",
        "aes256-sha256-modp2048",
        "aes256-sha256-modp2048",
    ),
];

fn client(i: usize) -> SocketAddr {
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(10, 1, (i / 250) as u8, (i % 250) as u8 + 1)),
        500,
    )
}

fn peer(local: SocketAddr, remote: SocketAddr, ike: &str, esp: &str) -> PeerConfig {
    let mut p = PeerConfig::new(local, remote, Identity::from_ip(local.ip()), Psk::new(PSK));
    p.remote_id = Some(Identity::from_ip(remote.ip()));
    p.ike_proposals = parse_ike_proposals(ike).expect("IKE proposal");
    p.esp_proposals = parse_esp_proposals(esp).expect("ESP proposal");
    p.local_ts = vec![format!("{}/32", local.ip()).parse().expect("ts")];
    p.remote_ts = vec![format!("{}/32", remote.ip()).parse().expect("ts")];
    p
}

/// One handshake; returns the responder's time and the datagram count.
fn handshake(
    resp: &mut Endpoint,
    i: usize,
    ike: &str,
    esp: &str,
    now: Instant,
) -> (Duration, usize) {
    let mut init = Endpoint::new(Config::default());
    let conn: ConnId = init.add_peer(peer(client(i), RESPONDER, ike, esp));
    init.initiate(now, conn).expect("initiate");
    let (mut timed, mut datagrams, mut children) = (Duration::ZERO, 0, 0);
    while let Some(t) = init.poll_transmit() {
        datagrams += 1;
        let t0 = Instant::now();
        let r = resp.handle_datagram(now, t.dst, t.src, &t.payload);
        let answer = resp.poll_transmit();
        while let Some(e) = resp.poll_event() {
            children += usize::from(matches!(e, Event::ChildSaEstablished(_)));
        }
        timed += t0.elapsed();
        r.expect("responder accepts");
        if let Some(a) = answer {
            datagrams += 1;
            init.handle_datagram(now, a.dst, a.src, &a.payload)
                .expect("initiator accepts");
        }
    }
    assert_eq!(children, 1, "responder installed the IPsec SA");
    (timed, datagrams)
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let mut g = c.benchmark_group("ikev1_handshake_responder");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Elements(1));
    let mut totals = Vec::new();
    for (name, ike, esp) in CASES {
        let resp = RefCell::new(Endpoint::new(Config::default()));
        for i in 0..CLIENTS {
            resp.borrow_mut()
                .add_peer(peer(RESPONDER, client(i), ike, esp));
        }
        let clock = Instant::now();
        let (mut n, mut total, mut datagrams) = (0usize, Duration::ZERO, 0);
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_custom(|iters| {
                let mut resp = resp.borrow_mut();
                let mut t = Duration::ZERO;
                for _ in 0..iters {
                    let now = clock + Duration::from_millis(n as u64);
                    let (d, k) = handshake(&mut resp, n % CLIENTS, ike, esp, now);
                    t += d;
                    datagrams = k;
                    n += 1;
                }
                total += t;
                t
            })
        });
        assert!(resp.borrow().ike_sa_count() <= CLIENTS);
        totals.push((name, n, total, datagrams));
    }
    g.finish();
    c.final_summary();
    println!("\nIKEv1 PSK handshakes on the responder (main mode + quick mode with PFS),");
    println!("responder CPU only, one thread, mean over all timed handshakes incl. warm-up:");
    for (name, n, total, datagrams) in totals {
        if n == 0 {
            continue;
        }
        let per = total.as_secs_f64() / n as f64;
        println!(
            "{name:<24} {n:>8} handshakes {:>10.1} us/handshake {:>8.0}/s/core  {datagrams} datagrams",
            per * 1e6,
            1.0 / per
        );
    }
}
