//! IKEv2 PSK handshakes per second on the responder.
//!
//! Each iteration is one complete IKE_SA_INIT + IKE_AUTH (with the first
//! Child SA) between a fresh initiator [`Endpoint`](ike_lite::Endpoint) and
//! one long-lived responder endpoint, over an in-memory network with a
//! virtual clock. Only the responder's `handle_datagram` / `poll_transmit` /
//! `poll_event` calls are timed (`iter_custom`), so the initiator's key
//! exchange does not count. The responder serves 256 configured clients in
//! rotation, so it holds up to 256 established IKE SAs while measured.
//!
//! The `ike_responder_parts` group times the responder's cryptographic
//! steps one by one, to see what dominates a handshake.
//!
//! Run: `cargo bench -p ipsec-benches --bench ike_handshake`

mod ike_net;

use std::cell::RefCell;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use ike_lite::crypto::{
    child_keymat, psk_auth, sk_open, sk_seal, DhGroup, IkeSaKeys, KeyExchange, PrfId,
};
use ike_lite::message::{Message, HEADER_LEN};
use ipsec_core::crypto::Suite;

const CLIENTS: usize = 256;

const CASES: [(&str, &str); 3] = [
    ("ecp256", "aes128gcm16-prfsha256-ecp256"),
    ("modp2048", "aes128gcm16-prfsha256-modp2048"),
    ("curve25519", "aes128gcm16-prfsha256-curve25519"),
];

/// Totals over every timed handshake of a case (warm-up included).
#[derive(Default)]
struct Totals {
    handshakes: u64,
    responder: Duration,
    sizes: [usize; 4],
}

fn handshakes(c: &mut Criterion, totals: &mut [Totals]) {
    let mut g = c.benchmark_group("ike_handshake_responder");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Elements(1));
    for ((name, ike), tot) in CASES.iter().zip(totals.iter_mut()) {
        let resp = RefCell::new(ike_net::responder(CLIENTS, ike));
        let clock = Instant::now();
        let mut n = 0usize;
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_custom(|iters| {
                let mut resp = resp.borrow_mut();
                let mut t = Duration::ZERO;
                for _ in 0..iters {
                    let (mut init, conn) = ike_net::initiator(n % CLIENTS, ike);
                    let now = clock + Duration::from_millis(n as u64);
                    let h = ike_net::handshake(&mut resp, &mut init, conn, now);
                    t += h.responder_time;
                    tot.sizes = h.sizes;
                    n += 1;
                }
                tot.handshakes += iters;
                tot.responder += t;
                t
            })
        });
        assert!(resp.borrow().ike_sa_count() <= CLIENTS);
    }
    g.finish();
}

/// The responder's cryptographic work in one handshake, step by step.
fn parts(c: &mut Criterion) {
    let mut g = c.benchmark_group("ike_responder_parts");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_secs(1));
    for (name, group) in [
        ("ecp256", DhGroup::ECP_256),
        ("modp2048", DhGroup::MODP_2048),
        ("curve25519", DhGroup::CURVE25519),
    ] {
        let peer = KeyExchange::generate(group).expect("peer key");
        let ours = KeyExchange::generate(group).expect("our key");
        g.bench_function(BenchmarkId::new("kex_generate", name), |b| {
            b.iter(|| KeyExchange::generate(group).expect("generate"))
        });
        g.bench_function(BenchmarkId::new("kex_agree", name), |b| {
            b.iter(|| ours.agree(black_box(peer.public_value())).expect("agree"))
        });
    }

    let prf = PrfId::HMAC_SHA2_256;
    let suite = Suite::AES128_GCM16;
    let (ni, nr, g_ir) = ([1u8; 32], [2u8; 32], [3u8; 32]);
    let (spi_i, spi_r) = ([4u8; 8], [5u8; 8]);
    g.bench_function("ike_keys_derive_and_ciphers", |b| {
        b.iter(|| {
            let k = IkeSaKeys::derive(prf, suite, &ni, &nr, black_box(&g_ir), spi_i, spi_r)
                .expect("derive");
            k.ciphers(false).expect("ciphers")
        })
    });
    let keys = IkeSaKeys::derive(prf, suite, &ni, &nr, &g_ir, spi_i, spi_r).expect("derive");
    // An IKE_SA_INIT message of ECP-256 size is ~300 bytes.
    let real_message = vec![7u8; 300];
    g.bench_function("psk_auth", |b| {
        b.iter(|| {
            psk_auth(
                prf,
                b"bench-pre-shared-key-0123456789",
                black_box(&real_message),
                &nr,
                keys.sk_p_own(false),
                b"\x02\0\0\0client-0.example",
            )
            .expect("auth")
        })
    });
    g.bench_function("child_keymat", |b| {
        b.iter(|| child_keymat(prf, &keys.sk_d, None, black_box(&ni), &nr, suite).expect("keymat"))
    });
    let (out, inp) = keys.ciphers(false).expect("ciphers");
    let (peer_out, _) = keys.ciphers(true).expect("ciphers");
    // An IKE_AUTH request carries ~250 bytes of inner payloads.
    let mut request = vec![0u8; HEADER_LEN];
    request.extend_from_slice(&[35, 0, 0, 0]);
    request.extend_from_slice(&[0xaa; 250]);
    sk_seal(peer_out.as_ref(), &mut request, HEADER_LEN, 1).expect("seal");
    g.bench_function("sk_open_request_and_seal_response", |b| {
        b.iter(|| {
            let mut m = request.clone();
            sk_open(inp.as_ref(), &mut m, HEADER_LEN, 4).expect("open");
            let mut r = vec![0u8; HEADER_LEN];
            r.extend_from_slice(&[36, 0, 0, 0]);
            r.extend_from_slice(&m[HEADER_LEN + 12..HEADER_LEN + 12 + 200]);
            sk_seal(out.as_ref(), &mut r, HEADER_LEN, 1).expect("seal");
            r
        })
    });
    // Parsing an IKE_SA_INIT request as the responder does.
    let (mut init, conn) = ike_net::initiator(0, CASES[0].1);
    init.initiate(Instant::now(), conn).expect("initiate");
    let req = init.poll_transmit().expect("IKE_SA_INIT").payload;
    g.bench_function("parse_ike_sa_init_ecp256", |b| {
        b.iter(|| Message::parse(black_box(&req)).expect("parse"))
    });
    g.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let mut totals: Vec<Totals> = CASES.iter().map(|_| Totals::default()).collect();
    handshakes(&mut c, &mut totals);
    parts(&mut c);
    c.final_summary();
    println!("\nIKEv2 PSK handshakes on the responder (IKE_SA_INIT + IKE_AUTH + first Child SA),");
    println!("responder CPU only, one thread, mean over all timed handshakes incl. warm-up:");
    println!(
        "{:<12} {:>10} {:>14} {:>16}  datagram bytes (init req/resp, auth req/resp)",
        "group", "handshakes", "us/handshake", "handshakes/s/core"
    );
    for ((name, _), t) in CASES.iter().zip(&totals) {
        if t.handshakes == 0 {
            continue;
        }
        let per = t.responder.as_secs_f64() / t.handshakes as f64;
        println!(
            "{:<12} {:>10} {:>14.1} {:>16.0}  {:?}",
            name,
            t.handshakes,
            per * 1e6,
            1.0 / per,
            t.sizes
        );
    }
}
