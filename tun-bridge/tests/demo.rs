//! `tun-bridge demo` end to end (root): the demo drives the binary under
//! test and must succeed, leaving no namespace behind.
#![cfg(feature = "demo")]

use netns_lab::Lab;

#[test]
fn demo_runs_and_cleans_up() {
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

fn namespaces() -> Vec<String> {
    std::fs::read_dir("/var/run/netns")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}
