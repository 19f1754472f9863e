//! Route-based tunnels (0.0.0.0/0 selectors on `ipsec-interface=`): the
//! engine asks for the interface's carrier to follow the Child SA: off
//! at start, on once established, off when DPD declares the peer dead or
//! the IKE SA goes, on again when it is back; never toggled by rekeys.

use std::time::{Duration, Instant};

use ipsec_core::datapath::Direction;
use ipsec_core::sa::Expiry;
use tun_bridge::control::TunnelState;
use tun_bridge::engine::failover::Failback;
use tun_bridge::engine::{Command, DataPathEvent, TunnelId};

use crate::net::{Net, Site, A, B};

const T0: TunnelId = TunnelId(0);
const A_IP: &str = "192.0.2.1";
const B_IP: &str = "198.51.100.2";

/// A route-based conn from `me` to `peer` on ipsec1 with `inside`.
fn conf(auto: &str, me: &str, peer: &str, inside: &str, extra: &str) -> String {
    format!(
        "conn aws\n  authby=secret\n  auto={auto}\n  left={me}\n  right={peer}\n  leftsubnet=0.0.0.0/0\n  rightsubnet=0.0.0.0/0\n  ipsec-interface=1\n  interface-ip={inside}\n  ike=aes128gcm16-prfsha256-ecp256\n  esp=aes128gcm16-ecp256\n  rekeyfuzz=0%\n{extra}\n"
    )
}

fn pair(extra: &str) -> Net {
    let now = Instant::now();
    let psk = format!("{A_IP} {B_IP} : PSK \"route-based\"\n");
    let a = Site::new(
        &conf("start", A_IP, B_IP, "169.254.10.2/30", extra),
        &psk,
        A_IP,
        Failback::Primary,
        11,
        now,
    );
    let b = Site::new(
        &conf("add", B_IP, A_IP, "169.254.10.1/30", extra),
        &psk,
        B_IP,
        Failback::Primary,
        12,
        now,
    );
    Net::new(vec![a, b], now)
}

fn established(n: &Net, site: usize) -> bool {
    n.state(site, 0) == TunnelState::Established
}

#[test]
fn carrier_follows_the_child_sa_not_its_rekeys() {
    let mut n = pair("  salifetime=1h\n  rekeymargin=5m\n");
    n.advance(Duration::from_secs(1));
    assert!(established(&n, A) && established(&n, B));
    // Off from the start, on once the Child SA is installed.
    assert_eq!(n.sites[A].links, [(T0, false), (T0, true)]);
    assert_eq!(n.sites[B].links, [(T0, false), (T0, true)]);
    // `status` names the interface and the carrier the engine asks for.
    let st = &n.status(A).tunnels[0];
    assert_eq!((st.interface.as_str(), st.carrier), ("ipsec1", Some(true)));
    // No routes for a route-based tunnel: the routing daemon owns them.
    assert!(n
        .sites
        .iter()
        .all(|s| s.routes.iter().all(|(_, r)| r.is_empty())));
    // A Child SA rekey (soft expiry at A) does not touch the carrier, and
    // traffic goes on through it.
    let spi = n.status(A).tunnels[0].spi_in.unwrap();
    let now = n.now;
    n.sites[A].engine.handle_datapath(
        now,
        DataPathEvent::Expired {
            tunnel: T0,
            spi,
            direction: Direction::Inbound,
            kind: Expiry::Soft,
        },
    );
    n.run_traffic(Duration::from_secs(3), Duration::from_millis(50), B, T0, T0);
    assert_eq!(n.data_lost, 0, "{:?}", n.last_loss);
    assert_eq!(n.status(A).tunnels[0].child_rekeys, 1);
    // IKE SA rekey (lifetime) neither.
    n.advance(Duration::from_secs(2 * 3600));
    assert!(established(&n, A));
    assert_eq!(n.sites[A].link_changes(T0), 2, "{:?}", n.sites[A].links);
    assert_eq!(n.sites[B].link_changes(T0), 2, "{:?}", n.sites[B].links);
}

#[test]
fn dpd_takes_the_carrier_down_and_reestablishment_brings_it_up() {
    let dpd = "  dpddelay=10\n  dpdtimeout=30\n  dpdaction=restart\n";
    let mut n = pair(dpd);
    n.advance(Duration::from_secs(1));
    assert_eq!(n.sites[A].link(T0), Some(true));
    // The path to B breaks: DPD at A declares it dead.
    n.deliver = Box::new(|from, to| from != B && to != B_IP.parse::<std::net::IpAddr>().unwrap());
    n.advance(Duration::from_secs(60));
    assert_ne!(n.state(A, 0), TunnelState::Established);
    assert_eq!(n.sites[A].link(T0), Some(false));
    assert_eq!(n.status(A).tunnels[0].carrier, Some(false));
    // The path heals: A restarts, the carrier comes back once.
    n.deliver = Box::new(|_, _| true);
    n.advance(Duration::from_secs(60));
    assert!(established(&n, A), "{:?}", n.status(A).tunnels[0]);
    assert_eq!(n.sites[A].link(T0), Some(true));
    assert_eq!(
        n.sites[A].links,
        [(T0, false), (T0, true), (T0, false), (T0, true)]
    );
    n.run_traffic(
        Duration::from_secs(1),
        Duration::from_millis(100),
        B,
        T0,
        T0,
    );
    assert_eq!(n.data_lost, 0, "{:?}", n.last_loss);
}

#[test]
fn peer_restart_ike_down_then_up_again() {
    let mut n = pair("");
    n.advance(Duration::from_secs(1));
    // The peer deletes everything (a restart of its daemon).
    n.command(B, Command::Down(T0));
    assert_eq!(n.sites[A].link(T0), Some(false));
    assert_eq!(n.sites[B].link(T0), Some(false));
    // A (auto=start) comes back after its backoff; B answers.
    n.command(B, Command::Up(T0));
    n.advance(Duration::from_secs(5));
    assert!(established(&n, A) && established(&n, B));
    assert_eq!(n.sites[A].link(T0), Some(true));
    assert_eq!(n.sites[B].link(T0), Some(true));
}

#[test]
fn dpdaction_hold_restarts_a_route_based_tunnel() {
    // No traffic can reach an interface without carrier, so waiting for
    // it (dpdaction=hold) would wait for ever: the engine restarts.
    let dpd = "  dpddelay=10\n  dpdtimeout=30\n  dpdaction=hold\n";
    let mut n = pair(dpd);
    n.advance(Duration::from_secs(1));
    n.deliver = Box::new(|from, to| from != B && to != B_IP.parse::<std::net::IpAddr>().unwrap());
    n.advance(Duration::from_secs(60));
    assert_eq!(n.sites[A].link(T0), Some(false));
    let tries = n.sites[A].sa_inits_sent();
    n.deliver = Box::new(|_, _| true);
    n.advance(Duration::from_secs(120));
    assert!(n.sites[A].sa_inits_sent() > tries);
    assert!(established(&n, A));
    assert_eq!(n.sites[A].link(T0), Some(true));
}
