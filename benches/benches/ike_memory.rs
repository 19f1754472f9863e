//! Live heap bytes per established IKE SA on a responder [`Endpoint`].
//!
//! A counting global allocator tracks live bytes and live allocations by
//! exact size. For N = 1, 100, 1000 a responder configured with N client
//! connections establishes one IKE SA (IKE_SA_INIT + IKE_AUTH with its
//! first Child SA) per client, each from its own initiator endpoint, which
//! is dropped right after; the events (including the Child SA key material
//! handed to the ESP layer) are drained and dropped, as a driver would. The
//! responder's growth over its freshly configured state, divided by N, is
//! the cost per IKE SA. The allocation-size histogram of that growth shows
//! what it is made of.
//!
//! Run: `cargo bench -p ipsec-benches --bench ike_memory`

mod ike_net;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Allocations up to this size are counted by exact size; larger ones in
/// the last slot.
const EXACT: usize = 4096;

struct Counting;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
static LIVE_BY_SIZE: [AtomicI64; EXACT + 1] = [const { AtomicI64::new(0) }; EXACT + 1];
static LIVE_LARGE_BYTES: AtomicI64 = AtomicI64::new(0);

fn note(size: usize, sign: i64) {
    LIVE_BY_SIZE[size.min(EXACT)].fetch_add(sign, Relaxed);
    if size >= EXACT {
        LIVE_LARGE_BYTES.fetch_add(sign * size as i64, Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counters are only bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(l.size(), Relaxed);
            note(l.size(), 1);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { System.alloc_zeroed(l) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(l.size(), Relaxed);
            note(l.size(), 1);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(p, l) };
        LIVE_BYTES.fetch_sub(l.size(), Relaxed);
        note(l.size(), -1);
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        // SAFETY: same contract as ours.
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            LIVE_BYTES.fetch_sub(l.size(), Relaxed);
            LIVE_BYTES.fetch_add(new, Relaxed);
            note(l.size(), -1);
            note(new, 1);
        }
        q
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

struct Snapshot {
    bytes: usize,
    by_size: Vec<i64>,
    large_bytes: i64,
}

impl Snapshot {
    /// Allocated before the baseline, so taking snapshots allocates nothing.
    fn new() -> Snapshot {
        Snapshot {
            bytes: 0,
            by_size: vec![0; EXACT + 1],
            large_bytes: 0,
        }
    }

    fn take(&mut self) {
        for (d, c) in self.by_size.iter_mut().zip(&LIVE_BY_SIZE) {
            *d = c.load(Relaxed);
        }
        self.large_bytes = LIVE_LARGE_BYTES.load(Relaxed);
        self.bytes = LIVE_BYTES.load(Relaxed);
    }
}

struct Run {
    n: usize,
    per_sa: f64,
    /// (allocation size, live allocations per IKE SA), growth only.
    hist: Vec<(usize, f64)>,
    large_per_sa: f64,
    sizes: [usize; 4],
    /// Mean responder time per handshake (with the counting allocator).
    us_per_handshake: f64,
}

fn run(n: usize, ike: &str) -> Run {
    let mut resp = ike_net::responder(n, ike);
    let clock = Instant::now();
    let (mut before, mut after) = (Snapshot::new(), Snapshot::new());
    before.take();
    let mut sizes = [0; 4];
    let mut busy = Duration::ZERO;
    for i in 0..n {
        let (mut init, conn) = ike_net::initiator(i, ike);
        let now = clock + Duration::from_millis(i as u64);
        let h = ike_net::handshake(&mut resp, &mut init, conn, now);
        sizes = h.sizes;
        busy += h.responder_time;
        drop(init);
    }
    after.take();
    assert_eq!(resp.ike_sa_count(), n, "one IKE SA per client");
    let per = |x: i64| x as f64 / n as f64;
    let hist = (0..EXACT)
        .map(|s| (s, per(after.by_size[s] - before.by_size[s])))
        .filter(|(_, c)| c.abs() >= 0.01)
        .collect();
    let r = Run {
        n,
        per_sa: per(after.bytes as i64 - before.bytes as i64),
        hist,
        large_per_sa: per(after.large_bytes - before.large_bytes),
        sizes,
        us_per_handshake: busy.as_secs_f64() * 1e6 / n as f64,
    };
    drop(resp);
    r
}

fn main() {
    let cases = [
        ("ecp256", "aes128gcm16-prfsha256-ecp256"),
        ("modp2048", "aes128gcm16-prfsha256-modp2048"),
    ];
    // Lazily initialised state of the crypto and RNG crates (e.g. the
    // parsed MODP group parameters) is not per SA.
    for (_, ike) in cases {
        let mut warm = ike_net::responder(1, ike);
        let (mut init, conn) = ike_net::initiator(0, ike);
        ike_net::handshake(&mut warm, &mut init, conn, Instant::now());
    }

    println!("Live heap bytes per established IKE SA on the responder (incl. its first Child SA's");
    println!("IKE-side bookkeeping; the Child SA keys leave with the event and are not counted):");
    println!(
        "{:<10} {:>7} {:>14} {:>22}",
        "group", "IKE SAs", "bytes / IKE SA", "responder us/handshake"
    );
    let mut detail = Vec::new();
    for (name, ike) in cases {
        for n in [1, 100, 1000] {
            let r = run(n, ike);
            println!(
                "{:<10} {:>7} {:>14.0} {:>22.0}",
                name, r.n, r.per_sa, r.us_per_handshake
            );
            if n == 1000 {
                detail.push((name, r));
            }
        }
    }
    for (name, r) in detail {
        println!(
            "\n{name}, N = {}: live allocations per IKE SA by size (datagrams: IKE_SA_INIT \
             req {} / resp {}, IKE_AUTH req {} / resp {} bytes)",
            r.n, r.sizes[0], r.sizes[1], r.sizes[2], r.sizes[3]
        );
        println!("{:>8} {:>10} {:>12}", "size", "count/SA", "bytes/SA");
        let mut sum = 0.0;
        for (size, count) in &r.hist {
            let bytes = *size as f64 * count;
            sum += bytes;
            if bytes.abs() >= 4.0 {
                println!("{:>8} {:>10.2} {:>12.1}", size, count, bytes);
            }
        }
        println!("{:>8} {:>10} {:>12.1}", ">=4096", "", r.large_per_sa);
        println!("{:>8} {:>10} {:>12.1}", "total", "", sum + r.large_per_sa);
    }
}
