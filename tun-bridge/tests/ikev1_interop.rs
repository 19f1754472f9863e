//! IKEv1 end to end (root; strongSwan for two of the three tests): a conn
//! with `keyexchange=ikev1` (the AWS strongSwan sample's setting) runs main
//! mode + quick mode with PSK, aes128-sha1-modp1024 with PFS (the AWS
//! Generic suite); hosts behind both gateways ping each other and a TCP
//! transfer arrives with the same SHA-256:
//! * tun-bridge (initiator) -> strongSwan `version = 1` (responder), then
//!   strongSwan rekeys the IPsec SA (quick mode) and traffic still flows,
//! * strongSwan (initiator) -> tun-bridge (responder),
//! * tun-bridge <-> tun-bridge,
//! * tun-bridge <-> tun-bridge with 20 s / 30 s lifetimes: a paced transfer
//!   across quick-mode and phase-1 rekeys.
//!
//! kernel-libipsec fakes NAT-D, so against strongSwan the ISAKMP SA floats
//! to 4500 and ESP is UDP-encapsulated. Without root/strongSwan the tests
//! are skipped with a message, except under `CI`, where they fail.

mod common;

use common::*;
use netns_lab::{Lab, TwoSites, TwoSitesConfig};
use std::time::{Duration, Instant};

/// Bytes of each checksummed transfer (the test binary is often a debug
/// build; the 64 MiB matrix runs in release).
const BYTES: u64 = 16 << 20;

const AWS: Case = Case {
    name: "ikev1 aes128-sha1-modp1024 (AWS Generic)",
    ike: "aes128-sha1-modp1024",
    esp: "aes128-sha1-modp1024",
};

fn v1_conf(c: TbConn) -> String {
    ipsec_conf_v1(&[c])
}

fn swan_v1(t: &TwoSites, key: &str, initiator: bool) -> netns_lab::SwanConnection {
    swan_conn_v1(t, &AWS, key, initiator)
}

fn assert_ikev1_status(tb: &TunBridge, name: &str) {
    let st = tb.tunnel(name).expect("tunnel status");
    assert_eq!(
        st.ike_algorithms.as_deref(),
        Some("ikev1 main aes128-sha1-modp1024"),
        "{st:?}"
    );
    assert_eq!(st.esp_algorithms.as_deref(), Some("aes128-sha1"), "{st:?}");
}

#[test]
fn tun_bridge_initiator_strongswan_ikev1_responder() {
    let _g = serial();
    if !Lab::require_strongswan() {
        return;
    }
    let mut lab = Lab::new().expect("lab");
    let t = TwoSites::up(&mut lab, TwoSitesConfig::default()).expect("topology");
    let swan = start_swan(&mut lab, &t.gw_b);
    let (a, b) = (t.gw_a_outer().to_string(), t.gw_b_outer().to_string());
    let ctx = "tun-bridge -> strongSwan IKEv1";
    let key = psk("v1tbss");
    swan.load(&swan_v1(&t, &key, false))
        .expect("load swanctl conf");
    let mut ca = TbConn::new(
        "vpc",
        "start",
        "%defaultroute",
        &b,
        &t.site_a_cidr(),
        &t.site_b_cidr(),
        &AWS,
    );
    ca.leftid = Some(a.clone());
    let t0 = Instant::now();
    let ga = TunBridge::start(
        &mut lab,
        &t.gw_a,
        "gw-a",
        &v1_conf(ca),
        &ipsec_secrets(&[(&a, &b, &key)]),
    );
    ga.wait_established(&mut lab, &["vpc"]);
    let up = t0.elapsed();
    assert_ikev1_status(&ga, "vpc");
    let sas = swan_sas(&swan);
    assert!(
        sas.contains("IKEv1") && sas.contains("ESTABLISHED") && sas.contains("INSTALLED"),
        "{ctx}: strongSwan SAs:\n{sas}"
    );
    ping_both_ways(&lab, &t, ctx);
    let r = bulk(&lab, &t, 5400, BYTES, false, ctx);
    report(ctx, up, &r);

    // strongSwan rekeys the IPsec SA: a quick mode it initiates.
    let before = ga.tunnel("vpc").expect("status").spi_in;
    swan.rekey_child("net").expect("rekey");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let now = ga.tunnel("vpc").expect("status");
        if now.spi_in != before && now.spi_in.is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{ctx}: no quick-mode rekey: {now:?}\n{}\n{}",
            ga.log_tail(40),
            swan.log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    ping_both_ways(&lab, &t, "after strongSwan's quick-mode rekey");
    let r = bulk(&lab, &t, 5401, BYTES, true, "after rekey");
    report("after rekey", up, &r);
    ga.stop(&mut lab);
    // Our DELETEs reached strongSwan.
    let deadline = Instant::now() + Duration::from_secs(5);
    while swan_sas(&swan).contains("ESTABLISHED") {
        assert!(
            Instant::now() < deadline,
            "{ctx}: charon still has the SA:\n{}",
            swan.log_tail(30)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn strongswan_ikev1_initiator_tun_bridge_responder() {
    let _g = serial();
    if !Lab::require_strongswan() {
        return;
    }
    let mut lab = Lab::new().expect("lab");
    let t = TwoSites::up(&mut lab, TwoSitesConfig::default()).expect("topology");
    let swan = start_swan(&mut lab, &t.gw_b);
    let (a, b) = (t.gw_a_outer().to_string(), t.gw_b_outer().to_string());
    let ctx = "strongSwan IKEv1 -> tun-bridge";
    let key = psk("v1sstb");
    let ca = TbConn::new(
        "vpc",
        "add",
        &a,
        &b,
        &t.site_a_cidr(),
        &t.site_b_cidr(),
        &AWS,
    );
    let ga = TunBridge::start(
        &mut lab,
        &t.gw_a,
        "gw-a",
        &v1_conf(ca),
        &ipsec_secrets(&[(&a, &b, &key)]),
    );
    ga.wait_listening(&mut lab);
    swan.load(&swan_v1(&t, &key, true))
        .expect("load swanctl conf");
    let t0 = Instant::now();
    swan.initiate("net", Duration::from_secs(15))
        .unwrap_or_else(|e| {
            panic!(
                "{ctx}: strongSwan initiate: {e}\ntun-bridge log:\n{}",
                ga.log_tail(40)
            )
        });
    ga.wait_established(&mut lab, &["vpc"]);
    let up = t0.elapsed();
    assert_ikev1_status(&ga, "vpc");
    ping_both_ways(&lab, &t, ctx);
    let r = bulk(&lab, &t, 5402, BYTES, true, ctx);
    report(ctx, up, &r);
    let _ = swan.terminate_ike("tb");
    ga.stop(&mut lab);
}

#[test]
fn tun_bridge_to_tun_bridge_ikev1() {
    let _g = serial();
    if !Lab::require_root() {
        return;
    }
    let mut lab = Lab::new().expect("lab");
    let t = TwoSites::up(&mut lab, TwoSitesConfig::default()).expect("topology");
    let (a, b) = (t.gw_a_outer().to_string(), t.gw_b_outer().to_string());
    let key = psk("v1tbtb");
    let ca = TbConn::new(
        "site-b",
        "start",
        &a,
        &b,
        &t.site_a_cidr(),
        &t.site_b_cidr(),
        &AWS,
    );
    let cb = TbConn::new(
        "site-a",
        "add",
        &b,
        &a,
        &t.site_b_cidr(),
        &t.site_a_cidr(),
        &AWS,
    );
    let t0 = Instant::now();
    let gb = TunBridge::start(
        &mut lab,
        &t.gw_b,
        "gw-b",
        &v1_conf(cb),
        &ipsec_secrets(&[(&b, &a, &key)]),
    );
    gb.wait_listening(&mut lab);
    let ga = TunBridge::start(
        &mut lab,
        &t.gw_a,
        "gw-a",
        &v1_conf(ca),
        &ipsec_secrets(&[(&a, &b, &key)]),
    );
    ga.wait_established(&mut lab, &["site-b"]);
    gb.wait_established(&mut lab, &["site-a"]);
    let up = t0.elapsed();
    assert_ikev1_status(&ga, "site-b");
    assert_ikev1_status(&gb, "site-a");
    ping_both_ways(&lab, &t, "tun-bridge <-> tun-bridge IKEv1");
    let r = bulk(
        &lab,
        &t,
        5403,
        BYTES,
        false,
        "tun-bridge <-> tun-bridge IKEv1",
    );
    report("tun-bridge <-> tun-bridge IKEv1", up, &r);
    ga.stop(&mut lab);
    gb.stop(&mut lab);
}

/// Short lifetimes (IPsec SA 20 s, ISAKMP SA 30 s, margin 6 s): a paced
/// transfer of 40 s spans quick-mode rekeys and phase-1 rekeys of both
/// gateways and must arrive whole.
#[test]
fn rekeys_during_a_paced_transfer_ikev1() {
    let _g = serial();
    if !Lab::require_root() {
        return;
    }
    let mut lab = Lab::new().expect("lab");
    let t = TwoSites::up(&mut lab, TwoSitesConfig::default()).expect("topology");
    let (a, b) = (t.gw_a_outer().to_string(), t.gw_b_outer().to_string());
    let key = psk("v1rekey");
    let ca = short_lifetimes(TbConn::new(
        "site-b",
        "start",
        &a,
        &b,
        &t.site_a_cidr(),
        &t.site_b_cidr(),
        &AWS,
    ));
    let cb = short_lifetimes(TbConn::new(
        "site-a",
        "add",
        &b,
        &a,
        &t.site_b_cidr(),
        &t.site_a_cidr(),
        &AWS,
    ));
    let gb = TunBridge::start(
        &mut lab,
        &t.gw_b,
        "gw-b",
        &v1_conf(cb),
        &ipsec_secrets(&[(&b, &a, &key)]),
    );
    gb.wait_listening(&mut lab);
    let ga = TunBridge::start(
        &mut lab,
        &t.gw_a,
        "gw-a",
        &v1_conf(ca),
        &ipsec_secrets(&[(&a, &b, &key)]),
    );
    ga.wait_established(&mut lab, &["site-b"]);
    gb.wait_established(&mut lab, &["site-a"]);
    across_rekeys(
        &t,
        &ga,
        "site-b",
        5404,
        &|| gb.log(),
        "IKEv1 transfer across rekeys",
    );
    ping_both_ways(&lab, &t, "after rekeys");
    ga.stop(&mut lab);
    gb.stop(&mut lab);
}

/// The same against strongSwan: tun-bridge (initiator, IPsec SA 20 s,
/// ISAKMP SA 30 s, margin 6 s) rekeys quick mode and phase 1 under a paced
/// 40 s transfer to strongSwan `version = 1`, which must arrive whole.
#[test]
fn rekeys_during_a_paced_transfer_to_strongswan_ikev1() {
    let _g = serial();
    if !Lab::require_strongswan() {
        return;
    }
    let mut lab = Lab::new().expect("lab");
    let t = TwoSites::up(&mut lab, TwoSitesConfig::default()).expect("topology");
    let swan = start_swan(&mut lab, &t.gw_b);
    let (a, b) = (t.gw_a_outer().to_string(), t.gw_b_outer().to_string());
    let key = psk("v1ssrekey");
    swan.load(&swan_v1(&t, &key, false))
        .expect("load swanctl conf");
    let ca = TbConn::new(
        "vpc",
        "start",
        &a,
        &b,
        &t.site_a_cidr(),
        &t.site_b_cidr(),
        &AWS,
    );
    let ca = short_lifetimes(ca);
    let ga = TunBridge::start(
        &mut lab,
        &t.gw_a,
        "gw-a",
        &v1_conf(ca),
        &ipsec_secrets(&[(&a, &b, &key)]),
    );
    ga.wait_established(&mut lab, &["vpc"]);
    across_rekeys(
        &t,
        &ga,
        "vpc",
        5405,
        &|| swan.log_tail(60),
        "IKEv1 transfer across rekeys with strongSwan",
    );
    ping_both_ways(&lab, &t, "after rekeys with strongSwan");
    ga.stop(&mut lab);
}

/// IPsec SA 20 s, ISAKMP SA 30 s, margin 6 s, no fuzz: a 40 s transfer spans
/// quick-mode and phase-1 rekeys.
fn short_lifetimes(mut c: TbConn) -> TbConn {
    c.lifetime = "20s".into();
    c.ikelifetime = "30s".into();
    c.extra = vec!["rekeymargin=6s".into(), "rekeyfuzz=0%".into()];
    c
}

/// A paced 40 s transfer from host A to host B across the rekeys of
/// [`short_lifetimes`]: it must arrive whole, `ga`'s conn `conn` must be on
/// a new IPsec SA after at least two quick-mode rekeys, and the logs (`ga`'s
/// and `peer_log()`) must show a phase-1 rekey and no SA going down.
fn across_rekeys(
    t: &TwoSites,
    ga: &TunBridge,
    conn: &str,
    port: u16,
    peer_log: &dyn Fn() -> String,
    what: &str,
) {
    let spi0 = ga.tunnel(conn).and_then(|s| s.spi_in);
    let pace = 256u64 << 10;
    let bytes = pace * 40;
    let r = netns_lab::traffic::tcp_transfer_paced(
        &t.host_a,
        &t.host_b,
        t.host_b_addr(),
        port,
        bytes,
        Some(pace),
        Duration::from_secs(90),
    )
    .unwrap_or_else(|e| {
        panic!(
            "{what}: {e}\n--- gateway A:\n{}\n--- peer:\n{}",
            ga.log_tail(60),
            peer_log()
        )
    });
    println!("{what}: {r}");
    assert!(r.intact(), "{r}");
    assert_eq!(r.received, bytes);
    let st = ga.tunnel(conn).expect("status");
    assert_ne!(st.spi_in, spi0, "still on the first IPsec SA: {st:?}");
    assert!(st.child_rekeys >= 2, "{st:?}\n{}", ga.log_tail(40));
    let logs = format!("{}{}", ga.log(), peer_log());
    assert!(logs.contains("IKE SA rekeyed"), "no phase-1 rekey:\n{logs}");
    assert!(!logs.contains("IKE SA down"), "an SA went down:\n{logs}");
}
