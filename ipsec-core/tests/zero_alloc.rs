//! Asserts that the per-packet paths do not touch the heap: a counting
//! global allocator (this binary only) records allocations made by the
//! measuring thread while packets are encapsulated and decapsulated, singly
//! and in batches, on two tunnels, after warm-up.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Instant;

use ipsec_core::buf::{PacketBuf, RECOMMENDED_HEADROOM, RECOMMENDED_TAILROOM};
use ipsec_core::crypto::Suite;
use ipsec_core::datapath::{DataPath, InboundAction, OutboundAction, TunnelId};
use ipsec_core::spd::{Action, Policy, PolicyId};

struct Counting;

thread_local! {
    static MEASURING: Cell<bool> = const { Cell::new(false) };
    /// Allocations by this thread while measuring. Per thread, so tests
    /// running in parallel (`counter_works`) cannot leak into the count.
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn note() {
    if MEASURING.with(|m| m.get()) {
        ALLOCS.with(|a| a.set(a.get() + 1));
    }
}

// SAFETY: forwards every call to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        note();
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(p, l, n) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn measure<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let before = ALLOCS.with(|a| a.get());
    MEASURING.with(|m| m.set(true));
    let r = f();
    MEASURING.with(|m| m.set(false));
    (r, ALLOCS.with(|a| a.get()) - before)
}

#[test]
fn counter_works() {
    let (_, n) = measure(|| vec![1u8; 10]);
    assert_eq!(n, 1, "the counting allocator must see allocations");
}

#[test]
fn no_allocation_per_packet() {
    for suite in Suite::ALL {
        let now = Instant::now();
        // Two tunnels with identical selectors; each SA loops back into the
        // same data path (inbound and outbound share SPI and keys).
        let tunnels = [TunnelId(1), TunnelId(2)];
        let mut dp = DataPath::default();
        for (k, tunnel) in tunnels.into_iter().enumerate() {
            let policy = PolicyId(k as u32 + 1);
            dp.add_policy(Policy {
                id: policy,
                tunnel,
                priority: 0,
                local: ipsec_core::selector::TrafficSelector::any_v4(),
                remote: ipsec_core::selector::TrafficSelector::any_v4(),
                action: Action::Protect,
            })
            .unwrap();
            let mut p = common::params(suite, 0x4000_0001 + k as u32, true, 1024);
            p.tunnel_id = tunnel;
            dp.install_outbound(policy, &p, now).unwrap();
            dp.install_inbound(&p, now).unwrap();
        }
        let pkt = common::inner_packet(false, 1420, 7);
        let h = RECOMMENDED_HEADROOM;
        let mut bufs: Vec<PacketBuf> = (0..32)
            .map(|_| PacketBuf::with_capacity(h, 1500, RECOMMENDED_TAILROOM))
            .collect();
        let mut out = [OutboundAction::Bypass; 32];
        let mut inb = [InboundAction::Keepalive; 32];
        let mut one_round = |bufs: &mut Vec<PacketBuf>| {
            for b in bufs.iter_mut() {
                b.load(h, &pkt).unwrap();
            }
            // Single-packet API.
            let a = dp.process_outbound(tunnels[0], now, &mut bufs[0]);
            let b = dp.process_inbound_udp(now, &mut bufs[0]);
            // Batch API, half of the batch read from each tunnel.
            let (first, second) = bufs[1..].split_at_mut(16);
            dp.process_outbound_batch(tunnels[0], now, first, &mut out[..16]);
            dp.process_outbound_batch(tunnels[1], now, second, &mut out[16..]);
            dp.process_inbound_esp_batch(now, &mut bufs[1..], &mut inb);
            (a, b)
        };
        // Warm-up (first use of lazily initialised CPU feature detection etc.).
        one_round(&mut bufs);
        let ((a, b), n) = measure(|| {
            let mut last = one_round(&mut bufs);
            for _ in 0..50 {
                last = one_round(&mut bufs);
            }
            last
        });
        assert!(
            matches!(a, OutboundAction::Encapsulated { .. }),
            "{suite:?}"
        );
        assert!(
            matches!(b, InboundAction::Inner { tunnel, .. } if tunnel == tunnels[0]),
            "{suite:?}"
        );
        assert!(out
            .iter()
            .take(31)
            .all(|o| matches!(o, OutboundAction::Encapsulated { .. })));
        for (i, a) in inb.iter().take(31).enumerate() {
            let want = tunnels[usize::from(i >= 16)];
            assert!(
                matches!(a, InboundAction::Inner { tunnel, .. } if *tunnel == want),
                "{suite:?} {i}: {a:?}"
            );
        }
        assert_eq!(bufs[5].data(), &pkt[..]);
        assert_eq!(
            n, 0,
            "{suite:?}: {n} heap allocations in 51 x 32 packets each way"
        );
        // Drops do not allocate either.
        let (_, n) = measure(|| {
            for b in bufs.iter_mut() {
                b.load(h, &[0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 1, 0, 0, 0, 0])
                    .unwrap();
                dp.process_inbound_udp(now, b);
            }
        });
        assert_eq!(n, 0, "{suite:?}: drops allocated");
    }
}
