//! `tun-bridge reload`, `initiate` and `terminate` against a running
//! tun-bridge peer in lab namespaces (root). Four tunnel pairs between
//! gateway A and gateway B, each on its own pair of outer addresses:
//! `keep` carries host A <-> host B; `change`, `gone` and (after the
//! reload) `added` carry gateway-to-gateway pings between loopback
//! addresses. A reload with one changed, one removed, one added and one
//! untouched connection runs while a checksummed TCP transfer crosses the
//! untouched tunnel.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{ipsec_conf, ipsec_secrets, psk, serial, TbConn, TunBridge, BIN, CASES};
use netns_lab::traffic::tcp_transfer_paced;
use netns_lab::{Lab, TwoSites, TwoSitesConfig};
use tun_bridge::control::{StatusReport, TunnelState};

/// Outer addresses (A side, B side) and the loopback /24s of the extra
/// tunnels: `change`, `gone`, `added`.
const EXTRA: [(&str, &str, &str, &str, &str); 3] = [
    (
        "change",
        "198.51.100.1",
        "198.51.100.2",
        "10.77.1",
        "10.78.1",
    ),
    ("gone", "198.51.100.3", "198.51.100.4", "10.77.2", "10.78.2"),
    (
        "added",
        "198.51.100.5",
        "198.51.100.6",
        "10.77.3",
        "10.78.3",
    ),
];

fn tunnel(st: &StatusReport, name: &str) -> Option<tun_bridge::control::TunnelStatus> {
    st.tunnels.iter().find(|t| t.name == name).cloned()
}

fn up(st: &StatusReport, name: &str) -> bool {
    tunnel(st, name)
        .is_some_and(|t| matches!(t.state, TunnelState::Established | TunnelState::Rekeying))
}

/// A's (`a_side`) or B's view of one extra tunnel.
fn extra_conn(e: &(&str, &str, &str, &str, &str), a_side: bool, esp: &str) -> TbConn {
    let (name, oa, ob, la, lb) = *e;
    let case = &CASES[0];
    let mut c = if a_side {
        TbConn::new(
            name,
            "start",
            oa,
            ob,
            &format!("{la}.0/24"),
            &format!("{lb}.0/24"),
            case,
        )
    } else {
        TbConn::new(
            name,
            "add",
            ob,
            oa,
            &format!("{lb}.0/24"),
            &format!("{la}.0/24"),
            case,
        )
    };
    c.esp = esp.into();
    c
}

fn ctl(args: &[&str], control: &std::path::Path) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .arg("--control")
        .arg(control)
        .output()
        .expect("run tun-bridge")
}

fn ping_from(lab: &Lab, ns: &str, src: &str, dst: &str) -> bool {
    lab.exec_status(
        ns,
        &[
            "ping", "-n", "-c", "2", "-i", "0.2", "-W", "2", "-I", src, dst,
        ],
        Duration::from_secs(10),
    )
    .map(|o| o.status.success())
    .unwrap_or(false)
}

#[test]
fn reload_initiate_terminate_between_two_tun_bridges() {
    if !Lab::require_root() {
        return;
    }
    let _serial = serial();
    let mut lab = Lab::new().unwrap();
    let t = TwoSites::up(&mut lab, TwoSitesConfig::default()).unwrap();
    let (a, b) = (t.gw_a_outer().to_string(), t.gw_b_outer().to_string());
    for (_, oa, ob, la, lb) in EXTRA {
        lab.ip_in(
            &t.gw_a,
            &[
                "addr",
                "add",
                &format!("{oa}/24"),
                "dev",
                TwoSites::GW_WAN_IF,
            ],
        )
        .unwrap();
        lab.ip_in(
            &t.gw_b,
            &[
                "addr",
                "add",
                &format!("{ob}/24"),
                "dev",
                TwoSites::GW_WAN_IF,
            ],
        )
        .unwrap();
        lab.ip_in(
            &t.gw_a,
            &["addr", "add", &format!("{la}.1/32"), "dev", "lo"],
        )
        .unwrap();
        lab.ip_in(
            &t.gw_b,
            &["addr", "add", &format!("{lb}.1/32"), "dev", "lo"],
        )
        .unwrap();
    }
    let case = &CASES[0];
    let key = psk("reload");
    let both_esp = "aes128gcm16-modp2048,aes256gcm16-modp2048";
    let keep_a = TbConn::new(
        "keep",
        "start",
        &a,
        &b,
        &t.site_a_cidr(),
        &t.site_b_cidr(),
        case,
    );
    let keep_b = TbConn::new(
        "keep",
        "add",
        &b,
        &a,
        &t.site_b_cidr(),
        &t.site_a_cidr(),
        case,
    );
    let mut conns_b = vec![keep_b];
    conns_b.extend(EXTRA.iter().map(|e| extra_conn(e, false, both_esp)));
    let mut sec_a = vec![(a.as_str(), b.as_str(), key.as_str())];
    let mut sec_b = vec![(b.as_str(), a.as_str(), key.as_str())];
    for (_, oa, ob, _, _) in &EXTRA {
        sec_a.push((oa, ob, &key));
        sec_b.push((ob, oa, &key));
    }
    let gb = TunBridge::start(
        &mut lab,
        &t.gw_b,
        "gw-b",
        &ipsec_conf(&conns_b),
        &ipsec_secrets(&sec_b),
    );
    gb.wait_listening(&mut lab);
    let before = vec![
        keep_a.clone(),
        extra_conn(&EXTRA[0], true, case.esp),
        extra_conn(&EXTRA[1], true, case.esp),
    ];
    let ga = TunBridge::start(
        &mut lab,
        &t.gw_a,
        "gw-a",
        &ipsec_conf(&before),
        &ipsec_secrets(&sec_a),
    );
    let st0 = ga.wait_established(&mut lab, &["keep", "change", "gone"]);
    common::ping_both_ways(&lab, &t, "keep before reload");
    for e in &EXTRA[..2] {
        assert!(
            ping_from(&lab, &t.gw_a, &format!("{}.1", e.3), &format!("{}.1", e.4)),
            "{} before reload\n{}",
            e.0,
            ga.log_tail(40)
        );
    }
    let keep0 = tunnel(&st0, "keep").unwrap();
    let change0 = tunnel(&st0, "change").unwrap();

    // initiate / terminate, and an unknown name.
    let out = ctl(&["terminate", "change"], &ga.control);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ga.wait_for(&mut lab, "change down", Duration::from_secs(10), |st| {
        tunnel(st, "change").is_some_and(|t| t.state == TunnelState::Down)
    });
    gb.wait_for(
        &mut lab,
        "change down at B",
        Duration::from_secs(10),
        |st| tunnel(st, "change").is_some_and(|t| t.state == TunnelState::Down),
    );
    let out = ctl(&["initiate", "change"], &ga.control);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("initiating change"));
    ga.wait_established(&mut lab, &["change"]);
    let out = ctl(&["initiate", "nosuch"], &ga.control);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no connection named \"nosuch\"") && err.contains("keep, change, gone"),
        "{err}"
    );
    let change1 = tunnel(&ga.status().unwrap(), "change").unwrap();
    assert_ne!(
        change1.spi_in, change0.spi_in,
        "terminate + initiate: a new Child SA"
    );

    // A broken file changes nothing and says where.
    let conf_path = lab.state_dir().join("gw-a.conf");
    let good = ipsec_conf(&before);
    let broken = good.replacen("\tike=", "\tike=nonsense-alg\n\tike=", 1);
    std::fs::write(&conf_path, &broken).unwrap();
    let line = broken
        .lines()
        .position(|l| l.contains("nonsense-alg"))
        .unwrap()
        + 1;
    let out = ctl(&["reload"], &ga.control);
    assert!(!out.status.success(), "a broken file must fail the reload");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("gw-a.conf:{line}")), "{err}");
    let st = ga.status().unwrap();
    assert_eq!(st.tunnels.len(), 3);
    assert_eq!(tunnel(&st, "keep").unwrap().spi_in, keep0.spi_in);
    assert_eq!(tunnel(&st, "change").unwrap().spi_in, change1.spi_in);

    // The reload: keep untouched, change (ESP), gone removed, added added,
    // while 24 MiB cross `keep` over about 6 s.
    let after = vec![
        keep_a.clone(),
        extra_conn(&EXTRA[0], true, "aes256gcm16-modp2048"),
        extra_conn(&EXTRA[2], true, case.esp),
    ];
    std::fs::write(&conf_path, ipsec_conf(&after)).unwrap();
    let (src, dst, addr) = (t.host_a.clone(), t.host_b.clone(), t.host_b_addr());
    const BYTES: u64 = 24 << 20;
    let transfer = std::thread::spawn(move || {
        tcp_transfer_paced(
            &src,
            &dst,
            addr,
            5201,
            BYTES,
            Some(4 << 20),
            Duration::from_secs(60),
        )
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(!transfer.is_finished(), "the transfer must span the reload");
    let out = ctl(&["reload"], &ga.control);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        ga.log_tail(40)
    );
    assert!(!transfer.is_finished(), "the transfer must span the reload");
    assert!(text.contains("kept: keep\n"), "{text}");
    assert!(
        text.contains("changed: change (child rekey: esp)"),
        "{text}"
    );
    assert!(
        text.contains("added: added\n") && text.contains("removed: gone\n"),
        "{text}"
    );
    let r = transfer
        .join()
        .unwrap()
        .expect("transfer across the reload");
    assert!(r.intact(), "data damaged across the reload: {r:?}");
    assert_eq!(r.received, BYTES);

    let deadline = Instant::now() + Duration::from_secs(30);
    let st = ga.wait_for(
        &mut lab,
        "change rekeyed and added up",
        Duration::from_secs(30),
        |st| {
            up(st, "added")
                && tunnel(st, "change").is_some_and(|c| {
                    c.esp_algorithms.as_deref() == Some("aes256gcm16")
                        && c.state == TunnelState::Established
                })
        },
    );
    assert!(Instant::now() < deadline);
    let keep1 = tunnel(&st, "keep").unwrap();
    assert_eq!(
        (keep1.spi_in, keep1.spi_out),
        (keep0.spi_in, keep0.spi_out),
        "keep's SPIs changed"
    );
    assert_eq!(keep1.child_rekeys, 0);
    assert!(tunnel(&st, "gone").is_none());
    // B: gone was deleted by A's DELETE; keep is untouched there too.
    let stb = gb.wait_for(&mut lab, "gone down at B", Duration::from_secs(10), |st| {
        tunnel(st, "gone").is_some_and(|t| t.state == TunnelState::Down)
    });
    assert_eq!(tunnel(&stb, "keep").unwrap().spi_out, keep0.spi_in);
    // A's interface and route of gone are gone.
    let links = String::from_utf8_lossy(&lab.ip_in(&t.gw_a, &["link", "show"]).unwrap().stdout)
        .into_owned();
    assert!(
        !links.contains("tb-gone") && links.contains("tb-added"),
        "{links}"
    );
    let routes = String::from_utf8_lossy(&lab.ip_in(&t.gw_a, &["route", "show"]).unwrap().stdout)
        .into_owned();
    assert!(
        !routes.contains("10.78.2.0/24") && routes.contains("10.78.3.0/24 dev tb-added"),
        "{routes}"
    );
    common::ping_both_ways(&lab, &t, "keep after reload");
    for e in [&EXTRA[0], &EXTRA[2]] {
        assert!(
            ping_from(&lab, &t.gw_a, &format!("{}.1", e.3), &format!("{}.1", e.4)),
            "{} after reload\n{}",
            e.0,
            ga.log_tail(40)
        );
    }
    // SIGHUP reloads too (the same files: everything kept).
    let before_hup = ga.log().matches("reload done").count();
    // SAFETY: signalling our own child process by PID.
    unsafe { libc::kill(ga.pid as i32, libc::SIGHUP) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while ga.log().matches("reload done").count() == before_hup {
        assert!(
            Instant::now() < deadline,
            "no reload on SIGHUP\n{}",
            ga.log_tail(20)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let st = ga.status().unwrap();
    assert_eq!(tunnel(&st, "keep").unwrap().spi_in, keep0.spi_in);
    ga.stop(&mut lab);
    gb.stop(&mut lab);
}
