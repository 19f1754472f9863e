//! The tunnel engine end to end without root, sockets or real time: two or
//! three sites (engine + data plane each) on an in-memory network with a
//! virtual clock (see `net`). Each test reads like an operator's day:
//! establish, rekeys, dead peers, failover, wrong PSKs.

mod logs;
mod net;
mod reload;
mod route_based;

use std::time::{Duration, Instant};

use ipsec_core::datapath::Direction;
use ipsec_core::sa::Expiry;
use net::{Net, Site, A, B, C};
use tun_bridge::control::{TunnelRole, TunnelState};
use tun_bridge::engine::failover::Failback;
use tun_bridge::engine::{Command, DataPathEvent, TunnelId};

const T0: TunnelId = TunnelId(0);
const T1: TunnelId = TunnelId(1);

/// Site A (192.0.2.1, 10.1.0.0/16) to a peer at `peer_ip` (10.2.0.0/16).
fn conf(name: &str, auto: &str, peer_ip: &str, extra: &str) -> String {
    format!(
        "conn {name}\n  authby=secret\n  auto={auto}\n  left=192.0.2.1\n  leftsubnet=10.1.0.0/16\n  right={peer_ip}\n  rightsubnet=10.2.0.0/16\n  ike=aes128gcm16-prfsha256-ecp256\n  esp=aes128gcm16-ecp256\n  rekeyfuzz=0%\n{extra}\n"
    )
}

/// The peer's side of [`conf`].
fn peer_conf(name: &str, auto: &str, me: &str, extra: &str) -> String {
    format!(
        "conn {name}\n  authby=secret\n  auto={auto}\n  left={me}\n  leftsubnet=10.2.0.0/16\n  right=192.0.2.1\n  rightsubnet=10.1.0.0/16\n  ike=aes128gcm16-prfsha256-ecp256\n  esp=aes128gcm16-ecp256\n  rekeyfuzz=0%\n{extra}\n"
    )
}

fn secrets(a: &str, b: &str, psk: &str) -> String {
    format!("{a} {b} : PSK \"{psk}\"\n")
}

const A_IP: &str = "192.0.2.1";
const B_IP: &str = "198.51.100.2";
const C_IP: &str = "198.51.100.3";

/// A (auto=start) and B (auto=add) with the same `extra` settings.
fn pair(extra_a: &str, extra_b: &str) -> Net {
    pair_psk(extra_a, extra_b, "shared-secret", "shared-secret")
}

fn pair_psk(extra_a: &str, extra_b: &str, psk_a: &str, psk_b: &str) -> Net {
    let now = Instant::now();
    let a = Site::new(
        &conf("t", "start", B_IP, extra_a),
        &secrets(A_IP, B_IP, psk_a),
        A_IP,
        Failback::Primary,
        1,
        now,
    );
    let b = Site::new(
        &peer_conf("t", "add", B_IP, extra_b),
        &secrets(B_IP, A_IP, psk_b),
        B_IP,
        Failback::Primary,
        2,
        now,
    );
    Net::new(vec![a, b], now)
}

/// Runs data both ways between A and B over tunnel 0 for `secs` seconds in
/// `step_ms` steps and asserts that every packet arrived.
fn traffic_without_loss(n: &mut Net, secs: u64, step_ms: u64) {
    n.run_traffic(
        Duration::from_secs(secs),
        Duration::from_millis(step_ms),
        B,
        T0,
        T0,
    );
    assert_eq!(n.data_lost, 0, "{:?}", n.last_loss);
}

fn established(n: &Net, site: usize, tunnel: usize) -> bool {
    n.state(site, tunnel) == TunnelState::Established
}

fn spis(n: &Net, site: usize) -> (Option<u32>, Option<u32>) {
    let t = &n.status(site).tunnels[0];
    (t.spi_in, t.spi_out)
}

#[test]
fn establish_and_carry_traffic_both_ways() {
    let mut n = pair("", "");
    n.advance(Duration::from_secs(1));
    assert!(established(&n, A, 0) && established(&n, B, 0));
    let (a_in, a_out) = spis(&n, A);
    let (b_in, b_out) = spis(&n, B);
    assert_eq!((a_in, a_out), (b_out, b_in));
    traffic_without_loss(&mut n, 2, 100);
    assert_eq!(n.data_delivered, 40);
    let st = n.status(A);
    assert_eq!(st.tunnels[0].esp_algorithms.as_deref(), Some("aes128gcm16"));
    assert!(n.sites.iter().all(|s| s.apply_errors.is_empty()));
}

fn rekey_without_loss(who: &[usize]) {
    let mut n = pair(
        "  salifetime=1h\n  rekeymargin=5m\n",
        "  salifetime=1h\n  rekeymargin=5m\n",
    );
    n.advance(Duration::from_secs(1));
    let before = spis(&n, A);
    n.run_traffic(
        Duration::from_secs(1),
        Duration::from_millis(100),
        B,
        T0,
        T0,
    );
    // The data path reports a soft expiry (packet or byte limit) at the
    // sides in `who` at the same moment.
    for &s in who {
        let spi = n.status(s).tunnels[0].spi_in.unwrap();
        let now = n.now;
        n.sites[s].engine.handle_datapath(
            now,
            DataPathEvent::Expired {
                tunnel: T0,
                spi,
                direction: Direction::Inbound,
                kind: Expiry::Soft,
            },
        );
    }
    n.run_traffic(Duration::from_secs(5), Duration::from_millis(50), B, T0, T0);
    assert_eq!(n.data_lost, 0, "{:?}", n.last_loss);
    assert!(established(&n, A, 0) && established(&n, B, 0));
    let after = spis(&n, A);
    assert_ne!(before.0, after.0);
    assert_ne!(before.1, after.1);
    assert_eq!(spis(&n, B), (after.1, after.0));
    assert_eq!(n.status(A).tunnels[0].child_rekeys, 1);
    assert_eq!(n.status(B).tunnels[0].child_rekeys, 1);
    // The old inbound SAs stay for packets in flight, then go.
    n.advance(Duration::from_secs(6));
    for (s, old_in) in [(A, before.0.unwrap()), (B, before.1.unwrap())] {
        assert!(n.sites[s].dp.datapath().sad().inbound(old_in).is_none());
    }
    assert!(n.sites.iter().all(|s| s.apply_errors.is_empty()));
}

#[test]
fn child_rekey_by_initiator_loses_nothing() {
    rekey_without_loss(&[A]);
}

#[test]
fn child_rekey_by_responder_loses_nothing() {
    rekey_without_loss(&[B]);
}

#[test]
fn child_rekey_collision_loses_nothing() {
    rekey_without_loss(&[A, B]);
}

#[test]
fn child_rekey_on_lifetime_keeps_traffic_flowing() {
    let mut n = pair(
        "  salifetime=20m\n  rekeymargin=3m\n",
        "  salifetime=1h\n  rekeymargin=3m\n",
    );
    n.advance(Duration::from_secs(1));
    let before = spis(&n, A);
    n.advance(Duration::from_secs(16 * 60 + 50));
    traffic_without_loss(&mut n, 20, 500);
    assert_ne!(spis(&n, A), before);
    assert!(n.status(A).tunnels[0].last_rekey_secs.is_some());
}

#[test]
fn ike_rekey_keeps_child_sas() {
    let mut n = pair(
        "  ikelifetime=30m\n  salifetime=8h\n  rekeymargin=3m\n",
        "  ikelifetime=8h\n  salifetime=8h\n",
    );
    n.advance(Duration::from_secs(1));
    let before = spis(&n, A);
    n.advance(Duration::from_secs(28 * 60));
    traffic_without_loss(&mut n, 5, 500);
    assert_eq!(spis(&n, A), before);
    assert!(established(&n, A, 0) && established(&n, B, 0));
}

fn dead_peer(dpdaction: &str) -> Net {
    let dpd = format!("  dpddelay=10\n  dpdtimeout=30\n  dpdaction={dpdaction}\n");
    let mut n = pair(&dpd, &dpd);
    n.advance(Duration::from_secs(1));
    assert!(established(&n, A, 0));
    // B vanishes (both directions).
    n.deliver = Box::new(|from, to| from != B && to != B_IP.parse::<std::net::IpAddr>().unwrap());
    n.advance(Duration::from_secs(120));
    n
}

#[test]
fn dpd_restart_reinitiates_until_the_peer_is_back() {
    let mut n = dead_peer("restart");
    assert_ne!(n.state(A, 0), TunnelState::Established);
    let tries = n.sites[A].sa_inits_sent();
    assert!(tries >= 2, "restarted: {tries}");
    assert!(n.status(A).tunnels[0].last_error.is_some());
    n.deliver = Box::new(|_, _| true);
    n.advance(Duration::from_secs(60));
    assert!(established(&n, A, 0), "{:?}", n.status(A).tunnels[0]);
    assert_eq!(n.status(A).tunnels[0].last_error, None);
    traffic_without_loss(&mut n, 1, 100);
}

#[test]
fn dpd_clear_stays_down() {
    let mut n = dead_peer("clear");
    assert_eq!(n.state(A, 0), TunnelState::Down);
    let tries = n.sites[A].sa_inits_sent();
    n.deliver = Box::new(|_, _| true);
    n.advance(Duration::from_secs(600));
    assert_eq!(n.state(A, 0), TunnelState::Down);
    assert_eq!(
        n.sites[A].sa_inits_sent(),
        tries,
        "clear must not re-initiate"
    );
    // An operator brings it back.
    n.command(A, Command::Up(T0));
    n.advance(Duration::from_secs(1));
    assert!(established(&n, A, 0));
}

#[test]
fn dpd_hold_waits_for_traffic() {
    let mut n = dead_peer("hold");
    assert_eq!(n.state(A, 0), TunnelState::Down);
    n.deliver = Box::new(|_, _| true);
    let tries = n.sites[A].sa_inits_sent();
    n.advance(Duration::from_secs(300));
    assert_eq!(n.sites[A].sa_inits_sent(), tries);
    // Traffic for the tunnel: the data path raises an ACQUIRE.
    n.send_data(A, T0, 1);
    n.pump();
    n.advance(Duration::from_secs(1));
    assert!(established(&n, A, 0));
}

#[test]
fn peer_delete_brings_the_initiator_back() {
    let mut n = pair("", "");
    n.advance(Duration::from_secs(1));
    let before = spis(&n, A);
    n.command(B, Command::Down(T0));
    assert_eq!(n.state(B, 0), TunnelState::Down);
    assert!(n.sites[B]
        .dp
        .datapath()
        .sad()
        .inbound(before.1.unwrap())
        .is_none());
    // A (auto=start) was told by DELETE and comes back after its backoff;
    // B answers as a responder.
    n.advance(Duration::from_secs(3));
    assert!(established(&n, A, 0));
    assert_ne!(spis(&n, A), before);
    traffic_without_loss(&mut n, 1, 100);
}

/// A with Tunnel1 to B and Tunnel2 to C for the same subnets.
fn failover_net(failback: Failback) -> Net {
    let now = Instant::now();
    let dpd = "  dpddelay=5\n  dpdtimeout=15\n  dpdaction=restart\n";
    let a_conf = format!(
        "{}{}",
        conf("tunnel1", "start", B_IP, dpd),
        conf("tunnel2", "start", C_IP, dpd)
    );
    let a_sec = format!(
        "{}{}",
        secrets(A_IP, B_IP, "one"),
        secrets(A_IP, C_IP, "two")
    );
    let a = Site::new(&a_conf, &a_sec, A_IP, failback, 1, now);
    let b = Site::new(
        &peer_conf("t", "add", B_IP, dpd),
        &secrets(B_IP, A_IP, "one"),
        B_IP,
        failback,
        2,
        now,
    );
    let c = Site::new(
        &peer_conf("t", "add", C_IP, dpd),
        &secrets(C_IP, A_IP, "two"),
        C_IP,
        failback,
        3,
        now,
    );
    let mut n = Net::new(vec![a, b, c], now);
    n.advance(Duration::from_secs(1));
    assert!(established(&n, A, 0) && established(&n, A, 1));
    assert_eq!(n.sites[A].route_owner("10.2.0.0/16"), Some(T0));
    n
}

#[test]
fn failover_to_tunnel2_and_failback_to_primary() {
    let mut n = failover_net(Failback::Primary);
    assert_eq!(n.status(A).tunnels[1].role, TunnelRole::Standby);
    let b_ip: std::net::IpAddr = B_IP.parse().unwrap();
    n.deliver = Box::new(move |from, to| from != B && to != b_ip);
    n.advance(Duration::from_secs(60));
    assert_eq!(
        n.sites[A].route_owner("10.2.0.0/16"),
        Some(T1),
        "routes moved to tunnel2"
    );
    assert_eq!(n.status(A).tunnels[1].role, TunnelRole::Active);
    // Traffic flows over Tunnel2 to C.
    n.run_traffic(
        Duration::from_secs(1),
        Duration::from_millis(100),
        C,
        T1,
        T0,
    );
    assert_eq!(n.data_lost, 0, "{:?}", n.last_loss);
    // B is back: Tunnel1 re-establishes and the routes return.
    n.deliver = Box::new(|_, _| true);
    n.advance(Duration::from_secs(60));
    assert!(established(&n, A, 0));
    assert_eq!(
        n.sites[A].route_owner("10.2.0.0/16"),
        Some(T0),
        "failback to primary"
    );
}

#[test]
fn failover_without_failback_stays_on_tunnel2() {
    let mut n = failover_net(Failback::Never);
    let b_ip: std::net::IpAddr = B_IP.parse().unwrap();
    n.deliver = Box::new(move |from, to| from != B && to != b_ip);
    n.advance(Duration::from_secs(60));
    assert_eq!(n.sites[A].route_owner("10.2.0.0/16"), Some(T1));
    n.deliver = Box::new(|_, _| true);
    n.advance(Duration::from_secs(60));
    assert!(established(&n, A, 0));
    assert_eq!(n.sites[A].route_owner("10.2.0.0/16"), Some(T1));
    let _ = C;
}

#[test]
fn keyingtries_exhausted_gives_up() {
    let mut n = pair("  keyingtries=3\n", "");
    n.deliver = Box::new(|_, _| false);
    n.advance(Duration::from_secs(3600));
    let t = &n.status(A).tunnels[0];
    assert_eq!(t.state, TunnelState::Down);
    assert!(
        t.last_error
            .as_deref()
            .is_some_and(|e| e.contains("gave up after 3")),
        "{t:?}"
    );
    let tries = n.sites[A].sa_inits_sent();
    n.advance(Duration::from_secs(3600));
    assert_eq!(
        n.sites[A].sa_inits_sent(),
        tries,
        "no attempt after giving up"
    );
}

#[test]
fn wrong_psk_is_one_clear_error_with_bounded_backoff() {
    let mut n = pair_psk("", "", "one-psk", "another-psk");
    n.advance(Duration::from_secs(600));
    let t = &n.status(A).tunnels[0];
    assert_ne!(t.state, TunnelState::Established);
    let e = t.last_error.as_deref().unwrap_or_default();
    assert!(e.contains("authentication failed"), "{e}");
    let tries = n.sites[A].sa_inits_sent();
    // 1, 2, 4, 8, 16 s, then every 30 s: about 22 attempts in 10 minutes.
    assert!((10..=40).contains(&tries), "attempts in 10 min: {tries}");
    assert!(n.status(B).tunnels[0].last_error.is_some());
}

#[test]
fn deterministic_timeline() {
    // Same seeds, same virtual time: the same datagram sizes in the same order.
    let run = || {
        let mut n = pair_psk("", "", "one-psk", "another-psk");
        n.advance(Duration::from_secs(120));
        n.sites[A]
            .sent
            .iter()
            .map(|t| t.payload.len())
            .collect::<Vec<_>>()
    };
    assert_eq!(run(), run());
}

#[test]
fn shutdown_deletes_and_finishes() {
    let mut n = pair("", "");
    n.advance(Duration::from_secs(1));
    n.command(A, Command::Shutdown);
    n.advance(Duration::from_millis(10));
    assert!(n.sites[A].engine.is_shut_down(n.now));
    assert_eq!(n.state(B, 0), TunnelState::Down);
}
