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
            children: vec![child],
        }
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

    /// Stop this charon (by its recorded PID) through the lab.
    pub fn stop(self, lab: &mut Lab) {
        lab.stop(self.pid);
    }
}
