//! Anti-replay window (RFC 4303 §3.4.3 and Appendix A).
//!
//! A bitmap ring in the style of RFC 6479: the window of `size` sequence
//! numbers ending at the highest authenticated number is stored in a
//! power-of-two ring of 64-bit words, so advancing the window clears whole
//! words instead of shifting the bitmap. With extended sequence numbers only
//! the low 32 bits travel on the wire; [`ReplayWindow::check`] infers the high
//! 32 bits as in Appendix A.
//!
//! The protocol is *check, then authenticate, then commit*: [`check`] is
//! cheap and runs before decryption, [`commit`] runs only after the ICV
//! verified (and re-checks, because another packet may have moved the window
//! in between).
//!
//! [`check`]: ReplayWindow::check
//! [`commit`]: ReplayWindow::commit

use core::fmt;

/// Smallest supported window size.
pub const MIN_WINDOW: u32 = 32;
/// Largest supported window size.
pub const MAX_WINDOW: u32 = 4096;
/// A common default (AWS site-to-site VPN uses 1024).
pub const DEFAULT_WINDOW: u32 = 1024;

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

/// The receive-side sliding window of one inbound SA.
#[derive(Clone)]
pub struct ReplayWindow {
    size: u32,
    esn: bool,
    /// Highest authenticated 64-bit sequence number; 0 = none yet.
    top: u64,
    /// Ring of words; bit `s & 63` of word `(s >> 6) & mask` is sequence `s`.
    bits: Box<[u64]>,
    mask: u64,
}

impl fmt::Debug for ReplayWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayWindow")
            .field("size", &self.size)
            .field("esn", &self.esn)
            .field("top", &self.top)
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
        // One spare word so the window never shares a word with stale bits.
        let words = (size as usize).div_ceil(64) + 1;
        let words = words.next_power_of_two();
        Some(ReplayWindow {
            size,
            esn,
            top: 0,
            bits: vec![0u64; words].into_boxed_slice(),
            mask: words as u64 - 1,
        })
    }

    /// The configured window size.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Highest authenticated sequence number so far (0 if none).
    pub fn top(&self) -> u64 {
        self.top
    }

    /// Infers the full sequence number of a packet carrying `seq_low` and
    /// checks it against the window without changing anything. Returns the
    /// full (64-bit with ESN) number to authenticate and later commit.
    pub fn check(&self, seq_low: u32) -> Result<u64, ReplayError> {
        let seq = if self.esn {
            self.infer_esn(seq_low)?
        } else {
            u64::from(seq_low)
        };
        self.check_full(seq)?;
        Ok(seq)
    }

    /// RFC 4303 Appendix A2.1: high-order bits from the window position.
    #[allow(clippy::int_plus_one)] // written as in the RFC
    fn infer_esn(&self, seql: u32) -> Result<u64, ReplayError> {
        let w = self.size;
        let tl = self.top as u32;
        let th = (self.top >> 32) as u32;
        let seqh = if tl >= w - 1 {
            // Window lies within one 2^32 sub-space.
            if seql >= tl - w + 1 {
                th
            } else {
                th.checked_add(1).ok_or(ReplayError::TooOld)?
            }
        } else if seql >= tl.wrapping_sub(w - 1) {
            // Window spans two sub-spaces; the packet is in the lower one.
            th.checked_sub(1).ok_or(ReplayError::TooOld)?
        } else {
            th
        };
        Ok((u64::from(seqh) << 32) | u64::from(seql))
    }

    fn check_full(&self, seq: u64) -> Result<(), ReplayError> {
        if seq == 0 {
            return Err(ReplayError::TooOld);
        }
        if seq > self.top {
            return Ok(());
        }
        if self.top - seq >= u64::from(self.size) {
            return Err(ReplayError::TooOld);
        }
        if self.bits[self.word(seq)] & (1 << (seq & 63)) != 0 {
            return Err(ReplayError::Replayed);
        }
        Ok(())
    }

    #[inline]
    fn word(&self, seq: u64) -> usize {
        // `mask` < bits.len() <= 128, so the cast is lossless.
        ((seq >> 6) & self.mask) as usize
    }

    /// Marks the full sequence number `seq` (as returned by
    /// [`ReplayWindow::check`]) as received, after its ICV verified. Re-checks
    /// first: if another packet moved the window meanwhile, this may fail.
    pub fn commit(&mut self, seq: u64) -> Result<(), ReplayError> {
        self.check_full(seq)?;
        if seq > self.top {
            let old_word = self.top >> 6;
            let new_word = seq >> 6;
            let n = self.bits.len() as u64;
            if new_word - old_word >= n {
                self.bits.fill(0);
            } else {
                for w in old_word + 1..=new_word {
                    let i = self.word(w << 6);
                    self.bits[i] = 0;
                }
            }
            self.top = seq;
        }
        let i = self.word(seq);
        self.bits[i] |= 1 << (seq & 63);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert!(ReplayWindow::new(31, false).is_none());
        assert!(ReplayWindow::new(4097, false).is_none());
        assert_eq!(ReplayWindow::new(32, false).unwrap().bits.len(), 2);
        assert_eq!(ReplayWindow::new(1024, false).unwrap().bits.len(), 32);
        assert_eq!(ReplayWindow::new(4096, true).unwrap().bits.len(), 128);
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
}
