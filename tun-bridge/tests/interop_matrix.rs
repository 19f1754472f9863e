//! Interop matrix (root; strongSwan for two of the three tests): for every
//! proposal set of `common::CASES`, hosts behind both gateways ping each
//! other and a 64 MiB TCP transfer arrives with the same SHA-256:
//! * tun-bridge (initiator) <-> tun-bridge (responder), raw ESP or (two
//!   cases in three) ESP-in-UDP with UDP GSO/GRO,
//! * tun-bridge (initiator) -> strongSwan (responder),
//! * strongSwan (initiator) -> tun-bridge (responder).
//!
//! One topology (host A — gateway A — WAN — gateway B — host B) per test
//! function; the daemons are restarted with new configurations per case.
//! Without root/strongSwan the tests are skipped with a message, except
//! under `CI`, where they fail.

mod common;

use common::*;
use netns_lab::{Lab, TwoSites, TwoSitesConfig};
use std::time::Instant;

#[test]
fn tun_bridge_to_tun_bridge() {
    let _g = serial();
    if !Lab::require_root() {
        return;
    }
    let mut lab = Lab::new().expect("lab");
    let t = TwoSites::up(&mut lab, TwoSitesConfig::default()).expect("topology");
    let (a, b) = (t.gw_a_outer().to_string(), t.gw_b_outer().to_string());
    for (i, case) in CASES.iter().enumerate() {
        let ctx = format!("tun-bridge <-> tun-bridge [{}]", case.name);
        let key = psk("tbtb");
        let mut ca = TbConn::new(
            "site-b",
            "start",
            "%defaultroute",
            &b,
            &t.site_a_cidr(),
            &t.site_b_cidr(),
            case,
        );
        ca.leftid = Some(a.clone());
        let mut cb = TbConn::new(
            "site-a",
            "add",
            &b,
            &a,
            &t.site_b_cidr(),
            &t.site_a_cidr(),
            case,
        );
        // Two of three cases carry ESP-in-UDP (UDP GSO on send, GRO on
        // receive), the others raw ESP.
        let encap = i % 3 != 0;
        if encap {
            ca.extra.push("encapsulation=yes".into());
            cb.extra.push("encapsulation=yes".into());
        }
        let ctx = format!("{ctx} [{}]", if encap { "ESP-in-UDP" } else { "raw ESP" });
        let t0 = Instant::now();
        let (ga, gb) = tb_pair_start(&mut lab, &t, ca, cb, &key);
        let up = t0.elapsed();
        ping_both_ways(&lab, &t, &ctx);
        // Alternate the direction of the bulk transfer between cases.
        let r = bulk(&lab, &t, 5100 + i as u16, BULK_BYTES, i % 2 == 1, &ctx);
        report(&ctx, up, &r);
        let st = ga.tunnel("site-b").expect("status");
        assert!(
            st.bytes_out + st.bytes_in >= BULK_BYTES,
            "{ctx}: counters {st:?}"
        );
        ga.stop(&mut lab);
        gb.stop(&mut lab);
    }
}

#[test]
fn tun_bridge_initiator_strongswan_responder() {
    let _g = serial();
    if !Lab::require_strongswan() {
        return;
    }
    let mut lab = Lab::new().expect("lab");
    let t = TwoSites::up(&mut lab, TwoSitesConfig::default()).expect("topology");
    let swan = start_swan(&mut lab, &t.gw_b);
    let (a, b) = (t.gw_a_outer().to_string(), t.gw_b_outer().to_string());
    for (i, case) in CASES.iter().enumerate() {
        let ctx = format!("tun-bridge -> strongSwan [{}]", case.name);
        let key = psk("tbss");
        swan.load(&swan_conn(&t, case, &key, false))
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
            &ipsec_conf(&[ca]),
            &ipsec_secrets(&[(&a, &b, &key)]),
        );
        ga.wait_established(&mut lab, &["vpc"]);
        let up = t0.elapsed();
        ping_both_ways(&lab, &t, &ctx);
        let r = bulk(&lab, &t, 5200 + i as u16, BULK_BYTES, i % 2 == 1, &ctx);
        report(&ctx, up, &r);
        let sas = swan_sas(&swan);
        assert!(
            sas.contains("ESTABLISHED") && sas.contains("INSTALLED"),
            "{ctx}: strongSwan SAs:\n{sas}"
        );
        ga.stop(&mut lab);
        let _ = swan.terminate_ike("tb");
    }
}

#[test]
fn strongswan_initiator_tun_bridge_responder() {
    let _g = serial();
    if !Lab::require_strongswan() {
        return;
    }
    let mut lab = Lab::new().expect("lab");
    let t = TwoSites::up(&mut lab, TwoSitesConfig::default()).expect("topology");
    let swan = start_swan(&mut lab, &t.gw_b);
    let (a, b) = (t.gw_a_outer().to_string(), t.gw_b_outer().to_string());
    for (i, case) in CASES.iter().enumerate() {
        let ctx = format!("strongSwan -> tun-bridge [{}]", case.name);
        let key = psk("sstb");
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
            &ipsec_conf(&[ca]),
            &ipsec_secrets(&[(&a, &b, &key)]),
        );
        ga.wait_listening(&mut lab);
        swan.load(&swan_conn(&t, case, &key, true))
            .expect("load swanctl conf");
        let t0 = Instant::now();
        swan.initiate("net", std::time::Duration::from_secs(15))
            .unwrap_or_else(|e| {
                panic!(
                    "{ctx}: strongSwan initiate: {e}\ntun-bridge log:\n{}",
                    ga.log_tail(40)
                )
            });
        ga.wait_established(&mut lab, &["vpc"]);
        let up = t0.elapsed();
        ping_both_ways(&lab, &t, &ctx);
        let r = bulk(&lab, &t, 5300 + i as u16, BULK_BYTES, i % 2 == 0, &ctx);
        report(&ctx, up, &r);
        let _ = swan.terminate_ike("tb");
        ga.stop(&mut lab);
    }
}
