//! `tun-bridge demo`: a self-contained site-to-site tunnel between network
//! namespaces (root only).
//!
//! Builds, with [`netns_lab`], an "onprem" host behind gateway A (like an
//! OpenStack site, 10.1.0.0/24) and a "vpc" host behind gateway B (like an
//! AWS VPC, 10.2.0.0/24), the gateways joined by a WAN on documentation
//! addresses (192.0.2.0/24). It writes an AWS-style `ipsec.conf` /
//! `ipsec.secrets` pair per gateway (random PSK; A initiates with
//! `auto=start`, B waits with `auto=add`), runs one `tun-bridge up` per
//! gateway namespace, waits for the tunnel over the control sockets, pings
//! across, moves 32 MiB over TCP from host to host (SHA-256 checked),
//! prints both status tables and shuts everything down: SIGTERM by PID,
//! exit status 0 expected, namespaces deleted also on error.

use crate::control::{self, Request, StatusReport, TunnelState};
use netns_lab::traffic::{tcp_transfer, TransferReport};
use netns_lab::{Lab, LabError, TwoSites, TwoSitesConfig};
use std::fmt;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// Bytes moved from the onprem host to the vpc host.
pub const TRANSFER_BYTES: u64 = 32 << 20;
/// How long the tunnel may take to come up.
pub const TUNNEL_TIMEOUT: Duration = Duration::from_secs(30);
/// Upper bound of the transfer.
pub const TRANSFER_TIMEOUT: Duration = Duration::from_secs(120);
/// Grace period between SIGTERM and SIGKILL at shutdown.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// IKE proposal of the demo tunnel (AWS accepts it).
pub const DEMO_IKE: &str = "aes128gcm16-prfsha256-modp2048";
/// ESP proposal of the demo tunnel (PFS group as AWS requires).
pub const DEMO_ESP: &str = "aes128gcm16-modp2048";

/// Why the demo failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum DemoError {
    /// Not running as root (network namespaces need it).
    NotRoot,
    /// The path of this executable is unknown.
    CurrentExe(std::io::Error),
    /// Building the namespaces or running a command failed.
    Lab(LabError),
    /// Writing the configuration files failed.
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A `tun-bridge up` process exited early.
    Exited {
        /// Which gateway.
        gateway: &'static str,
        /// Its exit status.
        status: String,
        /// Tail of its log.
        log: String,
    },
    /// The tunnel was not established in time.
    TunnelTimeout {
        /// Which gateway did not report it.
        gateway: &'static str,
        /// Its last status answer (or why there was none).
        last: String,
        /// Tail of its log.
        log: String,
    },
    /// A ping across the tunnel got no answer.
    Ping {
        /// Source namespace role.
        from: &'static str,
        /// Destination address.
        to: String,
    },
    /// The TCP transfer failed or arrived damaged.
    Transfer(String),
    /// `demo --bgp`: BIRD did not start, or BGP or the ECMP route did not
    /// come, or traffic did not move to the surviving tunnel.
    Bgp(String),
    /// A gateway did not exit with status 0 after SIGTERM.
    Shutdown {
        /// Which gateway.
        gateway: &'static str,
        /// What happened.
        status: String,
        /// Tail of its log.
        log: String,
    },
}

impl fmt::Display for DemoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DemoError::NotRoot => f.write_str(
                "the demo needs root (it creates network namespaces): run it with sudo",
            ),
            DemoError::CurrentExe(e) => write!(f, "cannot find the tun-bridge executable: {e}"),
            DemoError::Lab(e) => write!(f, "lab: {e}"),
            DemoError::Write { path, source } => write!(f, "write {}: {source}", path.display()),
            DemoError::Exited {
                gateway,
                status,
                log,
            } => write!(
                f,
                "tun-bridge on {gateway} exited early ({status}); log tail:\n{log}"
            ),
            DemoError::TunnelTimeout { gateway, last, log } => write!(
                f,
                "tunnel not established on {gateway} within {TUNNEL_TIMEOUT:?} (last status: {last}); log tail:\n{log}"
            ),
            DemoError::Ping { from, to } => write!(f, "no ping reply from {to} (sent from {from})"),
            DemoError::Transfer(e) => write!(f, "TCP transfer: {e}"),
            DemoError::Bgp(e) => write!(f, "BGP: {e}"),
            DemoError::Shutdown {
                gateway,
                status,
                log,
            } => write!(
                f,
                "tun-bridge on {gateway} did not shut down cleanly ({status}); log tail:\n{log}"
            ),
        }
    }
}

impl std::error::Error for DemoError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DemoError::CurrentExe(e) | DemoError::Write { source: e, .. } => Some(e),
            DemoError::Lab(e) => Some(e),
            _ => None,
        }
    }
}

impl From<LabError> for DemoError {
    fn from(e: LabError) -> Self {
        DemoError::Lab(e)
    }
}

/// One side of the demo tunnel.
pub(crate) struct Side {
    /// `gateway A (onprem)` / `gateway B (vpc)`.
    pub(crate) label: &'static str,
    pub(crate) ns: String,
    pub(crate) conf: PathBuf,
    pub(crate) secrets: PathBuf,
    pub(crate) control: PathBuf,
    pub(crate) log: PathBuf,
    pub(crate) pid: Option<u32>,
}

pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

pub(crate) fn write_file(path: &Path, text: &str, mode: u32) -> Result<(), DemoError> {
    let err = |source| DemoError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(err)?;
    f.write_all(text.as_bytes()).map_err(err)
}

/// A random PSK of 32 characters from AWS's allowed set (letters, digits).
pub(crate) fn random_psk() -> Zeroizing<String> {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut raw = Zeroizing::new([0u8; 32]);
    // 62 * 4 = 248: reject bytes >= 248 to stay uniform.
    let mut out = Zeroizing::new(String::with_capacity(32));
    while out.len() < 32 {
        getrandom::getrandom(&mut raw[..]).expect("OS random number generator");
        for &b in raw.iter() {
            if b < 248 && out.len() < 32 {
                out.push(CHARS[usize::from(b) % CHARS.len()] as char);
            }
        }
    }
    out
}

/// `ipsec.conf` of one gateway, in the layout of AWS's strongSwan sample
/// (one `conn Tunnel1`), IKEv2, subnet selectors.
pub fn gateway_conf(
    auto: &str,
    local: &str,
    remote: &str,
    local_net: &str,
    remote_net: &str,
    dpd_action: &str,
) -> String {
    format!(
        "# ipsec.conf written by `tun-bridge demo` (AWS Site-to-Site VPN layout)
config setup
\tuniqueids = no

conn Tunnel1
\tauto={auto}
\tleft=%defaultroute
\tleftid={local}
\tright={remote}
\ttype=tunnel
\tleftauth=psk
\trightauth=psk
\tkeyexchange=ikev2
\tike={DEMO_IKE}
\tikelifetime=8h
\tesp={DEMO_ESP}
\tlifetime=1h
\tkeyingtries=%forever
\tleftsubnet={local_net}
\trightsubnet={remote_net}
\tdpddelay=10s
\tdpdtimeout=30s
\tdpdaction={dpd_action}
"
    )
}

pub(crate) fn status_of(side: &Side) -> Result<StatusReport, String> {
    let r = control::query(&side.control, &Request::Status, Duration::from_secs(2))
        .map_err(|e| e.to_string())?;
    r.status
        .ok_or_else(|| r.error.unwrap_or_else(|| "answer without status".into()))
}

pub(crate) fn wait_established(lab: &mut Lab, side: &Side) -> Result<StatusReport, DemoError> {
    let deadline = Instant::now() + TUNNEL_TIMEOUT;
    let pid = side.pid.expect("started");
    let mut last;
    loop {
        if !lab.is_running(pid) {
            return Err(DemoError::Exited {
                gateway: side.label,
                status: lab
                    .exit_status(pid)
                    .map_or_else(|| "unknown status".into(), |s| s.to_string()),
                log: log_tail(&side.log, 30),
            });
        }
        match status_of(side) {
            Ok(st) => {
                if !st.tunnels.is_empty()
                    && st.tunnels.iter().all(|t| {
                        matches!(t.state, TunnelState::Established | TunnelState::Rekeying)
                    })
                {
                    return Ok(st);
                }
                last = st
                    .tunnels
                    .iter()
                    .map(|t| format!("{} {}", t.name, t.state))
                    .collect::<Vec<_>>()
                    .join(", ");
            }
            Err(e) => last = e,
        }
        if Instant::now() > deadline {
            return Err(DemoError::TunnelTimeout {
                gateway: side.label,
                last,
                log: log_tail(&side.log, 30),
            });
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn step(n: u32, text: impl fmt::Display) {
    println!("[{n}/8] {text}");
    let _ = std::io::stdout().flush();
}

/// Runs the demo with this executable as the gateways' `tun-bridge`; see
/// the module documentation. Everything it creates (namespaces, processes,
/// files) is removed before it returns.
pub fn run() -> Result<(), DemoError> {
    let exe = std::env::current_exe().map_err(DemoError::CurrentExe)?;
    run_with(&exe)
}

/// Runs the demo with `exe` as the `tun-bridge` binary of both gateways
/// (tests pass the binary under test).
pub fn run_with(exe: &Path) -> Result<(), DemoError> {
    if !crate::sys::cred::is_root() {
        return Err(DemoError::NotRoot);
    }
    let t_start = Instant::now();

    step(
        1,
        "creating network namespaces (onprem host, gateway A, gateway B, vpc host)",
    );
    // The lab deletes its namespaces and stops its processes when dropped,
    // on every return path below.
    let mut lab = Lab::new()?;
    let topo = TwoSites::up(&mut lab, TwoSitesConfig::default())?;
    println!(
        "      onprem host {} ({}) -> gateway A {} | WAN {} <-> {} | gateway B {} -> vpc host {} ({})",
        topo.host_a_addr(),
        topo.site_a_cidr(),
        topo.gw_a_inner(),
        topo.gw_a_outer(),
        topo.gw_b_outer(),
        topo.gw_b_inner(),
        topo.host_b_addr(),
        topo.site_b_cidr()
    );

    step(
        2,
        format!(
            "writing AWS-style ipsec.conf/ipsec.secrets for both gateways to {}",
            lab.state_dir().display()
        ),
    );
    let psk = random_psk();
    let dir = lab.state_dir().to_path_buf();
    let mut sides = [
        Side {
            label: "gateway A (onprem)",
            ns: topo.gw_a.clone(),
            conf: dir.join("gw-a.ipsec.conf"),
            secrets: dir.join("gw-a.ipsec.secrets"),
            control: dir.join("gw-a.sock"),
            log: dir.join("gw-a.log"),
            pid: None,
        },
        Side {
            label: "gateway B (vpc)",
            ns: topo.gw_b.clone(),
            conf: dir.join("gw-b.ipsec.conf"),
            secrets: dir.join("gw-b.ipsec.secrets"),
            control: dir.join("gw-b.sock"),
            log: dir.join("gw-b.log"),
            pid: None,
        },
    ];
    let (a_out, b_out) = (topo.gw_a_outer().to_string(), topo.gw_b_outer().to_string());
    let confs = [
        gateway_conf(
            "start",
            &a_out,
            &b_out,
            &topo.site_a_cidr(),
            &topo.site_b_cidr(),
            "restart",
        ),
        gateway_conf(
            "add",
            &b_out,
            &a_out,
            &topo.site_b_cidr(),
            &topo.site_a_cidr(),
            "clear",
        ),
    ];
    for (side, (conf, (l, r))) in sides
        .iter()
        .zip(confs.iter().zip([(&a_out, &b_out), (&b_out, &a_out)]))
    {
        write_file(&side.conf, conf, 0o644)?;
        let secrets = Zeroizing::new(format!(
            "# ipsec.secrets written by `tun-bridge demo`\n{l} {r} : PSK \"{}\"\n",
            psk.as_str()
        ));
        write_file(&side.secrets, &secrets, 0o600)?;
    }

    step(3, "starting `tun-bridge up` in both gateway namespaces");
    let exe_s = exe.to_string_lossy().into_owned();
    for side in sides.iter_mut() {
        let conf = side.conf.to_string_lossy().into_owned();
        let secrets = side.secrets.to_string_lossy().into_owned();
        let control = side.control.to_string_lossy().into_owned();
        let pid = lab.spawn(
            &side.ns,
            &[
                &exe_s,
                "up",
                "--config",
                &conf,
                "--secrets",
                &secrets,
                "--control",
                &control,
            ],
            &side.log,
        )?;
        side.pid = Some(pid);
        println!("      {}: pid {pid}, control socket {control}", side.label);
    }

    step(4, "waiting for the tunnel (IKEv2 SA + Child SA)");
    let t_wait = Instant::now();
    for side in &sides {
        let st = wait_established(&mut lab, side)?;
        for t in &st.tunnels {
            println!(
                "      {}: {} {} ({} / {})",
                side.label,
                t.name,
                t.state,
                t.ike_algorithms.as_deref().unwrap_or("-"),
                t.esp_algorithms.as_deref().unwrap_or("-")
            );
        }
    }
    println!(
        "      established after {:.2} s",
        t_wait.elapsed().as_secs_f64()
    );

    step(5, "pinging across the tunnel");
    let (ha, hb) = (
        topo.host_a_addr().to_string(),
        topo.host_b_addr().to_string(),
    );
    if !lab.ping(&topo.host_a, &hb, 3)? {
        return Err(DemoError::Ping {
            from: "onprem host",
            to: hb,
        });
    }
    println!("      onprem host -> vpc host {hb}: 3/3 replies");
    if !lab.ping(&topo.host_b, &ha, 3)? {
        return Err(DemoError::Ping {
            from: "vpc host",
            to: ha,
        });
    }
    println!("      vpc host -> onprem host {ha}: 3/3 replies");

    step(
        6,
        format!(
            "sending {} MiB over TCP from the onprem host to the vpc host",
            TRANSFER_BYTES >> 20
        ),
    );
    let report: TransferReport = tcp_transfer(
        &topo.host_a,
        &topo.host_b,
        topo.host_b_addr(),
        5201,
        TRANSFER_BYTES,
        TRANSFER_TIMEOUT,
    )
    .map_err(|e| DemoError::Transfer(e.to_string()))?;
    if !report.intact() {
        return Err(DemoError::Transfer(format!("data damaged: {report}")));
    }
    println!(
        "      {} bytes in {:.2} s ({:.0} Mbit/s), sha256 {} on both ends",
        report.received,
        report.elapsed.as_secs_f64(),
        report.mbit_per_s(),
        report.sha_received
    );

    step(7, "status of both gateways (`tun-bridge status`)");
    for side in &sides {
        println!("----- {} -----", side.label);
        match control::status_text(&side.control, false, Duration::from_secs(2)) {
            Ok(s) => print!("{s}"),
            Err(e) => println!("(status unavailable: {e})"),
        }
    }

    step(
        8,
        "stopping both gateways (SIGTERM) and deleting the namespaces",
    );
    let mut first_err = None;
    for side in &sides {
        let pid = side.pid.expect("started");
        let st = lab.terminate(pid, STOP_GRACE);
        match st {
            Some(s) if s.success() => println!("      {}: exited with status 0", side.label),
            other => {
                let status = other.map_or_else(
                    || format!("killed after {STOP_GRACE:?} without exiting"),
                    |s| s.to_string(),
                );
                println!("      {}: {status}", side.label);
                first_err.get_or_insert(DemoError::Shutdown {
                    gateway: side.label,
                    status,
                    log: log_tail(&side.log, 30),
                });
            }
        }
    }
    lab.teardown();
    if let Some(e) = first_err {
        return Err(e);
    }
    println!(
        "demo finished in {:.1} s: tunnel up, pings answered, {} MiB intact",
        t_start.elapsed().as_secs_f64(),
        TRANSFER_BYTES >> 20
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psk_is_random_and_well_formed() {
        let a = random_psk();
        let b = random_psk();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(*a, *b);
    }

    #[test]
    fn generated_config_is_valid() {
        let conf = gateway_conf(
            "start",
            "192.0.2.1",
            "192.0.2.2",
            "10.1.0.0/24",
            "10.2.0.0/24",
            "restart",
        );
        let secrets = "192.0.2.1 192.0.2.2 : PSK \"abcdefghijklmnopqrstuvwxyz012345\"\n";
        let loaded = crate::config::parse_str(
            &conf,
            Path::new("ipsec.conf"),
            secrets,
            Path::new("ipsec.secrets"),
        )
        .map_err(|e| format!("{e:?}"))
        .expect("demo config parses");
        let c = loaded.config.conn("Tunnel1").expect("Tunnel1");
        assert_eq!(c.auto, crate::config::values::Auto::Start);
        assert_eq!(c.ike.text.as_deref(), Some(DEMO_IKE));
        assert_eq!(c.esp.text.as_deref(), Some(DEMO_ESP));
        assert_eq!(c.local_subnets.len(), 1);
        assert_eq!(c.remote_subnets.len(), 1);
        assert!(c.psk.is_some(), "PSK found for the explicit leftid");
    }
}
