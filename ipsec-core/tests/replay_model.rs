//! The anti-replay window against a reference model: a `BTreeSet` of every
//! accepted sequence number plus the RFC 4303 §3.4.3 rule, for window sizes
//! 32..=4096, with and without ESN, including walks across 2^32 boundaries.

use std::collections::BTreeSet;

use ipsec_core::replay::{ReplayError, ReplayWindow};
use proptest::prelude::*;

/// The rule: 0 is never valid; above the highest accepted number is new;
/// `size` or more below it is too old; otherwise it is new unless seen.
fn model(seen: &BTreeSet<u64>, size: u32, seq: u64) -> Result<(), ReplayError> {
    let top = seen.last().copied().unwrap_or(0);
    if seq == 0 {
        return Err(ReplayError::TooOld);
    }
    if seq > top {
        return Ok(());
    }
    if top - seq >= u64::from(size) {
        return Err(ReplayError::TooOld);
    }
    if seen.contains(&seq) {
        return Err(ReplayError::Replayed);
    }
    Ok(())
}

/// Step kinds: small moves around the top, and occasional large jumps.
fn steps() -> impl Strategy<Value = Vec<i64>> {
    prop::collection::vec(
        prop_oneof![
            8 => -5000i64..5000,
            1 => 0i64..(1 << 31),
        ],
        1..400,
    )
}

fn run(size: u32, esn: bool, start: u64, steps: &[i64]) {
    let mut w = ReplayWindow::new(size, esn).unwrap();
    let mut seen = BTreeSet::new();
    let mut cursor = start;
    let limit = if esn {
        u64::MAX >> 1
    } else {
        u64::from(u32::MAX)
    };
    // The first packet is `start` itself; the walk follows.
    for (i, &d) in steps.iter().enumerate() {
        if i > 0 {
            cursor = cursor.saturating_add_signed(d).min(limit);
        }
        let seq = cursor;
        let want = model(&seen, size, seq);
        if esn {
            // Only the low 32 bits travel; a wrong inference (possible only
            // for numbers left of the window) would fail authentication, so
            // it counts as a refusal.
            let got = w.check(seq as u32);
            match (want, got) {
                (Ok(()), Ok(full)) => {
                    assert_eq!(full, seq, "inferred wrong high bits");
                    w.commit(full).unwrap();
                    seen.insert(seq);
                }
                (Ok(()), Err(e)) => panic!("seq {seq:#x} refused ({e:?}) but model accepts"),
                (Err(_), Ok(full)) => {
                    assert_ne!(full, seq, "seq {seq:#x} accepted but model refuses");
                }
                (Err(a), Err(b)) => assert_eq!(a, b, "seq {seq:#x}"),
            }
        } else {
            let got = w.check(seq as u32);
            assert_eq!(got.map(|_| ()), want, "seq {seq:#x} top {:#x}", w.top());
            if let Ok(full) = got {
                assert_eq!(full, seq);
                w.commit(full).unwrap();
                seen.insert(seq);
            }
        }
        assert_eq!(w.top(), seen.last().copied().unwrap_or(0));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn non_esn_matches_model(size in 32u32..=4096, start in 0u64..20_000, s in steps()) {
        run(size, false, start, &s);
    }

    #[test]
    fn non_esn_near_top_of_space(size in 32u32..=4096, back in 0u64..20_000, s in steps()) {
        run(size, false, u64::from(u32::MAX) - back, &s);
    }

    #[test]
    fn esn_matches_model(size in 32u32..=4096, start in 0u64..20_000, s in steps()) {
        run(size, true, start, &s);
    }

    #[test]
    fn esn_across_2_pow_32(
        size in 32u32..=4096,
        back in 4096u64..40_000,
        s in steps(),
    ) {
        // The first packet lands below 2^32 (sub-space 0, where inference
        // from an empty window is defined), then the walk crosses into 1.
        run(size, true, (1u64 << 32) - back, &s);
    }
}

#[test]
fn esn_long_walk_over_several_sub_spaces() {
    // Deterministic walk with big forward jumps over 2^32, 2^33 and 3 * 2^32.
    let mut s = Vec::new();
    for i in 0..8000i64 {
        s.push(if i % 97 == 0 {
            1 << 30
        } else {
            (i * 7919) % 3000 - 1400
        });
    }
    run(1024, true, 100, &s);
    run(32, true, 100, &s);
    run(4096, true, 100, &s);
}

#[test]
fn sizes_outside_range_are_refused() {
    assert!(ReplayWindow::new(0, false).is_none());
    assert!(ReplayWindow::new(31, true).is_none());
    assert!(ReplayWindow::new(4097, false).is_none());
    assert!(ReplayWindow::new(32, false).is_some());
    assert!(ReplayWindow::new(4096, true).is_some());
}
