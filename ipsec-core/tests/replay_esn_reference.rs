//! ESN inference (RFC 4303 Appendix A2.1) against a reference written with
//! exact (u128) integers, for every window size `MIN_WINDOW..=MAX_WINDOW`
//! and tops around `w - 1`, `2^32 - 1` and `2^32 + w`, where the unsigned
//! form of the RFC's `Tl - W + 1` is at or past zero. Built in the debug
//! profile, any overflow in the inference panics here.

use ipsec_core::replay::{ReplayError, ReplayWindow, MAX_WINDOW, MIN_WINDOW};
use proptest::prelude::*;

const SUB: u128 = 1 << 32;

/// A2.1 with exact integers: the full number is the one congruent to `seql`
/// mod 2^32 in `[T - W + 1, T - W + 1 + 2^32)`. `None` if it would lie in
/// sub-space -1 or 2^32, which do not exist.
fn reference(top: u64, w: u32, seql: u32) -> Option<u64> {
    // Offset by 2^64 so the window's bottom is never negative; 2^64 is a
    // multiple of 2^32, so residues are unchanged.
    const OFF: u128 = 1 << 64;
    let bottom = OFF + u128::from(top) + 1 - u128::from(w);
    let full = bottom + (u128::from(seql) + SUB - bottom % SUB) % SUB;
    u64::try_from(full.checked_sub(OFF)?).ok()
}

/// What `check` must answer on a window whose only commit is `top` (or a
/// fresh window for top 0): every inferred number is at most `w - 1` below
/// the top, so the window refuses only 0, the top itself and impossible
/// sub-spaces.
fn expected(top: u64, w: u32, seql: u32) -> Result<u64, ReplayError> {
    match reference(top, w, seql) {
        None | Some(0) => Err(ReplayError::TooOld),
        Some(s) if s == top => Err(ReplayError::Replayed),
        Some(s) => Ok(s),
    }
}

/// An ESN window of size `w` whose top is `top`, reached by one commit
/// (a jump the inference itself never makes, but the ring takes any jump
/// below 2^36).
fn window_at(w: u32, top: u64) -> ReplayWindow {
    let mut win = ReplayWindow::new(w, true).unwrap();
    if top != 0 {
        win.commit(top)
            .unwrap_or_else(|e| panic!("commit {top:#x} (w {w}): {e:?}"));
    }
    assert_eq!(win.top(), top);
    win
}

/// Low halves worth probing for a window of size `w` at `top`: both sides
/// of the window's bottom (mod 2^32), of the top, and of the space's ends.
fn probes(top: u64, w: u32) -> Vec<u32> {
    let tl = top as u32;
    let bottom = tl.wrapping_sub(w - 1);
    let mut v = vec![0, 1, 2, u32::MAX, u32::MAX - 1, w - 1, w, w - 2];
    for base in [bottom, tl] {
        for d in [-2i32, -1, 0, 1, 2] {
            v.push(base.wrapping_add_signed(d));
        }
    }
    v
}

/// Tops around the three critical positions for window size `w`.
fn tops(w: u32) -> Vec<u64> {
    let w = u64::from(w);
    let mut v = Vec::new();
    for centre in [w - 1, (1 << 32) - 1, (1 << 32) + w, (1 << 32) + w - 1] {
        for d in -2i64..=2 {
            v.push(centre.checked_add_signed(d).unwrap());
        }
    }
    v
}

#[test]
fn every_window_size_at_the_critical_tops() {
    for w in MIN_WINDOW..=MAX_WINDOW {
        for top in tops(w) {
            let win = window_at(w, top);
            for seql in probes(top, w) {
                assert_eq!(
                    win.check(seql),
                    expected(top, w, seql),
                    "w {w} top {top:#x} seql {seql:#x}"
                );
            }
        }
    }
}

/// The case: `tl == w - 1`, reached by ordinary in-order traffic.
#[test]
fn in_order_traffic_reaches_tl_eq_w_minus_1() {
    for w in [MIN_WINDOW, 64, 1024, MAX_WINDOW] {
        let mut win = ReplayWindow::new(w, true).unwrap();
        for s in 1..=u64::from(w) + 1 {
            let full = win.check(s as u32).unwrap();
            assert_eq!(full, s);
            win.commit(full).unwrap();
        }
    }
}

/// A top near one of the critical positions for window size `w`.
fn top_near(w: u32) -> impl Strategy<Value = u64> {
    let w64 = u64::from(w);
    let span = 2 * i64::from(w);
    (
        prop_oneof![
            Just(w64 - 1),
            Just((1u64 << 32) - 1),
            Just((1u64 << 32) + w64),
        ],
        -span..=span,
    )
        .prop_map(|(c, d)| c.saturating_add_signed(d))
}

/// A low half: anywhere, or near the window's bottom or the top.
fn seql_for(top: u64, w: u32) -> impl Strategy<Value = u32> {
    let bottom = (top as u32).wrapping_sub(w - 1);
    prop_oneof![
        any::<u32>(),
        (-64i32..64).prop_map(move |d| bottom.wrapping_add_signed(d)),
        (-64i32..64).prop_map(move |d| (top as u32).wrapping_add_signed(d)),
    ]
}

fn case() -> impl Strategy<Value = (u32, u64, Vec<u32>)> {
    (MIN_WINDOW..=MAX_WINDOW)
        .prop_flat_map(|w| (Just(w), top_near(w)))
        .prop_flat_map(|(w, top)| {
            (
                Just(w),
                Just(top),
                prop::collection::vec(seql_for(top, w), 1..32),
            )
        })
}

/// Steps of a walk of commits: mostly forward, sometimes back into the window.
fn walk() -> impl Strategy<Value = Vec<i64>> {
    prop::collection::vec(
        prop_oneof![4 => 1i64..64, 1 => -64i64..0, 1 => 64i64..5000],
        1..200,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn inference_matches_the_u128_reference((w, top, seqls) in case()) {
        let win = window_at(w, top);
        for seql in seqls {
            prop_assert_eq!(
                win.check(seql),
                expected(top, w, seql),
                "w {} top {:#x} seql {:#x}", w, top, seql
            );
        }
    }

    /// A window advanced by a walk of commits that starts below a critical
    /// position (the window first jumped there) and crosses it: at each
    /// step, the inference of the next number and of the window's bottom
    /// match the reference.
    #[test]
    fn sliding_walk_across_critical_positions(
        w in MIN_WINDOW..=MAX_WINDOW,
        centre in 0usize..3,
        back in 0u64..8192,
        steps in walk(),
    ) {
        let w64 = u64::from(w);
        let centre = [w64 - 1, (1u64 << 32) - 1, (1u64 << 32) + w64][centre];
        let mut cursor = centre.saturating_sub(back);
        let mut win = window_at(w, cursor);
        for d in steps {
            let top = win.top();
            // Probe the bottom edge and the next number.
            for seql in [(top as u32).wrapping_sub(w - 1), (top as u32).wrapping_sub(w)] {
                let want = reference(top, w, seql).filter(|&s| s != 0);
                match win.check(seql) {
                    Ok(s) => prop_assert_eq!(Some(s), want, "top {:#x} seql {:#x}", top, seql),
                    Err(_) => prop_assert!(
                        want.is_none_or(|s| s <= top),
                        "top {:#x} seql {:#x} refused, reference {:?}", top, seql, want
                    ),
                }
            }
            let seq = cursor;
            let got = win.check(seq as u32);
            let inferred = reference(top, w, seq as u32);
            if let Ok(full) = got {
                prop_assert_eq!(Some(full), inferred, "top {:#x} seq {:#x}", top, seq);
                // Only the sender's true number authenticates.
                if full == seq {
                    win.commit(full).unwrap();
                }
            }
            // In order and inside the window: must be accepted.
            if seq > top {
                prop_assert_eq!(got, Ok(seq), "top {:#x}", top);
            }
            cursor = cursor.saturating_add_signed(d).max(1);
        }
    }
}
