//! Heap per half-open responder SA, and that it all goes back when the
//! half-open timeout frees them (a counting global allocator; its own test
//! binary so that nothing else allocates meanwhile).

mod net;
use ike_lite::{Config, CookieMode, Endpoint, FloodLimits};
use net::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counter is only bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            LIVE.fetch_add(l.size(), Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static A: Counting = Counting;

const N: u32 = 1000;
/// The budget per half-open SA (with a 208-byte request) that
/// `FloodLimits::init_limit_half_open`'s documentation relies on (3,425
/// bytes measured: 4096 SAs in about 14 MiB).
const BUDGET: usize = 4096;

#[test]
fn half_open_heap() {
    let (a, _) = pair("aes128gcm16-prfsha256-curve25519", "aes128gcm16");
    let mut b = peer(B_ADDR, "0.0.0.0:500", "b.example", "secret-psk");
    b.ike_proposals = a.ike_proposals.clone();
    b.esp_proposals = a.esp_proposals.clone();
    let now = Instant::now();
    let mut init = Endpoint::with_rng(Config::default(), Box::new(TestRng(2)));
    let c = init.add_peer(a);
    init.initiate(now, c).unwrap();
    let template = init.poll_transmit().unwrap().payload;
    drop(init);
    let config = Config {
        flood: FloodLimits {
            cookies: CookieMode::Never,
            block_threshold: 0,
            init_limit_half_open: 0,
            ..Default::default()
        },
        ..Config::default()
    };
    let mut ep = Endpoint::with_rng(config, Box::new(TestRng(1)));
    ep.add_peer(b);
    let local = addr(B_ADDR);
    let mut msg = template.clone();
    let base = LIVE.load(Relaxed);
    for i in 0..N {
        msg[..8].copy_from_slice(&(u64::from(i) + 1).to_be_bytes());
        let from = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)), 500);
        ep.handle_datagram(now, local, from, &msg).unwrap();
        while ep.poll_transmit().is_some() {}
        while ep.poll_event().is_some() {}
    }
    assert_eq!(ep.endpoint_stats().half_open, u64::from(N));
    let per_sa = (LIVE.load(Relaxed) - base) / N as usize;
    println!(
        "heap per half-open SA: {per_sa} bytes (IKE_SA_INIT request {} bytes)",
        template.len()
    );
    assert!(per_sa < BUDGET, "{per_sa} bytes per half-open SA");
    ep.handle_timeout(now + Duration::from_secs(30));
    assert_eq!(ep.endpoint_stats().half_open, 0);
    let left = LIVE.load(Relaxed).saturating_sub(base);
    println!("left after the half-open timeout: {left} bytes");
    assert!(left < 16 * 1024, "{left} bytes not given back");
}
