//! SAD lookup cost with 1, 1,000 and 100,000 inbound SAs: the lookup of a
//! hot set of 64 SPIs (the realistic case: few tunnels carry the traffic)
//! and of SPIs spread uniformly over the whole table (cache misses grow
//! with the table; this shows the memory-bound worst case). Outbound lookup
//! by policy id for the same sizes.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ipsec_core::crypto::Suite;
use ipsec_core::sa::{InboundSa, OutboundSa, SaParams, SecretKey, TunnelEndpoints};
use ipsec_core::sad::Sad;
use ipsec_core::spd::PolicyId;

fn sad_with(n: usize) -> (Sad, Vec<u32>) {
    let now = Instant::now();
    let mut sad = Sad::with_capacity(n, n);
    let mut spis = Vec::with_capacity(n);
    // SPIs as a receiver would pick them: pseudo-random 32-bit values.
    let mut x = 0x9e37_79b9u32;
    let suite = Suite::AES128_GCM16;
    while spis.len() < n {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        if x <= 255 || sad.inbound(x).is_some() {
            continue;
        }
        let mut p = SaParams::new(
            x,
            suite,
            SecretKey::new(vec![7; suite.enc_key_len().expect("suite")]),
            SecretKey::default(),
            TunnelEndpoints {
                local: "192.0.2.1".parse().expect("addr"),
                remote: "192.0.2.2".parse().expect("addr"),
            },
        );
        p.replay_window = 32;
        sad.install_inbound(Arc::new(InboundSa::new(&p, now).expect("sa")))
            .expect("unique");
        sad.install_outbound(
            PolicyId(spis.len() as u32),
            Arc::new(OutboundSa::new(&p, now).expect("sa")),
        );
        spis.push(x);
    }
    (sad, spis)
}

fn lookups(c: &mut Criterion) {
    let mut g = c.benchmark_group("sad");
    for n in [1usize, 1_000, 100_000] {
        let (sad, spis) = sad_with(n);
        let hot: Vec<u32> = (0..64).map(|i| spis[(i * 7919) % n]).collect();
        let spread: Vec<u32> = (0..4096)
            .map(|i| spis[(i * 2_654_435_761usize) % n])
            .collect();
        let mut i = 0usize;
        g.bench_function(BenchmarkId::new("inbound_hot64", n), |b| {
            b.iter(|| {
                i = (i + 1) & 63;
                black_box(sad.inbound(black_box(hot[i])).is_some())
            })
        });
        g.bench_function(BenchmarkId::new("inbound_spread", n), |b| {
            b.iter(|| {
                i = (i + 1) & 4095;
                black_box(sad.inbound(black_box(spread[i])).is_some())
            })
        });
        g.bench_function(BenchmarkId::new("inbound_miss", n), |b| {
            b.iter(|| {
                i = i.wrapping_add(1);
                black_box(sad.inbound(black_box(i as u32 | 0x8000_0000)).is_some())
            })
        });
        g.bench_function(BenchmarkId::new("outbound_hot64", n), |b| {
            b.iter(|| {
                i = (i + 1) & 63;
                black_box(
                    sad.outbound(PolicyId(black_box(((i * 7919) % n) as u32)))
                        .is_some(),
                )
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20);
    targets = lookups
}
criterion_main!(benches);
