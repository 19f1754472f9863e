//! Reload on the virtual clock: what a new configuration does to running
//! tunnels (kept ones untouched, changed ones rekeyed or restarted,
//! removed ones deleted, added ones started per `auto=`).

use std::time::{Duration, Instant};

use tun_bridge::control::TunnelState;
use tun_bridge::engine::failover::Failback;
use tun_bridge::engine::reload::InterfaceChange;
use tun_bridge::engine::TunnelId;

use super::net::{Net, Site, A, B, C, D};
use super::{established, peer_conf, secrets, A_IP, B_IP, C_IP};

const D_IP: &str = "198.51.100.4";
const E_IP: &str = "198.51.100.5";
const E: usize = 4;

/// A's side of a connection to `peer_ip` with ESP proposal `esp`.
fn conn(name: &str, auto: &str, peer_ip: &str, esp: &str, extra: &str) -> String {
    format!(
        "conn {name}\n  authby=secret\n  auto={auto}\n  left={A_IP}\n  leftsubnet=10.1.0.0/16\n  right={peer_ip}\n  rightsubnet=10.2.0.0/16\n  ike=aes128gcm16-prfsha256-ecp256\n  esp={esp}\n  rekeyfuzz=0%\n{extra}\n"
    )
}

fn a_secrets(peers: &[&str]) -> String {
    peers
        .iter()
        .map(|p| secrets(A_IP, p, &format!("psk-{p}")))
        .collect()
}

fn peer(ip: &str, esp: &str, seed: u64, now: Instant) -> Site {
    let conf =
        peer_conf("t", "add", ip, "").replace("esp=aes128gcm16-ecp256", &format!("esp={esp}"));
    Site::new(
        &conf,
        &secrets(ip, A_IP, &format!("psk-{ip}")),
        ip,
        Failback::Primary,
        seed,
        now,
    )
}

fn status_of(n: &Net, site: usize, name: &str) -> tun_bridge::control::TunnelStatus {
    n.status(site)
        .tunnels
        .into_iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no tunnel {name}"))
}

/// One reload with a kept, a changed, a removed and an added connection;
/// packets of the kept tunnel are in flight across it.
#[test]
fn reload_keeps_changes_removes_and_adds() {
    let now = Instant::now();
    let gcm128 = "aes128gcm16-ecp256";
    let both = "aes128gcm16-ecp256,aes256gcm16-ecp256";
    let before = format!(
        "{}{}{}",
        conn("keep", "start", B_IP, gcm128, ""),
        conn("change", "start", C_IP, gcm128, ""),
        conn("gone", "start", D_IP, gcm128, "")
    );
    let sec = a_secrets(&[B_IP, C_IP, D_IP, E_IP]);
    let a = Site::new(&before, &sec, A_IP, Failback::Primary, 1, now);
    let sites = vec![
        a,
        peer(B_IP, gcm128, 2, now),
        peer(C_IP, both, 3, now),
        peer(D_IP, gcm128, 4, now),
        peer(E_IP, gcm128, 5, now),
    ];
    let mut n = Net::new(sites, now);
    n.advance(Duration::from_secs(1));
    for name in ["keep", "change", "gone"] {
        assert_eq!(
            status_of(&n, A, name).state,
            TunnelState::Established,
            "{name}"
        );
    }
    let keep = status_of(&n, A, "keep");
    let change = status_of(&n, A, "change");
    let gone = status_of(&n, A, "gone");
    n.run_traffic(
        Duration::from_secs(1),
        Duration::from_millis(100),
        B,
        TunnelId(0),
        TunnelId(0),
    );
    assert_eq!(n.data_lost, 0, "{:?}", n.last_loss);
    let sent_before = n.sites[B].sent.len();

    // Packets in flight both ways over the kept tunnel while A reloads.
    n.send_data(A, TunnelId(0), 1);
    n.send_data(B, TunnelId(0), 2);
    let after = format!(
        "{}{}{}",
        conn("keep", "start", B_IP, gcm128, ""),
        conn("change", "start", C_IP, "aes256gcm16-ecp256", ""),
        conn("new", "start", E_IP, gcm128, "")
    );
    let r = n.reload(A, &after, &sec);
    n.flush_esp();
    assert_eq!(r.report.kept, ["keep"]);
    assert_eq!(r.report.changed.len(), 1);
    assert_eq!(r.report.changed[0].name, "change");
    assert_eq!(r.report.changed[0].how, "child rekey");
    assert_eq!(r.report.changed[0].settings, ["esp"]);
    assert_eq!(r.report.added, ["new"]);
    assert_eq!(r.report.removed, ["gone"]);
    assert!(r
        .interfaces
        .contains(&(TunnelId(2), InterfaceChange::Close)));
    assert!(r.interfaces.contains(&(TunnelId(3), InterfaceChange::Open)));

    n.run_traffic(
        Duration::from_secs(3),
        Duration::from_millis(100),
        B,
        TunnelId(0),
        TunnelId(0),
    );
    assert_eq!(n.data_lost, 0, "{:?}", n.last_loss);
    // The kept tunnel: same SPIs on both sides; B heard nothing new but
    // data (its IKE side sent no message either).
    let keep_after = status_of(&n, A, "keep");
    assert_eq!(
        (keep_after.spi_in, keep_after.spi_out),
        (keep.spi_in, keep.spi_out)
    );
    assert_eq!(keep_after.child_rekeys, 0);
    assert_eq!(
        n.sites[B].sent.len(),
        sent_before,
        "B's IKE traffic changed"
    );
    // The changed one: a new Child SA with the new suite, make-before-break.
    let change_after = status_of(&n, A, "change");
    assert_eq!(change_after.state, TunnelState::Established);
    assert_ne!(change_after.spi_in, change.spi_in);
    assert_eq!(change_after.esp_algorithms.as_deref(), Some("aes256gcm16"));
    assert_eq!(change_after.child_rekeys, 1);
    // The removed one: D was told (DELETE), A holds nothing of it.
    assert_eq!(n.state(D, 0), TunnelState::Down);
    assert!(n.status(A).tunnels.iter().all(|t| t.name != "gone"));
    let sad = n.sites[A].dp.datapath().sad();
    assert!(sad.inbound(gone.spi_in.unwrap()).is_none());
    // The added one is up (auto=start).
    assert!(established(&n, A, 2), "{:?}", n.status(A).tunnels);
    assert_eq!(n.status(A).tunnels[2].name, "new");
    assert_eq!(n.state(E, 0), TunnelState::Established);
    // The group's routes stayed on the kept primary.
    assert_eq!(n.sites[A].route_owner("10.2.0.0/16"), Some(TunnelId(0)));
    assert!(
        n.sites.iter().all(|s| s.apply_errors.is_empty()),
        "{:?}",
        n.sites[A].apply_errors
    );
    // Data still flows over the rekeyed tunnel.
    n.run_traffic(
        Duration::from_secs(1),
        Duration::from_millis(100),
        C,
        TunnelId(1),
        TunnelId(0),
    );
    assert_eq!(n.data_lost, 0, "{:?}", n.last_loss);
}

/// The same files again: everything kept, not one IKE message.
#[test]
fn reload_of_the_same_files_touches_nothing() {
    let mut n = super::pair("", "");
    n.advance(Duration::from_secs(1));
    let spis = super::spis(&n, A);
    let sent = (n.sites[A].sent.len(), n.sites[B].sent.len());
    let conf = super::conf("t", "start", B_IP, "");
    let r = n.reload(A, &conf, &secrets(A_IP, B_IP, "shared-secret"));
    assert_eq!(r.report.kept, ["t"]);
    assert!(
        r.report.changed.is_empty() && r.report.added.is_empty() && r.report.removed.is_empty()
    );
    assert!(r.interfaces.is_empty());
    super::traffic_without_loss(&mut n, 2, 100);
    assert_eq!(super::spis(&n, A), spis);
    assert_eq!((n.sites[A].sent.len(), n.sites[B].sent.len()), sent);
}

/// A new PSK needs a new IKE SA: the tunnel restarts with it.
#[test]
fn reload_with_a_new_psk_restarts() {
    let mut n = super::pair("", "");
    n.advance(Duration::from_secs(1));
    let before = super::spis(&n, A);
    let rb = n.reload(
        B,
        &peer_conf("t", "add", B_IP, ""),
        &secrets(B_IP, A_IP, "new-secret"),
    );
    assert_eq!(rb.report.changed[0].how, "restart");
    assert_eq!(rb.report.changed[0].settings, ["psk"]);
    let ra = n.reload(
        A,
        &super::conf("t", "start", B_IP, ""),
        &secrets(A_IP, B_IP, "new-secret"),
    );
    assert_eq!(ra.report.changed[0].how, "restart");
    n.advance(Duration::from_secs(5));
    assert!(
        established(&n, A, 0) && established(&n, B, 0),
        "{:?}",
        n.status(A).tunnels
    );
    assert_ne!(super::spis(&n, A), before);
    super::traffic_without_loss(&mut n, 1, 100);
    assert!(n.sites.iter().all(|s| s.apply_errors.is_empty()));
}

/// In-place changes (DPD, keyingtries) keep the SAs; an added `auto=add`
/// connection waits for its peer.
#[test]
fn reload_in_place_and_added_listener() {
    let now = Instant::now();
    let sec = a_secrets(&[B_IP, C_IP]);
    let a = Site::new(
        &conn("keep", "start", B_IP, "aes128gcm16-ecp256", ""),
        &sec,
        A_IP,
        Failback::Primary,
        1,
        now,
    );
    let mut n = Net::new(
        vec![
            a,
            peer(B_IP, "aes128gcm16-ecp256", 2, now),
            peer(C_IP, "aes128gcm16-ecp256", 3, now),
        ],
        now,
    );
    n.advance(Duration::from_secs(1));
    let spis = super::spis(&n, A);
    let conf = format!(
        "{}{}",
        conn(
            "keep",
            "start",
            B_IP,
            "aes128gcm16-ecp256",
            "  dpddelay=10\n  dpdtimeout=20\n  keyingtries=3\n"
        ),
        conn("listen", "add", C_IP, "aes128gcm16-ecp256", "")
    );
    let inits = n.sites[A].sa_inits_sent();
    let r = n.reload(A, &conf, &sec);
    assert_eq!(r.report.changed[0].how, "in place");
    assert_eq!(
        r.report.changed[0].settings,
        ["dpddelay", "dpdtimeout", "keyingtries"]
    );
    assert_eq!(r.report.added, ["listen"]);
    n.advance(Duration::from_secs(30));
    assert_eq!(super::spis(&n, A), spis);
    assert_eq!(
        n.sites[A].sa_inits_sent(),
        inits,
        "auto=add must not initiate"
    );
    assert_eq!(n.state(A, 1), TunnelState::Down);
    super::traffic_without_loss(&mut n, 1, 100);
    let _ = C;
}

/// New IKE proposals: an IKE SA rekey (make-before-break); the Child SA
/// and its SPIs move over untouched.
#[test]
fn reload_with_new_ike_proposals_rekeys_the_ike_sa() {
    let ikes = "  ike=aes128gcm16-prfsha256-ecp256,aes256gcm16-prfsha384-ecp256,aes256gcm16-prfsha384-ecp384\n";
    let mut n = super::pair("", "");
    let b_conf =
        peer_conf("t", "add", B_IP, "").replace("  ike=aes128gcm16-prfsha256-ecp256\n", ikes);
    let rb = n.reload(B, &b_conf, &secrets(B_IP, A_IP, "shared-secret"));
    assert_eq!(rb.report.changed[0].how, "ike rekey", "{:?}", rb.report);
    n.advance(Duration::from_secs(1));
    assert!(established(&n, A, 0));
    let spis = super::spis(&n, A);
    let a_conf = super::conf("t", "start", B_IP, "").replace(
        "  ike=aes128gcm16-prfsha256-ecp256\n",
        "  ike=aes256gcm16-prfsha384-ecp256\n",
    );
    n.send_data(A, TunnelId(0), 1);
    n.send_data(B, TunnelId(0), 2);
    let ra = n.reload(A, &a_conf, &secrets(A_IP, B_IP, "shared-secret"));
    assert_eq!(ra.report.changed[0].how, "ike rekey");
    assert_eq!(ra.report.changed[0].settings, ["ike"]);
    super::traffic_without_loss(&mut n, 3, 100);
    let t = &n.status(A).tunnels[0];
    let alg = t.ike_algorithms.as_deref();
    assert_eq!(alg, Some("aes256gcm16-prfsha384-ecp256"));
    assert_eq!(t.ike_rekeys, 1);
    assert_eq!(super::spis(&n, A), spis, "the Child SA moved over");
    // Another group: no rekey can offer it with the current KE, so a
    // restart brings the new IKE SA.
    let a_conf = a_conf.replace("prfsha384-ecp256", "prfsha384-ecp384");
    let ra = n.reload(A, &a_conf, &secrets(A_IP, B_IP, "shared-secret"));
    assert_eq!(ra.report.changed[0].how, "restart");
    n.advance(Duration::from_secs(3));
    let t = &n.status(A).tunnels[0];
    let alg = t.ike_algorithms.as_deref();
    assert_eq!(alg, Some("aes256gcm16-prfsha384-ecp384"));
    super::traffic_without_loss(&mut n, 1, 100);
}

/// A new interface name: a restart on a new interface, and the routes
/// are pointed at it again.
#[test]
fn reload_with_a_new_interface_name_reopens_and_reroutes() {
    let mut n = super::pair("", "");
    n.advance(Duration::from_secs(1));
    let routes_before = n.sites[A].routes.len();
    let conf = super::conf("t", "start", B_IP, "  vti-interface=tb-renamed\n");
    let r = n.reload(A, &conf, &secrets(A_IP, B_IP, "shared-secret"));
    assert_eq!(r.report.changed[0].how, "restart");
    assert_eq!(r.interfaces, [(TunnelId(0), InterfaceChange::Reopen)]);
    assert_eq!(
        n.sites[A].routes.len(),
        routes_before + 1,
        "routes re-announced"
    );
    assert_eq!(n.sites[A].route_owner("10.2.0.0/16"), Some(TunnelId(0)));
    n.advance(Duration::from_secs(3));
    assert!(established(&n, A, 0) && established(&n, B, 0));
    super::traffic_without_loss(&mut n, 1, 100);
}
