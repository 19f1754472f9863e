//! `tun-bridge check`: validate the configuration as `up` does before it
//! touches the system (loading, then selecting the connections `up` would
//! run) and print the effective settings of every connection. Never prints
//! key material.

use std::fmt::Write as _;
use std::io::{self, Write};

use crate::cli::CheckArgs;
use crate::config::values::fmt_duration;
use crate::config::{self, EffectiveConn};
use crate::packet::mss::OuterFamily;
use crate::runtime::plan::{self, SelectError};

/// Runs `check`: settings to `out`, diagnostics to `err`. Returns `Ok(true)`
/// when the configuration is valid and `up` with the same `--conn`
/// arguments would start.
pub fn run(args: &CheckArgs, out: &mut dyn Write, err: &mut dyn Write) -> io::Result<bool> {
    match config::load(&args.config, &args.secrets) {
        Ok(loaded) => {
            let selected = plan::select_conns(&loaded.config, &args.conns);
            if let Err(e) = selected {
                for w in &loaded.warnings {
                    writeln!(err, "{w}")?;
                }
                match e {
                    SelectError::NothingToStart | SelectError::NoSuchConn(_) => {
                        writeln!(err, "{}: {e}", args.config.display())?
                    }
                    _ => writeln!(err, "{e}")?,
                }
                writeln!(err, "1 error(s)")?;
                return Ok(false);
            }
            for c in &loaded.config.conns {
                out.write_all(render_conn(c).as_bytes())?;
                writeln!(out)?;
            }
            let flood = loaded.config.setup.flood_limits();
            out.write_all(config::flood::render(&flood).as_bytes())?;
            writeln!(out)?;
            if let Ok(sel) = &selected {
                let conns: Vec<&EffectiveConn> = sel.iter().map(|(c, _)| *c).collect();
                out.write_all(render_interfaces(&conns).as_bytes())?;
                writeln!(out)?;
            }
            for w in &loaded.warnings {
                writeln!(err, "{w}")?;
            }
            writeln!(
                out,
                "configuration OK: {} connection(s), {} warning(s)",
                loaded.config.conns.len(),
                loaded.warnings.len()
            )?;
            Ok(true)
        }
        Err(fail) => {
            for e in &fail.errors {
                writeln!(err, "{e}")?;
            }
            for w in &fail.warnings {
                writeln!(err, "{w}")?;
            }
            writeln!(err, "{} error(s)", fail.errors.len())?;
            Ok(false)
        }
    }
}

fn list<T: std::fmt::Display>(v: &[T], empty: &str) -> String {
    if v.is_empty() {
        empty.to_string()
    } else {
        v.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Human-readable effective settings of one connection. The PSK shows as
/// `<set, N bytes>` only.
pub fn render_conn(c: &EffectiveConn) -> String {
    let mut s = String::new();
    let mut kv = |k: &str, v: String| {
        let _ = writeln!(s, "  {k:<14} {v}");
    };
    let id = |i: &Option<config::values::Identity>, side: &str| {
        i.as_ref()
            .map_or(format!("(the {side} address)"), |i| i.to_string())
    };
    kv("auto", c.auto.to_string());
    kv("type", c.conn_type.to_string());
    kv("left", c.local.to_string());
    kv("leftid", id(&c.local_id, "left"));
    kv("leftsubnet", list(&c.local_subnets, "(left address only)"));
    kv("right", c.remote.to_string());
    kv("rightid", id(&c.remote_id, "right"));
    kv(
        "rightsubnet",
        list(&c.remote_subnets, "(right address only)"),
    );
    kv("ike-version", c.ike_version.to_string());
    kv(
        "ike",
        c.ike.text.clone().unwrap_or_else(|| "(defaults)".into()),
    );
    kv(
        "esp",
        c.esp.text.clone().unwrap_or_else(|| "(defaults)".into()),
    );
    kv("ikelifetime", fmt_duration(c.ike_lifetime));
    kv("salifetime", fmt_duration(c.sa_lifetime));
    kv("rekeymargin", fmt_duration(c.rekey_margin));
    kv("rekeyfuzz", format!("{}%", c.rekey_fuzz_percent));
    kv("rekey", yes_no(c.rekey));
    kv(
        "dpd",
        c.dpd.map_or("off".into(), |d| {
            format!(
                "delay {} timeout {} action {}",
                fmt_duration(d.delay),
                fmt_duration(d.timeout),
                d.action
            )
        }),
    );
    kv("keyingtries", c.keying_tries.to_string());
    kv("mark", c.mark.map_or("(none)".into(), |m| m.to_string()));
    kv("replay-window", c.replay_window.to_string());
    kv("pfs", yes_no(c.pfs));
    kv("encapsulation", c.encapsulation.to_string());
    kv("mtu", c.mtu.map_or("(auto)".into(), |m| m.to_string()));
    let t = &c.tunnel;
    let mut tun = Vec::new();
    if let Some(n) = &t.name {
        tun.push(format!("name {n}"));
    }
    if let Some(a) = t.local_inside {
        tun.push(format!("local {a}"));
    }
    if let Some(a) = t.remote_inside {
        tun.push(format!("remote {a}"));
    }
    if let Some(m) = t.mark {
        tun.push(format!("mark {m}"));
    }
    if !t.routes.is_empty() {
        tun.push(format!("routes {}", list(&t.routes, "")));
    }
    if t.route_based {
        tun.push("route-based".into());
    }
    kv(
        "tunnel",
        if tun.is_empty() {
            "(default)".into()
        } else {
            tun.join(" ")
        },
    );
    kv(
        "psk",
        c.psk
            .as_ref()
            .map_or("<not found yet: looked up at runtime>".into(), |p| {
                format!("<set, {} bytes>", p.len())
            }),
    );
    format!("conn {} ({})\n{s}", c.name, c.source)
}

/// The interface plan of the connections `up` would run: per interface
/// its name, connections, kind (route-based or policy-based), inside
/// address, MTU, selectors and the routes tun-bridge installs.
pub fn render_interfaces(conns: &[&EffectiveConn]) -> String {
    let mut names: Vec<String> = Vec::new();
    for c in conns {
        let n = plan::ifname(c);
        if !names.contains(&n) {
            names.push(n);
        }
    }
    let mut s = String::from("interfaces\n");
    for name in names {
        let on: Vec<&&EffectiveConn> = conns.iter().filter(|c| plan::ifname(c) == name).collect();
        let first = on[0];
        let family = match first.local.ip() {
            Some(std::net::IpAddr::V6(_)) => OuterFamily::V6,
            _ => OuterFamily::V4,
        };
        let mtu = plan::tunnel_mtu(first, family)
            .map_or_else(|e| format!("({e})"), |m| m.mtu.to_string());
        let addrs: Vec<String> = on
            .iter()
            .flat_map(|c| c.tunnel.local_inside.iter().chain(&c.tunnel.extra_inside))
            .map(|a| a.to_string())
            .collect();
        let route_based = on.iter().all(|c| c.tunnel.route_based);
        let _ = writeln!(
            s,
            "  {name}: {} ({}), mtu {mtu}, address {}",
            if route_based {
                "route-based"
            } else {
                "policy-based"
            },
            first
                .tunnel
                .origin
                .map_or("default name".to_string(), |o| o.to_string()),
            list(&addrs, "(none)"),
        );
        for c in on {
            let routes = if c.tunnel.route_based {
                if c.tunnel.routes.is_empty() {
                    "none (the routing daemon owns the table)".to_string()
                } else {
                    list(&c.tunnel.routes, "")
                }
            } else if c.remote_subnets.iter().any(|n| n.prefix == 0) {
                list(&c.tunnel.routes, "none")
            } else {
                list(&c.remote_subnets, "(the peer address)")
            };
            let _ = writeln!(
                s,
                "    conn {}: selectors {} === {}, peer inside {}, routes {routes}",
                c.name,
                list(&c.local_subnets, "(left address)"),
                list(&c.remote_subnets, "(right address)"),
                c.tunnel
                    .remote_inside
                    .map_or("(none)".to_string(), |a| a.to_string()),
            );
        }
    }
    s
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.into()
}
