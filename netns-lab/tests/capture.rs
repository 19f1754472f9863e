//! The capture helper over plain routing (no tunnel): inner packets are
//! visible on the WAN in clear text with the MSS the hosts offered, and a
//! capture stopped by PID keeps every packet it saw.

use netns_lab::traffic::tcp_transfer;
use netns_lab::{mss_values, Capture, Lab, TwoSites, TwoSitesConfig};
use std::time::Duration;

#[test]
fn capture_on_wan_sees_plain_traffic() {
    if !Lab::require_tcpdump() {
        return;
    }
    let mut lab = Lab::new().expect("lab");
    let t = TwoSites::up(&mut lab, TwoSitesConfig::default()).expect("topology");
    t.plain_routes(&lab).expect("routes");
    let cap = Capture::start(
        &mut lab,
        &t.gw_a,
        TwoSites::GW_WAN_IF,
        "plain-wan",
        Duration::from_secs(30),
    )
    .expect("start capture");
    assert!(lab
        .ping(&t.host_a, &t.host_b_addr().to_string(), 3)
        .expect("ping runs"));
    let r = tcp_transfer(
        &t.host_a,
        &t.host_b,
        t.host_b_addr(),
        5400,
        64 << 10,
        Duration::from_secs(20),
    )
    .expect("transfer");
    assert!(r.intact(), "{r}");
    let pcap = cap.stop(&mut lab).expect("stop capture");
    let inner = format!("net {} and net {}", t.site_a_cidr(), t.site_b_cidr());
    let icmp = pcap.count(&format!("icmp and ({inner})")).expect("read");
    assert_eq!(icmp, 6, "3 echo requests + 3 replies: {}", pcap.summary());
    assert_eq!(pcap.count("ip proto 50").expect("read"), 0);
    let syns = pcap
        .lines("tcp port 5400 and tcp[tcpflags] & tcp-syn != 0")
        .expect("read");
    assert_eq!(syns.len(), 2, "SYN and SYN-ACK: {syns:?}");
    // Nothing clamps on a plain path: both ends' 1500-byte links give 1460.
    assert_eq!(mss_values(&syns), vec![1460, 1460], "{syns:?}");
    assert!(pcap.count("").expect("read") > 20);
    assert!(Capture::start(&mut lab, &t.gw_a, "nosuchif", "bad", Duration::from_secs(5)).is_err());
    assert!(Capture::start(&mut lab, &t.gw_a, "wan0", "../x", Duration::from_secs(5)).is_err());
}
