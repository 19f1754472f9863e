//! The AWS sample configurations parse to the expected effective settings,
//! and broken files produce `file:line` errors.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tun_bridge::config::values::*;
use tun_bridge::config::{self, ConfigErrorKind, LoadFailure, Loaded};

mod plan_offline;

fn data(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(p)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn net(s: &str) -> IpNet {
    IpNet::parse(s).unwrap()
}

#[test]
fn aws_libreswan_sample() {
    let loaded = config::load(
        &data("libreswan/ipsec.conf"),
        &data("libreswan/ipsec.secrets"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let cfg = &loaded.config;
    assert_eq!(cfg.setup.get("protostack"), Some("netkey"));
    assert_eq!(cfg.setup.get("plutodebug"), Some("none"));
    assert_eq!(
        cfg.conns
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["Tunnel1", "Tunnel2"]
    );
    let t1 = cfg.conn("Tunnel1").unwrap();
    assert_eq!(t1.source.file, data("libreswan/ipsec.d/aws.conf"));
    assert_eq!(t1.source.line, 1);
    assert_eq!(t1.auto, Auto::Start);
    assert_eq!(t1.conn_type, ConnType::Tunnel);
    assert_eq!(t1.local, Endpoint::DefaultRoute);
    assert_eq!(t1.local_id, Some(Identity::Ip(ip("198.51.100.10"))));
    assert_eq!(t1.remote, Endpoint::Ip(ip("203.0.113.11")));
    assert_eq!(t1.remote_id, None);
    assert_eq!(t1.local_subnets, [net("192.168.0.0/16")]);
    assert_eq!(t1.remote_subnets, [net("10.0.0.0/16")]);
    assert_eq!(t1.ike_version, IkeVersionPolicy::Ikev2Preferred);
    assert_eq!(t1.ike.text.as_deref(), Some("aes128-sha1;modp1024"));
    assert_eq!(t1.esp.text.as_deref(), Some("aes128-sha1;modp1024"));
    assert_eq!(t1.ike.list.len(), 1);
    assert_eq!(
        t1.ike.list[0].encr,
        [ike_lite::proposal::EncrAlg::aes_cbc(128)]
    );
    assert_eq!(t1.ike.list[0].dh, [ike_lite::crypto::DhGroup(2)]);
    assert_eq!(t1.esp.list[0].dh, [ike_lite::crypto::DhGroup(2)]);
    assert_eq!(t1.ike_lifetime, Duration::from_secs(8 * 3600));
    assert_eq!(t1.sa_lifetime, Duration::from_secs(3600));
    assert_eq!(t1.rekey_margin, Duration::from_secs(540));
    assert_eq!(t1.rekey_fuzz_percent, 100);
    let dpd = t1.dpd.unwrap();
    assert_eq!(dpd.delay, Duration::from_secs(10));
    assert_eq!(dpd.timeout, Duration::from_secs(30));
    assert_eq!(dpd.action, DpdAction::RestartByPeer);
    assert_eq!(t1.keying_tries, KeyingTries::Forever);
    assert_eq!(t1.mark, None);
    assert_eq!(t1.replay_window, 32);
    assert!(t1.pfs);
    assert_eq!(t1.encapsulation, Encapsulation::Auto);
    assert_eq!(
        t1.psk.as_ref().unwrap().expose(),
        b"tunnel1_example_psk_0123456789AB"
    );
    let t2 = cfg.conn("Tunnel2").unwrap();
    assert_eq!(t2.remote, Endpoint::Ip(ip("203.0.113.12")));
    assert_eq!(
        t2.psk.as_ref().unwrap().expose(),
        b"tunnel2_example_psk_0123456789CD"
    );
    // auth=esp is accepted with a warning at its line.
    let w: Vec<String> = loaded
        .warnings
        .iter()
        .filter(|w| w.message.contains("auth=esp"))
        .map(|w| {
            format!(
                "{}:{}",
                w.file.file_name().unwrap().to_string_lossy(),
                w.line
            )
        })
        .collect();
    assert_eq!(w, ["aws.conf:12", "aws.conf:32"]);
    // The PSK never shows up in Debug output.
    assert!(!format!("{cfg:?}").contains("tunnel1_example_psk"));
}

#[test]
fn aws_strongswan_sample() {
    let loaded = config::load(
        &data("strongswan/ipsec.conf"),
        &data("strongswan/ipsec.secrets"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let cfg = &loaded.config;
    assert_eq!(cfg.setup.get("uniqueids"), Some("no"));
    let t1 = cfg.conn("Tunnel1").unwrap();
    assert_eq!(t1.source.line, 14);
    assert_eq!(t1.ike_version, IkeVersionPolicy::Ikev1Requested);
    assert_eq!(t1.ike.text.as_deref(), Some("aes128-sha1-modp1024"));
    assert_eq!(t1.esp.text.as_deref(), Some("aes128-sha1-modp1024"));
    assert_eq!(t1.sa_lifetime, Duration::from_secs(3600));
    assert_eq!(t1.ike_lifetime, Duration::from_secs(28800));
    assert_eq!(t1.local_subnets, [net("0.0.0.0/0")]);
    assert_eq!(t1.remote_subnets, [net("0.0.0.0/0")]);
    assert_eq!(t1.dpd.unwrap().action, DpdAction::Restart);
    assert_eq!(
        t1.mark,
        Some(Mark {
            value: 100,
            mask: u32::MAX
        })
    );
    assert_eq!(t1.tunnel.name.as_deref(), Some("Tunnel1"));
    assert_eq!(
        t1.tunnel.local_inside,
        Some(IfAddr {
            addr: ip("169.254.10.2"),
            prefix: 30
        })
    );
    assert_eq!(t1.tunnel.remote_inside.unwrap().addr, ip("169.254.10.1"));
    assert_eq!(t1.tunnel.mark, Some(100));
    assert_eq!(t1.tunnel.routes, [net("10.0.0.0/16")]);
    assert!(t1
        .updown
        .as_deref()
        .unwrap()
        .starts_with("/etc/ipsec.d/aws-updown.sh -ln Tunnel1"));
    assert_eq!(
        t1.psk.as_ref().unwrap().expose(),
        b"ss_tunnel1_example_psk_ABCDEFGH"
    );
    let t2 = cfg.conn("Tunnel2").unwrap();
    assert_eq!(t2.mark.unwrap().value, 200);
    assert_eq!(
        t2.psk.as_ref().unwrap().expose(),
        b"ss_tunnel2_example_psk_IJKLMNOP"
    );
    let lines = |needle: &str| -> Vec<u32> {
        loaded
            .warnings
            .iter()
            .filter(|w| w.message.contains(needle))
            .map(|w| w.line)
            .collect()
    };
    assert_eq!(lines("IKEv1 (Historic, RFC 9395)"), [22, 47]);
    assert_eq!(lines("leftupdown is not executed"), [37, 62]);
}

/// Plans the sample's connections with `left=%defaultroute` standing for
/// `local`.
fn plan_sample(cfg: &config::Config, local: &str) -> Vec<tun_bridge::runtime::plan::ConnPlan> {
    use tun_bridge::runtime::plan;
    plan::select_conns(cfg, &[])
        .unwrap()
        .into_iter()
        .map(|(c, m)| {
            let Endpoint::Ip(remote) = c.remote else {
                panic!("sample peers are IP literals")
            };
            plan::plan_conn(c, m, ip(local), remote, &cfg.secrets, true).unwrap()
        })
        .collect()
}

#[test]
fn aws_bgp_libreswan_ipsec_interface_sample() {
    let loaded = config::load(
        &data("libreswan-bgp/ipsec.conf"),
        &data("libreswan-bgp/ipsec.secrets"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let cfg = &loaded.config;
    let t1 = cfg.conn("Tunnel1").unwrap();
    assert!(t1.tunnel.route_based);
    assert_eq!(t1.tunnel.ipsec_interface, Some(1));
    assert_eq!(t1.tunnel.name.as_deref(), Some("ipsec1"));
    assert_eq!(
        t1.tunnel.local_inside.unwrap().to_string(),
        "169.254.10.2/30"
    );
    let plans = plan_sample(cfg, "198.51.100.10");
    assert_eq!(plans[0].ifname, "ipsec1");
    assert_eq!(plans[1].ifname, "ipsec2");
    assert_eq!(plans[0].mtu.mtu, 1399);
    assert_eq!(plans[1].mtu.mtu, 1400);
    assert!(plans.iter().all(|p| p.route_based && p.routes.is_empty()));
    assert_eq!(
        tun_bridge::runtime::plan::failover_groups(&plans),
        vec![vec![0], vec![1]]
    );
    assert_eq!(plan_offline::plan_all(cfg, &[]), 2);
    let plan = tun_bridge::check::render_interfaces(&cfg.conns.iter().collect::<Vec<_>>());
    assert!(
        plan.contains("ipsec1: route-based (ipsec-interface=1), mtu 1399, address 169.254.10.2/30"),
        "{plan}"
    );
    assert!(plan.contains(
        "conn Tunnel2: selectors 0.0.0.0/0 === 0.0.0.0/0, peer inside (none), routes none (the routing daemon owns the table)"
    ));
}

#[test]
fn aws_bgp_strongswan_vti_sample() {
    let loaded = config::load(
        &data("strongswan-vti/ipsec.conf"),
        &data("strongswan-vti/ipsec.secrets"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let cfg = &loaded.config;
    let plans = plan_sample(cfg, "198.51.100.20");
    assert_eq!(plans[0].ifname, "Tunnel1");
    assert_eq!(plans[1].ifname, "vti2");
    assert_eq!(plans[1].inside, Some((ip("169.254.20.2"), 30)));
    assert_eq!(plans[1].remote_inside, Some(ip("169.254.20.1")));
    assert!(plans.iter().all(|p| p.route_based && p.routes.is_empty()));
    let not_run: Vec<u32> = loaded
        .warnings
        .iter()
        .filter(|w| w.message.contains("leftupdown is not executed"))
        .map(|w| w.line)
        .collect();
    assert_eq!(not_run, [28, 34]);
    let plan = tun_bridge::check::render_interfaces(&cfg.conns.iter().collect::<Vec<_>>());
    assert!(
        plan.contains("vti2: route-based (ipsec-vti.sh 2), mtu 1399, address 169.254.20.2/30"),
        "{plan}"
    );
}

#[test]
fn aws_bgp_example_in_the_repository() {
    let ex = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/aws-bgp");
    let loaded = config::load(&ex.join("ipsec.conf"), &ex.join("ipsec.secrets"))
        .unwrap_or_else(|e| panic!("{e}"));
    let plans = plan_sample(&loaded.config, "198.51.100.10");
    assert_eq!(
        plans
            .iter()
            .map(|p| (p.ifname.as_str(), p.inside.map(|i| i.0.to_string())))
            .collect::<Vec<_>>(),
        [
            ("ipsec1", Some("169.254.10.2".to_string())),
            ("ipsec2", Some("169.254.11.2".to_string()))
        ]
    );
    assert!(plans
        .iter()
        .all(|p| p.route_based && p.routes.is_empty() && p.mtu.mtu == 1399));
    // Nothing to warn about but the mode of the secrets file, which git
    // does not keep (0644 in a fresh clone).
    let other: Vec<_> = loaded
        .warnings
        .iter()
        .filter(|w| !w.message.contains("accessible by group/others"))
        .collect();
    assert!(other.is_empty(), "{other:?}");
}

/// A scratch directory with files; removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("tb-cfg-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        p
    }

    fn load(&self, conf: &str, secrets: &str) -> Result<Loaded, LoadFailure> {
        let c = self.file("ipsec.conf", conf);
        let s = self.file("ipsec.secrets", secrets);
        config::load(&c, &s)
    }

    /// Errors as `name:line: message` with the directory stripped.
    fn errors(&self, conf: &str, secrets: &str) -> Vec<String> {
        let fail = self.load(conf, secrets).expect_err("expected errors");
        fail.errors
            .iter()
            .map(|e| {
                e.to_string()
                    .strip_prefix(&format!("{}/", self.0.display()))
                    .unwrap()
                    .to_string()
            })
            .collect()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const BASE: &str = "conn a\n\tauthby=secret\n\tauto=start\n\tleft=192.0.2.1\n\tright=192.0.2.2\n";
const SECRET: &str = "192.0.2.1 192.0.2.2 : PSK \"k\"\n";

#[test]
fn unknown_key() {
    let s = Scratch::new("unknown");
    let e = s.errors(&format!("{BASE}\tleftfoo=1\n"), SECRET);
    assert_eq!(e, ["ipsec.conf:6: unknown key 'leftfoo' in conn section"]);
}

#[test]
fn bad_duration() {
    let s = Scratch::new("duration");
    let e = s.errors(
        &format!("{BASE}\tikelifetime=8hours\n\tdpddelay=-1\n"),
        SECRET,
    );
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e[0].starts_with("ipsec.conf:6: invalid value '8hours' for 'ikelifetime'"),
        "{e:?}"
    );
    assert!(
        e[1].starts_with("ipsec.conf:7: invalid value '-1' for 'dpddelay'"),
        "{e:?}"
    );
}

#[test]
fn also_cycle_and_missing() {
    let s = Scratch::new("also");
    let conf = format!(
        "{BASE}\talso=b\nconn b\n\talso=c\nconn c\n\talso=b\nconn d\n\talso=nope\n\tauto=add\n"
    );
    let e = s.errors(&conf, SECRET);
    assert!(
        e.contains(&"ipsec.conf:10: also= cycle: a -> b -> c -> b".to_string()),
        "{e:?}"
    );
    assert!(
        e.contains(&"ipsec.conf:12: also=nope: no such conn section".to_string()),
        "{e:?}"
    );
}

#[test]
fn missing_include() {
    let s = Scratch::new("include");
    let e = s.errors(
        &format!("include extra.conf\ninclude none/*.conf\n{BASE}"),
        SECRET,
    );
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("ipsec.conf:1: include file not found:"),
        "{e:?}"
    );
    assert!(e[0].ends_with("extra.conf"), "{e:?}");
}

#[test]
fn include_cycle() {
    let s = Scratch::new("inccycle");
    s.file("a.conf", "include b.conf\n");
    s.file("b.conf", "include a.conf\n");
    let e = s.errors(&format!("include a.conf\n{BASE}"), SECRET);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].starts_with("b.conf:1: include cycle:"), "{e:?}");
}

#[test]
fn diamond_also_graph_stays_linear() {
    // 40 levels, each naming the next twice: exponential without memoisation.
    let mut conf = String::from(BASE);
    conf.push_str("\talso=l0\n");
    for i in 0..40 {
        conf.push_str(&format!("conn l{i}\n\talso=l{n}\n\talso=l{n}\n", n = i + 1));
    }
    conf.push_str("conn l40\n\tpfs=no\n");
    let loaded = config::parse_str(&conf, Path::new("c"), SECRET, Path::new("s"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.config.conns.len(), 1);
    assert!(
        !loaded.config.conns[0].pfs,
        "value inherited through 41 also= levels"
    );
}

#[test]
fn bad_subnet() {
    let s = Scratch::new("subnet");
    let e = s.errors(
        &format!("{BASE}\tleftsubnet=10.0.0.1/16\n\trightsubnet=10.0.0.0/40\n"),
        SECRET,
    );
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(e[0].starts_with("ipsec.conf:6: invalid value '10.0.0.1/16' for 'leftsubnet'"));
    assert!(e[0].contains("did you mean 10.0.0.0/16"));
    assert!(e[1].starts_with("ipsec.conf:7: invalid value '10.0.0.0/40'"));
}

#[test]
fn secret_line_without_psk() {
    let s = Scratch::new("nopsk");
    let e = s.errors(BASE, "# tunnel\n192.0.2.1 192.0.2.2 \"k\"\n");
    assert_eq!(e, ["ipsec.secrets:2: secret entry without ': PSK \"...\"'"]);
    // A valid secrets file without a matching entry is an error at the conn.
    let e = s.errors(BASE, "192.0.2.1 192.0.2.3 : PSK \"k\"\n");
    assert_eq!(
        e,
        ["ipsec.conf:1: conn a: no PSK in the secrets file matches 192.0.2.1 192.0.2.2"]
    );
}

#[test]
fn unterminated_quote() {
    let s = Scratch::new("quote");
    let e = s.errors(
        &format!("{BASE}\tleftupdown=\"/bin/x -a\n"),
        "192.0.2.1 192.0.2.2 : PSK \"k\n",
    );
    assert_eq!(
        e,
        [
            "ipsec.conf:6: unterminated quoted string",
            "ipsec.secrets:1: unterminated quoted string",
        ]
    );
}

#[test]
fn all_errors_are_collected() {
    let s = Scratch::new("many");
    let conf = "config setup\n\tuniqueids=maybe\n\tbogus=1\nconn a\n\tauthby=rsasig\n\tauto=begin\n\tleft=%defaultroute\n\tright=%defaultroute\n\ttype=passthrough\n\tmark=0x1/0x0\n\treplay-window=100000\n\tkeyexchange=ikev1\n\tikev2=insist\n";
    let e = s.errors(conf, "");
    let lines: Vec<&str> = e.iter().map(|x| x.split(':').nth(1).unwrap()).collect();
    assert_eq!(
        lines,
        ["2", "3", "5", "6", "8", "9", "10", "11", "13"],
        "{e:#?}"
    );
}

#[test]
fn default_also_template_and_includes() {
    let s = Scratch::new("merge");
    s.file(
        "ipsec.d/10-common.conf",
        "conn common\n\tauthby=secret\n\tleft=%defaultroute\n\tleftid=@gw.example.com\n\tikelifetime=2h\n",
    );
    s.file(
        "ipsec.d/20-peer.conf",
        "conn peer\n\talso=common\n\tright=198.51.100.7\n\trightid=@#0a0b0c\n\tikelifetime=3h\n\tauto=start\n",
    );
    s.file(
        "ipsec.d/peer.secrets",
        "@gw.example.com @#0a0b0c : PSK 0x6b6579\n",
    );
    let loaded = s
        .load(
            "conn %default\n\tsalifetime=54m\n\treplay-window=1024\n\tikelifetime=1h\n\tpfs=no\n\tencapsulation=yes\ninclude ipsec.d/*.conf\n",
            ": PSK \"fallback\"\ninclude ipsec.d/*.secrets\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let c = &loaded.config.conns;
    assert_eq!(c.len(), 1, "the also= template is not a connection");
    let p = &c[0];
    assert_eq!(p.name, "peer");
    assert_eq!(
        p.ike_lifetime,
        Duration::from_secs(3 * 3600),
        "own line beats also= and %default"
    );
    assert_eq!(
        p.sa_lifetime,
        Duration::from_secs(54 * 60),
        "%default applies"
    );
    assert_eq!(p.replay_window, 1024);
    assert!(!p.pfs);
    assert_eq!(p.encapsulation, Encapsulation::Yes);
    assert_eq!(p.local_id, Some(Identity::Fqdn("gw.example.com".into())));
    assert_eq!(p.remote_id, Some(Identity::KeyId(vec![10, 11, 12])));
    assert_eq!(
        p.psk.as_ref().unwrap().expose(),
        b"key",
        "exact ID pair beats ': PSK'"
    );
    assert_eq!(p.dpd, None);
}

#[test]
fn world_readable_secrets_warn() {
    let s = Scratch::new("mode");
    let c = s.file("ipsec.conf", BASE);
    let sec = s.file("ipsec.secrets", SECRET);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&sec, std::fs::Permissions::from_mode(0o644)).unwrap();
    let loaded = config::load(&c, &sec).unwrap();
    assert_eq!(loaded.warnings.len(), 1);
    let w = loaded.warnings[0].to_string();
    assert_eq!(
        w,
        format!(
            "{0}:0: warning: secrets file is accessible by group/others (mode 0644); run: chmod 600 {0}",
            sec.display()
        )
    );
}

#[test]
fn defaultroute_without_leftid_defers_psk_lookup() {
    let loaded = config::parse_str(
        "conn a\n\tauthby=secret\n\tauto=start\n\tleft=%defaultroute\n\tright=192.0.2.2\n",
        Path::new("c"),
        "192.0.2.1 192.0.2.2 : PSK \"k\"\n",
        Path::new("s"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let a = &loaded.config.conns[0];
    assert!(a.psk.is_none());
    assert!(loaded.warnings[0]
        .message
        .contains("looked up again at runtime"));
    // Once the runtime knows the local address, it repeats the lookup.
    let m = loaded
        .config
        .secrets
        .lookup(
            Some(&Identity::Ip(ip("192.0.2.1"))),
            &Identity::Ip(ip("192.0.2.2")),
        )
        .unwrap();
    assert_eq!(m.entry.psk.expose(), b"k");
}

#[test]
fn proposal_errors_at_key_line() {
    let s = Scratch::new("proposal");
    let e = s.errors(
        &format!("{BASE}\tike=aes256-sha2_256;dh14\n\tesp=aes128-md5\n"),
        SECRET,
    );
    assert_eq!(
        e,
        ["ipsec.conf:7: invalid esp= proposal 'aes128-md5': unsupported algorithm \"md5\""]
    );
    let e = s.errors(
        &format!("{BASE}\tike=aes999-sha7;modp77\n\tphase2alg=foo-bar\n"),
        SECRET,
    );
    assert_eq!(
        e,
        [
            "ipsec.conf:6: invalid ike= proposal 'aes999-sha7;modp77': unknown algorithm \"aes999\"",
            "ipsec.conf:7: invalid phase2alg= proposal 'foo-bar': unknown algorithm \"foo\"",
        ]
    );
    let fail = s
        .load(&format!("{BASE}\tesp=aes128-sha1-prfsha256\n"), SECRET)
        .unwrap_err();
    assert!(matches!(
        &fail.errors[0].kind,
        ConfigErrorKind::Proposal { key, value, .. } if key == "esp" && value == "aes128-sha1-prfsha256"
    ));
    assert!(
        s.load(&format!("{BASE}\tesp=\n"), SECRET).is_ok(),
        "an empty value is no setting: defaults apply"
    );
}

#[test]
fn default_section_proposal_error_is_reported_once_at_its_line() {
    let s = Scratch::new("defproposal");
    let conf = format!(
        "conn %default\n\tike=aes128-sha1-modp768\n{BASE}conn b\n\talso=a\n\tright=192.0.2.3\n"
    );
    let e = s.errors(&conf, ": PSK \"k\"\n");
    assert_eq!(
        e,
        ["ipsec.conf:2: invalid ike= proposal 'aes128-sha1-modp768': unsupported algorithm \"modp768\""]
    );
}

#[test]
fn proposals_are_typed_with_pfs_applied() {
    let loaded = config::parse_str(
        &format!("{BASE}\tike=aes256gcm16-prfsha384-ecp384\n\tesp=aes128gcm16\nconn b\n\talso=a\n\tpfs=no\n\tesp=aes128-sha1-modp2048\n"),
        Path::new("c"),
        ": PSK \"k\"\n",
        Path::new("s"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let a = loaded.config.conn("a").unwrap();
    assert_eq!(
        a.esp.list[0].dh,
        [ike_lite::crypto::DhGroup(20)],
        "PFS group from ike="
    );
    let b = loaded.config.conn("b").unwrap();
    assert!(b.esp.list.iter().all(|p| p.dh.is_empty()));
    let w: Vec<String> = loaded.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(
        w,
        ["c:11: warning: pfs=no: the DH group in esp= is not used"]
    );
}

#[test]
fn endpoint_conflicts_are_config_errors() {
    let s = Scratch::new("endpoints");
    let e = s.errors(
        "conn a\n\tauthby=secret\n\tauto=add\n\tleft=%defaultroute\n\tright=%any\n",
        ": PSK \"k\"\n",
    );
    assert_eq!(
        e,
        ["ipsec.conf:5: conflicting settings: left=%defaultroute needs a concrete right= to find the local address; right=%any has none"]
    );
    let e = s.errors(
        "conn a\n\tauthby=secret\n\tauto=add\n\tleft=192.0.2.1\n\tright=2001:db8::1\n",
        ": PSK \"k\"\n",
    );
    assert_eq!(
        e,
        ["ipsec.conf:5: conflicting settings: left=192.0.2.1 and right=2001:db8::1 are of different address families"]
    );
    let e = s.errors(
        "conn a\n\tauthby=secret\n\tauto=add\n\tleft=192.0.2.1\n\tright=0.0.0.0\n",
        ": PSK \"k\"\n",
    );
    assert_eq!(
        e,
        ["ipsec.conf:5: invalid value '0.0.0.0' for 'right': not a peer address; use right=%any to accept any peer"]
    );
}

#[test]
fn transport_mode_and_replay_window_limits() {
    let s = Scratch::new("limits");
    let e = s.errors(&format!("{BASE}\ttype=transport\n"), SECRET);
    assert_eq!(
        e,
        ["ipsec.conf:6: unsupported 'type=transport': transport mode is not supported; tun-bridge runs tunnel mode"]
    );
    for (n, used, why) in [
        (0, 32, "anti-replay protection cannot be disabled"),
        (16, 32, "the window is 32 to 4096 packets"),
        (8192, 4096, "the window is 32 to 4096 packets"),
    ] {
        let loaded = s
            .load(&format!("{BASE}\treplay-window={n}\n"), SECRET)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(loaded.config.conns[0].replay_window, used);
        let w: Vec<String> = loaded
            .warnings
            .iter()
            .map(|w| format!("{}: {}", w.line, w.message))
            .collect();
        assert_eq!(w, [format!("6: replay-window={n}: {why}; using {used}")]);
    }
}

/// Every sample configuration of these tests that `check` accepts plans
/// without error (fixed addresses stand in for the running system).
#[test]
fn check_passing_implies_plan_succeeds() {
    let mut samples: Vec<(String, String, usize)> = vec![
        (BASE.into(), SECRET.into(), 1),
        (
            format!("{BASE}\tike=aes256-sha2_256;dh14\n\tesp=aes256gcm16\n\tmtu=1400\n"),
            SECRET.into(),
            1,
        ),
        (
            "conn %default\n\tauthby=secret\n\tpfs=no\n\tphase2alg=aes128-sha2_512\nconn v6\n\tauto=add\n\tleft=2001:db8::1\n\tright=%any\n\trightsubnet=2001:db8:1::/48\nconn named\n\tauto=start\n\tleft=%defaultroute\n\tleftid=@gw\n\tright=vpn.example.com\n"
                .into(),
            ": PSK \"k\"\n".into(),
            2,
        ),
        (
            // PSK keyed by the runtime address: only plan can decide.
            "conn a\n\tauthby=secret\n\tauto=start\n\tleft=%defaultroute\n\tright=192.0.2.2\n".into(),
            "192.0.2.1 192.0.2.2 : PSK \"k\"\n".into(),
            0,
        ),
    ];
    samples.push((
        std::fs::read_to_string(data("strongswan/ipsec.conf")).unwrap(),
        std::fs::read_to_string(data("strongswan/ipsec.secrets")).unwrap(),
        2,
    ));
    // The Libreswan sample uses includes: check it through the file system.
    let libreswan = config::load(
        &data("libreswan/ipsec.conf"),
        &data("libreswan/ipsec.secrets"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plan_offline::plan_all(&libreswan.config, &[]), 2);

    for (i, (conf, secrets, want)) in samples.iter().enumerate() {
        let s = Scratch::new(&format!("plan{i}"));
        let c = s.file("ipsec.conf", conf);
        let sec = s.file("ipsec.secrets", secrets);
        let args = tun_bridge::cli::CheckArgs {
            config: c.clone(),
            secrets: sec.clone(),
            conns: Vec::new(),
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let ok = tun_bridge::check::run(&args, &mut out, &mut err).unwrap();
        assert!(ok, "sample {i}: {}", String::from_utf8_lossy(&err));
        let loaded = config::load(&c, &sec).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            plan_offline::plan_all(&loaded.config, &[]),
            *want,
            "sample {i}"
        );
    }
}
