//! `up --metrics`: scraped during a TCP transfer through a tun-bridge pair
//! in lab namespaces (root), parsed with the reference Prometheus text
//! parser (Python's prometheus_client), and checked against
//! `status --json` taken around each scrape.

mod common;

use std::time::Duration;

use common::{ipsec_conf, ipsec_secrets, psk, serial, site_pair, TunBridge, CASES};
use netns_lab::traffic::tcp_transfer_paced;
use netns_lab::{Lab, TwoSites, TwoSitesConfig};
use serde_json::Value;
use tun_bridge::control::{StatusReport, TunnelStatus};

const ADDR: &str = "127.0.0.1:9477";

/// Fetches the URL, parses it with prometheus_client's parser and prints
/// the samples as JSON (the parser raises on anything malformed).
const SCRAPE: &str = r#"
import json, sys, urllib.request, urllib.error
from prometheus_client.parser import text_string_to_metric_families
r = urllib.request.urlopen(sys.argv[1], timeout=5)
text = r.read().decode()
out = {"content_type": r.headers["Content-Type"], "families": {}, "samples": []}
for fam in text_string_to_metric_families(text):
    out["families"][fam.name] = {"type": fam.type, "help": fam.documentation}
    for s in fam.samples:
        out["samples"].append({"name": s.name, "labels": s.labels, "value": s.value})
try:
    urllib.request.urlopen(sys.argv[1].replace("/metrics", "/"), timeout=5)
    out["root"] = 200
except urllib.error.HTTPError as e:
    out["root"] = e.code
print(json.dumps(out))
"#;

struct Scrape(Value);

impl Scrape {
    fn take(lab: &Lab, ns: &str) -> Scrape {
        let url = format!("http://{ADDR}/metrics");
        let out = lab
            .exec_status(
                ns,
                // Debian's interpreter: python3-prometheus-client is there.
                &["/usr/bin/python3", "-c", SCRAPE, &url],
                Duration::from_secs(20),
            )
            .expect("run python3");
        assert!(
            out.status.success(),
            "scrape or parse failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Scrape(serde_json::from_slice(&out.stdout).expect("scrape JSON"))
    }

    /// The value of sample `name` with exactly these labels.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.0["samples"].as_array()?.iter().find_map(|s| {
            let l = s["labels"].as_object()?;
            let same = s["name"] == name
                && l.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).and_then(Value::as_str) == Some(v));
            same.then(|| s["value"].as_f64()).flatten()
        })
    }

    fn conn(&self, name: &str) -> f64 {
        self.value(name, &[("conn", "site-b")])
            .unwrap_or_else(|| panic!("no {name}{{conn=\"site-b\"}} in {}", self.0))
    }
}

fn tunnel(st: &StatusReport) -> TunnelStatus {
    st.tunnels
        .iter()
        .find(|t| t.name == "site-b")
        .cloned()
        .expect("site-b")
}

/// `lo <= v <= hi` for a counter scraped between two status documents.
fn between(what: &str, lo: u64, v: f64, hi: u64) {
    assert!(
        lo as f64 <= v && v <= hi as f64,
        "{what}: {v} not within [{lo}, {hi}] of status --json"
    );
}

#[test]
fn metrics_scraped_during_traffic_match_status() {
    if !Lab::require_root() {
        return;
    }
    let _serial = serial();
    let mut lab = Lab::new().unwrap();
    let t = TwoSites::up(&mut lab, TwoSitesConfig::default()).unwrap();
    let (a, b) = (t.gw_a_outer().to_string(), t.gw_b_outer().to_string());
    let case = &CASES[0];
    let key = psk("metrics");
    let (ca, cb) = site_pair(&t, case);
    let gb = TunBridge::start(
        &mut lab,
        &t.gw_b,
        "gw-b",
        &ipsec_conf(&[cb]),
        &ipsec_secrets(&[(&b, &a, &key)]),
    );
    gb.wait_listening(&mut lab);
    let ga = TunBridge::start_with(
        &mut lab,
        &t.gw_a,
        "gw-a",
        &ipsec_conf(&[ca]),
        &ipsec_secrets(&[(&a, &b, &key)]),
        &["--metrics", ADDR],
    );
    ga.wait_established(&mut lab, &["site-b"]);
    common::ping_both_ways(&lab, &t, "before the scrape");

    // A transfer of about 6 s; scrape in its middle.
    let (src, dst, addr) = (t.host_a.clone(), t.host_b.clone(), t.host_b_addr());
    const BYTES: u64 = 24 << 20;
    let transfer = std::thread::spawn(move || {
        tcp_transfer_paced(
            &src,
            &dst,
            addr,
            5202,
            BYTES,
            Some(4 << 20),
            Duration::from_secs(60),
        )
    });
    std::thread::sleep(Duration::from_secs(2));
    let before = tunnel(&ga.status().unwrap());
    let m = Scrape::take(&lab, &t.gw_a);
    let after = tunnel(&ga.status().unwrap());
    assert!(
        !transfer.is_finished(),
        "the scrape must happen during the transfer"
    );
    assert_eq!(
        m.0["content_type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert_eq!(m.0["root"], 404);
    assert_eq!(
        m.0["families"]["tun_bridge_tunnel_sent_bytes"]["type"], "counter",
        "{}",
        m.0
    );
    assert_eq!(m.0["families"]["tun_bridge_tunnel_up"]["type"], "gauge");
    assert_eq!(m.conn("tun_bridge_tunnel_up"), 1.0);
    assert_eq!(m.conn("tun_bridge_tunnel_active"), 1.0);
    between(
        "sent bytes",
        before.bytes_out,
        m.conn("tun_bridge_tunnel_sent_bytes_total"),
        after.bytes_out,
    );
    between(
        "received bytes",
        before.bytes_in,
        m.conn("tun_bridge_tunnel_received_bytes_total"),
        after.bytes_in,
    );
    between(
        "sent packets",
        before.packets_out,
        m.conn("tun_bridge_tunnel_sent_packets_total"),
        after.packets_out,
    );
    between(
        "received packets",
        before.packets_in,
        m.conn("tun_bridge_tunnel_received_packets_total"),
        after.packets_in,
    );
    assert!(
        m.conn("tun_bridge_tunnel_sent_bytes_total") > (1 << 20) as f64,
        "traffic under way"
    );
    between(
        "established",
        before.established_secs.unwrap(),
        m.conn("tun_bridge_tunnel_established_seconds"),
        after.established_secs.unwrap(),
    );
    assert_eq!(
        m.conn("tun_bridge_tunnel_child_rekeys_total"),
        after.child_rekeys as f64
    );
    assert_eq!(
        m.conn("tun_bridge_tunnel_ike_rekeys_total"),
        after.ike_rekeys as f64
    );
    assert_eq!(m.conn("tun_bridge_tunnel_dpd_failures_total"), 0.0);
    // A initiated: the responses to IKE_SA_INIT and IKE_AUTH were accepted.
    for ex in ["ike_sa_init", "ike_auth"] {
        let v = m.value(
            "tun_bridge_ike_messages_received_total",
            &[("exchange", ex), ("outcome", "accepted")],
        );
        assert!(v.is_some_and(|v| v >= 1.0), "{ex}: {v:?}");
        let s = m.value("tun_bridge_ike_messages_sent_total", &[("exchange", ex)]);
        assert!(s.is_some_and(|v| v >= 1.0), "{ex} sent: {s:?}");
    }
    assert_eq!(m.value("tun_bridge_ike_sas", &[]), Some(1.0));
    let r = transfer.join().unwrap().expect("transfer");
    assert!(r.intact() && r.received == BYTES, "{r:?}");

    // At rest the counters equal status --json exactly.
    std::thread::sleep(Duration::from_millis(300));
    let m = Scrape::take(&lab, &t.gw_a);
    let st = tunnel(&ga.status().unwrap());
    for (name, v) in [
        ("tun_bridge_tunnel_sent_bytes_total", st.bytes_out),
        ("tun_bridge_tunnel_received_bytes_total", st.bytes_in),
        ("tun_bridge_tunnel_sent_packets_total", st.packets_out),
        ("tun_bridge_tunnel_received_packets_total", st.packets_in),
    ] {
        assert_eq!(m.conn(name), v as f64, "{name}");
    }
    for (reason, n) in &st.drops {
        let v = m.value(
            "tun_bridge_tunnel_dropped_packets_total",
            &[("conn", "site-b"), ("reason", reason)],
        );
        assert_eq!(v, Some(*n as f64), "drops {reason}");
    }
    ga.stop(&mut lab);
    gb.stop(&mut lab);
}
