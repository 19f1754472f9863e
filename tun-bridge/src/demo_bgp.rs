//! `tun-bridge demo --bgp`: AWS dynamic routing between network namespaces
//! (root, BIRD 2).
//!
//! An "onprem" host behind the customer gateway (10.1.0.0/24) and a "vpc"
//! host behind a VGW-like gateway (10.2.0.0/24), the gateways joined by two
//! WAN links (one per AWS tunnel). Each gateway runs `tun-bridge up` with
//! two route-based tunnels in Libreswan's words (`ipsec-interface=1|2`,
//! `interface-ip=` the AWS inside /30, 0.0.0.0/0 selectors) and BIRD with
//! one eBGP session per tunnel (customer ASN 65000, AWS ASN 64512, hold
//! time 30 s). Steps: tunnels up, BGP up, an ECMP route over ipsec1 and
//! ipsec2, pings, four checksummed TCP flows; midway the second WAN link
//! dies: DPD takes ipsec2's carrier away, BIRD withdraws its route, and
//! every flow finishes over Tunnel1 with its checksum. Everything is
//! removed at the end, also on error.

use crate::demo::{
    log_tail, random_psk, wait_established, write_file, DemoError, Side, STOP_GRACE,
};
use netns_lab::bgp::{have_bgp_daemons, wait_until, BgpPeer, BgpSpeaker, Bird, AWS_ASN};
use netns_lab::traffic::tcp_transfer_stall;
use netns_lab::Lab;
use std::fmt;
use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// The customer side's ASN.
pub const CUSTOMER_ASN: u32 = 65000;
/// Parallel TCP flows and the bytes of each.
pub const FLOWS: u16 = 4;
/// Bytes per flow.
pub const FLOW_BYTES: u64 = 16 << 20;
/// Pace of each flow (bytes per second): the flows last about 8 s.
pub const FLOW_PACE: u64 = 2 << 20;

/// `ipsec.conf` of one gateway: two route-based tunnels.
pub fn bgp_gateway_conf(auto: &str, side: usize, dpd_action: &str) -> String {
    let mut s = String::from(
        "# ipsec.conf written by `tun-bridge demo --bgp` (AWS dynamic routing, Libreswan words)\nconfig setup\n\tuniqueids = no\n\nconn %default\n\tauthby=secret\n\ttype=tunnel\n\tkeyexchange=ikev2\n\tike=aes128gcm16-prfsha256-modp2048\n\tesp=aes128gcm16-modp2048\n\tleftsubnet=0.0.0.0/0\n\trightsubnet=0.0.0.0/0\n\tdpddelay=1s\n\tdpdtimeout=3s\n",
    );
    s.push_str(&format!("\tdpdaction={dpd_action}\n\tauto={auto}\n"));
    for (n, wan, inside) in [
        (1, "192.0.2", "169.254.10"),
        (2, "198.51.100", "169.254.11"),
    ] {
        let (me, peer) = if side == 0 { (1, 2) } else { (2, 1) };
        s.push_str(&format!(
            "\nconn Tunnel{n}\n\tleft={wan}.{me}\n\tright={wan}.{peer}\n\tipsec-interface={n}\n\tinterface-ip={inside}.{}/30\n",
            3 - me
        ));
    }
    s
}

fn step(n: u32, text: impl fmt::Display) {
    println!("[{n}/9] {text}");
    let _ = std::io::stdout().flush();
}

fn route(lab: &Lab, ns: &str, prefix: &str) -> String {
    lab.exec(ns, &["ip", "route", "show", prefix])
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().replace('\n', " "))
        .unwrap_or_default()
}

fn speaker(
    asn: u32,
    me: &str,
    neighbors: [(&str, &str); 2],
    net: &str,
    peer_asn: u32,
) -> BgpSpeaker {
    BgpSpeaker {
        router_id: me.into(),
        asn,
        peers: neighbors
            .iter()
            .enumerate()
            .map(|(k, (local, nb))| BgpPeer {
                name: format!("tunnel{}", k + 1),
                local: (*local).into(),
                neighbor: (*nb).into(),
                asn: peer_asn,
            })
            .collect(),
        networks: vec![net.into()],
        hold_time: netns_lab::bgp::AWS_HOLD_TIME,
    }
}

/// Runs `demo --bgp` with `exe` as both gateways' `tun-bridge`.
pub fn run_with(exe: &Path) -> Result<(), DemoError> {
    if !crate::sys::cred::is_root() {
        return Err(DemoError::NotRoot);
    }
    if !have_bgp_daemons() {
        return Err(DemoError::Bgp(
            "BIRD 2 and FRR are needed (apt-get install bird2 frr)".into(),
        ));
    }
    let t_start = Instant::now();
    step(
        1,
        "namespaces: onprem host, customer gateway, VGW-like gateway, vpc host; two WAN links",
    );
    let mut lab = Lab::new()?;
    let onprem = lab.add_netns("onprem")?;
    let cgw = lab.add_netns("cgw")?;
    let vgw = lab.add_netns("vgw")?;
    let vpc = lab.add_netns("vpc")?;
    lab.veth(
        &onprem,
        "lan0",
        Some("10.1.0.2/24"),
        &cgw,
        "lan1",
        Some("10.1.0.1/24"),
    )?;
    lab.veth(
        &cgw,
        "wan0",
        Some("192.0.2.1/24"),
        &vgw,
        "wan0",
        Some("192.0.2.2/24"),
    )?;
    lab.veth(
        &cgw,
        "wan1",
        Some("198.51.100.1/24"),
        &vgw,
        "wan1",
        Some("198.51.100.2/24"),
    )?;
    lab.veth(
        &vgw,
        "lan1",
        Some("10.2.0.1/24"),
        &vpc,
        "lan0",
        Some("10.2.0.2/24"),
    )?;
    lab.ip_in(&onprem, &["route", "add", "default", "via", "10.1.0.1"])?;
    lab.ip_in(&vpc, &["route", "add", "default", "via", "10.2.0.1"])?;
    for ns in [&cgw, &vgw] {
        lab.forwarding_on(ns)?;
        // What `tun-bridge doctor` suggests for ECMP: hash by ports too.
        lab.exec(
            ns,
            &["sysctl", "-qw", "net.ipv4.fib_multipath_hash_policy=1"],
        )?;
    }

    step(
        2,
        format!(
            "ipsec.conf with ipsec-interface=1/2 and interface-ip= per gateway in {}",
            lab.state_dir().display()
        ),
    );
    let dir = lab.state_dir().to_path_buf();
    let (k1, k2) = (random_psk(), random_psk());
    let mut sides = [
        Side {
            label: "customer gateway",
            ns: cgw.clone(),
            conf: dir.join("cgw.ipsec.conf"),
            secrets: dir.join("cgw.ipsec.secrets"),
            control: dir.join("cgw.sock"),
            log: dir.join("cgw.log"),
            pid: None,
        },
        Side {
            label: "VGW-like gateway",
            ns: vgw.clone(),
            conf: dir.join("vgw.ipsec.conf"),
            secrets: dir.join("vgw.ipsec.secrets"),
            control: dir.join("vgw.sock"),
            log: dir.join("vgw.log"),
            pid: None,
        },
    ];
    for (k, side) in sides.iter().enumerate() {
        let (auto, dpd) = if k == 0 {
            ("start", "restart")
        } else {
            ("add", "clear")
        };
        write_file(&side.conf, &bgp_gateway_conf(auto, k, dpd), 0o644)?;
        let (me, peer) = if k == 0 { (1, 2) } else { (2, 1) };
        let secrets = Zeroizing::new(format!(
            "192.0.2.{me} 192.0.2.{peer} : PSK \"{}\"\n198.51.100.{me} 198.51.100.{peer} : PSK \"{}\"\n",
            k1.as_str(),
            k2.as_str()
        ));
        write_file(&side.secrets, &secrets, 0o600)?;
    }

    step(3, "starting `tun-bridge up` on both gateways");
    let exe_s = exe.to_string_lossy().into_owned();
    for side in sides.iter_mut().rev() {
        let (c, s, ctl) = (
            side.conf.to_string_lossy().into_owned(),
            side.secrets.to_string_lossy().into_owned(),
            side.control.to_string_lossy().into_owned(),
        );
        let pid = lab.spawn(
            &side.ns,
            &[
                &exe_s,
                "up",
                "--config",
                &c,
                "--secrets",
                &s,
                "--control",
                &ctl,
            ],
            &side.log,
        )?;
        side.pid = Some(pid);
        println!("      {}: pid {pid}", side.label);
    }
    for side in &sides {
        wait_established(&mut lab, side)?;
    }
    println!("      Tunnel1 (ipsec1) and Tunnel2 (ipsec2) established on both gateways");

    step(
        4,
        "BIRD on both gateways: eBGP per tunnel, ASN 65000 <-> 64512, hold time 30 s",
    );
    let bird_c = Bird::start(
        &mut lab,
        &cgw,
        "cgw",
        &speaker(
            CUSTOMER_ASN,
            "169.254.10.2",
            [
                ("169.254.10.2", "169.254.10.1"),
                ("169.254.11.2", "169.254.11.1"),
            ],
            "10.1.0.0/24",
            AWS_ASN,
        ),
    )?;
    let _bird_v = Bird::start(
        &mut lab,
        &vgw,
        "vgw",
        &speaker(
            AWS_ASN,
            "169.254.10.1",
            [
                ("169.254.10.1", "169.254.10.2"),
                ("169.254.11.1", "169.254.11.2"),
            ],
            "10.2.0.0/24",
            CUSTOMER_ASN,
        ),
    )?;
    let t_bgp = Instant::now();
    let ecmp = wait_until(Duration::from_secs(40), || {
        let r = route(&lab, &cgw, "10.2.0.0/24");
        r.contains("ipsec1") && r.contains("ipsec2")
    });
    if !ecmp {
        return Err(DemoError::Bgp(format!(
            "no ECMP route within 40 s: `{}`\n{}",
            route(&lab, &cgw, "10.2.0.0/24"),
            bird_c.birdc(&["show", "protocols"]).unwrap_or_default()
        )));
    }
    println!(
        "      after {:.1} s: {}",
        t_bgp.elapsed().as_secs_f64(),
        route(&lab, &cgw, "10.2.0.0/24")
    );

    step(5, "pinging across (onprem <-> vpc)");
    for (ns, dst) in [(&onprem, "10.2.0.2"), (&vpc, "10.1.0.2")] {
        if !lab.ping(ns, dst, 3)? {
            return Err(DemoError::Ping {
                from: if ns == &onprem {
                    "onprem host"
                } else {
                    "vpc host"
                },
                to: dst.into(),
            });
        }
    }
    println!("      3/3 replies each way");

    step(
        6,
        format!(
            "{FLOWS} TCP flows of {} MiB each (SHA-256 checked), spread over both tunnels",
            FLOW_BYTES >> 20
        ),
    );
    let flows: Vec<_> = (0..FLOWS)
        .map(|k| {
            let (src, dst) = (onprem.clone(), vpc.clone());
            std::thread::spawn(move || {
                // Silence on the dead tunnel: DPD verdict plus TCP backoff.
                tcp_transfer_stall(
                    &src,
                    &dst,
                    std::net::Ipv4Addr::new(10, 2, 0, 2),
                    5301 + k,
                    FLOW_BYTES,
                    Some(FLOW_PACE),
                    Duration::from_secs(90),
                    Duration::from_secs(25),
                )
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));

    step(
        7,
        "Tunnel2's WAN link dies midway (ip link set wan1 down on the VGW side)",
    );
    let killed = Instant::now();
    lab.ip_in(&vgw, &["link", "set", "wan1", "down"])?;
    let moved = wait_until(Duration::from_secs(40), || {
        let r = route(&lab, &cgw, "10.2.0.0/24");
        r.contains("ipsec1") && !r.contains("ipsec2")
    });
    if !moved {
        return Err(DemoError::Bgp(format!(
            "Tunnel2's route was not withdrawn: `{}`",
            route(&lab, &cgw, "10.2.0.0/24")
        )));
    }
    println!(
        "      after {:.1} s: DPD dropped ipsec2's carrier, BIRD withdrew it: {}",
        killed.elapsed().as_secs_f64(),
        route(&lab, &cgw, "10.2.0.0/24")
    );
    for (k, f) in flows.into_iter().enumerate() {
        let r = f
            .join()
            .map_err(|_| DemoError::Transfer(format!("flow {k} panicked")))?
            .map_err(|e| DemoError::Transfer(format!("flow {k}: {e}")))?;
        if !r.intact() {
            return Err(DemoError::Transfer(format!("flow {k} damaged: {r}")));
        }
        println!(
            "      flow {k}: {} bytes, sha256 {} on both ends",
            r.received, r.sha_received
        );
    }

    step(8, "status of the customer gateway (`tun-bridge status`)");
    match crate::control::status_text(&sides[0].control, false, Duration::from_secs(2)) {
        Ok(s) => print!("{s}"),
        Err(e) => println!("(status unavailable: {e})"),
    }

    step(9, "stopping both gateways and deleting the namespaces");
    let mut first_err = None;
    for side in &sides {
        match lab.terminate(side.pid.expect("started"), STOP_GRACE) {
            Some(s) if s.success() => println!("      {}: exited with status 0", side.label),
            other => {
                let status = other.map_or_else(|| "killed".to_string(), |s| s.to_string());
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
        "demo --bgp finished in {:.1} s: BGP over both tunnels, ECMP, a dead tunnel, every flow intact",
        t_start.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_configs_are_route_based_pairs() {
        for (side, auto) in [(0, "start"), (1, "add")] {
            let conf = bgp_gateway_conf(auto, side, "restart");
            let (me, peer) = if side == 0 { (1, 2) } else { (2, 1) };
            let secrets = format!(
                "192.0.2.{me} 192.0.2.{peer} : PSK \"a\"\n198.51.100.{me} 198.51.100.{peer} : PSK \"b\"\n"
            );
            let loaded = crate::config::parse_str(
                &conf,
                Path::new("ipsec.conf"),
                &secrets,
                Path::new("ipsec.secrets"),
            )
            .map_err(|e| e.to_string())
            .expect("demo --bgp config parses");
            let t2 = loaded.config.conn("Tunnel2").expect("Tunnel2");
            assert!(t2.tunnel.route_based);
            assert_eq!(t2.tunnel.name.as_deref(), Some("ipsec2"));
            let inside = t2.tunnel.local_inside.expect("inside").to_string();
            assert_eq!(
                inside,
                if side == 0 {
                    "169.254.11.2/30"
                } else {
                    "169.254.11.1/30"
                }
            );
        }
    }
}
