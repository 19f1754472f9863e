//! Cost per packet of tun-bridge's runtime against the number of configured
//! tunnels (1, 100, 10,000), for 64- and 1420-byte inner packets.
//!
//! The gateway state is modelled the way a tun-bridge process holds it: one
//! `DataPath` for all tunnels (tunnel `k` is `TunnelId(k)`, with its own SPD
//! of one protect policy, one outbound and one inbound AES-128-GCM SA), and
//! a `Vec` of tunnels indexed by the TUN's epoll token (outbound). Inbound,
//! the SAD's one SPI lookup finds the SA and names the tunnel (no second
//! SPI map). Each packet goes through the runtime's own per-packet
//! functions, `packet::forward::tun_to_esp` (MSS clamp, too-big check, the
//! tunnel's SPD lookup, encrypt) and `esp_to_tun` (SAD lookup, anti-replay,
//! decrypt, MSS clamp). Successive packets go to different
//! tunnels (a stride through all of them), the worst case for caches; with 1
//! tunnel every packet hits the same state; the `-hot64` cases send to 64
//! of the configured tunnels only. The timed part includes loading
//! the packet into the buffer (the runtime copies it out of the socket/TUN
//! read buffer too); inbound ciphertexts are produced by a peer data path
//! outside the timed part, 64 at a time (anti-replay forbids replaying one).
//!
//! After criterion's output a table of ns/packet and the ratio to the
//! 1-tunnel case is printed (from the criterion samples).

use std::collections::{BTreeMap, HashSet};
use std::hint::black_box;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion};
use ipsec_core::crypto::Suite;
use ipsec_core::datapath::{DataPath, DataPathConfig, InboundAction, OutboundAction, TunnelId};
use ipsec_core::sa::{SaParams, SecretBytes, TunnelEndpoints};
use ipsec_core::selector::TrafficSelector;
use ipsec_core::spd::{Action, Policy, PolicyId};
use ipsec_core::wire::Ipv4Packet;
use tun_bridge::packet::forward::{self as packet, esp_to_tun, tun_to_esp, TunVerdict, HEADROOM};
use tun_bridge::packet::mss::TunnelMtu;

const COUNTS: [usize; 3] = [1, 100, 10_000];
const SIZES: [usize; 2] = [64, 1420];
const BATCH: usize = 64;
const MTU: TunnelMtu = TunnelMtu {
    mtu: 1438,
    mss_v4: 1398,
    mss_v6: 1378,
};

/// What the runtime keeps per tunnel on the packet path (besides its
/// `TunnelId`, which is its index).
struct Tunnel {
    mtu: TunnelMtu,
    /// The inner packet source/destination of this tunnel's traffic.
    src: [u8; 4],
    dst: [u8; 4],
}

struct Gateway {
    dp: DataPath,
    tunnels: Vec<Tunnel>,
    /// The far ends of the tunnels (produce our inbound ciphertexts), one
    /// data path with the mirror of every tunnel.
    peer: DataPath,
}

fn tunnel_id(k: usize) -> TunnelId {
    TunnelId(u32::try_from(k).expect("tunnel count"))
}

fn endpoints(local: [u8; 4], remote: [u8; 4]) -> TunnelEndpoints {
    TunnelEndpoints {
        local: local.into(),
        remote: remote.into(),
    }
}

fn params(spi: u32, t: TunnelEndpoints, tunnel: TunnelId) -> SaParams {
    let suite = Suite::AES128_GCM16;
    let mut p = SaParams::new(
        spi,
        suite,
        SecretBytes::new(vec![spi as u8; suite.enc_key_len().expect("suite")]),
        SecretBytes::default(),
        t,
    );
    p.replay_window = 128;
    p.tunnel_id = tunnel;
    p
}

fn gateway(n: usize) -> Gateway {
    let now = Instant::now();
    let mut tunnels = Vec::with_capacity(n);
    let mut dp = DataPath::new(DataPathConfig::default());
    dp.reserve_sas(n, n);
    let mut peer = DataPath::new(DataPathConfig {
        event_capacity: 4,
        ..DataPathConfig::default()
    });
    peer.reserve_sas(0, n);
    let mut used = HashSet::new();
    let mut x = 0x9e37_79b9u32;
    let mut next_spi = || loop {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        if x > 255 && used.insert(x) {
            return x;
        }
    };
    for k in 0..n {
        // tunnel k: 10.1.0.0/16 <-> 100.(64 + k / 256).(k % 256).0/24,
        // outer 192.0.2.1 <-> a peer in 198.18.0.0/15
        let (hi, lo) = ((k >> 8) as u8, k as u8);
        let local_gw = [192, 0, 2, 1];
        let remote_gw = [198, 18 + (hi >> 7), hi, lo];
        let remote_net = [100, 64 + (hi & 0x3f), lo, 0];
        let spi_in = next_spi();
        let spi_out = next_spi();
        let tunnel = tunnel_id(k);
        let policy = PolicyId(tunnel.0);
        dp.add_policy(Policy {
            id: policy,
            tunnel,
            priority: 100,
            local: TrafficSelector::from_prefix([10, 1, 0, 0].into(), 16).expect("ts"),
            remote: TrafficSelector::from_prefix(remote_net.into(), 24).expect("ts"),
            action: Action::Protect,
        })
        .expect("policy");
        dp.install_outbound(
            policy,
            &params(spi_out, endpoints(local_gw, remote_gw), tunnel),
            now,
        )
        .expect("out sa");
        dp.install_inbound(&params(spi_in, endpoints(local_gw, remote_gw), tunnel), now)
            .expect("in sa");
        // The peer: sends to us with our inbound SPI.
        peer.add_policy(Policy {
            id: policy,
            tunnel,
            priority: 100,
            local: TrafficSelector::any_v4(),
            remote: TrafficSelector::any_v4(),
            action: Action::Protect,
        })
        .expect("policy");
        peer.install_outbound(
            policy,
            &params(spi_in, endpoints(remote_gw, local_gw), tunnel),
            now,
        )
        .expect("peer sa");
        tunnels.push(Tunnel {
            mtu: MTU,
            src: [10, 1, 0, 2],
            dst: [remote_net[0], remote_net[1], remote_net[2], 2],
        });
    }
    Gateway { dp, tunnels, peer }
}

/// An IPv4/UDP packet of `len` bytes (DF clear, valid header checksum).
fn udp_packet(src: [u8; 4], dst: [u8; 4], len: usize) -> Vec<u8> {
    let mut p = vec![0u8; len];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    Ipv4Packet::new_unchecked(&mut p[..]).fill_checksum();
    p[20..22].copy_from_slice(&5000u16.to_be_bytes());
    p[22..24].copy_from_slice(&5001u16.to_be_bytes());
    p[24..26].copy_from_slice(&((len - 20) as u16).to_be_bytes());
    p
}

/// Tunnel order: a stride through all tunnels (every tunnel once per
/// round, neighbours far apart in memory).
/// With `hot`, only 64 tunnels spread over the table carry traffic (the
/// common case: many configured tunnels, few busy at a time).
struct Cursor {
    k: usize,
    n: usize,
    step: usize,
    scale: usize,
}

impl Cursor {
    fn new(n: usize, hot: bool) -> Cursor {
        let (m, scale) = if hot && n > 64 { (64, n / 64) } else { (n, 1) };
        // 7919 is prime, hence coprime with every count but its multiples.
        let step = if m % 7919 == 0 { 1 } else { 7919 % m.max(1) };
        Cursor {
            k: 0,
            n: m,
            step,
            scale,
        }
    }
    fn next(&mut self) -> usize {
        let k = self.k;
        self.k = (self.k + self.step) % self.n;
        k * self.scale
    }
}

type Results = BTreeMap<(&'static str, bool, usize, usize), f64>;
static RESULTS: Mutex<Results> = Mutex::new(BTreeMap::new());

fn record(dir: &'static str, hot: bool, size: usize, n: usize, ns: f64) {
    let mut r = RESULTS.lock().expect("results");
    // keep the fastest sample (least disturbed by other load)
    let e = r.entry((dir, hot, size, n)).or_insert(f64::INFINITY);
    *e = e.min(ns);
}

fn outbound(gw: &Gateway, size: usize, iters: u64, cur: &mut Cursor) -> Duration {
    let pkts: Vec<Vec<u8>> = gw
        .tunnels
        .iter()
        .map(|t| udp_packet(t.src, t.dst, size))
        .collect();
    let mut buf = packet::new_buf();
    let mut scratch = vec![0u8; 1500];
    let now = Instant::now();
    let start = Instant::now();
    for _ in 0..iters {
        let i = cur.next();
        let t = &gw.tunnels[i];
        buf.load(HEADROOM, &pkts[i]).expect("load");
        let v = tun_to_esp(
            &gw.dp,
            tunnel_id(i),
            now,
            &mut buf,
            &t.mtu,
            None,
            &mut scratch,
        );
        assert!(matches!(
            v,
            TunVerdict::Send(OutboundAction::Encapsulated { .. })
        ));
        black_box(v);
    }
    start.elapsed()
}

fn inbound(gw: &Gateway, size: usize, iters: u64, cur: &mut Cursor) -> Duration {
    let now = Instant::now();
    let mut cts: Vec<(TunnelId, Vec<u8>)> = (0..BATCH)
        .map(|_| (TunnelId(0), Vec::with_capacity(size + 64)))
        .collect();
    let mut enc = packet::new_buf();
    let mut buf = packet::new_buf();
    let mut total = Duration::ZERO;
    let mut done = 0u64;
    while done < iters {
        let b = (iters - done).min(BATCH as u64) as usize;
        for (tunnel, ct) in cts.iter_mut().take(b) {
            let i = cur.next();
            let t = &gw.tunnels[i];
            enc.load(HEADROOM, &udp_packet(t.src, t.dst, size))
                .expect("load");
            *tunnel = tunnel_id(i);
            let a = gw.peer.process_outbound(*tunnel, now, &mut enc);
            assert!(matches!(a, OutboundAction::Encapsulated { .. }), "{a:?}");
            ct.clear();
            ct.extend_from_slice(enc.data());
        }
        let start = Instant::now();
        for (want, ct) in &cts[..b] {
            buf.load(HEADROOM, ct).expect("load");
            // Every tunnel has the same MTU here; a shell clamps with the
            // MTU of the tunnel the answer names.
            let a = esp_to_tun(&gw.dp, now, &mut buf, |_| Some(MTU));
            assert!(
                matches!(a, InboundAction::Inner { tunnel, .. } if tunnel == *want),
                "{a:?}"
            );
            black_box(a);
        }
        total += start.elapsed();
        done += b as u64;
    }
    total
}

fn bench(c: &mut Criterion) {
    for n in COUNTS {
        let gw = gateway(n);
        // Every SA must work before timing (a silent drop would be fast).
        for (dir, f) in [
            (
                "out",
                outbound as fn(&Gateway, usize, u64, &mut Cursor) -> Duration,
            ),
            ("in", inbound),
        ] {
            let mut g = c.benchmark_group(format!("tunnels_scale/{dir}"));
            g.sample_size(10)
                .warm_up_time(Duration::from_millis(500))
                .measurement_time(Duration::from_secs(1));
            for (hot, size) in [(false, 64), (false, 1420), (true, 64), (true, 1420)] {
                if hot && n <= 64 {
                    continue;
                }
                let mut cur = Cursor::new(n, hot);
                let name = format!("{size}B{}", if hot { "-hot64" } else { "" });
                g.bench_with_input(BenchmarkId::new(name, n), &size, |bch, &size| {
                    bch.iter_custom(|iters| {
                        let d = f(&gw, size, iters, &mut cur);
                        record(dir, hot, size, n, d.as_nanos() as f64 / iters as f64);
                        d
                    })
                });
            }
            g.finish();
        }
        check(&gw);
    }
}

/// Every tunnel encrypts and decrypts (nothing was counted as a drop).
fn check(gw: &Gateway) {
    assert_eq!(gw.dp.outbound_stats().total_dropped(), 0);
    assert_eq!(gw.dp.inbound_stats().total_dropped(), 0);
    for k in 0..gw.tunnels.len() {
        let s = gw.dp.tunnel_stats(tunnel_id(k));
        assert_eq!(s.outbound.total_dropped() + s.inbound.total_dropped(), 0);
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
    let r = RESULTS.lock().expect("results");
    if r.is_empty() {
        return;
    }
    println!(
        "\n| direction | packet | tunnels | traffic on | ns/packet (fastest sample) | ratio to 1 tunnel |"
    );
    println!("|---|---:|---:|---|---:|---:|");
    for dir in ["out", "in"] {
        for size in SIZES {
            let base = r.get(&(dir, false, size, 1)).copied();
            for n in COUNTS {
                for hot in [false, true] {
                    let Some(&ns) = r.get(&(dir, hot, size, n)) else {
                        continue;
                    };
                    let ratio = base.map_or(String::from("-"), |b| format!("{:.2}x", ns / b));
                    let on = if hot { "64 tunnels" } else { "all tunnels" };
                    println!("| {dir} | {size} B | {n} | {on} | {ns:.0} | {ratio} |");
                }
            }
        }
    }
}
