//! SAD lookup cost with 1, 1,000 and 100,000 inbound SAs: the lookup of a
//! hot set of 64 SPIs (the realistic case: few tunnels carry the traffic)
//! and of SPIs spread uniformly over the whole table (cache misses grow
//! with the table; this shows the memory-bound worst case). Outbound lookup
//! by policy id for the same sizes.
//!
//! After criterion, an interleaved report measures the same hot-set lookups
//! for all sizes in alternating short chunks (all three tables alive), so
//! the sizes are compared under the same machine load: medians per size
//! and the median per-round ratio to the 1-SA case.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ipsec_core::crypto::Suite;
use ipsec_core::sa::{InboundSa, OutboundSa, SaParams, SecretBytes, TunnelEndpoints};
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
            SecretBytes::new(vec![7; suite.enc_key_len().expect("suite")]),
            SecretBytes::default(),
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

/// The hot set: 64 SPIs (fewer distinct ones only if there are fewer SAs).
fn hot_set(spis: &[u32]) -> Vec<u32> {
    (0..64).map(|i| spis[(i * 7919) % spis.len()]).collect()
}

fn lookups(c: &mut Criterion) {
    let mut g = c.benchmark_group("sad");
    for n in [1usize, 1_000, 100_000] {
        let (sad, spis) = sad_with(n);
        let hot = hot_set(&spis);
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
    flat_report();
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// Mean ns per call of `f` over about `budget`.
#[inline(always)]
fn ns_per_op<F: FnMut()>(f: &mut F, budget: Duration) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        for _ in 0..256 {
            f();
        }
        n += 256;
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

/// Runs the three closures (one per table size) in interleaved rounds and
/// prints medians and the median per-round ratios to the first.
fn report_row<F: FnMut()>(name: &str, mut fs: [F; 3], rounds: usize, chunk: Duration) {
    for f in fs.iter_mut() {
        for _ in 0..10_000 {
            f();
        }
    }
    let mut t: Vec<Vec<f64>> = (0..3).map(|_| Vec::with_capacity(rounds)).collect();
    for r in 0..rounds {
        for j in 0..3 {
            let k = (r + j) % 3;
            t[k].push(ns_per_op(&mut fs[k], chunk));
        }
    }
    let ratio = |a: &[f64], b: &[f64]| {
        let mut v: Vec<f64> = a.iter().zip(b).map(|(x, y)| x / y).collect();
        median(&mut v)
    };
    let (r1, r2) = (ratio(&t[1], &t[0]), ratio(&t[2], &t[0]));
    let m: Vec<f64> = t.iter_mut().map(|v| median(v)).collect();
    println!(
        "{:<16} {:>10.2} {:>10.2} {:>10.2} {:>11.0}% {:>11.0}%",
        name,
        m[0],
        m[1],
        m[2],
        100.0 * r1,
        100.0 * r2
    );
}

fn inbound_hot<'a>(sad: &'a Sad, spis: &[u32]) -> impl FnMut() + 'a {
    let hot = hot_set(spis);
    let mut i = 0usize;
    move || {
        i = (i + 1) & 63;
        black_box(sad.inbound(black_box(hot[i])).is_some());
    }
}

fn outbound_hot<'a>(sad: &'a Sad, spis: &[u32]) -> impl FnMut() + 'a {
    let n = spis.len();
    let mut i = 0usize;
    move || {
        i = (i + 1) & 63;
        let p = PolicyId(black_box(((i * 7919) % n) as u32));
        black_box(sad.outbound(p).is_some());
    }
}

fn inbound_miss(sad: &Sad) -> impl FnMut() + '_ {
    let mut i = 0usize;
    move || {
        i = i.wrapping_add(1);
        black_box(sad.inbound(black_box(i as u32 | 0x8000_0000)).is_some());
    }
}

/// Hot-set inbound and outbound lookups and misses for every size,
/// interleaved in rounds of short chunks.
fn flat_report() {
    let rounds: usize = std::env::var("SAD_REPORT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let chunk = Duration::from_micros(200);
    let t: Vec<(Sad, Vec<u32>)> = [1usize, 1_000, 100_000].map(sad_with).into();
    println!();
    println!(
        "{:<16} {:>10} {:>10} {:>10} {:>12} {:>12}",
        "lookup", "1 SA", "1,000", "100,000", "1,000 / 1", "100,000 / 1"
    );
    let row = |i: usize| (&t[i].0, &t[i].1[..]);
    report_row(
        "inbound_hot64",
        [0, 1, 2].map(|i| inbound_hot(row(i).0, row(i).1)),
        rounds,
        chunk,
    );
    report_row(
        "outbound_hot64",
        [0, 1, 2].map(|i| outbound_hot(row(i).0, row(i).1)),
        rounds,
        chunk,
    );
    report_row(
        "inbound_miss",
        [0, 1, 2].map(|i| inbound_miss(row(i).0)),
        rounds,
        chunk,
    );
    println!(
        "(ns per lookup including the loop, medians of {rounds} interleaved rounds of {} µs; \
         ratios: medians of per-round ratios)",
        chunk.as_micros()
    );
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
