//! `Endpoint` against a real strongSwan responder over UDP (root, netns).
//!
//! Two namespaces joined by a veth: `ike` (192.0.2.1, our sockets on UDP
//! 500/4500) and `swan` (192.0.2.2, charon with kernel-libipsec). A minimal
//! driver loop feeds the sans-IO [`Endpoint`] with real time. For each
//! proposal set it establishes the IKE SA and a Child SA, rekeys the Child
//! SA (with a KE payload when the ESP proposal names a group: PFS) and then
//! the IKE SA, and checks after each step that strongSwan's
//! `swanctl --list-sas` shows exactly the SAs we hold. No ESP traffic.
//!
//! kernel-libipsec fakes NAT detection (it always UDP-encapsulates), so the
//! SA also moves to port 4500 with the non-ESP marker.
//!
//! Without root or strongSwan the test is skipped with a message, except
//! under `CI`, where it fails.

use ike_lite::proposal::{parse_esp_proposals, parse_ike_proposals};
use ike_lite::ts::TrafficSelector;
use ike_lite::{
    ChildDeleteReason, ChildSa, Config, ConnId, Endpoint, Event, Identity, PeerConfig, Psk,
};
use netns_lab::{Lab, StrongSwan, SwanChild, SwanConnection};
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::str::FromStr;
use std::time::{Duration, Instant};

const OUR_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const SWAN_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const OUR_NET: &str = "10.1.0.0/24";
const SWAN_NET: &str = "10.2.0.0/24";
const PSK: &[u8] = b"strongswan-udp-test-psk-7c1d2e";
const STEP_TIMEOUT: Duration = Duration::from_secs(15);

/// Our UDP sockets (created inside the `ike` namespace) and the endpoint.
struct Driver {
    ep: Endpoint,
    conn: ConnId,
    s500: UdpSocket,
    s4500: UdpSocket,
    events: Vec<Event>,
    /// Datagrams sent / received per port, for the report.
    sent: [u64; 2],
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
            sent: [0; 2],
            received: [0; 2],
        }
    }

    /// Sends every queued datagram from the socket its source port names.
    fn flush(&mut self) {
        while let Some(t) = self.ep.poll_transmit() {
            let (sock, i) = if t.src.port() == 4500 {
                (&self.s4500, 1)
            } else {
                (&self.s500, 0)
            };
            match sock.send_to(&t.payload, t.dst) {
                Ok(_) => self.sent[i] += 1,
                Err(e) => panic!("send {} -> {}: {e}", t.src, t.dst),
            }
        }
        while let Some(e) = self.ep.poll_event() {
            self.events.push(e);
        }
    }

    /// One round: receive what is there, fire due timers, send.
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
                        // Keepalives (0xff) and anything else not IKE are
                        // refused by the endpoint; that is fine here.
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

    /// Drives the endpoint until `done` holds on the events (bounded).
    /// Any failure event (or an IKE SA going down, unless `down_ok`)
    /// fails the test at once.
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
                Event::AuthenticationFailed { .. }
                | Event::ChildSaFailed { .. }
                | Event::PeerDead { .. } => true,
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
                    swan.log_tail(60)
                );
            }
            if !self.turn() {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        // Let the last answers (e.g. to a DELETE) leave.
        self.flush();
    }

    /// Keeps the endpoint serviced for `d` (answers DPD, retransmissions).
    fn idle(&mut self, d: Duration) {
        let end = Instant::now() + d;
        while Instant::now() < end {
            if !self.turn() {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }

    fn children(&self) -> Vec<&ChildSa> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::ChildSaEstablished(c) => Some(&**c),
                _ => None,
            })
            .collect()
    }
}

/// `list_sas` until `check` passes (charon may log the new SA a moment
/// after answering), bounded; returns the last listing.
fn wait_listing(swan: &StrongSwan, d: &mut Driver, what: &str, check: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let l = swan.list_sas().expect("swanctl --list-sas");
        if check(&l) {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "{what}: strongSwan's SAs do not match ours\nours: IKE {:x?} children {:x?}\n--- list-sas:\n{l}\n--- charon.log tail:\n{}",
                d.ep.ike_spis(d.conn),
                d.ep.child_sas(d.conn),
                swan.log_tail(60)
            );
        }
        d.idle(Duration::from_millis(200));
    }
}

/// Does the listing show exactly this IKE SA (SPIs in strongSwan's
/// `<spi_i>_i <spi_r>_r` form) established?
fn shows_ike(l: &str, spis: (u64, u64)) -> bool {
    let want = format!("{:016x}_i {:016x}_r", spis.0, spis.1);
    l.lines()
        .any(|x| x.contains("ESTABLISHED") && x.replace('*', "").contains(&want))
}

/// One Child SA of a `swanctl --list-sas` listing.
#[derive(Debug)]
struct SwanChildSa {
    /// `INSTALLED`, `REKEYED`, `DELETED`, ...
    state: String,
    /// `ESP:...` algorithm token.
    esp: String,
    spi_in: u32,
    spi_out: u32,
}

/// Parses the Child SA blocks (`name: #n, reqid r, STATE, MODE, ESP:..`
/// followed by `in SPI, ...` and `out SPI, ...` lines).
fn swan_children(l: &str) -> Vec<SwanChildSa> {
    let mut v: Vec<SwanChildSa> = Vec::new();
    for line in l.lines() {
        let t = line.trim_start();
        if t.contains(", reqid ") {
            let fields: Vec<&str> = t.split(", ").collect();
            v.push(SwanChildSa {
                state: fields.get(2).unwrap_or(&"").to_string(),
                esp: fields
                    .iter()
                    .find(|f| f.starts_with("ESP:"))
                    .unwrap_or(&"")
                    .trim()
                    .to_string(),
                spi_in: 0,
                spi_out: 0,
            });
        } else if let Some(c) = v.last_mut() {
            let mut w = t.split_whitespace();
            let spi = |s: Option<&str>| {
                s.and_then(|x| u32::from_str_radix(x.trim_end_matches(','), 16).ok())
            };
            match w.next() {
                Some("in") => c.spi_in = spi(w.next()).unwrap_or(0),
                Some("out") => c.spi_out = spi(w.next()).unwrap_or(0),
                _ => {}
            }
        }
    }
    v
}

/// The listing's only installed Child SA is ours: its inbound SPI is our
/// outbound one and vice versa; returns its ESP algorithm token.
fn installed_child(l: &str, ours: (u32, u32)) -> Option<String> {
    let inst: Vec<SwanChildSa> = swan_children(l)
        .into_iter()
        .filter(|c| c.state == "INSTALLED")
        .collect();
    match inst.as_slice() {
        [c] if c.spi_in == ours.1 && c.spi_out == ours.0 => Some(c.esp.clone()),
        _ => None,
    }
}

fn count_established(l: &str) -> usize {
    l.lines().filter(|x| x.contains("ESTABLISHED")).count()
}

struct Case {
    ike: &'static str,
    esp: &'static str,
    /// What strongSwan prints for the rekeyed Child SA (`ESP:...`), which
    /// shows the PFS group it was created with.
    swan_esp_after_rekey: &'static str,
}

const CASES: &[Case] = &[
    Case {
        ike: "aes128gcm16-prfsha256-modp2048",
        esp: "aes128gcm16-modp2048",
        swan_esp_after_rekey: "ESP:AES_GCM_16-128/MODP_2048",
    },
    Case {
        ike: "aes128-sha1-modp1024",
        esp: "aes128-sha1-modp1024",
        swan_esp_after_rekey: "ESP:AES_CBC-128/HMAC_SHA1_96/MODP_1024",
    },
    Case {
        ike: "aes256-sha256-modp2048",
        esp: "aes256-sha256-modp2048",
        swan_esp_after_rekey: "ESP:AES_CBC-256/HMAC_SHA2_256_128/MODP_2048",
    },
    Case {
        ike: "aes128gcm16-prfsha256-curve25519",
        esp: "aes128gcm16-curve25519",
        swan_esp_after_rekey: "ESP:AES_GCM_16-128/CURVE_25519",
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

fn run_case(ours_ns: &str, swan: &StrongSwan, case: &Case) {
    let t0 = Instant::now();
    let conn = SwanConnection::ikev2_psk(
        "ikelite",
        &SWAN_IP.to_string(),
        &OUR_IP.to_string(),
        case.ike,
        PSK,
        SwanChild::new("net", SWAN_NET, OUR_NET, case.esp),
    );
    swan.load(&conn).expect("load strongSwan connection");

    let mut d = Driver::new(ours_ns, peer_config(case));
    let conn_id = d.conn;
    d.ep.initiate(Instant::now(), conn_id).expect("initiate");
    d.flush();
    d.run_until("IKE_SA_INIT/IKE_AUTH", swan, false, |ev| {
        ev.iter().any(|e| matches!(e, Event::IkeSaUp { .. }))
            && ev.iter().any(|e| matches!(e, Event::ChildSaEstablished(_)))
    });
    assert!(
        d.events.iter().any(|e| matches!(
            e,
            Event::IkeSaUp {
                initiator: true,
                udp_encap: true,
                ..
            }
        )),
        "kernel-libipsec forces NAT-T; expected an encapsulated IKE SA: {:?}",
        d.events
    );
    assert!(d.received[1] > 0, "nothing received on port 4500");
    let first = d.children()[0].clone();
    assert_eq!(first.rekey_of, None);
    let ike1 = d.ep.ike_spis(conn_id).expect("IKE SA established");
    wait_listing(swan, &mut d, "after IKE_AUTH", |l| {
        shows_ike(l, ike1) && installed_child(l, (first.spi_in, first.spi_out)).is_some()
    });
    let t_up = t0.elapsed();

    // Child SA rekey (CREATE_CHILD_SA with KE when the proposal has a group).
    d.ep.rekey_child(Instant::now(), conn_id, first.spi_in)
        .expect("rekey child");
    d.flush();
    d.run_until("Child SA rekey", swan, false, |ev| {
        ev.iter().any(|e| {
            matches!(e, Event::ChildSaDeleted { spi_in, reason: ChildDeleteReason::Rekeyed, .. }
                if *spi_in == first.spi_in)
        })
    });
    let second = d
        .children()
        .into_iter()
        .find(|c| c.rekey_of == Some(first.spi_in))
        .expect("rekeyed Child SA event")
        .clone();
    assert_ne!(second.spi_in, first.spi_in);
    assert_ne!(second.key_in, first.key_in);
    assert_eq!(
        d.ep.child_sas(conn_id),
        vec![(second.spi_in, second.spi_out)]
    );
    let want_esp = case.swan_esp_after_rekey;
    wait_listing(swan, &mut d, "after Child SA rekey", |l| {
        shows_ike(l, ike1)
            && installed_child(l, (second.spi_in, second.spi_out)).as_deref() == Some(want_esp)
    });

    // IKE SA rekey.
    d.ep.rekey_ike(Instant::now(), conn_id)
        .expect("rekey IKE SA");
    d.flush();
    d.run_until("IKE SA rekey", swan, false, |ev| {
        ev.iter().any(|e| matches!(e, Event::IkeSaRekeyed { .. }))
    });
    let ike2 = d.ep.ike_spis(conn_id).expect("IKE SA after rekey");
    assert_ne!(ike2, ike1);
    match d
        .events
        .iter()
        .find(|e| matches!(e, Event::IkeSaRekeyed { .. }))
    {
        Some(Event::IkeSaRekeyed { old, new, .. }) => {
            assert_eq!(*old, ike1);
            assert_eq!(*new, ike2);
        }
        _ => unreachable!(),
    }
    wait_listing(swan, &mut d, "after IKE SA rekey", |l| {
        shows_ike(l, ike2)
            && !shows_ike(l, ike1)
            && count_established(l) == 1
            && installed_child(l, (second.spi_in, second.spi_out)).is_some()
    });
    // Still alive: a liveness check over the new IKE SA is answered.
    d.ep.check_liveness(Instant::now(), conn_id)
        .expect("liveness check");
    d.flush();
    let before = d.ep.stats(conn_id).expect("stats").messages_received;
    let deadline = Instant::now() + STEP_TIMEOUT;
    while d.ep.stats(conn_id).expect("stats").messages_received <= before {
        assert!(Instant::now() < deadline, "no answer to the liveness check");
        d.idle(Duration::from_millis(20));
    }
    println!(
        "case ike={} esp={}: up in {:?}, total {:?}, datagrams sent 500/4500 {:?}, received {:?}",
        case.ike,
        case.esp,
        t_up,
        t0.elapsed(),
        d.sent,
        d.received
    );
    // Close cleanly so the next case starts from an empty charon.
    d.ep.delete(Instant::now(), conn_id).expect("delete");
    d.flush();
    d.run_until("IKE SA delete", swan, true, |ev| {
        ev.iter().any(|e| matches!(e, Event::IkeSaDown { .. }))
    });
    wait_listing(swan, &mut d, "after delete", |l| count_established(l) == 0);
}

#[test]
fn strongswan_establish_and_rekey() {
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
    // kernel-libipsec routes the remote selector into its TUN `ipsec0` with
    // a source address from the local selector: give it both.
    lab.ip_in(&theirs, &["link", "set", "ipsec0", "up"])
        .expect("ipsec0 up");
    lab.ip_in(&theirs, &["addr", "add", "10.2.0.1/32", "dev", "lo"])
        .expect("inner address");
    for case in CASES {
        run_case(&ours, &swan, case);
    }
}
