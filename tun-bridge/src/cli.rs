//! Command-line definition (clap derive). Scripts outside the project call
//! these subcommands and flags: keep them stable.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Default control socket of a running `tun-bridge up`.
pub const DEFAULT_CONTROL: &str = "/run/tun-bridge.sock";

/// `tun-bridge`: userspace IPsec gateway (TUN + ESP + IKEv2 PSK).
#[derive(Debug, Parser)]
#[command(name = "tun-bridge", version, about, long_about = None)]
pub struct Cli {
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Bring the configured connections up and serve the control socket.
    Up(UpArgs),
    /// Show the state of a running instance.
    Status(StatusArgs),
    /// Bring a connection of a running instance up now (swanctl --initiate).
    Initiate(ConnCommandArgs),
    /// Delete a connection's SAs and keep it down (swanctl --terminate).
    Terminate(ConnCommandArgs),
    /// Make a running instance re-read its ipsec.conf and ipsec.secrets
    /// (same as SIGHUP): unchanged tunnels keep their SAs.
    Reload(ReloadArgs),
    /// Validate ipsec.conf/ipsec.secrets and print the effective settings.
    Check(CheckArgs),
    /// Check the host (sysctls, /dev/net/tun, privileges, UDP ports).
    Doctor(DoctorArgs),
    /// Run a self-contained demonstration.
    Demo(DemoArgs),
}

/// `tun-bridge up`.
#[derive(Debug, Clone, Args)]
pub struct UpArgs {
    /// ipsec.conf to read.
    #[arg(long, value_name = "PATH")]
    pub config: PathBuf,
    /// ipsec.secrets to read.
    #[arg(long, value_name = "PATH")]
    pub secrets: PathBuf,
    /// Only bring up these connections (repeatable; default: all with auto=start/add/route).
    #[arg(long = "conn", value_name = "NAME")]
    pub conns: Vec<String>,
    /// Control socket path.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_CONTROL)]
    pub control: PathBuf,
    /// Write negotiated keys in Wireshark's esp_sa and ikev2_decryption_table
    /// formats (debugging only: this discloses keys): into PATH/esp_sa and
    /// PATH/ikev2_decryption_table if PATH is a directory, else into PATH
    /// and PATH.ikev2_decryption_table.
    #[arg(long, value_name = "PATH")]
    pub log_keys: Option<PathBuf>,
    /// After a failover, when to move traffic back to the first tunnel of
    /// a pair: `primary` (as soon as it is up again) or `never`.
    #[arg(long, value_name = "POLICY", default_value = "primary")]
    pub failback: crate::engine::failover::Failback,
    /// Serve Prometheus metrics at http://ADDR:PORT/metrics (off unless
    /// given; e.g. 127.0.0.1:9477: the endpoint has no authentication).
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Log line format on stderr: `text`, or `json` (one object per line
    /// with timestamp, level, target, message and the event's fields).
    /// Under journald the text format leaves out its own timestamp.
    #[arg(long, value_name = "FORMAT", value_enum, default_value_t = crate::logging::LogFormat::Text)]
    pub log_format: crate::logging::LogFormat,
}

/// `tun-bridge status`.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Control socket path.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_CONTROL)]
    pub control: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `tun-bridge initiate NAME` / `tun-bridge terminate NAME`.
#[derive(Debug, Clone, Args)]
pub struct ConnCommandArgs {
    /// Connection name (its `conn` header).
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Control socket path.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_CONTROL)]
    pub control: PathBuf,
}

/// `tun-bridge reload`.
#[derive(Debug, Clone, Args)]
pub struct ReloadArgs {
    /// Control socket path.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_CONTROL)]
    pub control: PathBuf,
}

/// `tun-bridge check`.
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// ipsec.conf to read.
    #[arg(long, value_name = "PATH")]
    pub config: PathBuf,
    /// ipsec.secrets to read.
    #[arg(long, value_name = "PATH")]
    pub secrets: PathBuf,
    /// Check as `up --conn NAME` would run (repeatable; default: all with auto=start/add/route).
    #[arg(long = "conn", value_name = "NAME")]
    pub conns: Vec<String>,
}

/// `tun-bridge doctor`.
#[derive(Debug, Clone, Args)]
pub struct DoctorArgs {
    /// Also check this tunnel interface (repeatable; existing TUN
    /// interfaces are found by themselves), e.g. `ipsec1` of a
    /// route-based tunnel before `up` creates it.
    #[arg(long = "interface", short = 'i', value_name = "NAME")]
    pub interfaces: Vec<String>,
}

/// `tun-bridge demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// AWS dynamic routing instead: two route-based tunnels, BIRD on both
    /// sides, an ECMP route, one tunnel dying midway (needs BIRD 2).
    #[arg(long)]
    pub bgp: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn contract() {
        let c = Cli::try_parse_from([
            "tun-bridge",
            "up",
            "--config",
            "/etc/ipsec.conf",
            "--secrets",
            "/etc/ipsec.secrets",
            "--conn",
            "Tunnel1",
            "--conn",
            "Tunnel2",
            "--log-keys",
            "/tmp/keys",
        ])
        .unwrap();
        let Command::Up(u) = c.command else {
            panic!("not up")
        };
        assert_eq!(u.conns, ["Tunnel1", "Tunnel2"]);
        assert_eq!(u.control, PathBuf::from(DEFAULT_CONTROL));
        assert_eq!(u.log_keys, Some(PathBuf::from("/tmp/keys")));
        assert_eq!(u.metrics, None);
        let c = Cli::try_parse_from([
            "tun-bridge",
            "up",
            "--config",
            "c",
            "--secrets",
            "s",
            "--metrics",
            "127.0.0.1:9477",
        ])
        .unwrap();
        let Command::Up(u) = c.command else {
            panic!("not up")
        };
        assert_eq!(u.metrics, Some("127.0.0.1:9477".parse().unwrap()));
        assert!(Cli::try_parse_from([
            "tun-bridge",
            "up",
            "--config",
            "c",
            "--secrets",
            "s",
            "--metrics",
            "localhost",
        ])
        .is_err());

        let c = Cli::try_parse_from(["tun-bridge", "status", "--json", "--control", "/x"]).unwrap();
        let Command::Status(s) = c.command else {
            panic!("not status")
        };
        assert!(s.json);
        assert_eq!(s.control, PathBuf::from("/x"));

        let c = Cli::try_parse_from(["tun-bridge", "initiate", "Tunnel1"]).unwrap();
        let Command::Initiate(i) = c.command else {
            panic!("not initiate")
        };
        assert_eq!(i.name, "Tunnel1");
        assert_eq!(i.control, PathBuf::from(DEFAULT_CONTROL));
        assert!(matches!(
            Cli::try_parse_from(["tun-bridge", "terminate", "T", "--control", "/s"])
                .unwrap()
                .command,
            Command::Terminate(ConnCommandArgs { ref name, .. }) if name == "T"
        ));
        assert!(Cli::try_parse_from(["tun-bridge", "terminate"]).is_err());
        let c = Cli::try_parse_from(["tun-bridge", "reload", "--control", "/s"]).unwrap();
        let Command::Reload(r) = c.command else {
            panic!("not reload")
        };
        assert_eq!(r.control, PathBuf::from("/s"));

        assert!(Cli::try_parse_from(["tun-bridge", "up", "--config", "c"]).is_err());
        assert!(Cli::try_parse_from(["tun-bridge", "check", "--config", "c"]).is_err());
        assert!(Cli::try_parse_from(["tun-bridge", "demo", "extra"]).is_err());
        assert!(Cli::try_parse_from(["tun-bridge", "doctor", "--config", "c"]).is_err());
        assert!(matches!(
            Cli::try_parse_from(["tun-bridge", "doctor"])
                .unwrap()
                .command,
            Command::Doctor(_)
        ));
    }
}
