//! Command-line parsing (std only): `recv` and `send` modes, typed errors.

use std::fmt;
use std::net::SocketAddrV4;
use std::time::Duration;

use crate::wire::{MAX_IP_SIZE, MIN_IP_SIZE};

/// Longest run accepted by `--secs`.
pub const MAX_SECS: f64 = 3600.0;
/// Highest paced rate accepted by `--pps`.
pub const MAX_PPS: u64 = 100_000_000;

/// What to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Count datagrams arriving on a socket.
    Recv(RecvArgs),
    /// Send paced datagrams.
    Send(SendArgs),
    /// Print usage.
    Help,
}

/// `udp_load recv`.
#[derive(Debug, Clone, PartialEq)]
pub struct RecvArgs {
    /// Address to bind.
    pub bind: SocketAddrV4,
    /// Length of the sender's run.
    pub secs: Duration,
    /// Only datagrams with this run id are counted.
    pub run_id: u64,
}

/// `udp_load send`.
#[derive(Debug, Clone, PartialEq)]
pub struct SendArgs {
    /// Destination.
    pub to: SocketAddrV4,
    /// IPv4 packet size (IP + UDP headers + payload).
    pub size: usize,
    /// Offered packets per second; 0 = as fast as possible.
    pub pps: u64,
    /// How long to send.
    pub secs: Duration,
    /// Run id written into every datagram.
    pub run_id: u64,
    /// Send with UDP GSO (`send-gso`): up to 64 datagrams per `sendmsg` as
    /// one super-packet the kernel segments (or forwards whole to a device
    /// that takes UDP segmentation offload).
    pub gso: bool,
}

/// Why the command line was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgError {
    /// No mode given.
    NoMode,
    /// First argument is not `recv`, `send` or `--help`.
    UnknownMode(String),
    /// A flag the mode does not know.
    UnknownFlag(String),
    /// A flag at the end without its value.
    MissingValue(&'static str),
    /// A required flag is absent.
    MissingFlag(&'static str),
    /// A flag given twice.
    Duplicate(&'static str),
    /// A value that does not parse or is out of range.
    BadValue {
        /// The flag.
        flag: &'static str,
        /// What was given.
        value: String,
        /// What was expected.
        expected: &'static str,
    },
    /// `--size` cannot hold the IP, UDP and generator headers.
    SizeTooSmall {
        /// Given size.
        size: usize,
    },
    /// `--size` exceeds the largest IPv4 packet.
    SizeTooLarge {
        /// Given size.
        size: usize,
    },
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgError::NoMode => write!(f, "missing mode: recv or send"),
            ArgError::UnknownMode(m) => write!(f, "unknown mode {m:?}: expected recv or send"),
            ArgError::UnknownFlag(x) => write!(f, "unknown argument {x:?}"),
            ArgError::MissingValue(flag) => write!(f, "{flag} needs a value"),
            ArgError::MissingFlag(flag) => write!(f, "{flag} is required"),
            ArgError::Duplicate(flag) => write!(f, "{flag} given twice"),
            ArgError::BadValue {
                flag,
                value,
                expected,
            } => write!(f, "{flag} {value:?}: expected {expected}"),
            ArgError::SizeTooSmall { size } => write!(
                f,
                "--size {size}: the IP packet must hold 20 (IPv4) + 8 (UDP) + 16 (sequence \
                 number, run id) bytes, i.e. at least {MIN_IP_SIZE}"
            ),
            ArgError::SizeTooLarge { size } => {
                write!(
                    f,
                    "--size {size}: larger than the largest IPv4 packet ({MAX_IP_SIZE})"
                )
            }
        }
    }
}

/// Usage text.
pub const USAGE: &str = "\
usage: udp_load recv --bind IP:PORT --secs N --run-id X
       udp_load send --to IP:PORT --size BYTES --pps RATE --secs N --run-id X
       udp_load send-gso ...         (as send, with UDP GSO: one sendmsg per
                                      up to 64 datagrams)
  --size   IPv4 packet size (20 IP + 8 UDP + payload), at least 44
  --pps    offered packets per second, 0 = as fast as possible
  --secs   duration of the send run (fractions allowed); both modes stop by
           themselves at the latest N + 5 s after they start
  --run-id the receiver counts only datagrams carrying this run id
Each mode prints one JSON line on stdout.";

/// Parses the arguments after the program name.
pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<Command, ArgError> {
    let Some((mode, rest)) = args.split_first() else {
        return Err(ArgError::NoMode);
    };
    match mode.as_ref() {
        "recv" => {
            let [bind, secs, run_id] = flags(rest, ["--bind", "--secs", "--run-id"])?;
            Ok(Command::Recv(RecvArgs {
                bind: addr("--bind", bind)?,
                secs: secs_value(secs)?,
                run_id: u64_value("--run-id", run_id, "an unsigned integer")?,
            }))
        }
        m @ ("send" | "send-gso") => {
            let [to, size, pps, secs, run_id] =
                flags(rest, ["--to", "--size", "--pps", "--secs", "--run-id"])?;
            let size = u64_value("--size", size, "a packet size in bytes")?;
            let size = usize::try_from(size).unwrap_or(usize::MAX);
            if size < MIN_IP_SIZE {
                return Err(ArgError::SizeTooSmall { size });
            }
            if size > MAX_IP_SIZE {
                return Err(ArgError::SizeTooLarge { size });
            }
            let pps_text = pps.to_string();
            let pps = u64_value("--pps", pps, "packets per second (0 = unlimited)")?;
            if pps > MAX_PPS {
                return Err(ArgError::BadValue {
                    flag: "--pps",
                    value: pps_text,
                    expected: "at most 100000000",
                });
            }
            Ok(Command::Send(SendArgs {
                to: addr("--to", to)?,
                size,
                pps,
                secs: secs_value(secs)?,
                run_id: u64_value("--run-id", run_id, "an unsigned integer")?,
                gso: m == "send-gso",
            }))
        }
        "-h" | "--help" | "help" => Ok(Command::Help),
        other => Err(ArgError::UnknownMode(other.to_string())),
    }
}

/// Collects `--flag value` pairs for exactly the flags in `names`, all required.
fn flags<S: AsRef<str>, const N: usize>(
    args: &[S],
    names: [&'static str; N],
) -> Result<[String; N], ArgError> {
    let mut vals: [Option<String>; N] = std::array::from_fn(|_| None);
    let mut it = args.iter().map(AsRef::as_ref);
    while let Some(a) = it.next() {
        let Some(i) = names.iter().position(|n| *n == a) else {
            return Err(ArgError::UnknownFlag(a.to_string()));
        };
        let v = it.next().ok_or(ArgError::MissingValue(names[i]))?;
        if vals[i].replace(v.to_string()).is_some() {
            return Err(ArgError::Duplicate(names[i]));
        }
    }
    let mut out: [String; N] = std::array::from_fn(|_| String::new());
    for (i, v) in vals.into_iter().enumerate() {
        out[i] = v.ok_or(ArgError::MissingFlag(names[i]))?;
    }
    Ok(out)
}

fn addr(flag: &'static str, v: String) -> Result<SocketAddrV4, ArgError> {
    v.parse().map_err(|_| ArgError::BadValue {
        flag,
        value: v,
        expected: "an IPv4 address and port, e.g. 10.2.0.2:5202",
    })
}

fn u64_value(flag: &'static str, v: String, expected: &'static str) -> Result<u64, ArgError> {
    v.parse().map_err(|_| ArgError::BadValue {
        flag,
        value: v,
        expected,
    })
}

fn secs_value(v: String) -> Result<Duration, ArgError> {
    match v.parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 && s <= MAX_SECS => Ok(Duration::from_secs_f64(s)),
        _ => Err(ArgError::BadValue {
            flag: "--secs",
            value: v,
            expected: "seconds, more than 0 and at most 3600",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Command, ArgError> {
        parse(&s.split_whitespace().collect::<Vec<_>>())
    }

    #[test]
    fn parses_both_modes() {
        assert_eq!(
            p("recv --bind 10.2.0.2:5202 --secs 3 --run-id 7"),
            Ok(Command::Recv(RecvArgs {
                bind: "10.2.0.2:5202".parse().unwrap(),
                secs: Duration::from_secs(3),
                run_id: 7,
            }))
        );
        assert_eq!(
            p("send --run-id 9 --secs 0.25 --pps 0 --size 1400 --to 127.0.0.1:9"),
            Ok(Command::Send(SendArgs {
                to: "127.0.0.1:9".parse().unwrap(),
                size: 1400,
                pps: 0,
                secs: Duration::from_millis(250),
                run_id: 9,
                gso: false,
            }))
        );
        assert!(matches!(
            p("send-gso --run-id 9 --secs 1 --pps 0 --size 64 --to 127.0.0.1:9"),
            Ok(Command::Send(SendArgs { gso: true, .. }))
        ));
        assert_eq!(p("--help"), Ok(Command::Help));
    }

    #[test]
    fn rejects_bad_command_lines() {
        assert_eq!(p(""), Err(ArgError::NoMode));
        assert_eq!(p("blast"), Err(ArgError::UnknownMode("blast".into())));
        assert_eq!(
            p("recv --bind 1.2.3.4:5 --secs 3 --run-id 1 --size 64"),
            Err(ArgError::UnknownFlag("--size".into()))
        );
        assert_eq!(
            p("recv --bind 1.2.3.4:5 --secs 3 --run-id"),
            Err(ArgError::MissingValue("--run-id"))
        );
        assert_eq!(
            p("recv --bind 1.2.3.4:5 --secs 3"),
            Err(ArgError::MissingFlag("--run-id"))
        );
        assert_eq!(
            p("recv --bind 1.2.3.4:5 --secs 3 --run-id 1 --secs 4"),
            Err(ArgError::Duplicate("--secs"))
        );
        for bad in ["1.2.3.4", "::1:5", "host:5", "1.2.3.4:99999"] {
            let r = p(&format!("recv --bind {bad} --secs 3 --run-id 1"));
            assert!(
                matches!(r, Err(ArgError::BadValue { flag: "--bind", .. })),
                "{bad}: {r:?}"
            );
        }
        for bad in ["0", "-1", "nan", "inf", "3601", "x"] {
            let r = p(&format!("recv --bind 1.2.3.4:5 --secs {bad} --run-id 1"));
            assert!(
                matches!(r, Err(ArgError::BadValue { flag: "--secs", .. })),
                "{bad}: {r:?}"
            );
        }
        let r = p("recv --bind 1.2.3.4:5 --secs 1 --run-id -3");
        assert!(
            matches!(
                r,
                Err(ArgError::BadValue {
                    flag: "--run-id",
                    ..
                })
            ),
            "{r:?}"
        );
    }

    #[test]
    fn send_size_and_rate_limits() {
        let send = |size: &str, pps: &str| {
            p(&format!(
                "send --to 1.2.3.4:5 --size {size} --pps {pps} --secs 1 --run-id 1"
            ))
        };
        assert_eq!(send("43", "10"), Err(ArgError::SizeTooSmall { size: 43 }));
        assert!(send("44", "10").is_ok());
        assert!(send("65535", "10").is_ok());
        assert_eq!(
            send("65536", "10"),
            Err(ArgError::SizeTooLarge { size: 65536 })
        );
        assert!(matches!(
            send("64.5", "10"),
            Err(ArgError::BadValue { flag: "--size", .. })
        ));
        assert!(matches!(
            send("64", "100000001"),
            Err(ArgError::BadValue { flag: "--pps", .. })
        ));
        assert!(matches!(
            send("64", "fast"),
            Err(ArgError::BadValue { flag: "--pps", .. })
        ));
        let msg = ArgError::SizeTooSmall { size: 20 }.to_string();
        assert!(msg.contains("at least 44"), "{msg}");
    }
}
