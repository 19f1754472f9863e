//! `udp_load`: UDP load generator for the end-to-end benchmark
//! (`benches/e2e/run.sh`).
//!
//! `udp_load send` offers IPv4 packets of a given size at a paced rate
//! (token bucket, `sendmmsg` batches of up to 64) with the DF bit set, so a
//! packet larger than the path fails with EMSGSIZE instead of being
//! fragmented. Every payload starts with a sequence number and a run id.
//! `udp_load recv` counts the datagrams of one run with `recvmmsg` and
//! which sequence numbers arrived, so loss = 1 - unique / sent. Both print
//! one JSON line and stop by themselves (at the latest `--secs` + 5 s).

mod args;
mod json;
mod net;
mod pacer;
mod recv;
mod send;
mod wire;

use std::process::ExitCode;

use args::Command;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let cmd = match args::parse(&argv) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("udp_load: {e}\n{}", args::USAGE);
            return ExitCode::from(2);
        }
    };
    let line = match cmd {
        Command::Help => {
            println!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Command::Recv(a) => recv::bind(&a)
            .and_then(|(sock, buf)| recv::run(&sock, buf, &a))
            .map(|r| r.to_json()),
        Command::Send(a) => send::run(&a).map(|r| r.to_json()),
    };
    match line {
        Ok(l) => {
            println!("{l}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("udp_load: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{SocketAddrV4, UdpSocket};
    use std::time::Duration;

    use crate::args::{RecvArgs, SendArgs};
    use crate::wire::{Header, END_MARKER_SEQ};
    use crate::{recv, send};

    fn receiver(
        secs: f64,
        run_id: u64,
    ) -> (UdpSocket, Option<(crate::net::BufOption, usize)>, RecvArgs) {
        let a = RecvArgs {
            bind: "127.0.0.1:0".parse().unwrap(),
            secs: Duration::from_secs_f64(secs),
            run_id,
        };
        let (sock, buf) = recv::bind(&a).unwrap();
        (sock, buf, a)
    }

    fn local(sock: &UdpSocket) -> SocketAddrV4 {
        match sock.local_addr().unwrap() {
            std::net::SocketAddr::V4(a) => a,
            other => panic!("{other}"),
        }
    }

    /// A paced loopback run: the counts add up and stale datagrams of another
    /// run are ignored.
    #[test]
    fn loopback_paced_run() {
        let (sock, buf, ra) = receiver(0.3, 77);
        let to = local(&sock);
        // Stale datagrams of an earlier run, already queued.
        let stale = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut p = [0u8; 36];
        for seq in 0..5 {
            Header { seq, run_id: 76 }.encode(&mut p).unwrap();
            stale.send_to(&p, to).unwrap();
        }
        let rx = std::thread::spawn(move || recv::run(&sock, buf, &ra).unwrap());
        let sa = SendArgs {
            to,
            size: 64,
            pps: 2000,
            secs: Duration::from_secs_f64(0.3),
            run_id: 77,
            gso: false,
        };
        let s = send::run(&sa).unwrap();
        let r = rx.join().unwrap();
        // 2000 pps x 0.3 s = 600 offered; a descheduled sender may skip some.
        assert_eq!(s.attempted + s.skipped, 600, "{}", s.to_json());
        assert!(s.sent >= 300, "{}", s.to_json());
        assert_eq!(s.errors, 0, "{}", s.to_json());
        assert_eq!(s.sent, s.attempted);
        assert!((0.28..0.6).contains(&s.seconds), "{}", s.to_json());
        assert_eq!(r.stale, 5, "{}", r.to_json());
        assert!(r.end_marker, "{}", r.to_json());
        assert_eq!(r.stop, recv::Stop::Marker);
        // Loopback with an 8 MiB buffer loses nothing at 2000 pps.
        assert_eq!(r.seqs.unique, s.sent, "{} {}", s.to_json(), r.to_json());
        assert_eq!(r.received, s.sent);
        assert_eq!(r.seqs.duplicates, 0);
        assert_eq!(r.bytes, s.sent * 36);
        assert!(r.span_s() > 0.2 && r.span_s() < 0.6, "{}", r.to_json());
        // IP_MTU of the loopback route (65,535 with the usual lo MTU).
        assert!(s.path_mtu.is_some_and(|m| m >= 1500), "{}", s.to_json());
    }

    /// An unlimited run: unique <= sent, and the sender reports a rate.
    #[test]
    fn loopback_unlimited_run() {
        let (sock, buf, ra) = receiver(0.1, 9);
        let to = local(&sock);
        let rx = std::thread::spawn(move || recv::run(&sock, buf, &ra).unwrap());
        let sa = SendArgs {
            to,
            size: 1400,
            pps: 0,
            secs: Duration::from_secs_f64(0.1),
            run_id: 9,
            gso: false,
        };
        let s = send::run(&sa).unwrap();
        let r = rx.join().unwrap();
        assert!(s.sent > 100, "{}", s.to_json());
        assert_eq!(s.skipped, 0);
        assert!(
            r.seqs.unique > 0 && r.seqs.unique <= s.sent,
            "{} {}",
            s.to_json(),
            r.to_json()
        );
        assert_eq!(r.seqs.duplicates, 0);
        assert_eq!(r.bytes, r.received * 1372);
    }

    /// `send-gso` on loopback: the kernel splits each super-packet back into
    /// the datagrams, every one arrives once.
    #[test]
    fn loopback_gso_run() {
        let (sock, buf, ra) = receiver(0.3, 41);
        let to = local(&sock);
        let rx = std::thread::spawn(move || recv::run(&sock, buf, &ra).unwrap());
        let sa = SendArgs {
            to,
            size: 100,
            pps: 5000,
            secs: Duration::from_secs_f64(0.3),
            run_id: 41,
            gso: true,
        };
        let s = send::run(&sa).unwrap();
        let r = rx.join().unwrap();
        assert_eq!(s.errors, 0, "{}", s.to_json());
        assert!(s.sent >= 500, "{}", s.to_json());
        assert_eq!(r.seqs.unique, s.sent, "{} {}", s.to_json(), r.to_json());
        assert_eq!(r.seqs.duplicates, 0);
        assert_eq!(r.bytes, s.sent * 72);
    }

    /// Without an end marker the receiver stops when the datagrams stop.
    #[test]
    fn receiver_stops_when_idle() {
        let (sock, buf, ra) = receiver(0.2, 3);
        let to = local(&sock);
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut p = [0u8; 16];
        Header { seq: 0, run_id: 3 }.encode(&mut p).unwrap();
        tx.send_to(&p, to).unwrap();
        let t0 = std::time::Instant::now();
        let r = recv::run(&sock, buf, &ra).unwrap();
        let took = t0.elapsed();
        // --secs 0.2 + 1 s grace and 1 s idle: whichever comes first.
        assert!(
            matches!(r.stop, recv::Stop::Idle | recv::Stop::Duration),
            "{}",
            r.to_json()
        );
        assert!(took < Duration::from_secs(3), "{took:?}");
        assert_eq!(r.seqs.unique, 1);
        assert!(!r.end_marker);
        let _ = END_MARKER_SEQ;
    }
}
