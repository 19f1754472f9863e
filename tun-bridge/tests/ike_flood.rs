//! Root: an IKE_SA_INIT flood against tun-bridge while a real strongSwan
//! peer connects (issue #15, item 4).
//!
//! tun-bridge answers on gateway A (responder for any peer address,
//! `half_open_timeout=6s`);
//! strongSwan on gateway B initiates; `benches`' `ike_flood` generator runs
//! in its own namespace behind gateway A, which routes the benchmarking
//! range 198.18.0.0/15 back to it.
//!
//! 1. 100,000 IKE_SA_INIT requests within 10 s (11,000 per second) from
//!    65,536 addresses and random ports, not answering cookies: the peer's
//!    tunnel comes up within 10 s, cookies are counted.
//! 2. The generator answers cookies from 8 addresses: blocking is counted.
//! 3. It answers cookies from 65,536 addresses: the half-open SAs reach
//!    the global cap (`max-halfopen-ike=1000` here); tun-bridge's RSS
//!    (sampled every 50 ms throughout) grows by less than 32 MiB and comes
//!    down once the half-open timeout freed them; the tunnel stays up.

mod common;

use common::*;
use netns_lab::{Lab, TwoSites, TwoSitesConfig};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use tun_bridge::control::StatusReport;

const GEN_IF: &str = "flood1";
const GW_IF: &str = "flood0";
const HALF_OPEN_TIMEOUT: Duration = Duration::from_secs(6);
/// `max-halfopen-ike`, below the default so that a debug build reaches it.
const HALF_OPEN_CAP: u32 = 1000;

/// The `ike_flood` binary of the same profile, built if missing.
fn generator() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    // target/<profile>/deps/<test> -> target/<profile>/ike_flood
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target dir")
        .to_path_buf();
    let bin = dir.join("ike_flood");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-q", "-p", "ipsec-benches", "--bin", "ike_flood"]);
        if dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let out = netns_lab::run_with_timeout(&mut cmd, Duration::from_secs(600))
            .expect("build ike_flood");
        assert!(out.status.success(), "building ike_flood failed: {out:?}");
    }
    assert!(bin.exists(), "{} missing", bin.display());
    bin
}

/// Resident set size of `pid` in bytes (VmRSS).
fn rss(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kb: u64 = s
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    kb * 1024
}

/// One member of the generator's JSON line (`"key":number`).
fn field(json: &str, key: &str) -> f64 {
    let pat = format!("\"{key}\":");
    let at = json.find(&pat).unwrap_or_else(|| panic!("{key} in {json}"));
    json[at + pat.len()..]
        .split([',', '}'])
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{key} in {json}"))
}

struct Flood {
    bin: PathBuf,
    ns: String,
    dst: Ipv4Addr,
}

impl Flood {
    fn argv(&self, src_net: &str, count: u64, secs: u64, rate: u64, answer: bool) -> Vec<String> {
        let mut v: Vec<String> = [
            self.bin.display().to_string(),
            "--netns".into(),
            self.ns.clone(),
            "--iface".into(),
            GEN_IF.into(),
            "--dst".into(),
            self.dst.to_string(),
            "--src-net".into(),
            src_net.into(),
            "--count".into(),
            count.to_string(),
            "--secs".into(),
            secs.to_string(),
            "--rate".into(),
            rate.to_string(),
        ]
        .into();
        if answer {
            v.push("--answer-cookies".into());
        }
        v
    }

    /// Runs to the end (bounded); returns its JSON line.
    fn run(
        &self,
        lab: &Lab,
        src_net: &str,
        count: u64,
        secs: u64,
        rate: u64,
        answer: bool,
    ) -> String {
        let argv = self.argv(src_net, count, secs, rate, answer);
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let out = lab
            .exec_timeout(&self.ns, &argv, Duration::from_secs(secs + 20))
            .expect("ike_flood");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

fn wait_status(
    tb: &TunBridge,
    lab: &mut Lab,
    what: &str,
    timeout: Duration,
    pred: impl Fn(&StatusReport) -> bool,
) -> StatusReport {
    tb.wait_for(lab, what, timeout, pred)
}

#[test]
fn flood_while_strongswan_connects() {
    let _g = serial();
    if !Lab::require_strongswan() {
        return;
    }
    let bin = generator();
    let mut lab = Lab::new().expect("lab");
    let t = TwoSites::up(
        &mut lab,
        TwoSitesConfig {
            wan: (Ipv4Addr::new(10, 200, 0, 0), 24),
            ..TwoSitesConfig::default()
        },
    )
    .expect("topology");
    let gen = lab.add_netns("flgen").expect("generator namespace");
    lab.veth(
        &t.gw_a,
        GW_IF,
        Some("10.201.0.1/24"),
        &gen,
        GEN_IF,
        Some("10.201.0.2/24"),
    )
    .expect("flood link");
    lab.ip_in(
        &t.gw_a,
        &["route", "add", "198.18.0.0/15", "via", "10.201.0.2"],
    )
    .expect("route the sources back");
    lab.ip_in(
        &gen,
        &["route", "add", "10.200.0.0/24", "via", "10.201.0.1"],
    )
    .expect("route to the WAN");
    let flood = Flood {
        bin,
        ns: gen.clone(),
        dst: t.gw_a_outer(),
    };

    let case = CASES
        .iter()
        .find(|c| c.name == "curve25519")
        .expect("curve25519 case");
    let key = psk("flood");
    let (a, b) = (t.gw_a_outer().to_string(), t.gw_b_outer().to_string());
    // right=%any: a responder for any peer (the flood's sources could be
    // peers); with a fixed right= every flood request is refused with
    // NO_PROPOSAL_CHOSEN before the flood limits matter.
    let mut conn = TbConn::new(
        "vpc",
        "add",
        &a,
        "%any",
        &t.site_a_cidr(),
        &t.site_b_cidr(),
        case,
    );
    conn.extra.push(format!("rightid={b}"));
    let conf = ipsec_conf(&[conn]).replacen(
        "config setup\n",
        &format!(
            "config setup\n\thalf_open_timeout={}s\n\tmax-halfopen-ike={HALF_OPEN_CAP}\n",
            HALF_OPEN_TIMEOUT.as_secs()
        ),
        1,
    );
    let ga = TunBridge::start(
        &mut lab,
        &t.gw_a,
        "gw-a",
        &conf,
        &ipsec_secrets(&[(&a, &b, &key)]),
    );
    ga.wait_listening(&mut lab);
    let swan = start_swan(&mut lab, &t.gw_b);
    swan.load(&swan_conn(&t, case, &key, true))
        .expect("load swanctl conf");
    let rss0 = rss(ga.pid);
    // The RSS peak, sampled until the end of the test.
    let sampling = std::sync::atomic::AtomicBool::new(true);
    let peak_rss = std::sync::atomic::AtomicU64::new(rss0);
    let pid = ga.pid;
    std::thread::scope(|s| {
        s.spawn(|| {
            while sampling.load(Relaxed) {
                if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                    if text.contains("VmRSS") {
                        peak_rss.fetch_max(rss(pid), Relaxed);
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        phases(&mut lab, &t, &flood, &ga, &swan, rss0, &peak_rss);
        sampling.store(false, Relaxed);
    });
    let _ = swan.terminate_ike("tb");
    ga.stop(&mut lab);
}

/// The three floods of the module documentation.
fn phases(
    lab: &mut Lab,
    t: &TwoSites,
    flood: &Flood,
    ga: &TunBridge,
    swan: &netns_lab::StrongSwan,
    rss0: u64,
    peak_rss: &std::sync::atomic::AtomicU64,
) {
    let gen = flood.ns.clone();
    let _ = t;

    // 1. 100,000 requests within 10 s, cookies not answered; strongSwan
    //    connects one second into it.
    let log = lab.state_dir().join("flood1.log");
    let argv = flood.argv("198.18.0.0/16", 100_000, 10, 11_000, false);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let gen_pid = lab.spawn(&gen, &argv, &log).expect("spawn ike_flood");
    std::thread::sleep(Duration::from_secs(1));
    let t0 = Instant::now();
    let init = std::thread::scope(|s| {
        let h = s.spawn(|| swan.initiate("net", Duration::from_secs(10)));
        let st = wait_status(
            ga,
            lab,
            "the tunnel during the flood",
            Duration::from_secs(10),
            |st| {
                st.tunnels.iter().any(|t| {
                    matches!(
                        t.state,
                        tun_bridge::control::TunnelState::Established
                            | tun_bridge::control::TunnelState::Rekeying
                    )
                })
            },
        );
        (h.join().expect("initiate thread"), st)
    });
    let up = t0.elapsed();
    init.0.unwrap_or_else(|e| {
        panic!(
            "strongSwan initiate during the flood: {e}\n{}",
            ga.log_tail(30)
        )
    });
    let deadline = Instant::now() + Duration::from_secs(25);
    while lab.is_running(gen_pid) {
        assert!(
            Instant::now() < deadline,
            "ike_flood did not stop by itself"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        lab.exit_status(gen_pid).is_some_and(|s| s.success()),
        "ike_flood failed: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let out1 = std::fs::read_to_string(&log).unwrap_or_default();
    let out1 = out1
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .expect("JSON line")
        .to_string();
    let st1 = ga.status().expect("status");
    println!(
        "flood 1 (no cookie answers): {out1}; tunnel up in {up:.2?}; ike {:?}",
        st1.ike
    );
    assert_eq!(field(&out1, "sent"), 100_000.0, "{out1}");
    assert!(field(&out1, "send_secs") <= 10.0, "{out1}");
    assert!(field(&out1, "cookie") > 0.0, "{out1}");
    assert!(up <= Duration::from_secs(10), "tunnel took {up:?}");
    assert!(
        st1.ike.cookies_sent > 0 && st1.ike.cookies_verified >= 1,
        "{:?}",
        st1.ike
    );
    assert!(st1.ike.received["ike_sa_init"].refused > 0, "{:?}", st1.ike);

    // 2. Cookies answered from 8 addresses: each reaches the block
    //    threshold (5 half-open SAs).
    let out2 = flood.run(lab, "198.19.0.0/29", 2000, 5, 0, true);
    let st2 = ga.status().expect("status");
    println!(
        "flood 2 (8 sources answering cookies): {out2}; ike {:?}",
        st2.ike
    );
    assert!(field(&out2, "cookie_retries") > 0.0, "{out2}");
    assert!(st2.ike.init_dropped["blocked_source"] > 0, "{:?}", st2.ike);
    assert!(st2.ike.blocked_sources > 0, "{:?}", st2.ike);
    assert!(st2.ike.cookies_verified > st1.ike.cookies_verified);

    // 3. Cookies answered from 65,536 addresses, 2,000 per second: up to
    //    the global cap.
    let out3 = flood.run(lab, "198.18.0.0/16", 12_000, 6, 2000, true);
    let st3 = ga.status().expect("status");
    println!(
        "flood 3 (65,536 sources answering cookies): {out3}; ike {:?}",
        st3.ike
    );
    assert!(st3.ike.init_dropped["half_open_limit"] > 0, "{:?}", st3.ike);

    // The half-open SAs go after the timeout, and so does the memory.
    let st4 = wait_status(
        ga,
        lab,
        "the half-open SAs to time out",
        HALF_OPEN_TIMEOUT + Duration::from_secs(10),
        |st| st.ike.half_open == 0 && st.ike.blocked_sources == 0,
    );
    std::thread::sleep(Duration::from_millis(500));
    let after = rss(ga.pid);
    let peak = peak_rss.load(Relaxed);
    println!(
        "after the half-open timeout: RSS {} KiB (start {}, peak {}); ike {:?}",
        after >> 10,
        rss0 >> 10,
        peak >> 10,
        st4.ike
    );
    assert!(st4.ike.half_open_expired > 0);
    assert!(
        peak.saturating_sub(rss0) < 32 << 20,
        "RSS grew by {} KiB",
        (peak - rss0) >> 10
    );
    // Back down: below the peak, and within half the growth or 2 MiB of
    // the start (pages pinned by a few live allocations stay resident).
    let slack = ((peak - rss0) / 2).max(2 << 20);
    assert!(
        after < peak && after <= rss0 + slack,
        "RSS did not come down: start {rss0}, peak {peak}, after {after}"
    );
    // The peer's tunnel survived all of it.
    assert!(
        ga.tunnel("vpc").is_some_and(|t| t.spi_in.is_some()),
        "{}",
        ga.log_tail(30)
    );
}
