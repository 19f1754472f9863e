//! The log lines of tunnel events, as `up --log-format json` writes them
//! (the binary's own subscriber, into a buffer): one line per event with
//! `conn`, `peer`, the IKE and ESP SPIs that `status` shows, and a
//! `reason`; repeated failures at debug level; no PSK anywhere. Sites A
//! and B log into the same buffer: `peer` tells whose line it is.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipsec_core::datapath::Direction;
use ipsec_core::sa::Expiry;
use serde_json::{Map, Value};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;
use tun_bridge::control::{TunnelState, TunnelStatus};
use tun_bridge::engine::{Command, DataPathEvent};
use tun_bridge::logging::{self, LogFormat, LogStyle};

use super::net::{Net, A, B};
use super::{dead_peer, established, pair, pair_psk, T0};
use super::{A_IP, B_IP};

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl io::Write for Buffer {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Buffer {
    type Writer = Buffer;
    fn make_writer(&'a self) -> Buffer {
        self.clone()
    }
}

type Line = Map<String, Value>;

/// Runs `f` with the JSON subscriber of `up` at debug level; returns its
/// result and every line written, parsed.
fn logged<R>(f: impl FnOnce() -> R) -> (R, Vec<Line>) {
    let buf = Buffer::default();
    let style = LogStyle::choose(LogFormat::Json, false, false, false);
    let sub = logging::subscriber(style, EnvFilter::new("debug"), buf.clone());
    let r = tracing::subscriber::with_default(sub, f);
    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    let lines = text
        .lines()
        .map(|l| match serde_json::from_str(l) {
            Ok(Value::Object(m)) => m,
            other => panic!("not a JSON object: {l} ({other:?})"),
        })
        .collect();
    (r, lines)
}

fn s<'a>(l: &'a Line, k: &str) -> Option<&'a str> {
    l.get(k).and_then(Value::as_str)
}

/// Site `peer`-side lines (the site whose peer is `peer`) with `message`
/// (a prefix), from the engine.
fn find<'a>(lines: &'a [Line], peer: &str, message: &str) -> Vec<&'a Line> {
    lines
        .iter()
        .filter(|l| {
            s(l, "peer") == Some(peer)
                && s(l, "message").is_some_and(|m| m.starts_with(message))
                && s(l, "target").is_some_and(|t| t.starts_with("tun_bridge::engine"))
        })
        .collect()
}

/// The one line of peer `peer` whose message is exactly `message`.
fn one<'a>(lines: &'a [Line], peer: &str, message: &str) -> &'a Line {
    let v: Vec<_> = find(lines, peer, message)
        .into_iter()
        .filter(|l| s(l, "message") == Some(message))
        .collect();
    assert_eq!(v.len(), 1, "one {message:?} line of peer {peer}: {v:?}");
    v[0]
}

fn hex8(v: Option<u32>) -> String {
    format!("0x{:08x}", v.unwrap())
}

fn assert_ike_spis(l: &Line, st: &TunnelStatus) {
    assert_eq!(s(l, "conn"), Some(st.name.as_str()), "{l:?}");
    assert_eq!(s(l, "ike_spi_i"), st.ike_spi_i.as_deref(), "{l:?}");
    assert_eq!(s(l, "ike_spi_r"), st.ike_spi_r.as_deref(), "{l:?}");
    assert!(st.ike_spi_i.is_some());
}

fn tunnel(n: &Net, site: usize) -> TunnelStatus {
    n.status(site).tunnels[0].clone()
}

#[test]
fn up_rekey_and_peer_delete_lines_carry_the_spis_of_status() {
    let ((first, rekeyed), lines) = logged(|| {
        let mut n = pair("", "");
        n.advance(Duration::from_secs(1));
        let first = (tunnel(&n, A), tunnel(&n, B));
        // A's data path reports the soft lifetime of its inbound SA.
        let (now, spi) = (n.now, first.0.spi_in.unwrap());
        n.sites[A].engine.handle_datapath(
            now,
            DataPathEvent::Expired {
                tunnel: T0,
                spi,
                direction: Direction::Inbound,
                kind: Expiry::Soft,
            },
        );
        n.advance(Duration::from_secs(6));
        let rekeyed = (tunnel(&n, A), tunnel(&n, B));
        n.command(B, Command::Down(T0));
        n.advance(Duration::from_millis(100));
        (first, rekeyed)
    });
    let (a1, b1) = &first;
    let (a2, _) = &rekeyed;
    assert_ne!(a1.spi_in, a2.spi_in, "the Child SA was rekeyed");
    assert_eq!(a1.ike_spi_i, a2.ike_spi_i, "on the same IKE SA");

    for (peer, st, initiator) in [(B_IP, a1, true), (A_IP, b1, false)] {
        let up = one(&lines, peer, "IKE SA established");
        assert_ike_spis(up, st);
        assert_eq!(up["initiator"], Value::Bool(initiator));
        assert_eq!(s(up, "level"), Some("INFO"));
        let installed = one(&lines, peer, "Child SA installed");
        assert_ike_spis(installed, st);
        assert_eq!(s(installed, "spi_in"), Some(hex8(st.spi_in).as_str()));
        assert_eq!(s(installed, "spi_out"), Some(hex8(st.spi_out).as_str()));
    }

    // A's rekey: the soft lifetime, the new SA installed, outbound
    // switched, the old one deleted.
    let soft = one(&lines, B_IP, "Child SA lifetime reached: rekeying");
    assert_eq!(s(soft, "spi_in"), Some(hex8(a1.spi_in).as_str()));
    assert_eq!(s(soft, "reason"), Some("soft_lifetime"));
    let new = one(
        &lines,
        B_IP,
        "Child SA installed (rekey: inbound now, outbound at the switch)",
    );
    assert_eq!(s(new, "spi_in"), Some(hex8(a2.spi_in).as_str()));
    assert_eq!(s(new, "rekey_of_spi_in"), Some(hex8(a1.spi_in).as_str()));
    let switched = one(&lines, B_IP, "Child SA rekeyed: outbound switched to it");
    assert_ike_spis(switched, a2);
    assert_eq!(s(switched, "spi_in"), Some(hex8(a2.spi_in).as_str()));
    assert_eq!(s(switched, "spi_out"), Some(hex8(a2.spi_out).as_str()));
    assert_eq!(s(switched, "old_spi_out"), Some(hex8(a1.spi_out).as_str()));
    let old_deleted: Vec<_> = find(&lines, B_IP, "Child SA deleted")
        .into_iter()
        .filter(|l| s(l, "spi_in") == Some(hex8(a1.spi_in).as_str()))
        .collect();
    assert_eq!(old_deleted.len(), 1, "{old_deleted:?}");
    assert_eq!(s(old_deleted[0], "reason"), Some("rekeyed"));

    // B's terminate: A hears the peer's DELETE, B deleted locally; both
    // lines name the IKE SA that went down.
    let a_down = one(&lines, B_IP, "IKE SA down");
    assert_ike_spis(a_down, a2);
    assert_eq!(s(a_down, "reason"), Some("peer_delete"));
    let b_down = one(&lines, A_IP, "IKE SA down");
    assert_eq!(s(b_down, "reason"), Some("local_delete"));
    assert_eq!(s(b_down, "ike_spi_i"), a2.ike_spi_i.as_deref());
    let a_child_gone: Vec<_> = find(&lines, B_IP, "Child SA deleted")
        .into_iter()
        .filter(|l| s(l, "spi_in") == Some(hex8(a2.spi_in).as_str()))
        .collect();
    assert_eq!(a_child_gone.len(), 1, "{a_child_gone:?}");
    assert!(s(a_child_gone[0], "reason").is_some());
}

#[test]
fn dpd_verdict_names_the_dead_ike_sa_and_the_action() {
    let ((), lines) = logged(|| {
        let n = dead_peer("clear");
        assert_eq!(n.state(A, 0), TunnelState::Down);
    });
    // The IKE SA of the run, from its up line (status shows none now).
    let up = one(&lines, B_IP, "IKE SA established");
    let dead = one(
        &lines,
        B_IP,
        "DPD: peer dead (no answer to DPD or retransmissions)",
    );
    assert_eq!(s(dead, "level"), Some("WARN"));
    assert_eq!(s(dead, "reason"), Some("no_answer"));
    assert_eq!(s(dead, "action"), Some("clear"));
    assert_eq!(s(dead, "ike_spi_i"), s(up, "ike_spi_i"));
    assert_eq!(s(dead, "ike_spi_r"), s(up, "ike_spi_r"));
    assert_eq!(s(dead, "conn"), Some("t"));
    let down = one(&lines, B_IP, "IKE SA down");
    assert_eq!(s(down, "reason"), Some("no_answer"));
    assert_eq!(s(down, "ike_spi_i"), s(up, "ike_spi_i"));
}

#[test]
fn wrong_psk_warns_once_and_never_logs_the_psk() {
    let ((), lines) = logged(|| {
        let mut n = pair_psk("", "", "one-psk-3f9a", "another-psk-77c1");
        n.advance(Duration::from_secs(300));
        assert!(!established(&n, A, 0));
    });
    let text = serde_json::to_string(&lines).unwrap();
    assert!(!text.contains("one-psk-3f9a") && !text.contains("another-psk-77c1"));
    // Each side says it once at warn level with a reason; repeats are debug.
    for peer in [B_IP, A_IP] {
        let all = find(&lines, peer, "authentication failed");
        let warns: Vec<_> = all
            .iter()
            .filter(|l| s(l, "level") == Some("WARN"))
            .collect();
        assert_eq!(warns.len(), 1, "peer {peer}: {warns:?}");
        let reason = s(warns[0], "reason").unwrap();
        assert!(
            ["bad_auth", "rejected_by_peer"].contains(&reason),
            "{reason}"
        );
        assert!(all.len() > 3, "attempts go on: {}", all.len());
    }
    // A failed attempt is not also an "IKE SA down".
    assert!(find(&lines, B_IP, "IKE SA down").is_empty());
    assert!(find(&lines, B_IP, "IKE SA established").is_empty());
}

#[test]
fn retransmit_give_up_and_keyingtries_have_reasons() {
    let ((), lines) = logged(|| {
        let mut n = pair("  keyingtries=3\n", "");
        n.deliver = Box::new(|_, _| false);
        n.advance(Duration::from_secs(3600));
    });
    let failed = find(&lines, B_IP, "connection attempt failed");
    assert_eq!(failed.len(), 3, "{failed:?}");
    assert!(failed.iter().all(|l| s(l, "reason") == Some("no_answer")));
    let levels: Vec<_> = failed.iter().map(|l| s(l, "level").unwrap()).collect();
    assert_eq!(levels, ["WARN", "DEBUG", "DEBUG"]);
    let gave_up = one(&lines, B_IP, "giving up (keyingtries reached)");
    assert_eq!(s(gave_up, "reason"), Some("keyingtries"));
    assert_eq!(gave_up["attempts"], Value::from(3));
    assert_eq!(find(&lines, B_IP, "initiating IKE SA").len(), 3);
}
