//! IKEv1 against failures (root, strongSwan `version = 1` with
//! kernel-libipsec), AWS Generic suite (aes128-sha1-modp1024, PFS group 2):
//! * `dpd_finds_a_killed_strongswan_and_restarts`: charon is killed by its
//!   PID (no DELETE); tun-bridge's DPD (short `dpddelay`/`dpdtimeout`)
//!   declares the peer dead within its bound, `status` shows it, and once
//!   charon runs again the tunnel comes back (`dpdaction=restart`) and a
//!   checksummed transfer passes;
//! * `ikev1_through_a_nat`: tun-bridge (initiator) sits behind a router
//!   with nftables masquerade; main mode floats to UDP 4500, ESP travels in
//!   UDP, hosts ping each other, a transfer arrives with the same SHA-256,
//!   and the NATed side sends RFC 3948 keepalives (a capture on the
//!   router's public side shows all of it, and no raw ESP).
//!
//! Without root/strongSwan/tcpdump the tests are skipped with a message, except
//! under `CI`, where they fail.

mod common;

use common::*;
use netns_lab::{Capture, Lab, NatSites, TwoSites, TwoSitesConfig};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};
use tun_bridge::control::TunnelState;

/// Bytes of each checksummed transfer.
const BYTES: u64 = 16 << 20;

fn aws() -> &'static Case {
    &V1_CASES[0]
}

#[test]
fn dpd_finds_a_killed_strongswan_and_restarts() {
    let _g = serial();
    if !Lab::require_strongswan() {
        return;
    }
    let mut lab = Lab::new().expect("lab");
    let t = TwoSites::up(&mut lab, TwoSitesConfig::default()).expect("topology");
    let swan = start_swan(&mut lab, &t.gw_b);
    let (a, b) = (t.gw_a_outer().to_string(), t.gw_b_outer().to_string());
    let ctx = "IKEv1 DPD vs killed strongSwan";
    let key = psk("v1dpd");
    let swan_conf = swan_conn_v1(&t, aws(), &key, false);
    swan.load(&swan_conf).expect("load swanctl conf");
    let (dpd_delay, dpd_timeout) = (Duration::from_secs(2), Duration::from_secs(6));
    let mut ca = TbConn::new(
        "vpc",
        "start",
        "%defaultroute",
        &b,
        &t.site_a_cidr(),
        &t.site_b_cidr(),
        aws(),
    );
    ca.leftid = Some(a.clone());
    ca.dpddelay = format!("{}s", dpd_delay.as_secs());
    ca.dpdtimeout = format!("{}s", dpd_timeout.as_secs());
    assert_eq!(ca.dpdaction, "restart");
    let ga = TunBridge::start(
        &mut lab,
        &t.gw_a,
        "gw-a",
        &ipsec_conf_v1(&[ca]),
        &ipsec_secrets(&[(&a, &b, &key)]),
    );
    ga.wait_established(&mut lab, &["vpc"]);
    ping_both_ways(&lab, &t, ctx);
    let before = ga.tunnel("vpc").expect("status");
    assert_eq!(before.dpd_failures, 0, "{before:?}");

    // charon dies without a DELETE.
    let killed_at = Instant::now();
    swan.kill(&mut lab);
    let bound = dpd_delay + dpd_timeout + Duration::from_secs(3);
    let dead = ga.wait_for(&mut lab, "the DPD verdict", bound, |st| {
        st.tunnels
            .iter()
            .any(|t| t.name == "vpc" && t.dpd_failures > 0)
    });
    let verdict = killed_at.elapsed();
    let st = dead
        .tunnels
        .into_iter()
        .find(|t| t.name == "vpc")
        .expect("tunnel");
    println!("{ctx}: peer declared dead {verdict:?} after the kill (bound {bound:?}): {st:?}");
    assert!(
        !matches!(st.state, TunnelState::Established | TunnelState::Rekeying),
        "{ctx}: still established after the verdict: {st:?}"
    );
    assert!(
        st.last_error.as_deref().is_some_and(|e| e.contains("DPD")),
        "{ctx}: status does not say why: {st:?}"
    );
    assert!(
        ga.log().contains("DPD: peer dead"),
        "{ctx}: no DPD verdict in the log:\n{}",
        ga.log_tail(40)
    );
    assert!(
        !lab.ping(&t.host_a, &t.host_b_addr().to_string(), 1)
            .expect("ping runs"),
        "{ctx}: ping passes with the peer dead"
    );

    // charon is back with the same configuration: dpdaction=restart brings
    // the tunnel up again.
    let swan = start_swan(&mut lab, &t.gw_b);
    swan.load(&swan_conf).expect("reload swanctl conf");
    let restarted_at = Instant::now();
    ga.wait_for(
        &mut lab,
        "the restarted tunnel",
        Duration::from_secs(60),
        |st| {
            st.tunnels.iter().any(|t| {
                t.name == "vpc"
                    && t.state == TunnelState::Established
                    && t.spi_in.is_some()
                    && t.spi_in != before.spi_in
            })
        },
    );
    println!(
        "{ctx}: tunnel back {:?} after charon restarted",
        restarted_at.elapsed()
    );
    let sas = swan_sas(&swan);
    assert!(
        sas.contains("IKEv1") && sas.contains("INSTALLED"),
        "{ctx}: strongSwan SAs after the restart:\n{sas}"
    );
    ping_both_ways(&lab, &t, "after the restart");
    let r = bulk(&lab, &t, 5620, BYTES, false, "after the restart");
    report("IKEv1 after DPD restart", restarted_at.elapsed(), &r);
    ga.stop(&mut lab);
    swan.stop(&mut lab);
}

/// tun-bridge's NAT keepalive interval (ike-lite's default).
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);

#[test]
fn ikev1_through_a_nat() {
    let _g = serial();
    if !Lab::require_strongswan() || !Lab::require_tcpdump() {
        return;
    }
    let mut lab = Lab::new().expect("lab");
    let nat = NatSites::up(
        &mut lab,
        TwoSitesConfig::default(),
        (Ipv4Addr::new(172, 31, 77, 0), 24),
    )
    .expect("NAT topology (needs nft)");
    let t = &nat.sites;
    let capture = Capture::start(
        &mut lab,
        &nat.router,
        NatSites::ROUTER_WAN_IF,
        "v1gaps-nat-wan",
        Duration::from_secs(90),
    )
    .expect("capture");
    let swan = start_swan(&mut lab, &t.gw_b);
    // Gateway A's public address is the router's: its ID and the address
    // strongSwan expects.
    let (public, b) = (t.gw_a_outer().to_string(), t.gw_b_outer().to_string());
    let ctx = "tun-bridge behind NAT -> strongSwan IKEv1";
    let key = psk("v1nat");
    swan.load(&swan_conn_v1(t, aws(), &key, false))
        .expect("load swanctl conf");
    let mut ca = TbConn::new(
        "vpc",
        "start",
        "%defaultroute",
        &b,
        &t.site_a_cidr(),
        &t.site_b_cidr(),
        aws(),
    );
    ca.leftid = Some(public.clone());
    let t0 = Instant::now();
    let ga = TunBridge::start(
        &mut lab,
        &t.gw_a,
        "gw-a",
        &ipsec_conf_v1(&[ca]),
        &ipsec_secrets(&[(&public, &b, &key)]),
    );
    ga.wait_established(&mut lab, &["vpc"]);
    let established = Instant::now();
    let up = t0.elapsed();
    let st = ga.tunnel("vpc").expect("status");
    assert_eq!(
        st.local_addr.to_string(),
        nat.gw_a_private().to_string(),
        "{ctx}: {st:?}"
    );
    ping_both_ways(&lab, t, ctx);
    let r = bulk(&lab, t, 5630, BYTES, false, ctx);
    report(ctx, up, &r);
    let r = bulk(&lab, t, 5631, BYTES, true, ctx);
    report(&format!("{ctx} (reverse)"), up, &r);
    // Idle until at least one keepalive interval has passed.
    let wait = (established + KEEPALIVE_INTERVAL + Duration::from_secs(2))
        .saturating_duration_since(Instant::now());
    std::thread::sleep(wait);
    ping_both_ways(&lab, t, "after the keepalive interval");
    let pcap = capture.stop(&mut lab).expect("capture file");
    let count = |f: &str| pcap.count(f).unwrap_or_else(|e| panic!("{f}: {e}"));
    let from_a = format!("src host {public} and dst host {b}");
    let ike500 = count(&format!("{from_a} and udp dst port 500"));
    let udp4500 = count(&format!("{from_a} and udp dst port 4500"));
    let keepalives = count(&format!(
        "{from_a} and udp dst port 4500 and udp[4:2] = 9 and udp[8] = 0xff"
    ));
    let esp_in_udp = count(&format!(
        "{from_a} and udp dst port 4500 and udp[4:2] > 1000"
    ));
    let raw_esp = count("esp");
    let private_leaks = count(&format!("net {}", nat.private_cidr()));
    println!(
        "{ctx}: public side saw {ike500} IKE datagrams to 500, {udp4500} to 4500 \
         ({esp_in_udp} over 1000 bytes, {keepalives} keepalives), {raw_esp} raw ESP, {private_leaks} with a private address"
    );
    assert!(ike500 >= 1, "{ctx}: main mode did not start on 500");
    // ESP datagrams (UDP GSO may merge segments: count, do not divide).
    assert!(
        esp_in_udp >= 200,
        "{ctx}: ESP did not travel in UDP 4500 ({esp_in_udp} large datagrams of {udp4500})"
    );
    assert!(
        keepalives >= 1,
        "{ctx}: no NAT keepalive from the NATed side"
    );
    assert_eq!(raw_esp, 0, "{ctx}: raw ESP on the public side");
    assert_eq!(private_leaks, 0, "{ctx}: the NAT did not translate");
    let sas = swan_sas(&swan);
    assert!(
        sas.contains("IKEv1") && sas.contains("INSTALLED") && sas.contains(&public),
        "{ctx}: strongSwan SAs:\n{sas}"
    );
    ga.stop(&mut lab);
    swan.stop(&mut lab);
}
