//! Traffic between lab namespaces: a bulk TCP transfer checked with SHA-256
//! and a UDP echo probe that measures interruptions.
//!
//! Sockets are created on threads that entered the namespace
//! ([`crate::in_netns`]) and are then used from ordinary threads. Every wait
//! is bounded.

use crate::{in_netns, LabError, Result};
use sha2::{Digest, Sha256};
use std::fmt;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A SHA-256 digest, printed in hex.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Digest256(pub [u8; 32]);

impl fmt::Display for Digest256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Digest256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Result of [`tcp_transfer`].
#[derive(Clone, Debug)]
pub struct TransferReport {
    /// Bytes written by the sender.
    pub sent: u64,
    /// Bytes read by the receiver.
    pub received: u64,
    /// SHA-256 of what was sent.
    pub sha_sent: Digest256,
    /// SHA-256 of what was received.
    pub sha_received: Digest256,
    /// From connect to the receiver's end of stream.
    pub elapsed: Duration,
}

impl TransferReport {
    /// Everything arrived, unchanged.
    pub fn intact(&self) -> bool {
        self.sent == self.received && self.sha_sent == self.sha_received
    }

    /// Throughput in Mbit/s.
    pub fn mbit_per_s(&self) -> f64 {
        self.received as f64 * 8.0 / self.elapsed.as_secs_f64().max(1e-9) / 1e6
    }
}

impl fmt::Display for TransferReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of {} bytes in {:.2} s ({:.0} Mbit/s), sha256 sent {} received {}",
            self.received,
            self.sent,
            self.elapsed.as_secs_f64(),
            self.mbit_per_s(),
            self.sha_sent,
            self.sha_received
        )
    }
}

/// Deterministic pseudo-random filler (xorshift64*), so a lost, duplicated
/// or reordered chunk changes the digest.
struct Filler(u64);

impl Filler {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            let v = x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LabError {
    let what = what.into();
    move |source| LabError::Io { what, source }
}

/// Send `bytes` of pseudo-random data over TCP from namespace `src_ns` to
/// `dst:port`, where a receiver runs in `dst_ns`, and hash both ends.
///
/// Fails with [`LabError::Timeout`] when the whole transfer (connect
/// included) does not finish within `timeout`; a stalled connection is
/// detected within 10 s of silence even when `timeout` is longer.
pub fn tcp_transfer(
    src_ns: &str,
    dst_ns: &str,
    dst: impl Into<IpAddr>,
    port: u16,
    bytes: u64,
    timeout: Duration,
) -> Result<TransferReport> {
    tcp_transfer_paced(src_ns, dst_ns, dst, port, bytes, None, timeout)
}

/// Like [`tcp_transfer`], but the sender writes at most `pace` bytes per
/// second (when given), so that a transfer of `bytes` lasts about
/// `bytes / pace` seconds — e.g. to span rekeys.
pub fn tcp_transfer_paced(
    src_ns: &str,
    dst_ns: &str,
    dst: impl Into<IpAddr>,
    port: u16,
    bytes: u64,
    pace: Option<u64>,
    timeout: Duration,
) -> Result<TransferReport> {
    let stall = Duration::from_secs(10);
    tcp_transfer_stall(src_ns, dst_ns, dst, port, bytes, pace, timeout, stall)
}

/// Like [`tcp_transfer_paced`], with the silence that counts as a stalled
/// connection given: a flow that lost packets for some seconds (a dead
/// tunnel, until traffic moves to another) may be silent for twice that
/// by TCP's exponential retransmission backoff.
#[allow(clippy::too_many_arguments)]
pub fn tcp_transfer_stall(
    src_ns: &str,
    dst_ns: &str,
    dst: impl Into<IpAddr>,
    port: u16,
    bytes: u64,
    pace: Option<u64>,
    timeout: Duration,
    stall: Duration,
) -> Result<TransferReport> {
    let dst: IpAddr = dst.into();
    let deadline = Instant::now() + timeout;
    let stall = stall.min(timeout);
    let listener = in_netns(dst_ns, || TcpListener::bind((dst, port)))?
        .map_err(io(format!("bind {dst}:{port} in {dst_ns}")))?;
    listener
        .set_nonblocking(true)
        .map_err(io("listener nonblocking"))?;
    let rx = std::thread::spawn(move || -> Result<(u64, Digest256)> {
        let mut s = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if Instant::now() > deadline {
                        return Err(LabError::Timeout {
                            what: "TCP connection at the receiver".into(),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(io("accept")(e)),
            }
        };
        s.set_nonblocking(false).map_err(io("stream blocking"))?;
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .map_err(io("SO_RCVTIMEO"))?;
        let mut h = Sha256::new();
        let mut n = 0u64;
        let mut buf = vec![0u8; 256 * 1024];
        let mut last = Instant::now();
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => {
                    h.update(&buf[..k]);
                    n += k as u64;
                    last = Instant::now();
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(io(format!("receive after {n} bytes"))(e)),
            }
            if Instant::now() > deadline || last.elapsed() > stall {
                return Err(LabError::Timeout {
                    what: format!("TCP transfer: receiver got {n} bytes"),
                });
            }
        }
        Ok((n, Digest256(h.finalize().into())))
    });
    let sa = SocketAddr::from((dst, port));
    let t0 = Instant::now();
    let sender = (|| -> Result<(u64, Digest256)> {
        let mut s = in_netns(src_ns, || TcpStream::connect_timeout(&sa, stall))?
            .map_err(io(format!("connect to {sa} from {src_ns}")))?;
        s.set_write_timeout(Some(Duration::from_millis(500)))
            .map_err(io("SO_SNDTIMEO"))?;
        let mut h = Sha256::new();
        let mut f = Filler(0x9e37_79b9_7f4a_7c15 ^ bytes);
        let mut buf = vec![0u8; 64 * 1024];
        let mut sent = 0u64;
        let mut last = Instant::now();
        let t_send = Instant::now();
        while sent < bytes {
            if let Some(rate) = pace.filter(|r| *r > 0) {
                let due = Duration::from_secs_f64(sent as f64 / rate as f64);
                let el = t_send.elapsed();
                if due > el {
                    std::thread::sleep(due - el);
                }
                last = Instant::now();
            }
            let k = (bytes - sent).min(buf.len() as u64) as usize;
            f.fill(&mut buf[..k]);
            h.update(&buf[..k]);
            let mut off = 0;
            while off < k {
                match s.write(&buf[off..k]) {
                    Ok(w) => {
                        off += w;
                        last = Instant::now();
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                        ) => {}
                    Err(e) => return Err(io(format!("send after {} bytes", sent + off as u64))(e)),
                }
                if Instant::now() > deadline || last.elapsed() > stall {
                    return Err(LabError::Timeout {
                        what: format!(
                            "TCP transfer: sender stuck after {} bytes",
                            sent + off as u64
                        ),
                    });
                }
            }
            sent += k as u64;
        }
        s.shutdown(std::net::Shutdown::Write)
            .map_err(io("shutdown"))?;
        // Wait for the receiver to close (it reads to end of stream).
        Ok((sent, Digest256(h.finalize().into())))
    })();
    let received = rx
        .join()
        .map_err(|_| LabError::Invalid("receiver thread panicked".into()))?;
    let elapsed = t0.elapsed();
    let (sent, sha_sent) = sender?;
    let (received, sha_received) = received?;
    Ok(TransferReport {
        sent,
        received,
        sha_sent,
        sha_received,
        elapsed,
    })
}

/// A UDP echo server in one namespace and a prober in another: the prober
/// sends a numbered datagram every `interval` and records when each echo
/// comes back, so the longest silence can be measured around an event.
pub struct UdpProbe {
    stop: Arc<AtomicBool>,
    replies: Arc<Mutex<Vec<(u64, Instant)>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    start: Instant,
}

impl fmt::Debug for UdpProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpProbe")
            .field("replies", &self.replies.lock().map(|r| r.len()).ok())
            .finish()
    }
}

impl UdpProbe {
    /// Start the echo server on `server:port` in `server_ns` and the prober
    /// in `client_ns`.
    pub fn start(
        client_ns: &str,
        server_ns: &str,
        server: Ipv4Addr,
        port: u16,
        interval: Duration,
    ) -> Result<UdpProbe> {
        let srv = in_netns(server_ns, || UdpSocket::bind((server, port)))?
            .map_err(io(format!("bind udp {server}:{port}")))?;
        let cli = in_netns(client_ns, || UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)))?
            .map_err(io("bind udp client"))?;
        for s in [&srv, &cli] {
            s.set_read_timeout(Some(Duration::from_millis(50)))
                .map_err(io("SO_RCVTIMEO"))?;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let replies = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        let st = stop.clone();
        threads.push(std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            while !st.load(Ordering::Relaxed) {
                if let Ok((n, from)) = srv.recv_from(&mut buf) {
                    let _ = srv.send_to(&buf[..n], from);
                }
            }
        }));
        let cli2 = cli.try_clone().map_err(io("clone udp socket"))?;
        let st = stop.clone();
        let dst = SocketAddr::from((server, port));
        threads.push(std::thread::spawn(move || {
            let mut seq = 0u64;
            let mut next = Instant::now();
            while !st.load(Ordering::Relaxed) {
                let _ = cli2.send_to(&seq.to_be_bytes(), dst);
                seq += 1;
                next += interval;
                let now = Instant::now();
                if next > now {
                    std::thread::sleep(next - now);
                } else {
                    next = now;
                }
            }
        }));
        let st = stop.clone();
        let rep = replies.clone();
        threads.push(std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            while !st.load(Ordering::Relaxed) {
                if let Ok((8, _)) = cli.recv_from(&mut buf) {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&buf[..8]);
                    if let Ok(mut r) = rep.lock() {
                        r.push((u64::from_be_bytes(b), Instant::now()));
                    }
                }
            }
        }));
        Ok(UdpProbe {
            stop,
            replies,
            threads,
            start: Instant::now(),
        })
    }

    /// Number of echoes received so far.
    pub fn replies(&self) -> usize {
        self.replies.lock().map(|r| r.len()).unwrap_or(0)
    }

    /// Time of the last echo received.
    pub fn last_reply(&self) -> Option<Instant> {
        self.replies.lock().ok().and_then(|r| r.last().map(|x| x.1))
    }

    /// Wait (bounded) until an echo arrives after `after`; returns its time.
    pub fn wait_reply_after(&self, after: Instant, timeout: Duration) -> Option<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(t) = self.last_reply().filter(|t| *t > after) {
                return Some(t);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The longest interval without an echo that overlaps `[from, to]`
    /// (measured between consecutive echoes).
    pub fn longest_gap(&self, from: Instant, to: Instant) -> Duration {
        let r = match self.replies.lock() {
            Ok(r) => r.clone(),
            Err(_) => return Duration::ZERO,
        };
        let mut prev = self.start;
        let mut gap = Duration::ZERO;
        for (_, t) in r.iter().chain(std::iter::once(&(0, to))) {
            if *t >= from && prev <= to {
                gap = gap.max(t.saturating_duration_since(prev));
            }
            prev = *t;
        }
        gap
    }

    /// Stop all threads.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for UdpProbe {
    fn drop(&mut self) {
        self.halt();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filler_is_deterministic_and_not_constant() {
        let (mut a, mut b) = (Filler(7), Filler(7));
        let (mut x, mut y) = ([0u8; 100], [0u8; 100]);
        a.fill(&mut x);
        b.fill(&mut y);
        assert_eq!(x, y);
        assert!(x.windows(2).any(|w| w[0] != w[1]));
        a.fill(&mut x);
        assert_ne!(x, y);
    }

    #[test]
    fn digest_hex() {
        let d = Digest256(Sha256::digest(b"abc").into());
        assert_eq!(
            d.to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
