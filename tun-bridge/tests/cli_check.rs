//! Runs the `tun-bridge` binary: `check` on the AWS samples and on broken
//! files (every error `up` would find before touching the system, at its
//! `file:line`), and `up` on broken files (fails before any network
//! activity).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn data(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(p)
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tun-bridge"))
        .args(args)
        .output()
        .expect("run tun-bridge")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn check_libreswan_sample() {
    let conf = data("libreswan/ipsec.conf");
    let sec = data("libreswan/ipsec.secrets");
    let out = run(&[
        "check",
        "--config",
        conf.to_str().unwrap(),
        "--secrets",
        sec.to_str().unwrap(),
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let aws = data("libreswan/ipsec.d/aws.conf");
    assert!(
        stdout.contains(&format!("conn Tunnel1 ({}:1)\n", aws.display())),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("conn Tunnel2 ({}:21)\n", aws.display())));
    for line in [
        "  auto           start\n",
        "  left           %defaultroute\n",
        "  leftid         198.51.100.10\n",
        "  right          203.0.113.11\n",
        "  leftsubnet     192.168.0.0/16\n",
        "  rightsubnet    10.0.0.0/16\n",
        "  ike            aes128-sha1;modp1024\n",
        "  esp            aes128-sha1;modp1024\n",
        "  ikelifetime    8h\n",
        "  salifetime     1h\n",
        "  rekeymargin    9m\n",
        "  dpd            delay 10s timeout 30s action restart_by_peer\n",
        "  keyingtries    %forever\n",
        "  replay-window  32\n",
        "  psk            <set, 32 bytes>\n",
        "configuration OK: 2 connection(s)",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in\n{stdout}");
    }
    assert!(!stdout.contains("example_psk") && !stderr.contains("example_psk"));
    assert!(
        stderr.contains(&format!("{}:12: warning: auth=esp", aws.display())),
        "{stderr}"
    );
}

#[test]
fn check_strongswan_sample() {
    let conf = data("strongswan/ipsec.conf");
    let sec = data("strongswan/ipsec.secrets");
    let out = run(&[
        "check",
        "--config",
        conf.to_str().unwrap(),
        "--secrets",
        sec.to_str().unwrap(),
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("  ike-version    ikev1\n"));
    assert!(stdout.contains("  mark           100/0xffffffff\n"));
    assert!(stdout.contains(
        "  tunnel         name Tunnel1 local 169.254.10.2/30 remote 169.254.10.1/30 mark 100 routes 10.0.0.0/16 route-based\n"
    ));
    // The interface plan: name, kind, MTU, address, selectors, routes.
    assert!(stdout.contains(
        "interfaces\n  Tunnel1: route-based (aws-updown.sh -ln), mtu 1399, address 169.254.10.2/30\n    conn Tunnel1: selectors 0.0.0.0/0 === 0.0.0.0/0, peer inside 169.254.10.1/30, routes 10.0.0.0/16\n"
    ), "{stdout}");
    assert!(stderr.contains(&format!(
        "{}:22: warning: keyexchange=ikev1: IKEv1 (Historic, RFC 9395) main mode with PSK will be used",
        conf.display()
    )));
}

fn broken_files(tag: &str) -> (PathBuf, PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("tb-cli-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("ipsec.conf");
    let sec = dir.join("ipsec.secrets");
    std::fs::write(
        &conf,
        "conn t\n\tauthby=secret\n\tauto=start\n\tleft=%defaultroute\n\tright=203.0.113.5\n\tikelifetime=forever\n\tfrobnicate=yes\n",
    )
    .unwrap();
    std::fs::write(&sec, "203.0.113.5 : PSK \"secret-value\"\n").unwrap();
    (dir, conf, sec)
}

#[test]
fn check_reports_every_error_with_file_and_line() {
    let (dir, conf, sec) = broken_files("check");
    let out = run(&[
        "check",
        "--config",
        conf.to_str().unwrap(),
        "--secrets",
        sec.to_str().unwrap(),
    ]);
    std::fs::remove_dir_all(&dir).unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty());
    let c = conf.display();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines[0],
        format!("{c}:6: invalid value 'forever' for 'ikelifetime': expected a duration like 8h, 54m, 28800s or 3600")
    );
    assert_eq!(
        lines[1],
        format!("{c}:7: unknown key 'frobnicate' in conn section")
    );
    assert!(!stderr.contains("secret-value"));
}

/// Runs `up` on `conf`/`sec` (a control socket in `dir`), removes `dir`,
/// asserts that `up` failed and returns its stderr.
fn up_fails(dir: &std::path::Path, conf: &std::path::Path, sec: &std::path::Path) -> String {
    let out = run(&[
        "up",
        "--config",
        conf.to_str().unwrap(),
        "--secrets",
        sec.to_str().unwrap(),
        "--control",
        dir.join("ctl.sock").to_str().unwrap(),
    ]);
    std::fs::remove_dir_all(dir).unwrap();
    assert!(!out.status.success());
    text(&out.stderr)
}

#[test]
fn up_rejects_a_broken_configuration() {
    let (dir, conf, sec) = broken_files("up");
    let stderr = up_fails(&dir, &conf, &sec);
    assert!(
        stderr.contains(&format!("{}:7: unknown key 'frobnicate'", conf.display())),
        "{stderr}"
    );
}

/// Writes `conf` and a secrets file (mode 0600) for 192.0.2.1/192.0.2.2
/// into a scratch directory; returns (dir, conf, secrets).
fn files(tag: &str, conf: &str) -> (PathBuf, PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("tb-cli-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let c = dir.join("ipsec.conf");
    let s = dir.join("ipsec.secrets");
    std::fs::write(&c, conf).unwrap();
    std::fs::write(&s, "192.0.2.1 192.0.2.2 : PSK \"secret-value\"\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&s, std::fs::Permissions::from_mode(0o600)).unwrap();
    (dir, c, s)
}

const CONN: &str = "conn t\n\tauthby=secret\n\tauto=start\n\tleft=192.0.2.1\n\tright=192.0.2.2\n";

/// Runs `check` on `conf`; returns (exit code, stdout, stderr) with the
/// scratch directory stripped from the messages.
fn check(tag: &str, conf: &str, extra: &[&str]) -> (Option<i32>, String, String) {
    let (dir, c, s) = files(tag, conf);
    let mut args = vec![
        "check",
        "--config",
        c.to_str().unwrap(),
        "--secrets",
        s.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = run(&args);
    std::fs::remove_dir_all(&dir).unwrap();
    let strip = |b: &[u8]| text(b).replace(&format!("{}/", dir.display()), "");
    (out.status.code(), strip(&out.stdout), strip(&out.stderr))
}

#[test]
fn check_rejects_bad_proposals_at_their_line() {
    let (code, stdout, stderr) = check(
        "proposals",
        &format!("{CONN}\tike=aes999-sha7;modp77\n\tphase2alg=foo-bar\n"),
        &[],
    );
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(!stdout.contains("configuration OK"), "{stdout}");
    assert_eq!(
        stderr,
        "ipsec.conf:6: invalid ike= proposal 'aes999-sha7;modp77': unknown algorithm \"aes999\"\n\
         ipsec.conf:7: invalid phase2alg= proposal 'foo-bar': unknown algorithm \"foo\"\n\
         2 error(s)\n"
    );
    for (i, garbage) in [
        "aes128-sha1-prfsha256",
        "aes128gcm16-sha1",
        ",",
        "sha1",
        "aes128;;sha1",
    ]
    .iter()
    .enumerate()
    {
        let (code, _, stderr) = check(&format!("esp{i}"), &format!("{CONN}\tesp={garbage}\n"), &[]);
        assert_eq!(code, Some(1), "esp={garbage}: {stderr}");
        assert!(
            stderr.starts_with(&format!(
                "ipsec.conf:6: invalid esp= proposal '{garbage}': "
            )),
            "esp={garbage}: {stderr}"
        );
    }
}

#[test]
fn check_rejects_what_up_would_not_start() {
    let (code, _, stderr) = check("ignored", &CONN.replace("auto=start", "auto=ignore"), &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("ipsec.conf: no connection to bring up (all are auto=ignore)"),
        "{stderr}"
    );
    let (code, stdout, stderr) = check(
        "named",
        &CONN.replace("auto=start", "auto=ignore"),
        &["--conn", "t"],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("configuration OK: 1 connection(s)"));
    let (code, _, stderr) = check("nosuch", CONN, &["--conn", "u"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("ipsec.conf: --conn u: no such connection"),
        "{stderr}"
    );
    let (code, _, stderr) = check(
        "anyany",
        &CONN
            .replace("left=192.0.2.1", "left=%defaultroute")
            .replace("right=192.0.2.2", "right=%any")
            .replace("auto=start", "auto=add"),
        &[],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "ipsec.conf:5: conflicting settings: left=%defaultroute needs a concrete right="
        ),
        "{stderr}"
    );
}

#[test]
fn up_rejects_bad_proposals_before_touching_the_system() {
    let (dir, c, s) = files("up-proposals", &format!("{CONN}\tike=aes999-sha7;modp77\n"));
    let stderr = up_fails(&dir, &c, &s);
    assert!(
        stderr.contains(&format!("{}:6: invalid ike= proposal", c.display())),
        "{stderr}"
    );
}

#[test]
fn usage_errors() {
    assert_eq!(run(&["check"]).status.code(), Some(2));
    assert_eq!(run(&["demo", "--config", "x"]).status.code(), Some(2));
}

#[test]
fn check_shows_the_flood_limits_and_rejects_bad_ones_at_their_line() {
    let setup = "config setup\n\tddos-mode=busy\n\tddos-ike-threshold=50\n\tblock_threshold=2\n\
                 \tmax-halfopen-ike=1000\n\thalf_open_timeout=5s\n";
    let (code, stdout, stderr) = check("flood-ok", &format!("{setup}{CONN}"), &[]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains(
            "config setup (IKE flood limits)\n  \
             ddos-mode           busy\n  \
             ddos-ike-threshold  50\n  \
             cookie_threshold_ip 3\n  \
             block_threshold     2\n  \
             max-halfopen-ike    1000\n  \
             half_open_timeout   5s\n"
        ),
        "{stdout}"
    );
    // The defaults (strongSwan's) when nothing is set.
    let (_, stdout, _) = check("flood-default", CONN, &[]);
    assert!(stdout.contains("  ddos-ike-threshold  30\n"), "{stdout}");
    assert!(stdout.contains("  half_open_timeout   30s\n"), "{stdout}");
    let bad = "config setup\n\tddos-mode=sometimes\n\tmax-halfopen-ike=-1\n\thalf_open_timeout=0\n";
    let (code, stdout, stderr) = check("flood-bad", &format!("{bad}{CONN}"), &[]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert_eq!(
        stderr,
        "ipsec.conf:2: invalid value 'sometimes' for 'ddos-mode': expected auto, busy or unlimited\n\
         ipsec.conf:3: invalid value '-1' for 'max-halfopen-ike': expected a non-negative 32-bit integer\n\
         ipsec.conf:4: invalid value '0' for 'half_open_timeout': expected at least 1 second\n\
         3 error(s)\n"
    );
}
