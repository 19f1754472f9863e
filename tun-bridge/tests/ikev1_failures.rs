//! IKEv1 against failures (root, strongSwan `version = 1` with
//! kernel-libipsec), AWS Generic suite (aes128-sha1-modp1024, PFS group 2):
//! * `dpd_finds_a_killed_strongswan_and_restarts`: charon is killed by its
//!   PID (no DELETE); tun-bridge's DPD (short `dpddelay`/`dpdtimeout`)
//!   declares the peer dead within its bound, `status` shows it, and once
//!   charon runs again the tunnel comes back (`dpdaction=restart`) and a
//!   checksummed transfer passes.
//!
//! Without root/strongSwan the tests are skipped with a message, except
//! under `CI`, where they fail.

mod common;

use common::*;
use netns_lab::{Lab, TwoSites, TwoSitesConfig};
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
