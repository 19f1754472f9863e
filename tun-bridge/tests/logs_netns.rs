//! `up --log-format json` between two tun-bridges in lab namespaces (root):
//! every stderr line is one JSON object with timestamp, level, target and
//! message; the IKE SA and Child SA events carry `conn`, `peer` and the
//! SPIs that `status --json` reports; a `terminate` shows up on both sides
//! as an IKE SA down with the reason (local delete, peer's DELETE) and the
//! same IKE SPIs; the PSK appears nowhere.

mod common;

use std::time::{Duration, Instant};

use common::{ipsec_conf, ipsec_secrets, psk, serial, site_pair, TbConn, TunBridge, CASES};
use netns_lab::{Lab, TwoSites, TwoSitesConfig};
use serde_json::{Map, Value};
use tun_bridge::control::{self, Request, TunnelStatus};

type Line = Map<String, Value>;

/// Every line of `tb`'s log as a JSON object (panics on any other line).
fn json_lines(tb: &TunBridge) -> Vec<Line> {
    let log = tb.log();
    log.lines()
        .map(|l| match serde_json::from_str::<Value>(l) {
            Ok(Value::Object(m)) => m,
            other => panic!("{}: not a JSON object line: {l:?} ({other:?})", tb.name),
        })
        .collect()
}

fn str_field<'a>(line: &'a Line, key: &str) -> Option<&'a str> {
    line.get(key).and_then(Value::as_str)
}

/// The events with `message` of connection `conn`.
fn events<'a>(lines: &'a [Line], conn: &str, message: &str) -> Vec<&'a Line> {
    lines
        .iter()
        .filter(|l| str_field(l, "conn") == Some(conn) && str_field(l, "message") == Some(message))
        .collect()
}

/// Waits (bounded) until `tb`'s log has an event `message` of `conn`.
fn wait_event(tb: &TunBridge, conn: &str, message: &str) -> Line {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let lines = json_lines(tb);
        if let Some(l) = events(&lines, conn, message).last() {
            return (*l).clone();
        }
        assert!(
            Instant::now() < deadline,
            "{}: no {message:?} for {conn} within 15 s; log:\n{}",
            tb.name,
            tb.log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn esp_spi(v: Option<u32>) -> String {
    format!("0x{:08x}", v.expect("an SPI in status"))
}

/// The IKE-up and Child-SA-installed events of `conn` agree with `st`.
fn check_up_events(tb: &TunBridge, conn: &str, st: &TunnelStatus) {
    let lines = json_lines(tb);
    let peer = st.remote_addr.to_string();
    let ike_i = st.ike_spi_i.as_deref().expect("status has the IKE SPIs");
    let ike_r = st.ike_spi_r.as_deref().expect("status has the IKE SPIs");
    assert_eq!(ike_i.len(), 18, "0x and 16 hex digits: {ike_i}");

    let ups = events(&lines, conn, "IKE SA established");
    assert_eq!(ups.len(), 1, "{}: one IKE-up line: {ups:?}", tb.name);
    let up = ups[0];
    assert_eq!(str_field(up, "level"), Some("INFO"));
    assert_eq!(str_field(up, "peer"), Some(peer.as_str()), "{up:?}");
    assert_eq!(str_field(up, "ike_spi_i"), Some(ike_i), "{up:?}");
    assert_eq!(str_field(up, "ike_spi_r"), Some(ike_r), "{up:?}");

    let installed = events(&lines, conn, "Child SA installed");
    assert_eq!(installed.len(), 1, "{}: {installed:?}", tb.name);
    let c = installed[0];
    assert_eq!(str_field(c, "peer"), Some(peer.as_str()), "{c:?}");
    assert_eq!(str_field(c, "ike_spi_i"), Some(ike_i), "{c:?}");
    assert_eq!(str_field(c, "ike_spi_r"), Some(ike_r), "{c:?}");
    assert_eq!(str_field(c, "spi_in"), Some(esp_spi(st.spi_in).as_str()));
    assert_eq!(str_field(c, "spi_out"), Some(esp_spi(st.spi_out).as_str()));
    assert_eq!(
        str_field(c, "esp"),
        st.esp_algorithms.as_deref(),
        "the suite as status names it"
    );
}

#[test]
fn json_log_events_carry_the_spis_of_status() {
    if !Lab::require_root() {
        return;
    }
    let _serial = serial();
    let mut lab = Lab::new().unwrap();
    let t = TwoSites::up(&mut lab, TwoSitesConfig::default()).unwrap();
    let (a, b) = (t.gw_a_outer().to_string(), t.gw_b_outer().to_string());
    let case = &CASES[0];
    let key = psk("logs");
    let (ca, cb) = site_pair(&t, case);
    let json = ["--log-format", "json"];
    let gb = TunBridge::start_with(
        &mut lab,
        &t.gw_b,
        "gw-b",
        &ipsec_conf(&[cb]),
        &ipsec_secrets(&[(&b, &a, &key)]),
        &json,
    );
    gb.wait_listening(&mut lab);
    let ga = TunBridge::start_with(
        &mut lab,
        &t.gw_a,
        "gw-a",
        &ipsec_conf(&[ca]),
        &ipsec_secrets(&[(&a, &b, &key)]),
        &json,
    );
    let sa = ga.wait_established(&mut lab, &["site-b"]);
    let sb = gb.wait_established(&mut lab, &["site-a"]);
    common::ping_both_ways(&lab, &t, "json logs");
    let (ta, tb) = (&sa.tunnels[0], &sb.tunnels[0]);
    assert_eq!(ta.name, "site-b");
    assert_eq!(tb.name, "site-a");
    // Both ends name the same IKE SA; the ESP SPIs are crossed.
    assert_eq!(
        (&ta.ike_spi_i, &ta.ike_spi_r),
        (&tb.ike_spi_i, &tb.ike_spi_r)
    );
    assert_eq!((ta.spi_in, ta.spi_out), (tb.spi_out, tb.spi_in));

    // Each line: the four standard keys, an RFC 3339 UTC timestamp.
    for gw in [&ga, &gb] {
        let lines = json_lines(gw);
        assert!(lines.len() >= 3, "{}: {lines:?}", gw.name);
        for l in &lines {
            for k in ["timestamp", "level", "target", "message"] {
                assert!(str_field(l, k).is_some(), "{}: no {k} in {l:?}", gw.name);
            }
            let ts = str_field(l, "timestamp").unwrap();
            assert!(
                ts.len() >= 20 && ts.as_bytes()[4] == b'-' && ts.as_bytes()[10] == b'T',
                "{ts}"
            );
            assert!(ts.ends_with('Z'), "{ts}");
        }
    }
    check_up_events(&ga, "site-b", ta);
    check_up_events(&gb, "site-a", tb);
    let up_a = &events(&json_lines(&ga), "site-b", "IKE SA established")[0].clone();
    assert_eq!(up_a.get("initiator"), Some(&Value::Bool(true)));
    assert_eq!(
        str_field(up_a, "target"),
        Some("tun_bridge::engine"),
        "logged where the engine decides"
    );

    // terminate on A: A deletes, B sees the peer's DELETE; both lines carry
    // the IKE SPIs of the SA that went down.
    let r = control::query(
        &ga.control,
        &Request::Terminate {
            name: "site-b".into(),
        },
        Duration::from_secs(2),
    )
    .expect("terminate");
    assert!(r.error.is_none(), "{r:?}");
    let down_a = wait_event(&ga, "site-b", "IKE SA down");
    let down_b = wait_event(&gb, "site-a", "IKE SA down");
    assert_eq!(
        str_field(&down_a, "reason"),
        Some("local_delete"),
        "{down_a:?}"
    );
    assert_eq!(
        str_field(&down_b, "reason"),
        Some("peer_delete"),
        "{down_b:?}"
    );
    for (d, st) in [(&down_a, ta), (&down_b, tb)] {
        assert_eq!(str_field(d, "ike_spi_i"), st.ike_spi_i.as_deref(), "{d:?}");
        assert_eq!(str_field(d, "ike_spi_r"), st.ike_spi_r.as_deref(), "{d:?}");
        assert_eq!(
            str_field(d, "peer"),
            Some(st.remote_addr.to_string().as_str())
        );
    }
    let deleted_b = wait_event(&gb, "site-a", "Child SA deleted");
    assert_eq!(
        str_field(&deleted_b, "spi_in"),
        Some(esp_spi(tb.spi_in).as_str())
    );
    assert!(str_field(&deleted_b, "reason").is_some(), "{deleted_b:?}");

    let after_stop = |g: &TunBridge| TunBridge {
        name: g.name.clone(),
        pid: g.pid,
        control: g.control.clone(),
        log: g.log.clone(),
    };
    let (la, lb) = (after_stop(&ga), after_stop(&gb));
    ga.stop(&mut lab);
    gb.stop(&mut lab);
    for gw in [&la, &lb] {
        let log = gw.log();
        assert!(!log.contains(&key), "{}: the PSK is in the log", gw.name);
        // Still JSON to the last line (shutdown included).
        json_lines(gw);
    }
}

/// Runs `up` (a listening responder) in `ns` with `JOURNAL_STREAM` set to
/// `journal(dev, ino)` of its own log file, until the control socket
/// answers; returns the log.
fn run_text_with_journal_stream(
    lab: &mut Lab,
    ns: &str,
    tag: &str,
    conf: &std::path::Path,
    secrets: &std::path::Path,
    journal: impl Fn(u64, u64) -> String,
) -> String {
    use std::os::unix::fs::MetadataExt;
    let dir = lab.state_dir().to_path_buf();
    let log = dir.join(format!("{tag}.log"));
    let control = dir.join(format!("{tag}.sock"));
    // The lab appends to an existing file: its inode is the one stderr gets.
    std::fs::write(&log, "").unwrap();
    let meta = std::fs::metadata(&log).unwrap();
    let env = format!("JOURNAL_STREAM={}", journal(meta.dev(), meta.ino()));
    let (c, s, ctl) = (
        conf.display().to_string(),
        secrets.display().to_string(),
        control.display().to_string(),
    );
    let argv = [
        "env",
        &env,
        common::BIN,
        "up",
        "--config",
        &c,
        "--secrets",
        &s,
        "--control",
        &ctl,
    ];
    let pid = lab.spawn(ns, &argv, &log).expect("spawn tun-bridge up");
    let tb = TunBridge {
        name: tag.into(),
        pid,
        control,
        log,
    };
    tb.wait_listening(lab);
    let text = tb.log();
    tb.stop(lab);
    text
}

fn starts_with_timestamp(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() > 20 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' && b[10] == b'T'
}

#[test]
fn text_log_leaves_the_timestamp_to_journald() {
    if !Lab::require_root() {
        return;
    }
    let _serial = serial();
    let mut lab = Lab::new().unwrap();
    let t = TwoSites::up(&mut lab, TwoSitesConfig::default()).unwrap();
    let (a, b) = (t.gw_a_outer().to_string(), t.gw_b_outer().to_string());
    let cb = TbConn::new(
        "site-a",
        "add",
        &b,
        &a,
        &t.site_b_cidr(),
        &t.site_a_cidr(),
        &CASES[0],
    );
    let dir = lab.state_dir().to_path_buf();
    let (conf, secrets) = (dir.join("journal.conf"), dir.join("journal.secrets"));
    common::write_mode(&conf, &ipsec_conf(&[cb]), 0o644);
    let key = psk("journal");
    common::write_mode(&secrets, &ipsec_secrets(&[(&b, &a, &key)]), 0o600);

    // stderr is the stream JOURNAL_STREAM names: no timestamp, no colour.
    let journal =
        run_text_with_journal_stream(&mut lab, &t.gw_b, "journal", &conf, &secrets, |dev, ino| {
            format!("{dev}:{ino}")
        });
    let listening: Vec<&str> = journal
        .lines()
        .filter(|l| l.contains("listening on UDP 500/4500"))
        .collect();
    assert_eq!(listening.len(), 1, "{journal}");
    assert!(listening[0].trim_start().starts_with("INFO"), "{journal}");
    for l in journal.lines() {
        assert!(!starts_with_timestamp(l), "timestamp under journald: {l}");
        assert!(!l.contains('\u{1b}'), "colour codes under journald: {l}");
    }

    // Inherited from a parent whose stderr was the journal, stale for
    // ours: our own timestamps.
    let stale = run_text_with_journal_stream(
        &mut lab,
        &t.gw_b,
        "not-journal",
        &conf,
        &secrets,
        |dev, ino| format!("{dev}:{}", ino + 1),
    );
    assert!(stale.lines().count() >= 2, "{stale}");
    for l in stale.lines() {
        assert!(starts_with_timestamp(l), "no timestamp: {l}");
        assert!(!l.contains('\u{1b}'), "colour codes into a file: {l}");
    }
}
