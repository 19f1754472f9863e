//! Harness of the interop tests (root, network namespaces): AWS-style
//! `ipsec.conf`/`ipsec.secrets` for tun-bridge, swanctl connections for
//! strongSwan peers (through netns-lab), start/stop of `tun-bridge up` by
//! PID, waiting for tunnels over the control socket, and traffic checks
//! (ping both ways, bulk TCP with SHA-256, bounded in time).
#![allow(dead_code)]

use netns_lab::traffic::{tcp_transfer, TransferReport};
use netns_lab::{Lab, StrongSwan, SwanChild, SwanConnection, TwoSites};
use std::fmt::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tun_bridge::control::{self, Request, StatusReport, TunnelState, TunnelStatus};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_tun-bridge");
/// Bytes of every bulk transfer of the proposal matrix.
pub const BULK_BYTES: u64 = 64 << 20;
/// Bound of one bulk transfer.
pub const BULK_TIMEOUT: Duration = Duration::from_secs(90);
/// Bound of tunnel establishment.
pub const UP_TIMEOUT: Duration = Duration::from_secs(30);

/// One proposal set of the interop matrix. The strings are valid for both
/// tun-bridge (`ike=`/`esp=`) and strongSwan (`proposals`/`esp_proposals`).
#[derive(Clone, Copy, Debug)]
pub struct Case {
    /// Short name.
    pub name: &'static str,
    /// IKE proposal.
    pub ike: &'static str,
    /// ESP proposal (with a PFS group, as AWS requires).
    pub esp: &'static str,
}

/// The matrix: AES-GCM 128/256, the AWS sample (AES-CBC/SHA-1/MODP-1024),
/// AES-256/SHA-256/MODP-2048, ECP-256 and Curve25519.
pub const CASES: &[Case] = &[
    Case {
        name: "aes128gcm16",
        ike: "aes128gcm16-prfsha256-modp2048",
        esp: "aes128gcm16-modp2048",
    },
    Case {
        name: "aes256gcm16",
        ike: "aes256gcm16-prfsha384-modp2048",
        esp: "aes256gcm16-modp2048",
    },
    Case {
        name: "aes128-sha1-modp1024 (AWS sample)",
        ike: "aes128-sha1-modp1024",
        esp: "aes128-sha1-modp1024",
    },
    Case {
        name: "aes256-sha256-modp2048",
        ike: "aes256-sha256-modp2048",
        esp: "aes256-sha256-modp2048",
    },
    Case {
        name: "ecp256",
        ike: "aes128gcm16-prfsha256-ecp256",
        esp: "aes128gcm16-ecp256",
    },
    Case {
        name: "curve25519",
        ike: "aes256gcm16-prfsha256-curve25519",
        esp: "aes256gcm16-curve25519",
    },
];

/// AWS `leftupdown` arguments: inside addresses and routed prefixes.
#[derive(Clone, Debug)]
pub struct Updown {
    /// Interface name (`-ln`).
    pub name: String,
    /// Local inside address (`-ll`, e.g. `169.254.10.2/30`).
    pub local_inside: String,
    /// Remote inside address (`-lr`).
    pub remote_inside: String,
    /// Mark (`-m`).
    pub mark: u32,
    /// Routed prefixes (`-r`).
    pub routes: Vec<String>,
}

/// One `conn` of a tun-bridge `ipsec.conf` in AWS's strongSwan layout.
#[derive(Clone, Debug)]
pub struct TbConn {
    /// Connection name.
    pub name: String,
    /// `auto=` (`start` or `add`).
    pub auto: &'static str,
    /// `left=` (`%defaultroute` or an address).
    pub left: String,
    /// `leftid=` (None: the local address).
    pub leftid: Option<String>,
    /// `right=`.
    pub right: String,
    /// `leftsubnet=`.
    pub leftsubnet: String,
    /// `rightsubnet=`.
    pub rightsubnet: String,
    /// `ike=`.
    pub ike: String,
    /// `esp=`.
    pub esp: String,
    /// `ikelifetime=`.
    pub ikelifetime: String,
    /// `lifetime=`.
    pub lifetime: String,
    /// `dpddelay=`.
    pub dpddelay: String,
    /// `dpdtimeout=`.
    pub dpdtimeout: String,
    /// `dpdaction=`.
    pub dpdaction: &'static str,
    /// `leftupdown=` arguments.
    pub updown: Option<Updown>,
    /// Further `key=value` lines (e.g. `encapsulation=yes`).
    pub extra: Vec<String>,
}

impl TbConn {
    /// A subnet-to-subnet connection with AWS-sample lifetimes and DPD.
    pub fn new(
        name: &str,
        auto: &'static str,
        left: &str,
        right: &str,
        leftsubnet: &str,
        rightsubnet: &str,
        case: &Case,
    ) -> TbConn {
        TbConn {
            name: name.into(),
            auto,
            left: left.into(),
            leftid: None,
            right: right.into(),
            leftsubnet: leftsubnet.into(),
            rightsubnet: rightsubnet.into(),
            ike: case.ike.into(),
            esp: case.esp.into(),
            ikelifetime: "8h".into(),
            lifetime: "1h".into(),
            dpddelay: "10s".into(),
            dpdtimeout: "30s".into(),
            dpdaction: if auto == "start" { "restart" } else { "clear" },
            updown: None,
            extra: Vec::new(),
        }
    }

    /// The `conn` section.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "conn {}", self.name);
        let _ = writeln!(s, "\tauto={}", self.auto);
        let _ = writeln!(s, "\tleft={}", self.left);
        if let Some(id) = &self.leftid {
            let _ = writeln!(s, "\tleftid={id}");
        }
        let _ = writeln!(s, "\tright={}", self.right);
        for l in [
            "type=tunnel",
            "leftauth=psk",
            "rightauth=psk",
            "keyexchange=ikev2",
            "keyingtries=%forever",
        ] {
            let _ = writeln!(s, "\t{l}");
        }
        let _ = writeln!(s, "\tike={}", self.ike);
        let _ = writeln!(s, "\tikelifetime={}", self.ikelifetime);
        let _ = writeln!(s, "\tesp={}", self.esp);
        let _ = writeln!(s, "\tlifetime={}", self.lifetime);
        let _ = writeln!(s, "\tleftsubnet={}", self.leftsubnet);
        let _ = writeln!(s, "\trightsubnet={}", self.rightsubnet);
        let _ = writeln!(s, "\tdpddelay={}", self.dpddelay);
        let _ = writeln!(s, "\tdpdtimeout={}", self.dpdtimeout);
        let _ = writeln!(s, "\tdpdaction={}", self.dpdaction);
        if let Some(u) = &self.updown {
            let _ = writeln!(s, "\tmark={}", u.mark);
            let _ = write!(
                s,
                "\tleftupdown=\"/etc/ipsec.d/aws-updown.sh -ln {} -ll {} -lr {} -m {}",
                u.name, u.local_inside, u.remote_inside, u.mark
            );
            for r in &u.routes {
                let _ = write!(s, " -r {r}");
            }
            let _ = writeln!(s, "\"");
        }
        for l in &self.extra {
            let _ = writeln!(s, "\t{l}");
        }
        s
    }
}

/// A whole `ipsec.conf` for `conns`.
pub fn ipsec_conf(conns: &[TbConn]) -> String {
    let mut s = String::from(
        "# written by the tun-bridge interop tests\nconfig setup\n\tuniqueids = no\n\n",
    );
    for c in conns {
        s.push_str(&c.render());
        s.push('\n');
    }
    s
}

/// `ipsec.secrets` lines `LOCAL REMOTE : PSK "..."`.
pub fn ipsec_secrets(entries: &[(&str, &str, &str)]) -> String {
    let mut s = String::from("# written by the tun-bridge interop tests\n");
    for (l, r, psk) in entries {
        let _ = writeln!(s, "{l} {r} : PSK \"{psk}\"");
    }
    s
}

/// A running `tun-bridge up` in a lab namespace (its PID is recorded in the
/// lab, which kills it on drop if a test fails before [`TunBridge::stop`]).
#[derive(Debug)]
pub struct TunBridge {
    /// Label for messages.
    pub name: String,
    /// PID.
    pub pid: u32,
    /// Control socket.
    pub control: PathBuf,
    /// stdout+stderr log.
    pub log: PathBuf,
}

/// Writes `text` into `path` (created with `mode`).
pub fn write_mode(path: &Path, text: &str, mode: u32) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    f.write_all(text.as_bytes())
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

impl TunBridge {
    /// Writes `<name>.conf`/`<name>.secrets` into the lab's state directory
    /// and starts `tun-bridge up` in `ns` with its own control socket.
    pub fn start(lab: &mut Lab, ns: &str, name: &str, conf: &str, secrets: &str) -> TunBridge {
        TunBridge::start_with(lab, ns, name, conf, secrets, &[])
    }

    /// Like [`TunBridge::start`], with `extra` arguments for `up`.
    pub fn start_with(
        lab: &mut Lab,
        ns: &str,
        name: &str,
        conf: &str,
        secrets: &str,
        extra: &[&str],
    ) -> TunBridge {
        let dir = lab.state_dir().to_path_buf();
        let c = dir.join(format!("{name}.conf"));
        let s = dir.join(format!("{name}.secrets"));
        write_mode(&c, conf, 0o644);
        write_mode(&s, secrets, 0o600);
        let control = dir.join(format!("{name}.sock"));
        let log = dir.join(format!("{name}.log"));
        let _ = std::fs::remove_file(&log);
        let (cs, ss, ctl) = (
            c.display().to_string(),
            s.display().to_string(),
            control.display().to_string(),
        );
        let mut argv = vec![
            BIN,
            "up",
            "--config",
            &cs,
            "--secrets",
            &ss,
            "--control",
            &ctl,
        ];
        argv.extend_from_slice(extra);
        let pid = lab.spawn(ns, &argv, &log).expect("spawn tun-bridge up");
        TunBridge {
            name: name.into(),
            pid,
            control,
            log,
        }
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Last `n` log lines.
    pub fn log_tail(&self, n: usize) -> String {
        let l = self.log();
        let v: Vec<&str> = l.lines().collect();
        v[v.len().saturating_sub(n)..].join("\n")
    }

    /// `status` over the control socket.
    pub fn status(&self) -> Result<StatusReport, String> {
        let r = control::query(&self.control, &Request::Status, Duration::from_secs(2))
            .map_err(|e| e.to_string())?;
        r.status
            .ok_or_else(|| r.error.unwrap_or_else(|| "answer without status".into()))
    }

    /// Status of tunnel `name`.
    pub fn tunnel(&self, name: &str) -> Option<TunnelStatus> {
        self.status()
            .ok()?
            .tunnels
            .into_iter()
            .find(|t| t.name == name)
    }

    /// Waits (bounded) until `pred` holds on the status; panics with the
    /// log tail otherwise, or when the process exits.
    pub fn wait_for(
        &self,
        lab: &mut Lab,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&StatusReport) -> bool,
    ) -> StatusReport {
        let deadline = Instant::now() + timeout;
        let mut last;
        loop {
            if !lab.is_running(self.pid) {
                panic!(
                    "{}: tun-bridge exited ({:?}) while waiting for {what}; log:\n{}",
                    self.name,
                    lab.exit_status(self.pid),
                    self.log_tail(60)
                );
            }
            match self.status() {
                Ok(st) if pred(&st) => return st,
                Ok(st) => last = format!("{:?}", st.tunnels),
                Err(e) => last = e,
            }
            if Instant::now() > deadline {
                panic!(
                    "{}: no {what} within {timeout:?}; last status: {last}\nlog:\n{}",
                    self.name,
                    self.log_tail(60)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the control socket answers.
    pub fn wait_listening(&self, lab: &mut Lab) -> StatusReport {
        self.wait_for(lab, "a control socket answer", UP_TIMEOUT, |_| true)
    }

    /// Waits until every tunnel in `names` is established.
    pub fn wait_established(&self, lab: &mut Lab, names: &[&str]) -> StatusReport {
        self.wait_for(lab, &format!("{names:?} established"), UP_TIMEOUT, |st| {
            names.iter().all(|n| {
                st.tunnels.iter().any(|t| {
                    t.name == *n
                        && matches!(t.state, TunnelState::Established | TunnelState::Rekeying)
                })
            })
        })
    }

    /// SIGTERM by PID; asserts a clean exit (status 0) within 10 s.
    pub fn stop(self, lab: &mut Lab) {
        let st = lab.terminate(self.pid, Duration::from_secs(10));
        match st {
            Some(s) if s.success() => {}
            other => panic!(
                "{}: tun-bridge did not exit cleanly after SIGTERM ({other:?}); log:\n{}",
                self.name,
                self.log_tail(60)
            ),
        }
    }
}

/// The two ends of the site-to-site tunnel of `t` for `case`: gateway A's
/// conn `site-b` (`auto=start`, the initiator) and gateway B's conn
/// `site-a` (`auto=add`), outer addresses as endpoints, the sites as
/// selectors.
pub fn site_pair(t: &TwoSites, case: &Case) -> (TbConn, TbConn) {
    let (a, b) = (t.gw_a_outer().to_string(), t.gw_b_outer().to_string());
    let ca = TbConn::new(
        "site-b",
        "start",
        &a,
        &b,
        &t.site_a_cidr(),
        &t.site_b_cidr(),
        case,
    );
    let cb = TbConn::new(
        "site-a",
        "add",
        &b,
        &a,
        &t.site_b_cidr(),
        &t.site_a_cidr(),
        case,
    );
    (ca, cb)
}

/// Starts tun-bridge on gateway B (responder, `auto=add`) and then on
/// gateway A (initiator, `auto=start`) for `case`, subnet to subnet with
/// the outer addresses as IDs and a fresh PSK tagged `tag`, each conn with
/// its `extra` lines; waits until both report the tunnel established.
pub fn tb_pair_up(
    lab: &mut Lab,
    t: &TwoSites,
    case: &Case,
    tag: &str,
    extra_a: &[&str],
    extra_b: &[&str],
) -> (TunBridge, TunBridge) {
    let key = psk(tag);
    let (mut ca, mut cb) = site_pair(t, case);
    ca.extra = extra_a.iter().map(|s| s.to_string()).collect();
    cb.extra = extra_b.iter().map(|s| s.to_string()).collect();
    tb_pair_start(lab, t, ca, cb, &key)
}

/// Starts tun-bridge with `cb` on gateway B (the responder: conn `site-a`)
/// and, once it listens, with `ca` on gateway A (the initiator: conn
/// `site-b`), both with `key` for the outer addresses; waits until both
/// report the tunnel established.
pub fn tb_pair_start(
    lab: &mut Lab,
    t: &TwoSites,
    ca: TbConn,
    cb: TbConn,
    key: &str,
) -> (TunBridge, TunBridge) {
    let (a, b) = (t.gw_a_outer().to_string(), t.gw_b_outer().to_string());
    let gb = TunBridge::start(
        lab,
        &t.gw_b,
        "gw-b",
        &ipsec_conf(&[cb]),
        &ipsec_secrets(&[(&b, &a, key)]),
    );
    gb.wait_listening(lab);
    let ga = TunBridge::start(
        lab,
        &t.gw_a,
        "gw-a",
        &ipsec_conf(&[ca]),
        &ipsec_secrets(&[(&a, &b, key)]),
    );
    ga.wait_established(lab, &["site-b"]);
    gb.wait_established(lab, &["site-a"]);
    (ga, gb)
}

/// Pings host B from host A and back (3 each); panics with `ctx` on loss.
pub fn ping_both_ways(lab: &Lab, t: &TwoSites, ctx: &str) {
    let (a, b) = (t.host_a_addr().to_string(), t.host_b_addr().to_string());
    assert!(
        lab.ping(&t.host_a, &b, 3).expect("ping runs"),
        "{ctx}: host A -> host B {b}: ping failed"
    );
    assert!(
        lab.ping(&t.host_b, &a, 3).expect("ping runs"),
        "{ctx}: host B -> host A {a}: ping failed"
    );
}

/// Sends `bytes` over TCP (from host A to host B, or back when `reverse`)
/// and asserts they arrived intact within [`BULK_TIMEOUT`].
pub fn bulk(
    lab: &Lab,
    t: &TwoSites,
    port: u16,
    bytes: u64,
    reverse: bool,
    ctx: &str,
) -> TransferReport {
    let _ = lab;
    let (src, dst, addr) = if reverse {
        (&t.host_b, &t.host_a, t.host_a_addr())
    } else {
        (&t.host_a, &t.host_b, t.host_b_addr())
    };
    let r = tcp_transfer(src, dst, addr, port, bytes, BULK_TIMEOUT)
        .unwrap_or_else(|e| panic!("{ctx}: TCP transfer failed: {e}"));
    assert!(r.intact(), "{ctx}: data damaged: {r}");
    assert_eq!(r.received, bytes, "{ctx}");
    r
}

/// A strongSwan peer on gateway B for `case`: subnet selectors site B <->
/// site A, PSK auth with the outer addresses as IDs.
pub fn swan_conn(t: &TwoSites, case: &Case, psk: &str, initiator: bool) -> SwanConnection {
    let mut child = SwanChild::new("net", &t.site_b_cidr(), &t.site_a_cidr(), case.esp);
    if initiator {
        child.start_action = "none".into();
    }
    child.dpd_action = "clear".into();
    SwanConnection::ikev2_psk(
        "tb",
        &t.gw_b_outer().to_string(),
        &t.gw_a_outer().to_string(),
        case.ike,
        psk.as_bytes(),
        child,
    )
}

/// Starts charon (kernel-libipsec) on gateway B with `ipsec0` up.
pub fn start_swan(lab: &mut Lab, ns: &str) -> StrongSwan {
    let swan = StrongSwan::start(lab, ns, false).expect("start charon");
    lab.ip_in(ns, &["link", "set", "ipsec0", "up"])
        .expect("ipsec0 up");
    swan
}

/// `list-sas` of strongSwan (for messages).
pub fn swan_sas(swan: &StrongSwan) -> String {
    swan.list_sas()
        .unwrap_or_else(|e| format!("(list-sas failed: {e})"))
}

/// Prints one result line (shown with `--nocapture`, and in CI logs on
/// failure).
pub fn report(ctx: &str, up: Duration, r: &TransferReport) {
    println!(
        "{ctx}: up in {:.2} s; {} MiB in {:.2} s ({:.0} Mbit/s), sha256 {}",
        up.as_secs_f64(),
        r.received >> 20,
        r.elapsed.as_secs_f64(),
        r.mbit_per_s(),
        r.sha_received
    );
}

/// A PSK unique per call (tests must not rely on a fixed secret).
pub fn psk(tag: &str) -> String {
    let mut b = [0u8; 12];
    getrandom::getrandom(&mut b).expect("random");
    let mut s = format!("{tag}_");
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Serializes the namespace tests of one binary (they share 2 CPUs and
/// measure time); a failed test does not poison the others.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// The IKEv1 proposal sets of the interop matrix: the AWS Generic suite,
/// AES-256/SHA-256/MODP-2048, and AES-GCM-16 in phase 2 with ECP-256 PFS.
pub const V1_CASES: &[Case] = &[
    Case {
        name: "ikev1 aes128-sha1-modp1024 (AWS Generic)",
        ike: "aes128-sha1-modp1024",
        esp: "aes128-sha1-modp1024",
    },
    Case {
        name: "ikev1 aes256-sha256-modp2048",
        ike: "aes256-sha256-modp2048",
        esp: "aes256-sha256-modp2048",
    },
    Case {
        name: "ikev1 aes128gcm16-ecp256 phase 2",
        ike: "aes128-sha256-ecp256",
        esp: "aes128gcm16-ecp256",
    },
];

/// A whole `ipsec.conf` for `conns` with `keyexchange=ikev1`.
pub fn ipsec_conf_v1(conns: &[TbConn]) -> String {
    ipsec_conf(conns).replace("keyexchange=ikev2", "keyexchange=ikev1")
}

/// [`swan_conn`] for `version = 1` in main mode.
pub fn swan_conn_v1(t: &TwoSites, case: &Case, psk: &str, initiator: bool) -> SwanConnection {
    let mut c = swan_conn(t, case, psk, initiator);
    c.version = 1;
    c.aggressive = Some(false);
    c
}
