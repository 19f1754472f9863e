//! Fuzzes the ipsec.conf and ipsec.secrets parsers and the resolution into
//! effective connections (with `ike=`/`esp=` parsed by ike-lite), and checks
//! that whatever `check` accepts plans without error (route-based keys
//! `ipsec-interface=`/`interface-ip=` and the VTI updown shapes included). Input bytes are split
//! at the first NUL into a config part and a secrets part. Parsing is in
//! memory: `include` lines are reported as errors and never read a file.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tun_bridge::config::{self, conf, secrets, Diagnostics, NoIncludes};
use tun_bridge::runtime::plan;

#[path = "../../tun-bridge/tests/plan_offline/mod.rs"]
mod plan_offline;

fuzz_target!(|data: &[u8]| {
    let (a, b) = match data.iter().position(|&x| x == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, data),
    };
    let conf_text = String::from_utf8_lossy(a);
    let secrets_text = String::from_utf8_lossy(b);

    // Each parser on its own.
    let mut d = Diagnostics::default();
    let _ = conf::parse_conf_str(&conf_text, Path::new("fuzz.conf"), &NoIncludes, &mut d);
    let s = secrets::parse_secrets_str(
        &secrets_text,
        Path::new("fuzz.secrets"),
        &NoIncludes,
        &mut d,
    );
    for e in &d.errors {
        let _ = e.to_string();
    }
    // Lookups never panic.
    if let Some(first) = s.entries.first() {
        let _ = s.lookup(
            first.ids.first(),
            first.ids.last().unwrap_or(&config::values::Identity::Any),
        );
    }

    // The whole pipeline; a valid result renders without panicking, and
    // what `check` accepts (load + selection) plans without error.
    match config::parse_str(
        &conf_text,
        Path::new("fuzz.conf"),
        &secrets_text,
        Path::new("fuzz.secrets"),
    ) {
        Ok(loaded) => {
            for c in &loaded.config.conns {
                let _ = tun_bridge::check::render_conn(c);
            }
            if let Ok(sel) = plan::select_conns(&loaded.config, &[]) {
                // The interface plan (ipsec-interface=, interface-ip=,
                // updown shapes) renders for what `check` accepts.
                let conns: Vec<_> = sel.iter().map(|(c, _)| *c).collect();
                let _ = tun_bridge::check::render_interfaces(&conns);
                plan_offline::plan_all(&loaded.config, &[]);
            }
        }
        Err(fail) => assert!(!fail.errors.is_empty()),
    }
});
