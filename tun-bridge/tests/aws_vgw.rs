//! tun-bridge against AWS-VGW-like strongSwan responders (root, strongSwan):
//!
//! * `rekeys_during_transfer`: 0.0.0.0/0 selectors, PFS required, DPD 10 s,
//!   short lifetimes so the VGW rekeys the Child SA (with KE) and the IKE SA
//!   while a paced TCP transfer runs; every byte arrives (SHA-256).
//! * `failover_to_tunnel2`: two VGWs (Tunnel1, Tunnel2) in front of the
//!   same VPC prefix; the active VGW's charon is killed; traffic (a UDP echo
//!   probe) resumes over Tunnel2 within the DPD verdict time + 2 s.
//!
//! The tun-bridge side uses AWS's strongSwan sample layout (`left=
//! %defaultroute`, 0/0 subnets, `leftupdown` with inside addresses and the
//! VPC route). Without root/strongSwan: skipped, except under `CI`.

mod common;

use common::*;
use netns_lab::traffic::{tcp_transfer_paced, UdpProbe};
use netns_lab::{Lab, StrongSwan, SwanConnection, TwoSites, TwoSitesConfig, VgwTimers};
use std::time::{Duration, Instant};

const VPC: &str = "10.2.0.0/24";

/// `ESTABLISHED` IKE SA unique ids and `INSTALLED` Child SA unique ids and
/// ESP algorithm tokens of a `swanctl --list-sas` listing.
fn swan_ids(l: &str) -> (Vec<u32>, Vec<(u32, String)>) {
    let mut ike = Vec::new();
    let mut child = Vec::new();
    for line in l.lines() {
        let f: Vec<&str> = line.trim().split(", ").collect();
        let id = |s: &str| s.split('#').nth(1).and_then(|x| x.parse::<u32>().ok());
        if f.len() > 2 && f[1] == "ESTABLISHED" {
            if let Some(i) = id(f[0]) {
                ike.push(i);
            }
        } else if f.len() > 4 && f[2] == "INSTALLED" {
            if let Some(i) = id(f[0]) {
                let esp = f.iter().find(|x| x.starts_with("ESP:")).unwrap_or(&"");
                child.push((i, esp.to_string()));
            }
        }
    }
    (ike, child)
}

fn aws_tunnel(name: &str, vgw: &str, leftid: &str, inside: u8, mark: u32, case: &Case) -> TbConn {
    let mut c = TbConn::new(
        name,
        "start",
        "%defaultroute",
        vgw,
        "0.0.0.0/0",
        "0.0.0.0/0",
        case,
    );
    c.leftid = Some(leftid.into());
    c.updown = Some(Updown {
        name: name.into(),
        local_inside: format!("169.254.{inside}.2/30"),
        remote_inside: format!("169.254.{inside}.1/30"),
        mark,
        routes: vec![VPC.into()],
    });
    c
}

#[test]
fn rekeys_during_transfer() {
    let _g = serial();
    if !Lab::require_strongswan() {
        return;
    }
    let mut lab = Lab::new().expect("lab");
    let t = TwoSites::up(&mut lab, TwoSitesConfig::default()).expect("topology");
    let (a, b) = (t.gw_a_outer().to_string(), t.gw_b_outer().to_string());
    let key = psk("vgw");
    // Child SA: life 36 s, rekey at 27 s minus up to 9 s; IKE SA: life 60 s,
    // rekey at 45 s minus up to 15 s. Both happen within ~45 s.
    let timers = VgwTimers {
        ike_lifetime: 60,
        child_lifetime: 36,
        margin: 540,
        dpd_delay: 10,
    };
    let swan = StrongSwan::start(&mut lab, &t.gw_b, false).expect("charon");
    swan.vgw_routing(&lab, Some("169.254.10.1/30"), VPC)
        .expect("VGW routing");
    swan.load(&SwanConnection::aws_vgw(
        "vgw",
        &b,
        &a,
        key.as_bytes(),
        &timers,
    ))
    .expect("load VGW");
    let case = Case {
        name: "AWS sample",
        ike: "aes128-sha1-modp1024",
        esp: "aes128-sha1-modp1024",
    };
    let conn = aws_tunnel("Tunnel1", &b, &a, 10, 100, &case);
    let gw = TunBridge::start(
        &mut lab,
        &t.gw_a,
        "gw-a",
        &ipsec_conf(&[conn]),
        &ipsec_secrets(&[(&a, &b, &key)]),
    );
    let t0 = Instant::now();
    gw.wait_established(&mut lab, &["Tunnel1"]);
    println!("established in {:?}", t0.elapsed());
    assert!(
        lab.ping(&t.host_a, &t.host_b_addr().to_string(), 3)
            .expect("ping"),
        "ping host A -> VPC host; VGW:\n{}\ntun-bridge:\n{}",
        swan_sas(&swan),
        gw.log_tail(40)
    );
    assert!(
        lab.ping(&t.gw_a, "169.254.10.1", 2).expect("ping"),
        "ping VGW inside address"
    );
    let (ike0, child0) = swan_ids(&swan_sas(&swan));
    assert_eq!((ike0.len(), child0.len()), (1, 1), "{}", swan_sas(&swan));
    let spi0 = gw.tunnel("Tunnel1").and_then(|s| s.spi_in);

    // 2 MiB/s for 50 s: spans the Child SA rekey (18-27 s) and the IKE SA
    // rekey (30-45 s) after establishment.
    let bytes = 100u64 << 20;
    let r = tcp_transfer_paced(
        &t.host_a,
        &t.host_b,
        t.host_b_addr(),
        5400,
        bytes,
        Some(2 << 20),
        Duration::from_secs(90),
    )
    .unwrap_or_else(|e| {
        panic!(
            "transfer across rekeys: {e}\nVGW:\n{}\n--- charon:\n{}\n--- tun-bridge:\n{}",
            swan_sas(&swan),
            swan.log_tail(60),
            gw.log_tail(60)
        )
    });
    println!("transfer across rekeys: {r}");
    assert!(r.intact(), "{r}");
    assert_eq!(r.received, bytes);

    let l = swan_sas(&swan);
    let (ike1, child1) = swan_ids(&l);
    println!("VGW after transfer:\n{l}");
    assert_eq!(ike1.len(), 1, "{l}");
    assert!(
        ike1[0] > ike0[0],
        "IKE SA not rekeyed by the VGW ({ike0:?} -> {ike1:?})\n{l}"
    );
    assert_eq!(child1.len(), 1, "{l}");
    assert!(
        child1[0].0 > child0[0].0,
        "Child SA not rekeyed ({child0:?} -> {child1:?})\n{l}"
    );
    assert!(
        child1[0].1.contains("MODP_1024"),
        "rekeyed Child SA without PFS group: {}",
        child1[0].1
    );
    let st = gw.tunnel("Tunnel1").expect("status");
    assert_ne!(st.spi_in, spi0, "tun-bridge still on the first Child SA");
    assert!(
        matches!(st.last_rekey_secs, Some(s) if s < 60),
        "tun-bridge reports no recent rekey: {st:?}"
    );
    assert!(
        lab.ping(&t.host_a, &t.host_b_addr().to_string(), 2)
            .expect("ping"),
        "ping after rekeys"
    );
    let charon_log = swan.log();
    assert!(
        !charon_log.contains("DPD") || !charon_log.contains("giving up"),
        "VGW gave up on tun-bridge"
    );
    gw.stop(&mut lab);
    println!("rekeys_during_transfer: {:?} total", t0.elapsed());
}

#[test]
fn failover_to_tunnel2() {
    let _g = serial();
    if !Lab::require_strongswan() {
        return;
    }
    let t_all = Instant::now();
    let mut lab = Lab::new().expect("lab");
    // host A (10.1.0.2) — gw A — wan0 192.0.2.1/24   ↔ vgw1 192.0.2.2
    //                          — wan1 198.51.100.1/24 ↔ vgw2 198.51.100.2
    // vgw1 — 169.254.101.0/30 — vpc host (10.2.0.2/32 on lo) — 169.254.102.0/30 — vgw2
    let host_a = lab.add_netns("hosta").expect("ns");
    let gw_a = lab.add_netns("gwa").expect("ns");
    let vgw1 = lab.add_netns("vgw1").expect("ns");
    let vgw2 = lab.add_netns("vgw2").expect("ns");
    let vpc = lab.add_netns("vpc").expect("ns");
    lab.veth(
        &host_a,
        "lan0",
        Some("10.1.0.2/24"),
        &gw_a,
        "lan1",
        Some("10.1.0.1/24"),
    )
    .expect("veth");
    lab.veth(
        &gw_a,
        "wan0",
        Some("192.0.2.1/24"),
        &vgw1,
        "wan0",
        Some("192.0.2.2/24"),
    )
    .expect("veth");
    lab.veth(
        &gw_a,
        "wan1",
        Some("198.51.100.1/24"),
        &vgw2,
        "wan0",
        Some("198.51.100.2/24"),
    )
    .expect("veth");
    lab.veth(
        &vgw1,
        "vpc0",
        Some("169.254.101.1/30"),
        &vpc,
        "v1",
        Some("169.254.101.2/30"),
    )
    .expect("veth");
    lab.veth(
        &vgw2,
        "vpc0",
        Some("169.254.102.1/30"),
        &vpc,
        "v2",
        Some("169.254.102.2/30"),
    )
    .expect("veth");
    lab.ip_in(&host_a, &["route", "add", "default", "via", "10.1.0.1"])
        .expect("route");
    lab.ip_in(&vpc, &["addr", "add", "10.2.0.2/32", "dev", "lo"])
        .expect("addr");
    // The VPC's own path selection (AWS does this inside its network):
    // prefer VGW1, and ignore routes over a link without carrier.
    lab.exec(
        &vpc,
        &[
            "sysctl",
            "-qw",
            "net.ipv4.conf.all.ignore_routes_with_linkdown=1",
        ],
    )
    .expect("sysctl");
    for (via, metric) in [("169.254.101.1", "10"), ("169.254.102.1", "20")] {
        lab.ip_in(
            &vpc,
            &["route", "add", "10.1.0.0/24", "via", via, "metric", metric],
        )
        .expect("vpc route");
    }
    for (ns, nh) in [(&vgw1, "169.254.101.2"), (&vgw2, "169.254.102.2")] {
        lab.forwarding_on(ns).expect("forwarding");
        lab.ip_in(ns, &["route", "add", VPC, "via", nh])
            .expect("route");
    }
    lab.forwarding_on(&gw_a).expect("forwarding");

    let (k1, k2) = (psk("t1"), psk("t2"));
    let timers = VgwTimers::default();
    let s1 = StrongSwan::start(&mut lab, &vgw1, false).expect("charon 1");
    s1.vgw_routing(&lab, Some("169.254.10.1/30"), VPC)
        .expect("routing 1");
    s1.load(&SwanConnection::aws_vgw(
        "vgw",
        "192.0.2.2",
        "192.0.2.1",
        k1.as_bytes(),
        &timers,
    ))
    .expect("load 1");
    let s2 = StrongSwan::start(&mut lab, &vgw2, false).expect("charon 2");
    s2.vgw_routing(&lab, Some("169.254.20.1/30"), VPC)
        .expect("routing 2");
    s2.load(&SwanConnection::aws_vgw(
        "vgw",
        "198.51.100.2",
        "198.51.100.1",
        k2.as_bytes(),
        &timers,
    ))
    .expect("load 2");

    let case = CASES[0];
    // DPD of tun-bridge: liveness check after 2 s of silence, verdict after
    // 6 s without an answer.
    let (dpd_delay, dpd_timeout) = (Duration::from_secs(2), Duration::from_secs(6));
    let mut t1 = aws_tunnel("Tunnel1", "192.0.2.2", "192.0.2.1", 10, 100, &case);
    let mut t2 = aws_tunnel("Tunnel2", "198.51.100.2", "198.51.100.1", 20, 200, &case);
    for c in [&mut t1, &mut t2] {
        c.dpddelay = format!("{}s", dpd_delay.as_secs());
        c.dpdtimeout = format!("{}s", dpd_timeout.as_secs());
    }
    let gw = TunBridge::start(
        &mut lab,
        &gw_a,
        "gw-a",
        &ipsec_conf(&[t1, t2]),
        &ipsec_secrets(&[
            ("192.0.2.1", "192.0.2.2", &k1),
            ("198.51.100.1", "198.51.100.2", &k2),
        ]),
    );
    let st = gw.wait_established(&mut lab, &["Tunnel1", "Tunnel2"]);
    let role = |st: &tun_bridge::control::StatusReport, n: &str| {
        st.tunnels
            .iter()
            .find(|t| t.name == n)
            .map(|t| t.role.to_string())
            .unwrap_or_default()
    };
    assert_eq!(role(&st, "Tunnel1"), "active", "{st:?}");
    assert_eq!(role(&st, "Tunnel2"), "standby", "{st:?}");
    assert!(
        lab.ping(&host_a, "10.2.0.2", 3).expect("ping"),
        "ping over Tunnel1\n{}",
        gw.log_tail(40)
    );

    let probe = UdpProbe::start(
        &host_a,
        &vpc,
        "10.2.0.2".parse().expect("addr"),
        7000,
        Duration::from_millis(10),
    )
    .expect("probe");
    assert!(
        probe
            .wait_reply_after(Instant::now(), Duration::from_secs(3))
            .is_some(),
        "probe gets no echo over Tunnel1"
    );
    std::thread::sleep(Duration::from_millis(500));

    // VGW1 dies: its charon is killed (no DELETE), and the VPC stops
    // routing through it (its link goes down).
    let kill_at = Instant::now();
    s1.kill(&mut lab);
    lab.ip_in(&vgw1, &["link", "set", "vpc0", "down"])
        .expect("link down");
    let bound = dpd_delay + dpd_timeout + Duration::from_secs(2);
    let resumed = probe.wait_reply_after(
        kill_at + Duration::from_millis(50),
        bound + Duration::from_secs(10),
    );
    let after = gw.status();
    let Some(resumed) = resumed else {
        panic!(
            "traffic did not resume within {:?}; status {after:?}\n--- tun-bridge:\n{}\n--- VGW2:\n{}",
            bound + Duration::from_secs(10),
            gw.log_tail(60),
            swan_sas(&s2)
        );
    };
    // Let a few more echoes arrive to close the gap measurement.
    std::thread::sleep(Duration::from_millis(300));
    let gap = probe.longest_gap(kill_at, resumed);
    println!(
        "failover: traffic resumed {:?} after the kill; longest gap without echo {} ms (bound {} ms)",
        resumed.duration_since(kill_at),
        gap.as_millis(),
        bound.as_millis()
    );
    probe.stop();
    assert!(
        gap <= bound,
        "gap {gap:?} exceeds DPD verdict + 2 s ({bound:?})\n{}",
        gw.log_tail(60)
    );
    let st = gw.status().expect("status");
    assert_eq!(role(&st, "Tunnel2"), "active", "{st:?}");
    assert!(
        lab.ping(&host_a, "10.2.0.2", 3).expect("ping"),
        "ping over Tunnel2"
    );
    let l2 = swan_sas(&s2);
    let (_, c2) = swan_ids(&l2);
    assert!(!c2.is_empty(), "VGW2 has no Child SA:\n{l2}");
    gw.stop(&mut lab);
    println!("failover_to_tunnel2: {:?} total", t_all.elapsed());
}
