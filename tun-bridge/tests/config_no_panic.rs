//! Property test: the parsers never panic and always either succeed or
//! report at least one located error, on mutated AWS samples and on random
//! text; and whatever `check` accepts (loading plus the selection of the
//! connections `up` runs) plans without error. The cargo-fuzz target
//! `config_parse` explores further.

use std::path::Path;

use proptest::prelude::*;
use tun_bridge::config;
use tun_bridge::runtime::plan;

mod plan_offline;

const CONF: &str = include_str!("data/strongswan/ipsec.conf");
const LIBRESWAN: &str = include_str!("data/libreswan/ipsec.d/aws.conf");
const SECRETS: &str = include_str!("data/strongswan/ipsec.secrets");

fn parse(conf: &str, secrets: &str) {
    match config::parse_str(conf, Path::new("c"), secrets, Path::new("s")) {
        Ok(l) => {
            for c in &l.config.conns {
                let out = tun_bridge::check::render_conn(c);
                assert!(!out.contains("example_psk"));
            }
            if plan::select_conns(&l.config, &[]).is_ok() {
                plan_offline::plan_all(&l.config, &[]);
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

const BASE: &str = "conn a\n\tauthby=secret\n\tauto=start\n\tleft=192.0.2.1\n\tright=192.0.2.2\n";

/// Proposal-shaped strings: known, unknown and misplaced tokens.
const PROPOSAL: &str = "((aes(128|192|256|999)?(gcm(16|8)?)?|sha(1|2_256|384|7)?|modp(1024|2048|77|768)|ecp384|x25519|prfsha256|esn|noesn|none|null|3des|[a-z0-9_]{0,5})[-;,+!]?){1,6}";

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// `ike=` and `esp=` are rejected at their own line, or the connection
    /// plans with exactly the proposals the configuration holds.
    #[test]
    fn proposal_values(ike in PROPOSAL, esp in PROPOSAL) {
        let conf = format!("{BASE}\tike={ike}\n\tesp={esp}\n");
        match config::parse_str(&conf, Path::new("c"), ": PSK \"k\"\n", Path::new("s")) {
            Ok(l) => prop_assert_eq!(plan_offline::plan_all(&l.config, &[]), 1),
            Err(f) => {
                for e in &f.errors {
                    prop_assert!(
                        matches!(e.kind, config::ConfigErrorKind::Proposal { .. }),
                        "{}", e
                    );
                    prop_assert!(e.line == 6 || e.line == 7, "{}", e);
                }
            }
        }
    }
}
