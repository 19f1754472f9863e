//! `v1::Endpoint` against a real strongSwan 5.9.8 speaking IKEv1 over UDP
//! (root, netns).
//!
//! Two namespaces joined by a veth: `ike` (192.0.2.1, our sockets on UDP
//! 500/4500) and `swan` (192.0.2.2, charon with kernel-libipsec,
//! `version = 1`). A minimal driver loop feeds the sans-IO endpoint with
//! real time. For each proposal set we initiate main mode + quick mode,
//! rekey the IPsec SA (quick mode, with KE when the ESP proposal names a
//! group), rekey the ISAKMP SA (a new main mode), send an R-U-THERE and
//! delete; after each step strongSwan's `swanctl --list-sas` must show
//! exactly the SAs we hold. Then strongSwan initiates and we respond;
//! last, DPD finds charon killed.
//! kernel-libipsec fakes NAT detection, so the exchange floats to 4500.
//!
//! Without root or strongSwan the test is skipped with a message, except
//! under `CI`, where it fails.

use ike_lite::proposal::{parse_esp_proposals, parse_ike_proposals};
use ike_lite::ts::TrafficSelector;
use ike_lite::v1::Endpoint;
use ike_lite::{ChildDeleteReason, ChildSa, Config, ConnId, Event, Identity, PeerConfig, Psk};
use netns_lab::{Lab, StrongSwan, SwanChild, SwanConnection};
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::str::FromStr;
use std::time::{Duration, Instant};

const OUR_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const SWAN_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const OUR_NET: &str = "10.1.0.0/24";
const SWAN_NET: &str = "10.2.0.0/24";
const PSK: &[u8] = b"strongswan-ikev1-udp-test-psk-41";
const STEP_TIMEOUT: Duration = Duration::from_secs(15);

struct Driver {
    ep: Endpoint,
    conn: ConnId,
    s500: UdpSocket,
    s4500: UdpSocket,
    events: Vec<Event>,
    received: [u64; 2],
}

impl Driver {
    fn new(ns: &str, peer: PeerConfig) -> Driver {
        let (s500, s4500) = netns_lab::in_netns(ns, || {
            let a = UdpSocket::bind(SocketAddr::new(OUR_IP.into(), 500)).expect("bind :500");
            let b = UdpSocket::bind(SocketAddr::new(OUR_IP.into(), 4500)).expect("bind :4500");
            (a, b)
        })
        .expect("enter namespace");
        for s in [&s500, &s4500] {
            s.set_nonblocking(true).expect("nonblocking");
        }
        let mut ep = Endpoint::new(Config::default());
        let conn = ep.add_peer(peer);
        Driver {
            ep,
            conn,
            s500,
            s4500,
            events: Vec::new(),
            received: [0; 2],
        }
    }

    fn flush(&mut self) {
        while let Some(t) = self.ep.poll_transmit() {
            let sock = if t.src.port() == 4500 {
                &self.s4500
            } else {
                &self.s500
            };
            if let Err(e) = sock.send_to(&t.payload, t.dst) {
                panic!("send {} -> {}: {e}", t.src, t.dst);
            }
        }
        while let Some(e) = self.ep.poll_event() {
            self.events.push(e);
        }
    }

    fn turn(&mut self) -> bool {
        let mut got = false;
        let mut buf = [0u8; 65536];
        for i in 0..2 {
            loop {
                let sock = if i == 0 { &self.s500 } else { &self.s4500 };
                let local = sock.local_addr().expect("local addr");
                match sock.recv_from(&mut buf) {
                    Ok((n, from)) => {
                        got = true;
                        self.received[i] += 1;
                        // Keepalives and ESP are not ISAKMP; refused, fine.
                        let _ = self
                            .ep
                            .handle_datagram(Instant::now(), local, from, &buf[..n]);
                        self.flush();
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => panic!("recv on {local}: {e}"),
                }
            }
        }
        let now = Instant::now();
        if self.ep.poll_timeout().is_some_and(|t| t <= now) {
            self.ep.handle_timeout(now);
        }
        self.flush();
        got
    }

    fn run_until(
        &mut self,
        what: &str,
        swan: &StrongSwan,
        down_ok: bool,
        done: impl Fn(&[Event]) -> bool,
    ) {
        let deadline = Instant::now() + STEP_TIMEOUT;
        while !done(&self.events) {
            if let Some(e) = self.events.iter().find(|e| match e {
                Event::AuthenticationFailed { .. } | Event::PeerDead { .. } => true,
                Event::IkeSaDown { .. } => !down_ok,
                _ => false,
            }) {
                panic!(
                    "{what}: failure event {e:?}\nevents: {:#?}\n--- charon.log tail:\n{}",
                    self.events,
                    swan.log_tail(60)
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "{what}: not done within {STEP_TIMEOUT:?}\nevents: {:#?}\n--- charon.log tail:\n{}",
                    self.events,
                    swan.log_tail(80)
                );
            }
            if !self.turn() {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        self.flush();
    }

    fn idle(&mut self, d: Duration) {
        let end = Instant::now() + d;
        while Instant::now() < end {
            if !self.turn() {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }

    fn children(&self) -> Vec<ChildSa> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::ChildSaEstablished(c) => Some((**c).clone()),
                _ => None,
            })
            .collect()
    }
}

fn wait_listing(swan: &StrongSwan, d: &mut Driver, what: &str, check: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let l = swan.list_sas().expect("swanctl --list-sas");
        if check(&l) {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "{what}: strongSwan's SAs do not match ours\nours: ISAKMP {:x?} IPsec {:x?}\n--- list-sas:\n{l}\n--- charon.log tail:\n{}",
                d.ep.ike_spis(d.conn),
                d.ep.child_sas(d.conn),
                swan.log_tail(60)
            );
        }
        d.idle(Duration::from_millis(200));
    }
}

/// The listing shows this ISAKMP SA (cookies) established over IKEv1.
fn shows_isakmp(l: &str, spis: (u64, u64)) -> bool {
    let a = format!("{:016x}_i", spis.0);
    let b = format!("{:016x}_r", spis.1);
    l.lines().any(|x| {
        let x = x.replace('*', "");
        x.contains("ESTABLISHED") && x.contains("IKEv1") && x.contains(&a) && x.contains(&b)
    })
}

fn count_established(l: &str) -> usize {
    l.lines().filter(|x| x.contains("ESTABLISHED")).count()
}

/// (state, ESP token, in SPI, out SPI) of each Child SA in the listing.
fn swan_children(l: &str) -> Vec<(String, String, u32, u32)> {
    let mut v: Vec<(String, String, u32, u32)> = Vec::new();
    for line in l.lines() {
        let t = line.trim_start();
        if t.contains(", reqid ") {
            let f: Vec<&str> = t.split(", ").collect();
            let esp = f.iter().find(|x| x.starts_with("ESP:")).unwrap_or(&"");
            v.push((
                f.get(2).unwrap_or(&"").to_string(),
                esp.trim().to_string(),
                0,
                0,
            ));
        } else if let Some(c) = v.last_mut() {
            let mut w = t.split_whitespace();
            let spi = |s: Option<&str>| {
                s.and_then(|x| u32::from_str_radix(x.trim_end_matches(','), 16).ok())
                    .unwrap_or(0)
            };
            match w.next() {
                Some("in") => c.2 = spi(w.next()),
                Some("out") => c.3 = spi(w.next()),
                _ => {}
            }
        }
    }
    v
}

/// strongSwan's only installed IPsec SA mirrors `ours` (in, out); returns
/// its ESP token.
fn installed(l: &str, ours: (u32, u32)) -> Option<String> {
    let inst: Vec<_> = swan_children(l)
        .into_iter()
        .filter(|c| c.0 == "INSTALLED")
        .collect();
    match inst.as_slice() {
        [c] if c.2 == ours.1 && c.3 == ours.0 => Some(c.1.clone()),
        _ => None,
    }
}

struct Case {
    ike: &'static str,
    esp: &'static str,
    swan_esp: &'static str,
}

const CASES: &[Case] = &[
    Case {
        ike: "aes128-sha1-modp1024",
        esp: "aes128-sha1-modp1024",
        swan_esp: "ESP:AES_CBC-128/HMAC_SHA1_96/MODP_1024",
    },
    Case {
        ike: "aes256-sha256-modp2048",
        esp: "aes256-sha256",
        swan_esp: "ESP:AES_CBC-256/HMAC_SHA2_256_128",
    },
    Case {
        ike: "aes256-sha384-ecp256",
        esp: "aes128gcm16-ecp256",
        swan_esp: "ESP:AES_GCM_16-128/ECP_256",
    },
];

fn peer_config(case: &Case) -> PeerConfig {
    let mut p = PeerConfig::new(
        SocketAddr::new(OUR_IP.into(), 500),
        SocketAddr::new(SWAN_IP.into(), 500),
        Identity::from_ip(IpAddr::V4(OUR_IP)),
        Psk::new(PSK),
    );
    p.remote_id = Some(Identity::from_ip(IpAddr::V4(SWAN_IP)));
    p.ike_proposals = parse_ike_proposals(case.ike).expect("ike proposal");
    p.esp_proposals = parse_esp_proposals(case.esp).expect("esp proposal");
    p.local_ts = vec![TrafficSelector::from_str(OUR_NET).expect("ts")];
    p.remote_ts = vec![TrafficSelector::from_str(SWAN_NET).expect("ts")];
    p.rekey_fuzz = 0.0;
    p
}

fn swan_conn(case: &Case) -> SwanConnection {
    let mut c = SwanConnection::ikev2_psk(
        "ikelite",
        &SWAN_IP.to_string(),
        &OUR_IP.to_string(),
        case.ike,
        PSK,
        SwanChild::new("net", SWAN_NET, OUR_NET, case.esp),
    );
    c.version = 1;
    c.aggressive = Some(false);
    c
}

fn we_initiate(ours_ns: &str, swan: &StrongSwan, case: &Case) {
    let t0 = Instant::now();
    swan.load(&swan_conn(case))
        .expect("load strongSwan connection");
    let mut d = Driver::new(ours_ns, peer_config(case));
    let conn = d.conn;
    d.ep.initiate(Instant::now(), conn).expect("initiate");
    d.flush();
    d.run_until("main mode + quick mode", swan, false, |ev| {
        ev.iter().any(|e| matches!(e, Event::ChildSaEstablished(_)))
    });
    assert!(
        d.events.iter().any(|e| matches!(
            e,
            Event::IkeSaUp {
                udp_encap: true,
                ..
            }
        )),
        "kernel-libipsec forces NAT-T: {:?}",
        d.events
    );
    assert!(d.received[1] > 0, "nothing received on 4500");
    let first = d.children()[0].clone();
    let isakmp1 = d.ep.ike_spis(conn).expect("ISAKMP SA");
    wait_listing(swan, &mut d, "after quick mode", |l| {
        shows_isakmp(l, isakmp1)
            && installed(l, (first.spi_in, first.spi_out)).as_deref() == Some(case.swan_esp)
    });
    let t_up = t0.elapsed();

    // IPsec SA rekey: a new quick mode, the old SA deleted after the switch.
    d.ep.rekey_child(Instant::now(), conn, first.spi_in)
        .expect("rekey child");
    d.flush();
    d.run_until("quick-mode rekey", swan, false, |ev| {
        ev.iter().any(|e| matches!(e, Event::ChildSaDeleted { spi_in, reason: ChildDeleteReason::Rekeyed, .. } if *spi_in == first.spi_in))
    });
    let second = d
        .children()
        .into_iter()
        .find(|c| c.rekey_of == Some(first.spi_in))
        .expect("rekeyed IPsec SA");
    assert_ne!(second.key_in, first.key_in);
    wait_listing(swan, &mut d, "after quick-mode rekey", |l| {
        installed(l, (second.spi_in, second.spi_out)).as_deref() == Some(case.swan_esp)
    });

    // ISAKMP SA rekey: a new main mode; the IPsec SA stays.
    d.ep.rekey_ike(Instant::now(), conn).expect("rekey ISAKMP");
    d.flush();
    d.run_until("phase-1 rekey", swan, false, |ev| {
        ev.iter().any(|e| matches!(e, Event::IkeSaRekeyed { .. }))
    });
    let isakmp2 = d.ep.ike_spis(conn).expect("ISAKMP after rekey");
    assert_ne!(isakmp2, isakmp1);
    wait_listing(swan, &mut d, "after phase-1 rekey", |l| {
        shows_isakmp(l, isakmp2)
            && !shows_isakmp(l, isakmp1)
            && installed(l, (second.spi_in, second.spi_out)).is_some()
    });

    // DPD over the new ISAKMP SA.
    let before = d.ep.stats(conn).expect("stats").messages_received;
    d.ep.check_liveness(Instant::now(), conn)
        .expect("R-U-THERE");
    d.flush();
    let deadline = Instant::now() + STEP_TIMEOUT;
    while d.ep.stats(conn).expect("stats").messages_received <= before {
        assert!(
            Instant::now() < deadline,
            "no R-U-THERE-ACK\n{}",
            swan.log_tail(40)
        );
        d.idle(Duration::from_millis(20));
    }
    println!(
        "we initiate ike={} esp={}: up in {t_up:?}, all steps {:?}",
        case.ike,
        case.esp,
        t0.elapsed()
    );
    d.ep.delete(Instant::now(), conn).expect("delete");
    d.flush();
    wait_listing(swan, &mut d, "after delete", |l| count_established(l) == 0);
}

fn they_initiate(ours_ns: &str, swan: &StrongSwan, case: &Case) {
    swan.load(&swan_conn(case))
        .expect("load strongSwan connection");
    let mut d = Driver::new(ours_ns, peer_config(case));
    std::thread::scope(|s| {
        let h = s.spawn(|| swan.initiate("net", Duration::from_secs(15)));
        d.run_until("strongSwan initiates", swan, false, |ev| {
            ev.iter().any(|e| matches!(e, Event::ChildSaEstablished(_)))
        });
        // Keep answering until swanctl returns.
        while !h.is_finished() {
            d.idle(Duration::from_millis(50));
        }
        h.join().expect("join").expect("swanctl --initiate");
    });
    assert!(d.events.iter().any(|e| matches!(
        e,
        Event::IkeSaUp {
            initiator: false,
            ..
        }
    )));
    let c = d.children()[0].clone();
    let spis = d.ep.ike_spis(d.conn).expect("ISAKMP SA");
    wait_listing(swan, &mut d, "responder", |l| {
        shows_isakmp(l, spis)
            && installed(l, (c.spi_in, c.spi_out)).as_deref() == Some(case.swan_esp)
    });
    d.ep.delete(Instant::now(), d.conn).expect("delete");
    d.flush();
    wait_listing(swan, &mut d, "after delete", |l| count_established(l) == 0);
}

#[test]
fn strongswan_ikev1_both_roles() {
    if !Lab::require_strongswan() {
        return;
    }
    let mut lab = Lab::new().expect("lab");
    let ours = lab.add_netns("ike").expect("netns");
    let theirs = lab.add_netns("swan").expect("netns");
    lab.veth(
        &ours,
        "wan0",
        Some(&format!("{OUR_IP}/24")),
        &theirs,
        "wan0",
        Some(&format!("{SWAN_IP}/24")),
    )
    .expect("veth");
    let swan = StrongSwan::start(&mut lab, &theirs, false).expect("start charon");
    lab.ip_in(&theirs, &["link", "set", "ipsec0", "up"])
        .expect("ipsec0 up");
    lab.ip_in(&theirs, &["addr", "add", "10.2.0.1/32", "dev", "lo"])
        .expect("inner address");
    for case in CASES {
        we_initiate(&ours, &swan, case);
    }
    they_initiate(&ours, &swan, &CASES[0]);
    dpd_finds_a_killed_peer(&ours, swan, &mut lab);
}

/// R-U-THERE every 2 s; charon is killed: the peer is declared dead.
fn dpd_finds_a_killed_peer(ours_ns: &str, swan: StrongSwan, lab: &mut Lab) {
    let case = &CASES[0];
    swan.load(&swan_conn(case))
        .expect("load strongSwan connection");
    let mut p = peer_config(case);
    p.dpd_delay = Some(Duration::from_secs(2));
    p.dpd_timeout = Duration::from_secs(8);
    let mut d = Driver::new(ours_ns, p);
    d.ep.initiate(Instant::now(), d.conn).expect("initiate");
    d.flush();
    d.run_until("DPD setup", &swan, false, |ev| {
        ev.iter().any(|e| matches!(e, Event::ChildSaEstablished(_)))
    });
    // Answered probes keep it up.
    d.idle(Duration::from_secs(5));
    assert!(
        !d.events.iter().any(|e| matches!(e, Event::PeerDead { .. })),
        "{:?}",
        d.events
    );
    let answered = d.ep.stats(d.conn).expect("stats").messages_received;
    let t0 = Instant::now();
    swan.kill(lab);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !d.events.iter().any(|e| matches!(e, Event::PeerDead { .. })) {
        assert!(Instant::now() < deadline, "no PeerDead: {:?}", d.events);
        d.idle(Duration::from_millis(50));
    }
    println!(
        "DPD: {answered} messages answered before the kill; dead after {:?}",
        t0.elapsed()
    );
    assert!(d.events.iter().any(|e| matches!(
        e,
        Event::IkeSaDown {
            reason: ike_lite::DownReason::Timeout,
            ..
        }
    )));
    assert_eq!(d.ep.ike_sa_count(), 0);
}
