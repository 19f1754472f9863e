//! UDP offloads end to end (root): two tun-bridges with
//! `encapsulation=yes` (ESP-in-UDP: UDP GSO on send, UDP GRO on the 4500
//! socket), TUNs with USO. Host A sends UDP datagrams to host B as UDP GSO
//! super-packets (so the kernel hands gateway A a `GSO_UDP_L4` packet that
//! tun-bridge splits) and as a burst of single sends (which gateway B may
//! coalesce into one USO write to its TUN); then the same from host B to
//! host A. Every datagram must arrive exactly once with its bytes intact.

mod common;

use common::*;
use netns_lab::{in_netns, Lab, TwoSites, TwoSitesConfig};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use tun_bridge::sys::udp::UdpSock;

/// Datagram `seq` of `len` bytes: the sequence number, then a pattern that
/// depends on both.
fn datagram(seq: u32, len: usize) -> Vec<u8> {
    let mut d: Vec<u8> = (0..len)
        .map(|i| (i as u32).wrapping_mul(31).wrapping_add(seq * 7) as u8)
        .collect();
    d[..4].copy_from_slice(&seq.to_be_bytes());
    d
}

/// Sends three rounds from `tx` to `dst` and returns what was sent by
/// sequence number: 20 x 1000 B in one GSO send, 10 x 1200 B plus a
/// 500-byte tail in one GSO send, 30 x 200 B as single sends.
fn send_rounds(tx: &UdpSock, dst: SocketAddr, ctx: &str) -> BTreeMap<u32, Vec<u8>> {
    let mut sent = BTreeMap::new();
    let mut seq = 0u32;
    let mut round = |lens: Vec<usize>, gso: bool| {
        let ds: Vec<Vec<u8>> = lens
            .iter()
            .map(|&l| {
                seq += 1;
                datagram(seq, l)
            })
            .collect();
        let pkts: Vec<&[u8]> = ds.iter().map(|d| d.as_slice()).collect();
        if gso {
            let n = tx.send_many_gso(&pkts, dst, None).expect("GSO send");
            assert_eq!(n, pkts.len(), "{ctx}: GSO send took {n} of {}", pkts.len());
        } else {
            for p in &pkts {
                tx.send_to(p, dst, None)
                    .expect("send")
                    .expect("socket buffer has room");
            }
        }
        for d in ds {
            sent.insert(u32::from_be_bytes([d[0], d[1], d[2], d[3]]), d);
        }
    };
    round(vec![1000; 20], true);
    let mut lens = vec![1200; 10];
    lens.push(500);
    round(lens, true);
    round(vec![200; 30], false);
    sent
}

/// Receives on `rx` until every datagram of `want` arrived (or 10 s).
fn receive(rx: &UdpSocket, want: &BTreeMap<u32, Vec<u8>>, ctx: &str) {
    rx.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut got: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    let mut buf = vec![0u8; 65_536];
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < want.len() && Instant::now() < deadline {
        let Ok(n) = rx.recv(&mut buf) else { continue };
        assert!(n >= 4, "{ctx}: runt datagram of {n} bytes");
        let seq = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let prev = got.insert(seq, buf[..n].to_vec());
        assert!(prev.is_none(), "{ctx}: datagram {seq} arrived twice");
    }
    let missing: Vec<u32> = want
        .keys()
        .filter(|s| !got.contains_key(s))
        .copied()
        .collect();
    assert!(
        missing.is_empty(),
        "{ctx}: datagrams never arrived: {missing:?}"
    );
    for (seq, d) in want {
        assert_eq!(
            got[seq].len(),
            d.len(),
            "{ctx}: datagram {seq} has the wrong length"
        );
        assert!(got[seq] == *d, "{ctx}: datagram {seq} damaged");
    }
}

#[test]
fn udp_gso_datagrams_cross_the_tunnel_intact() {
    let _g = serial();
    if !Lab::require_root() {
        return;
    }
    let mut lab = Lab::new().expect("lab");
    let t = TwoSites::up(&mut lab, TwoSitesConfig::default()).expect("topology");
    let encap = ["encapsulation=yes"];
    let (ga, gb) = tb_pair_up(&mut lab, &t, &CASES[0], "udpoff", &encap, &encap);
    ping_both_ways(&lab, &t, "udp offload");

    let (ha, hb) = (IpAddr::V4(t.host_a_addr()), IpAddr::V4(t.host_b_addr()));
    for (ctx, src_ns, src, dst_ns, dst) in [
        ("host A -> host B", &t.host_a, ha, &t.host_b, hb),
        ("host B -> host A", &t.host_b, hb, &t.host_a, ha),
    ] {
        let rx = in_netns(dst_ns, || UdpSocket::bind((dst, 7400)))
            .expect("netns")
            .expect("bind receiver");
        let tx = in_netns(src_ns, || UdpSock::bind(SocketAddr::new(src, 0)))
            .expect("netns")
            .expect("bind sender");
        assert!(tx.gso_supported(), "{ctx}: kernel without UDP GSO");
        let sent = send_rounds(&tx, SocketAddr::new(dst, 7400), ctx);
        receive(&rx, &sent, ctx);
    }
    for (gw, name) in [(&ga, "site-b"), (&gb, "site-a")] {
        let st = gw.tunnel(name).expect("status");
        assert!(st.packets_in >= 61 && st.packets_out >= 61, "{st:?}");
    }
    ga.stop(&mut lab);
    gb.stop(&mut lab);
}
