//! IPv6 inner traffic over an IPv4 tunnel (root): two tun-bridges with
//! IPv6 site selectors, hosts with IPv6 addresses only on their LANs.
//! Ping and a checksummed TCP transfer each way: outbound the kernel hands
//! the gateway `GSO_TCPV6` super-packets (TSO split), inbound decrypted
//! segments are coalesced into `GSO_TCPV6` writes to the TUN (GRO); the
//! bytes must arrive intact and both tunnels count them.

mod common;

use common::*;
use netns_lab::traffic::tcp_transfer;
use netns_lab::{Lab, TwoSites, TwoSitesConfig};
use std::net::Ipv6Addr;
use std::time::Duration;

const SITE_A6: &str = "fd00:a::/64";
const SITE_B6: &str = "fd00:b::/64";
const HOST_A6: &str = "fd00:a::2";
const HOST_B6: &str = "fd00:b::2";

/// Turns IPv6 on in `ns` (the lab creates namespaces with it off) and gives
/// interface `dev` the address `addr`.
fn ipv6_on(lab: &Lab, ns: &str, dev: &str, addr: &str, forward: bool) {
    let mut args = vec![
        "sysctl".to_string(),
        "-qw".into(),
        "net.ipv6.conf.all.disable_ipv6=0".into(),
        "net.ipv6.conf.default.disable_ipv6=0".into(),
        format!("net.ipv6.conf.{dev}.disable_ipv6=0"),
    ];
    if forward {
        args.push("net.ipv6.conf.all.forwarding=1".into());
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    lab.exec(ns, &argv).expect("sysctl ipv6");
    lab.ip_in(ns, &["-6", "addr", "add", addr, "dev", dev, "nodad"])
        .expect("ipv6 address");
}

#[test]
fn ipv6_inner_tcp_crosses_an_ipv4_tunnel_with_offloads() {
    let _g = serial();
    if !Lab::require_root() {
        return;
    }
    let mut lab = Lab::new().expect("lab");
    let t = TwoSites::up(&mut lab, TwoSitesConfig::default()).expect("topology");
    ipv6_on(&lab, &t.host_a, "lan0", "fd00:a::2/64", false);
    ipv6_on(&lab, &t.gw_a, "lan1", "fd00:a::1/64", true);
    ipv6_on(&lab, &t.gw_b, "lan1", "fd00:b::1/64", true);
    ipv6_on(&lab, &t.host_b, "lan0", "fd00:b::2/64", false);
    lab.ip_in(
        &t.host_a,
        &["-6", "route", "add", "default", "via", "fd00:a::1"],
    )
    .expect("route A");
    lab.ip_in(
        &t.host_b,
        &["-6", "route", "add", "default", "via", "fd00:b::1"],
    )
    .expect("route B");

    let case = &CASES[0];
    let (a, b) = (t.gw_a_outer().to_string(), t.gw_b_outer().to_string());
    let ca = TbConn::new("site-b", "start", &a, &b, SITE_A6, SITE_B6, case);
    let cb = TbConn::new("site-a", "add", &b, &a, SITE_B6, SITE_A6, case);
    let (ga, gb) = tb_pair_start(&mut lab, &t, ca, cb, &psk("inner6"));

    assert!(
        lab.ping(&t.host_a, HOST_B6, 3).expect("ping runs"),
        "host A -> host B over IPv6: ping failed"
    );
    assert!(
        lab.ping(&t.host_b, HOST_A6, 3).expect("ping runs"),
        "host B -> host A over IPv6: ping failed"
    );
    let bytes = 64 << 20;
    for (ctx, src, dst, addr, port) in [
        ("A -> B", &t.host_a, &t.host_b, HOST_B6, 7601),
        ("B -> A", &t.host_b, &t.host_a, HOST_A6, 7602),
    ] {
        let addr: Ipv6Addr = addr.parse().expect("address");
        let r = tcp_transfer(src, dst, addr, port, bytes, Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{ctx}: TCP over IPv6 failed: {e}"));
        assert!(r.intact(), "{ctx}: data damaged: {r}");
        assert_eq!(r.received, bytes, "{ctx}");
        report(&format!("ipv6 inner {ctx}"), Duration::ZERO, &r);
    }
    for (gw, name) in [(&ga, "site-b"), (&gb, "site-a")] {
        let st = gw.tunnel(name).expect("status");
        assert!(
            st.bytes_in >= bytes && st.bytes_out >= bytes,
            "{name}: counters {st:?}"
        );
    }
    ga.stop(&mut lab);
    gb.stop(&mut lab);
}
