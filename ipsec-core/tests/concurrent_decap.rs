//! One inbound SA shared by two threads that decapsulate the same stream
//! of packets (every packet reaches both, in different interleavings, as
//! after a duplicating path or a replaying attacker): each sequence number
//! must be accepted exactly once in total, and every refusal must be a
//! replay refusal.

mod common;

use std::sync::{Arc, Barrier};
use std::time::Instant;

use ipsec_core::crypto::Suite;
use ipsec_core::sa::DropReason;

const PACKETS: u64 = 20_000;
/// Threads meet at a barrier every `SYNC` packets, so they never drift
/// further apart than 2 * SYNC, well inside the window (1024): a number can
/// then only be refused as already seen, never as too old.
const SYNC: usize = 256;

fn run(esn: bool, start: u64) {
    let (out, inb) = common::sa_pair(Suite::AES128_GCM16, esn, 1024);
    let inb = Arc::new(inb);
    let now = Instant::now();
    out.skip_to(start);
    let inner = common::inner_packet(false, 100, 7);
    let sealed: Vec<(Vec<u8>, std::ops::Range<usize>)> = (0..PACKETS)
        .map(|_| {
            let mut buf = vec![0u8; 256];
            buf[64..164].copy_from_slice(&inner);
            let e = out.encapsulate(now, &mut buf, 64..164).unwrap();
            (buf, e.esp)
        })
        .collect();
    // Thread 0 sees the stream in order, thread 1 with neighbours swapped
    // (2, 1, 4, 3, ...).
    let order = |t: usize| -> Vec<usize> {
        (0..sealed.len())
            .map(|i| if t == 0 { i } else { i ^ 1 })
            .filter(|&i| i < sealed.len())
            .collect()
    };
    let barrier = Arc::new(Barrier::new(2));
    let accepted: Vec<Vec<u64>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|t| {
                let (inb, barrier, sealed, inner) =
                    (Arc::clone(&inb), Arc::clone(&barrier), &sealed, &inner);
                let order = order(t);
                s.spawn(move || {
                    let mut got = Vec::new();
                    for (n, &i) in order.iter().enumerate() {
                        if n % SYNC == 0 {
                            barrier.wait();
                        }
                        let (mut buf, r) = sealed[i].clone();
                        match inb.decapsulate(now, &mut buf, r) {
                            Ok(d) => {
                                assert_eq!(&buf[d.inner], &inner[..]);
                                got.push(d.seq);
                            }
                            Err(d) => assert_eq!(d.reason, DropReason::Replayed),
                        }
                    }
                    got
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut all: Vec<u64> = accepted.concat();
    all.sort_unstable();
    let want: Vec<u64> = (start..start + PACKETS).collect();
    assert_eq!(all, want, "every number accepted exactly once");
    let s = inb.stats();
    assert_eq!(s.packets, PACKETS);
    assert_eq!(s.dropped(DropReason::Replayed), PACKETS);
    assert_eq!(s.total_dropped(), PACKETS);
    assert_eq!(inb.replay_top(), start + PACKETS - 1);
}

#[test]
fn two_threads_accept_each_number_once() {
    run(false, 1);
}

#[test]
fn two_threads_accept_each_number_once_esn_across_2_pow_32() {
    run(true, (1 << 32) - PACKETS / 2);
}
