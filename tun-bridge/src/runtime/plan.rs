//! From validated configuration to a runtime plan: which connections run,
//! their local addresses (`%defaultroute` resolved), PSKs, the ike-lite
//! [`PeerConfig`] of each, TUN names and MTUs, routes, and failover groups.
//!
//! [`select_conns`] holds the last static checks (those that depend on the
//! `--conn` selection); `check` and `up` both run it, so a configuration
//! `check` accepts plans without error unless the running system disagrees
//! (DNS, routes, a PSK keyed by a `%defaultroute` address). Everything here
//! is pure apart from [`resolve_local`] (one UDP `connect()`, which sends
//! nothing) and [`resolve_remote`] (DNS), so it can be unit-tested.

use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::Duration;

use ike_lite::proposal::EspProposal;
use ike_lite::ts::TrafficSelector as IkeTs;
use ike_lite::{Identity as IkeId, PeerConfig, Psk as IkePsk};
use ipsec_core::crypto::{EncrId, IntegId};

use crate::config::interface::ROUTE_BASED_MTU;
use crate::config::values::{
    Auto, DpdAction, Encapsulation, Endpoint, Identity, IkeVersionPolicy, IpNet, KeyingTries,
};
use crate::config::{Config, EffectiveConn, Location, Secrets};
use crate::packet::mss::{Encapsulation as MtuEncap, EspOverhead, OuterFamily, TunnelMtu};

/// Path MTU assumed for the outer network when computing the TUN MTU.
pub const DEFAULT_PATH_MTU: u16 = 1500;
/// Largest TUN interface name (IFNAMSIZ - 1).
pub const MAX_IFNAME: usize = 15;

/// What the runtime does with a connection at startup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartMode {
    /// Initiate at once (`auto=start`).
    Initiate,
    /// Wait for the peer or for traffic (`auto=add`, `auto=route`).
    Listen,
}

/// Why [`select_conns`] refuses a selection. None of these depends on the
/// running system.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SelectError {
    /// No `--conn` was given and every connection is `auto=ignore`.
    NothingToStart,
    /// `--conn NAME` names no connection.
    NoSuchConn(String),
    /// A selected connection has no PSK, and its identities are known
    /// without the running system (loading only warns for `auto=ignore`).
    NoPsk {
        /// The connection's `conn` header.
        at: Location,
        /// Connection name.
        conn: String,
        /// The identity pair looked up.
        ids: String,
    },
    /// Two connections share an `ipsec-interface=` but ask for different
    /// MTUs.
    InterfaceMtu {
        /// The second connection's `conn` header.
        at: Location,
        /// The second connection.
        conn: String,
        /// The first connection on that interface.
        first: String,
        /// The interface name.
        ifname: String,
    },
    /// Two selected connections would open the same TUN interface.
    SharedInterface {
        /// The second connection's `conn` header.
        at: Location,
        /// The second connection.
        conn: String,
        /// The first connection with that interface.
        first: String,
        /// The interface name.
        ifname: String,
    },
}

impl fmt::Display for SelectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NothingToStart => f.write_str("no connection to bring up (all are auto=ignore)"),
            Self::NoSuchConn(n) => write!(f, "--conn {n}: no such connection"),
            Self::NoPsk { at, conn, ids } => {
                write!(
                    f,
                    "{at}: conn {conn}: no PSK in the secrets file matches {ids}"
                )
            }
            Self::SharedInterface {
                at,
                conn,
                first,
                ifname,
            } => write!(
                f,
                "{at}: conn {conn}: TUN interface {ifname} is already used by conn {first} (only conns with the same ipsec-interface= may share one)"
            ),
            Self::InterfaceMtu {
                at,
                conn,
                first,
                ifname,
            } => write!(
                f,
                "{at}: conn {conn}: mtu= differs from conn {first}, which shares interface {ifname}"
            ),
        }
    }
}

impl std::error::Error for SelectError {}

/// Selects the connections to run: `--conn` names if any were given (every
/// one must exist; an explicit `--conn` of an `auto=ignore` connection runs
/// it as `auto=add`), otherwise every connection whose `auto=` is not
/// `ignore`. Rejects selections that cannot run: a connection without a
/// PSK that no runtime address could find, two connections on one TUN.
pub fn select_conns<'a>(
    cfg: &'a Config,
    wanted: &[String],
) -> Result<Vec<(&'a EffectiveConn, StartMode)>, SelectError> {
    let mode = |c: &EffectiveConn| match c.auto {
        Auto::Start => StartMode::Initiate,
        _ => StartMode::Listen,
    };
    let mut v: Vec<(&EffectiveConn, StartMode)> = Vec::new();
    if wanted.is_empty() {
        v.extend(
            cfg.conns
                .iter()
                .filter(|c| c.auto != Auto::Ignore)
                .map(|c| (c, mode(c))),
        );
        if v.is_empty() {
            return Err(SelectError::NothingToStart);
        }
    }
    for name in wanted {
        let c = cfg
            .conn(name)
            .ok_or_else(|| SelectError::NoSuchConn(name.clone()))?;
        if !v.iter().any(|(x, _)| x.name == c.name) {
            v.push((c, mode(c)));
        }
    }
    for (i, (c, _)) in v.iter().enumerate() {
        if c.psk.is_none() {
            if let Some(lid) = psk_local_id(c, c.local.ip()) {
                let rid = psk_remote_id(c);
                if cfg.secrets.lookup(Some(&lid), &rid).is_none() {
                    return Err(SelectError::NoPsk {
                        at: c.source.clone(),
                        conn: c.name.clone(),
                        ids: format!("{lid} {rid}"),
                    });
                }
            }
        }
        let name = ifname(c);
        if let Some((first, _)) = v[..i].iter().find(|(x, _)| ifname(x) == name) {
            let shared = c.tunnel.ipsec_interface.is_some()
                && c.tunnel.ipsec_interface == first.tunnel.ipsec_interface;
            if !shared {
                return Err(SelectError::SharedInterface {
                    at: c.source.clone(),
                    conn: c.name.clone(),
                    first: first.name.clone(),
                    ifname: name,
                });
            }
            if c.mtu != first.mtu {
                return Err(SelectError::InterfaceMtu {
                    at: c.source.clone(),
                    conn: c.name.clone(),
                    first: first.name.clone(),
                    ifname: name,
                });
            }
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

/// Why [`plan_conn`] failed. With a configuration that passed
/// [`select_conns`], only [`PlanError::NoPsk`] can happen, and only for a
/// connection whose PSK is keyed by its runtime local address.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PlanError {
    /// No PSK in the secrets file matches the identities.
    NoPsk {
        /// Connection name.
        conn: String,
        /// The identity pair looked up.
        ids: String,
    },
    /// A subnet is not a valid traffic selector.
    Selector {
        /// The subnet.
        net: IpNet,
        /// ike-lite's reason.
        reason: String,
    },
    /// No inner packet fits the path MTU with this ESP overhead.
    NoTunnelMtu,
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoPsk { conn, ids } => {
                write!(f, "conn {conn}: no PSK in the secrets file for {ids}")
            }
            Self::Selector { net, reason } => write!(f, "traffic selector {net}: {reason}"),
            Self::NoTunnelMtu => write!(f, "no usable tunnel MTU below {DEFAULT_PATH_MTU}"),
        }
    }
}

impl std::error::Error for PlanError {}

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
    /// IKEv1 when the file asks for it (`keyexchange=ikev1`, `ikev2=no`),
    /// else IKEv2.
    pub ike_version: ike_lite::IkeVersion,
    /// TUN interface name (connections with the same `ipsec-interface=`
    /// share it).
    pub ifname: String,
    /// A route-based tunnel (see [`crate::config::interface`]): no routes
    /// beyond updown `-r` prefixes, and the interface's carrier follows the
    /// Child SA.
    pub route_based: bool,
    /// TUN MTU and matching MSS values.
    pub mtu: TunnelMtu,
    /// Inside address of this end (AWS `-ll`).
    pub inside: Option<(IpAddr, u8)>,
    /// Further inside addresses of this end (`interface-ip=A,B`).
    pub inside_extra: Vec<(IpAddr, u8)>,
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

/// The TUN interface of a connection: its `-ln`/`vti-interface=` name, else
/// [`default_ifname`].
pub fn ifname(conn: &EffectiveConn) -> String {
    conn.tunnel
        .name
        .clone()
        .unwrap_or_else(|| default_ifname(&conn.name))
}

/// The local identity a PSK is looked up with: `leftid=`, else the local
/// address (`None` while that is not known).
fn psk_local_id(conn: &EffectiveConn, local: Option<IpAddr>) -> Option<Identity> {
    conn.local_id.clone().or(local.map(Identity::Ip))
}

/// The remote identity a PSK is looked up with: `rightid=`, else `right=`.
fn psk_remote_id(conn: &EffectiveConn) -> Identity {
    conn.remote_id
        .clone()
        .or_else(|| Identity::from_endpoint(&conn.remote))
        .unwrap_or(Identity::Any)
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

fn selectors(nets: &[IpNet], fallback: IpAddr) -> Result<Vec<IkeTs>, PlanError> {
    if nets.is_empty() {
        return Ok(vec![IkeTs::host(fallback)]);
    }
    nets.iter()
        .map(|n| {
            IkeTs::from_prefix(n.addr, n.prefix).map_err(|e| PlanError::Selector {
                net: *n,
                reason: format!("{e:?}"),
            })
        })
        .collect()
}

fn is_default(n: &IpNet) -> bool {
    n.prefix == 0
}

/// The interface MTU of a connection and its MSS values: `mtu=`, else
/// what fits the default path MTU with this ESP suite, lowered to
/// [`ROUTE_BASED_MTU`] for a route-based tunnel.
pub fn tunnel_mtu(conn: &EffectiveConn, family: OuterFamily) -> Result<TunnelMtu, PlanError> {
    let fixed = |m: u16| TunnelMtu {
        mtu: m,
        mss_v4: m.saturating_sub(40),
        mss_v6: m.saturating_sub(60),
    };
    let mtu = match conn.mtu {
        // The configuration guarantees at least 576.
        Some(m) => fixed(m),
        None => {
            let computed = TunnelMtu::aws(
                DEFAULT_PATH_MTU,
                family,
                MtuEncap::Udp,
                overhead(&conn.esp.list),
            )
            .ok_or(PlanError::NoTunnelMtu)?;
            if conn.tunnel.route_based && computed.mtu > ROUTE_BASED_MTU {
                fixed(ROUTE_BASED_MTU)
            } else {
                computed
            }
        }
    };

    Ok(mtu)
}

/// Plans one connection. `local` is the resolved local address, `raw_esp`
/// whether raw ESP can be sent (otherwise UDP encapsulation is forced).
pub fn plan_conn(
    conn: &EffectiveConn,
    start: StartMode,
    local: IpAddr,
    remote: IpAddr,
    secrets: &Secrets,
    raw_esp: bool,
) -> Result<ConnPlan, PlanError> {
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
            // Keyed by the local address, known only now.
            let lid = conn.local_id.clone().unwrap_or(Identity::Ip(local));
            let rid = psk_remote_id(conn);
            let m = secrets
                .lookup(Some(&lid), &rid)
                .ok_or_else(|| PlanError::NoPsk {
                    conn: conn.name.clone(),
                    ids: format!("{lid} {rid}"),
                })?;
            if let Some(other) = m.ambiguous_with {
                notes.push(format!(
                    "secrets at {} and {} match {lid} {rid} equally well; using the first",
                    m.entry.loc, other.loc
                ));
            }
            m.entry.psk.expose().to_vec()
        }
    };
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
    peer.replay_window = conn.replay_window;
    peer.force_encap = conn.encapsulation == Encapsulation::Yes || !raw_esp;
    if !raw_esp && conn.encapsulation != Encapsulation::Yes {
        notes.push("raw ESP socket unavailable: forcing UDP encapsulation".into());
    }
    peer.ike_proposals = conn.ike.list.clone();
    peer.esp_proposals = conn.esp.list.clone();

    let family = if local.is_ipv4() {
        OuterFamily::V4
    } else {
        OuterFamily::V6
    };
    let mtu = tunnel_mtu(conn, family)?;

    let mut start = start;
    let routes = if conn.tunnel.route_based {
        notes.push(format!(
            "route-based tunnel on {}: no routes installed{}; the routing daemon (BGP) owns the table, and the interface's carrier follows the Child SA",
            ifname(conn),
            if conn.tunnel.routes.is_empty() {
                String::new()
            } else {
                " beyond the updown -r prefixes".into()
            }
        ));
        if start == StartMode::Listen && conn.auto == Auto::Route {
            // Traffic cannot trigger a negotiation through an interface
            // without carrier.
            notes.push(
                "auto=route on a route-based tunnel: initiating at start (the interface has no carrier until the tunnel is up)"
                    .into(),
            );
            start = StartMode::Initiate;
        }
        conn.tunnel.routes.clone()
    } else if conn.remote_subnets.iter().any(is_default) {
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
        ike_version: match conn.ike_version {
            IkeVersionPolicy::Ikev1Requested => ike_lite::IkeVersion::V1,
            _ => ike_lite::IkeVersion::V2,
        },
        ifname: ifname(conn),
        route_based: conn.tunnel.route_based,
        mtu,
        inside: conn.tunnel.local_inside.map(|a| (a.addr, a.prefix)),
        inside_extra: conn
            .tunnel
            .extra_inside
            .iter()
            .map(|a| (a.addr, a.prefix))
            .collect(),
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
///
/// A route-based tunnel without static routes is a group of its own: the
/// routing daemon, not failover, decides where traffic goes (ECMP over
/// both AWS tunnels).
pub fn failover_groups(plans: &[ConnPlan]) -> Vec<Vec<usize>> {
    let mut groups: Vec<(Vec<IpNet>, Vec<usize>)> = Vec::new();
    for (i, p) in plans.iter().enumerate() {
        if p.route_based && p.routes.is_empty() {
            groups.push((Vec::new(), vec![i]));
            continue;
        }
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
    use crate::config::parse_str;
    use std::path::Path;

    fn load(conf: &str, secrets: &str) -> Config {
        parse_str(
            conf,
            Path::new("ipsec.conf"),
            secrets,
            Path::new("ipsec.secrets"),
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
        assert!(p.route_based);
        assert!(p
            .notes
            .iter()
            .any(|n| n.contains("beyond the updown -r prefixes")));
        assert_eq!(p.inside, Some(("169.254.44.2".parse().unwrap(), 30)));
        assert_eq!(p.peer.child_lifetime, Duration::from_secs(3600));
        assert_eq!(p.peer.dpd_delay, Some(Duration::from_secs(10)));
        // pfs default: the ESP proposal keeps its DH group
        assert!(!p.peer.esp_proposals[0].dh.is_empty());
        assert!(p.mtu.mtu <= crate::packet::mss::AWS_MAX_MTU && p.mtu.mtu > 1300);
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
    fn typed_proposals_reach_the_peer_config() {
        let cfg = load(
            "conn a\n  auto=add\n  left=192.0.2.1\n  right=192.0.2.2\n  authby=secret\n  ike=aes256gcm16-prfsha384-ecp384\n  phase2alg=aes256-sha2_512\n",
            ": PSK \"k\"\n",
        );
        let (c, m) = select_conns(&cfg, &[]).unwrap()[0];
        let p = plan_conn(
            c,
            m,
            "192.0.2.1".parse().unwrap(),
            "192.0.2.2".parse().unwrap(),
            &cfg.secrets,
            true,
        )
        .unwrap();
        assert_eq!(p.peer.ike_proposals, c.ike.list);
        assert_eq!(p.peer.esp_proposals, c.esp.list);
        // pfs=yes (default) and no group in phase2alg=: the IKE group.
        assert_eq!(p.peer.esp_proposals[0].dh, [ike_lite::crypto::DhGroup(20)]);
        let sha512 = TunnelMtu::aws(
            DEFAULT_PATH_MTU,
            OuterFamily::V4,
            MtuEncap::Udp,
            EspOverhead::AES_CBC_SHA512_256,
        )
        .unwrap();
        assert_eq!(p.mtu, sha512);
    }

    #[test]
    fn selection_rejects_what_cannot_run() {
        // auto=ignore without a PSK only warns at load time; selecting it
        // is an error at its conn header.
        let cfg = load(
            "conn a\n  auto=ignore\n  left=192.0.2.1\n  right=192.0.2.2\n  authby=secret\nconn b\n  auto=add\n  left=192.0.2.1\n  right=192.0.2.3\n  authby=secret\n",
            "192.0.2.1 192.0.2.3 : PSK \"k\"\n",
        );
        assert_eq!(select_conns(&cfg, &[]).unwrap().len(), 1);
        let e = select_conns(&cfg, &["a".into()]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "ipsec.conf:1: conn a: no PSK in the secrets file matches 192.0.2.1 192.0.2.2"
        );
        // %defaultroute without leftid: decided at runtime, not here.
        let cfg = load(
            "conn a\n  auto=add\n  left=%defaultroute\n  right=192.0.2.2\n  authby=secret\n",
            "192.0.2.1 192.0.2.2 : PSK \"k\"\n",
        );
        let (c, m) = select_conns(&cfg, &[]).unwrap()[0];
        let r: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(plan_conn(c, m, "192.0.2.1".parse().unwrap(), r, &cfg.secrets, true).is_ok());
        assert_eq!(
            plan_conn(c, m, "192.0.2.9".parse().unwrap(), r, &cfg.secrets, true).unwrap_err(),
            PlanError::NoPsk {
                conn: "a".into(),
                ids: "192.0.2.9 192.0.2.2".into()
            }
        );
        // Two connections on one TUN interface.
        let cfg = load(
            "conn averyveryverylongname1\n  auto=add\n  left=192.0.2.1\n  right=192.0.2.2\n  authby=secret\nconn averyveryverylongname2\n  auto=add\n  left=192.0.2.1\n  right=192.0.2.3\n  authby=secret\n",
            ": PSK \"k\"\n",
        );
        assert_eq!(
            select_conns(&cfg, &[]).unwrap_err(),
            SelectError::SharedInterface {
                at: Location::new("ipsec.conf", 6),
                conn: "averyveryverylongname2".into(),
                first: "averyveryverylongname1".into(),
                ifname: "tb-averyveryver".into(),
            }
        );
        assert_eq!(
            select_conns(&cfg, &["averyveryverylongname2".into()])
                .unwrap()
                .len(),
            1
        );
    }

    fn plan_all(cfg: &Config, local: &str) -> Vec<ConnPlan> {
        let local: IpAddr = local.parse().unwrap();
        select_conns(cfg, &[])
            .unwrap()
            .iter()
            .map(|(c, m)| {
                let r = resolve_remote(&c.remote, Some(local)).unwrap();
                plan_conn(c, *m, local, r, &cfg.secrets, true).unwrap()
            })
            .collect()
    }

    const LIBRESWAN_BGP: &str = "conn %default
  authby=secret
  left=192.0.2.1
  leftsubnet=0.0.0.0/0
  rightsubnet=0.0.0.0/0
  auto=start
conn aws1
  right=198.51.100.1
  ipsec-interface=yes
  interface-ip=169.254.10.2/30
conn aws2
  right=198.51.100.2
  ipsec-interface=2
  interface-ip=169.254.11.2/30
  mtu=1400
conn shared
  right=198.51.100.3
  auto=route
  ipsec-interface=2
  interface-ip=169.254.12.2/30
  mtu=1400
";

    #[test]
    fn libreswan_ipsec_interface_is_route_based() {
        let cfg = load(LIBRESWAN_BGP, ": PSK \"k\"\n");
        let p = plan_all(&cfg, "192.0.2.1");
        assert_eq!(
            p.iter().map(|p| p.ifname.as_str()).collect::<Vec<_>>(),
            ["ipsec1", "ipsec2", "ipsec2"]
        );
        assert!(p.iter().all(|p| p.route_based && p.routes.is_empty()));
        assert_eq!(p[0].mtu.mtu, ROUTE_BASED_MTU);
        assert_eq!(p[0].mtu.mss_v4, ROUTE_BASED_MTU - 40);
        assert_eq!(p[1].mtu.mtu, 1400);
        assert_eq!(p[0].inside, Some(("169.254.10.2".parse().unwrap(), 30)));
        // auto=route cannot wait for traffic on an interface without carrier.
        assert_eq!(p[2].start, StartMode::Initiate);
        // Route-based tunnels are never a failover group.
        assert_eq!(failover_groups(&p), vec![vec![0], vec![1], vec![2]]);
        // A shared ipsec-interface needs one MTU.
        let cfg = load(
            &LIBRESWAN_BGP
                .replace("  mtu=1400\n  auto=route", "  auto=route")
                .replace(
                    "interface-ip=169.254.12.2/30\n  mtu=1400",
                    "interface-ip=169.254.12.2/30\n  mtu=1300",
                ),
            ": PSK \"k\"\n",
        );
        assert!(matches!(
            select_conns(&cfg, &[]).unwrap_err(),
            SelectError::InterfaceMtu { ref ifname, .. } if ifname == "ipsec2"
        ));
    }

    #[test]
    fn narrow_selectors_on_ipsec_interface_are_policy_based() {
        let cfg = load(
            "conn a\n  auto=add\n  authby=secret\n  left=192.0.2.1\n  right=192.0.2.2\n  leftsubnet=10.1.0.0/16\n  rightsubnet=10.2.0.0/16\n  ipsec-interface=4\n",
            ": PSK \"k\"\n",
        );
        let p = &plan_all(&cfg, "192.0.2.1")[0];
        assert_eq!(p.ifname, "ipsec4");
        assert!(!p.route_based);
        assert_eq!(p.routes, vec![IpNet::parse("10.2.0.0/16").unwrap()]);
    }

    #[test]
    fn strongswan_aws_vti_shapes_are_route_based() {
        // aws-updown.sh without -r: BGP.
        let cfg = load(
            &AWS.replace(" -r 10.0.0.0/16\"", "\"").replace(
                "  rightsubnet=0.0.0.0/0\n",
                "  rightsubnet=0.0.0.0/0\n  mark=100\n",
            ),
            "198.51.100.7 203.0.113.10 : PSK \"a\"\n198.51.100.7 203.0.113.20 : PSK \"b\"\n",
        );
        let p = plan_all(&cfg, "198.51.100.7");
        assert_eq!(p[0].ifname, "Tunnel1");
        assert!(p[0].route_based && p[0].routes.is_empty());
        assert_eq!(p[0].mtu.mtu, ROUTE_BASED_MTU);
        assert_eq!(failover_groups(&p), vec![vec![0], vec![1]]);
        // ipsec-vti.sh ID REMOTE LOCAL with mark=: interface vtiID.
        let cfg = load(
            "conn t1\n  auto=start\n  authby=secret\n  left=192.0.2.1\n  right=192.0.2.2\n  leftsubnet=0.0.0.0/0\n  rightsubnet=0.0.0.0/0\n  mark=100\n  leftupdown=\"/etc/strongswan/ipsec-vti.sh 3 169.254.20.1/30 169.254.20.2/30\"\n",
            ": PSK \"k\"\n",
        );
        let p = &plan_all(&cfg, "192.0.2.1")[0];
        assert_eq!(p.ifname, "vti3");
        assert!(p.route_based);
        assert_eq!(p.inside, Some(("169.254.20.2".parse().unwrap(), 30)));
        assert_eq!(p.remote_inside, Some("169.254.20.1".parse().unwrap()));
    }

    #[test]
    fn interface_ip_list_adds_inside_addresses() {
        let cfg = load(
            "conn a\n  auto=start\n  authby=secret\n  left=192.0.2.1\n  right=192.0.2.2\n  leftsubnet=0.0.0.0/0,::/0\n  rightsubnet=0.0.0.0/0,::/0\n  ipsec-interface=3\n  interface-ip=169.254.30.2/30,fd00:a9fe:30::2/126\n",
            ": PSK \"k\"\n",
        );
        let p = &plan_all(&cfg, "192.0.2.1")[0];
        assert!(p.route_based);
        assert_eq!(p.inside, Some(("169.254.30.2".parse().unwrap(), 30)));
        assert_eq!(
            p.inside_extra,
            vec![("fd00:a9fe:30::2".parse().unwrap(), 126)]
        );
        assert_eq!(p.peer.remote_ts.len(), 2);
    }
}
