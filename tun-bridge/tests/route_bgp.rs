//! Route-based tunnels with BGP against real peers (root, strongSwan,
//! BIRD 2, FRR):
//!
//! * `strongswan_vgw_with_bird`: tun-bridge (ipsec1, 169.254.10.2/30,
//!   ASN 65000) to an AWS-VGW-like strongSwan (kernel-libipsec, 0/0
//!   selectors, 169.254.10.1/30 on its ipsec0, ASN 64512), BIRD on both:
//!   BGP Established over the tunnel, each side learns the other's prefix
//!   through BGP only, ping both ways, 64 MiB TCP with equal SHA-256.
//! * `ecmp_over_two_tunnels_survives_a_dead_peer`: two VGWs, BGP on both
//!   tunnels, an ECMP route on the customer side; 8 parallel checksummed
//!   TCP flows spread over both tunnels (both tunnels' counters grow); VGW2
//!   dies mid-transfer: DPD drops the carrier of ipsec2, BIRD withdraws its
//!   routes, every flow finishes on Tunnel1 with its checksum; the gap is
//!   printed.
//! * `tb_pair_frr_and_bird_v4_v6_and_peer_restart`: tun-bridge to
//!   tun-bridge, FRR on one side and BIRD on the other, IPv4 and IPv6
//!   inner prefixes over IPv4 and IPv6 inside addresses; the peer
//!   restarts: the interface stays (same ifindex, address kept), its
//!   carrier goes down and up, BGP re-establishes.
//!
//! * `bgp_daemon_examples_are_valid`: `examples/aws-bgp/bird.conf` and
//!   `frr.conf` pass `bird -p` and `vtysh -C`.
//!
//! Without root and the daemons: skipped, except under `CI`.

mod common;

use common::*;
use netns_lab::bgp::{have_bgp_daemons, wait_until, BgpPeer, BgpSpeaker, Bird, Frr, AWS_ASN};
use netns_lab::traffic::{tcp_transfer, tcp_transfer_stall, UdpProbe};
use netns_lab::{Lab, StrongSwan, SwanConnection, TwoSites, TwoSitesConfig, VgwTimers};
use std::time::{Duration, Instant};

const CUSTOMER_ASN: u32 = 65000;
/// Bound of BGP establishment once the tunnel is up.
const BGP_TIMEOUT: Duration = Duration::from_secs(40);

fn require() -> bool {
    if !Lab::require_strongswan() {
        return false;
    }
    let have = have_bgp_daemons();
    if !have && std::env::var_os("CI").is_some() {
        panic!("CI: BIRD 2 and FRR are required (apt-get install bird2 frr)");
    }
    if !have {
        eprintln!("skipped: BIRD 2 / FRR not installed");
    }
    have
}

/// A route-based conn in Libreswan's words: ipsec-interface, interface-ip,
/// 0/0 selectors.
fn route_conn(
    name: &str,
    auto: &'static str,
    left: &str,
    right: &str,
    ifnum: u32,
    inside: &str,
) -> TbConn {
    let mut c = TbConn::new(name, auto, left, right, "0.0.0.0/0", "0.0.0.0/0", &CASES[0]);
    c.extra = vec![
        format!("ipsec-interface={ifnum}"),
        format!("interface-ip={inside}"),
    ];
    c
}

fn peer(name: &str, local: &str, neighbor: &str, asn: u32) -> BgpPeer {
    BgpPeer {
        name: name.into(),
        local: local.into(),
        neighbor: neighbor.into(),
        asn,
    }
}

fn speaker(router_id: &str, asn: u32, peers: Vec<BgpPeer>, networks: &[&str]) -> BgpSpeaker {
    BgpSpeaker {
        router_id: router_id.into(),
        asn,
        peers,
        networks: networks.iter().map(|s| s.to_string()).collect(),
        hold_time: netns_lab::bgp::AWS_HOLD_TIME,
    }
}

/// `ip route show <prefix>` (v4 or v6) in `ns`.
fn route(lab: &Lab, ns: &str, prefix: &str) -> String {
    let fam = if prefix.contains(':') { "-6" } else { "-4" };
    lab.exec(ns, &["ip", fam, "route", "show", prefix])
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// `ip -o link show DEV` in `ns`.
fn link(lab: &Lab, ns: &str, dev: &str) -> String {
    lab.exec(ns, &["ip", "-o", "link", "show", dev])
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn ifindex(lab: &Lab, ns: &str, dev: &str) -> String {
    link(lab, ns, dev)
        .split(':')
        .next()
        .unwrap_or("")
        .to_string()
}

#[test]
fn strongswan_vgw_with_bird() {
    let _g = serial();
    if !require() {
        return;
    }
    let t_all = Instant::now();
    let mut lab = Lab::new().expect("lab");
    let t = TwoSites::up(&mut lab, TwoSitesConfig::default()).expect("topology");
    let (a, b) = (t.gw_a_outer().to_string(), t.gw_b_outer().to_string());
    let key = psk("bgp-vgw");
    // The VGW: 0/0 selectors, its inside address on kernel-libipsec's
    // ipsec0, no routes of its own (BGP brings them).
    let swan = StrongSwan::start(&mut lab, &t.gw_b, false).expect("charon");
    swan.vgw_routing(&lab, Some("169.254.10.1/30"), &t.site_b_cidr())
        .expect("VGW inside address");
    swan.load(&SwanConnection::aws_vgw(
        "vgw",
        &b,
        &a,
        key.as_bytes(),
        &VgwTimers::default(),
    ))
    .expect("load VGW");
    let gw = TunBridge::start(
        &mut lab,
        &t.gw_a,
        "gw-a",
        &ipsec_conf(&[route_conn("Tunnel1", "start", &a, &b, 1, "169.254.10.2/30")]),
        &ipsec_secrets(&[(&a, &b, &key)]),
    );
    let t0 = Instant::now();
    gw.wait_established(&mut lab, &["Tunnel1"]);
    println!("tunnel established in {:?}", t0.elapsed());
    // No route of tun-bridge's own to the VPC before BGP.
    assert!(route(&lab, &t.gw_a, &t.site_b_cidr()).is_empty());
    assert!(
        !link(&lab, &t.gw_a, "ipsec1").contains("NO-CARRIER"),
        "{}",
        link(&lab, &t.gw_a, "ipsec1")
    );

    let bird_a = Bird::start(
        &mut lab,
        &t.gw_a,
        "cgw",
        &speaker(
            "169.254.10.2",
            CUSTOMER_ASN,
            vec![peer("aws1", "169.254.10.2", "169.254.10.1", AWS_ASN)],
            &[&t.site_a_cidr()],
        ),
    )
    .expect("BIRD customer");
    let bird_b = Bird::start(
        &mut lab,
        &t.gw_b,
        "vgw",
        &speaker(
            "169.254.10.1",
            AWS_ASN,
            vec![peer("cgw", "169.254.10.1", "169.254.10.2", CUSTOMER_ASN)],
            &[&t.site_b_cidr()],
        ),
    )
    .expect("BIRD VGW");
    let t1 = Instant::now();
    let up = wait_until(BGP_TIMEOUT, || {
        bird_a.established("aws1")
            && route(&lab, &t.gw_a, &t.site_b_cidr()).contains("169.254.10.1")
            && route(&lab, &t.gw_b, &t.site_a_cidr()).contains("169.254.10.2")
    });
    assert!(
        up,
        "BGP not established with routes within {BGP_TIMEOUT:?}\ncustomer: {}\n{}\nVGW: {}\n{}\ntun-bridge:\n{}",
        bird_a.birdc(&["show", "protocols", "all", "aws1"]).unwrap_or_default(),
        bird_a.log(),
        bird_b.birdc(&["show", "protocols", "all", "cgw"]).unwrap_or_default(),
        bird_b.log(),
        gw.log_tail(30)
    );
    println!(
        "BGP established and routes learned in {:?}: customer `{}`, VGW `{}`",
        t1.elapsed(),
        route(&lab, &t.gw_a, &t.site_b_cidr()).trim(),
        route(&lab, &t.gw_b, &t.site_a_cidr()).trim()
    );
    assert!(route(&lab, &t.gw_a, &t.site_b_cidr()).contains("proto bird"));
    ping_both_ways(&lab, &t, "route-based + BGP");
    let r = tcp_transfer(
        &t.host_a,
        &t.host_b,
        t.host_b_addr(),
        5600,
        BULK_BYTES,
        BULK_TIMEOUT,
    )
    .unwrap_or_else(|e| panic!("64 MiB over the BGP route: {e}\n{}", gw.log_tail(30)));
    println!("64 MiB over the BGP route: {r}");
    assert!(r.intact(), "{r}");
    let st = gw.tunnel("Tunnel1").expect("status");
    assert!(st.bytes_out >= BULK_BYTES, "{st:?}");
    gw.stop(&mut lab);
    println!("strongswan_vgw_with_bird: {:?} total", t_all.elapsed());
}

#[test]
fn ecmp_over_two_tunnels_survives_a_dead_peer() {
    let _g = serial();
    if !require() {
        return;
    }
    let t_all = Instant::now();
    let mut lab = Lab::new().expect("lab");
    // host A (10.1.0.2) — gw A — wan0 192.0.2.1   ↔ vgw1 192.0.2.2
    //                          — wan1 198.51.100.1 ↔ vgw2 198.51.100.2
    // vgw1 — 169.254.101.0/30 — vpc (10.2.0.2/32 on lo) — 169.254.102.0/30 — vgw2
    let host_a = lab.add_netns("hosta").expect("ns");
    let gw_a = lab.add_netns("gwa").expect("ns");
    let vgw1 = lab.add_netns("vgw1").expect("ns");
    let vgw2 = lab.add_netns("vgw2").expect("ns");
    let vpc = lab.add_netns("vpc").expect("ns");
    let links = [
        (&host_a, "lan0", "10.1.0.2/24", &gw_a, "lan1", "10.1.0.1/24"),
        (&gw_a, "wan0", "192.0.2.1/24", &vgw1, "wan0", "192.0.2.2/24"),
        (
            &gw_a,
            "wan1",
            "198.51.100.1/24",
            &vgw2,
            "wan0",
            "198.51.100.2/24",
        ),
        (
            &vgw1,
            "vpc0",
            "169.254.101.1/30",
            &vpc,
            "v1",
            "169.254.101.2/30",
        ),
        (
            &vgw2,
            "vpc0",
            "169.254.102.1/30",
            &vpc,
            "v2",
            "169.254.102.2/30",
        ),
    ];
    for (a, ai, aa, b, bi, ba) in links {
        lab.veth(a, ai, Some(aa), b, bi, Some(ba)).expect("veth");
    }
    lab.ip_in(&host_a, &["route", "add", "default", "via", "10.1.0.1"])
        .expect("route");
    lab.ip_in(&vpc, &["addr", "add", "10.2.0.2/32", "dev", "lo"])
        .expect("addr");
    // The VPC side: ECMP back over both VGWs, ignoring a link without
    // carrier (AWS's own network does this part).
    lab.exec(
        &vpc,
        &[
            "sysctl",
            "-qw",
            "net.ipv4.conf.all.ignore_routes_with_linkdown=1",
        ],
    )
    .expect("sysctl");
    lab.ip_in(
        &vpc,
        &[
            "route",
            "add",
            "10.1.0.0/24",
            "nexthop",
            "via",
            "169.254.101.1",
            "nexthop",
            "via",
            "169.254.102.1",
        ],
    )
    .expect("vpc route");
    for (ns, nh) in [(&vgw1, "169.254.101.2"), (&vgw2, "169.254.102.2")] {
        lab.forwarding_on(ns).expect("forwarding");
        lab.ip_in(ns, &["route", "add", "10.2.0.0/24", "via", nh])
            .expect("route");
    }
    lab.forwarding_on(&gw_a).expect("forwarding");
    // What `tun-bridge doctor` suggests for ECMP: hash flows by ports.
    lab.exec(
        &gw_a,
        &["sysctl", "-qw", "net.ipv4.fib_multipath_hash_policy=1"],
    )
    .expect("sysctl");

    let (k1, k2) = (psk("ecmp1"), psk("ecmp2"));
    let mut swans = Vec::new();
    let mut birds = Vec::new();
    for (ns, outer, peer_outer, inside, key, tag) in [
        (&vgw1, "192.0.2.2", "192.0.2.1", "169.254.10", &k1, "vgw1"),
        (
            &vgw2,
            "198.51.100.2",
            "198.51.100.1",
            "169.254.20",
            &k2,
            "vgw2",
        ),
    ] {
        let s = StrongSwan::start(&mut lab, ns, false).expect("charon");
        s.vgw_routing(&lab, Some(&format!("{inside}.1/30")), "10.2.0.0/24")
            .expect("VGW inside address");
        let timers = VgwTimers {
            dpd_delay: 2,
            ..Default::default()
        };
        s.load(&SwanConnection::aws_vgw(
            "vgw",
            outer,
            peer_outer,
            key.as_bytes(),
            &timers,
        ))
        .expect("load VGW");
        swans.push(s);
        birds.push(
            Bird::start(
                &mut lab,
                ns,
                tag,
                &speaker(
                    &format!("{inside}.1"),
                    AWS_ASN,
                    vec![peer(
                        "cgw",
                        &format!("{inside}.1"),
                        &format!("{inside}.2"),
                        CUSTOMER_ASN,
                    )],
                    &["10.2.0.0/24"],
                ),
            )
            .expect("BIRD VGW"),
        );
    }
    // DPD: check after 1 s of silence, verdict after 3 s without answer.
    let mut t1 = route_conn(
        "Tunnel1",
        "start",
        "192.0.2.1",
        "192.0.2.2",
        1,
        "169.254.10.2/30",
    );
    let mut t2 = route_conn(
        "Tunnel2",
        "start",
        "198.51.100.1",
        "198.51.100.2",
        2,
        "169.254.20.2/30",
    );
    for c in [&mut t1, &mut t2] {
        c.dpddelay = "1s".into();
        c.dpdtimeout = "3s".into();
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
    gw.wait_established(&mut lab, &["Tunnel1", "Tunnel2"]);
    let bird_a = Bird::start(
        &mut lab,
        &gw_a,
        "cgw",
        &speaker(
            "169.254.10.2",
            CUSTOMER_ASN,
            vec![
                peer("aws1", "169.254.10.2", "169.254.10.1", AWS_ASN),
                peer("aws2", "169.254.20.2", "169.254.20.1", AWS_ASN),
            ],
            &["10.1.0.0/24"],
        ),
    )
    .expect("BIRD customer");
    let ecmp = wait_until(BGP_TIMEOUT, || {
        let r = route(&lab, &gw_a, "10.2.0.0/24");
        r.contains("dev ipsec1") && r.contains("dev ipsec2")
    });
    assert!(
        ecmp,
        "no ECMP route over both tunnels: {}\n{}\n{}",
        route(&lab, &gw_a, "10.2.0.0/24"),
        bird_a.birdc(&["show", "protocols"]).unwrap_or_default(),
        bird_a.birdc(&["show", "route", "all"]).unwrap_or_default()
    );
    println!(
        "ECMP route: {}",
        route(&lab, &gw_a, "10.2.0.0/24").trim().replace('\n', " ")
    );
    assert!(
        lab.ping(&host_a, "10.2.0.2", 3).expect("ping"),
        "ping over ECMP"
    );
    let before = gw.status().expect("status");

    // Gap probes (different ports hash to different tunnels).
    let probes: Vec<UdpProbe> = (0..4)
        .map(|k| {
            UdpProbe::start(
                &host_a,
                &vpc,
                "10.2.0.2".parse::<std::net::Ipv4Addr>().unwrap(),
                7100 + k,
                Duration::from_millis(20),
            )
            .expect("probe")
        })
        .collect();
    // 8 flows of 12 MiB at 1 MiB/s each: about 12 s, VGW2 dies at 4 s.
    const FLOW: u64 = 12 << 20;
    let (ha, vp) = (host_a.clone(), vpc.clone());
    let flows: Vec<_> = (0..8u16)
        .map(|k| {
            let (ha, vp) = (ha.clone(), vp.clone());
            std::thread::spawn(move || {
                // A flow on the dead tunnel is silent for the DPD verdict
                // plus TCP's retransmission backoff (which doubles): allow
                // 25 s of silence (the gap is printed below).
                tcp_transfer_stall(
                    &ha,
                    &vp,
                    "10.2.0.2".parse::<std::net::Ipv4Addr>().unwrap(),
                    5700 + k,
                    FLOW,
                    Some(1 << 20),
                    Duration::from_secs(90),
                    Duration::from_secs(25),
                )
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(4));
    let mid = gw.status().expect("status");
    let grew = |name: &str| {
        let b = before
            .tunnels
            .iter()
            .find(|t| t.name == name)
            .map_or(0, |t| t.bytes_out);
        let m = mid
            .tunnels
            .iter()
            .find(|t| t.name == name)
            .map_or(0, |t| t.bytes_out);
        m.saturating_sub(b)
    };
    let (g1, g2) = (grew("Tunnel1"), grew("Tunnel2"));
    println!("before the kill: Tunnel1 +{g1} bytes out, Tunnel2 +{g2} bytes out");
    assert!(
        g1 > 1 << 20 && g2 > 1 << 20,
        "flows not spread over both tunnels: {g1} / {g2}"
    );

    // VGW2 dies: charon killed (no DELETE), its BGP speaker gone, its VPC
    // link down.
    let kill_at = Instant::now();
    lab.ip_in(&vgw2, &["link", "set", "vpc0", "down"])
        .expect("link down");
    let s2 = swans.pop().expect("vgw2");
    s2.kill(&mut lab);
    let b2 = birds.pop().expect("bird vgw2");
    lab.stop(b2.pid());
    let withdrawn = wait_until(Duration::from_secs(40), || {
        let r = route(&lab, &gw_a, "10.2.0.0/24");
        r.contains("ipsec1") && !r.contains("ipsec2")
    });
    let detect = kill_at.elapsed();
    assert!(
        withdrawn,
        "Tunnel2's route not withdrawn: {}",
        route(&lab, &gw_a, "10.2.0.0/24")
    );
    println!(
        "VGW2 killed: route over ipsec2 withdrawn after {detect:?} ({}); ipsec2: {}",
        route(&lab, &gw_a, "10.2.0.0/24").trim(),
        link(&lab, &gw_a, "ipsec2").trim()
    );
    assert!(
        link(&lab, &gw_a, "ipsec2").contains("NO-CARRIER"),
        "{}",
        link(&lab, &gw_a, "ipsec2")
    );
    assert!(link(&lab, &gw_a, "ipsec1").contains("LOWER_UP"));
    for (k, f) in flows.into_iter().enumerate() {
        let r = f
            .join()
            .expect("flow thread")
            .unwrap_or_else(|e| panic!("flow {k}: {e}\n{}", gw.log_tail(40)));
        println!("flow {k}: {r}");
        assert!(r.intact(), "flow {k}: {r}");
    }
    let mut gap = Duration::ZERO;
    for p in probes {
        gap = gap.max(p.longest_gap(kill_at, Instant::now()));
        p.stop();
    }
    println!(
        "ECMP failover: longest gap of the UDP probes {} ms (DPD verdict 1 s + 3 s)",
        gap.as_millis()
    );
    assert!(gap < Duration::from_secs(10), "gap {gap:?}");
    let st = gw.tunnel("Tunnel2").expect("status");
    assert_ne!(
        st.state,
        tun_bridge::control::TunnelState::Established,
        "{st:?}"
    );
    gw.stop(&mut lab);
    drop(birds);
    drop(swans);
    println!(
        "ecmp_over_two_tunnels_survives_a_dead_peer: {:?} total",
        t_all.elapsed()
    );
}

/// `ping` from `ns` with source `src` to `dst` (v4 or v6), bounded.
fn ping_from(lab: &Lab, ns: &str, src: &str, dst: &str) -> bool {
    lab.exec_status(
        ns,
        &[
            "ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", "-I", src, dst,
        ],
        Duration::from_secs(15),
    )
    .is_ok_and(|o| o.status.success())
}

#[test]
fn tb_pair_frr_and_bird_v4_v6_and_peer_restart() {
    let _g = serial();
    if !require() {
        return;
    }
    let t_all = Instant::now();
    let mut lab = Lab::new().expect("lab");
    let gw_a = lab.add_netns_opts("gwa", true).expect("ns");
    let gw_b = lab.add_netns_opts("gwb", true).expect("ns");
    lab.veth(
        &gw_a,
        "wan0",
        Some("192.0.2.1/24"),
        &gw_b,
        "wan0",
        Some("192.0.2.2/24"),
    )
    .expect("veth");
    // Each side's "LAN": addresses on lo inside the announced prefixes.
    for (ns, v4, v6) in [
        (&gw_a, "10.11.0.1/32", "2001:db8:11::1/128"),
        (&gw_b, "10.12.0.1/32", "2001:db8:12::1/128"),
    ] {
        lab.ip_in(ns, &["addr", "add", v4, "dev", "lo"])
            .expect("addr");
        lab.ip_in(ns, &["-6", "addr", "add", v6, "dev", "lo"])
            .expect("addr");
        lab.forwarding_on(ns).expect("forwarding");
    }
    let key = psk("frr-bird");
    let conn = |name: &str, auto: &'static str, l: &str, r: &str, inside: &str| {
        let mut c = TbConn::new(
            name,
            auto,
            l,
            r,
            "0.0.0.0/0,::/0",
            "0.0.0.0/0,::/0",
            &CASES[0],
        );
        c.dpddelay = "2s".into();
        c.dpdtimeout = "6s".into();
        c.extra = vec!["ipsec-interface=3".into(), format!("interface-ip={inside}")];
        c
    };
    let start_b = |lab: &mut Lab| {
        TunBridge::start(
            lab,
            &gw_b,
            "gw-b",
            &ipsec_conf(&[conn(
                "customer",
                "add",
                "192.0.2.2",
                "192.0.2.1",
                "169.254.30.1/30,fd00:a9fe:30::1/126",
            )]),
            &ipsec_secrets(&[("192.0.2.2", "192.0.2.1", &key)]),
        )
    };
    let tb_b = start_b(&mut lab);
    tb_b.wait_listening(&mut lab);
    let tb_a = TunBridge::start(
        &mut lab,
        &gw_a,
        "gw-a",
        &ipsec_conf(&[conn(
            "aws",
            "start",
            "192.0.2.1",
            "192.0.2.2",
            "169.254.30.2/30,fd00:a9fe:30::2/126",
        )]),
        &ipsec_secrets(&[("192.0.2.1", "192.0.2.2", &key)]),
    );
    tb_a.wait_established(&mut lab, &["aws"]);
    tb_b.wait_established(&mut lab, &["customer"]);
    // Customer side: FRR; AWS side: BIRD. One session per address family.
    let frr = Frr::start(
        &mut lab,
        &gw_a,
        "cgw",
        &speaker(
            "169.254.30.2",
            CUSTOMER_ASN,
            vec![
                peer("aws_v4", "169.254.30.2", "169.254.30.1", AWS_ASN),
                peer("aws_v6", "fd00:a9fe:30::2", "fd00:a9fe:30::1", AWS_ASN),
            ],
            &["10.11.0.0/24", "2001:db8:11::/48"],
        ),
    )
    .expect("FRR");
    let bird = Bird::start(
        &mut lab,
        &gw_b,
        "vgw",
        &speaker(
            "169.254.30.1",
            AWS_ASN,
            vec![
                peer("cgw_v4", "169.254.30.1", "169.254.30.2", CUSTOMER_ASN),
                peer("cgw_v6", "fd00:a9fe:30::1", "fd00:a9fe:30::2", CUSTOMER_ASN),
            ],
            &["10.12.0.0/24", "2001:db8:12::/48"],
        ),
    )
    .expect("BIRD");
    let routes_learned = |lab: &Lab| {
        route(lab, &gw_a, "10.12.0.0/24").contains("dev ipsec3")
            && route(lab, &gw_a, "2001:db8:12::/48").contains("dev ipsec3")
            && route(lab, &gw_b, "10.11.0.0/24").contains("dev ipsec3")
            && route(lab, &gw_b, "2001:db8:11::/48").contains("dev ipsec3")
    };
    let t1 = Instant::now();
    let up = wait_until(BGP_TIMEOUT, || {
        frr.established("169.254.30.1")
            && frr.established("fd00:a9fe:30::1")
            && routes_learned(&lab)
    });
    assert!(
        up,
        "BGP (FRR <-> BIRD) not up with routes within {BGP_TIMEOUT:?}\nFRR:\n{}\n{}\nBIRD:\n{}\n{}",
        frr.vtysh("show bgp summary").unwrap_or_default(),
        frr.log(),
        bird.birdc(&["show", "protocols", "all"])
            .unwrap_or_default(),
        bird.log()
    );
    println!(
        "FRR <-> BIRD: v4 and v6 sessions established, routes learned in {:?}: {} / {}",
        t1.elapsed(),
        route(&lab, &gw_a, "10.12.0.0/24").trim(),
        route(&lab, &gw_a, "2001:db8:12::/48").trim()
    );
    for (ns, src, dst) in [
        (&gw_a, "10.11.0.1", "10.12.0.1"),
        (&gw_b, "10.12.0.1", "10.11.0.1"),
        (&gw_a, "2001:db8:11::1", "2001:db8:12::1"),
        (&gw_b, "2001:db8:12::1", "2001:db8:11::1"),
    ] {
        assert!(
            ping_from(&lab, ns, src, dst),
            "ping {src} -> {dst}\n{}",
            tb_a.log_tail(20)
        );
    }

    // The peer restarts (SIGTERM: it deletes its SAs, its interface goes).
    let index_before = ifindex(&lab, &gw_a, "ipsec3");
    let restart_at = Instant::now();
    tb_b.stop(&mut lab);
    let down = wait_until(Duration::from_secs(10), || {
        link(&lab, &gw_a, "ipsec3").contains("NO-CARRIER")
    });
    assert!(down, "carrier still on: {}", link(&lab, &gw_a, "ipsec3"));
    println!(
        "peer stopped: ipsec3 NO-CARRIER after {:?}",
        restart_at.elapsed()
    );
    let withdrawn = wait_until(Duration::from_secs(10), || {
        !frr.established("169.254.30.1") && !route(&lab, &gw_a, "10.12.0.0/24").contains("ipsec3")
    });
    println!(
        "peer stopped: carrier off, BGP down and routes withdrawn after {:?} ({withdrawn})",
        restart_at.elapsed()
    );
    assert!(
        withdrawn,
        "{}",
        frr.vtysh("show bgp summary").unwrap_or_default()
    );
    // The interface stays, with its addresses.
    assert_eq!(ifindex(&lab, &gw_a, "ipsec3"), index_before);
    let addrs = lab
        .exec(&gw_a, &["ip", "addr", "show", "dev", "ipsec3"])
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    assert!(
        addrs.contains("169.254.30.2/30") && addrs.contains("fd00:a9fe:30::2/126"),
        "{addrs}"
    );
    let tb_b = start_b(&mut lab);
    tb_a.wait_established(&mut lab, &["aws"]);
    let back = wait_until(BGP_TIMEOUT + Duration::from_secs(20), || {
        frr.established("169.254.30.1")
            && frr.established("fd00:a9fe:30::1")
            && routes_learned(&lab)
    });
    assert!(
        back,
        "BGP did not re-establish: {}\n{}",
        frr.vtysh("show bgp summary").unwrap_or_default(),
        bird.birdc(&["show", "protocols", "all"])
            .unwrap_or_default()
    );
    println!(
        "peer restarted: tunnel and both BGP sessions back {:?} after the stop",
        restart_at.elapsed()
    );
    assert_eq!(ifindex(&lab, &gw_a, "ipsec3"), index_before);
    assert!(ping_from(&lab, &gw_a, "10.11.0.1", "10.12.0.1"));
    assert!(ping_from(&lab, &gw_b, "2001:db8:12::1", "2001:db8:11::1"));
    tb_a.stop(&mut lab);
    tb_b.stop(&mut lab);
    println!(
        "tb_pair_frr_and_bird_v4_v6_and_peer_restart: {:?} total",
        t_all.elapsed()
    );
}

#[test]
fn bgp_daemon_examples_are_valid() {
    if !have_bgp_daemons() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI: BIRD 2 and FRR are required (apt-get install bird2 frr)"
        );
        return;
    }
    let ex = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/aws-bgp");
    for (what, argv) in [
        ("bird -p", vec!["bird", "-p", "-c"]),
        ("vtysh -C", vec!["vtysh", "-C", "-f"]),
    ] {
        let file = if what.starts_with("bird") {
            "bird.conf"
        } else {
            "frr.conf"
        };
        let mut c = std::process::Command::new(argv[0]);
        c.args(&argv[1..]).arg(ex.join(file));
        let out = netns_lab::run_with_timeout(&mut c, Duration::from_secs(10)).expect(what);
        assert!(
            out.status.success() && out.stdout.is_empty(),
            "{what} {file}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn shared_ipsec_interface_carries_two_peers() {
    let _g = serial();
    if !Lab::require_root() {
        return;
    }
    let mut lab = Lab::new().expect("lab");
    // gw A's conns to B (10.2.0.0/24) and C (10.3.0.0/24) share ipsec5, as
    // Libreswan allows; the packet's policy picks the tunnel.
    let gw_a = lab.add_netns("gwa").expect("ns");
    let gw_b = lab.add_netns("gwb").expect("ns");
    let gw_c = lab.add_netns("gwc").expect("ns");
    lab.veth(
        &gw_a,
        "wan0",
        Some("192.0.2.1/24"),
        &gw_b,
        "wan0",
        Some("192.0.2.2/24"),
    )
    .expect("veth");
    lab.veth(
        &gw_a,
        "wan1",
        Some("198.51.100.1/24"),
        &gw_c,
        "wan0",
        Some("198.51.100.2/24"),
    )
    .expect("veth");
    for (ns, a) in [
        (&gw_a, "10.1.0.1/32"),
        (&gw_b, "10.2.0.1/32"),
        (&gw_c, "10.3.0.1/32"),
    ] {
        lab.ip_in(ns, &["addr", "add", a, "dev", "lo"])
            .expect("addr");
        lab.forwarding_on(ns).expect("forwarding");
    }
    let (kb, kc) = (psk("shared-b"), psk("shared-c"));
    let mut to_b = TbConn::new(
        "to-b",
        "start",
        "192.0.2.1",
        "192.0.2.2",
        "10.1.0.0/24",
        "10.2.0.0/24",
        &CASES[0],
    );
    to_b.extra = vec![
        "ipsec-interface=5".into(),
        "interface-ip=169.254.50.2/30".into(),
    ];
    let mut to_c = TbConn::new(
        "to-c",
        "start",
        "198.51.100.1",
        "198.51.100.2",
        "10.1.0.0/24",
        "10.3.0.0/24",
        &CASES[0],
    );
    to_c.extra = vec![
        "ipsec-interface=5".into(),
        "interface-ip=169.254.51.2/30".into(),
    ];
    let b = TunBridge::start(
        &mut lab,
        &gw_b,
        "gw-b",
        &ipsec_conf(&[TbConn::new(
            "to-a",
            "add",
            "192.0.2.2",
            "192.0.2.1",
            "10.2.0.0/24",
            "10.1.0.0/24",
            &CASES[0],
        )]),
        &ipsec_secrets(&[("192.0.2.2", "192.0.2.1", &kb)]),
    );
    let c = TunBridge::start(
        &mut lab,
        &gw_c,
        "gw-c",
        &ipsec_conf(&[TbConn::new(
            "to-a",
            "add",
            "198.51.100.2",
            "198.51.100.1",
            "10.3.0.0/24",
            "10.1.0.0/24",
            &CASES[0],
        )]),
        &ipsec_secrets(&[("198.51.100.2", "198.51.100.1", &kc)]),
    );
    b.wait_listening(&mut lab);
    c.wait_listening(&mut lab);
    let a = TunBridge::start(
        &mut lab,
        &gw_a,
        "gw-a",
        &ipsec_conf(&[to_b, to_c]),
        &ipsec_secrets(&[
            ("192.0.2.1", "192.0.2.2", &kb),
            ("198.51.100.1", "198.51.100.2", &kc),
        ]),
    );
    a.wait_established(&mut lab, &["to-b", "to-c"]);
    // One interface with both inside addresses and both routes.
    let addrs = lab
        .exec(&gw_a, &["ip", "-o", "addr", "show", "dev", "ipsec5"])
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    assert!(
        addrs.contains("169.254.50.2/30") && addrs.contains("169.254.51.2/30"),
        "{addrs}"
    );
    for net in ["10.2.0.0/24", "10.3.0.0/24"] {
        assert!(
            route(&lab, &gw_a, net).contains("dev ipsec5"),
            "{net}: {}",
            route(&lab, &gw_a, net)
        );
    }
    assert!(
        ping_from(&lab, &gw_a, "10.1.0.1", "10.2.0.1"),
        "A -> B\n{}",
        a.log_tail(20)
    );
    assert!(
        ping_from(&lab, &gw_a, "10.1.0.1", "10.3.0.1"),
        "A -> C\n{}",
        a.log_tail(20)
    );
    assert!(ping_from(&lab, &gw_c, "10.3.0.1", "10.1.0.1"), "C -> A");
    let st = a.status().expect("status");
    for t in &st.tunnels {
        assert!(t.packets_out >= 3 && t.packets_in >= 3, "{t:?}");
    }
    a.stop(&mut lab);
    b.stop(&mut lab);
    c.stop(&mut lab);
}
