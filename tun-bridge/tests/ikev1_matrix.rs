//! IKEv1 interop matrix against strongSwan `version = 1` (root, strongSwan,
//! kernel-libipsec): for every proposal set of `common::V1_CASES` (the AWS
//! Generic aes128-sha1-modp1024, aes256-sha256-modp2048, and an
//! aes128gcm16 phase 2 with ECP-256 PFS), tun-bridge as initiator and as
//! responder; hosts behind both gateways ping each other and a 64 MiB TCP
//! transfer arrives with the same SHA-256, alternating direction.
//!
//! One topology and one charon per test function; tun-bridge is restarted
//! and charon reloaded per case. Without root/strongSwan the tests are
//! skipped with a message, except under `CI`, where they fail.

mod common;

use common::*;
use netns_lab::{Lab, TwoSites, TwoSitesConfig};
use std::time::{Duration, Instant};

/// Asserts `status` reports IKEv1 main mode with `case`'s phase 1 and
/// phase 2 suites.
fn assert_v1_status(tb: &TunBridge, name: &str, case: &Case, ctx: &str) {
    let st = tb.tunnel(name).expect("tunnel status");
    assert_eq!(
        st.ike_algorithms.as_deref(),
        Some(format!("ikev1 main {}", case.ike).as_str()),
        "{ctx}: {st:?}"
    );
    // The ESP suite is the `esp=` proposal without its PFS group.
    let esp = case
        .esp
        .rsplit_once('-')
        .map_or(case.esp, |(suite, _)| suite);
    assert_eq!(st.esp_algorithms.as_deref(), Some(esp), "{ctx}: {st:?}");
}

#[test]
fn ikev1_matrix_tun_bridge_initiator_strongswan_responder() {
    let _g = serial();
    if !Lab::require_strongswan() {
        return;
    }
    let mut lab = Lab::new().expect("lab");
    let t = TwoSites::up(&mut lab, TwoSitesConfig::default()).expect("topology");
    let swan = start_swan(&mut lab, &t.gw_b);
    let (a, b) = (t.gw_a_outer().to_string(), t.gw_b_outer().to_string());
    for (i, case) in V1_CASES.iter().enumerate() {
        let ctx = format!("tun-bridge -> strongSwan [{}]", case.name);
        let key = psk("v1mtbss");
        swan.load(&swan_conn_v1(&t, case, &key, false))
            .expect("load swanctl conf");
        let mut ca = TbConn::new(
            "vpc",
            "start",
            "%defaultroute",
            &b,
            &t.site_a_cidr(),
            &t.site_b_cidr(),
            case,
        );
        ca.leftid = Some(a.clone());
        let t0 = Instant::now();
        let ga = TunBridge::start(
            &mut lab,
            &t.gw_a,
            "gw-a",
            &ipsec_conf_v1(&[ca]),
            &ipsec_secrets(&[(&a, &b, &key)]),
        );
        ga.wait_established(&mut lab, &["vpc"]);
        let up = t0.elapsed();
        assert_v1_status(&ga, "vpc", case, &ctx);
        let sas = swan_sas(&swan);
        assert!(
            sas.contains("IKEv1") && sas.contains("ESTABLISHED") && sas.contains("INSTALLED"),
            "{ctx}: strongSwan SAs:\n{sas}"
        );
        ping_both_ways(&lab, &t, &ctx);
        let r = bulk(&lab, &t, 5600 + i as u16, BULK_BYTES, i % 2 == 1, &ctx);
        report(&ctx, up, &r);
        ga.stop(&mut lab);
        let _ = swan.terminate_ike("tb");
    }
}

#[test]
fn ikev1_matrix_strongswan_initiator_tun_bridge_responder() {
    let _g = serial();
    if !Lab::require_strongswan() {
        return;
    }
    let mut lab = Lab::new().expect("lab");
    let t = TwoSites::up(&mut lab, TwoSitesConfig::default()).expect("topology");
    let swan = start_swan(&mut lab, &t.gw_b);
    let (a, b) = (t.gw_a_outer().to_string(), t.gw_b_outer().to_string());
    for (i, case) in V1_CASES.iter().enumerate() {
        let ctx = format!("strongSwan -> tun-bridge [{}]", case.name);
        let key = psk("v1msstb");
        let ca = TbConn::new(
            "vpc",
            "add",
            &a,
            &b,
            &t.site_a_cidr(),
            &t.site_b_cidr(),
            case,
        );
        let ga = TunBridge::start(
            &mut lab,
            &t.gw_a,
            "gw-a",
            &ipsec_conf_v1(&[ca]),
            &ipsec_secrets(&[(&a, &b, &key)]),
        );
        ga.wait_listening(&mut lab);
        swan.load(&swan_conn_v1(&t, case, &key, true))
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
        assert_v1_status(&ga, "vpc", case, &ctx);
        ping_both_ways(&lab, &t, &ctx);
        let r = bulk(&lab, &t, 5610 + i as u16, BULK_BYTES, i % 2 == 0, &ctx);
        report(&ctx, up, &r);
        let _ = swan.terminate_ike("tb");
        ga.stop(&mut lab);
    }
}
