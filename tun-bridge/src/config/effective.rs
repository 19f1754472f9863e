//! From raw sections to typed, validated connections.
//!
//! Precedence for each key of a `conn`: the section's own lines, then the
//! sections named by `also=` (in order, depth first), then `conn %default`.
//! A section named by some `also=` and without its own `auto=` is a template:
//! its values are checked but it is not a connection by itself.
//!
//! Every check that depends neither on the running system nor on the
//! `--conn` selection (those are in `runtime::plan::select_conns`) happens
//! here, so `check` rejects what `up` would: `ike=`/`esp=` are parsed into
//! ike-lite proposals (errors at the key's line; a `conn %default` line is
//! reported once), and endpoint pairs no route lookup could complete are
//! refused.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use ike_lite::proposal::ProposalError;

use super::conf::{RawConfig, RawEntry, RawSection, SectionKind};
use super::error::{ConfigErrorKind, Diagnostics, Location};
use super::interface::{
    all_default, ipsec_ifname, parse_ipsec_interface, parse_vti_updown, InterfaceOrigin,
};
use super::proposals::{EspProposals, IkeProposals};
use super::secrets::{Psk, Secrets};
use super::values::*;

/// Libreswan default IKE SA lifetime.
pub const DEFAULT_IKE_LIFETIME: Duration = Duration::from_secs(8 * 3600);
/// Libreswan default IPsec SA lifetime.
pub const DEFAULT_SA_LIFETIME: Duration = Duration::from_secs(8 * 3600);
/// Libreswan default rekey margin.
pub const DEFAULT_REKEY_MARGIN: Duration = Duration::from_secs(9 * 60);
/// Libreswan default rekey fuzz (percent of the margin).
pub const DEFAULT_REKEY_FUZZ: u32 = 100;
/// Libreswan default replay window (packets).
pub const DEFAULT_REPLAY_WINDOW: u32 = 32;
/// Largest replay window accepted in the file (Libreswan's limit).
pub const MAX_REPLAY_WINDOW: u32 = 65_536;
/// The replay windows the data path implements (packets); others are
/// clamped into this range with a warning.
pub const SUPPORTED_REPLAY_WINDOW: std::ops::RangeInclusive<u32> = 32..=4096;
/// DPD timeout used when `dpddelay=` is set without `dpdtimeout=`.
pub const DEFAULT_DPD_TIMEOUT: Duration = Duration::from_secs(120);
/// Libreswan caps IKE and IPsec SA lifetimes at this value.
pub const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// Dead peer detection settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dpd {
    /// Interval between liveness checks when the peer is quiet.
    pub delay: Duration,
    /// How long without an answer before `action`.
    pub timeout: Duration,
    /// What to do with a dead peer.
    pub action: DpdAction,
}

/// Tunnel-interface settings taken from the AWS `leftupdown=` command line
/// (`aws-updown.sh -ln NAME -ll LOCAL/30 -lr REMOTE/30 -m MARK -r CIDR`) or
/// from `vti-interface=`. tun-bridge applies them itself instead of running
/// the script.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TunnelSettings {
    /// Interface name (`-ln`, `vti-interface=`).
    pub name: Option<String>,
    /// Inside address of this end (`-ll`).
    pub local_inside: Option<IfAddr>,
    /// Inside address of the peer (`-lr`).
    pub remote_inside: Option<IfAddr>,
    /// Mark (`-m`).
    pub mark: Option<u32>,
    /// Static routes through the tunnel (`-r`).
    pub routes: Vec<IpNet>,
    /// `ipsec-interface=N` (Libreswan): connections with the same number
    /// share the interface `ipsecN`.
    pub ipsec_interface: Option<u32>,
    /// Where the interface name comes from (`None`: `tb-<conn>`).
    pub origin: Option<InterfaceOrigin>,
    /// Further inside addresses of this end (`interface-ip=` with a
    /// comma-separated list, a tun-bridge extension: e.g. an IPv6 inside
    /// address next to the IPv4 one for a second BGP session).
    pub extra_inside: Vec<IfAddr>,
    /// A route-based tunnel: default selectors on both sides and an
    /// interface of its own ([`super::interface`]); no routes are
    /// installed beyond updown `-r` prefixes, the carrier follows the
    /// Child SA, and the MTU defaults to
    /// [`super::interface::ROUTE_BASED_MTU`].
    pub route_based: bool,
}

/// `config setup` keys, kept as text; tun-bridge interprets only the IKE
/// flood limits ([`SetupSettings::flood_limits`], `config/flood.rs`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetupSettings {
    /// `(key, value)` in file order.
    pub entries: Vec<(String, String)>,
}

impl SetupSettings {
    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A fully resolved connection: every setting typed, defaults applied.
/// `left` is always the local end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EffectiveConn {
    /// Connection name.
    pub name: String,
    /// Where the `conn` header is.
    pub source: Location,
    /// Startup action.
    pub auto: Auto,
    /// IPsec mode.
    pub conn_type: ConnType,
    /// Local address (`left=`); `%defaultroute` is resolved at runtime.
    pub local: Endpoint,
    /// Remote address (`right=`).
    pub remote: Endpoint,
    /// Local identity (`leftid=`); `None`: the local address once known.
    pub local_id: Option<Identity>,
    /// Remote identity (`rightid=`, default: the remote address).
    pub remote_id: Option<Identity>,
    /// Local traffic selectors; empty means the local address only.
    pub local_subnets: Vec<IpNet>,
    /// Remote traffic selectors; empty means the remote address only.
    pub remote_subnets: Vec<IpNet>,
    /// IKE version policy.
    pub ike_version: IkeVersionPolicy,
    /// IKE SA proposals (`ike=`, else ike-lite's defaults).
    pub ike: IkeProposals,
    /// Child SA proposals (`esp=`/`phase2alg=`, else ike-lite's defaults),
    /// with `pfs=` applied: exactly what Child SA negotiations use.
    pub esp: EspProposals,
    /// IKE SA lifetime.
    pub ike_lifetime: Duration,
    /// IPsec SA lifetime (`salifetime`, `keylife`, `lifetime`).
    pub sa_lifetime: Duration,
    /// Rekey this long before expiry.
    pub rekey_margin: Duration,
    /// Random extra margin, percent of `rekey_margin`.
    pub rekey_fuzz_percent: u32,
    /// Whether to rekey at all (`rekey=`).
    pub rekey: bool,
    /// Dead peer detection (`None`: disabled).
    pub dpd: Option<Dpd>,
    /// Connection attempts before giving up.
    pub keying_tries: KeyingTries,
    /// Packet mark (ties the SA to a tunnel interface).
    pub mark: Option<Mark>,
    /// Anti-replay window in packets, within [`SUPPORTED_REPLAY_WINDOW`].
    pub replay_window: u32,
    /// Perfect forward secrecy for child SAs.
    pub pfs: bool,
    /// UDP encapsulation policy.
    pub encapsulation: Encapsulation,
    /// MTU of the tunnel interface (`mtu=`).
    pub mtu: Option<u16>,
    /// Tunnel interface settings (AWS updown arguments, `vti-interface=`).
    pub tunnel: TunnelSettings,
    /// The `leftupdown=` command as written (never executed).
    pub updown: Option<String>,
    /// The pre-shared key found in the secrets file (`None` when it can
    /// only be looked up once `%defaultroute` is resolved).
    pub psk: Option<Psk>,
}

struct Ctx<'a> {
    diag: &'a mut Diagnostics,
    template: bool,
}

impl Ctx<'_> {
    fn invalid(&mut self, e: &RawEntry, reason: impl Into<String>) {
        self.diag.error(
            &e.loc,
            ConfigErrorKind::InvalidValue {
                key: e.key.clone(),
                value: e.value.clone().unwrap_or_default(),
                reason: reason.into(),
            },
        );
    }

    fn unsupported(&mut self, e: &RawEntry, reason: impl Into<String>) {
        self.diag.error(
            &e.loc,
            ConfigErrorKind::Unsupported {
                key: e.key.clone(),
                value: e.value.clone().unwrap_or_default(),
                reason: reason.into(),
            },
        );
    }
}

type Merged<'a> = BTreeMap<&'static str, &'a RawEntry>;

fn value<'a>(m: &Merged<'a>, key: &str) -> Option<(&'a RawEntry, &'a str)> {
    m.get(key).and_then(|e| e.value.as_deref().map(|v| (*e, v)))
}

fn typed<'a, T>(
    m: &Merged<'a>,
    key: &str,
    cx: &mut Ctx<'_>,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Option<(&'a RawEntry, T)> {
    let (e, v) = value(m, key)?;
    match parse(v) {
        Ok(t) => Some((e, t)),
        Err(r) => {
            cx.invalid(e, r);
            None
        }
    }
}

/// Resolves raw sections into setup settings and connections, looking PSKs
/// up in `secrets`. All problems go to `diag`; returned connections are only
/// meaningful when `diag` has no errors.
pub fn resolve(
    raw: &RawConfig,
    secrets: &Secrets,
    diag: &mut Diagnostics,
) -> (SetupSettings, Vec<EffectiveConn>) {
    let setup = resolve_setup(raw, diag);

    let mut by_name: BTreeMap<&str, &RawSection> = BTreeMap::new();
    let mut defaults: Merged<'_> = BTreeMap::new();
    let mut order: Vec<&RawSection> = Vec::new();
    for s in raw.sections.iter().filter(|s| s.kind == SectionKind::Conn) {
        if s.name == "%default" {
            for e in &s.entries {
                if e.canonical == "also" {
                    diag.error(
                        &e.loc,
                        ConfigErrorKind::Syntax("also= is not allowed in conn %default".into()),
                    );
                    continue;
                }
                defaults.entry(e.canonical).or_insert(e);
            }
            continue;
        }
        if s.name.starts_with('%') {
            diag.error(
                &s.loc,
                ConfigErrorKind::Syntax(format!("reserved conn name '{}'", s.name)),
            );
            continue;
        }
        if let Some(first) = by_name.get(s.name.as_str()) {
            diag.error(
                &s.loc,
                ConfigErrorKind::DuplicateConn {
                    name: s.name.clone(),
                    first: first.loc.clone(),
                },
            );
            continue;
        }
        by_name.insert(&s.name, s);
        order.push(s);
    }

    let referenced: HashSet<&str> = order
        .iter()
        .flat_map(|s| s.entries.iter())
        .filter(|e| e.canonical == "also")
        .filter_map(|e| e.value.as_deref())
        .collect();

    let mut conns = Vec::new();
    for s in order {
        let mut merged: Merged<'_> = BTreeMap::new();
        let mut stack = vec![s.name.as_str()];
        let mut visited = HashSet::new();
        collect(s, &by_name, &mut stack, &mut visited, &mut merged, diag);
        for (k, e) in &defaults {
            merged.entry(k).or_insert(e);
        }
        let template = referenced.contains(s.name.as_str()) && s.get("auto").is_none();
        let mut cx = Ctx { diag, template };
        if let Some(c) = build(s, &merged, secrets, &mut cx) {
            if !template {
                conns.push(c);
            }
        }
    }
    (setup, conns)
}

fn collect<'a>(
    s: &'a RawSection,
    by_name: &BTreeMap<&str, &'a RawSection>,
    stack: &mut Vec<&'a str>,
    visited: &mut HashSet<&'a str>,
    merged: &mut Merged<'a>,
    diag: &mut Diagnostics,
) {
    for e in s.entries.iter().filter(|e| e.canonical != "also") {
        merged.entry(e.canonical).or_insert(e);
    }
    for e in s.entries.iter().filter(|e| e.canonical == "also") {
        let Some(target) = e.value.as_deref() else {
            continue;
        };
        if stack.contains(&target) {
            let mut path: Vec<String> = stack.iter().map(|s| s.to_string()).collect();
            path.push(target.to_string());
            diag.error(&e.loc, ConfigErrorKind::AlsoCycle(path));
            continue;
        }
        match by_name.get(target) {
            None => diag.error(&e.loc, ConfigErrorKind::AlsoNotFound(target.to_string())),
            // Merging a section twice adds nothing (first value wins), and
            // skipping it keeps diamond-shaped also= graphs linear.
            Some(t) if !visited.insert(t.name.as_str()) => {}
            Some(t) => {
                stack.push(&t.name);
                collect(t, by_name, stack, visited, merged, diag);
                stack.pop();
            }
        }
    }
}

fn resolve_setup(raw: &RawConfig, diag: &mut Diagnostics) -> SetupSettings {
    let mut out = SetupSettings::default();
    for s in raw.sections.iter().filter(|s| s.kind == SectionKind::Setup) {
        for e in &s.entries {
            let Some(v) = e.value.as_deref() else {
                continue;
            };
            let check = match e.key.as_str() {
                "uniqueids" => matches!(v, "yes" | "no" | "never" | "replace" | "keep")
                    .then_some(())
                    .ok_or_else(|| "expected yes, no, never, replace or keep".to_string()),
                "nat_traversal" | "strictcrlpolicy" | "logtime" | "logappend" => {
                    parse_bool(v).map(|_| ())
                }
                k => match super::flood::check(k, v) {
                    Some(Err(e)) => Err(e),
                    _ => Ok(()),
                },
            };
            if let Err(r) = check {
                diag.error(
                    &e.loc,
                    ConfigErrorKind::InvalidValue {
                        key: e.key.clone(),
                        value: v.to_string(),
                        reason: r.to_string(),
                    },
                );
            }
            out.entries.retain(|(k, _)| *k != e.key);
            out.entries.push((e.key.clone(), v.to_string()));
        }
    }
    out
}

fn build(
    s: &RawSection,
    m: &Merged<'_>,
    secrets: &Secrets,
    cx: &mut Ctx<'_>,
) -> Option<EffectiveConn> {
    let errors_before = cx.diag.errors.len();
    let missing = |cx: &mut Ctx<'_>, key: &'static str, reason: &'static str| {
        if !cx.template {
            cx.diag
                .error(&s.loc, ConfigErrorKind::MissingKey { key, reason });
        }
    };

    // --- authentication: pre-shared keys only.
    let authby = value(m, "authby");
    let mut psk_auth = false;
    if let Some((e, v)) = authby {
        match v {
            "secret" | "psk" => psk_auth = true,
            "rsasig" | "rsa" | "pubkey" | "ecdsa" | "rsa-sha1" | "rsa-sha2" | "null" | "never"
            | "xauthpsk" | "xauthrsasig" | "secret|rsasig" | "rsasig|secret" => {
                cx.unsupported(e, "only pre-shared keys (authby=secret) are supported")
            }
            _ => cx.invalid(e, "expected secret"),
        }
    }
    let mut side_auth = 0;
    for key in ["leftauth", "rightauth"] {
        if let Some((e, v)) = value(m, key) {
            match v {
                "psk" | "secret" => side_auth += 1,
                "pubkey" | "rsa" | "ecdsa" | "eap" | "xauth" | "null" => {
                    cx.unsupported(e, "only psk is supported")
                }
                _ if v.starts_with("eap-") || v.starts_with("xauth-") => {
                    cx.unsupported(e, "only psk is supported")
                }
                _ => cx.invalid(e, "expected psk"),
            }
        }
    }
    if side_auth == 2 {
        psk_auth = true;
    }
    if !psk_auth && authby.is_none() && side_auth == 0 {
        missing(
            cx,
            "authby",
            "tun-bridge only supports pre-shared keys: set authby=secret (or leftauth=psk and rightauth=psk)",
        );
    } else if !psk_auth && authby.is_none() && side_auth == 1 {
        missing(cx, "rightauth", "set both leftauth=psk and rightauth=psk");
    }
    if let Some((e, v)) = value(m, "auth") {
        match v {
            "esp" => cx.diag.warn(
                &e.loc,
                "auth=esp is obsolete (current Libreswan rejects it); accepted and ignored",
            ),
            "ah" => cx.unsupported(e, "AH is not supported; use ESP"),
            _ => cx.invalid(e, "expected esp"),
        }
    }
    if let Some((e, v)) = value(m, "phase2") {
        match v {
            "esp" => {}
            "ah" => cx.unsupported(e, "AH is not supported; use ESP"),
            _ => cx.invalid(e, "expected esp"),
        }
    }
    if let Some((e, v)) = value(m, "aggressive") {
        match parse_bool(v) {
            Ok(false) => {}
            Ok(true) => cx.unsupported(
                e,
                "IKEv1 aggressive mode is refused: with a pre-shared key it hands out a \
                 hash that can be cracked offline; use main mode (aggressive=no)",
            ),
            Err(r) => cx.invalid(e, r),
        }
    }
    if let Some((e, v)) = value(m, "compress") {
        match parse_bool(v) {
            Ok(false) => {}
            Ok(true) => cx
                .diag
                .warn(&e.loc, "compress=yes: IPComp is not supported; not offered"),
            Err(r) => cx.invalid(e, r),
        }
    }

    let auto = typed(m, "auto", cx, Auto::parse).map_or(Auto::Ignore, |x| x.1);
    let conn_type = match typed(m, "type", cx, ConnType::parse) {
        Some((e, ConnType::Passthrough)) => {
            cx.unsupported(e, "passthrough connections are not supported");
            ConnType::Tunnel
        }
        Some((e, ConnType::Transport)) => {
            cx.unsupported(
                e,
                "transport mode is not supported; tun-bridge runs tunnel mode",
            );
            ConnType::Tunnel
        }
        Some((_, t)) => t,
        None => ConnType::Tunnel,
    };

    // --- endpoints and identities.
    let local = typed(m, "left", cx, Endpoint::parse);
    let remote = typed(m, "right", cx, Endpoint::parse);
    if m.get("left").and_then(|e| e.value.as_ref()).is_none() {
        missing(
            cx,
            "left",
            "the local end is required (e.g. left=%defaultroute)",
        );
    }
    if m.get("right").and_then(|e| e.value.as_ref()).is_none() {
        missing(cx, "right", "the peer address is required");
    }
    if let Some((e, Endpoint::DefaultRoute)) = &remote {
        cx.invalid(e, "the remote end cannot be %defaultroute");
    }
    if let Some((e, Endpoint::Any)) = &remote {
        if matches!(auto, Auto::Start | Auto::Route | Auto::OnDemand) {
            cx.diag.error(
                &e.loc,
                ConfigErrorKind::Conflict(format!(
                    "auto={auto} needs a peer address to initiate to, not right=%any"
                )),
            );
        }
    }
    match (&local, &remote) {
        // The local address is found from the route to the peer.
        (Some((_, l)), Some((e, Endpoint::Any))) if l.ip().is_none() => cx.diag.error(
            &e.loc,
            ConfigErrorKind::Conflict(format!(
                "left={l} needs a concrete right= to find the local address; right=%any has none"
            )),
        ),
        (_, Some((e, Endpoint::Ip(ip)))) if ip.is_unspecified() => {
            cx.invalid(e, "not a peer address; use right=%any to accept any peer")
        }
        (Some((_, Endpoint::Ip(l))), Some((e, Endpoint::Ip(r)))) if l.is_ipv4() != r.is_ipv4() => {
            cx.diag.error(
                &e.loc,
                ConfigErrorKind::Conflict(format!(
                    "left={l} and right={r} are of different address families"
                )),
            )
        }
        _ => {}
    }
    let local_id = typed(m, "leftid", cx, Identity::parse).map(|x| x.1);
    let remote_id = typed(m, "rightid", cx, Identity::parse).map(|x| x.1);
    let local_subnets = typed(m, "leftsubnet", cx, parse_subnets).map_or(Vec::new(), |x| x.1);
    let remote_subnets = typed(m, "rightsubnet", cx, parse_subnets).map_or(Vec::new(), |x| x.1);

    // --- IKE version.
    let kx = typed(m, "keyexchange", cx, KeyExchange::parse);
    let v2 = typed(m, "ikev2", cx, Ikev2Setting::parse);
    let ike_version = match (&kx, &v2) {
        (Some((_, KeyExchange::Ikev2)), Some((e, Ikev2Setting::Never | Ikev2Setting::Permit)))
        | (Some((_, KeyExchange::Ikev1)), Some((e, Ikev2Setting::Insist))) => {
            cx.diag.error(
                &e.loc,
                ConfigErrorKind::Conflict("keyexchange= and ikev2= disagree".into()),
            );
            IkeVersionPolicy::Ikev2Only
        }
        (Some((_, KeyExchange::Ikev2)), _) | (_, Some((_, Ikev2Setting::Insist))) => {
            IkeVersionPolicy::Ikev2Only
        }
        (Some((e, KeyExchange::Ikev1)), _)
        | (_, Some((e, Ikev2Setting::Never | Ikev2Setting::Permit))) => {
            cx.diag.warn(
                &e.loc,
                format!(
                    "{}={}: IKEv1 (Historic, RFC 9395) main mode with PSK will be used; \
                     AWS also accepts IKEv2",
                    e.key,
                    e.value.as_deref().unwrap_or_default()
                ),
            );
            IkeVersionPolicy::Ikev1Requested
        }
        _ => IkeVersionPolicy::Ikev2Preferred,
    };

    // --- lifetimes.
    let lifetime = |key: &str, default: Duration, cx: &mut Ctx<'_>| -> Duration {
        match typed(m, key, cx, parse_duration) {
            Some((e, d)) if d.is_zero() => {
                cx.invalid(e, "must be greater than 0");
                default
            }
            Some((e, d)) => {
                if d > MAX_LIFETIME {
                    cx.diag.warn(
                        &e.loc,
                        format!(
                            "{} is longer than the 24h Libreswan allows; AWS may rekey first",
                            e.key
                        ),
                    );
                }
                d
            }
            None => default,
        }
    };
    let ike_lifetime = lifetime("ikelifetime", DEFAULT_IKE_LIFETIME, cx);
    let sa_lifetime = lifetime("salifetime", DEFAULT_SA_LIFETIME, cx);
    let rekey_margin =
        typed(m, "rekeymargin", cx, parse_duration).map_or(DEFAULT_REKEY_MARGIN, |x| x.1);
    let rekey_fuzz_percent =
        typed(m, "rekeyfuzz", cx, parse_percent).map_or(DEFAULT_REKEY_FUZZ, |x| x.1);
    if rekey_margin >= sa_lifetime.min(ike_lifetime) {
        let at = m.get("rekeymargin").map_or(&s.loc, |e| &e.loc);
        cx.diag.warn(
            at,
            "rekeymargin is not shorter than the lifetimes; it will be reduced to half a lifetime",
        );
    }
    let rekey = typed(m, "rekey", cx, parse_bool).is_none_or(|x| x.1);

    // --- DPD.
    let delay = typed(m, "dpddelay", cx, parse_duration).map(|x| x.1);
    let timeout = typed(m, "dpdtimeout", cx, parse_duration);
    let action = typed(m, "dpdaction", cx, DpdAction::parse);
    let dpd = match delay {
        Some(d) if !d.is_zero() => {
            if let Some((e, t)) = &timeout {
                if *t < d {
                    cx.diag.warn(&e.loc, "dpdtimeout is shorter than dpddelay");
                }
            }
            let timeout = timeout.as_ref().map_or(DEFAULT_DPD_TIMEOUT, |x| x.1);
            Some(Dpd {
                delay: d,
                timeout,
                action: action.as_ref().map_or(DpdAction::Hold, |x| x.1),
            })
        }
        _ => {
            for e in [timeout.as_ref().map(|x| x.0), action.as_ref().map(|x| x.0)]
                .into_iter()
                .flatten()
            {
                cx.diag
                    .warn(&e.loc, format!("{} has no effect without dpddelay", e.key));
            }
            None
        }
    };

    // --- proposals: parsed once into ike-lite's types.
    let pfs = typed(m, "pfs", cx, parse_bool).is_none_or(|x| x.1);
    let ike = match value(m, "ike") {
        Some((e, v)) => IkeProposals::parse(v).unwrap_or_else(|err| {
            proposal_error(cx, e, &err);
            IkeProposals::defaults()
        }),
        None => IkeProposals::defaults(),
    };
    let esp = match value(m, "esp") {
        Some((e, v)) => match EspProposals::parse(v) {
            Ok(p) => {
                if !pfs && p.has_dh() {
                    cx.diag.warn(
                        &e.loc,
                        format!("pfs=no: the DH group in {}= is not used", e.key),
                    );
                }
                p
            }
            Err(err) => {
                proposal_error(cx, e, &err);
                EspProposals::defaults()
            }
        },
        None => EspProposals::defaults(),
    }
    .with_pfs(&ike, pfs);

    // --- misc.
    let keying_tries =
        typed(m, "keyingtries", cx, KeyingTries::parse).map_or(KeyingTries::Forever, |x| x.1);
    let mark = typed(m, "mark", cx, Mark::parse).map(|x| x.1);
    let replay_window = match typed(m, "replay-window", cx, parse_u32) {
        Some((e, n)) if n > MAX_REPLAY_WINDOW => {
            cx.invalid(e, format!("must be at most {MAX_REPLAY_WINDOW}"));
            DEFAULT_REPLAY_WINDOW
        }
        Some((e, n)) if !SUPPORTED_REPLAY_WINDOW.contains(&n) => {
            let (lo, hi) = SUPPORTED_REPLAY_WINDOW.into_inner();
            let used = n.clamp(lo, hi);
            let why = if n == 0 {
                "anti-replay protection cannot be disabled".to_string()
            } else {
                format!("the window is {lo} to {hi} packets")
            };
            cx.diag
                .warn(&e.loc, format!("replay-window={n}: {why}; using {used}"));
            used
        }
        Some((_, n)) => n,
        None => DEFAULT_REPLAY_WINDOW,
    };
    let encapsulation = match value(m, "encapsulation") {
        Some((e, v)) if e.key == "forceencaps" => match parse_bool(v) {
            Ok(true) => Encapsulation::Yes,
            Ok(false) => Encapsulation::Auto,
            Err(r) => {
                cx.invalid(e, r);
                Encapsulation::Auto
            }
        },
        _ => {
            typed(m, "encapsulation", cx, Encapsulation::parse).map_or(Encapsulation::Auto, |x| x.1)
        }
    };
    let mtu = typed(m, "mtu", cx, |v| match v.parse::<u16>() {
        Ok(n) if n >= 576 => Ok(n),
        _ => Err("expected an MTU between 576 and 65535".to_string()),
    })
    .map(|x| x.1);

    let mut tunnel = TunnelSettings::default();
    if let Some((_, name)) = typed(m, "vti-interface", cx, parse_ifname) {
        tunnel.name = Some(name);
        tunnel.origin = Some(InterfaceOrigin::VtiInterface);
    }
    let updown = value(m, "leftupdown").map(|(e, v)| {
        match parse_aws_updown(v) {
            Some(Ok(t)) => {
                cx.diag.warn(
                    &e.loc,
                    "leftupdown is not executed: tun-bridge sets up the tunnel interface and routes itself (using this script's -ln/-ll/-lr/-m/-r arguments)",
                );
                if let (Some(a), Some(b)) = (t.mark, mark) {
                    if a != b.value {
                        cx.diag.warn(
                            &e.loc,
                            format!("updown -m {a} differs from mark={}", b.value),
                        );
                    }
                }
                let (name, origin) = (tunnel.name.take(), tunnel.origin.take());
                let aws = t.name.is_some().then_some(InterfaceOrigin::AwsUpdown);
                tunnel = TunnelSettings {
                    name: t.name.or(name),
                    origin: aws.or(origin),
                    ..t
                };
            }
            Some(Err(r)) => cx.diag.warn(
                &e.loc,
                format!("leftupdown is not executed, and its arguments were not understood: {r}"),
            ),
            None => match parse_vti_updown(v) {
                Some(Ok(t)) => {
                    cx.diag.warn(
                        &e.loc,
                        format!(
                            "leftupdown is not executed: tun-bridge sets up interface vti{} with {} itself (this script's arguments); the peer is {}",
                            t.id, t.local_inside, t.remote_inside
                        ),
                    );
                    tunnel.name = Some(format!("vti{}", t.id));
                    tunnel.origin = Some(InterfaceOrigin::IpsecVti(t.id));
                    tunnel.local_inside = Some(t.local_inside);
                    tunnel.remote_inside = Some(t.remote_inside);
                }
                Some(Err(r)) => cx.diag.warn(
                    &e.loc,
                    format!(
                        "leftupdown is not executed, and its arguments were not understood: {r}"
                    ),
                ),
                None => cx.diag.warn(
                    &e.loc,
                    "leftupdown is not executed: routes are managed by tun-bridge",
                ),
            },
        }
        v.to_string()
    });
    interface_settings(m, cx, &mut tunnel, mark.is_some());
    let route_based_selectors = all_default(&local_subnets) && all_default(&remote_subnets);
    tunnel.route_based = route_based_selectors && tunnel.origin.is_some();
    if let (Some(o), false) = (tunnel.origin, route_based_selectors) {
        if !matches!(
            o,
            InterfaceOrigin::AwsUpdown | InterfaceOrigin::VtiInterface
        ) {
            let at = m.get("rightsubnet").map_or(&s.loc, |e| &e.loc);
            cx.diag.warn(
                at,
                format!(
                    "{o} without leftsubnet=0.0.0.0/0 and rightsubnet=0.0.0.0/0 (or ::/0): a named interface with routes to rightsubnet, not a route-based tunnel"
                ),
            );
        }
    }
    if let Some((e, _)) = value(m, "rightupdown") {
        cx.diag.warn(
            &e.loc,
            "rightupdown is not executed: routes are managed by tun-bridge",
        );
    }

    // --- PSK.
    let mut psk = None;
    if let (Some((_, l)), Some((_, r))) = (&local, &remote) {
        let lid = local_id.clone().or_else(|| Identity::from_endpoint(l));
        let rid = remote_id.clone().or_else(|| Identity::from_endpoint(r));
        if let Some(rid) = rid {
            match secrets.lookup(lid.as_ref(), &rid) {
                Some(found) => {
                    if let Some(other) = found.ambiguous_with {
                        cx.diag.warn(
                            &s.loc,
                            format!(
                                "conn {}: secrets at {} and {} match equally well; using the first",
                                s.name, found.entry.loc, other.loc
                            ),
                        );
                    }
                    psk = Some(found.entry.psk.clone());
                }
                // Templates have no PSK of their own; a broken secrets file
                // already produced its own errors.
                None if cx.template || secrets.incomplete => {}
                None => {
                    let ids = format!(
                        "{} {}",
                        lid.as_ref()
                            .map_or("%defaultroute".to_string(), |i| i.to_string()),
                        rid
                    );
                    if lid.is_none() || auto == Auto::Ignore {
                        cx.diag.warn(
                            &s.loc,
                            format!(
                                "conn {}: no PSK matches {ids} yet; looked up again at runtime",
                                s.name
                            ),
                        );
                    } else {
                        cx.diag.error(
                            &s.loc,
                            ConfigErrorKind::NoPsk {
                                conn: s.name.clone(),
                                ids,
                            },
                        );
                    }
                }
            }
        }
    }

    if cx.diag.errors.len() != errors_before {
        return None;
    }
    Some(EffectiveConn {
        name: s.name.clone(),
        source: s.loc.clone(),
        auto,
        conn_type,
        local: local?.1,
        remote: remote?.1,
        local_id,
        remote_id,
        local_subnets,
        remote_subnets,
        ike_version,
        ike,
        esp,
        ike_lifetime,
        sa_lifetime,
        rekey_margin,
        rekey_fuzz_percent,
        rekey,
        dpd,
        keying_tries,
        mark,
        replay_window,
        pfs,
        encapsulation,
        mtu,
        tunnel,
        updown,
        psk,
    })
}

/// `ipsec-interface=`, `interface-ip=` and a bare `mark=`: the interface
/// of a (possibly) route-based tunnel. `ipsec-interface=` names the
/// interface over any updown `-ln`; `interface-ip=` over any `-ll`.
fn interface_settings(m: &Merged<'_>, cx: &mut Ctx<'_>, tunnel: &mut TunnelSettings, mark: bool) {
    if let Some((e, Some(n))) = typed(m, "ipsec-interface", cx, parse_ipsec_interface) {
        if tunnel.name.is_some() {
            cx.diag.warn(
                &e.loc,
                format!(
                    "ipsec-interface={n} names the interface {}; the other interface name is ignored",
                    ipsec_ifname(n)
                ),
            );
        }
        tunnel.name = Some(ipsec_ifname(n));
        tunnel.ipsec_interface = Some(n);
        tunnel.origin = Some(InterfaceOrigin::IpsecInterface(n));
    }
    let addr_list = |v: &str| -> Result<Vec<IfAddr>, String> {
        v.split(',')
            .map(|a| IfAddr::parse(a.trim()))
            .collect::<Result<Vec<_>, _>>()
    };
    if let Some((e, mut list)) = typed(m, "interface-ip", cx, addr_list) {
        let a = list.remove(0);
        tunnel.extra_inside = list;
        if tunnel.ipsec_interface.is_none() {
            cx.diag.warn(
                &e.loc,
                "interface-ip= without ipsec-interface= applies to this conn's own interface",
            );
        }
        tunnel.local_inside = Some(a);
    }
    if tunnel.origin.is_none() && (mark || tunnel.mark.is_some()) {
        tunnel.origin = Some(InterfaceOrigin::Mark);
    }
}

fn proposal_error(cx: &mut Ctx<'_>, e: &RawEntry, err: &ProposalError) {
    cx.diag.error(
        &e.loc,
        ConfigErrorKind::Proposal {
            key: e.key.clone(),
            value: e.value.clone().unwrap_or_default(),
            message: err.to_string(),
        },
    );
}

fn parse_ifname(s: &str) -> Result<String, String> {
    if s.is_empty()
        || s.len() > 15
        || s.contains(['/', ':'])
        || s.contains(char::is_whitespace)
        || s == "."
        || s == ".."
    {
        return Err("expected an interface name of at most 15 characters".into());
    }
    Ok(s.to_string())
}

/// Interprets an AWS `aws-updown.sh` command line. `None` when the command
/// is some other script.
pub fn parse_aws_updown(cmd: &str) -> Option<Result<TunnelSettings, String>> {
    let mut words = cmd.split_whitespace();
    let prog = words.next()?;
    if !prog.ends_with("aws-updown.sh") {
        return None;
    }
    let mut t = TunnelSettings::default();
    let mut words = words.peekable();
    let res = (|| {
        while let Some(flag) = words.next() {
            let arg = words
                .next()
                .ok_or_else(|| format!("{flag} needs an argument"))?;
            match flag {
                "-ln" | "--link-name" => t.name = Some(parse_ifname(arg)?),
                "-ll" | "--link-local" => {
                    t.local_inside =
                        Some(IfAddr::parse(arg).map_err(|e| format!("-ll {arg}: {e}"))?)
                }
                "-lr" | "--link-remote" => {
                    t.remote_inside =
                        Some(IfAddr::parse(arg).map_err(|e| format!("-lr {arg}: {e}"))?)
                }
                "-m" | "--mark" => {
                    t.mark = Some(parse_u32(arg).map_err(|e| format!("-m {arg}: {e}"))?)
                }
                "-r" | "--static-route" => t
                    .routes
                    .push(IpNet::parse(arg).map_err(|e| format!("-r {arg}: {e}"))?),
                other => return Err(format!("unknown argument {other}")),
            }
        }
        Ok(())
    })();
    Some(res.map(|()| t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_updown() {
        let t = parse_aws_updown(
            "/etc/ipsec.d/aws-updown.sh -ln Tunnel1 -ll 169.254.10.2/30 -lr 169.254.10.1/30 -m 100 -r 10.1.0.0/16",
        )
        .unwrap()
        .unwrap();
        assert_eq!(t.name.as_deref(), Some("Tunnel1"));
        assert_eq!(t.local_inside.unwrap().to_string(), "169.254.10.2/30");
        assert_eq!(t.remote_inside.unwrap().prefix, 30);
        assert_eq!(t.mark, Some(100));
        assert_eq!(t.routes[0].to_string(), "10.1.0.0/16");
        assert!(parse_aws_updown("/bin/true").is_none());
        assert!(parse_aws_updown("aws-updown.sh -r <VPC CIDR>")
            .unwrap()
            .is_err());
        assert!(parse_aws_updown("aws-updown.sh -m").unwrap().is_err());
    }

    fn ike_version_of(extra: &str) -> Result<IkeVersionPolicy, String> {
        let conf = format!(
            "conn x\n auto=start\n authby=secret\n left=192.0.2.1\n right=192.0.2.2\n{extra}"
        );
        let p = std::path::Path::new("t.conf");
        let s = std::path::Path::new("t.secrets");
        match crate::config::parse_str(&conf, p, "192.0.2.1 192.0.2.2 : PSK \"k\"\n", s) {
            Ok(l) => Ok(l.config.conns[0].ike_version),
            Err(f) => Err(f.errors.iter().map(|e| e.to_string()).collect()),
        }
    }

    #[test]
    fn ike_version_and_aggressive_mode() {
        use IkeVersionPolicy::*;
        // A bare file (AWS's Openswan download) keeps IKEv2.
        assert_eq!(ike_version_of(""), Ok(Ikev2Preferred));
        assert_eq!(ike_version_of(" keyexchange=ikev1\n"), Ok(Ikev1Requested));
        assert_eq!(ike_version_of(" ikev2=no\n"), Ok(Ikev1Requested));
        assert_eq!(ike_version_of(" ikev2=never\n"), Ok(Ikev1Requested));
        assert_eq!(ike_version_of(" ikev2=insist\n"), Ok(Ikev2Only));
        assert_eq!(
            ike_version_of(" keyexchange=ikev1\n aggressive=no\n"),
            Ok(Ikev1Requested)
        );
        let e = ike_version_of(" keyexchange=ikev1\n aggressive=yes\n").unwrap_err();
        assert!(e.contains("aggressive mode is refused"), "{e}");
        let e = ike_version_of(" aggrmode=yes\n").unwrap_err();
        assert!(e.contains("cracked offline"), "{e}");
    }
}
