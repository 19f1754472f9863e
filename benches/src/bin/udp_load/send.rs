//! The paced `sendmmsg` sender.

use std::io;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use crate::args::SendArgs;
use crate::json::Json;
use crate::net::{self, Batch};
use crate::pacer::{burst_for, min_batch, Pacer};
use crate::wire::{payload_len, Header, END_MARKER_SEQ};

/// Datagrams per `sendmmsg`.
pub const BATCH: usize = 64;
/// Extra wall-clock time a sender may take beyond `--secs`.
pub const HARD_EXTRA: Duration = Duration::from_secs(5);
/// End markers sent after the data (any one of them stops the receiver).
const MARKERS: u32 = 3;

/// What a send run did.
#[derive(Debug, Clone, Default)]
pub struct SendReport {
    /// Run id.
    pub run_id: u64,
    /// IP packet size.
    pub size: usize,
    /// Offered rate (0 = unlimited).
    pub target_pps: u64,
    /// Datagrams the sender tried to send (each used one sequence number).
    pub attempted: u64,
    /// Datagrams the kernel accepted.
    pub sent: u64,
    /// Failed sends, all causes.
    pub errors: u64,
    /// Failed with EMSGSIZE (larger than the path MTU; DF is set).
    pub emsgsize: u64,
    /// Failed with ENOBUFS.
    pub enobufs: u64,
    /// Failed with ECONNREFUSED (ICMP port unreachable: no receiver).
    pub refused: u64,
    /// The first error that is none of the above.
    pub first_other_error: Option<String>,
    /// Packets the schedule offered while the sender was more than a burst
    /// behind (the sender could not keep the rate).
    pub skipped: u64,
    /// Seconds from the first send to the end of the last one.
    pub seconds: f64,
    /// Path MTU the kernel knows after the run.
    pub path_mtu: Option<u32>,
    /// Whether the hard time limit stopped the run.
    pub hard_limit: bool,
    /// Whether an EMSGSIZE stopped the run early (the packet does not fit
    /// the path; every further send would fail the same way).
    pub stopped_on_emsgsize: bool,
}

impl SendReport {
    /// Achieved packets per second.
    pub fn pps(&self) -> f64 {
        if self.seconds > 0.0 {
            self.sent as f64 / self.seconds
        } else {
            0.0
        }
    }

    fn count_error(&mut self, e: &io::Error) {
        self.errors += 1;
        match e.raw_os_error() {
            Some(libc::EMSGSIZE) => self.emsgsize += 1,
            Some(libc::ENOBUFS) => self.enobufs += 1,
            Some(libc::ECONNREFUSED) => self.refused += 1,
            _ => {
                if self.first_other_error.is_none() {
                    self.first_other_error = Some(e.to_string());
                }
            }
        }
    }

    /// One JSON line.
    pub fn to_json(&self) -> String {
        let mut j = Json::new();
        j.str("mode", "send")
            .u64("run_id", self.run_id)
            .u64("size", self.size as u64)
            .u64("payload", payload_len(self.size) as u64)
            .u64("target_pps", self.target_pps)
            .u64("attempted", self.attempted)
            .u64("sent", self.sent)
            .u64("errors", self.errors)
            .u64("emsgsize", self.emsgsize)
            .u64("enobufs", self.enobufs)
            .u64("refused", self.refused)
            .opt_str("first_other_error", self.first_other_error.as_deref())
            .u64("skipped", self.skipped)
            .f64("seconds", self.seconds)
            .f64("pps", self.pps())
            .opt_u64("path_mtu", self.path_mtu.map(u64::from))
            .bool("hard_limit", self.hard_limit)
            .bool("stopped_on_emsgsize", self.stopped_on_emsgsize);
        j.finish()
    }
}

/// Sends for `args.secs` and reports.
pub fn run(args: &SendArgs) -> io::Result<SendReport> {
    let sock = UdpSocket::bind("0.0.0.0:0")?;
    sock.connect(args.to)?;
    net::set_dont_fragment(&sock)?;
    // Best effort: a larger send buffer only smooths bursts.
    let _ = net::set_buf(&sock, false, 4 << 20);
    // Bounds a blocked sendmmsg (full send buffer) so the time limits hold.
    sock.set_write_timeout(Some(Duration::from_millis(200)))?;
    net::set_timer_slack_ns(5_000);
    send_loop(&sock, args)
}

fn send_loop(sock: &UdpSocket, args: &SendArgs) -> io::Result<SendReport> {
    let fd = sock.as_raw_fd();
    let len = payload_len(args.size);
    let mut batch = Batch::new(BATCH, len);
    let mut rep = SendReport {
        run_id: args.run_id,
        size: args.size,
        target_pps: args.pps,
        ..SendReport::default()
    };
    let mut pacer = (args.pps > 0).then(|| Pacer::new(args.pps, burst_for(args.pps, BATCH as u64)));
    let floor = min_batch(args.pps, BATCH as u64);
    let end_ns = u64::try_from(args.secs.as_nanos()).unwrap_or(u64::MAX);
    let hard = args.secs + HARD_EXTRA;
    let start = Instant::now();
    let mut seq = 0u64;
    let mut now_ns = 0u64;
    'run: while now_ns < end_ns {
        let n = match pacer.as_mut() {
            None => BATCH as u64,
            Some(p) => {
                let avail = p.available(now_ns);
                if avail < floor {
                    let wait = p.ns_until(floor, now_ns).min(end_ns - now_ns);
                    if wait > 20_000 {
                        std::thread::sleep(Duration::from_nanos(wait));
                    } else {
                        std::thread::yield_now();
                    }
                    now_ns = elapsed_ns(start);
                    // Send what is due at the end even below the floor.
                    if now_ns < end_ns || p.available(end_ns) == 0 {
                        continue;
                    }
                }
                p.available(now_ns.min(end_ns)).min(BATCH as u64)
            }
        };
        if n == 0 {
            now_ns = elapsed_ns(start);
            continue;
        }
        let n = n as usize;
        for i in 0..n {
            let h = Header {
                seq: seq + i as u64,
                run_id: args.run_id,
            };
            // Slots hold at least HEADER_LEN bytes (--size >= MIN_IP_SIZE).
            h.encode(batch.slot_mut(i))
                .map_err(|e| io::Error::other(e.to_string()))?;
        }
        let mut off = 0;
        while off < n {
            let r = if args.gso {
                let per = (net::GSO_MAX_BYTES / len.max(1)).clamp(1, BATCH);
                batch.send_gso(fd, off, (n - off).min(per), len)
            } else {
                batch.send(fd, off, n - off, len)
            };
            match r {
                Ok(k) => {
                    rep.sent += k as u64;
                    off += k.max(1);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    rep.count_error(&e);
                    off += 1;
                    if e.raw_os_error() == Some(libc::EMSGSIZE) {
                        rep.stopped_on_emsgsize = true;
                        rep.attempted += off as u64;
                        break 'run;
                    }
                }
            }
            if start.elapsed() >= hard {
                rep.hard_limit = true;
                rep.attempted += off as u64;
                break 'run;
            }
        }
        rep.attempted += n as u64;
        seq += n as u64;
        if let Some(p) = pacer.as_mut() {
            p.take(n as u64);
        }
        now_ns = elapsed_ns(start);
    }
    rep.seconds = start.elapsed().as_secs_f64();
    rep.skipped = pacer.map_or(0, |p| p.skipped());
    send_markers(sock, &mut batch, args.run_id, len, start, hard);
    rep.path_mtu = net::path_mtu(sock).ok();
    Ok(rep)
}

fn elapsed_ns(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Sends the end markers, 2 ms apart; errors are ignored (the receiver
/// also stops on its own timers).
fn send_markers(
    sock: &UdpSocket,
    batch: &mut Batch,
    run_id: u64,
    len: usize,
    start: Instant,
    hard: Duration,
) {
    let h = Header {
        seq: END_MARKER_SEQ,
        run_id,
    };
    if h.encode(batch.slot_mut(0)).is_err() {
        return;
    }
    for _ in 0..MARKERS {
        if start.elapsed() >= hard {
            return;
        }
        let _ = batch.send(sock.as_raw_fd(), 0, 1, len);
        std::thread::sleep(Duration::from_millis(2));
    }
}
