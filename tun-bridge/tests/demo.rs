//! `tun-bridge demo` and `demo --bgp` end to end (root): each drives the
//! binary under test and must succeed, leaving no namespace behind.
#![cfg(feature = "demo")]

use netns_lab::Lab;
use std::sync::Mutex;

/// The two demos run one at a time: each checks that no namespace of this
/// process is left behind, which the other's would look like.
static SERIAL: Mutex<()> = Mutex::new(());

#[test]
fn demo_runs_and_cleans_up() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !Lab::require_root() {
        return;
    }
    let before = namespaces();
    tun_bridge::demo::run_with(std::path::Path::new(env!("CARGO_BIN_EXE_tun-bridge")))
        .unwrap_or_else(|e| panic!("demo failed: {e}"));
    let mine = format!("tb-{}-", std::process::id());
    let left: Vec<String> = namespaces()
        .into_iter()
        .filter(|n| n.starts_with(&mine) && !before.contains(n))
        .collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}

#[test]
fn demo_bgp_runs_and_cleans_up() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !Lab::require_root() {
        return;
    }
    if !netns_lab::bgp::have_bgp_daemons() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI: BIRD 2 and FRR are required (apt-get install bird2 frr)"
        );
        return;
    }
    let before = namespaces();
    tun_bridge::demo_bgp::run_with(std::path::Path::new(env!("CARGO_BIN_EXE_tun-bridge")))
        .unwrap_or_else(|e| panic!("demo --bgp failed: {e}"));
    let mine = format!("tb-{}-", std::process::id());
    let left: Vec<String> = namespaces()
        .into_iter()
        .filter(|n| n.starts_with(&mine) && !before.contains(n))
        .collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}

fn namespaces() -> Vec<String> {
    std::fs::read_dir("/var/run/netns")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}
