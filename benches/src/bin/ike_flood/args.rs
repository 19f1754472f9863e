//! Command line and the safety checks: the namespace, the destination and
//! the source range.

use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

pub const USAGE: &str = "usage: ike_flood --netns NAME --iface IF --dst 10.A.B.C \
[--src-net 198.18.0.0/16] [--count N (<= 10000000)] [--secs S (<= 120)] [--rate PPS (0: as fast as possible)] \
[--answer-cookies] [--linger-ms MS] [--seed N]
  run it inside NAME (ip netns exec NAME ike_flood --netns NAME ...); the test
  must route --src-net back to this namespace through --iface.";

/// Upper bounds: the generator is for bounded tests only.
const MAX_COUNT: u64 = 10_000_000;
const MAX_SECS: u64 = 120;

/// Parsed arguments.
#[derive(Clone, Debug)]
pub struct Args {
    pub netns: String,
    pub iface: String,
    pub dst: Ipv4Addr,
    pub src_net: (Ipv4Addr, u8),
    pub count: u64,
    pub secs: Duration,
    pub rate: u64,
    pub answer_cookies: bool,
    pub linger: Duration,
    pub seed: u64,
}

fn in_net(a: Ipv4Addr, net: Ipv4Addr, len: u8) -> bool {
    let mask = if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    };
    u32::from(a) & mask == u32::from(net) & mask
}

fn parse_net(s: &str) -> Result<(Ipv4Addr, u8), String> {
    let (a, l) = s.split_once('/').ok_or("--src-net: expected A.B.C.D/LEN")?;
    let a: Ipv4Addr = a.parse().map_err(|_| "--src-net: bad address")?;
    let l: u8 = l.parse().map_err(|_| "--src-net: bad length")?;
    if !(15..=32).contains(&l) || !in_net(a, Ipv4Addr::new(198, 18, 0, 0), 15) {
        return Err("--src-net must lie inside 198.18.0.0/15 (RFC 2544 benchmarking)".into());
    }
    Ok((a, l))
}

/// `Ok(None)` for `--help`.
pub fn parse(argv: &[String]) -> Result<Option<Args>, String> {
    let mut netns = None;
    let mut iface = None;
    let mut dst = None;
    let mut a = Args {
        netns: String::new(),
        iface: String::new(),
        dst: Ipv4Addr::UNSPECIFIED,
        src_net: (Ipv4Addr::new(198, 18, 0, 0), 16),
        count: 100_000,
        secs: Duration::from_secs(10),
        rate: 0,
        answer_cookies: false,
        linger: Duration::from_millis(500),
        seed: 1,
    };
    let mut it = argv.iter();
    while let Some(k) = it.next() {
        let mut val = || it.next().ok_or(format!("{k} needs a value"));
        let num = |v: &String| {
            v.parse::<u64>()
                .map_err(|_| format!("{k}: expected a number"))
        };
        match k.as_str() {
            "-h" | "--help" => return Ok(None),
            "--netns" => netns = Some(val()?.clone()),
            "--iface" => iface = Some(val()?.clone()),
            "--dst" => {
                dst = Some(
                    val()?
                        .parse::<Ipv4Addr>()
                        .map_err(|_| "--dst: bad address")?,
                )
            }
            "--src-net" => a.src_net = parse_net(val()?)?,
            "--count" => a.count = num(val()?)?,
            "--secs" => a.secs = Duration::from_secs(num(val()?)?),
            "--rate" => a.rate = num(val()?)?,
            "--linger-ms" => a.linger = Duration::from_millis(num(val()?)?.min(5000)),
            "--seed" => a.seed = num(val()?)?,
            "--answer-cookies" => a.answer_cookies = true,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    a.netns = netns.ok_or("--netns is required")?;
    a.iface = iface.ok_or("--iface is required")?;
    a.dst = dst.ok_or("--dst is required")?;
    if !in_net(a.dst, Ipv4Addr::new(10, 0, 0, 0), 8) {
        return Err("--dst must be a test namespace address in 10.0.0.0/8".into());
    }
    if a.count == 0 || a.count > MAX_COUNT {
        return Err(format!("--count must be 1..={MAX_COUNT}"));
    }
    if a.secs.is_zero() || a.secs > Duration::from_secs(MAX_SECS) {
        return Err(format!("--secs must be 1..={MAX_SECS}"));
    }
    Ok(Some(a))
}

/// Errors unless this process runs in the network namespace `/run/netns/NAME`
/// and that is not the initial namespace (PID 1's).
pub fn check_namespace(name: &str) -> Result<(), String> {
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return Err(format!("bad namespace name {name:?}"));
    }
    let id = |p: &str| {
        std::fs::metadata(p)
            .map(|m| (m.dev(), m.ino()))
            .map_err(|e| format!("{p}: {e}"))
    };
    let named = id(&format!("/run/netns/{name}"))?;
    let ours = id("/proc/self/ns/net")?;
    if ours.1 != named.1 {
        return Err(format!(
            "not inside network namespace {name} (use ip netns exec {name} ...)"
        ));
    }
    // PID 1's namespace may be unreadable (containers); a namespace named
    // under /run/netns is then trusted to be a test's.
    if id("/proc/1/ns/net").is_ok_and(|init| init.1 == ours.1) {
        return Err("inside the initial network namespace".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Result<Option<Args>, String> {
        parse(&s.split_whitespace().map(String::from).collect::<Vec<_>>())
    }

    #[test]
    fn destinations_and_sources_outside_the_test_ranges_are_refused() {
        let ok = "--netns n --iface v --dst 10.9.0.1";
        assert!(args(ok).unwrap().is_some());
        assert!(args("--netns n --iface v --dst 192.0.2.1").is_err());
        assert!(args("--iface v --dst 10.9.0.1").is_err());
        assert!(args(&format!("{ok} --src-net 10.0.0.0/16")).is_err());
        assert!(args(&format!("{ok} --src-net 198.18.0.0/8")).is_err());
        assert!(args(&format!("{ok} --src-net 198.19.4.0/24")).is_ok());
        assert!(args(&format!("{ok} --count 10000001")).is_err());
        assert!(args(&format!("{ok} --secs 121")).is_err());
    }

    #[test]
    fn the_initial_namespace_is_refused() {
        // This test process is not inside /run/netns/<nonexistent>.
        assert!(check_namespace("ike-flood-no-such-namespace").is_err());
        assert!(check_namespace("../x").is_err());
    }
}
