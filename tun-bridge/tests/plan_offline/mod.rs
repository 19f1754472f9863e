//! Shared by the configuration tests: plans the connections `check`
//! accepts, with fixed addresses standing in for what `up` finds on the
//! running system (`%defaultroute`, DNS). No sockets, no DNS.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use tun_bridge::config::effective::SUPPORTED_REPLAY_WINDOW;
use tun_bridge::config::values::Endpoint;
use tun_bridge::config::Config;
use tun_bridge::runtime::plan::{self, PlanError};

/// Local address used for `left=%defaultroute` (documentation prefixes).
fn local_for(remote: IpAddr) -> IpAddr {
    match remote {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::new(198, 51, 100, 250)),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xfa)),
    }
}

/// Plans every connection `select_conns(cfg, wanted)` picks, as `up` would.
/// The one failure allowed is a missing PSK for a connection whose PSK is
/// keyed by its runtime local address (`left=%defaultroute` without
/// `leftid=`): the fixed address here is not the one `up` would find.
/// Returns how many connections were planned; panics on anything else.
pub fn plan_all(cfg: &Config, wanted: &[String]) -> usize {
    let selected = plan::select_conns(cfg, wanted)
        .unwrap_or_else(|e| panic!("check accepted a selection up refuses: {e}"));
    let mut planned = 0;
    for (c, mode) in selected {
        let remote = match &c.remote {
            Endpoint::Ip(ip) => *ip,
            Endpoint::Dns(_) => match c.local.ip() {
                Some(IpAddr::V6(_)) => IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
                _ => IpAddr::V4(Ipv4Addr::new(203, 0, 113, 250)),
            },
            other => plan::resolve_remote(other, c.local.ip())
                .unwrap_or_else(|e| panic!("conn {}: check accepted right={other}: {e}", c.name)),
        };
        let local = match c.local.ip() {
            Some(ip) => ip,
            None => {
                assert!(
                    !remote.is_unspecified(),
                    "conn {}: check accepted left={} with right=%any",
                    c.name,
                    c.local
                );
                local_for(remote)
            }
        };
        match plan::plan_conn(c, mode, local, remote, &cfg.secrets, true) {
            Ok(p) => {
                assert_eq!(p.peer.ike_proposals, c.ike.list);
                assert_eq!(p.peer.esp_proposals, c.esp.list);
                assert!(SUPPORTED_REPLAY_WINDOW.contains(&p.peer.replay_window));
                planned += 1;
            }
            Err(PlanError::NoPsk { .. })
                if c.psk.is_none() && c.local_id.is_none() && c.local.ip().is_none() => {}
            Err(e) => panic!("conn {}: check passed but plan failed: {e}", c.name),
        }
    }
    planned
}
