//! Typed values of `ipsec.conf` keys and their parsers.
//!
//! Every parser takes the (already unquoted) value text and returns the typed
//! value or a short reason; the caller attaches key and location.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

/// `auto=`: what to do with a connection at startup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Auto {
    /// Do not load it.
    Ignore,
    /// Load it and wait for the peer to initiate.
    Add,
    /// Load it and initiate.
    Start,
    /// Load it and install a trap route; initiate on traffic.
    Route,
    /// Same as `route` (Libreswan alias).
    OnDemand,
}

impl Auto {
    /// Parses `add`, `start`, `ignore`, `route`, `ondemand`.
    pub fn parse(s: &str) -> Result<Self, String> {
        Ok(match s {
            "ignore" => Self::Ignore,
            "add" => Self::Add,
            "start" => Self::Start,
            "route" => Self::Route,
            "ondemand" => Self::OnDemand,
            _ => return Err("expected add, start, ignore, route or ondemand".into()),
        })
    }
}

impl fmt::Display for Auto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ignore => "ignore",
            Self::Add => "add",
            Self::Start => "start",
            Self::Route => "route",
            Self::OnDemand => "ondemand",
        })
    }
}

/// `type=`: IPsec mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnType {
    /// Tunnel mode (the only mode AWS uses).
    Tunnel,
    /// Transport mode.
    Transport,
    /// No IPsec: traffic passes in clear.
    Passthrough,
}

impl ConnType {
    /// Parses `tunnel`, `transport`, `passthrough` (`pass` as alias).
    pub fn parse(s: &str) -> Result<Self, String> {
        Ok(match s {
            "tunnel" => Self::Tunnel,
            "transport" => Self::Transport,
            "passthrough" | "pass" => Self::Passthrough,
            _ => return Err("expected tunnel, transport or passthrough".into()),
        })
    }
}

impl fmt::Display for ConnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tunnel => "tunnel",
            Self::Transport => "transport",
            Self::Passthrough => "passthrough",
        })
    }
}

/// `ikev2=` (Libreswan).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ikev2Setting {
    /// `insist`: IKEv2 only.
    Insist,
    /// `yes` / `propose`: initiate with IKEv2.
    Propose,
    /// `permit`: initiate with IKEv1, accept IKEv2.
    Permit,
    /// `no` / `never`: IKEv1 only.
    Never,
}

impl Ikev2Setting {
    /// Parses `insist`, `yes`, `propose`, `permit`, `no`, `never`.
    pub fn parse(s: &str) -> Result<Self, String> {
        Ok(match s {
            "insist" => Self::Insist,
            "yes" | "propose" => Self::Propose,
            "permit" => Self::Permit,
            "no" | "never" => Self::Never,
            _ => return Err("expected insist, yes, propose, permit, no or never".into()),
        })
    }
}

/// `keyexchange=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyExchange {
    /// `ike`: either version (strongSwan initiates IKEv2).
    Ike,
    /// `ikev1`.
    Ikev1,
    /// `ikev2`.
    Ikev2,
}

impl KeyExchange {
    /// Parses `ike`, `ikev1`, `ikev2`.
    pub fn parse(s: &str) -> Result<Self, String> {
        Ok(match s {
            "ike" => Self::Ike,
            "ikev1" => Self::Ikev1,
            "ikev2" => Self::Ikev2,
            _ => return Err("expected ike, ikev1 or ikev2".into()),
        })
    }
}

/// The IKE version policy after combining `ikev2=` and `keyexchange=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IkeVersionPolicy {
    /// IKEv2 only (`ikev2=insist`, `keyexchange=ikev2`).
    Ikev2Only,
    /// IKEv2 preferred, IKEv1 tolerated (`keyexchange=ike`, `ikev2=yes|propose`, default).
    Ikev2Preferred,
    /// The file asks for IKEv1 (`keyexchange=ikev1`, `ikev2=no|never|permit`):
    /// IKEv1 main mode + quick mode is used (`ike_lite::v1`) and `check`
    /// warns that IKEv1 is Historic.
    Ikev1Requested,
}

impl fmt::Display for IkeVersionPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ikev2Only => "ikev2 only",
            Self::Ikev2Preferred => "ikev2",
            Self::Ikev1Requested => "ikev1",
        })
    }
}

/// `dpdaction=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DpdAction {
    /// Delete the SAs and the connection's routes.
    Clear,
    /// Delete the SAs, keep a trap so traffic re-initiates.
    Hold,
    /// Delete the SAs and re-initiate at once.
    Restart,
    /// Libreswan's `restart_by_peer` (IKEv1 era): treated as restart.
    RestartByPeer,
    /// strongSwan's `none`: DPD only logs.
    None,
}

impl DpdAction {
    /// Parses `clear`, `hold`, `restart`, `restart_by_peer`, `none`.
    pub fn parse(s: &str) -> Result<Self, String> {
        Ok(match s {
            "clear" => Self::Clear,
            "hold" | "trap" => Self::Hold,
            "restart" => Self::Restart,
            "restart_by_peer" => Self::RestartByPeer,
            "none" => Self::None,
            _ => return Err("expected clear, hold, restart, restart_by_peer or none".into()),
        })
    }
}

impl fmt::Display for DpdAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Clear => "clear",
            Self::Hold => "hold",
            Self::Restart => "restart",
            Self::RestartByPeer => "restart_by_peer",
            Self::None => "none",
        })
    }
}

/// `keyingtries=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyingTries {
    /// `%forever` (or `0`): retry without limit.
    Forever,
    /// Give up after this many attempts.
    Count(u32),
}

impl KeyingTries {
    /// Parses `%forever` or a non-negative integer (0 means forever).
    pub fn parse(s: &str) -> Result<Self, String> {
        if s == "%forever" {
            return Ok(Self::Forever);
        }
        match parse_u32(s)? {
            0 => Ok(Self::Forever),
            n => Ok(Self::Count(n)),
        }
    }
}

impl fmt::Display for KeyingTries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Forever => f.write_str("%forever"),
            Self::Count(n) => write!(f, "{n}"),
        }
    }
}

/// `encapsulation=` (UDP encapsulation, RFC 3948).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encapsulation {
    /// Always encapsulate in UDP 4500.
    Yes,
    /// Never.
    No,
    /// Only when NAT is detected.
    Auto,
}

impl Encapsulation {
    /// Parses `yes`, `no`, `auto`.
    pub fn parse(s: &str) -> Result<Self, String> {
        Ok(match s {
            "yes" => Self::Yes,
            "no" => Self::No,
            "auto" => Self::Auto,
            _ => return Err("expected yes, no or auto".into()),
        })
    }
}

impl fmt::Display for Encapsulation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Yes => "yes",
            Self::No => "no",
            Self::Auto => "auto",
        })
    }
}

/// `mark=value[/mask]` (packet mark; AWS uses it to tie an SA to a VTI).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark {
    /// Mark value.
    pub value: u32,
    /// Mask (default `0xffffffff`).
    pub mask: u32,
}

impl Mark {
    /// Parses `100`, `0x64`, `100/0xffffffff`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (v, m) = match s.split_once('/') {
            Some((v, m)) => (v, Some(m)),
            None => (s, None),
        };
        let value = parse_u32(v)?;
        let mask = match m {
            Some(m) => parse_u32(m)?,
            None => u32::MAX,
        };
        if value & !mask != 0 {
            return Err(format!("value {value:#x} has bits outside mask {mask:#x}"));
        }
        Ok(Self { value, mask })
    }
}

impl fmt::Display for Mark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{:#010x}", self.value, self.mask)
    }
}

/// Parses a decimal or `0x` hexadecimal `u32`.
pub fn parse_u32(s: &str) -> Result<u32, String> {
    let r = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u32::from_str_radix(h, 16)
    } else {
        s.parse::<u32>()
    };
    r.map_err(|_| "expected a non-negative 32-bit integer".to_string())
}

/// Parses `yes`/`no` (also `true`/`false`).
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s {
        "yes" | "true" => Ok(true),
        "no" | "false" => Ok(false),
        _ => Err("expected yes or no".into()),
    }
}

/// Parses a duration: a number with optional unit `s`, `m`, `h`, `d`
/// (`8h`, `54m`, `28800s`, `3600`); a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, mult) = match s.char_indices().last() {
        Some((i, 's')) => (&s[..i], 1u64),
        Some((i, 'm')) => (&s[..i], 60),
        Some((i, 'h')) => (&s[..i], 3600),
        Some((i, 'd')) => (&s[..i], 86400),
        _ => (s, 1),
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return Err("expected a duration like 8h, 54m, 28800s or 3600".into());
    }
    let n: u64 = num
        .parse()
        .map_err(|_| "duration out of range".to_string())?;
    n.checked_mul(mult)
        .filter(|&secs| secs <= u64::from(u32::MAX))
        .map(Duration::from_secs)
        .ok_or_else(|| "duration out of range".to_string())
}

/// Parses a percentage such as `100%` (the `%` is optional).
pub fn parse_percent(s: &str) -> Result<u32, String> {
    let n = s.strip_suffix('%').unwrap_or(s);
    let v: u32 = n
        .parse()
        .map_err(|_| "expected a percentage like 100%".to_string())?;
    if v > 10_000 {
        return Err("percentage out of range (0..=10000)".into());
    }
    Ok(v)
}

/// Formats a duration the way the config files write them (`8h`, `9m`, `10s`).
pub fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s != 0 && s % 3600 == 0 {
        format!("{}h", s / 3600)
    } else if s != 0 && s % 60 == 0 {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// An IP prefix (`10.0.0.0/16`), host bits zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpNet {
    /// Network address.
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix: u8,
}

impl IpNet {
    /// Parses `a.b.c.d/n`, `x::/n`, or a bare address (/32 or /128).
    /// Host bits must be zero.
    pub fn parse(s: &str) -> Result<Self, String> {
        let net = IfAddr::parse(s)?;
        let masked = mask_addr(net.addr, net.prefix);
        if masked != net.addr {
            return Err(format!(
                "host bits set (did you mean {masked}/{}?)",
                net.prefix
            ));
        }
        Ok(Self {
            addr: net.addr,
            prefix: net.prefix,
        })
    }

    /// True when `ip` is inside this prefix.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                mask_addr(ip, self.prefix) == self.addr
            }
            _ => false,
        }
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// An interface address with prefix (`169.254.10.2/30`), host bits allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IfAddr {
    /// The address.
    pub addr: IpAddr,
    /// Prefix length of the on-link network.
    pub prefix: u8,
}

impl IfAddr {
    /// Parses `addr/len` or a bare address.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("'{a}' is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max && !p.starts_with('+') => n,
                _ => return Err(format!("prefix length must be 0..={max}")),
            },
        };
        Ok(Self { addr, prefix })
    }
}

impl fmt::Display for IfAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn mask_addr(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix.min(32)))
            };
            IpAddr::V4((bits & mask).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let mask = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix.min(128)))
            };
            IpAddr::V6((bits & mask).into())
        }
    }
}

/// Parses a subnet list: `a/n`, `a/n,b/m`, or `{a/n b/m}` (`leftsubnets=`).
pub fn parse_subnets(s: &str) -> Result<Vec<IpNet>, String> {
    let inner = match s.strip_prefix('{') {
        Some(rest) => rest
            .strip_suffix('}')
            .ok_or_else(|| "unterminated '{' list".to_string())?,
        None => s,
    };
    let mut out = Vec::new();
    for item in inner
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|x| !x.is_empty())
    {
        let net = IpNet::parse(item).map_err(|e| format!("'{item}': {e}"))?;
        if !out.contains(&net) {
            out.push(net);
        }
    }
    if out.is_empty() {
        return Err("empty subnet list".into());
    }
    Ok(out)
}

/// `left=` / `right=`: where an endpoint is.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Endpoint {
    /// `%defaultroute`: the source address of the default route (resolved at runtime).
    DefaultRoute,
    /// `%any`: any address (responder only).
    Any,
    /// An IP literal.
    Ip(IpAddr),
    /// A DNS name (resolved at runtime, never by `check`).
    Dns(String),
}

impl Endpoint {
    /// Parses `%defaultroute`, `%any`, an IP literal or a DNS name.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "%defaultroute" => return Ok(Self::DefaultRoute),
            "%any" | "%any4" | "%any6" => return Ok(Self::Any),
            _ => {}
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Self::Ip(ip));
        }
        if s.starts_with('%') {
            return Err("expected %defaultroute, %any, an IP address or a host name".into());
        }
        if is_dns_name(s) {
            Ok(Self::Dns(s.to_ascii_lowercase()))
        } else {
            Err("not an IP address or host name".into())
        }
    }

    /// The IP literal, if this endpoint is one.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Self::Ip(ip) => Some(*ip),
            _ => None,
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DefaultRoute => f.write_str("%defaultroute"),
            Self::Any => f.write_str("%any"),
            Self::Ip(ip) => write!(f, "{ip}"),
            Self::Dns(n) => f.write_str(n),
        }
    }
}

/// True for a syntactically valid DNS name (labels of `[A-Za-z0-9-_]`, no empty label).
pub fn is_dns_name(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        // An all-numeric dotted string is a mistyped IPv4 address, not a name.
        && !s.split('.').all(|l| l.bytes().all(|b| b.is_ascii_digit()))
}

/// An IKE identity (`leftid=`, `rightid=`, or an ID in `ipsec.secrets`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Identity {
    /// An IP address (ID_IPV4_ADDR / ID_IPV6_ADDR).
    Ip(IpAddr),
    /// A fully qualified domain name, lower-cased, without the leading `@`.
    Fqdn(String),
    /// `user@domain` (ID_RFC822_ADDR).
    UserFqdn(String),
    /// `@#hex`: an opaque key ID (ID_KEY_ID).
    KeyId(Vec<u8>),
    /// `%any`: matches every identity.
    Any,
}

impl Identity {
    /// Parses an IP, `@fqdn`, `@#hex`, `user@domain`, a plain FQDN, or `%any`.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s == "%any" || s == "%any6" || s == "0.0.0.0" || s == "::" {
            return Ok(Self::Any);
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Self::Ip(ip));
        }
        if let Some(hex) = s.strip_prefix("@#") {
            return decode_hex(hex)
                .filter(|v| !v.is_empty())
                .map(Self::KeyId)
                .ok_or_else(|| "key id after '@#' must be non-empty hex".into());
        }
        if let Some(name) = s.strip_prefix('@') {
            let name = name.strip_prefix('@').unwrap_or(name);
            if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err("expected a name after '@'".into());
            }
            return Ok(Self::Fqdn(name.to_ascii_lowercase()));
        }
        if s.starts_with('%') {
            return Err("unsupported identity (expected an IP, @fqdn, @#hex or %any)".into());
        }
        if let Some((user, domain)) = s.split_once('@') {
            if !user.is_empty() && is_dns_name(domain) {
                return Ok(Self::UserFqdn(s.to_ascii_lowercase()));
            }
            return Err("malformed user@domain identity".into());
        }
        if is_dns_name(s) {
            return Ok(Self::Fqdn(s.to_ascii_lowercase()));
        }
        Err("expected an IP address, @fqdn, @#hex key id, user@domain or FQDN".into())
    }

    /// The identity an endpoint has by default (its IP address).
    pub fn from_endpoint(e: &Endpoint) -> Option<Self> {
        match e {
            Endpoint::Ip(ip) => Some(Self::Ip(*ip)),
            Endpoint::Any => Some(Self::Any),
            Endpoint::Dns(n) => Some(Self::Fqdn(n.clone())),
            Endpoint::DefaultRoute => None,
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip(ip) => write!(f, "{ip}"),
            Self::Fqdn(n) => write!(f, "@{n}"),
            Self::UserFqdn(n) => f.write_str(n),
            Self::KeyId(k) => {
                f.write_str("@#")?;
                k.iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
            Self::Any => f.write_str("%any"),
        }
    }
}

/// Decodes an even-length hex string.
pub fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("8h"), Ok(Duration::from_secs(28800)));
        assert_eq!(parse_duration("28800s"), Ok(Duration::from_secs(28800)));
        assert_eq!(parse_duration("54m"), Ok(Duration::from_secs(3240)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86400)));
        for bad in [
            "",
            "h",
            "8x",
            "-1",
            "1.5h",
            "99999999999999999999",
            "4294967296",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(fmt_duration(Duration::from_secs(540)), "9m");
        assert_eq!(fmt_duration(Duration::from_secs(28800)), "8h");
        assert_eq!(fmt_duration(Duration::from_secs(30)), "30s");
    }

    #[test]
    fn subnets() {
        let v = parse_subnets("10.0.0.0/16,192.168.0.0/24").unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[1].to_string(), "192.168.0.0/24");
        let v = parse_subnets("{10.0.0.0/8 2001:db8::/32}").unwrap();
        assert_eq!(v[1].prefix, 32);
        assert_eq!(parse_subnets("0.0.0.0/0").unwrap()[0].prefix, 0);
        assert_eq!(parse_subnets("198.51.100.7").unwrap()[0].prefix, 32);
        assert!(parse_subnets("10.0.0.1/16")
            .unwrap_err()
            .contains("10.0.0.0/16"));
        assert!(parse_subnets("10.0.0.0/33").is_err());
        assert!(parse_subnets("10.0.0/8").is_err());
        assert!(parse_subnets("{10.0.0.0/8").is_err());
        let n = IpNet::parse("10.1.0.0/16").unwrap();
        assert!(n.contains("10.1.2.3".parse().unwrap()));
        assert!(!n.contains("10.2.0.1".parse().unwrap()));
    }

    #[test]
    fn identities() {
        assert_eq!(
            Identity::parse("192.0.2.1"),
            Ok(Identity::Ip("192.0.2.1".parse().unwrap()))
        );
        assert_eq!(
            Identity::parse("@VPN.Example.com"),
            Ok(Identity::Fqdn("vpn.example.com".into()))
        );
        assert_eq!(
            Identity::parse("vpn.example.com"),
            Ok(Identity::Fqdn("vpn.example.com".into()))
        );
        assert_eq!(
            Identity::parse("@#0a0B"),
            Ok(Identity::KeyId(vec![0x0a, 0x0b]))
        );
        assert_eq!(
            Identity::parse("ops@example.com"),
            Ok(Identity::UserFqdn("ops@example.com".into()))
        );
        assert_eq!(Identity::parse("%any"), Ok(Identity::Any));
        assert!(Identity::parse("@#0g").is_err());
        assert!(Identity::parse("%fromcert").is_err());
        assert!(Identity::parse("1.2.3").is_err());
        assert_eq!(Identity::parse("@#0a0b").unwrap().to_string(), "@#0a0b");
    }

    #[test]
    fn endpoints_and_enums() {
        assert_eq!(Endpoint::parse("%defaultroute"), Ok(Endpoint::DefaultRoute));
        assert_eq!(
            Endpoint::parse("2001:db8::1").unwrap().to_string(),
            "2001:db8::1"
        );
        assert!(Endpoint::parse("%opportunistic").is_err());
        assert!(Endpoint::parse("bad host").is_err());
        assert_eq!(KeyingTries::parse("%forever"), Ok(KeyingTries::Forever));
        assert_eq!(KeyingTries::parse("0"), Ok(KeyingTries::Forever));
        assert_eq!(KeyingTries::parse("3"), Ok(KeyingTries::Count(3)));
        assert!(KeyingTries::parse("-1").is_err());
        assert_eq!(
            Mark::parse("100"),
            Ok(Mark {
                value: 100,
                mask: u32::MAX
            })
        );
        assert_eq!(Mark::parse("0x64/0xff").unwrap().value, 100);
        assert!(Mark::parse("0x100/0xff").is_err());
        assert_eq!(parse_percent("100%"), Ok(100));
        assert!(DpdAction::parse("restart_by_peer").is_ok());
        assert!(Ikev2Setting::parse("maybe").is_err());
    }
}
