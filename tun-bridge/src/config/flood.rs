//! The IKE flood limits of `config setup`: typed, validated, turned into
//! ike-lite's [`FloodLimits`].
//!
//! Keys (Libreswan's names where Libreswan has the setting, strongSwan
//! charon's otherwise; defaults are charon's, see [`FloodLimits`]):
//!
//! | key | meaning | default |
//! |---|---|---|
//! | `ddos-mode` | `auto` (cookies by the thresholds), `busy` (always), `unlimited` (never) | `auto` |
//! | `ddos-ike-threshold` | cookies while this many half-open IKE SAs exist (charon `cookie_threshold`; 0 off) | 30 |
//! | `cookie_threshold_ip` | cookies from an address with this many half-open IKE SAs (0 off) | 3 |
//! | `block_threshold` | IKE_SA_INIT from an address with this many half-open IKE SAs is ignored (0 off; raised above `cookie_threshold_ip` as charon does) | 5 |
//! | `max-halfopen-ike` | IKE_SA_INIT is ignored while this many half-open IKE SAs exist (charon `init_limit_half_open`; 0 unlimited) | 4096 |
//! | `half_open_timeout` | a half-open IKE SA is freed after this long (`30`, `30s`, `1m`) | 30 s |

use std::time::Duration;

use ike_lite::{CookieMode, FloodLimits};

use super::effective::SetupSettings;
use super::values::{parse_duration, parse_u32};

/// The `config setup` keys of this module.
pub const FLOOD_KEYS: &[&str] = &[
    "ddos-mode",
    "ddos-ike-threshold",
    "cookie_threshold_ip",
    "block_threshold",
    "max-halfopen-ike",
    "half_open_timeout",
];

/// Checks the value of flood key `key`; `None` when `key` is not one.
pub fn check(key: &str, value: &str) -> Option<Result<(), String>> {
    let mut limits = FloodLimits::default();
    apply(&mut limits, key, value)
}

/// Sets `key` in `limits`; `None` when `key` is not a flood key.
fn apply(limits: &mut FloodLimits, key: &str, value: &str) -> Option<Result<(), String>> {
    let r = match key {
        "ddos-mode" => parse_mode(value).map(|m| limits.cookies = m),
        "ddos-ike-threshold" => parse_u32(value).map(|n| limits.cookie_threshold = n),
        "cookie_threshold_ip" => parse_u32(value).map(|n| limits.cookie_threshold_ip = n),
        "block_threshold" => parse_u32(value).map(|n| limits.block_threshold = n),
        "max-halfopen-ike" => parse_u32(value).map(|n| limits.init_limit_half_open = n),
        "half_open_timeout" => parse_duration(value).and_then(|d| {
            if d < Duration::from_secs(1) {
                Err("expected at least 1 second".into())
            } else {
                limits.half_open_timeout = d;
                Ok(())
            }
        }),
        _ => return None,
    };
    Some(r)
}

fn parse_mode(s: &str) -> Result<CookieMode, String> {
    match s {
        "auto" => Ok(CookieMode::Auto),
        "busy" => Ok(CookieMode::Always),
        "unlimited" => Ok(CookieMode::Never),
        _ => Err("expected auto, busy or unlimited".into()),
    }
}

/// The name of a cookie mode as written in `ddos-mode`.
pub fn mode_name(m: CookieMode) -> &'static str {
    match m {
        CookieMode::Auto => "auto",
        CookieMode::Always => "busy",
        CookieMode::Never => "unlimited",
    }
}

impl SetupSettings {
    /// The IKE flood limits: the defaults with the `config setup` keys
    /// applied (values were validated when the file was loaded).
    pub fn flood_limits(&self) -> FloodLimits {
        let mut limits = FloodLimits::default();
        for (k, v) in &self.entries {
            let _ = apply(&mut limits, k, v);
        }
        limits
    }
}

/// `check`'s lines for the flood limits in force.
pub fn render(l: &FloodLimits) -> String {
    let block = l.effective_block_threshold();
    let raised = if block != l.block_threshold {
        format!(" (raised from {})", l.block_threshold)
    } else {
        String::new()
    };
    format!(
        "config setup (IKE flood limits)\n  \
         ddos-mode           {}\n  \
         ddos-ike-threshold  {}\n  \
         cookie_threshold_ip {}\n  \
         block_threshold     {block}{raised}\n  \
         max-halfopen-ike    {}\n  \
         half_open_timeout   {}s\n",
        mode_name(l.cookies),
        l.cookie_threshold,
        l.cookie_threshold_ip,
        l.init_limit_half_open,
        l.half_open_timeout.as_secs(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(entries: &[(&str, &str)]) -> SetupSettings {
        SetupSettings {
            entries: entries
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn defaults_are_strongswans() {
        let l = setup(&[]).flood_limits();
        assert_eq!(l, FloodLimits::default());
        assert_eq!(
            (l.cookie_threshold, l.cookie_threshold_ip, l.block_threshold),
            (30, 3, 5)
        );
        assert_eq!(l.half_open_timeout, Duration::from_secs(30));
    }

    #[test]
    fn every_key_sets_its_limit() {
        let l = setup(&[
            ("ddos-mode", "busy"),
            ("ddos-ike-threshold", "100"),
            ("cookie_threshold_ip", "4"),
            ("block_threshold", "8"),
            ("max-halfopen-ike", "2000"),
            ("half_open_timeout", "2m"),
            ("uniqueids", "no"),
        ])
        .flood_limits();
        assert_eq!(l.cookies, CookieMode::Always);
        assert_eq!(
            (
                l.cookie_threshold,
                l.cookie_threshold_ip,
                l.block_threshold,
                l.init_limit_half_open
            ),
            (100, 4, 8, 2000)
        );
        assert_eq!(l.half_open_timeout, Duration::from_secs(120));
        let text = render(&l);
        assert!(text.contains("ddos-mode           busy"), "{text}");
        assert!(text.contains("half_open_timeout   120s"), "{text}");
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(check("ddos-mode", "sometimes").unwrap().is_err());
        assert!(check("block_threshold", "-1").unwrap().is_err());
        assert!(check("half_open_timeout", "0").unwrap().is_err());
        assert!(check("max-halfopen-ike", "10").unwrap().is_ok());
        assert!(check("uniqueids", "no").is_none());
    }
}
