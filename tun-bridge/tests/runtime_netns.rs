//! `tun-bridge up` end to end in lab namespaces (root): tun-bridge against
//! tun-bridge, and tun-bridge initiating to a strongSwan responder.

use netns_lab::{Lab, StrongSwan, SwanChild, SwanConnection, TwoSites, TwoSitesConfig};
use serde_json::Value;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_tun-bridge");
const PSK: &str = "lab-psk-7c1f0e9a";

/// A `tun-bridge up` process in a namespace, owned by the test (killed by
/// PID on drop if still running).
struct Gw {
    child: Child,
    control: PathBuf,
    log: PathBuf,
}

impl Gw {
    fn spawn(ns: &str, dir: &Path, name: &str, conf: &str, secrets: &str, extra: &[&str]) -> Gw {
        let c = dir.join(format!("{name}.conf"));
        let s = dir.join(format!("{name}.secrets"));
        std::fs::write(&c, conf).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&s)
            .and_then(|mut f| std::io::Write::write_all(&mut f, secrets.as_bytes()))
            .unwrap();
        let control = dir.join(format!("{name}.sock"));
        let log = dir.join(format!("{name}.log"));
        let f = std::fs::File::create(&log).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns, BIN, "up", "--config"])
            .arg(&c)
            .arg("--secrets")
            .arg(&s)
            .arg("--control")
            .arg(&control)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .unwrap();
        Gw {
            child,
            control,
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn status(&self) -> Option<Value> {
        let out = Command::new(BIN)
            .args(["status", "--json", "--control"])
            .arg(&self.control)
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    fn tunnel(&self, name: &str) -> Option<Value> {
        let st = self.status()?;
        st["tunnels"]
            .as_array()?
            .iter()
            .find(|t| t["name"] == name)
            .cloned()
    }

    fn wait_state(&mut self, name: &str, state: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(t) = self.tunnel(name) {
                if t["state"] == state {
                    return t;
                }
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("tun-bridge exited early ({st}); log:\n{}", self.log());
            }
            if Instant::now() > deadline {
                panic!(
                    "tunnel {name} not {state} within {timeout:?}; status {:?}; log:\n{}",
                    self.tunnel(name),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        // SAFETY: signalling our own, not yet reaped child by PID.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            if Instant::now() > deadline {
                panic!(
                    "no exit within {timeout:?} after SIGTERM; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Gw {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn conf(
    name: &str,
    auto: &str,
    left: &str,
    right: &str,
    lsub: &str,
    rsub: &str,
    extra: &str,
) -> String {
    format!(
        "config setup\n\nconn {name}\n  auto={auto}\n  authby=secret\n  keyexchange=ikev2\n  type=tunnel\n  \
         left={left}\n  right={right}\n  leftsubnet={lsub}\n  rightsubnet={rsub}\n{extra}"
    )
}

fn secrets(a: &str, b: &str) -> String {
    format!("{a} {b} : PSK \"{PSK}\"\n")
}

fn routes(lab: &Lab, ns: &str) -> String {
    String::from_utf8_lossy(&lab.ip_in(ns, &["route", "show"]).unwrap().stdout).into_owned()
}

#[test]
fn tun_bridge_to_tun_bridge() {
    if !Lab::require_root() {
        return;
    }
    let mut lab = Lab::new().unwrap();
    let t = TwoSites::up(&mut lab, TwoSitesConfig::default()).unwrap();
    let dir = lab.state_dir().to_path_buf();
    let (a, b) = (t.gw_a_outer().to_string(), t.gw_b_outer().to_string());
    let esp = "  ike=aes256gcm16-prfsha256-ecp256\n  esp=aes128gcm16\n  dpddelay=5\n  dpdtimeout=15\n  salifetime=1h\n  rekeymargin=9m\n  rekeyfuzz=100%\n";
    let mut gb = Gw::spawn(
        &t.gw_b,
        &dir,
        "b",
        &conf(
            "site",
            "add",
            &b,
            &a,
            &t.site_b_cidr(),
            &t.site_a_cidr(),
            esp,
        ),
        &secrets(&b, &a),
        &[],
    );
    // let B bind its sockets before A initiates (A retries anyway)
    std::thread::sleep(Duration::from_millis(300));
    let keys = dir.join("keys.txt");
    let mut ga = Gw::spawn(
        &t.gw_a,
        &dir,
        "a",
        &conf(
            "site",
            "start",
            &a,
            &b,
            &t.site_a_cidr(),
            &t.site_b_cidr(),
            esp,
        ),
        &secrets(&a, &b),
        &["--log-keys", keys.to_str().unwrap()],
    );
    ga.wait_state("site", "established", Duration::from_secs(20));
    gb.wait_state("site", "established", Duration::from_secs(5));
    let r = routes(&lab, &t.gw_a);
    assert!(
        r.contains(&format!("{} dev tb-site", t.site_b_cidr())),
        "{r}"
    );

    assert!(
        lab.ping(&t.host_a, &t.host_b_addr().to_string(), 3)
            .unwrap(),
        "ping A->B failed; A log:\n{}\nB log:\n{}",
        ga.log(),
        gb.log()
    );
    let st = ga.tunnel("site").unwrap();
    assert_eq!(st["esp_algorithms"], "aes128gcm16", "{st}");
    assert_eq!(st["ike_algorithms"], "aes256gcm16-prfsha256-ecp256", "{st}");
    // ike-lite's schedule: 1 h - 9 min * (1 + r), r in [0, 1), minus uptime.
    let next = st["next_rekey_secs"].as_u64().unwrap();
    assert!((3600 - 1080 - 60..=3600 - 540).contains(&next), "{st}");
    assert!(st["packets_out"].as_u64().unwrap() >= 3, "{st}");
    assert!(st["packets_in"].as_u64().unwrap() >= 3, "{st}");
    assert!(st["bytes_out"].as_u64().unwrap() >= 3 * 84, "{st}");
    assert!(st["bytes_in"].as_u64().unwrap() >= 3 * 84, "{st}");
    assert_eq!(st["role"], "active");
    let stb = gb.tunnel("site").unwrap();
    assert_eq!(stb["spi_in"], st["spi_out"], "A {st} B {stb}");
    assert_eq!(stb["spi_out"], st["spi_in"], "A {st} B {stb}");

    // --log-keys: two esp_sa lines (one per direction), mode 0600, and
    // one ikev2_decryption_table line beside it.
    let ike_keys = dir.join("keys.txt.ikev2_decryption_table");
    let ik = std::fs::read_to_string(&ike_keys).unwrap();
    assert_eq!(ik.lines().count(), 1, "{ik}");
    let f: Vec<&str> = ik.trim_end().split(',').collect();
    assert_eq!(f.len(), 8, "{ik}");
    assert!(f[0].len() == 16 && f[1].len() == 16, "{ik}");
    assert_eq!(f[2].len(), 2 * 36, "SK_ei: AES-256 key + salt: {ik}");
    assert_eq!(f[4], "\"AES-GCM-256 with 16 octet ICV [RFC5282]\"");
    assert_eq!((f[5], f[6], f[7]), ("", "", "\"NONE [RFC4306]\""));
    let k = std::fs::read_to_string(&keys).unwrap();
    assert_eq!(k.lines().count(), 2, "{k}");
    let spi_in = format!("0x{:08x}", st["spi_in"].as_u64().unwrap());
    assert!(
        k.lines().any(|l| l.starts_with(&format!(
            "\"IPv4\",\"{b}\",\"{a}\",\"{spi_in}\",\"AES-GCM with 16 octet ICV [RFC4106]\""
        ))),
        "{k}"
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&keys).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    // the plain status table works too
    let out = Command::new(BIN)
        .args(["status", "--control"])
        .arg(&ga.control)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("site"));

    // SIGTERM: DELETE sent (B sees the tunnel go down), exit 0, routes gone
    let st = ga.terminate(Duration::from_secs(6));
    assert!(st.success(), "exit {st}; log:\n{}", ga.log());
    let r = routes(&lab, &t.gw_a);
    assert!(!r.contains("tb-site"), "{r}");
    assert!(!ga.control.exists());
    gb.wait_state("site", "down", Duration::from_secs(3));
    let st = gb.terminate(Duration::from_secs(6));
    assert!(st.success(), "exit {st}; log:\n{}", gb.log());
}

#[test]
fn tun_bridge_initiator_to_strongswan() {
    if !Lab::require_strongswan() {
        return;
    }
    let mut lab = Lab::new().unwrap();
    let t = TwoSites::up(&mut lab, TwoSitesConfig::default()).unwrap();
    let dir = lab.state_dir().to_path_buf();
    let (a, b) = (t.gw_a_outer().to_string(), t.gw_b_outer().to_string());
    let swan = StrongSwan::start(&mut lab, &t.gw_b, true).unwrap();
    let conn = SwanConnection::ikev2_psk(
        "site",
        &b,
        &a,
        "aes128gcm16-prfsha256-modp2048",
        PSK.as_bytes(),
        // PFS on rekey (tun-bridge's pfs=yes default adds the IKE group)
        SwanChild::new(
            "site",
            &t.site_b_cidr(),
            &t.site_a_cidr(),
            "aes128gcm16-modp2048",
        ),
    );
    swan.load(&conn).unwrap();
    let extra = "  ike=aes128gcm16-prfsha256-modp2048\n  esp=aes128gcm16\n  encapsulation=yes\n";
    let mut ga = Gw::spawn(
        &t.gw_a,
        &dir,
        "a",
        &conf(
            "site",
            "start",
            &a,
            &b,
            &t.site_a_cidr(),
            &t.site_b_cidr(),
            extra,
        ),
        &secrets(&a, &b),
        &[],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if ga
            .tunnel("site")
            .is_some_and(|s| s["state"] == "established")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not established; tun-bridge log:\n{}\ncharon log:\n{}",
            ga.log(),
            swan.log_tail(60)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let sas = swan.list_sas().unwrap();
    assert!(
        sas.contains("ESTABLISHED") && sas.contains("INSTALLED"),
        "{sas}"
    );
    let mut ok = false;
    for _ in 0..3 {
        if lab
            .ping(&t.host_a, &t.host_b_addr().to_string(), 3)
            .unwrap()
        {
            ok = true;
            break;
        }
    }
    assert!(
        ok,
        "ping failed; tun-bridge log:\n{}\nstatus {:?}\ncharon:\n{}\n{}",
        ga.log(),
        ga.tunnel("site"),
        swan.log_tail(40),
        swan.list_sas().unwrap_or_default()
    );
    let st = ga.tunnel("site").unwrap();
    assert!(st["packets_in"].as_u64().unwrap() >= 3, "{st}");
    assert_eq!(st["esp_algorithms"], "aes128gcm16");

    // strongSwan rekeys the Child SA: make-before-break on our side.
    swan.rekey_child("site").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let rekeyed = loop {
        let now = ga.tunnel("site").unwrap();
        if now["spi_in"] != st["spi_in"] && now["state"] == "established" {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "no rekey: {now}\n{}\n{}",
            ga.log(),
            swan.log_tail(30)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(rekeyed["last_rekey_secs"].is_u64(), "{rekeyed}");
    assert!(
        lab.ping(&t.host_a, &t.host_b_addr().to_string(), 3)
            .unwrap(),
        "ping after rekey; {}\n{}",
        ga.log(),
        swan.list_sas().unwrap_or_default()
    );
    let after = ga.tunnel("site").unwrap();
    assert!(
        after["packets_in"].as_u64() > st["packets_in"].as_u64(),
        "{after}"
    );
    let code = ga.terminate(Duration::from_secs(6));
    assert!(code.success(), "exit {code}; log:\n{}", ga.log());
    // strongSwan saw our DELETE
    let deadline = Instant::now() + Duration::from_secs(5);
    while swan.list_sas().unwrap_or_default().contains("ESTABLISHED") {
        assert!(
            Instant::now() < deadline,
            "charon still has the SA:\n{}",
            swan.log_tail(30)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Seconds-of-day of the first log line containing `needle` (tracing's
/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` prefix, ANSI colours stripped).
fn log_time(log: &str, needle: &str) -> Option<f64> {
    let line = log.lines().find(|l| l.contains(needle))?;
    let t = line.find('T')?;
    let hms = line.get(t + 1..t + 16)?;
    let mut it = hms.split(':');
    let (h, m, s) = (it.next()?, it.next()?, it.next()?);
    Some(h.parse::<f64>().ok()? * 3600.0 + m.parse::<f64>().ok()? * 60.0 + s.parse::<f64>().ok()?)
}

fn wait_route(lab: &Lab, ns: &str, needle: &str, timeout: Duration, logs: &dyn Fn() -> String) {
    let deadline = Instant::now() + timeout;
    loop {
        let r = routes(lab, ns);
        if r.contains(needle) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no route '{needle}' within {timeout:?}:\n{r}\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Two tunnels with the same subnets form a failover pair: when DPD
/// declares the primary dead the routes move to the standby, and come back
/// once the primary is up again (`--failback primary`, the default).
#[test]
fn failover_pair_moves_routes_and_fails_back() {
    if !Lab::require_root() {
        return;
    }
    let mut lab = Lab::new().unwrap();
    let t = TwoSites::up(&mut lab, TwoSitesConfig::default()).unwrap();
    let dir = lab.state_dir().to_path_buf();
    let (a1, b1) = (t.gw_a_outer().to_string(), t.gw_b_outer().to_string());
    // a second WAN prefix (deleting tunnel 1's address must not take it along)
    let (a2, b2) = ("198.51.100.1".to_string(), "198.51.100.2".to_string());
    lab.ip_in(
        &t.gw_a,
        &["addr", "add", "198.51.100.1/24", "dev", TwoSites::GW_WAN_IF],
    )
    .unwrap();
    lab.ip_in(
        &t.gw_b,
        &["addr", "add", "198.51.100.2/24", "dev", TwoSites::GW_WAN_IF],
    )
    .unwrap();
    let opts = "  esp=aes128gcm16\n  dpddelay=1\n  dpdtimeout=3\n  dpdaction=restart\n";
    let pair = |auto: &str, l1: &str, r1: &str, l2: &str, r2: &str, ls: &str, rs: &str| {
        format!(
            "{}\n{}",
            conf("tunnel1", auto, l1, r1, ls, rs, opts),
            conf("tunnel2", auto, l2, r2, ls, rs, opts).replace("config setup\n\n", "")
        )
    };
    let sec_b = format!("{}{}", secrets(&b1, &a1), secrets(&b2, &a2));
    let sec_a = format!("{}{}", secrets(&a1, &b1), secrets(&a2, &b2));
    let mut gb = Gw::spawn(
        &t.gw_b,
        &dir,
        "b",
        &pair(
            "add",
            &b1,
            &a1,
            &b2,
            &a2,
            &t.site_b_cidr(),
            &t.site_a_cidr(),
        ),
        &sec_b,
        &[],
    );
    std::thread::sleep(Duration::from_millis(300));
    let mut ga = Gw::spawn(
        &t.gw_a,
        &dir,
        "a",
        &pair(
            "start",
            &a1,
            &b1,
            &a2,
            &b2,
            &t.site_a_cidr(),
            &t.site_b_cidr(),
        ),
        &sec_a,
        &["--failback", "primary"],
    );
    ga.wait_state("tunnel1", "established", Duration::from_secs(20));
    ga.wait_state("tunnel2", "established", Duration::from_secs(20));
    let site_b = t.site_b_cidr();
    let site_a = t.site_a_cidr();
    assert!(routes(&lab, &t.gw_a).contains(&format!("{site_b} dev tb-tunnel1")));
    assert_eq!(ga.tunnel("tunnel2").unwrap()["role"], "standby");
    assert!(lab
        .ping(&t.host_a, &t.host_b_addr().to_string(), 2)
        .unwrap());

    // Cut tunnel 1: B loses its address; both sides' DPD gives up.
    lab.ip_in(
        &t.gw_b,
        &[
            "addr",
            "del",
            &format!("{b1}/24"),
            "dev",
            TwoSites::GW_WAN_IF,
        ],
    )
    .unwrap();
    let logs = || format!("A log:\n{}\nB log:\n{}", ga.log(), gb.log());
    wait_route(
        &lab,
        &t.gw_a,
        &format!("{site_b} dev tb-tunnel2"),
        Duration::from_secs(15),
        &logs,
    );
    wait_route(
        &lab,
        &t.gw_b,
        &format!("{site_a} dev tb-tunnel2"),
        Duration::from_secs(15),
        &logs,
    );
    let a_log = ga.log();
    let dead = log_time(&a_log, "peer dead").expect("DPD verdict logged");
    // The first switch after the verdict (routes may also have moved at
    // start, when tunnel 2 came up before tunnel 1).
    let after = a_log.find("peer dead").map_or("", |i| &a_log[i..]);
    let moved = log_time(after, "failover: routes moved").expect("switch logged");
    assert!(
        moved >= dead && moved - dead < 2.0,
        "switch {moved} vs verdict {dead}"
    );
    assert_eq!(ga.tunnel("tunnel2").unwrap()["role"], "active");
    let mut ok = false;
    for _ in 0..3 {
        if lab
            .ping(&t.host_a, &t.host_b_addr().to_string(), 2)
            .unwrap()
        {
            ok = true;
            break;
        }
    }
    assert!(ok, "no ping over the standby; {}", logs());

    // Tunnel 1 back: A re-initiates it and fails back.
    lab.ip_in(
        &t.gw_b,
        &[
            "addr",
            "add",
            &format!("{b1}/24"),
            "dev",
            TwoSites::GW_WAN_IF,
        ],
    )
    .unwrap();
    wait_route(
        &lab,
        &t.gw_a,
        &format!("{site_b} dev tb-tunnel1"),
        Duration::from_secs(40),
        &logs,
    );
    wait_route(
        &lab,
        &t.gw_b,
        &format!("{site_a} dev tb-tunnel1"),
        Duration::from_secs(10),
        &logs,
    );
    assert!(
        lab.ping(&t.host_a, &t.host_b_addr().to_string(), 2)
            .unwrap(),
        "{}",
        logs()
    );
    assert!(ga.terminate(Duration::from_secs(6)).success());
    assert!(gb.terminate(Duration::from_secs(6)).success());
}
