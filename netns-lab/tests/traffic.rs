//! The traffic tools over plain routing (no tunnel): a TCP transfer arrives
//! intact, and the UDP probe sees a gap while the route is removed.

use netns_lab::traffic::{tcp_transfer, UdpProbe};
use netns_lab::{Lab, TwoSites, TwoSitesConfig};
use std::time::{Duration, Instant};

#[test]
fn tcp_transfer_and_udp_probe_over_plain_routing() {
    if !Lab::require_root() {
        return;
    }
    let mut lab = Lab::new().expect("lab");
    let t = TwoSites::up(&mut lab, TwoSitesConfig::default()).expect("topology");
    // Without routes the transfer fails (bounded), it does not hang.
    let t0 = Instant::now();
    let r = tcp_transfer(
        &t.host_a,
        &t.host_b,
        t.host_b_addr(),
        5001,
        1 << 20,
        Duration::from_secs(3),
    );
    assert!(r.is_err(), "transfer without a route: {r:?}");
    assert!(t0.elapsed() < Duration::from_secs(8));

    t.plain_routes(&lab).expect("routes");
    let r = tcp_transfer(
        &t.host_a,
        &t.host_b,
        t.host_b_addr(),
        5002,
        16 << 20,
        Duration::from_secs(30),
    )
    .expect("transfer");
    println!("plain: {r}");
    assert!(r.intact(), "{r}");
    assert_eq!(r.received, 16 << 20);

    let probe = UdpProbe::start(
        &t.host_a,
        &t.host_b,
        t.host_b_addr(),
        7001,
        Duration::from_millis(10),
    )
    .expect("probe");
    assert!(probe
        .wait_reply_after(Instant::now(), Duration::from_secs(3))
        .is_some());
    let cut = Instant::now();
    lab.ip_in(&t.gw_a, &["route", "del", &t.site_b_cidr()])
        .expect("route del");
    std::thread::sleep(Duration::from_millis(500));
    t.plain_routes(&lab).expect("routes back");
    let back = probe
        .wait_reply_after(cut + Duration::from_millis(500), Duration::from_secs(3))
        .expect("echoes resume");
    let gap = probe.longest_gap(cut, back);
    println!("gap {gap:?}");
    assert!(gap >= Duration::from_millis(400), "gap {gap:?}");
    assert!(gap < Duration::from_secs(2), "gap {gap:?}");
    probe.stop();
}
