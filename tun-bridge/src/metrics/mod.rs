//! Prometheus metrics (`up --metrics ADDR:PORT`): the text exposition
//! format 0.0.4 as a pure function of the status document and the
//! process counters. The HTTP side is in [`http`] (the request parser and
//! the answers) and in the IO shell (the listener).
//!
//! Names follow Prometheus conventions: `tun_bridge_` prefix, units in
//! the name, `_total` for counters; per-tunnel series carry `conn`.

pub mod http;

use std::fmt::Write as _;

use crate::control::{StatusReport, TunnelState};
use crate::engine::counters::ProcessCounters;

/// Counter or gauge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (resets with the process).
    Counter,
    /// Goes up and down.
    Gauge,
}

/// One sample: label pairs and a value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// `(name, value)` label pairs.
    pub labels: Vec<(&'static str, String)>,
    /// The value.
    pub value: f64,
}

/// One metric family: `# HELP`, `# TYPE` and its samples.
#[derive(Clone, Debug, PartialEq)]
pub struct Family {
    /// Metric name (with `_total` for counters).
    pub name: &'static str,
    /// The `# HELP` text.
    pub help: &'static str,
    /// Counter or gauge.
    pub kind: Kind,
    /// Samples (a family without samples is not rendered).
    pub samples: Vec<Sample>,
}

fn family(name: &'static str, help: &'static str, kind: Kind) -> Family {
    Family {
        name,
        help,
        kind,
        samples: Vec::new(),
    }
}

/// A family of one sample without labels.
fn scalar(name: &'static str, help: &'static str, kind: Kind, value: f64) -> Family {
    let mut f = family(name, help, kind);
    f.samples.push(Sample {
        labels: vec![],
        value,
    });
    f
}

fn conn(name: &str) -> Vec<(&'static str, String)> {
    vec![("conn", name.to_string())]
}

/// Every metric family of `status` and `process`.
pub fn families(status: &StatusReport, process: &ProcessCounters) -> Vec<Family> {
    use Kind::{Counter, Gauge};
    let mut up = family(
        "tun_bridge_tunnel_up",
        "1 when the tunnel has an established IKE and Child SA (AWS TunnelState), else 0.",
        Gauge,
    );
    let mut active = family(
        "tun_bridge_tunnel_active",
        "1 when the routes point at this tunnel (active member of its failover group).",
        Gauge,
    );
    let mut rx_bytes = family(
        "tun_bridge_tunnel_received_bytes_total",
        "Inner bytes received (decrypted) on the tunnel.",
        Counter,
    );
    let mut tx_bytes = family(
        "tun_bridge_tunnel_sent_bytes_total",
        "Inner bytes sent (encrypted) on the tunnel.",
        Counter,
    );
    let mut rx_pkts = family(
        "tun_bridge_tunnel_received_packets_total",
        "Packets received (decrypted) on the tunnel.",
        Counter,
    );
    let mut tx_pkts = family(
        "tun_bridge_tunnel_sent_packets_total",
        "Packets sent (encrypted) on the tunnel.",
        Counter,
    );
    let mut drops = family(
        "tun_bridge_tunnel_dropped_packets_total",
        "Packets dropped on the tunnel, by reason.",
        Counter,
    );
    let mut child_rekeys = family(
        "tun_bridge_tunnel_child_rekeys_total",
        "Child SA rekeys completed (outbound switched to the new SA).",
        Counter,
    );
    let mut ike_rekeys = family(
        "tun_bridge_tunnel_ike_rekeys_total",
        "IKE SA rekeys completed.",
        Counter,
    );
    let mut dpd = family(
        "tun_bridge_tunnel_dpd_failures_total",
        "Times dead peer detection declared the peer of an established IKE SA dead.",
        Counter,
    );
    let mut since = family(
        "tun_bridge_tunnel_established_seconds",
        "Seconds since the tunnel's IKE SA came up (absent while down).",
        Gauge,
    );
    for t in &status.tunnels {
        let is_up = matches!(t.state, TunnelState::Established | TunnelState::Rekeying);
        let sample = |v: f64| Sample {
            labels: conn(&t.name),
            value: v,
        };
        up.samples.push(sample(f64::from(u8::from(is_up))));
        let is_active = t.role == crate::control::TunnelRole::Active;
        active.samples.push(sample(f64::from(u8::from(is_active))));
        rx_bytes.samples.push(sample(t.bytes_in as f64));
        tx_bytes.samples.push(sample(t.bytes_out as f64));
        rx_pkts.samples.push(sample(t.packets_in as f64));
        tx_pkts.samples.push(sample(t.packets_out as f64));
        for (reason, n) in &t.drops {
            let mut labels = conn(&t.name);
            labels.push(("reason", reason.clone()));
            drops.samples.push(Sample {
                labels,
                value: *n as f64,
            });
        }
        child_rekeys.samples.push(sample(t.child_rekeys as f64));
        ike_rekeys.samples.push(sample(t.ike_rekeys as f64));
        dpd.samples.push(sample(t.dpd_failures as f64));
        if let Some(s) = t.established_secs {
            since.samples.push(sample(s as f64));
        }
    }
    let uptime = scalar(
        "tun_bridge_uptime_seconds",
        "Seconds since tun-bridge started.",
        Gauge,
        status.uptime_secs as f64,
    );
    let mut info = family(
        "tun_bridge_build_info",
        "Always 1; the version as a label.",
        Gauge,
    );
    info.samples.push(Sample {
        labels: vec![("version", status.version.clone())],
        value: 1.0,
    });
    let ike_sas = scalar(
        "tun_bridge_ike_sas",
        "IKE SAs held, half-open and established.",
        Gauge,
        process.ike_sas as f64,
    );
    let mut ike_rx = family(
        "tun_bridge_ike_messages_received_total",
        "IKE datagrams received, by exchange type and outcome.",
        Counter,
    );
    for ((exchange, outcome), n) in &process.ike_received {
        ike_rx.samples.push(Sample {
            labels: vec![
                ("exchange", exchange.to_string()),
                ("outcome", outcome.to_string()),
            ],
            value: *n as f64,
        });
    }
    let mut ike_tx = family(
        "tun_bridge_ike_messages_sent_total",
        "IKE messages sent (requests, responses, retransmissions), by exchange type.",
        Counter,
    );
    for (exchange, n) in &process.ike_sent {
        ike_tx.samples.push(Sample {
            labels: vec![("exchange", exchange.to_string())],
            value: *n as f64,
        });
    }
    let f = &process.flood;
    let half_open = scalar(
        "tun_bridge_ike_half_open_sas",
        "Half-open responder IKE SAs (IKE_SA_INIT answered, IKE_AUTH not done).",
        Gauge,
        f.half_open as f64,
    );
    let blocked = scalar(
        "tun_bridge_ike_blocked_sources",
        "Source addresses at block_threshold half-open SAs (their IKE_SA_INIT is ignored).",
        Gauge,
        f.blocked_sources as f64,
    );
    let cookies = scalar(
        "tun_bridge_ike_cookies_sent_total",
        "COOKIE notifies sent in answer to IKE_SA_INIT.",
        Counter,
        f.cookies_sent as f64,
    );
    let verified = scalar(
        "tun_bridge_ike_cookies_verified_total",
        "IKE_SA_INIT requests that returned a valid cookie.",
        Counter,
        f.cookies_verified as f64,
    );
    let mut init_drops = family(
        "tun_bridge_ike_sa_init_dropped_total",
        "New IKE_SA_INIT requests dropped before any work, by reason.",
        Counter,
    );
    let d = &f.init_dropped;
    for (reason, n) in [
        ("blocked_source", d.blocked_source),
        ("half_open_limit", d.half_open_limit),
        ("bad_cookie", d.bad_cookie),
        ("oversized", d.oversized),
        ("malformed", d.malformed),
    ] {
        init_drops.samples.push(Sample {
            labels: vec![("reason", reason.to_string())],
            value: n as f64,
        });
    }
    let expired = scalar(
        "tun_bridge_ike_half_open_expired_total",
        "Half-open IKE SAs freed by half_open_timeout.",
        Counter,
        f.half_open_expired as f64,
    );
    vec![
        up,
        active,
        rx_bytes,
        tx_bytes,
        rx_pkts,
        tx_pkts,
        drops,
        child_rekeys,
        ike_rekeys,
        dpd,
        since,
        uptime,
        info,
        ike_sas,
        ike_rx,
        ike_tx,
        half_open,
        blocked,
        cookies,
        verified,
        init_drops,
        expired,
    ]
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// The text exposition (format 0.0.4) of `families`.
pub fn render(families: &[Family]) -> String {
    let mut o = String::with_capacity(4096);
    for f in families.iter().filter(|f| !f.samples.is_empty()) {
        let kind = match f.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let _ = writeln!(o, "# HELP {} {}", f.name, f.help);
        let _ = writeln!(o, "# TYPE {} {kind}", f.name);
        for s in &f.samples {
            o.push_str(f.name);
            if !s.labels.is_empty() {
                o.push('{');
                for (k, (name, value)) in s.labels.iter().enumerate() {
                    if k > 0 {
                        o.push(',');
                    }
                    o.push_str(name);
                    o.push_str("=\"");
                    escape(value, &mut o);
                    o.push('"');
                }
                o.push('}');
            }
            let _ = writeln!(o, " {}", s.value);
        }
    }
    o
}

/// The `/metrics` body for `status` and `process`.
pub fn exposition(status: &StatusReport, process: &ProcessCounters) -> String {
    render(&families(status, process))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{TunnelRole, TunnelStatus};

    fn tunnel(name: &str, state: TunnelState) -> TunnelStatus {
        TunnelStatus {
            name: name.into(),
            state,
            role: TunnelRole::Active,
            local_addr: "192.0.2.1".parse().unwrap(),
            remote_addr: "192.0.2.2".parse().unwrap(),
            interface: "tb-aws".into(),
            carrier: None,
            ike_algorithms: None,
            esp_algorithms: None,
            ike_spi_i: None,
            ike_spi_r: None,
            spi_in: None,
            spi_out: None,
            bytes_in: 1_500_000_000_123,
            bytes_out: 20,
            packets_in: 3,
            packets_out: 4,
            drops: [("replay".to_string(), 7)].into_iter().collect(),
            last_rekey_secs: None,
            next_rekey_secs: None,
            child_rekeys: 2,
            ike_rekeys: 1,
            dpd_failures: 5,
            established_secs: (state == TunnelState::Established).then_some(42),
            last_error: None,
        }
    }

    #[test]
    fn exposition_text() {
        let st = StatusReport {
            version: "0.1.0".into(),
            pid: 1,
            uptime_secs: 9,
            tunnels: vec![
                tunnel("aws-1", TunnelState::Established),
                tunnel("we\"ird\\na\nme", TunnelState::Down),
            ],
            ike: Default::default(),
        };
        let mut p = ProcessCounters {
            ike_sas: 1,
            ..ProcessCounters::default()
        };
        p.ike_received.insert(("ike_sa_init", "accepted"), 3);
        p.ike_sent.insert("informational", 2);
        p.flood.half_open = 4;
        p.flood.cookies_sent = 11;
        p.flood.init_dropped.blocked_source = 6;
        let t = exposition(&st, &p);
        for line in [
            "# HELP tun_bridge_tunnel_up 1 when the tunnel has an established IKE and Child SA (AWS TunnelState), else 0.",
            "# TYPE tun_bridge_tunnel_up gauge",
            "tun_bridge_tunnel_up{conn=\"aws-1\"} 1",
            "tun_bridge_tunnel_up{conn=\"we\\\"ird\\\\na\\nme\"} 0",
            "# TYPE tun_bridge_tunnel_received_bytes_total counter",
            "tun_bridge_tunnel_received_bytes_total{conn=\"aws-1\"} 1500000000123",
            "tun_bridge_tunnel_dropped_packets_total{conn=\"aws-1\",reason=\"replay\"} 7",
            "tun_bridge_tunnel_established_seconds{conn=\"aws-1\"} 42",
            "tun_bridge_tunnel_dpd_failures_total{conn=\"aws-1\"} 5",
            "tun_bridge_ike_messages_received_total{exchange=\"ike_sa_init\",outcome=\"accepted\"} 3",
            "tun_bridge_ike_messages_sent_total{exchange=\"informational\"} 2",
            "# TYPE tun_bridge_ike_half_open_sas gauge",
            "tun_bridge_ike_half_open_sas 4",
            "tun_bridge_ike_cookies_sent_total 11",
            "tun_bridge_ike_sa_init_dropped_total{reason=\"blocked_source\"} 6",
            "tun_bridge_ike_sa_init_dropped_total{reason=\"bad_cookie\"} 0",
            "tun_bridge_uptime_seconds 9",
            "tun_bridge_build_info{version=\"0.1.0\"} 1",
        ] {
            assert!(t.lines().any(|l| l == line), "missing {line:?} in\n{t}");
        }
        // Only the established tunnel has an age.
        assert_eq!(
            t.matches("tun_bridge_tunnel_established_seconds{").count(),
            1
        );
        // Every sample line follows its family's HELP and TYPE.
        let mut declared = std::collections::HashSet::new();
        for l in t.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                declared.insert(rest.split(' ').next().unwrap().to_string());
            } else if !l.starts_with('#') {
                let name = l.split(['{', ' ']).next().unwrap();
                assert!(declared.contains(name), "{l}");
            }
        }
        // No tunnels, no counters of the endpoint: only process gauges.
        let empty = exposition(
            &StatusReport {
                tunnels: vec![],
                ..st
            },
            &ProcessCounters::default(),
        );
        assert!(!empty.contains("tun_bridge_tunnel_"));
        assert!(!empty.contains("tun_bridge_ike_messages"));
        assert!(empty.contains("tun_bridge_ike_sas 0"));
    }
}
