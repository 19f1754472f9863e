//! `tun-bridge doctor`: host checks from the Libreswan-on-CentOS setup
//! (forwarding and redirect sysctls, rp_filter, source routing), plus
//! `/dev/net/tun`, privileges, and free IKE ports; for route-based tunnels
//! the effective rp_filter of every tunnel interface (existing TUNs and
//! `--interface` names) and, with several of them (ECMP), the multipath
//! hash policy. Every path is injectable
//! through [`Environment`] so tests run against a fake `/proc/sys` tree.
//!
//! The port probe only binds UDP sockets and closes them; nothing is sent.

use std::fmt;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};

/// Result class of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// Fine.
    Ok,
    /// Works, but not recommended.
    Warn,
    /// Will break tun-bridge.
    Fail,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Self::Ok => "OK",
            Self::Warn => "WARN",
            Self::Fail => "FAIL",
        })
    }
}

/// One check's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// What was checked (a sysctl name, `/dev/net/tun`, ...).
    pub name: String,
    /// Outcome.
    pub status: Status,
    /// What was found and why it matters.
    pub detail: String,
    /// Exact commands or config lines that fix it (empty when OK).
    pub fix: Vec<String>,
}

/// Where the checks look. `Default` is the real system.
#[derive(Clone, Debug)]
pub struct Environment {
    /// Root of the sysctl tree (`/proc/sys`).
    pub proc_sys: PathBuf,
    /// Process status file with `CapEff:` (`/proc/self/status`).
    pub proc_status: PathBuf,
    /// TUN clone device (`/dev/net/tun`).
    pub dev_tun: PathBuf,
    /// Address the port probe binds (`0.0.0.0`).
    pub bind_addr: IpAddr,
    /// UDP ports that must be free (500, 4500).
    pub udp_ports: Vec<u16>,
    /// Network interfaces (`/sys/class/net`): TUN devices have `tun_flags`.
    pub sys_class_net: PathBuf,
    /// Tunnel interfaces named on the command line (`--interface`).
    pub interfaces: Vec<String>,
}

impl Default for Environment {
    fn default() -> Self {
        Self {
            proc_sys: PathBuf::from("/proc/sys"),
            proc_status: PathBuf::from("/proc/self/status"),
            dev_tun: PathBuf::from("/dev/net/tun"),
            bind_addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            udp_ports: vec![500, 4500],
            sys_class_net: PathBuf::from("/sys/class/net"),
            interfaces: Vec::new(),
        }
    }
}

/// File where the suggested sysctl lines should be persisted.
pub const SYSCTL_DROPIN: &str = "/etc/sysctl.d/60-tun-bridge.conf";

/// Linux capability bit numbers used here.
const CAP_NET_BIND_SERVICE: u32 = 10;
const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_RAW: u32 = 13;

struct SysctlRule {
    key: &'static str,
    ok: &'static [&'static str],
    want: &'static str,
    bad: Status,
    why: &'static str,
}

const SYSCTLS: &[SysctlRule] = &[
    SysctlRule {
        key: "net.ipv4.ip_forward",
        ok: &["1"],
        want: "1",
        bad: Status::Fail,
        why: "the gateway must forward packets between the LAN and the tunnel",
    },
    SysctlRule {
        key: "net.ipv4.conf.all.accept_redirects",
        ok: &["0"],
        want: "0",
        bad: Status::Warn,
        why: "ICMP redirects can steer traffic around the tunnel",
    },
    SysctlRule {
        key: "net.ipv4.conf.default.accept_redirects",
        ok: &["0"],
        want: "0",
        bad: Status::Warn,
        why: "ICMP redirects can steer traffic around the tunnel",
    },
    SysctlRule {
        key: "net.ipv4.conf.all.send_redirects",
        ok: &["0"],
        want: "0",
        bad: Status::Warn,
        why: "a VPN gateway should not tell LAN hosts to bypass it",
    },
    SysctlRule {
        key: "net.ipv4.conf.default.send_redirects",
        ok: &["0"],
        want: "0",
        bad: Status::Warn,
        why: "a VPN gateway should not tell LAN hosts to bypass it",
    },
    SysctlRule {
        key: "net.ipv4.conf.all.rp_filter",
        ok: &["0", "2"],
        want: "2",
        bad: Status::Fail,
        why: "strict reverse-path filtering drops asymmetrically routed VPN traffic (use 2 = loose, or 0)",
    },
    SysctlRule {
        key: "net.ipv4.conf.default.rp_filter",
        ok: &["0", "2"],
        want: "2",
        bad: Status::Fail,
        why: "new interfaces (the TUN device) inherit it; strict mode drops asymmetric VPN traffic",
    },
    SysctlRule {
        key: "net.ipv4.conf.all.accept_source_route",
        ok: &["0"],
        want: "0",
        bad: Status::Warn,
        why: "source-routed packets can bypass the tunnel",
    },
    SysctlRule {
        key: "net.ipv4.conf.default.accept_source_route",
        ok: &["0"],
        want: "0",
        bad: Status::Warn,
        why: "source-routed packets can bypass the tunnel",
    },
];

fn sysctl_path(root: &Path, key: &str) -> PathBuf {
    key.split('.')
        .fold(root.to_path_buf(), |p, part| p.join(part))
}

fn check_sysctl(env: &Environment, r: &SysctlRule) -> Finding {
    let path = sysctl_path(&env.proc_sys, r.key);
    let fix = vec![
        format!("sysctl -w {}={}", r.key, r.want),
        format!("echo '{} = {}' >> {SYSCTL_DROPIN}", r.key, r.want),
    ];
    match std::fs::read_to_string(&path) {
        Ok(v) => {
            let v = v.trim();
            if r.ok.contains(&v) {
                Finding {
                    name: r.key.into(),
                    status: Status::Ok,
                    detail: format!("= {v}"),
                    fix: Vec::new(),
                }
            } else {
                Finding {
                    name: r.key.into(),
                    status: r.bad,
                    detail: format!("= {v}: {}", r.why),
                    fix,
                }
            }
        }
        Err(e) => Finding {
            name: r.key.into(),
            status: Status::Warn,
            detail: format!("cannot read {}: {e}", path.display()),
            fix,
        },
    }
}

fn check_tun(env: &Environment) -> Finding {
    use std::os::unix::fs::FileTypeExt;
    let name = env.dev_tun.display().to_string();
    let fix = vec![
        "modprobe tun".to_string(),
        format!("echo tun > /etc/modules-load.d/tun.conf"),
    ];
    match std::fs::metadata(&env.dev_tun) {
        Ok(m) if m.file_type().is_char_device() => Finding {
            name,
            status: Status::Ok,
            detail: "present".into(),
            fix: Vec::new(),
        },
        Ok(_) => Finding {
            name,
            status: Status::Fail,
            detail: "exists but is not a character device".into(),
            fix: vec![format!(
                "rm {0} && mknod {0} c 10 200 && chmod 0666 {0}",
                env.dev_tun.display()
            )],
        },
        Err(e) => Finding {
            name,
            status: Status::Fail,
            detail: format!("missing ({e}): the TUN driver is needed for the tunnel interface"),
            fix,
        },
    }
}

/// Parses the `CapEff:` hex mask of a `/proc/<pid>/status` file.
pub fn parse_cap_eff(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

fn check_caps(env: &Environment) -> Finding {
    let name = "privileges".to_string();
    let caps = match std::fs::read_to_string(&env.proc_status) {
        Ok(s) => parse_cap_eff(&s),
        Err(_) => None,
    };
    let Some(caps) = caps else {
        return Finding {
            name,
            status: Status::Warn,
            detail: format!("cannot read CapEff from {}", env.proc_status.display()),
            fix: Vec::new(),
        };
    };
    let missing: Vec<&str> = [
        (CAP_NET_ADMIN, "CAP_NET_ADMIN"),
        (CAP_NET_BIND_SERVICE, "CAP_NET_BIND_SERVICE"),
        (CAP_NET_RAW, "CAP_NET_RAW"),
    ]
    .iter()
    .filter(|(bit, _)| caps & (1 << bit) == 0)
    .map(|(_, n)| *n)
    .collect();
    if missing.is_empty() {
        Finding {
            name,
            status: Status::Ok,
            detail: "CAP_NET_ADMIN, CAP_NET_BIND_SERVICE, CAP_NET_RAW available".into(),
            fix: Vec::new(),
        }
    } else {
        Finding {
            name,
            status: Status::Fail,
            detail: format!(
                "missing {} (needed to create the TUN device, bind UDP 500/4500 and receive ESP)",
                missing.join(", ")
            ),
            fix: vec![
                "run as root (sudo tun-bridge ...)".into(),
                "or in the systemd unit: AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE".into(),
            ],
        }
    }
}

fn check_port(env: &Environment, port: u16) -> Finding {
    let name = format!("udp/{port}");
    match UdpSocket::bind((env.bind_addr, port)) {
        Ok(sock) => {
            drop(sock);
            Finding {
                name,
                status: Status::Ok,
                detail: format!("free on {}", env.bind_addr),
                fix: Vec::new(),
            }
        }
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Finding {
            name,
            status: Status::Fail,
            detail: format!(
                "in use on {} (another IKE daemon such as pluto or charon?)",
                env.bind_addr
            ),
            fix: vec![
                "systemctl disable --now ipsec        # Libreswan".into(),
                "systemctl disable --now strongswan   # strongSwan".into(),
                format!("ss -ulpn 'sport = :{port}'             # find the owner"),
            ],
        },
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Finding {
            name,
            status: Status::Warn,
            detail: "cannot bind without CAP_NET_BIND_SERVICE; re-run as root to test".into(),
            fix: Vec::new(),
        },
        Err(e) => Finding {
            name,
            status: Status::Warn,
            detail: format!("cannot test: {e}"),
            fix: Vec::new(),
        },
    }
}

fn read_sysctl(env: &Environment, key: &str) -> Option<String> {
    std::fs::read_to_string(sysctl_path(&env.proc_sys, key))
        .ok()
        .map(|v| v.trim().to_string())
}

/// The tunnel interfaces to check: `--interface` names, then every
/// existing TUN device (one with `tun_flags` in `/sys/class/net`).
fn tunnel_interfaces(env: &Environment) -> Vec<String> {
    let mut names = env.interfaces.clone();
    if let Ok(dir) = std::fs::read_dir(&env.sys_class_net) {
        let mut tuns: Vec<String> = dir
            .flatten()
            .filter(|e| e.path().join("tun_flags").exists())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        tuns.sort();
        for t in tuns {
            if !names.contains(&t) {
                names.push(t);
            }
        }
    }
    names
}

/// rp_filter of one tunnel interface: the kernel applies the larger of
/// `conf.all` and `conf.<if>` (an interface not created yet takes
/// `conf.default`). Strict (1) drops what arrives on one tunnel for a
/// source routed over another (ECMP, or a BGP route not learned yet).
fn check_tunnel_rp_filter(env: &Environment, ifname: &str) -> Finding {
    let name = format!("net.ipv4.conf.{ifname}.rp_filter");
    let own = read_sysctl(env, &name);
    let (iface, from) = match &own {
        Some(v) => (v.clone(), name.clone()),
        None => (
            read_sysctl(env, "net.ipv4.conf.default.rp_filter").unwrap_or_default(),
            "net.ipv4.conf.default.rp_filter (the interface does not exist yet)".to_string(),
        ),
    };
    let all = read_sysctl(env, "net.ipv4.conf.all.rp_filter").unwrap_or_default();
    let num = |v: &str| v.parse::<u8>().unwrap_or(0);
    let effective = num(&iface).max(num(&all));
    if effective == 1 {
        // max(all, if) is what counts: a 2 on the interface is enough,
        // whatever conf.all says. tun-bridge creates its interfaces at
        // start, so they take conf.default: that is what to persist.
        let default = "net.ipv4.conf.default.rp_filter";
        let mut fix = Vec::new();
        if own.is_some() {
            fix.push(format!("sysctl -w {name}=2"));
        }
        fix.push(format!("sysctl -w {default}=2"));
        fix.push(format!("echo '{default} = 2' >> {SYSCTL_DROPIN}"));
        Finding {
            name,
            status: Status::Fail,
            detail: format!(
                "strict (max of {from} = {iface} and conf.all = {all}): a tunnel interface needs 0 or 2, or replies arriving over the other tunnel (ECMP) are dropped"
            ),
            fix,
        }
    } else {
        Finding {
            name,
            status: Status::Ok,
            detail: format!("effective {effective} ({from} = {iface}, conf.all = {all})"),
            fix: Vec::new(),
        }
    }
}

/// With several tunnel interfaces (ECMP over AWS Tunnel1 and Tunnel2),
/// the default multipath hash (addresses only) puts every flow between
/// two hosts on one tunnel; policy 1 hashes ports too.
fn check_multipath_hash(env: &Environment, tunnels: usize) -> Finding {
    let key = "net.ipv4.fib_multipath_hash_policy";
    let v = read_sysctl(env, key).unwrap_or_else(|| "0".into());
    if v == "0" && tunnels >= 2 {
        Finding {
            name: key.into(),
            status: Status::Warn,
            detail: format!(
                "= 0 with {tunnels} tunnel interfaces: ECMP spreads by addresses only, so all flows between two hosts use one tunnel; 1 adds ports"
            ),
            fix: vec![
                format!("sysctl -w {key}=1"),
                format!("echo '{key} = 1' >> {SYSCTL_DROPIN}"),
            ],
        }
    } else {
        Finding {
            name: key.into(),
            status: Status::Ok,
            detail: format!("= {v} (matters for ECMP over several tunnels)"),
            fix: Vec::new(),
        }
    }
}

/// Runs every check against `env`.
pub fn run_checks(env: &Environment) -> Vec<Finding> {
    let mut out: Vec<Finding> = SYSCTLS.iter().map(|r| check_sysctl(env, r)).collect();
    let tunnels = tunnel_interfaces(env);
    out.extend(tunnels.iter().map(|i| check_tunnel_rp_filter(env, i)));
    out.push(check_multipath_hash(env, tunnels.len()));
    out.push(check_tun(env));
    out.push(check_caps(env));
    out.extend(env.udp_ports.iter().map(|&p| check_port(env, p)));
    out
}

/// Firewall advice printed after the checks (not verifiable without
/// running firewall tools).
pub const FIREWALL_HINTS: &[&str] = &[
    "allow IKE (UDP 500, 4500) and ESP (IP protocol 50) from the peers:",
    "  firewalld: firewall-cmd --permanent --add-service=ipsec && firewall-cmd --reload",
    "  nftables:  nft add rule inet filter input udp dport '{ 500, 4500 }' accept; nft add rule inet filter input meta l4proto esp accept",
    "  iptables:  iptables -A INPUT -p udp -m multiport --dports 500,4500 -j ACCEPT; iptables -A INPUT -p esp -j ACCEPT",
    "allow forwarding between the LAN and the tunnel interface, and clamp TCP MSS on it:",
    "  iptables -t mangle -A FORWARD -o <tunnel> -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu",
];

/// Prints findings and hints; returns true when no check failed.
pub fn report(findings: &[Finding], out: &mut dyn Write) -> io::Result<bool> {
    for f in findings {
        writeln!(out, "{:<4} {} {}", f.status, f.name, f.detail)?;
        for fix in &f.fix {
            writeln!(out, "       fix: {fix}")?;
        }
    }
    writeln!(out, "hints (firewall):")?;
    for h in FIREWALL_HINTS {
        writeln!(out, "  {h}")?;
    }
    let fails = findings.iter().filter(|f| f.status == Status::Fail).count();
    let warns = findings.iter().filter(|f| f.status == Status::Warn).count();
    writeln!(out, "{fails} failure(s), {warns} warning(s)")?;
    Ok(fails == 0)
}

/// `tun-bridge doctor` on the real system, with the tunnel interfaces
/// named by `--interface`.
pub fn run(interfaces: &[String], out: &mut dyn Write) -> io::Result<bool> {
    let env = Environment {
        interfaces: interfaces.to_vec(),
        ..Environment::default()
    };
    report(&run_checks(&env), out)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Tree(PathBuf);

    impl Tree {
        fn new(tag: &str) -> Self {
            let p = std::env::temp_dir().join(format!("tb-doctor-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            Self(p)
        }
        fn set(&self, key: &str, v: &str) {
            let path = sysctl_path(&self.0.join("sys"), key);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, format!("{v}\n")).unwrap();
        }
        fn env(&self, caps: &str) -> Environment {
            std::fs::write(
                self.0.join("status"),
                format!("Name:\tx\nCapEff:\t{caps}\n"),
            )
            .unwrap();
            Environment {
                proc_sys: self.0.join("sys"),
                proc_status: self.0.join("status"),
                dev_tun: PathBuf::from("/dev/null"),
                bind_addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
                udp_ports: Vec::new(),
                sys_class_net: self.0.join("net"),
                interfaces: Vec::new(),
            }
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn good(t: &Tree) {
        for r in SYSCTLS {
            t.set(r.key, r.want);
        }
    }

    fn by_name<'a>(f: &'a [Finding], n: &str) -> &'a Finding {
        f.iter().find(|x| x.name == n).unwrap()
    }

    #[test]
    fn all_good() {
        let t = Tree::new("good");
        good(&t);
        t.set("net.ipv4.conf.all.rp_filter", "0");
        let f = run_checks(&t.env("000001ffffffffff"));
        assert!(f.iter().all(|x| x.status == Status::Ok), "{f:#?}");
        let mut out = Vec::new();
        assert!(report(&f, &mut out).unwrap());
        assert!(String::from_utf8(out)
            .unwrap()
            .contains("0 failure(s), 0 warning(s)"));
    }

    #[test]
    fn centos_defaults_fail_with_fixes() {
        let t = Tree::new("bad");
        good(&t);
        t.set("net.ipv4.ip_forward", "0");
        t.set("net.ipv4.conf.default.rp_filter", "1");
        t.set("net.ipv4.conf.all.send_redirects", "1");
        std::fs::remove_file(sysctl_path(
            &t.0.join("sys"),
            "net.ipv4.conf.all.accept_source_route",
        ))
        .unwrap();
        let f = run_checks(&t.env("0000000000000000"));
        let fwd = by_name(&f, "net.ipv4.ip_forward");
        assert_eq!(fwd.status, Status::Fail);
        assert_eq!(fwd.fix[0], "sysctl -w net.ipv4.ip_forward=1");
        let rp = by_name(&f, "net.ipv4.conf.default.rp_filter");
        assert_eq!(rp.status, Status::Fail);
        assert_eq!(rp.fix[0], "sysctl -w net.ipv4.conf.default.rp_filter=2");
        assert_eq!(
            by_name(&f, "net.ipv4.conf.all.send_redirects").status,
            Status::Warn
        );
        let src = by_name(&f, "net.ipv4.conf.all.accept_source_route");
        assert_eq!(src.status, Status::Warn);
        assert!(src.detail.starts_with("cannot read"));
        let caps = by_name(&f, "privileges");
        assert_eq!(caps.status, Status::Fail);
        assert!(caps.detail.contains("CAP_NET_ADMIN"));
        let mut out = Vec::new();
        assert!(!report(&f, &mut out).unwrap());
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("FAIL net.ipv4.ip_forward = 0"), "{text}");
        assert!(
            text.contains("\nOK   net.ipv4.conf.all.rp_filter = 2\n"),
            "{text}"
        );
        assert!(text.contains(
            "fix: echo 'net.ipv4.conf.default.rp_filter = 2' >> /etc/sysctl.d/60-tun-bridge.conf"
        ));
    }

    #[test]
    fn tun_device_and_ports() {
        let t = Tree::new("tun");
        good(&t);
        let mut env = t.env("3400");
        assert_eq!(check_caps(&env).status, Status::Ok);
        env.dev_tun = t.0.join("tun");
        assert_eq!(check_tun(&env).status, Status::Fail);
        std::fs::write(&env.dev_tun, "").unwrap();
        let f = check_tun(&env);
        assert!(f.detail.contains("not a character device"));
        // An occupied port is reported as FAIL; a free one as OK.
        let busy = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = busy.local_addr().unwrap().port();
        assert_eq!(check_port(&env, port).status, Status::Fail);
        drop(busy);
        assert_eq!(check_port(&env, port).status, Status::Ok);
    }

    #[test]
    fn cap_eff_parsing() {
        assert_eq!(
            parse_cap_eff("CapInh:\t0\nCapEff:\t0000000000003000\n"),
            Some(0x3000)
        );
        assert_eq!(parse_cap_eff("nothing"), None);
    }

    #[test]
    fn route_based_tunnel_interfaces() {
        let t = Tree::new("route");
        good(&t);
        // Two TUNs exist (ipsec1 strict, ipsec2 loose); ipsec3 is named on
        // the command line and does not exist yet.
        for (dev, tun) in [("ipsec1", true), ("ipsec2", true), ("wan0", false)] {
            let d = t.0.join("net").join(dev);
            std::fs::create_dir_all(&d).unwrap();
            if tun {
                std::fs::write(d.join("tun_flags"), "0x1001\n").unwrap();
            }
        }
        t.set("net.ipv4.conf.all.rp_filter", "0");
        t.set("net.ipv4.conf.ipsec1.rp_filter", "1");
        t.set("net.ipv4.conf.ipsec2.rp_filter", "2");
        t.set("net.ipv4.fib_multipath_hash_policy", "0");
        let mut env = t.env("000001ffffffffff");
        env.interfaces = vec!["ipsec3".into()];
        let f = run_checks(&env);
        let names: Vec<&str> = f
            .iter()
            .map(|x| x.name.as_str())
            .filter(|n| n.contains("ipsec") || n.contains("wan0"))
            .collect();
        assert_eq!(
            names,
            [
                "net.ipv4.conf.ipsec3.rp_filter",
                "net.ipv4.conf.ipsec1.rp_filter",
                "net.ipv4.conf.ipsec2.rp_filter"
            ]
        );
        let rp1 = by_name(&f, "net.ipv4.conf.ipsec1.rp_filter");
        assert_eq!(rp1.status, Status::Fail);
        assert_eq!(rp1.fix[0], "sysctl -w net.ipv4.conf.ipsec1.rp_filter=2");
        // The kernel applies max(conf.all, conf.<if>).
        let rp2 = by_name(&f, "net.ipv4.conf.ipsec2.rp_filter");
        assert_eq!(rp2.status, Status::Ok);
        assert!(rp2.detail.starts_with("effective 2"), "{}", rp2.detail);
        // Not created yet: conf.default (2) decides.
        assert_eq!(
            by_name(&f, "net.ipv4.conf.ipsec3.rp_filter").status,
            Status::Ok
        );
        let hash = by_name(&f, "net.ipv4.fib_multipath_hash_policy");
        assert_eq!(hash.status, Status::Warn);
        assert_eq!(
            hash.fix[0],
            "sysctl -w net.ipv4.fib_multipath_hash_policy=1"
        );
        // Strict conf.all and default: every interface without its own 2.
        t.set("net.ipv4.conf.all.rp_filter", "1");
        t.set("net.ipv4.conf.default.rp_filter", "1");
        t.set("net.ipv4.fib_multipath_hash_policy", "1");
        let f = run_checks(&env);
        let rp3 = by_name(&f, "net.ipv4.conf.ipsec3.rp_filter");
        assert_eq!(rp3.status, Status::Fail);
        assert!(rp3
            .fix
            .contains(&"sysctl -w net.ipv4.conf.default.rp_filter=2".to_string()));
        let status = |n: &str| by_name(&f, n).status;
        assert_eq!(status("net.ipv4.conf.ipsec1.rp_filter"), Status::Fail);
        // max(1, 2) = 2: the interface's own loose setting wins.
        assert_eq!(status("net.ipv4.conf.ipsec2.rp_filter"), Status::Ok);
        assert_eq!(status("net.ipv4.fib_multipath_hash_policy"), Status::Ok);
    }
}
