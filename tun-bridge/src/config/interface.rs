//! Route-based tunnels in configuration terms: Libreswan's
//! `ipsec-interface=` / `interface-ip=`, the strongSwan `ipsec-vti.sh`
//! updown shape (`ipsec-vti.sh ID REMOTE/30 LOCAL/30`, interface `vtiID`),
//! and the rule that makes a connection route-based: 0.0.0.0/0 (or ::/0)
//! selectors on both sides plus an interface (`ipsec-interface=`,
//! `mark=`/an updown with `-m`, `vti-interface=`, an `ipsec-vti.sh`).
//!
//! A route-based tunnel gets its interface, its inside address and an MTU
//! of [`ROUTE_BASED_MTU`] unless `mtu=` says otherwise; tun-bridge installs
//! no routes for it (a routing daemon such as BIRD or FRR owns the table),
//! and the interface's carrier follows the Child SA.

use std::fmt;

use super::values::{parse_u32, IfAddr, IpNet};

/// The MTU AWS recommends on a route-based (VTI) tunnel interface.
pub const ROUTE_BASED_MTU: u16 = 1399;

/// Largest `ipsec-interface=` number whose name `ipsecN` fits IFNAMSIZ.
pub const MAX_IPSEC_INTERFACE: u32 = 999_999_999;

/// Where a connection's tunnel interface comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InterfaceOrigin {
    /// `ipsec-interface=N` (Libreswan XFRMi): interface `ipsecN`.
    IpsecInterface(u32),
    /// An AWS `aws-updown.sh -ln NAME ...` in `leftupdown=`.
    AwsUpdown,
    /// An `ipsec-vti.sh ID REMOTE LOCAL` in `leftupdown=`: interface `vtiID`.
    IpsecVti(u32),
    /// `vti-interface=NAME`.
    VtiInterface,
    /// `mark=` alone: the tunnel's default interface name.
    Mark,
}

impl fmt::Display for InterfaceOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::IpsecInterface(n) => write!(f, "ipsec-interface={n}"),
            Self::AwsUpdown => f.write_str("aws-updown.sh -ln"),
            Self::IpsecVti(n) => write!(f, "ipsec-vti.sh {n}"),
            Self::VtiInterface => f.write_str("vti-interface="),
            Self::Mark => f.write_str("mark="),
        }
    }
}

/// Parses `ipsec-interface=`: `yes` (interface 1), `no` (none), or a number.
pub fn parse_ipsec_interface(s: &str) -> Result<Option<u32>, String> {
    match s {
        "yes" => Ok(Some(1)),
        "no" => Ok(None),
        _ => match parse_u32(s) {
            Ok(n) if n <= MAX_IPSEC_INTERFACE => Ok(Some(n)),
            _ => Err(format!(
                "expected yes, no or an interface number 0..={MAX_IPSEC_INTERFACE}"
            )),
        },
    }
}

/// The interface name of `ipsec-interface=N`.
pub fn ipsec_ifname(n: u32) -> String {
    format!("ipsec{n}")
}

/// The settings an `ipsec-vti.sh` updown command gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VtiUpdown {
    /// The tunnel id: interface `vti<id>`.
    pub id: u32,
    /// The peer's inside address (second argument).
    pub remote_inside: IfAddr,
    /// This end's inside address (third argument).
    pub local_inside: IfAddr,
}

/// Interprets an `ipsec-vti.sh ID REMOTE/PREFIX LOCAL/PREFIX` command line
/// (the strongSwan VTI script of the AWS and GCP guides). `None` when the
/// command is some other script.
pub fn parse_vti_updown(cmd: &str) -> Option<Result<VtiUpdown, String>> {
    let mut words = cmd.split_whitespace();
    if !words.next()?.ends_with("ipsec-vti.sh") {
        return None;
    }
    let args: Vec<&str> = words.collect();
    let [id, remote, local] = args[..] else {
        return Some(Err(format!(
            "expected ipsec-vti.sh ID REMOTE/PREFIX LOCAL/PREFIX, got {} argument(s)",
            args.len()
        )));
    };
    Some((|| {
        Ok(VtiUpdown {
            id: parse_u32(id).map_err(|e| format!("tunnel id {id}: {e}"))?,
            remote_inside: IfAddr::parse(remote).map_err(|e| format!("{remote}: {e}"))?,
            local_inside: IfAddr::parse(local).map_err(|e| format!("{local}: {e}"))?,
        })
    })())
}

/// True when `nets` is a non-empty list of default prefixes (0.0.0.0/0,
/// ::/0): the selectors of a route-based tunnel.
pub fn all_default(nets: &[IpNet]) -> bool {
    !nets.is_empty() && nets.iter().all(|n| n.prefix == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipsec_interface_values() {
        assert_eq!(parse_ipsec_interface("yes"), Ok(Some(1)));
        assert_eq!(parse_ipsec_interface("no"), Ok(None));
        assert_eq!(parse_ipsec_interface("7"), Ok(Some(7)));
        assert_eq!(parse_ipsec_interface("0"), Ok(Some(0)));
        assert!(parse_ipsec_interface("maybe").is_err());
        assert!(parse_ipsec_interface("-1").is_err());
        assert!(parse_ipsec_interface("1000000000").is_err());
        assert_eq!(ipsec_ifname(MAX_IPSEC_INTERFACE).len(), 14);
    }

    #[test]
    fn vti_updown() {
        let v = parse_vti_updown("/etc/strongswan/ipsec-vti.sh 2 169.254.10.1/30 169.254.10.2/30")
            .unwrap()
            .unwrap();
        assert_eq!(v.id, 2);
        assert_eq!(v.remote_inside.to_string(), "169.254.10.1/30");
        assert_eq!(v.local_inside.to_string(), "169.254.10.2/30");
        assert!(parse_vti_updown("/etc/ipsec.d/aws-updown.sh -ln x").is_none());
        assert!(parse_vti_updown("/etc/ipsec-vti.sh").unwrap().is_err());
        assert!(parse_vti_updown("ipsec-vti.sh x 1.2.3.4/30 1.2.3.5/30")
            .unwrap()
            .is_err());
        assert!(parse_vti_updown("ipsec-vti.sh 1 1.2.3.4/33 1.2.3.5/30")
            .unwrap()
            .is_err());
    }

    #[test]
    fn default_selectors() {
        let p = |s: &str| IpNet::parse(s).unwrap();
        assert!(all_default(&[p("0.0.0.0/0")]));
        assert!(all_default(&[p("0.0.0.0/0"), p("::/0")]));
        assert!(!all_default(&[]));
        assert!(!all_default(&[p("0.0.0.0/0"), p("10.0.0.0/8")]));
    }
}
