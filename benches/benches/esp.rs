//! ESP per-packet cost through the SA (tunnel-mode encapsulation with
//! padding/trailer, decapsulation with replay window, trailer, inner-packet
//! and selector checks) next to the raw `Cipher` seal/open of the same suite
//! and size, in the same run. After criterion, an interleaved loop (SA and
//! raw measured in alternating short chunks) prints the SA-over-raw
//! overhead ratio for every case.
//!
//! The `datapath/` group measures the same per-packet work through the
//! `DataPath` facade (flow parse, SPD and SAD lookups, counters, events):
//! `outbound` and `out_in` (outbound, then inbound on the peer's data path
//! with one SPI lookup), AES-128-GCM.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ipsec_core::buf::PacketBuf;
use ipsec_core::crypto::{Cipher, Suite};
use ipsec_core::datapath::{DataPath, InboundAction, OutboundAction, TunnelId};
use ipsec_core::sa::{InboundSa, OutboundSa, SaParams, SecretBytes, TunnelEndpoints};
use ipsec_core::selector::TrafficSelector;
use ipsec_core::spd::{Action, Policy, PolicyId};

const SIZES: [usize; 4] = [64, 512, 1420, 8192];
const HEAD: usize = 128;

fn params(suite: Suite) -> SaParams {
    let mut p = SaParams::new(
        0x1000_0001,
        suite,
        SecretBytes::new(vec![0x11; suite.enc_key_len().expect("suite")]),
        SecretBytes::new(vec![0x22; suite.integ_key_len()]),
        TunnelEndpoints {
            local: "192.0.2.1".parse().expect("addr"),
            remote: "192.0.2.2".parse().expect("addr"),
        },
    );
    p.esn = true;
    p.local_ts = vec![TrafficSelector::any_v4()];
    p.remote_ts = vec![TrafficSelector::any_v4()];
    p
}

/// A valid IPv4/UDP packet of exactly `len` bytes.
fn inner(len: usize) -> Vec<u8> {
    let mut v = vec![0x5au8; len];
    v[..20].copy_from_slice(&[
        0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 10, 1, 0, 1, 10, 2, 0, 1,
    ]);
    v[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    v[20..24].copy_from_slice(&[0x13, 0x88, 0, 53]);
    v
}

struct Rig {
    out: OutboundSa,
    inb: InboundSa,
    buf: Vec<u8>,
    pkt: Vec<u8>,
}

impl Rig {
    fn new(suite: Suite, len: usize) -> Rig {
        let now = Instant::now();
        let p = params(suite);
        Rig {
            out: OutboundSa::new(&p, now).expect("sa"),
            inb: InboundSa::new(&p, now).expect("sa"),
            buf: vec![0u8; HEAD + len + 64],
            pkt: inner(len),
        }
    }

    fn new_loaded(suite: Suite, len: usize) -> Rig {
        let mut r = Rig::new(suite, len);
        r.buf[HEAD..HEAD + len].copy_from_slice(&r.pkt);
        r
    }

    /// Encapsulates in place. Only the 20-byte IPv4 header is restored
    /// between iterations (encapsulation reads just the version nibble; the
    /// raw seal likewise re-encrypts its own output), so no per-iteration
    /// copy of the payload is charged to the SA.
    #[inline]
    fn encap(&mut self, now: Instant) -> std::ops::Range<usize> {
        let n = self.pkt.len();
        self.buf[HEAD..HEAD + 20].copy_from_slice(&self.pkt[..20]);
        self.out
            .encapsulate(now, &mut self.buf, HEAD..HEAD + n)
            .expect("encap")
            .esp
    }

    /// Encapsulates and decapsulates in place; decapsulation leaves the
    /// original inner packet exactly where it was, ready for the next round.
    #[inline]
    fn round_trip(&mut self, now: Instant) {
        let n = self.pkt.len();
        let esp = self
            .out
            .encapsulate(now, &mut self.buf, HEAD..HEAD + n)
            .expect("encap")
            .esp;
        let d = self
            .inb
            .decapsulate(now, &mut self.buf, esp)
            .expect("decap");
        black_box(d.inner);
    }
}

/// Two data paths (sender, receiver) with one protect policy and one SA
/// each way, and a buffer reused in place.
struct DpRig {
    sender: DataPath,
    receiver: DataPath,
    buf: PacketBuf,
    pkt: Vec<u8>,
}

impl DpRig {
    fn new(suite: Suite, len: usize) -> DpRig {
        let now = Instant::now();
        let p = params(suite);
        let mut sender = DataPath::default();
        sender
            .add_policy(Policy {
                id: PolicyId(1),
                tunnel: TunnelId::default(),
                priority: 100,
                local: TrafficSelector::any_v4(),
                remote: TrafficSelector::any_v4(),
                action: Action::Protect,
            })
            .expect("policy");
        sender
            .install_outbound(PolicyId(1), &p, now)
            .expect("out sa");
        let mut receiver = DataPath::default();
        receiver.install_inbound(&p, now).expect("in sa");
        let pkt = inner(len);
        let mut buf = PacketBuf::with_capacity(HEAD, len, 64);
        buf.load(HEAD, &pkt).expect("load");
        DpRig {
            sender,
            receiver,
            buf,
            pkt,
        }
    }

    /// Outbound in place. Only the IPv4 and UDP headers are restored between
    /// iterations (the flow parse and the encapsulation read nothing else).
    #[inline]
    fn outbound(&mut self, now: Instant) -> OutboundAction {
        let n = self.pkt.len();
        self.buf.storage_mut()[HEAD..HEAD + 28].copy_from_slice(&self.pkt[..28]);
        self.buf.set_range(HEAD..HEAD + n).expect("range");
        self.sender
            .process_outbound(TunnelId::default(), now, &mut self.buf)
    }

    /// Outbound then inbound; decapsulation leaves the inner packet where
    /// it was, ready for the next round.
    #[inline]
    fn round_trip(&mut self, now: Instant) {
        let a = self
            .sender
            .process_outbound(TunnelId::default(), now, &mut self.buf);
        debug_assert!(matches!(a, OutboundAction::Encapsulated { .. }));
        let b = self.receiver.process_inbound_esp(now, &mut self.buf);
        debug_assert!(matches!(b, InboundAction::Inner { .. }));
        black_box(b);
    }
}

fn datapath(c: &mut Criterion) {
    let now = Instant::now();
    let suite = Suite::AES128_GCM16;
    let mut g = c.benchmark_group(format!("datapath/{}", suite.name()));
    for len in [64, 1420] {
        g.throughput(Throughput::Bytes(len as u64));
        let mut rig = DpRig::new(suite, len);
        assert!(matches!(
            rig.outbound(now),
            OutboundAction::Encapsulated { .. }
        ));
        g.bench_function(BenchmarkId::new("outbound", len), |b| {
            b.iter(|| black_box(rig.outbound(now)))
        });
        let mut rig = DpRig::new(suite, len);
        rig.round_trip(now);
        assert_eq!(rig.buf.data(), &rig.pkt[..]);
        g.bench_function(BenchmarkId::new("out_in", len), |b| {
            b.iter(|| rig.round_trip(now))
        });
        assert_eq!(rig.receiver.inbound_stats().total_dropped(), 0);
    }
    g.finish();
}

struct Raw {
    c: Box<dyn Cipher>,
    iv: Vec<u8>,
    icv: Vec<u8>,
    payload: Vec<u8>,
    seq: u64,
}

impl Raw {
    fn new(suite: Suite, len: usize) -> Raw {
        let c = suite
            .cipher(
                &vec![0x11; suite.enc_key_len().expect("suite")],
                &vec![0x22; suite.integ_key_len()],
            )
            .expect("cipher");
        let bl = c.block_len().max(4);
        // Same payload length the SA seals: inner + padding + 2.
        let payload = vec![0x5a; (len + 2).div_ceil(bl) * bl];
        Raw {
            iv: vec![0; c.iv_len()],
            icv: vec![0; c.icv_len()],
            c,
            payload,
            seq: 0,
        }
    }

    #[inline]
    fn seal(&mut self) {
        self.seq += 1;
        let h = [0x10, 0, 0, 1, 0, 0, 0, 1];
        self.c
            .seal(
                &h,
                Some(0),
                self.seq,
                &mut self.iv,
                &mut self.payload,
                &mut self.icv,
            )
            .expect("seal");
    }

    #[inline]
    fn seal_open(&mut self) {
        self.seal();
        let h = [0x10, 0, 0, 1, 0, 0, 0, 1];
        self.c
            .open(
                &h,
                Some(0),
                &self.iv,
                black_box(&mut self.payload),
                &self.icv,
            )
            .expect("open");
    }
}

fn suites_under_test() -> Vec<Suite> {
    match std::env::var("ESP_BENCH_SUITES").as_deref() {
        Ok("all") | Err(_) => Suite::ALL.to_vec(),
        Ok(names) => names.split(',').filter_map(Suite::from_name).collect(),
    }
}

fn esp(c: &mut Criterion) {
    let now = Instant::now();
    for suite in suites_under_test() {
        let mut g = c.benchmark_group(format!("esp/{}", suite.name()));
        for len in SIZES {
            g.throughput(Throughput::Bytes(len as u64));
            let mut raw = Raw::new(suite, len);
            g.bench_function(BenchmarkId::new("raw_seal", len), |b| b.iter(|| raw.seal()));
            let mut rig = Rig::new_loaded(suite, len);
            g.bench_function(BenchmarkId::new("encap", len), |b| {
                b.iter(|| black_box(rig.encap(now)))
            });
            g.bench_function(BenchmarkId::new("raw_seal_open", len), |b| {
                b.iter(|| raw.seal_open())
            });
            let mut rig = Rig::new_loaded(suite, len);
            g.bench_function(BenchmarkId::new("encap_decap", len), |b| {
                b.iter(|| rig.round_trip(now))
            });
        }
        g.finish();
    }
    overhead_report(now);
}

/// Mean ns per call of `f` over a chunk of about `budget`.
fn ns_per_op(f: &mut dyn FnMut(), budget: Duration) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        for _ in 0..16 {
            f();
        }
        n += 16;
    }
    start.elapsed().as_nanos() as f64 / n as f64
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

/// Measures the closures in `fs` in `rounds` rounds of one short chunk
/// each, rotating their order every round, and returns per closure the
/// per-round ns per call. Chunks are shorter than a scheduler time slice,
/// so on a shared machine most of them run undisturbed and the preempted
/// ones land in the slow tail; interleaving exposes every closure to the
/// same load over time.
fn interleaved(fs: &mut [&mut dyn FnMut()], rounds: usize, chunk: Duration) -> Vec<Vec<f64>> {
    for f in fs.iter_mut() {
        for _ in 0..1000 {
            f();
        }
    }
    let k = fs.len();
    let mut out: Vec<Vec<f64>> = (0..k).map(|_| Vec::with_capacity(rounds)).collect();
    for r in 0..rounds {
        for j in 0..k {
            let i = (r + j) % k;
            out[i].push(ns_per_op(&mut *fs[i], chunk));
        }
    }
    out
}

/// Prints a table: ns per packet for encap, encap+decap, raw seal and raw
/// seal+open (medians over the rounds), the derived decap cost, and
/// throughput ratios SA / raw: the median over the rounds of the ratio of
/// the two chunks of one round, which ran at most a few hundred
/// microseconds apart and so under nearly the same machine load.
fn overhead_report(now: Instant) {
    let rounds: usize = std::env::var("ESP_REPORT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let chunk = Duration::from_micros(200);
    println!();
    println!(
        "{:<34} {:>5} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8}",
        "suite", "bytes", "encap", "decap*", "raw_seal", "e+d", "raw_s+o", "enc/raw", "e+d/raw"
    );
    for suite in suites_under_test() {
        for len in SIZES {
            let mut raw1 = Raw::new(suite, len);
            let mut raw2 = Raw::new(suite, len);
            let mut rig1 = Rig::new_loaded(suite, len);
            let mut rig2 = Rig::new_loaded(suite, len);
            let mut t = interleaved(
                &mut [
                    &mut || raw1.seal(),
                    &mut || {
                        black_box(rig1.encap(now));
                    },
                    &mut || raw2.seal_open(),
                    &mut || rig2.round_trip(now),
                ],
                rounds,
                chunk,
            );
            let ratio = |a: &[f64], b: &[f64]| {
                let mut r: Vec<f64> = a.iter().zip(b).map(|(x, y)| x / y).collect();
                median(&mut r)
            };
            let (enc_ratio, ed_ratio) = (ratio(&t[0], &t[1]), ratio(&t[2], &t[3]));
            let [rs, e, rso, ed] = [0, 1, 2, 3].map(|i| median(&mut t[i]));
            println!(
                "{:<34} {:>5} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>7.1}% {:>7.1}%",
                suite.name(),
                len,
                e,
                ed - e,
                rs,
                ed,
                rso,
                100.0 * enc_ratio,
                100.0 * ed_ratio
            );
        }
    }
    println!(
        "(ns per packet, medians of {rounds} interleaved rounds of {} µs; decap* = e+d - encap; \
         ratios are SA throughput / raw throughput, medians of per-round ratios)",
        chunk.as_micros()
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20);
    targets = datapath, esp
}
criterion_main!(benches);
