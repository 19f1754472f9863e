//! The lab itself: two-site topology with plain routing (the ceiling path)
//! and a strongSwan pair tunnelling between the two sites.

use netns_lab::{Lab, StrongSwan, SwanChild, SwanConnection, TwoSites, TwoSitesConfig};
use std::time::Duration;

#[test]
fn two_sites_plain_routing_ping() {
    if !Lab::require_root() {
        return;
    }
    let mut lab = Lab::new().expect("lab");
    let t = TwoSites::up(&mut lab, TwoSitesConfig::default()).expect("topology");
    let hb = t.host_b_addr().to_string();
    // no route across the WAN yet: host B unreachable
    assert!(!lab.ping(&t.host_a, &hb, 1).expect("ping runs"));
    t.plain_routes(&lab).expect("routes");
    assert!(
        lab.ping(&t.host_a, &hb, 3).expect("ping runs"),
        "plain routed ping failed"
    );
    assert!(lab
        .ping(&t.host_b, &t.host_a_addr().to_string(), 2)
        .expect("ping runs"));
    let names: Vec<String> = lab.namespaces().to_vec();
    assert_eq!(names.len(), 4);
    assert!(names.iter().all(|n| n.starts_with(lab.prefix())));
    drop(lab);
    let listed = std::fs::read_dir("/var/run/netns")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    for n in names {
        assert!(!listed.contains(&n), "namespace {n} not deleted");
    }
}

#[test]
fn processes_are_stopped_and_namespaces_removed_on_panic() {
    if !Lab::require_root() {
        return;
    }
    let (pid, ns) = {
        let r = std::panic::catch_unwind(|| {
            let mut lab = Lab::new().expect("lab");
            let ns = lab.add_netns("solo").expect("netns");
            let log = lab.state_dir().join("sleep.log");
            let pid = lab.spawn(&ns, &["sleep", "60"], &log).expect("spawn");
            assert!(lab.is_running(pid));
            std::panic::panic_any((pid, ns));
        });
        *r.expect_err("panicked")
            .downcast::<(u32, String)>()
            .expect("payload")
    };
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists() || {
            // a zombie would still have a /proc entry; check its state
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| s.contains(") Z "))
                .unwrap_or(true)
        }
    );
    assert!(!std::path::Path::new(&format!("/var/run/netns/{ns}")).exists());
}

#[test]
fn strongswan_pair_gcm_tunnel_ping() {
    if !Lab::require_strongswan() {
        return;
    }
    let mut lab = Lab::new().expect("lab");
    let t = TwoSites::up(&mut lab, TwoSitesConfig::default()).expect("topology");
    let (ike, esp) = ("aes128gcm16-prfsha256-modp2048", "aes128gcm16");
    let psk = b"netns-lab-test-psk-0123456789";
    let (a_out, b_out) = (t.gw_a_outer().to_string(), t.gw_b_outer().to_string());
    let left = StrongSwan::start(&mut lab, &t.gw_a, true).expect("charon A");
    let right = StrongSwan::start(&mut lab, &t.gw_b, true).expect("charon B");
    let mut ca = SwanConnection::ikev2_psk(
        "s2s",
        &a_out,
        &b_out,
        ike,
        psk,
        SwanChild::new("net", &t.site_a_cidr(), &t.site_b_cidr(), esp),
    );
    ca.rekey_time = Some(28800);
    let cb = SwanConnection::ikev2_psk(
        "s2s",
        &b_out,
        &a_out,
        ike,
        psk,
        SwanChild::new("net", &t.site_b_cidr(), &t.site_a_cidr(), esp),
    );
    left.load(&ca).expect("load A");
    right.load(&cb).expect("load B");
    left.initiate("net", Duration::from_secs(20))
        .expect("initiate");
    let sas = left.list_sas().expect("list-sas");
    assert!(sas.contains("ESTABLISHED"), "{sas}");
    assert!(sas.contains("INSTALLED"), "{sas}");
    assert!(sas.contains("AES_GCM_16-128"), "{sas}");
    let hb = t.host_b_addr().to_string();
    assert!(
        lab.ping(&t.host_a, &hb, 3).expect("ping runs"),
        "ping through tunnel failed"
    );
    let sas = right.list_sas().expect("list-sas B");
    eprintln!("{sas}");
    // responder decrypted inbound ESP: "in  SPI, N bytes, M packets" with N > 0
    let bytes_in = sas
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("in "))
        .and_then(|l| l.split(',').nth(1))
        .and_then(|f| f.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(bytes_in > 0, "responder counted no inbound bytes:\n{sas}");
    // rekey the CHILD_SA and ping again
    left.rekey_child("net").expect("rekey child");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        lab.ping(&t.host_a, &hb, 2).expect("ping runs"),
        "ping after rekey failed"
    );
    left.terminate_ike("s2s").expect("terminate");
    assert!(!right.log().is_empty());
}
