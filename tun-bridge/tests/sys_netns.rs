//! The sys layer against the real kernel, inside lab namespaces (root).

use ipsec_core::wire::{checksum, IpProtocol, Ipv4Packet};
use netns_lab::{in_netns, Lab};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};
use tun_bridge::packet::icmp::{build_too_big, needs_too_big};
use tun_bridge::packet::mss::{clamp_mss, MssClamp};
use tun_bridge::sys::netlink::{Netlink, Route, RouteTracker};
use tun_bridge::sys::poll::{Interest, Poller, Token};
use tun_bridge::sys::tun::{Tun, TunFeatures, TunOptions};
use tun_bridge::sys::udp::{IkeSockets, RawEspSocket, UdpSock};

/// Turn an IPv4 ICMP echo request into the matching echo reply in place.
fn make_echo_reply(p: &mut [u8]) {
    let ihl = usize::from(p[0] & 0x0f) * 4;
    let (src, dst) = (p[12..16].to_vec(), p[16..20].to_vec());
    p[12..16].copy_from_slice(&dst);
    p[16..20].copy_from_slice(&src);
    p[8] = 64;
    p[10] = 0;
    p[11] = 0;
    let c = checksum::of(&p[..ihl]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[ihl] = 0; // echo reply
    p[ihl + 2] = 0;
    p[ihl + 3] = 0;
    let c = checksum::of(&p[ihl..]);
    p[ihl + 2..ihl + 4].copy_from_slice(&c.to_be_bytes());
}

fn is_echo_request_to(p: &[u8], dst: Ipv4Addr) -> bool {
    p.len() >= 28 && p[0] >> 4 == 4 && p[9] == 1 && p[20] == 8 && p[16..20] == dst.octets()
}

const HEADROOM: usize = 64;

/// Verify the TCP checksum of an IPv4 packet from scratch.
fn tcp_checksum_ok(p: &[u8]) -> bool {
    let ihl = usize::from(p[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
    let seg = &p[ihl..total];
    let ip = Ipv4Packet::new_checked(p).expect("IPv4 packet");
    let pseudo =
        checksum::pseudo_header_v4(ip.src_addr(), ip.dst_addr(), IpProtocol::TCP, seg.len());
    checksum::finish(checksum::add(pseudo, seg)) == 0
}

#[test]
fn tun_echo_roundtrip_routes_and_too_big() {
    if !Lab::require_root() {
        return;
    }
    let mut lab = Lab::new().expect("lab");
    let ns = lab.add_netns("tun").expect("netns");
    let target: Ipv4Addr = "10.200.0.10".parse().unwrap();
    let tun_addr: Ipv4Addr = "169.254.10.2".parse().unwrap();
    let peer_inside: Ipv4Addr = "169.254.10.1".parse().unwrap();
    let (tun, mut routes) = in_netns(&ns, || {
        let tun = Tun::open(&TunOptions::new("tbtun0")).expect("open tun");
        let idx = tun.ifindex().expect("ifindex");
        let mut nl = Netlink::open().expect("netlink");
        nl.set_mtu(idx, 1500).expect("mtu");
        nl.add_address(idx, IpAddr::V4(tun_addr), 30)
            .expect("address");
        nl.set_link_up(idx, true).expect("up");
        let mut routes = RouteTracker::new(nl);
        routes
            .add(Route::new("10.200.0.0".parse().unwrap(), 24, idx))
            .expect("route");
        (tun, routes)
    })
    .expect("in_netns");
    assert_eq!(tun.name(), "tbtun0");
    let shown =
        String::from_utf8_lossy(&lab.ip_in(&ns, &["route", "show"]).unwrap().stdout).into_owned();
    assert!(shown.contains("10.200.0.0/24 dev tbtun0"), "{shown}");
    let addrs =
        String::from_utf8_lossy(&lab.ip_in(&ns, &["addr", "show", "tbtun0"]).unwrap().stdout)
            .into_owned();
    assert!(
        addrs.contains("169.254.10.2/30") && addrs.contains("mtu 1500"),
        "{addrs}"
    );

    let mut poller = Poller::new(8).unwrap();
    poller
        .add(tun.queue(0).unwrap(), Token(1), Interest::READABLE)
        .unwrap();
    let mut buf = vec![0u8; HEADROOM + 2048];

    // 1) ping through the TUN: the test answers each echo request.
    let (ping_ok, seen) = std::thread::scope(|s| {
        let h = s.spawn(|| lab.ping(&ns, &target.to_string(), 3).expect("ping runs"));
        let mut seen = 0;
        let deadline = Instant::now() + Duration::from_secs(20);
        while !h.is_finished() && Instant::now() < deadline {
            poller.wait(Some(Duration::from_millis(100))).unwrap();
            while let Some(n) = tun.read(&mut buf, HEADROOM).unwrap() {
                let pkt = &mut buf[HEADROOM..HEADROOM + n];
                if is_echo_request_to(pkt, target) {
                    seen += 1;
                    make_echo_reply(pkt);
                    assert_eq!(tun.write(pkt).unwrap(), Some(n));
                }
            }
        }
        (h.join().unwrap(), seen)
    });
    assert!(seen >= 3, "saw {seen} echo requests");
    assert!(ping_ok, "ping through TUN failed");

    // 2) an oversized DF packet gets our ICMP "fragmentation needed"; the
    //    kernel accepts it and lowers its path MTU for the target.
    let (out, too_big_sent) = std::thread::scope(|s| {
        let h = s.spawn(|| {
            lab.exec_status(
                &ns,
                &[
                    "ping",
                    "-n",
                    "-c",
                    "2",
                    "-i",
                    "0.5",
                    "-W",
                    "1",
                    "-M",
                    "do",
                    "-s",
                    "1450",
                    &target.to_string(),
                ],
                Duration::from_secs(15),
            )
            .expect("ping runs")
        });
        let mut sent = 0;
        let mut reply = [0u8; 600];
        let deadline = Instant::now() + Duration::from_secs(15);
        while !h.is_finished() && Instant::now() < deadline {
            poller.wait(Some(Duration::from_millis(100))).unwrap();
            while let Some(n) = tun.read(&mut buf, HEADROOM).unwrap() {
                let pkt = &buf[HEADROOM..HEADROOM + n];
                if is_echo_request_to(pkt, target) && needs_too_big(pkt, 1399) {
                    // from the tunnel's far inside address (never a local one)
                    let m = build_too_big(pkt, 1399, Some(IpAddr::V4(peer_inside)), &mut reply)
                        .unwrap();
                    tun.write(&reply[..m]).unwrap();
                    sent += 1;
                }
            }
        }
        (h.join().unwrap(), sent)
    });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(too_big_sent >= 1, "no oversized packet seen: {text}");
    assert!(
        text.contains("mtu = 1399") || text.contains("mtu=1399"),
        "{text}"
    );
    let cache = String::from_utf8_lossy(
        &lab.ip_in(&ns, &["route", "get", &target.to_string()])
            .unwrap()
            .stdout,
    )
    .into_owned();
    assert!(cache.contains("mtu 1399"), "route cache: {cache}");

    // 3) a kernel-generated SYN read from the TUN: its MSS already follows
    //    the path MTU learned in 2) (1399 - 40 = 1359); clamping it further
    //    keeps the incrementally updated checksum valid.
    let syn = std::thread::scope(|s| {
        let ns2 = ns.clone();
        let h = s.spawn(move || {
            in_netns(&ns2, || {
                let _ = std::net::TcpStream::connect_timeout(
                    &SocketAddr::new(IpAddr::V4(target), 8080),
                    Duration::from_millis(1500),
                );
            })
            .expect("in_netns")
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut syn = None;
        while syn.is_none() && Instant::now() < deadline {
            poller.wait(Some(Duration::from_millis(100))).unwrap();
            while let Some(n) = tun.read(&mut buf, HEADROOM).unwrap() {
                let p = &buf[HEADROOM..HEADROOM + n];
                if p[0] >> 4 == 4 && p[9] == 6 && p[16..20] == target.octets() && syn.is_none() {
                    syn = Some(p.to_vec());
                }
            }
        }
        h.join().unwrap();
        syn.expect("no SYN read from the TUN")
    });
    let mut syn = syn;
    assert!(tcp_checksum_ok(&syn), "kernel SYN checksum");
    assert_eq!(
        clamp_mss(&mut syn, 1200),
        MssClamp::Clamped {
            from: 1359,
            to: 1200
        }
    );
    assert!(tcp_checksum_ok(&syn), "checksum after clamping");

    // 4) tracked routes are removed again
    assert_eq!(routes.routes().len(), 1);
    routes.remove_all().expect("remove routes");
    let shown =
        String::from_utf8_lossy(&lab.ip_in(&ns, &["route", "show"]).unwrap().stdout).into_owned();
    assert!(!shown.contains("10.200.0.0/24"), "{shown}");
}

#[test]
fn netlink_typed_errors_ipv6_and_link_state() {
    if !Lab::require_root() {
        return;
    }
    let mut lab = Lab::new().expect("lab");
    let ns = lab.add_netns_opts("nl", true).expect("netns");
    let _tun = in_netns(&ns, || {
        let tun = Tun::open(&TunOptions::new("tbnl%d")).expect("tun");
        assert!(tun.name().starts_with("tbnl"));
        let idx = tun.ifindex().unwrap();
        let mut nl = Netlink::open().unwrap();
        nl.set_link_up(idx, true).unwrap();
        nl.set_mtu(idx, 1399).unwrap();
        let a6: IpAddr = "2001:db8:1::2".parse().unwrap();
        nl.add_address(idx, a6, 64).unwrap();
        let e = nl.add_address(idx, a6, 64).unwrap_err();
        assert!(e.is_exists(), "{e}");
        let mut r = Route::new("2001:db8:99::".parse().unwrap(), 48, idx);
        r.metric = Some(77);
        r.table = Some(1000);
        nl.add_route(&r).unwrap();
        assert!(nl.add_route(&r).unwrap_err().is_exists());
        nl.replace_route(&r).unwrap();
        nl.del_route(&r).unwrap();
        let e = nl.del_route(&r).unwrap_err();
        assert!(e.is_not_found(), "{e}");
        let e = nl.set_mtu(999_999, 1400).unwrap_err();
        assert!(e.is_not_found(), "{e}");
        assert!(nl
            .add_route(&Route::new("10.0.0.0".parse().unwrap(), 40, idx))
            .is_err());
        nl.del_address(idx, a6, 64).unwrap();
        nl.set_link_up(idx, false).unwrap();
        tun
    })
    .expect("in_netns");
    let link =
        String::from_utf8_lossy(&lab.ip_in(&ns, &["link", "show"]).unwrap().stdout).into_owned();
    assert!(link.contains("mtu 1399"), "{link}");
}

#[test]
fn tun_features_and_multiqueue() {
    if !Lab::require_root() {
        return;
    }
    let mut lab = Lab::new().expect("lab");
    let ns = lab.add_netns("feat").expect("netns");
    in_netns(&ns, || {
        let f = TunFeatures::probe().expect("probe");
        eprintln!("TUN features on this kernel: {f:?}");
        assert_ne!(f.flags & libc::IFF_TUN as u32, 0);
        if f.multi_queue {
            let mut o = TunOptions::new("tbmq0");
            o.queues = 2;
            let t = Tun::open(&o).expect("multi-queue tun");
            assert_eq!(t.queues().len(), 2);
        }
        if f.vnet_hdr && f.offload_tso {
            let mut o = TunOptions::new("tbvh0");
            o.vnet_hdr = true;
            let t = Tun::open(&o).expect("vnet tun");
            t.set_offload(libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6)
                .expect("offload");
        }
        let plain = Tun::open(&TunOptions::new("tbpl0")).unwrap();
        assert!(plain.set_offload(libc::TUN_F_CSUM).is_err());
    })
    .expect("in_netns");
}

fn recv_wait(s: &UdpSock, buf: &mut [u8]) -> tun_bridge::sys::udp::RecvMeta {
    let mut p = Poller::new(2).unwrap();
    p.add(s, Token(9), Interest::READABLE).unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if let Some(m) = s.recv(buf).unwrap() {
            return m;
        }
        p.wait(Some(Duration::from_millis(100))).unwrap();
    }
    panic!("no datagram");
}

#[test]
fn ike_sockets_and_raw_esp_on_namespace_loopback() {
    if !Lab::require_root() {
        return;
    }
    let mut lab = Lab::new().expect("lab");
    let ns = lab.add_netns("udp").expect("netns");
    in_netns(&ns, || {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let ike = IkeSockets::bind(lo).expect("bind 500/4500");
        assert_eq!(ike.ike.local_addr().unwrap().port(), 500);
        assert_eq!(ike.natt.local_addr().unwrap().port(), 4500);
        ike.natt.set_buffer_sizes(1 << 20, 1 << 20).unwrap();
        let peer = UdpSock::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut buf = [0u8; 2048];
        // IKE with non-ESP marker, and ESP-in-UDP: both delivered raw
        let ike_msg = [0u8, 0, 0, 0, 0x11, 0x22, 0x33, 0x44];
        let esp_msg = [0xc1u8, 0x23, 0x45, 0x67, 0, 0, 0, 1, 0xaa];
        let to = SocketAddr::new(lo, 4500);
        peer.send_to(&ike_msg, to, None).unwrap().unwrap();
        peer.send_to(&esp_msg, to, Some(lo)).unwrap().unwrap();
        for want in [&ike_msg[..], &esp_msg[..]] {
            let m = recv_wait(&ike.natt, &mut buf);
            assert_eq!(&buf[..m.len], want);
            assert_eq!(m.src, peer.local_addr().unwrap());
            assert_eq!(m.dst, Some(lo));
        }
        // reply from 500 with explicit source
        ike.ike
            .send_to(b"resp", peer.local_addr().unwrap(), Some(lo))
            .unwrap()
            .unwrap();
        let m = recv_wait(&peer, &mut buf);
        assert_eq!(m.src, SocketAddr::new(lo, 500));

        // raw ESP (IP protocol 50) over loopback: header stripped
        let esp = RawEspSocket::open(lo).expect("raw esp");
        let payload = [0xdeu8, 0xad, 0xbe, 0xef, 0, 0, 0, 7, 1, 2, 3, 4, 5];
        esp.send_to(&payload, lo, Some(lo)).unwrap().unwrap();
        let mut p = Poller::new(2).unwrap();
        p.add(&esp, Token(3), Interest::READABLE).unwrap();
        let deadline = Instant::now() + Duration::from_secs(2);
        let got = loop {
            if let Some(m) = esp.recv(&mut buf).unwrap() {
                break m;
            }
            assert!(Instant::now() < deadline, "no ESP packet");
            p.wait(Some(Duration::from_millis(100))).unwrap();
        };
        assert_eq!(got.offset, 20);
        assert_eq!(&buf[got.offset..got.offset + got.len], &payload);
        assert_eq!(got.src.ip(), lo);
        assert_eq!(got.dst, Some(lo));
    })
    .expect("in_netns");
}
