//! Property test: the parsers never panic and always either succeed or
//! report at least one located error, on mutated AWS samples and on random
//! text (the cargo-fuzz target `config_parse` explores further).

use std::path::Path;

use proptest::prelude::*;
use tun_bridge::config::{self, ResolveOptions};

const CONF: &str = include_str!("data/strongswan/ipsec.conf");
const LIBRESWAN: &str = include_str!("data/libreswan/ipsec.d/aws.conf");
const SECRETS: &str = include_str!("data/strongswan/ipsec.secrets");

fn parse(conf: &str, secrets: &str) {
    match config::parse_str(
        conf,
        Path::new("c"),
        secrets,
        Path::new("s"),
        &ResolveOptions::default(),
    ) {
        Ok(l) => {
            for c in &l.config.conns {
                let out = tun_bridge::check::render_conn(c);
                assert!(!out.contains("example_psk"));
            }
        }
        Err(f) => {
            assert!(!f.errors.is_empty());
            for e in &f.errors {
                assert!(e
                    .to_string()
                    .starts_with(&format!("{}:{}: ", e.file.display(), e.line)));
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn mutated_samples(pos in 0usize..4000, len in 0usize..40, ins in "[ -~\t\n\"{}#=:%@]{0,12}", which in 0u8..3) {
        let base = match which { 0 => CONF, 1 => LIBRESWAN, _ => SECRETS };
        let mut s = base.to_string();
        let start = s.char_indices().map(|(i, _)| i).find(|&i| i >= pos % s.len()).unwrap_or(0);
        let end = s.char_indices().map(|(i, _)| i).find(|&i| i >= start + len).unwrap_or(s.len());
        s.replace_range(start..end, &ins);
        if which == 2 {
            parse(CONF, &s);
        } else {
            parse(&s, SECRETS);
        }
    }

    #[test]
    fn random_text(conf in "(conn|config|include|  [a-z-]{1,12}=|\t|[ -~]|\n){0,60}", secrets in "[ -~\n]{0,80}") {
        parse(&conf, &secrets);
    }
}
