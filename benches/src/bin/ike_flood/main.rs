//! `ike_flood`: a bounded IKE_SA_INIT flood generator for tests and the
//! flood benchmark (`benches/ike-flood/compare.sh`).
//!
//! Sends `--count` IKE_SA_INIT requests (valid header, SA with one
//! AES-GCM-16-256 / PRF-HMAC-SHA-256 / Curve25519 proposal, KE, Nonce) to
//! `--dst`:500 within `--secs`, each from its own initiator SPI and a
//! source address and port drawn from `--src-net`, through a raw socket
//! with `IP_HDRINCL`. A capture thread reads the answers on `--iface`
//! (`AF_PACKET`), counts them by type (IKE_SA_INIT reply, COOKIE, other)
//! and, with `--answer-cookies`, sends each request again with its cookie
//! as an initiator would. Prints one JSON line and stops by itself.
//!
//! It refuses to run unless it is inside the network namespace named by
//! `--netns` (a namespace under /run/netns, not the initial one), the
//! destination is in 10.0.0.0/8 and the sources in the benchmarking range
//! 198.18.0.0/15 (RFC 2544): the sources must be routed back to this
//! namespace by the test that created it.

mod args;
mod capture;
mod wire;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let a = match args::parse(&argv) {
        Ok(Some(a)) => a,
        Ok(None) => {
            println!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("ike_flood: {e}\n{}", args::USAGE);
            return ExitCode::from(2);
        }
    };
    if let Err(e) = args::check_namespace(&a.netns) {
        eprintln!("ike_flood: refusing to run: {e}");
        return ExitCode::from(2);
    }
    match run(&a) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ike_flood: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(a: &args::Args) -> std::io::Result<String> {
    let sender = wire::RawSender::open()?;
    let flood = wire::Flood::new(a);
    let stop = Arc::new(AtomicBool::new(false));
    let cap = capture::Capture::open(&a.iface)?;
    let started = Instant::now();
    let hard_stop = started + a.secs + Duration::from_secs(5);
    let counts = std::thread::scope(|s| -> std::io::Result<capture::Counts> {
        let rx = s.spawn(|| cap.run(&flood, a, &stop, hard_stop));
        let sent = send_all(&sender, &flood, a, started);
        // Let the last answers arrive.
        std::thread::sleep(a.linger);
        stop.store(true, Ordering::Relaxed);
        let mut counts = rx
            .join()
            .map_err(|_| std::io::Error::other("capture thread panicked"))??;
        counts.sent = sent?;
        Ok(counts)
    })?;
    let mut j = String::new();
    use std::fmt::Write as _;
    let _ = write!(
        j,
        "{{\"sent\":{},\"send_secs\":{:.3},\"pps\":{:.0},\"cookie_retries\":{},\
         \"responses\":{{\"sa_init\":{},\"cookie\":{},\"other\":{}}},\
         \"answered\":{},\"none\":{},\"elapsed_secs\":{:.3}}}",
        counts.sent.0,
        counts.sent.1.as_secs_f64(),
        counts.sent.0 as f64 / counts.sent.1.as_secs_f64().max(1e-6),
        counts.cookie_retries,
        counts.sa_init,
        counts.cookie,
        counts.other,
        counts.answered,
        counts.sent.0.saturating_sub(counts.answered),
        started.elapsed().as_secs_f64(),
    );
    Ok(j)
}

/// Sends the `--count` first requests, paced to spread them over
/// `--secs` (or as fast as possible with `--rate 0`); returns how many were
/// sent and how long it took.
fn send_all(
    tx: &wire::RawSender,
    flood: &wire::Flood,
    a: &args::Args,
    started: Instant,
) -> std::io::Result<(u64, Duration)> {
    let deadline = started + a.secs;
    let mut sent = 0u64;
    let mut pkt = Vec::with_capacity(512);
    for i in 0..a.count {
        if Instant::now() >= deadline {
            break;
        }
        if a.rate > 0 {
            let due = started + Duration::from_secs_f64(i as f64 / a.rate as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        flood.packet(i, None, &mut pkt);
        match tx.send(&pkt, a.dst) {
            Ok(()) => sent += 1,
            // A full socket buffer under load: try the next one.
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {}
            Err(e) => return Err(e),
        }
    }
    Ok((sent, started.elapsed()))
}
