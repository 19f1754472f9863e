//! BGP daemons in lab namespaces: BIRD 2 (`bird`) and FRR (`zebra` +
//! `bgpd`), each instance with its own configuration, control sockets and
//! log in the lab's state directory, started by recorded PID (stopped with
//! the lab). Used by the route-based tunnel tests and `demo --bgp`.
//!
//! [`BgpPeer`] describes one eBGP session the way AWS runs it on a tunnel:
//! the inside addresses of a /30 (or /126), the neighbour's ASN, hold time
//! 30 s. Both daemons announce `networks` (not installed locally) and
//! install what they learn into the kernel, with ECMP across sessions
//! (BIRD `merge paths`, FRR `maximum-paths`).

use crate::{io_err, run_with_timeout, Lab, LabError, Result};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The BIRD 2 daemon.
pub const BIRD: &str = "/usr/sbin/bird";
/// BIRD's client.
pub const BIRDC: &str = "/usr/sbin/birdc";
/// FRR's daemons directory.
pub const FRR_DIR: &str = "/usr/lib/frr";
/// The AWS side's default ASN.
pub const AWS_ASN: u32 = 64512;
/// AWS's BGP hold time on VPN tunnels (seconds).
pub const AWS_HOLD_TIME: u32 = 30;

/// `true` if BIRD 2 and FRR's zebra/bgpd/vtysh are installed.
pub fn have_bgp_daemons() -> bool {
    Path::new(BIRD).exists()
        && Path::new(BIRDC).exists()
        && Path::new(FRR_DIR).join("bgpd").exists()
        && Path::new(FRR_DIR).join("zebra").exists()
        && Path::new("/usr/bin/vtysh").exists()
}

/// One eBGP session over a tunnel's inside addresses.
#[derive(Clone, Debug)]
pub struct BgpPeer {
    /// Session name (letters, digits, `_`).
    pub name: String,
    /// Our inside address (no prefix length).
    pub local: String,
    /// The neighbour's inside address.
    pub neighbor: String,
    /// The neighbour's ASN.
    pub asn: u32,
}

/// A BGP speaker's settings.
#[derive(Clone, Debug)]
pub struct BgpSpeaker {
    /// Router id (an IPv4 address).
    pub router_id: String,
    /// Our ASN.
    pub asn: u32,
    /// Sessions.
    pub peers: Vec<BgpPeer>,
    /// Prefixes announced (IPv4 and IPv6).
    pub networks: Vec<String>,
    /// Hold time in seconds (keepalive: a third).
    pub hold_time: u32,
}

fn check_word(what: &str, v: &str) -> Result<()> {
    let ok = !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b':' | b'/' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(LabError::Invalid(format!("BGP {what} {v:?}")))
    }
}

impl BgpSpeaker {
    fn validate(&self) -> Result<()> {
        check_word("router id", &self.router_id)?;
        for p in &self.peers {
            check_word("session name", &p.name)?;
            check_word("local address", &p.local)?;
            check_word("neighbor", &p.neighbor)?;
        }
        for n in &self.networks {
            check_word("network", n)?;
        }
        Ok(())
    }

    /// `bird.conf`: kernel protocols (ECMP, only BGP routes exported),
    /// the announced prefixes as static blackholes (never exported to the
    /// kernel), one `bgp` protocol per session.
    pub fn bird_conf(&self) -> Result<String> {
        self.validate()?;
        let mut s = String::new();
        let _ = writeln!(s, "router id {};", self.router_id);
        let _ = writeln!(s, "protocol device {{ scan time 2; }}");
        for (af, fam) in [("ipv4", 4), ("ipv6", 6)] {
            let _ = writeln!(
                s,
                "protocol kernel kernel{fam} {{ scan time 2; merge paths yes; {af} {{ import none; export where source = RTS_BGP; }}; }}"
            );
            let nets: Vec<&String> = self
                .networks
                .iter()
                .filter(|n| n.contains(':') == (fam == 6))
                .collect();
            let _ = write!(s, "protocol static announce{fam} {{ {af};");
            for n in nets {
                let _ = write!(s, " route {n} blackhole;");
            }
            let _ = writeln!(s, " }}");
        }
        for p in &self.peers {
            let af = if p.neighbor.contains(':') {
                "ipv6"
            } else {
                "ipv4"
            };
            let _ = writeln!(
                s,
                "protocol bgp {} {{\n  local {} as {};\n  neighbor {} as {};\n  direct;\n  check link yes;\n  hold time {};\n  keepalive time {};\n  connect delay time 1;\n  connect retry time 3;\n  error wait time 1, 5;\n  {af} {{ import all; export where source = RTS_STATIC; }};\n}}",
                p.name,
                p.local,
                self.asn,
                p.neighbor,
                p.asn,
                self.hold_time,
                (self.hold_time / 3).max(1)
            );
        }
        Ok(s)
    }

    /// `frr.conf` for zebra and bgpd: one neighbour per session activated
    /// only in its address family, `maximum-paths` for ECMP, the announced
    /// prefixes as `network` statements (no RIB check).
    pub fn frr_conf(&self) -> Result<String> {
        self.validate()?;
        let mut s = String::new();
        let _ = writeln!(s, "frr defaults traditional\nlog stdout informational\n!");
        let _ = writeln!(s, "router bgp {}", self.asn);
        let _ = writeln!(s, " bgp router-id {}", self.router_id);
        let _ = writeln!(s, " no bgp ebgp-requires-policy");
        let _ = writeln!(s, " no bgp network import-check");
        let _ = writeln!(s, " no bgp default ipv4-unicast");
        for p in &self.peers {
            let _ = writeln!(s, " neighbor {} remote-as {}", p.neighbor, p.asn);
            let _ = writeln!(
                s,
                " neighbor {} timers {} {}",
                p.neighbor,
                (self.hold_time / 3).max(1),
                self.hold_time
            );
            let _ = writeln!(s, " neighbor {} timers connect 3", p.neighbor);
            let _ = writeln!(s, " neighbor {} update-source {}", p.neighbor, p.local);
        }
        for (af, v6) in [("ipv4", false), ("ipv6", true)] {
            let _ = writeln!(s, " address-family {af} unicast");
            let _ = writeln!(s, "  maximum-paths 8");
            for n in self.networks.iter().filter(|n| n.contains(':') == v6) {
                let _ = writeln!(s, "  network {n}");
            }
            for p in self.peers.iter().filter(|p| p.neighbor.contains(':') == v6) {
                let _ = writeln!(s, "  neighbor {} activate", p.neighbor);
            }
            let _ = writeln!(s, " exit-address-family");
        }
        let _ = writeln!(s, "!");
        Ok(s)
    }
}

/// A running BIRD.
#[derive(Debug)]
pub struct Bird {
    ns: String,
    dir: PathBuf,
    pid: u32,
}

impl Bird {
    /// Writes `bird-<tag>.conf` and starts `bird -f` in `ns`.
    pub fn start(lab: &mut Lab, ns: &str, tag: &str, speaker: &BgpSpeaker) -> Result<Bird> {
        check_word("tag", tag)?;
        let dir = lab.state_dir().join(format!("bird-{tag}"));
        std::fs::create_dir_all(&dir).map_err(io_err(format!("mkdir {dir:?}")))?;
        let conf = dir.join("bird.conf");
        std::fs::write(&conf, speaker.bird_conf()?).map_err(io_err("write bird.conf"))?;
        let ctl = dir.join("bird.ctl");
        let _ = std::fs::remove_file(&ctl);
        let (c, s) = (conf.display().to_string(), ctl.display().to_string());
        let pid = lab.spawn(ns, &[BIRD, "-f", "-c", &c, "-s", &s], &dir.join("bird.log"))?;
        let me = Bird {
            ns: ns.into(),
            dir,
            pid,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if ctl.exists() {
                return Ok(me);
            }
            if !lab.is_running(pid) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(LabError::Timeout {
            what: format!("BIRD control socket in {ns}: {}", me.log()),
        })
    }

    /// PID.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The daemon's output.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("bird.log")).unwrap_or_default()
    }

    /// `birdc -s CTL <args>` (bounded).
    pub fn birdc(&self, args: &[&str]) -> Result<String> {
        let mut c = Command::new(BIRDC);
        c.arg("-s").arg(self.dir.join("bird.ctl")).args(args);
        let out = run_with_timeout(&mut c, Duration::from_secs(5))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `true` when session `name` is Established.
    pub fn established(&self, name: &str) -> bool {
        self.birdc(&["show", "protocols", name])
            .is_ok_and(|o| o.contains("Established"))
    }

    /// Namespace.
    pub fn netns(&self) -> &str {
        &self.ns
    }
}

/// A running FRR (zebra and bgpd with private sockets).
#[derive(Debug)]
pub struct Frr {
    ns: String,
    dir: PathBuf,
    pids: Vec<u32>,
}

impl Frr {
    /// Writes `frr-<tag>/frr.conf` and starts zebra, then bgpd, in `ns`.
    pub fn start(lab: &mut Lab, ns: &str, tag: &str, speaker: &BgpSpeaker) -> Result<Frr> {
        check_word("tag", tag)?;
        let dir = lab.state_dir().join(format!("frr-{tag}"));
        std::fs::create_dir_all(&dir).map_err(io_err(format!("mkdir {dir:?}")))?;
        let conf = dir.join("frr.conf");
        std::fs::write(&conf, speaker.frr_conf()?).map_err(io_err("write frr.conf"))?;
        // The daemons drop privileges to frr:frr (their vty sockets belong
        // to the frrvty group): the directory must be theirs.
        crate::run_checked(
            "chown",
            &["-R", "frr:frr", &dir.display().to_string()],
            Duration::from_secs(5),
        )?;
        let d = dir.display().to_string();
        let zserv = format!("{d}/zserv.api");
        let c = conf.display().to_string();
        let mut me = Frr {
            ns: ns.into(),
            dir: dir.clone(),
            pids: Vec::new(),
        };
        for daemon in ["zebra", "bgpd"] {
            let bin = format!("{FRR_DIR}/{daemon}");
            let pidf = format!("{d}/{daemon}.pid");
            let mut argv = vec![
                bin.as_str(),
                "-f",
                &c,
                "-i",
                &pidf,
                "-z",
                &zserv,
                "--vty_socket",
                &d,
                "-A",
                "127.0.0.1",
            ];
            if daemon == "bgpd" {
                argv.extend(["-p", "179"]);
            }
            let pid = lab.spawn(ns, &argv, &dir.join(format!("{daemon}.log")))?;
            me.pids.push(pid);
            let sock = dir.join(format!("{daemon}.vty"));
            let deadline = Instant::now() + Duration::from_secs(10);
            while !sock.exists() {
                if Instant::now() > deadline || !lab.is_running(pid) {
                    return Err(LabError::Timeout {
                        what: format!("FRR {daemon} vty socket in {ns}: {}", me.log()),
                    });
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(me)
    }

    /// PIDs (zebra, bgpd).
    pub fn pids(&self) -> &[u32] {
        &self.pids
    }

    /// The daemons' output.
    pub fn log(&self) -> String {
        ["zebra", "bgpd"]
            .iter()
            .map(|d| std::fs::read_to_string(self.dir.join(format!("{d}.log"))).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// `vtysh -c <command>` against this instance (bounded).
    pub fn vtysh(&self, command: &str) -> Result<String> {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns, "vtysh", "--vty_socket"])
            .arg(&self.dir)
            .args(["-c", command]);
        let out = run_with_timeout(&mut c, Duration::from_secs(5))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `true` when the session to `neighbor` is Established.
    pub fn established(&self, neighbor: &str) -> bool {
        self.vtysh(&format!("show bgp neighbors {neighbor}"))
            .is_ok_and(|o| o.contains("BGP state = Established"))
    }
}

/// Waits (bounded) until `pred` holds, polling every 200 ms.
pub fn wait_until(timeout: Duration, mut pred: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if pred() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn speaker() -> BgpSpeaker {
        BgpSpeaker {
            router_id: "169.254.10.2".into(),
            asn: 65000,
            peers: vec![
                BgpPeer {
                    name: "aws1".into(),
                    local: "169.254.10.2".into(),
                    neighbor: "169.254.10.1".into(),
                    asn: AWS_ASN,
                },
                BgpPeer {
                    name: "aws1v6".into(),
                    local: "fd00:a9fe:10::2".into(),
                    neighbor: "fd00:a9fe:10::1".into(),
                    asn: AWS_ASN,
                },
            ],
            networks: vec!["10.1.0.0/24".into(), "2001:db8:1::/48".into()],
            hold_time: AWS_HOLD_TIME,
        }
    }

    #[test]
    fn bird_config_has_aws_parameters() {
        let c = speaker().bird_conf().unwrap();
        assert!(c.contains("local 169.254.10.2 as 65000;\n  neighbor 169.254.10.1 as 64512;"));
        assert!(c.contains("hold time 30;\n  keepalive time 10;"));
        assert!(c.contains("protocol static announce4 { ipv4; route 10.1.0.0/24 blackhole; }"));
        assert!(c.contains("protocol static announce6 { ipv6; route 2001:db8:1::/48 blackhole; }"));
        assert!(c.contains("ipv6 { import all; export where source = RTS_STATIC; }"));
    }

    #[test]
    fn frr_config_activates_each_session_in_its_family() {
        let c = speaker().frr_conf().unwrap();
        assert!(c.contains(
            " neighbor 169.254.10.1 remote-as 64512\n neighbor 169.254.10.1 timers 10 30\n"
        ));
        assert!(c.contains(" address-family ipv6 unicast\n  maximum-paths 8\n  network 2001:db8:1::/48\n  neighbor fd00:a9fe:10::1 activate\n"));
        let mut bad = speaker();
        bad.networks.push("10.0.0.0/8; }".into());
        assert!(bad.frr_conf().is_err());
    }
}
