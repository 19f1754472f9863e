//! Send pacing: a token bucket on an absolute schedule (packet `i` is due at
//! `i / rate` seconds after the start), with a bounded burst so a sender
//! that fell behind does not catch up with a flood.
//!
//! The burst is a few milliseconds of packets: on a machine where the sender
//! shares its cores with the tunnel under test, a wake-up after a sleep is
//! often late by a scheduler slice (~1-4 ms); a burst of one batch would
//! turn that lateness into a lower offered rate.

const NS_PER_SEC: u128 = 1_000_000_000;

/// Token bucket for `rate` packets per second with at most `burst` packets
/// of credit. Times are nanoseconds since the start of the run.
#[derive(Debug, Clone)]
pub struct Pacer {
    rate: u64,
    burst: u64,
    /// Packets released (sent or skipped) so far.
    released: u64,
    /// Packets the schedule offered while more than `burst` behind.
    skipped: u64,
}

impl Pacer {
    /// A pacer for `rate` (> 0) packets per second.
    pub fn new(rate: u64, burst: u64) -> Pacer {
        Pacer {
            rate: rate.max(1),
            burst: burst.max(1),
            released: 0,
            skipped: 0,
        }
    }

    /// Packets due by `now_ns` on the schedule.
    fn due(&self, now_ns: u64) -> u64 {
        u64::try_from(u128::from(now_ns) * u128::from(self.rate) / NS_PER_SEC).unwrap_or(u64::MAX)
    }

    /// Packets that may be sent now (at most `burst`). Credit beyond the
    /// burst is dropped and counted in `skipped`.
    pub fn available(&mut self, now_ns: u64) -> u64 {
        let due = self.due(now_ns);
        let avail = due.saturating_sub(self.released);
        if avail > self.burst {
            self.skipped += avail - self.burst;
            self.released = due - self.burst;
            return self.burst;
        }
        avail
    }

    /// Marks `n` packets as sent.
    pub fn take(&mut self, n: u64) {
        self.released += n;
    }

    /// Nanoseconds from `now_ns` until `count` more packets are due.
    pub fn ns_until(&self, count: u64, now_ns: u64) -> u64 {
        let target = u128::from(self.released) + u128::from(count);
        let at = (target * NS_PER_SEC).div_ceil(u128::from(self.rate));
        u64::try_from(at).unwrap_or(u64::MAX).saturating_sub(now_ns)
    }

    /// Packets the schedule offered that were never sent because the sender
    /// was more than a burst behind.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }
}

/// Smallest batch worth waking up for at `rate` pps: about 5,000 wake-ups
/// per second at most, 1..=`max`.
pub fn min_batch(rate: u64, max: u64) -> u64 {
    (rate / 5_000).clamp(1, max.max(1))
}

/// Burst allowance at `rate` pps: 4 ms of packets, at least `min`.
pub fn burst_for(rate: u64, min: u64) -> u64 {
    (rate / 250).max(min)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn releases_on_schedule() {
        let mut p = Pacer::new(1000, 64);
        assert_eq!(p.available(0), 0);
        assert_eq!(p.available(MS - 1), 0);
        assert_eq!(p.available(MS), 1);
        assert_eq!(p.available(10 * MS), 10);
        p.take(10);
        assert_eq!(p.available(10 * MS), 0);
        assert_eq!(p.ns_until(1, 10 * MS), MS);
        assert_eq!(p.ns_until(5, 10 * MS + MS / 2), 4 * MS + MS / 2);
        assert_eq!(p.ns_until(1, 20 * MS), 0);
        assert_eq!(p.skipped(), 0);
    }

    #[test]
    fn fractional_intervals_round_up() {
        // 3 pps: packet 1 is due at 333,333,333.3 ns.
        let mut p = Pacer::new(3, 64);
        assert_eq!(p.ns_until(1, 0), 333_333_334);
        assert_eq!(p.available(333_333_333), 0);
        assert_eq!(p.available(333_333_334), 1);
        assert_eq!(p.available(1_000_000_000), 3);
    }

    #[test]
    fn falling_behind_caps_the_burst_and_counts_skipped() {
        let mut p = Pacer::new(1000, 64);
        p.take(10);
        // One second late: 1000 due, 10 sent, only one burst may go out.
        assert_eq!(p.available(1000 * MS), 64);
        assert_eq!(p.skipped(), 1000 - 10 - 64);
        p.take(64);
        assert_eq!(p.available(1000 * MS), 0);
        assert_eq!(p.available(1001 * MS), 1);
        // The total over a run never exceeds rate x time.
        assert!(p.skipped() + 74 <= 1000);
    }

    #[test]
    fn exact_count_over_a_run() {
        // Sending whatever is available at irregular times releases exactly
        // rate x seconds packets.
        let mut p = Pacer::new(123_457, 64);
        let mut sent = 0;
        let mut t = 0;
        while t <= 1_000_000_000 {
            let a = p.available(t);
            p.take(a);
            sent += a;
            t += 7_919 + (t / 13) % 300_000;
        }
        let a = p.available(1_000_000_000);
        sent += a;
        p.take(a);
        assert_eq!(sent + p.skipped(), 123_457);
    }

    #[test]
    fn large_rates_do_not_overflow() {
        let mut p = Pacer::new(100_000_000, 64);
        assert_eq!(p.available(u64::MAX), 64);
        assert!(p.ns_until(1, u64::MAX) == 0);
        let p = Pacer::new(1, 1);
        assert_eq!(p.ns_until(u64::MAX, 0), u64::MAX);
    }

    #[test]
    fn batch_floor() {
        assert_eq!(min_batch(1, 64), 1);
        assert_eq!(min_batch(100_000, 64), 20);
        assert_eq!(min_batch(10_000_000, 64), 64);
        assert_eq!(burst_for(1000, 64), 64);
        assert_eq!(burst_for(150_000, 64), 600);
    }
}
