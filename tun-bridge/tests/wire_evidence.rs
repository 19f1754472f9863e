//! Wire-level evidence (root, namespaces, tcpdump): what tun-bridge puts on
//! the WAN and how inner TCP/ICMP look on the LANs, observed with packet
//! captures rather than inferred from counters.
//!
//! * ESP framing: with `encapsulation` left at its default and no NAT the
//!   WAN carries raw ESP (IP protocol 50) and nothing on UDP 4500; with
//!   `encapsulation=yes` it carries ESP-in-UDP on 4500 and no raw ESP; in
//!   both cases no inner packet crosses the WAN in clear text.
//! * MSS clamping: the SYN that reaches host B and the SYN-ACK that reaches
//!   host A carry the tunnel MSS (TUN MTU - 40), while the hosts offered
//!   1460.
//! * DF handling: a 1500-byte DF ping gets "fragmentation needed" with the
//!   tunnel MTU (from gateway A's kernel, and from tun-bridge itself when
//!   the TUN MTU is raised above the tunnel MTU), a ping of exactly the
//!   tunnel MTU passes.
//!
//! Without root or tcpdump the tests are skipped with a message, except
//! under `CI`, where they fail.

mod common;

use common::*;
use netns_lab::{mss_values, Capture, Lab, Pcap, TwoSites, TwoSitesConfig};
use std::time::Duration;

/// Bound of every capture (they are stopped long before).
const CAPTURE_MAX: Duration = Duration::from_secs(60);
/// A little TCP data through the tunnel.
const TCP_BYTES: u64 = 256 << 10;
/// The MSS the hosts offer on their 1500-byte LAN links.
const HOST_MSS: u16 = 1460;
/// TUN interface of gateway A's connection `site-b`.
const TUN_A: &str = "tb-site-b";
/// TUN interface of gateway B's connection `site-a`.
const TUN_B: &str = "tb-site-a";

fn capture(lab: &mut Lab, ns: &str, iface: &str, name: &str) -> Capture {
    Capture::start(lab, ns, iface, name, CAPTURE_MAX)
        .unwrap_or_else(|e| panic!("capture {name}: {e}"))
}

fn count(p: &Pcap, filter: &str) -> usize {
    p.count(filter)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.path().display()))
}

fn lines(p: &Pcap, filter: &str) -> Vec<String> {
    p.lines(filter)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.path().display()))
}

/// MTU of `dev` in `ns` as the kernel reports it.
fn link_mtu(lab: &Lab, ns: &str, dev: &str) -> u16 {
    let out = lab
        .ip_in(ns, &["-o", "link", "show", "dev", dev])
        .expect("ip link show");
    let s = String::from_utf8_lossy(&out.stdout);
    let i = s.find(" mtu ").expect("mtu in ip link output") + 5;
    s[i..]
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("cannot parse mtu: {s}"))
}

/// Text without ANSI colour sequences (tracing colours its fields).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\u{1b}' {
            if it.peek() == Some(&'[') {
                for d in it.by_ref() {
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// The tunnel MTU tun-bridge chose: the MTU it logged for its TUN, checked
/// against what the kernel reports for the interface.
fn tunnel_mtu(lab: &Lab, ns: &str, tb: &TunBridge, dev: &str) -> u16 {
    let log = strip_ansi(&tb.log());
    let line = log
        .lines()
        .find(|l| l.contains("tunnel interface ready"))
        .unwrap_or_else(|| panic!("{}: no 'tunnel interface ready' line:\n{log}", tb.name));
    let i = line.find(" mtu=").expect("mtu field") + 5;
    let logged: u16 = line[i..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("cannot parse mtu in {line}"));
    assert_eq!(
        link_mtu(lab, ns, dev),
        logged,
        "{}: TUN MTU differs from the logged tunnel MTU",
        tb.name
    );
    logged
}

/// The `mtu` reported in a ping's "Frag needed ... (mtu = N)" or "message
/// too long, mtu=N" line, and that line.
fn ping_too_big(out: &str) -> Option<(u16, String)> {
    out.lines().find_map(|l| {
        let i = l
            .find("(mtu = ")
            .map(|i| i + 7)
            .or_else(|| l.find("mtu=").map(|i| i + 4))?;
        let v = l[i..]
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()?;
        Some((v, l.to_string()))
    })
}

/// One ESP framing case: captures on gateway A's WAN link and (as a
/// positive control of the filters) on gateway B's LAN link while pinging
/// both ways and moving a little TCP data.
struct Framing {
    raw_esp: usize,
    raw_esp_a_to_b: usize,
    raw_esp_b_to_a: usize,
    udp_esp: usize,
    udp_esp_a_to_b: usize,
    udp_esp_b_to_a: usize,
    udp_4500_any: usize,
    clear_on_wan: usize,
    clear_on_lan: usize,
    wan_total: usize,
}

fn framing(lab: &mut Lab, t: &TwoSites, extra_a: &[&str], tag: &str, port: u16) -> Framing {
    let (ga, gb) = tb_pair_up(lab, t, &CASES[0], "wire", extra_a, &[]);
    let wan = capture(lab, &t.gw_a, TwoSites::GW_WAN_IF, &format!("{tag}-wan"));
    let lan = capture(lab, &t.gw_b, TwoSites::GW_LAN_IF, &format!("{tag}-lan"));
    ping_both_ways(lab, t, tag);
    bulk(lab, t, port, TCP_BYTES, false, tag);
    let wan = wan.stop(lab).expect("stop WAN capture");
    let lan = lan.stop(lab).expect("stop LAN capture");
    let (a, b) = (t.gw_a_outer(), t.gw_b_outer());
    // ESP in UDP: a non-zero SPI where IKE has its four-byte zero marker
    // (a 1-byte NAT keepalive does not match: the load is out of bounds).
    let udp_esp = "udp port 4500 and udp[8:4] != 0";
    let inner = format!("net {} and net {}", t.site_a_cidr(), t.site_b_cidr());
    let f = Framing {
        raw_esp: count(&wan, "ip proto 50"),
        raw_esp_a_to_b: count(&wan, &format!("ip proto 50 and src {a} and dst {b}")),
        raw_esp_b_to_a: count(&wan, &format!("ip proto 50 and src {b} and dst {a}")),
        udp_esp: count(&wan, udp_esp),
        udp_esp_a_to_b: count(&wan, &format!("{udp_esp} and src {a} and dst {b}")),
        udp_esp_b_to_a: count(&wan, &format!("{udp_esp} and src {b} and dst {a}")),
        udp_4500_any: count(&wan, "udp port 4500"),
        clear_on_wan: count(&wan, &inner),
        clear_on_lan: count(&lan, &format!("({inner}) and (icmp or tcp port {port})")),
        wan_total: count(&wan, ""),
    };
    println!(
        "{tag}: WAN {} packets: raw ESP {} (A->B {}, B->A {}), ESP-in-UDP/4500 {} (A->B {}, B->A {}), \
         UDP/4500 all {}, inner clear text {}; gateway B LAN inner packets {}; capture: {}",
        f.wan_total,
        f.raw_esp,
        f.raw_esp_a_to_b,
        f.raw_esp_b_to_a,
        f.udp_esp,
        f.udp_esp_a_to_b,
        f.udp_esp_b_to_a,
        f.udp_4500_any,
        f.clear_on_wan,
        f.clear_on_lan,
        wan.summary()
    );
    assert_eq!(
        f.clear_on_wan,
        0,
        "{tag}: inner packets in clear text on the WAN:\n{}",
        lines(&wan, &inner).join("\n")
    );
    // The same filter sees the traffic where it is clear text: 6 echo
    // requests + 6 replies, and the TCP connection.
    assert!(
        f.clear_on_lan >= 12 + 10,
        "{tag}: positive control: only {} inner packets on gateway B's LAN",
        f.clear_on_lan
    );
    ga.stop(lab);
    gb.stop(lab);
    f
}

#[test]
fn esp_framing_on_the_wan() {
    let _g = serial();
    if !Lab::require_tcpdump() {
        return;
    }
    let mut lab = Lab::new().expect("lab");
    let t = TwoSites::up(&mut lab, TwoSitesConfig::default()).expect("topology");

    // Default (encapsulation=auto), no NAT: raw ESP, nothing on 4500.
    let f = framing(&mut lab, &t, &[], "auto", 5301);
    assert!(
        f.raw_esp_a_to_b >= 6 && f.raw_esp_b_to_a >= 6,
        "auto: raw ESP both ways expected"
    );
    assert_eq!(f.udp_esp, 0, "auto: ESP-in-UDP without NAT");
    assert_eq!(f.udp_4500_any, 0, "auto: UDP 4500 used without NAT");

    // encapsulation=yes on the initiator only: both directions switch to
    // ESP-in-UDP on 4500 (the responder follows the forced NAT detection).
    let f = framing(&mut lab, &t, &["encapsulation=yes"], "forced", 5302);
    assert!(
        f.udp_esp_a_to_b >= 6 && f.udp_esp_b_to_a >= 6,
        "forced: ESP-in-UDP both ways expected"
    );
    assert_eq!(f.raw_esp, 0, "forced: raw ESP despite encapsulation=yes");
}

#[test]
fn mss_clamped_in_both_directions() {
    let _g = serial();
    if !Lab::require_tcpdump() {
        return;
    }
    let mut lab = Lab::new().expect("lab");
    let t = TwoSites::up(&mut lab, TwoSitesConfig::default()).expect("topology");
    let (ga, gb) = tb_pair_up(&mut lab, &t, &CASES[0], "wire", &[], &[]);
    let mtu = tunnel_mtu(&lab, &t.gw_a, &ga, TUN_A);
    assert_eq!(
        tunnel_mtu(&lab, &t.gw_b, &gb, TUN_B),
        mtu,
        "both gateways use the same tunnel MTU"
    );
    let tunnel_mss = mtu - 40;
    assert!(tunnel_mss < HOST_MSS, "nothing to clamp with MTU {mtu}");
    assert_eq!(link_mtu(&lab, &t.host_a, TwoSites::HOST_IF), 1500);
    assert_eq!(link_mtu(&lab, &t.host_b, TwoSites::HOST_IF), 1500);

    let cap_a = capture(&mut lab, &t.host_a, TwoSites::HOST_IF, "mss-host-a");
    let cap_b = capture(&mut lab, &t.host_b, TwoSites::HOST_IF, "mss-host-b");
    let port = 5303;
    bulk(&lab, &t, port, TCP_BYTES, false, "mss");
    let cap_a = cap_a.stop(&mut lab).expect("stop capture A");
    let cap_b = cap_b.stop(&mut lab).expect("stop capture B");

    let (ha, hb) = (t.host_a_addr(), t.host_b_addr());
    let syn =
        format!("tcp port {port} and tcp[tcpflags] & tcp-syn != 0 and tcp[tcpflags] & tcp-ack = 0");
    let synack =
        format!("tcp port {port} and tcp[tcpflags] & (tcp-syn|tcp-ack) = (tcp-syn|tcp-ack)");
    let mss = |p: &Pcap, f: &str| {
        let l = lines(p, f);
        let v = mss_values(&l);
        assert_eq!(v.len(), l.len(), "segments without MSS option: {l:?}");
        assert!(!v.is_empty(), "no segment matches {f}");
        v
    };
    // On host A's link: its own SYN (offered) and the SYN-ACK that arrived.
    let syn_sent_a = mss(&cap_a, &format!("src {ha} and {syn}"));
    let synack_at_a = mss(&cap_a, &format!("src {hb} and {synack}"));
    // On host B's link: the SYN that arrived and its own SYN-ACK.
    let syn_at_b = mss(&cap_b, &format!("src {ha} and {syn}"));
    let synack_sent_b = mss(&cap_b, &format!("src {hb} and {synack}"));
    println!(
        "mss: tunnel MTU {mtu} -> MSS {tunnel_mss}; SYN offered by A {syn_sent_a:?}, \
         SYN at B {syn_at_b:?}; SYN-ACK offered by B {synack_sent_b:?}, SYN-ACK at A {synack_at_a:?}"
    );
    assert!(syn_sent_a.iter().all(|&m| m == HOST_MSS), "{syn_sent_a:?}");
    assert!(
        synack_sent_b.iter().all(|&m| m == HOST_MSS),
        "{synack_sent_b:?}"
    );
    // The clamp writes exactly the tunnel MSS (<= what the tunnel carries).
    assert!(
        syn_at_b.iter().all(|&m| m == tunnel_mss),
        "SYN at B {syn_at_b:?}"
    );
    assert!(
        synack_at_a.iter().all(|&m| m == tunnel_mss),
        "SYN-ACK at A {synack_at_a:?}"
    );
    ga.stop(&mut lab);
    gb.stop(&mut lab);
}

#[test]
fn df_ping_gets_too_big_with_the_tunnel_mtu() {
    let _g = serial();
    if !Lab::require_root() {
        return;
    }
    let mut lab = Lab::new().expect("lab");
    let t = TwoSites::up(&mut lab, TwoSitesConfig::default()).expect("topology");
    let (ga, gb) = tb_pair_up(&mut lab, &t, &CASES[0], "wire", &[], &[]);
    let mtu = tunnel_mtu(&lab, &t.gw_a, &ga, TUN_A);
    let hb = t.host_b_addr().to_string();
    let ping = |size: u16| {
        let s = size.to_string();
        let out = lab
            .exec_status(
                &t.host_a,
                &[
                    "ping", "-n", "-M", "do", "-s", &s, "-c", "2", "-i", "0.2", "-W", "2", &hb,
                ],
                Duration::from_secs(10),
            )
            .expect("ping runs");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };

    // 1500 bytes with DF: gateway A's kernel refuses it at the TUN (whose
    // MTU tun-bridge set to the tunnel MTU) and reports that MTU.
    let (ok, out) = ping(1472);
    let (reported, line) = ping_too_big(&out).unwrap_or_else(|| panic!("no too-big:\n{out}"));
    println!("df: tunnel MTU {mtu}; -s 1472: {line}");
    assert!(
        !ok,
        "a 1500-byte DF ping crossed a {mtu}-byte tunnel:\n{out}"
    );
    assert_eq!(reported, mtu, "{out}");
    // Exactly the tunnel MTU passes.
    let (ok, out) = ping(mtu - 28);
    assert!(ok, "-s {}:\n{out}", mtu - 28);
    assert!(out.contains(" 0% packet loss"), "{out}");

    // tun-bridge's own check: with the TUN MTU raised the kernel hands the
    // 1500-byte packet to tun-bridge, which answers through the TUN with
    // ICMP "fragmentation needed" carrying the tunnel MTU.
    lab.ip_in(&t.gw_a, &["link", "set", TUN_A, "mtu", "1500"])
        .expect("raise TUN MTU");
    lab.ip_in(&t.host_a, &["route", "flush", "cache"])
        .expect("flush host A's PMTU cache");
    let (ok, out) = ping(1472);
    let (reported, line) = ping_too_big(&out).unwrap_or_else(|| panic!("no too-big:\n{out}"));
    let too_big = ga
        .tunnel("site-b")
        .and_then(|s| s.drops.get("TooBig").copied())
        .unwrap_or(0);
    println!("df: TUN MTU 1500; -s 1472: {line}; gateway A TooBig drops {too_big}");
    assert!(!ok, "{out}");
    assert_eq!(reported, mtu, "{out}");
    // Sent by tun-bridge from the packet's destination (no inside address
    // configured), not by gateway A's kernel.
    assert!(line.starts_with(&format!("From {hb} ")), "{out}");
    assert!(too_big >= 1, "tun-bridge counted no TooBig drop");
    let (ok, out) = ping(mtu - 28);
    assert!(ok, "-s {} after the raise:\n{out}", mtu - 28);
    ga.stop(&mut lab);
    gb.stop(&mut lab);
}
