//! One inbound ESN SA (NULL + HMAC-SHA1-96) driven through a long sequence
//! of chosen sequence numbers, so the replay window slides across the
//! positions where RFC 4303 Appendix A2.1's `Tl - W + 1` is at or past zero
//! (`w - 1`, `2^32 - 1`, `2^32 + w`). Every packet is really sealed, with
//! the sender's full 64-bit number under the ICV, so a wrong inference of
//! the high bits fails authentication.
//!
//! Input layout: `[w_hi, w_lo, centre, offset, (mode, d_hi, d_lo)*]`: the
//! window size (any of 32..=4096), where the walk starts (a fresh SA, or
//! just below one of the three positions, reached by forward jumps), then
//! steps: move and send, resend an older number, jump, or send a number
//! from a neighbouring 2^32 sub-space.
//! Properties (the fuzz build has overflow checks on): nothing panics; a
//! packet is accepted iff the u128 reference of A2.1 infers the sender's
//! number and the RFC 4303 §3.4.3 window rule (model: every accepted
//! number) admits it; a mirror `ReplayWindow` fed the same commits infers
//! exactly what the reference does.
#![no_main]

use std::collections::BTreeSet;
use std::time::Instant;

use ipsec_core::crypto::Suite;
use ipsec_core::replay::{ReplayError, ReplayWindow, MAX_WINDOW, MIN_WINDOW};
use ipsec_core::sa::{
    InboundSa, OutboundSa, SaParams, SecretBytes, TunnelEndpoints, ESP_MAX_HEADROOM,
    ESP_MAX_TAILROOM,
};
use ipsec_core::selector::TrafficSelector;
use libfuzzer_sys::fuzz_target;

const SUB: u128 = 1 << 32;
const MAX_STEPS: usize = 2048;

/// A2.1 with exact integers: the number congruent to `seql` mod 2^32 in
/// `[T - W + 1, T - W + 1 + 2^32)`, if it exists in the 64-bit space.
fn reference(top: u64, w: u32, seql: u32) -> Option<u64> {
    const OFF: u128 = 1 << 64;
    let bottom = OFF + u128::from(top) + 1 - u128::from(w);
    let full = bottom + (u128::from(seql) + SUB - bottom % SUB) % SUB;
    u64::try_from(full.checked_sub(OFF)?).ok()
}

/// A minimal IPv4 packet the inbound SA accepts (any selectors).
const INNER: [u8; 20] = [
    0x45, 0, 0, 20, 0, 0, 0, 0, 64, 59, 0, 0, 192, 0, 2, 10, 192, 0, 2, 20,
];

struct Run {
    w: u32,
    p: SaParams,
    inbound: InboundSa,
    mirror: ReplayWindow,
    seen: BTreeSet<u64>,
    now: Instant,
}

impl Run {
    fn top(&self) -> u64 {
        self.seen.last().copied().unwrap_or(0)
    }

    /// What `ReplayWindow::check` must answer for `seql` now.
    fn expected_check(&self, seql: u32) -> Result<u64, ReplayError> {
        let top = self.top();
        match reference(top, self.w, seql) {
            None | Some(0) => Err(ReplayError::TooOld),
            Some(s) if s <= top && self.seen.contains(&s) => Err(ReplayError::Replayed),
            Some(s) => Ok(s),
        }
    }

    /// Seals INNER with the full number `seq` and feeds it to the SA.
    fn send(&mut self, seq: u64) {
        if seq == 0 {
            return;
        }
        let top = self.top();
        let seql = seq as u32;
        let want = self.expected_check(seql);
        assert_eq!(self.mirror.check(seql), want, "top {top:#x} seq {seq:#x}");
        let accept = want == Ok(seq);

        let out = OutboundSa::new(&self.p, self.now).expect("valid SA");
        out.skip_to(seq);
        let mut buf = [0u8; ESP_MAX_HEADROOM + INNER.len() + ESP_MAX_TAILROOM];
        buf[ESP_MAX_HEADROOM..][..INNER.len()].copy_from_slice(&INNER);
        let e = out
            .encapsulate(
                self.now,
                &mut buf,
                ESP_MAX_HEADROOM..ESP_MAX_HEADROOM + INNER.len(),
            )
            .expect("encapsulate");
        assert_eq!(e.seq, seq);
        match self.inbound.decapsulate(self.now, &mut buf, e.esp) {
            Ok(d) => {
                assert!(accept, "top {top:#x} seq {seq:#x} accepted, want {want:?}");
                assert_eq!(d.seq, seq);
                assert_eq!(&buf[d.inner], &INNER);
                self.mirror.commit(seq).expect("mirror commit");
                self.seen.insert(seq);
                // Numbers left of the window no longer matter.
                let keep = self.top().saturating_sub(u64::from(self.w));
                self.seen = self.seen.split_off(&keep);
            }
            Err(d) => assert!(!accept, "top {top:#x} seq {seq:#x} refused: {d:?}"),
        }
        assert_eq!(self.inbound.replay_top(), self.top());
        assert_eq!(self.mirror.top(), self.top());
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let (ctl, ops) = data.split_at(4);
    let w = MIN_WINDOW
        + u32::from(u16::from_be_bytes([ctl[0], ctl[1]])) % (MAX_WINDOW - MIN_WINDOW + 1);
    let w64 = u64::from(w);
    let centre = [0, w64 - 1, (1 << 32) - 1, (1 << 32) + w64][usize::from(ctl[2] & 3)];
    let start = centre.saturating_sub(u64::from(ctl[3]));

    let now = Instant::now();
    let suite = Suite::NULL_HMAC_SHA1_96;
    let mut p = SaParams::new(
        0x0102_0304,
        suite,
        SecretBytes::new(vec![0x42; suite.enc_key_len().unwrap_or(0)]),
        SecretBytes::new(vec![0x24; suite.integ_key_len()]),
        TunnelEndpoints {
            local: "192.0.2.1".parse().unwrap(),
            remote: "192.0.2.2".parse().unwrap(),
        },
    );
    p.esn = true;
    p.replay_window = w;
    p.local_ts = vec![TrafficSelector::any_v4()];
    p.remote_ts = p.local_ts.clone();
    let mut run = Run {
        w,
        inbound: InboundSa::new(&p, now).expect("valid SA"),
        p,
        mirror: ReplayWindow::new(w, true).expect("valid size"),
        seen: BTreeSet::new(),
        now,
    };

    // Reach the start with jumps the inference follows (under 2^32 - w).
    let mut cursor = 0u64;
    while cursor < start {
        cursor = start.min(cursor + (1 << 31));
        run.send(cursor);
    }
    for op in ops.chunks_exact(3).take(MAX_STEPS) {
        let d = i64::from(i16::from_be_bytes([op[1], op[2]]));
        match op[0] & 3 {
            // Step (mostly small) and send.
            0 => {
                cursor = cursor.saturating_add_signed(d).max(1);
                run.send(cursor);
            }
            // An older number around the window's bottom: replayed or too old.
            1 => run.send(cursor.saturating_sub(d.unsigned_abs() % (2 * w64 + 2))),
            // A jump of up to 2^27 either way.
            2 => {
                cursor = cursor.saturating_add_signed(d * 4096).max(1);
                run.send(cursor);
            }
            // The same low bits in a neighbouring sub-space.
            _ => {
                let s = cursor.saturating_add_signed(d);
                run.send(if op[0] & 4 == 0 {
                    s.saturating_add(1 << 32)
                } else {
                    s.saturating_sub(1 << 32)
                });
            }
        }
    }
});
