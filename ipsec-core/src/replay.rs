//! Anti-replay window (RFC 4303 §3.4.3 and Appendix A).
//!
//! A bitmap ring in the style of RFC 6479, made lock-free so an inbound SA
//! shared by several threads needs no mutex. The window of `size` sequence
//! numbers ending at the highest authenticated number (the *top*) is covered
//! by a power-of-two ring of 64-bit slots. Each slot holds one *block* of 32
//! consecutive sequence numbers: the high 32 bits are the block number
//! (`seq >> 5`, truncated to 32 bits) as a tag, the low 32 bits the bitmap.
//! Because tag and bitmap change together in one compare-and-swap, a slot is
//! never cleared underneath a concurrent committer: reusing a slot for a newer
//! block and setting a bit are both CAS transitions of the same word, and a
//! slot's tag only ever moves forward. With extended sequence numbers only
//! the low 32 bits travel on the wire; [`ReplayWindow::check`] infers the high
//! 32 bits as in Appendix A.
//!
//! The top is not stored whole: an atomic `newest` holds a committed number
//! of the newest block, and the top is the highest bit set in that block's
//! slot. So a packet that stays in the current block (31 of 32 in order)
//! commits with a single compare-and-swap on its slot.
//!
//! The protocol is *check, then authenticate, then commit*: [`check`] is a
//! few plain loads and runs before decryption as a cheap filter; [`commit`]
//! runs only after the ICV verified and is the authoritative test. A packet
//! of a newer block first advances `newest` (compare-and-swap, then slides
//! the ring: slots of the blocks that entered the window are re-tagged with
//! an empty bitmap); then the packet's bit is set with a compare-and-swap
//! that fails as [`ReplayError::Replayed`] if the bit is already set. So
//! when several threads commit the same number, exactly one succeeds.
//!
//! [`check`]: ReplayWindow::check
//! [`commit`]: ReplayWindow::commit

use core::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// Smallest supported window size.
pub const MIN_WINDOW: u32 = 32;
/// Largest supported window size.
pub const MAX_WINDOW: u32 = 4096;
/// A common default (AWS site-to-site VPN uses 1024).
pub const DEFAULT_WINDOW: u32 = 1024;

/// Sequence numbers per slot (bits of a slot's bitmap).
const BLOCK_SHIFT: u32 = 5;
const BLOCK_MASK: u64 = (1 << BLOCK_SHIFT) - 1;

/// Why a sequence number was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplayError {
    /// The number is inside the window and was already received.
    Replayed,
    /// The number is left of the window (or is 0, which is never sent).
    TooOld,
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReplayError::Replayed => "sequence number replayed",
            ReplayError::TooOld => "sequence number left of the replay window",
        })
    }
}

impl std::error::Error for ReplayError {}

/// Block number of a sequence number.
#[inline]
fn block(seq: u64) -> u64 {
    seq >> BLOCK_SHIFT
}

/// A slot word: block tag in the high half, bitmap in the low half.
#[inline]
fn slot_word(blk: u64, bitmap: u32) -> u64 {
    (u64::from(blk as u32) << 32) | u64::from(bitmap)
}

#[inline]
fn bit(seq: u64) -> u64 {
    1 << (seq & BLOCK_MASK)
}

/// How block `blk` relates to the tag of slot word `w`: 0 = same block,
/// positive = the slot holds an older block, negative = a newer one. Exact
/// while the two are less than 2^31 blocks apart, which the slide (and, for
/// commits, the window check against `top`) guarantees wherever the answer
/// decides between accepting and refusing.
#[inline]
fn cmp_tag(blk: u64, w: u64) -> i32 {
    (blk as u32).wrapping_sub((w >> 32) as u32) as i32
}

/// The receive-side sliding window of one inbound SA.
///
/// [`ReplayWindow::check`] takes `&self`; the window is lock-free and safe
/// to share between threads (the inbound SA commits through a shared
/// reference).
pub struct ReplayWindow {
    size: u32,
    esn: bool,
    /// An authenticated number of the newest block (0 = none yet); the
    /// top is the highest bit set in that block's slot.
    newest: AtomicU64,
    /// Ring of slots; block `b` lives in slot `b & mask`.
    slots: Box<[AtomicU64]>,
    mask: u64,
}

impl Clone for ReplayWindow {
    fn clone(&self) -> ReplayWindow {
        ReplayWindow {
            size: self.size,
            esn: self.esn,
            newest: AtomicU64::new(self.newest.load(Ordering::Acquire)),
            slots: self
                .slots
                .iter()
                .map(|s| AtomicU64::new(s.load(Ordering::Acquire)))
                .collect(),
            mask: self.mask,
        }
    }
}

impl fmt::Debug for ReplayWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayWindow")
            .field("size", &self.size)
            .field("esn", &self.esn)
            .field("top", &self.top())
            .finish_non_exhaustive()
    }
}

impl ReplayWindow {
    /// A window of `size` numbers (`MIN_WINDOW..=MAX_WINDOW`); `esn` selects
    /// 64-bit extended sequence numbers. Returns `None` for a bad size.
    pub fn new(size: u32, esn: bool) -> Option<ReplayWindow> {
        if !(MIN_WINDOW..=MAX_WINDOW).contains(&size) {
            return None;
        }
        // The window touches at most ceil(size / 32) + 1 blocks; with at
        // least that many slots, blocks inside the window never share one.
        let slots = (size as usize).div_ceil(1 << BLOCK_SHIFT) + 1;
        let slots = slots.next_power_of_two();
        Some(ReplayWindow {
            size,
            esn,
            newest: AtomicU64::new(0),
            // Slot i starts as the empty block i (blocks 0..slots).
            slots: (0..slots as u64)
                .map(|i| AtomicU64::new(slot_word(i, 0)))
                .collect(),
            mask: slots as u64 - 1,
        })
    }

    /// The configured window size.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Highest authenticated sequence number so far (0 if none).
    pub fn top(&self) -> u64 {
        self.current_top()
    }

    /// `newest`, raised to the highest bit set in its block's slot.
    #[inline]
    fn current_top(&self) -> u64 {
        let t = self.newest.load(Ordering::Acquire);
        let blk = block(t);
        let w = self.slot(blk).load(Ordering::Acquire);
        let bits = w as u32;
        if cmp_tag(blk, w) == 0 && bits != 0 {
            t.max((blk << BLOCK_SHIFT) | u64::from(31 - bits.leading_zeros()))
        } else {
            t
        }
    }

    /// Infers the full sequence number of a packet carrying `seq_low` and
    /// checks it against the window without changing anything. Returns the
    /// full (64-bit with ESN) number to authenticate and later commit.
    #[inline]
    pub fn check(&self, seq_low: u32) -> Result<u64, ReplayError> {
        let top = self.current_top();
        let seq = if self.esn {
            self.infer_esn(top, seq_low)?
        } else {
            u64::from(seq_low)
        };
        if seq == 0 {
            return Err(ReplayError::TooOld);
        }
        if seq > top {
            return Ok(seq);
        }
        if top - seq >= u64::from(self.size) {
            return Err(ReplayError::TooOld);
        }
        let w = self.slot(block(seq)).load(Ordering::Acquire);
        match cmp_tag(block(seq), w) {
            0 if w & bit(seq) != 0 => Err(ReplayError::Replayed),
            // Re-used for a newer block by a concurrent commit.
            d if d < 0 => Err(ReplayError::TooOld),
            _ => Ok(seq),
        }
    }

    /// RFC 4303 Appendix A2.1: high-order bits from the window position.
    ///
    /// The RFC's `Tl - W + 1` is written `tl - (w - 1)`: the same value, but
    /// no intermediate goes below zero when `tl == w - 1`.
    #[inline]
    fn infer_esn(&self, top: u64, seql: u32) -> Result<u64, ReplayError> {
        let w = self.size;
        let tl = top as u32;
        let th = (top >> 32) as u32;
        // `w >= MIN_WINDOW`, so `w - 1` cannot underflow.
        let seqh = if tl >= w - 1 {
            // Window lies within one 2^32 sub-space (`tl >= w - 1`: no underflow).
            if seql >= tl - (w - 1) {
                th
            } else {
                th.checked_add(1).ok_or(ReplayError::TooOld)?
            }
        } else if seql >= tl.wrapping_sub(w - 1) {
            // Window spans two sub-spaces; the packet is in the lower one.
            // (Wraps on purpose: the bottom `Tl - W + 1` lies in the previous
            // sub-space, and A2.1 compares against its low 32 bits.)
            th.checked_sub(1).ok_or(ReplayError::TooOld)?
        } else {
            th
        };
        Ok((u64::from(seqh) << 32) | u64::from(seql))
    }

    #[inline]
    fn slot(&self, blk: u64) -> &AtomicU64 {
        // `mask` < slots.len(), so the index is in bounds and the cast
        // lossless.
        &self.slots[(blk & self.mask) as usize]
    }

    /// Marks the full sequence number `seq` (as returned by
    /// [`ReplayWindow::check`]) as received, after its ICV verified. This is
    /// the authoritative test: if another packet moved the window meanwhile,
    /// or committed the same number first, it fails.
    pub fn commit(&mut self, seq: u64) -> Result<(), ReplayError> {
        self.commit_shared(seq)
    }

    /// [`ReplayWindow::commit`] through a shared reference: safe against
    /// concurrent commits and checks from other threads. Of several commits
    /// of one number, exactly one succeeds.
    pub(crate) fn commit_shared(&self, seq: u64) -> Result<(), ReplayError> {
        if seq == 0 {
            return Err(ReplayError::TooOld);
        }
        // 1. A newer block: advance `newest` (and slide) before touching the
        //    slot, so whoever sees this packet's slot tag also sees `newest`
        //    in this block or later.
        let blk = block(seq);
        let mut newest = self.newest.load(Ordering::Acquire);
        while blk > block(newest) {
            match self.newest.compare_exchange_weak(
                newest,
                seq,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    self.slide(newest, seq);
                    break;
                }
                Err(t) => newest = t,
            }
        }
        // 2. Set the bit; the CAS fails if any other commit touched the slot.
        let slot = self.slot(blk);
        let mut w = slot.load(Ordering::Acquire);
        loop {
            // The top loaded after the slot covers every block whose tag the
            // slot shows (tags are written only after `newest` reached
            // their block), so a slot holding a newer block than `blk`
            // always means "too old" here and `cmp_tag` cannot mistake a
            // newer tag for an older one.
            let top = self.current_top();
            if top.saturating_sub(seq) >= u64::from(self.size) {
                return Err(ReplayError::TooOld);
            }
            let new = match cmp_tag(blk, w) {
                0 if w & bit(seq) != 0 => return Err(ReplayError::Replayed),
                0 => w | bit(seq),
                // Stale block, out of the window: reuse the slot.
                d if d > 0 => slot_word(blk, 0) | bit(seq),
                _ => return Err(ReplayError::TooOld),
            };
            match slot.compare_exchange_weak(w, new, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(()),
                Err(cur) => w = cur,
            }
        }
    }

    /// After `newest` moved from `old` to `new`: re-tag the slots of the blocks
    /// that entered the window (at most one ring's worth) as empty, unless a
    /// concurrent commit already moved them further.
    fn slide(&self, old: u64, new: u64) {
        let (old_blk, new_blk) = (block(old), block(new));
        if new_blk == old_blk {
            return;
        }
        let first = (old_blk + 1).max(new_blk.saturating_sub(self.mask));
        for b in first..=new_blk {
            let slot = self.slot(b);
            let mut w = slot.load(Ordering::Acquire);
            while cmp_tag(b, w) > 0 {
                match slot.compare_exchange_weak(
                    w,
                    slot_word(b, 0),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => break,
                    Err(cur) => w = cur,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert!(ReplayWindow::new(31, false).is_none());
        assert!(ReplayWindow::new(4097, false).is_none());
        assert_eq!(ReplayWindow::new(32, false).unwrap().slots.len(), 2);
        assert_eq!(ReplayWindow::new(33, false).unwrap().slots.len(), 4);
        assert_eq!(ReplayWindow::new(1024, false).unwrap().slots.len(), 64);
        assert_eq!(ReplayWindow::new(4096, true).unwrap().slots.len(), 256);
    }

    #[test]
    fn basic_sequence() {
        let mut w = ReplayWindow::new(64, false).unwrap();
        assert_eq!(w.check(0), Err(ReplayError::TooOld));
        for s in [1u32, 2, 40, 39, 100] {
            let f = w.check(s).unwrap();
            w.commit(f).unwrap();
        }
        assert_eq!(w.check(40), Err(ReplayError::Replayed));
        assert_eq!(w.check(5), Err(ReplayError::TooOld));
        assert_eq!(w.check(36), Err(ReplayError::TooOld));
        assert_eq!(w.check(37), Ok(37));
        assert_eq!(w.check(100), Err(ReplayError::Replayed));
        assert_eq!(w.commit(100), Err(ReplayError::Replayed));
        assert_eq!(w.top(), 100);
    }

    #[test]
    fn esn_inference_across_boundary() {
        let mut w = ReplayWindow::new(64, true).unwrap();
        // At the very start a number in the top 63 of the space would be
        // read as belonging to sub-space -1, which does not exist.
        assert_eq!(w.check(u32::MAX - 10), Err(ReplayError::TooOld));
        let f = w.check(u32::MAX - 1000).unwrap();
        w.commit(f).unwrap();
        let f = w.check(u32::MAX - 10).unwrap();
        assert_eq!(f, u64::from(u32::MAX - 10));
        w.commit(f).unwrap();
        // Low value after the top: next sub-space.
        let f = w.check(3).unwrap();
        assert_eq!(f, (1 << 32) | 3);
        w.commit(f).unwrap();
        // Late packet from the previous sub-space is still inside the window.
        assert_eq!(w.check(u32::MAX - 20), Ok(u64::from(u32::MAX - 20)));
        assert_eq!(w.check(u32::MAX - 10), Err(ReplayError::Replayed));
        // Far before the window: Appendix A reads it as the *next* sub-space
        // (the ICV, which covers the high bits, then fails).
        assert_eq!(w.check(u32::MAX - 100), Ok((2 << 32) - 101));
        // Same within one sub-space: left of the window means "next".
        let f = w.check(1000).unwrap();
        w.commit(f).unwrap();
        assert_eq!(w.check(900), Ok((2 << 32) | 900));
        assert_eq!(w.check(950), Ok((1 << 32) | 950));
    }

    /// `tl == w - 1` (the RFC's `Tl - W + 1` is 0): no overflow, same answer
    /// as the release build's wrapping arithmetic gave.
    #[test]
    fn esn_inference_at_tl_eq_w_minus_1() {
        for size in [MIN_WINDOW, 64, MAX_WINDOW] {
            let w = ReplayWindow::new(size, true).unwrap();
            for th in [0u64, 1, u64::from(u32::MAX)] {
                let top = (th << 32) | u64::from(size - 1);
                assert_eq!(w.infer_esn(top, 0), Ok(th << 32));
                assert_eq!(w.infer_esn(top, size), Ok((th << 32) | u64::from(size)));
                assert_eq!(w.infer_esn(top, u32::MAX), Ok((th << 32) | 0xffff_ffff));
            }
        }
    }

    /// Threads commit overlapping, shuffled streams through one window: no
    /// number is ever accepted twice, and numbers no thread could have seen
    /// as too old (all threads stay within the window) are accepted once.
    #[test]
    fn concurrent_commits_accept_each_number_once() {
        use std::sync::atomic::AtomicU32;
        use std::sync::Barrier;
        const N: u64 = 200_000;
        const THREADS: u64 = 4;
        for (size, esn, start) in [(1024u32, false, 1u64), (64, true, (1 << 32) - N / 2)] {
            let w = ReplayWindow::new(size, esn).unwrap();
            let hits: Vec<AtomicU32> = (0..N).map(|_| AtomicU32::new(0)).collect();
            let barrier = Barrier::new(THREADS as usize);
            std::thread::scope(|s| {
                for t in 0..THREADS {
                    let (w, hits, barrier) = (&w, &hits, &barrier);
                    s.spawn(move || {
                        // Thread t reverses runs of t + 1 numbers: the
                        // threads disagree on the order inside each run.
                        let run = t + 1;
                        for i in 0..N {
                            if i % 16 == 0 && size >= 1024 {
                                barrier.wait();
                            }
                            let base = i - i % run;
                            let j = (base + run - 1 - i % run).min(N - 1);
                            let seq = start + j;
                            // A wrongly inferred ESN (left of the window)
                            // would fail the ICV: only `seq` gets committed.
                            let Ok(full) = w.check(seq as u32) else {
                                continue;
                            };
                            if full == seq && w.commit_shared(full).is_ok() {
                                hits[j as usize].fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    });
                }
            });
            let counts: Vec<u32> = hits.iter().map(|h| h.load(Ordering::Relaxed)).collect();
            assert!(
                counts.iter().all(|&c| c <= 1),
                "a number was accepted twice"
            );
            if size >= 1024 {
                // With the barrier every 16 numbers, nothing got too old.
                assert!(counts.iter().all(|&c| c == 1), "a number was lost");
            }
            assert_eq!(w.top(), start + N - 1);
        }
    }
}
