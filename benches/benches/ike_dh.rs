//! IKE key exchange cost per group: one `generate` plus one `agree`
//! (what each side spends per IKE_SA_INIT / CREATE_CHILD_SA with KE).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ike_lite::crypto::{DhGroup, KeyExchange};

fn dh(c: &mut Criterion) {
    let mut g = c.benchmark_group("ike_dh_generate_agree");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    for group in DhGroup::SUPPORTED {
        let peer = KeyExchange::generate(group).expect("peer key");
        g.bench_with_input(
            BenchmarkId::from_parameter(format!("{group:?}")),
            &peer,
            |b, peer| {
                b.iter(|| {
                    let ours = KeyExchange::generate(group).expect("generate");
                    ours.agree(peer.public_value()).expect("agree")
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, dh);
criterion_main!(benches);
