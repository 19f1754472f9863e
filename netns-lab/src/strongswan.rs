//! strongSwan (charon + kernel-libipsec) peers in lab namespaces.
//!
//! Mirrors `ss_write_conf` / `ss_start` / `swanctl_in` of the shell harness:
//! a complete `strongswan.conf` (explicit plugin list, kernel-libipsec
//! before kernel-netlink), charon started directly in the namespace with a
//! private `/run` (bind mount inside the mount namespace `ip netns exec`
//! creates), swanctl talking to `<dir>/run/charon.vici`.
//!
//! Observed behaviour of kernel-libipsec 5.9.8 worth knowing in tests: ESP
//! is always UDP-encapsulated on 4500; it creates TUN `ipsec0` (MTU 1400)
//! and routes remote traffic selectors via table 220.

use crate::{io_err, run_with_timeout, Lab, LabError, Result};
use std::fmt;
use std::fmt::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// Path of the charon daemon.
pub const CHARON: &str = "/usr/lib/ipsec/charon";
/// Path of the kernel-libipsec plugin (userspace ESP over TUN).
pub const KERNEL_LIBIPSEC_PLUGIN: &str = "/usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so";

/// IKE proposals of an AWS VGW (non-AEAD, AEAD).
pub const AWS_IKE_PROPOSALS: &str = "aes128-aes256-sha1-sha256-sha384-sha512-modp1024-modp2048-modp3072-modp4096-ecp256-ecp384-ecp521,aes128gcm16-aes256gcm16-prfsha1-prfsha256-prfsha384-prfsha512-modp1024-modp2048-modp3072-modp4096-ecp256-ecp384-ecp521";

/// ESP proposals of an AWS VGW, PFS required (non-AEAD, AEAD).
pub const AWS_ESP_PROPOSALS: &str = "aes128-aes256-sha1-sha256-sha384-sha512-modp1024-modp2048-modp3072-modp4096-ecp256-ecp384-ecp521,aes128gcm16-aes256gcm16-modp1024-modp2048-modp3072-modp4096-ecp256-ecp384-ecp521";

/// Lifetimes and DPD of [`SwanConnection::aws_vgw`] (seconds). AWS
/// defaults: IKE 28800, Child 3600, margin 540, DPD 10.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VgwTimers {
    /// Phase 1 (IKE SA) lifetime.
    pub ike_lifetime: u32,
    /// Phase 2 (Child SA) lifetime.
    pub child_lifetime: u32,
    /// Rekey margin (capped at a quarter of each lifetime).
    pub margin: u32,
    /// DPD interval.
    pub dpd_delay: u32,
}

impl Default for VgwTimers {
    fn default() -> Self {
        VgwTimers {
            ike_lifetime: 28800,
            child_lifetime: 3600,
            margin: 540,
            dpd_delay: 10,
        }
    }
}

/// One `children { NAME { ... } }` section of a swanctl connection.
#[derive(Debug, Clone)]
pub struct SwanChild {
    /// CHILD_SA config name.
    pub name: String,
    /// Local traffic selectors (comma separated CIDRs).
    pub local_ts: String,
    /// Remote traffic selectors.
    pub remote_ts: String,
    /// ESP proposals (strongSwan syntax, e.g. `aes128gcm16`).
    pub esp_proposals: String,
    /// `rekey_time` in seconds (None: strongSwan default).
    pub rekey_time: Option<u32>,
    /// `life_time` in seconds (None: default).
    pub life_time: Option<u32>,
    /// `start_action` (`none`, `trap`, `start`).
    pub start_action: String,
    /// `dpd_action` (`clear`, `trap`, `restart`).
    pub dpd_action: String,
    /// `rand_time` in seconds (None: default).
    pub rand_time: Option<u32>,
    /// `replay_window` in packets (None: default; kernel-libipsec ignores it).
    pub replay_window: Option<u32>,
    /// `close_action` (`none`, `trap`, `start`; None: default).
    pub close_action: Option<String>,
}

impl SwanChild {
    /// A tunnel-mode child with `start_action = none`, `dpd_action = restart`.
    pub fn new(name: &str, local_ts: &str, remote_ts: &str, esp_proposals: &str) -> SwanChild {
        SwanChild {
            name: name.into(),
            local_ts: local_ts.into(),
            remote_ts: remote_ts.into(),
            esp_proposals: esp_proposals.into(),
            rekey_time: None,
            life_time: None,
            start_action: "none".into(),
            dpd_action: "restart".into(),
            rand_time: None,
            replay_window: None,
            close_action: None,
        }
    }
}

/// A swanctl connection with PSK authentication; rendered by
/// [`SwanConnection::to_swanctl_conf`].
#[derive(Clone)]
pub struct SwanConnection {
    /// Connection name.
    pub name: String,
    /// IKE version (1 or 2; 0 = any).
    pub version: u8,
    /// `local_addrs`.
    pub local_addrs: String,
    /// `remote_addrs`.
    pub remote_addrs: String,
    /// Local identity (default: `local_addrs`).
    pub local_id: Option<String>,
    /// Remote identity (default: `remote_addrs`).
    pub remote_id: Option<String>,
    /// IKE proposals.
    pub proposals: String,
    /// Pre-shared key (written hex-encoded; zeroized on drop).
    pub psk: Zeroizing<Vec<u8>>,
    /// `dpd_delay` seconds.
    pub dpd_delay: Option<u32>,
    /// IKE `rekey_time` seconds.
    pub rekey_time: Option<u32>,
    /// IKE `reauth_time` seconds (`Some(0)` disables reauthentication).
    pub reauth_time: Option<u32>,
    /// IKE `rand_time` seconds.
    pub rand_time: Option<u32>,
    /// IKE `over_time` seconds.
    pub over_time: Option<u32>,
    /// `dpd_timeout` seconds (IKEv1 only in strongSwan; written if set).
    pub dpd_timeout: Option<u32>,
    /// `mobike` (None: default).
    pub mobike: Option<bool>,
    /// `encap` (None: default).
    pub encap: Option<bool>,
    /// `aggressive` (None: default).
    pub aggressive: Option<bool>,
    /// Child configs.
    pub children: Vec<SwanChild>,
}

impl fmt::Debug for SwanConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SwanConnection")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("local_addrs", &self.local_addrs)
            .field("remote_addrs", &self.remote_addrs)
            .field("proposals", &self.proposals)
            .field("psk", &"<redacted>")
            .field("children", &self.children)
            .finish()
    }
}

fn check_token(what: &str, v: &str) -> Result<()> {
    let ok = !v.is_empty()
        && v.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b':' | b'/' | b',' | b'-' | b'_' | b'%')
        });
    if ok {
        Ok(())
    } else {
        Err(LabError::Invalid(format!("swanctl {what} value {v:?}")))
    }
}

impl SwanConnection {
    /// IKEv2 PSK connection between two addresses with one child.
    pub fn ikev2_psk(
        name: &str,
        local: &str,
        remote: &str,
        proposals: &str,
        psk: &[u8],
        child: SwanChild,
    ) -> SwanConnection {
        SwanConnection {
            name: name.into(),
            version: 2,
            local_addrs: local.into(),
            remote_addrs: remote.into(),
            local_id: None,
            remote_id: None,
            proposals: proposals.into(),
            psk: Zeroizing::new(psk.to_vec()),
            dpd_delay: Some(10),
            rekey_time: None,
            reauth_time: None,
            rand_time: None,
            over_time: None,
            dpd_timeout: None,
            mobike: None,
            encap: None,
            aggressive: None,
            children: vec![child],
        }
    }

    /// An AWS-VGW-like responder (ported from `strongswan-responder.sh`):
    /// IKEv2 only here, the AWS proposal sets (two each: non-AEAD and AEAD,
    /// PFS required in ESP), 0.0.0.0/0 selectors on both sides, DPD every
    /// `t.dpd_delay` s, `mobike = no`, `encap = no`, no reauthentication,
    /// IDs = outer addresses, responder only (`start_action = none`), and
    /// rekeys at `lifetime - margin` with `margin = min(t.margin,
    /// lifetime / 4)` and random extra up to the margin, as AWS does.
    pub fn aws_vgw(name: &str, vgw: &str, peer: &str, psk: &[u8], t: &VgwTimers) -> SwanConnection {
        let ike_margin = t.margin.min(t.ike_lifetime / 4);
        let child_margin = t.margin.min(t.child_lifetime / 4);
        let mut child = SwanChild::new("tunnel", "0.0.0.0/0", "0.0.0.0/0", AWS_ESP_PROPOSALS);
        child.life_time = Some(t.child_lifetime);
        child.rekey_time = Some(t.child_lifetime - child_margin);
        child.rand_time = Some(child_margin);
        child.replay_window = Some(1024);
        child.dpd_action = "clear".into();
        child.close_action = Some("none".into());
        let mut c = SwanConnection::ikev2_psk(name, vgw, peer, AWS_IKE_PROPOSALS, psk, child);
        c.dpd_delay = Some(t.dpd_delay);
        c.dpd_timeout = Some(30);
        c.rekey_time = Some(t.ike_lifetime - ike_margin);
        c.rand_time = Some(ike_margin);
        c.over_time = Some(ike_margin);
        c.reauth_time = Some(0);
        c.mobike = Some(false);
        c.encap = Some(false);
        c.aggressive = Some(false);
        c
    }

    /// Render `swanctl.conf` (connections + secrets). Values are checked to
    /// be plain tokens so nothing can break out of the config syntax.
    pub fn to_swanctl_conf(&self) -> Result<String> {
        let lid = self.local_id.as_deref().unwrap_or(&self.local_addrs);
        let rid = self.remote_id.as_deref().unwrap_or(&self.remote_addrs);
        for (w, v) in [
            ("name", self.name.as_str()),
            ("local_addrs", &self.local_addrs),
            ("remote_addrs", &self.remote_addrs),
            ("local id", lid),
            ("remote id", rid),
            ("proposals", &self.proposals),
        ] {
            check_token(w, v)?;
        }
        if self.psk.is_empty() {
            return Err(LabError::Invalid("empty PSK".into()));
        }
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# generated by netns-lab\nconnections {{\n  {} {{",
            self.name
        );
        let _ = writeln!(s, "    version = {}", self.version);
        let _ = writeln!(s, "    local_addrs = {}", self.local_addrs);
        let _ = writeln!(s, "    remote_addrs = {}", self.remote_addrs);
        let _ = writeln!(s, "    proposals = {}", self.proposals);
        if let Some(d) = self.dpd_delay {
            let _ = writeln!(s, "    dpd_delay = {d}s");
        }
        if let Some(r) = self.rekey_time {
            let _ = writeln!(s, "    rekey_time = {r}s");
        }
        for (k, v) in [
            ("reauth_time", self.reauth_time),
            ("rand_time", self.rand_time),
            ("over_time", self.over_time),
            ("dpd_timeout", self.dpd_timeout),
        ] {
            if let Some(v) = v {
                let _ = writeln!(s, "    {k} = {v}s");
            }
        }
        for (k, v) in [
            ("mobike", self.mobike),
            ("encap", self.encap),
            ("aggressive", self.aggressive),
        ] {
            if let Some(v) = v {
                let _ = writeln!(s, "    {k} = {}", if v { "yes" } else { "no" });
            }
        }
        let _ = writeln!(
            s,
            "    local {{\n      auth = psk\n      id = {lid}\n    }}"
        );
        let _ = writeln!(
            s,
            "    remote {{\n      auth = psk\n      id = {rid}\n    }}"
        );
        let _ = writeln!(s, "    children {{");
        for c in &self.children {
            for (w, v) in [
                ("child name", c.name.as_str()),
                ("local_ts", &c.local_ts),
                ("remote_ts", &c.remote_ts),
                ("esp_proposals", &c.esp_proposals),
                ("start_action", &c.start_action),
                ("dpd_action", &c.dpd_action),
            ] {
                check_token(w, v)?;
            }
            let _ = writeln!(s, "      {} {{\n        mode = tunnel", c.name);
            let _ = writeln!(s, "        local_ts = {}", c.local_ts);
            let _ = writeln!(s, "        remote_ts = {}", c.remote_ts);
            let _ = writeln!(s, "        esp_proposals = {}", c.esp_proposals);
            if let Some(r) = c.rekey_time {
                let _ = writeln!(s, "        rekey_time = {r}s");
            }
            if let Some(l) = c.life_time {
                let _ = writeln!(s, "        life_time = {l}s");
            }
            if let Some(r) = c.rand_time {
                let _ = writeln!(s, "        rand_time = {r}s");
            }
            if let Some(r) = c.replay_window {
                let _ = writeln!(s, "        replay_window = {r}");
            }
            if let Some(a) = &c.close_action {
                check_token("close_action", a)?;
                let _ = writeln!(s, "        close_action = {a}");
            }
            let _ = writeln!(s, "        start_action = {}", c.start_action);
            let _ = writeln!(s, "        dpd_action = {}\n      }}", c.dpd_action);
        }
        let _ = writeln!(s, "    }}\n  }}\n}}");
        let mut hex = Zeroizing::new(String::with_capacity(self.psk.len() * 2));
        for b in self.psk.iter() {
            let _ = write!(hex, "{b:02x}");
        }
        let _ = writeln!(
            s,
            "secrets {{\n  ike-{} {{\n    id-a = {lid}\n    id-b = {rid}\n    secret = 0x{}\n  }}\n}}",
            self.name, *hex
        );
        Ok(s)
    }
}

/// A charon instance running in a lab namespace. The process is recorded
/// in (and stopped by) the [`Lab`].
#[derive(Debug)]
pub struct StrongSwan {
    ns: String,
    dir: PathBuf,
    pid: u32,
}

impl StrongSwan {
    /// Write `strongswan.conf` (kernel-libipsec before kernel-netlink) into
    /// `<lab state dir>/swan-<ns>/`, start charon in `ns` and wait (up to
    /// 10 s) for its vici socket.
    pub fn start(lab: &mut Lab, ns: &str, install_routes: bool) -> Result<StrongSwan> {
        let dir = lab.state_dir().join(format!("swan-{ns}"));
        std::fs::create_dir_all(dir.join("run")).map_err(io_err(format!("mkdir {dir:?}")))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io_err("chmod state dir"))?;
        // swanctl --load-all --file scans these credential dirs
        for sub in [
            "x509", "x509ca", "x509crl", "pubkey", "private", "rsa", "ecdsa", "pkcs8", "pkcs12",
        ] {
            std::fs::create_dir_all(dir.join(sub)).map_err(io_err("mkdir cred dir"))?;
        }
        let d = dir.display();
        let conf = format!(
            "# generated by netns-lab
charon {{
  load_modular = no
  load = random nonce openssl aes sha1 sha2 hmac gcm gmp curve25519 kdf pem pkcs1 x509 pubkey revocation constraints vici kernel-libipsec kernel-netlink socket-default updown
  install_routes = {ir}
  routing_table = 220
  routing_table_prio = 220
  retransmit_tries = 3
  plugins {{
    vici {{
      socket = unix://{d}/run/charon.vici
    }}
    kernel-libipsec {{
      allow_peer_ts = no
    }}
  }}
  filelog {{
    lab {{
      path = {d}/charon.log
      time_format = %H:%M:%S
      ike_name = yes
      append = no
      flush_line = yes
      default = 1
    }}
  }}
  syslog {{
    daemon {{
      default = -1
    }}
  }}
}}
",
            ir = if install_routes { "yes" } else { "no" },
        );
        std::fs::write(dir.join("strongswan.conf"), conf)
            .map_err(io_err("write strongswan.conf"))?;
        let _ = std::fs::remove_file(dir.join("run/charon.vici"));
        let _ = std::fs::remove_file(dir.join("run/charon.pid"));
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, "sh", "-c"])
            .arg(r#"mount --bind "$1/run" /run && exec env STRONGSWAN_CONF="$1/strongswan.conf" "$2""#)
            .arg("sh")
            .arg(&dir)
            .arg(CHARON);
        let pid = lab.spawn_command(cmd, &dir.join("charon.stdout"))?;
        let me = StrongSwan {
            ns: ns.into(),
            dir,
            pid,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if me.vici_path().exists() {
                return Ok(me);
            }
            if !lab.is_running(pid) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(LabError::Timeout {
            what: format!(
                "charon vici socket in {ns}; stdout: {} log: {}",
                std::fs::read_to_string(me.dir.join("charon.stdout")).unwrap_or_default(),
                me.log()
            ),
        })
    }

    /// Namespace the instance runs in.
    pub fn netns(&self) -> &str {
        &self.ns
    }

    /// PID recorded in the lab.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// State directory (configs, logs, private /run).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of the vici socket.
    pub fn vici_path(&self) -> PathBuf {
        self.dir.join("run/charon.vici")
    }

    /// Run `swanctl COMMAND --uri unix://.../charon.vici ARGS...` (bounded by
    /// `timeout`); error with the charon log tail unless it succeeds.
    pub fn swanctl(&self, command: &str, args: &[&str], timeout: Duration) -> Result<Output> {
        let uri = format!("unix://{}", self.vici_path().display());
        let mut c = Command::new("swanctl");
        c.env("STRONGSWAN_CONF", self.dir.join("strongswan.conf"))
            .arg(command)
            .arg("--uri")
            .arg(&uri)
            .args(args);
        let out = run_with_timeout(&mut c, timeout)?;
        if out.status.success() {
            Ok(out)
        } else {
            Err(LabError::Failed {
                cmd: format!("swanctl {command} {}", args.join(" ")),
                status: out.status.to_string(),
                output: format!(
                    "{}{}\n--- charon.log tail ({}):\n{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr),
                    self.ns,
                    self.log_tail(40)
                ),
            })
        }
    }

    /// Write `swanctl.conf` (mode 0600) for `conn` and `--load-all` it.
    pub fn load(&self, conn: &SwanConnection) -> Result<()> {
        let text = Zeroizing::new(conn.to_swanctl_conf()?);
        let path = self.dir.join("swanctl.conf");
        {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&path)
                .map_err(io_err("create swanctl.conf"))?;
            f.write_all(text.as_bytes())
                .map_err(io_err("write swanctl.conf"))?;
        }
        let p = path.display().to_string();
        self.swanctl("--load-all", &["--file", &p], Duration::from_secs(15))?;
        Ok(())
    }

    /// Initiate CHILD_SA `child` (and its IKE_SA), waiting up to `timeout`.
    pub fn initiate(&self, child: &str, timeout: Duration) -> Result<String> {
        let t = timeout.as_secs().max(1).to_string();
        let out = self.swanctl(
            "--initiate",
            &["--child", child, "--timeout", &t],
            timeout + Duration::from_secs(5),
        )?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Rekey CHILD_SA `child`.
    pub fn rekey_child(&self, child: &str) -> Result<()> {
        self.swanctl("--rekey", &["--child", child], Duration::from_secs(15))
            .map(|_| ())
    }

    /// Rekey IKE_SA `ike`.
    pub fn rekey_ike(&self, ike: &str) -> Result<()> {
        self.swanctl("--rekey", &["--ike", ike], Duration::from_secs(15))
            .map(|_| ())
    }

    /// Terminate IKE_SA `ike` (waits up to 5 s).
    pub fn terminate_ike(&self, ike: &str) -> Result<()> {
        self.swanctl(
            "--terminate",
            &["--ike", ike, "--timeout", "5"],
            Duration::from_secs(10),
        )
        .map(|_| ())
    }

    /// `swanctl --list-sas` output.
    pub fn list_sas(&self) -> Result<String> {
        let out = self.swanctl("--list-sas", &[], Duration::from_secs(10))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Whole charon log (empty if not yet written).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("charon.log")).unwrap_or_default()
    }

    /// Last `n` lines of the charon log.
    pub fn log_tail(&self, n: usize) -> String {
        let l = self.log();
        let lines: Vec<&str> = l.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Route-based VGW setup of `strongswan-responder.sh`: bring `ipsec0`
    /// up, give it `inside` (e.g. `169.254.10.1/30`) if any, and look the
    /// VPC prefix up in the main table before kernel-libipsec's table 220
    /// (which holds `default dev ipsec0` for 0.0.0.0/0 selectors), so
    /// decrypted packets for the VPC are not routed back into the tunnel.
    pub fn vgw_routing(&self, lab: &Lab, inside: Option<&str>, vpc_net: &str) -> Result<()> {
        lab.ip_in(&self.ns, &["link", "set", "ipsec0", "up"])?;
        if let Some(a) = inside {
            lab.ip_in(&self.ns, &["addr", "add", a, "dev", "ipsec0"])?;
        }
        lab.ip_in(
            &self.ns,
            &[
                "rule", "add", "to", vpc_net, "lookup", "main", "priority", "100",
            ],
        )?;
        Ok(())
    }

    /// Stop this charon (by its recorded PID) through the lab.
    pub fn stop(self, lab: &mut Lab) {
        lab.stop(self.pid);
    }

    /// Kill this charon with SIGKILL (a crashed peer: no DELETE is sent)
    /// and reap it through the lab.
    pub fn kill(self, lab: &mut Lab) {
        // SAFETY: kill(2) on the PID of a process this lab started and has
        // not reaped yet (it is still recorded in the lab).
        unsafe { libc::kill(self.pid as i32, libc::SIGKILL) };
        lab.stop(self.pid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_vgw_rendering() {
        let t = VgwTimers {
            ike_lifetime: 60,
            child_lifetime: 36,
            margin: 540,
            dpd_delay: 10,
        };
        let c = SwanConnection::aws_vgw("vgw", "192.0.2.2", "192.0.2.1", b"k", &t);
        let s = c.to_swanctl_conf().unwrap();
        for want in [
            "rekey_time = 45s",
            "rand_time = 15s",
            "reauth_time = 0s",
            "dpd_delay = 10s",
            "mobike = no",
            "encap = no",
            "life_time = 36s",
            "rekey_time = 27s",
            "rand_time = 9s",
            "local_ts = 0.0.0.0/0",
            "remote_ts = 0.0.0.0/0",
            "close_action = none",
            "secret = 0x6b",
        ] {
            assert!(s.contains(want), "{want} missing in\n{s}");
        }
        assert!(s.contains(&format!("esp_proposals = {AWS_ESP_PROPOSALS}")));
        // PFS required: every ESP proposal names DH groups, none is `modpnone`.
        for p in AWS_ESP_PROPOSALS.split(',') {
            assert!(p.contains("modp2048") && !p.contains("none"), "{p}");
        }
        assert!(format!("{c:?}").contains("<redacted>"));
    }
}
