//! The `recvmmsg` receiver: counts the datagrams of one run and which
//! sequence numbers arrived.

use std::io;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use crate::args::RecvArgs;
use crate::json::Json;
use crate::net::{self, Batch};
use crate::wire::{Header, END_MARKER_SEQ};

/// Datagrams per `recvmmsg`.
pub const BATCH: usize = 64;
/// Bytes kept of each datagram (only the header is read).
const SLOT: usize = 64;
/// Requested receive buffer.
pub const RCVBUF: usize = 8 << 20;
/// Extra wall-clock time a receiver may take beyond `--secs`.
pub const HARD_EXTRA: Duration = Duration::from_secs(5);
/// After the first datagram, stop this long after `--secs` at the latest.
const GRACE: Duration = Duration::from_secs(1);
/// After the first datagram, stop when none arrived for this long.
const IDLE: Duration = Duration::from_secs(1);
/// Keep reading this long after an end marker (stragglers).
const LINGER: Duration = Duration::from_millis(200);
/// How often the loop checks its timers when nothing arrives.
const POLL: Duration = Duration::from_millis(50);
/// Highest sequence number tracked (bitmap of at most 32 MiB).
pub const MAX_TRACKED_SEQ: u64 = (1 << 28) - 1;

/// Outcome of recording one sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// First time, in order.
    New,
    /// First time, below a sequence number seen earlier.
    Reordered,
    /// Seen before.
    Duplicate,
    /// Above `MAX_TRACKED_SEQ`: not tracked.
    OutOfRange,
}

/// Which sequence numbers arrived (a growable bitmap).
#[derive(Debug, Default)]
pub struct SeqTracker {
    bits: Vec<u64>,
    max_seq: Option<u64>,
    /// Distinct sequence numbers.
    pub unique: u64,
    /// Repeated sequence numbers.
    pub duplicates: u64,
    /// New sequence numbers below the highest seen before them.
    pub out_of_order: u64,
    /// Sequence numbers above `MAX_TRACKED_SEQ`.
    pub out_of_range: u64,
}

impl SeqTracker {
    /// Records one arrival.
    pub fn record(&mut self, seq: u64) -> Seen {
        if seq > MAX_TRACKED_SEQ {
            self.out_of_range += 1;
            return Seen::OutOfRange;
        }
        let word = (seq / 64) as usize;
        let bit = 1u64 << (seq % 64);
        if word >= self.bits.len() {
            self.bits
                .resize((word + 1).next_power_of_two().max(1024), 0);
        }
        if self.bits[word] & bit != 0 {
            self.duplicates += 1;
            return Seen::Duplicate;
        }
        self.bits[word] |= bit;
        self.unique += 1;
        match self.max_seq {
            Some(m) if seq < m => {
                self.out_of_order += 1;
                Seen::Reordered
            }
            _ => {
                self.max_seq = Some(seq);
                Seen::New
            }
        }
    }

    /// Highest sequence number seen.
    pub fn max_seq(&self) -> Option<u64> {
        self.max_seq
    }
}

/// Why the receiver stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Stop {
    /// An end marker arrived (plus the linger time).
    Marker,
    /// Nothing arrived for `IDLE` after the first datagram.
    Idle,
    /// `--secs` + `GRACE` after the first datagram.
    Duration,
    /// `--secs` + `HARD_EXTRA` after the start.
    #[default]
    HardLimit,
}

impl Stop {
    fn name(self) -> &'static str {
        match self {
            Stop::Marker => "marker",
            Stop::Idle => "idle",
            Stop::Duration => "duration",
            Stop::HardLimit => "hard_limit",
        }
    }
}

/// What a receive run saw.
#[derive(Debug, Default)]
pub struct RecvReport {
    /// Run id counted.
    pub run_id: u64,
    /// Data datagrams of this run (duplicates included).
    pub received: u64,
    /// Their sequence numbers.
    pub seqs: SeqTracker,
    /// Datagrams of other runs.
    pub stale: u64,
    /// Datagrams too short for the header.
    pub short: u64,
    /// UDP payload bytes of this run's data datagrams.
    pub bytes: u64,
    /// Seconds from the receiver's start to the first / last data datagram.
    pub first_s: Option<f64>,
    /// See `first_s`.
    pub last_s: Option<f64>,
    /// Whether an end marker arrived.
    pub end_marker: bool,
    /// Why the loop ended.
    pub stop: Stop,
    /// Receive buffer option used and the size the kernel reports.
    pub rcvbuf: Option<(net::BufOption, usize)>,
}

impl RecvReport {
    /// Seconds between the first and the last data datagram.
    pub fn span_s(&self) -> f64 {
        match (self.first_s, self.last_s) {
            (Some(a), Some(b)) => b - a,
            _ => 0.0,
        }
    }

    /// Distinct datagrams per second over the span.
    pub fn pps(&self) -> f64 {
        let s = self.span_s();
        if s > 0.0 {
            self.seqs.unique as f64 / s
        } else {
            0.0
        }
    }

    /// Counts one datagram at `t` seconds.
    fn datagram(&mut self, payload: &[u8], len: usize, run_id: u64, t: f64) -> Option<Header> {
        let h = match Header::decode(payload) {
            Ok(h) => h,
            Err(_) => {
                self.short += 1;
                return None;
            }
        };
        if h.run_id != run_id {
            self.stale += 1;
            return None;
        }
        if h.seq == END_MARKER_SEQ {
            self.end_marker = true;
            return Some(h);
        }
        self.received += 1;
        self.bytes += len as u64;
        self.seqs.record(h.seq);
        self.first_s.get_or_insert(t);
        self.last_s = Some(t);
        Some(h)
    }

    /// One JSON line.
    pub fn to_json(&self) -> String {
        let mut j = Json::new();
        j.str("mode", "recv")
            .u64("run_id", self.run_id)
            .u64("received", self.received)
            .u64("unique", self.seqs.unique)
            .u64("duplicates", self.seqs.duplicates)
            .u64("out_of_order", self.seqs.out_of_order)
            .u64("out_of_range", self.seqs.out_of_range)
            .u64("stale", self.stale)
            .u64("short", self.short)
            .u64("bytes", self.bytes)
            .opt_u64("max_seq", self.seqs.max_seq())
            .opt_f64("first_s", self.first_s)
            .opt_f64("last_s", self.last_s)
            .f64("span_s", self.span_s())
            .f64("pps", self.pps())
            .bool("end_marker", self.end_marker)
            .str("stop", self.stop.name())
            .opt_str("rcvbuf_option", self.rcvbuf.map(|r| r.0.name()))
            .opt_u64("rcvbuf", self.rcvbuf.map(|r| r.1 as u64));
        j.finish()
    }
}

/// Binds the receive socket (separate from `run` so a caller can learn the
/// port before the sender starts).
pub fn bind(args: &RecvArgs) -> io::Result<(UdpSocket, Option<(net::BufOption, usize)>)> {
    let sock = UdpSocket::bind(args.bind)?;
    let buf = net::set_buf(&sock, true, RCVBUF).ok();
    sock.set_read_timeout(Some(POLL))?;
    Ok((sock, buf))
}

/// Receives until a stop condition and reports.
pub fn run(
    sock: &UdpSocket,
    rcvbuf: Option<(net::BufOption, usize)>,
    args: &RecvArgs,
) -> io::Result<RecvReport> {
    let fd = sock.as_raw_fd();
    let mut batch = Batch::new(BATCH, SLOT);
    let mut rep = RecvReport {
        run_id: args.run_id,
        rcvbuf,
        ..RecvReport::default()
    };
    let start = Instant::now();
    let hard = args.secs + HARD_EXTRA;
    let mut first: Option<Instant> = None;
    let mut last = start;
    let mut linger_until: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let stop = if now.duration_since(start) >= hard {
            Some(Stop::HardLimit)
        } else if linger_until.is_some_and(|t| now >= t) {
            Some(Stop::Marker)
        } else if first.is_some_and(|f| now.duration_since(f) >= args.secs + GRACE) {
            Some(Stop::Duration)
        } else if first.is_some() && now.duration_since(last) >= IDLE {
            Some(Stop::Idle)
        } else {
            None
        };
        if let Some(s) = stop {
            rep.stop = s;
            return Ok(rep);
        }
        let n = match batch.recv(fd) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(e) => return Err(e),
        };
        let now = Instant::now();
        let t = now.duration_since(start).as_secs_f64();
        for i in 0..n {
            let h = rep.datagram(batch.received(i), batch.received_len(i), args.run_id, t);
            match h {
                Some(h) if h.seq == END_MARKER_SEQ => {
                    linger_until.get_or_insert(now + LINGER);
                }
                Some(_) => {
                    first.get_or_insert(now);
                    last = now;
                }
                None => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracker_counts_unique_duplicates_and_reordering() {
        let mut t = SeqTracker::default();
        assert_eq!(t.record(0), Seen::New);
        assert_eq!(t.record(2), Seen::New);
        assert_eq!(t.record(1), Seen::Reordered);
        assert_eq!(t.record(2), Seen::Duplicate);
        assert_eq!(t.record(100_000), Seen::New);
        assert_eq!(t.record(99_999), Seen::Reordered);
        assert_eq!(t.record(MAX_TRACKED_SEQ), Seen::New);
        assert_eq!(t.record(MAX_TRACKED_SEQ + 1), Seen::OutOfRange);
        assert_eq!(t.record(u64::MAX - 1), Seen::OutOfRange);
        assert_eq!(
            (t.unique, t.duplicates, t.out_of_order, t.out_of_range),
            (6, 1, 2, 2)
        );
        assert_eq!(t.max_seq(), Some(MAX_TRACKED_SEQ));
    }

    #[test]
    fn report_filters_runs_and_short_datagrams() {
        let mut r = RecvReport {
            run_id: 5,
            ..RecvReport::default()
        };
        let mut buf = [0u8; 36];
        let mut put = |seq, run_id, r: &mut RecvReport, t| {
            Header { seq, run_id }.encode(&mut buf).unwrap();
            r.datagram(&buf, 36, 5, t)
        };
        assert!(put(7, 4, &mut r, 0.5).is_none());
        assert!(put(0, 5, &mut r, 1.0).is_some());
        assert!(put(1, 5, &mut r, 1.5).is_some());
        assert!(put(1, 5, &mut r, 2.0).is_some());
        assert!(put(END_MARKER_SEQ, 5, &mut r, 3.0).is_some());
        assert!(r.datagram(&[0u8; 15], 15, 5, 3.0).is_none());
        assert_eq!(
            (
                r.received,
                r.seqs.unique,
                r.seqs.duplicates,
                r.stale,
                r.short
            ),
            (3, 2, 1, 1, 1)
        );
        assert_eq!(r.bytes, 108);
        assert!(r.end_marker);
        assert_eq!((r.first_s, r.last_s), (Some(1.0), Some(2.0)));
        assert_eq!(r.pps(), 2.0);
        let j = r.to_json();
        assert!(
            j.contains("\"unique\":2,") && j.contains("\"stale\":1,"),
            "{j}"
        );
    }
}
