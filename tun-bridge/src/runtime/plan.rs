//! From validated configuration to a runtime plan: which connections run,
//! their local addresses (`%defaultroute` resolved), PSKs, the ike-lite
//! [`PeerConfig`] of each, TUN names and MTUs, routes, and failover groups.
//!
//! Everything here is pure apart from [`resolve_local`] (one UDP
//! `connect()`, which sends nothing) so it can be unit-tested.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::Duration;

use ike_lite::proposal::{parse_esp_proposals, parse_ike_proposals, EspProposal, IkeProposal};
use ike_lite::ts::TrafficSelector as IkeTs;
use ike_lite::{Identity as IkeId, PeerConfig, Psk as IkePsk};
use ipsec_core::crypto::{EncrId, IntegId};

use crate::config::values::{
    Auto, DpdAction, Encapsulation, Endpoint, Identity, IpNet, KeyingTries,
};
use crate::config::{Config, EffectiveConn, ProposalKind};
use crate::sys::mss::{Encapsulation as MtuEncap, EspOverhead, OuterFamily, TunnelMtu};

/// Path MTU assumed for the outer network when computing the TUN MTU.
pub const DEFAULT_PATH_MTU: u16 = 1500;
/// Largest TUN interface name (IFNAMSIZ - 1).
pub const MAX_IFNAME: usize = 15;

/// Validates `ike=` / `esp=` strings with ike-lite's proposal parser
/// (plugged into the config loader so errors carry `file:line`).
pub fn proposal_check(kind: ProposalKind, s: &str) -> Result<(), String> {
    match kind {
        ProposalKind::Ike => parse_ike_proposals(s).map(|_| ()),
        ProposalKind::Esp => parse_esp_proposals(s).map(|_| ()),
    }
    .map_err(|e| e.to_string())
}

/// What the runtime does with a connection at startup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartMode {
    /// Initiate at once (`auto=start`).
    Initiate,
    /// Wait for the peer or for traffic (`auto=add`, `auto=route`).
    Listen,
}

/// Selects the connections to run: `--conn` names if any were given (every
/// one must exist and not be `auto=ignore`... an explicit `--conn` of an
/// ignored connection runs it as `auto=add`), otherwise every connection
/// whose `auto=` is not `ignore`.
pub fn select_conns<'a>(
    cfg: &'a Config,
    wanted: &[String],
) -> Result<Vec<(&'a EffectiveConn, StartMode)>, String> {
    let mode = |c: &EffectiveConn| match c.auto {
        Auto::Start => StartMode::Initiate,
        _ => StartMode::Listen,
    };
    if wanted.is_empty() {
        let v: Vec<_> = cfg
            .conns
            .iter()
            .filter(|c| c.auto != Auto::Ignore)
            .map(|c| (c, mode(c)))
            .collect();
        if v.is_empty() {
            return Err("no connection to bring up (all are auto=ignore)".into());
        }
        return Ok(v);
    }
    let mut v = Vec::new();
    for name in wanted {
        let c = cfg
            .conn(name)
            .ok_or_else(|| format!("--conn {name}: no such connection"))?;
        if !v
            .iter()
            .any(|(x, _): &(&EffectiveConn, StartMode)| x.name == c.name)
        {
            v.push((c, mode(c)));
        }
    }
    Ok(v)
}

/// The address this host uses to reach `remote` (a connected UDP socket's
/// local address; `connect()` on UDP sends nothing).
pub fn resolve_local(remote: IpAddr) -> std::io::Result<IpAddr> {
    let bind: SocketAddr = if remote.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let s = UdpSocket::bind(bind)?;
    s.connect(SocketAddr::new(remote, 500))?;
    Ok(s.local_addr()?.ip())
}

/// Resolves `right=` (IP literal, DNS name, or `%any` = unspecified).
pub fn resolve_remote(ep: &Endpoint, family_hint: Option<IpAddr>) -> Result<IpAddr, String> {
    match ep {
        Endpoint::Ip(ip) => Ok(*ip),
        Endpoint::Any => Ok(match family_hint {
            Some(IpAddr::V6(_)) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
            _ => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        }),
        Endpoint::Dns(name) => (name.as_str(), 500)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {name}: {e}"))?
            .next()
            .map(|a| a.ip())
            .ok_or_else(|| format!("{name} has no address")),
        Endpoint::DefaultRoute => Err("right=%defaultroute is not supported".into()),
    }
}

/// One connection, fully planned.
#[derive(Debug)]
pub struct ConnPlan {
    /// Connection name.
    pub name: String,
    /// Startup action.
    pub start: StartMode,
    /// Local outer address.
    pub local: IpAddr,
    /// Remote outer address (unspecified for `right=%any`).
    pub remote: IpAddr,
    /// ike-lite connection definition.
    pub peer: PeerConfig,
    /// TUN interface name.
    pub ifname: String,
    /// TUN MTU and matching MSS values.
    pub mtu: TunnelMtu,
    /// Inside address of this end (AWS `-ll`).
    pub inside: Option<(IpAddr, u8)>,
    /// Inside address of the peer (AWS `-lr`): source of ICMP too-big.
    pub remote_inside: Option<IpAddr>,
    /// Prefixes routed into the tunnel.
    pub routes: Vec<IpNet>,
    /// Remote traffic selectors as configured (failover grouping key).
    pub remote_subnets: Vec<IpNet>,
    /// Local traffic selectors as configured (empty = local address).
    pub local_subnets: Vec<IpNet>,
    /// What to do when DPD declares the peer dead.
    pub dpd_action: DpdAction,
    /// Connection attempts before giving up.
    pub keying_tries: KeyingTries,
    /// Human-readable notes for the startup log (route decisions, clamps).
    pub notes: Vec<String>,
}

/// Default TUN name for a connection: `tb-<conn>` truncated to 15 bytes
/// (on a character boundary), characters outside `[A-Za-z0-9_.-]` as `-`.
pub fn default_ifname(conn: &str) -> String {
    let mut s = String::from("tb-");
    for ch in conn.chars() {
        let c = if ch.is_ascii_alphanumeric() || matches!(ch, '_' | '.' | '-') {
            ch
        } else {
            '-'
        };
        if s.len() + c.len_utf8() > MAX_IFNAME {
            break;
        }
        s.push(c);
    }
    s
}

fn ike_identity(id: &Identity) -> Option<IkeId> {
    Some(match id {
        Identity::Ip(ip) => IkeId::from_ip(*ip),
        Identity::Fqdn(n) => IkeId::Fqdn(n.clone()),
        Identity::UserFqdn(n) => IkeId::Email(n.clone()),
        Identity::KeyId(k) => IkeId::KeyId(k.clone()),
        _ => return None,
    })
}

fn overhead(esp: &[EspProposal]) -> EspOverhead {
    let Some(p) = esp.first() else {
        return EspOverhead::AES_GCM_16;
    };
    match (p.encr.first().map(|e| e.id), p.integ.first()) {
        (Some(EncrId::AES_GCM_16), _) => EspOverhead::AES_GCM_16,
        (_, Some(&IntegId::HMAC_SHA1_96)) => EspOverhead::AES_CBC_SHA1_96,
        (_, Some(&IntegId::HMAC_SHA2_384_192)) => EspOverhead::AES_CBC_SHA384_192,
        (_, Some(&IntegId::HMAC_SHA2_512_256)) => EspOverhead::AES_CBC_SHA512_256,
        _ => EspOverhead::AES_CBC_SHA256_128,
    }
}

fn selectors(nets: &[IpNet], fallback: IpAddr) -> Result<Vec<IkeTs>, String> {
    if nets.is_empty() {
        return Ok(vec![IkeTs::host(fallback)]);
    }
    nets.iter()
        .map(|n| IkeTs::from_prefix(n.addr, n.prefix).map_err(|e| format!("{n}: {e:?}")))
        .collect()
}

fn is_default(n: &IpNet) -> bool {
    n.prefix == 0
}

/// Plans one connection. `local` is the resolved local address, `raw_esp`
/// whether raw ESP can be sent (otherwise UDP encapsulation is forced).
pub fn plan_conn(
    conn: &EffectiveConn,
    start: StartMode,
    local: IpAddr,
    remote: IpAddr,
    secrets: &crate::config::Secrets,
    raw_esp: bool,
) -> Result<ConnPlan, String> {
    let mut notes = Vec::new();
    let local_id = match conn.local_id.as_ref().and_then(ike_identity) {
        Some(id) => id,
        None => IkeId::from_ip(local),
    };
    let remote_id = match &conn.remote_id {
        Some(id) => ike_identity(id),
        None => match conn.remote {
            Endpoint::Ip(ip) => Some(IkeId::from_ip(ip)),
            _ => None,
        },
    };
    let psk = match &conn.psk {
        Some(p) => p.expose().to_vec(),
        None => {
            let lid = conn.local_id.clone().unwrap_or(Identity::Ip(local));
            let rid = conn
                .remote_id
                .clone()
                .or_else(|| Identity::from_endpoint(&conn.remote))
                .unwrap_or(Identity::Any);
            let m = secrets.lookup(Some(&lid), &rid).ok_or_else(|| {
                format!(
                    "conn {}: no PSK in the secrets file for {lid} {rid}",
                    conn.name
                )
            })?;
            if m.ambiguous_with.is_some() {
                return Err(format!(
                    "conn {}: several PSKs match {lid} {rid} ({} and {})",
                    conn.name,
                    m.entry.loc,
                    m.ambiguous_with
                        .map(|e| e.loc.to_string())
                        .unwrap_or_default()
                ));
            }
            m.entry.psk.expose().to_vec()
        }
    };
    let ike: Vec<IkeProposal> = match &conn.ike {
        Some(s) => parse_ike_proposals(s).map_err(|e| format!("ike={s}: {e}"))?,
        None => IkeProposal::defaults(),
    };
    let mut esp: Vec<EspProposal> = match &conn.esp {
        Some(s) => parse_esp_proposals(s).map_err(|e| format!("esp={s}: {e}"))?,
        None => EspProposal::defaults(),
    };
    if conn.pfs {
        if esp.iter().all(|p| p.dh.is_empty()) {
            let dh = ike.first().map(|p| p.dh.clone()).unwrap_or_default();
            for p in &mut esp {
                p.dh = dh.clone();
            }
        }
    } else {
        for p in &mut esp {
            p.dh.clear();
        }
    }
    let mut peer = PeerConfig::new(
        SocketAddr::new(local, 500),
        SocketAddr::new(remote, 500),
        local_id,
        IkePsk::new(psk),
    );
    peer.remote_id = remote_id;
    peer.local_ts = selectors(&conn.local_subnets, local)?;
    peer.remote_ts = selectors(&conn.remote_subnets, remote)?;
    peer.ike_lifetime = conn.ike_lifetime;
    peer.child_lifetime = conn.sa_lifetime;
    peer.rekey_margin = if conn.rekey {
        conn.rekey_margin
    } else {
        Duration::ZERO
    };
    peer.rekey_fuzz = f64::from(conn.rekey_fuzz_percent.min(100)) / 100.0;
    if let Some(d) = conn.dpd {
        peer.dpd_delay = Some(d.delay);
        peer.dpd_timeout = d.timeout;
    }
    let window = conn.replay_window.clamp(32, 4096);
    if window != conn.replay_window {
        notes.push(format!(
            "replay-window={} outside 32..=4096, using {window}",
            conn.replay_window
        ));
    }
    peer.replay_window = window;
    peer.force_encap = conn.encapsulation == Encapsulation::Yes || !raw_esp;
    if !raw_esp && conn.encapsulation != Encapsulation::Yes {
        notes.push("raw ESP socket unavailable: forcing UDP encapsulation".into());
    }
    peer.ike_proposals = ike;
    let ovh = overhead(&esp);
    peer.esp_proposals = esp;

    let family = if local.is_ipv4() {
        OuterFamily::V4
    } else {
        OuterFamily::V6
    };
    let mtu = match conn.mtu {
        Some(m) if m >= 576 => Some(TunnelMtu {
            mtu: m,
            mss_v4: m - 40,
            mss_v6: m - 60,
        }),
        Some(m) => return Err(format!("conn {}: mtu={m} is below 576", conn.name)),
        None => TunnelMtu::aws(DEFAULT_PATH_MTU, family, MtuEncap::Udp, ovh),
    }
    .ok_or_else(|| format!("conn {}: no usable tunnel MTU", conn.name))?;

    let routes = if conn.remote_subnets.iter().any(is_default) {
        let r: Vec<IpNet> = conn.tunnel.routes.clone();
        if r.is_empty() {
            notes.push(
                "remote selector is 0.0.0.0/0 and no updown -r prefixes: no routes installed \
                 (never a default route)"
                    .into(),
            );
        } else {
            notes.push(format!(
                "remote selector is 0.0.0.0/0: routing only the updown -r prefixes {}",
                r.iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            ));
        }
        r
    } else if conn.remote_subnets.is_empty() {
        Vec::new()
    } else {
        conn.remote_subnets.clone()
    };

    Ok(ConnPlan {
        name: conn.name.clone(),
        start,
        local,
        remote,
        peer,
        ifname: conn
            .tunnel
            .name
            .clone()
            .unwrap_or_else(|| default_ifname(&conn.name)),
        mtu,
        inside: conn.tunnel.local_inside.map(|a| (a.addr, a.prefix)),
        remote_inside: conn.tunnel.remote_inside.map(|a| a.addr),
        routes,
        remote_subnets: conn.remote_subnets.clone(),
        local_subnets: conn.local_subnets.clone(),
        dpd_action: conn.dpd.map(|d| d.action).unwrap_or(DpdAction::Hold),
        keying_tries: conn.keying_tries,
        notes,
    })
}

/// Groups connections with the same (non-empty) remote subnets into
/// failover groups, in configuration order (the first member is the
/// primary). Returns member indices per group.
pub fn failover_groups(plans: &[ConnPlan]) -> Vec<Vec<usize>> {
    let mut groups: Vec<(Vec<IpNet>, Vec<usize>)> = Vec::new();
    for (i, p) in plans.iter().enumerate() {
        let mut key = p.remote_subnets.clone();
        key.sort();
        match groups
            .iter_mut()
            .find(|(k, _)| !k.is_empty() && *k == key && !key.is_empty())
        {
            Some((_, m)) => m.push(i),
            None => groups.push((key, vec![i])),
        }
    }
    groups.into_iter().map(|(_, m)| m).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_str, ResolveOptions};
    use std::path::Path;

    fn load(conf: &str, secrets: &str) -> Config {
        let check: &dyn Fn(ProposalKind, &str) -> Result<(), String> = &proposal_check;
        let opts = ResolveOptions {
            proposal_check: Some(check),
        };
        parse_str(
            conf,
            Path::new("ipsec.conf"),
            secrets,
            Path::new("ipsec.secrets"),
            &opts,
        )
        .map_err(|e| e.to_string())
        .unwrap()
        .config
    }

    const AWS: &str = "conn Tunnel1
  authby=secret
  auto=start
  left=%defaultroute
  leftid=198.51.100.7
  right=203.0.113.10
  type=tunnel
  ikelifetime=8h
  keylife=1h
  rekeymargin=3m
  keyingtries=%forever
  keyexchange=ike
  leftsubnet=0.0.0.0/0
  rightsubnet=0.0.0.0/0
  dpddelay=10
  dpdtimeout=30
  dpdaction=restart_by_peer
  ike=aes128-sha1-modp2048
  esp=aes128-sha1-modp2048
  leftupdown=\"/etc/ipsec.d/aws-updown.sh -ln Tunnel1 -ll 169.254.44.2/30 -lr 169.254.44.1/30 -m 100 -r 10.0.0.0/16\"

conn Tunnel2
  also=Tunnel1
  right=203.0.113.20
  leftupdown=\"/etc/ipsec.d/aws-updown.sh -ln Tunnel2 -ll 169.254.45.2/30 -lr 169.254.45.1/30 -m 200 -r 10.0.0.0/16\"
";

    #[test]
    fn aws_pair_plans_and_groups() {
        let cfg = load(
            AWS,
            "198.51.100.7 203.0.113.10 : PSK \"one-secret\"\n198.51.100.7 203.0.113.20 : PSK \"two-secret\"\n",
        );
        let sel = select_conns(&cfg, &[]).unwrap();
        assert_eq!(sel.len(), 2);
        let local: IpAddr = "198.51.100.7".parse().unwrap();
        let plans: Vec<ConnPlan> = sel
            .iter()
            .map(|(c, m)| {
                let r = resolve_remote(&c.remote, Some(local)).unwrap();
                plan_conn(c, *m, local, r, &cfg.secrets, true).unwrap()
            })
            .collect();
        let p = &plans[0];
        assert_eq!(p.ifname, "Tunnel1");
        assert_eq!(p.start, StartMode::Initiate);
        assert_eq!(p.peer.psk.as_bytes(), b"one-secret");
        assert_eq!(plans[1].peer.psk.as_bytes(), b"two-secret");
        assert_eq!(p.routes, vec![IpNet::parse("10.0.0.0/16").unwrap()]);
        assert!(p.notes.iter().any(|n| n.contains("only the updown -r")));
        assert_eq!(p.inside, Some(("169.254.44.2".parse().unwrap(), 30)));
        assert_eq!(p.peer.child_lifetime, Duration::from_secs(3600));
        assert_eq!(p.peer.dpd_delay, Some(Duration::from_secs(10)));
        // pfs default: the ESP proposal keeps its DH group
        assert!(!p.peer.esp_proposals[0].dh.is_empty());
        assert!(p.mtu.mtu <= crate::sys::mss::AWS_MAX_MTU && p.mtu.mtu > 1300);
        assert_eq!(failover_groups(&plans), vec![vec![0, 1]]);
    }

    #[test]
    fn no_default_route_without_updown_prefixes() {
        let cfg = load(
            "conn a\n  auto=add\n  left=192.0.2.1\n  right=192.0.2.2\n  leftsubnet=10.1.0.0/24\n  rightsubnet=0.0.0.0/0\n  authby=secret\n",
            "192.0.2.1 192.0.2.2 : PSK \"k\"\n",
        );
        let (c, m) = select_conns(&cfg, &[]).unwrap()[0];
        assert_eq!(m, StartMode::Listen);
        let p = plan_conn(
            c,
            m,
            "192.0.2.1".parse().unwrap(),
            "192.0.2.2".parse().unwrap(),
            &cfg.secrets,
            false,
        )
        .unwrap();
        assert!(p.routes.is_empty());
        assert!(p.peer.force_encap);
        assert_eq!(p.ifname, "tb-a");
    }

    #[test]
    fn ifname_truncation_and_selection_errors() {
        assert_eq!(default_ifname("averyveryverylongname"), "tb-averyveryver");
        assert_eq!(default_ifname("a b/c"), "tb-a-b-c");
        let cfg = load(
            "conn a\n  auto=ignore\n  left=192.0.2.1\n  right=192.0.2.2\n  authby=secret\n",
            ": PSK \"k\"\n",
        );
        assert!(select_conns(&cfg, &[]).is_err());
        assert!(select_conns(&cfg, &["nope".into()]).is_err());
        assert_eq!(select_conns(&cfg, &["a".into()]).unwrap().len(), 1);
    }

    #[test]
    fn proposal_hook_reports_errors() {
        assert!(proposal_check(ProposalKind::Ike, "aes128-sha1-modp2048").is_ok());
        assert!(proposal_check(ProposalKind::Esp, "aes128gcm16").is_ok());
        assert!(proposal_check(ProposalKind::Ike, "rot13-md4").is_err());
    }
}
