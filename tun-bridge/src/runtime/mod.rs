//! Entry points of the `up`, `status` and `demo` subcommands: `up` turns
//! the configuration into plans, then hands them to the tunnel engine
//! ([`crate::engine`]) inside the IO shell ([`crate::shell`]).
//!
//! * [`plan`]: validated configuration → per-connection plans (addresses,
//!   PSKs, ike-lite peer configs, TUN names/MTUs, routes, failover groups).
//! * [`keylog`]: `--log-keys` in Wireshark formats.

pub mod keylog;
pub mod plan;

use std::path::PathBuf;
use std::time::Duration;

use tracing::info;

use crate::cli::{ConnCommandArgs, DemoArgs, ReloadArgs, StatusArgs, UpArgs};
use crate::config;
use crate::control::{self, ControlServer};
use crate::sys::poll::{Poller, SignalFd};
use plan::ConnPlan;

/// Error type of the runtime entry points.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Where `up` read its configuration, and the `--conn` selection: what a
/// reload reads again.
#[derive(Clone, Debug)]
pub struct ConfigSource {
    /// ipsec.conf.
    pub config: PathBuf,
    /// ipsec.secrets.
    pub secrets: PathBuf,
    /// `--conn` names (empty: every connection that is not `auto=ignore`).
    pub conns: Vec<String>,
}

/// A configuration turned into plans.
#[derive(Debug)]
pub struct Planned {
    /// One plan per selected connection, in configuration order.
    pub plans: Vec<ConnPlan>,
    /// Failover groups (indices into `plans`).
    pub groups: Vec<Vec<usize>>,
    /// The configuration's warnings (`file:line: ...`).
    pub warnings: Vec<String>,
    /// `config setup`'s IKE flood limits (applied at start; a reload does
    /// not change them).
    pub flood: ike_lite::FloodLimits,
}

/// Loads, validates and plans `src` (a configuration error never touches
/// the system; DNS names in `right=` are resolved and `%defaultroute`
/// looked up). The error lists every `file:line` problem, one per line.
pub fn load_plans(src: &ConfigSource) -> Result<Planned, Error> {
    let loaded = config::load(&src.config, &src.secrets)?;
    let cfg = &loaded.config;
    let selected = plan::select_conns(cfg, &src.conns)
        .map_err(|e| format!("{e} (in {})", src.config.display()))?;
    let mut plans = Vec::with_capacity(selected.len());
    for (c, mode) in selected {
        let hint = c.local.ip();
        let remote =
            plan::resolve_remote(&c.remote, hint).map_err(|e| format!("conn {}: {e}", c.name))?;
        // config refuses left=%defaultroute with right=%any.
        let local = match c.local.ip() {
            Some(ip) => ip,
            None => plan::resolve_local(remote)
                .map_err(|e| format!("conn {}: no route to {remote}: {e}", c.name))?,
        };
        if c.local.ip().is_none() {
            info!(conn = %c.name, %local, "left=%defaultroute resolved");
        }
        let raw_esp = true; // decided per socket by the shell
        plans.push(
            plan::plan_conn(c, mode, local, remote, &cfg.secrets, raw_esp)
                .map_err(|e| format!("conn {}: {e}", c.name))?,
        );
    }
    let groups = plan::failover_groups(&plans);
    Ok(Planned {
        plans,
        groups,
        warnings: loaded.warnings.iter().map(|w| w.to_string()).collect(),
        flood: cfg.setup.flood_limits(),
    })
}

/// `tun-bridge up`: loads and validates the configuration (a configuration
/// error never touches the system), plans the selected connections, then
/// brings them up and runs until SIGTERM/SIGINT. SIGHUP reloads.
pub fn up(args: UpArgs) -> Result<(), Error> {
    let source = ConfigSource {
        config: args.config.clone(),
        secrets: args.secrets.clone(),
        conns: args.conns.clone(),
    };
    let Planned {
        plans,
        groups,
        warnings,
        flood,
    } = load_plans(&source)?;
    for w in &warnings {
        tracing::warn!("{w}");
    }
    let keylog = match &args.log_keys {
        Some(p) => {
            let (esp, ike) = keylog::paths(p);
            tracing::warn!(esp = %esp.display(), ike = %ike.display(), "--log-keys: writing ESP and IKE keys");
            Some(keylog::KeyLog::open(p).map_err(|e| format!("--log-keys {}: {e}", p.display()))?)
        }
        None => None,
    };
    // Block the signals before anything else could spawn threads.
    let signals = SignalFd::new(&[libc::SIGTERM, libc::SIGINT, libc::SIGHUP])?;
    let mut poller = Poller::new(256)?;
    let mut control = ControlServer::bind(&args.control)
        .map_err(|e| format!("control socket {}: {e}", args.control.display()))?;
    let engine = crate::engine::EngineOptions {
        failback: args.failback,
        ike: ike_lite::Config {
            export_ike_keys: keylog.is_some(),
            flood,
            ..ike_lite::Config::default()
        },
        ike_rng: Box::new(rand_core::OsRng),
        rng: Box::new(rand_core::OsRng),
    };
    let mut shell = crate::shell::Shell::start(
        plans,
        groups,
        crate::shell::StartOptions {
            engine,
            keylog,
            source: Some(source),
            metrics: args.metrics,
        },
        &poller,
    )?;
    info!(control = %args.control.display(), "up");
    shell.run(&mut poller, &signals, &mut control)?;
    info!("stopped");
    Ok(())
}

/// `tun-bridge status [--json]`: asks a running `up` over its control socket.
pub fn status(args: StatusArgs) -> Result<(), Error> {
    let s = control::status_text(&args.control, args.json, Duration::from_secs(5))?;
    print!("{s}");
    Ok(())
}

/// `tun-bridge initiate NAME`.
pub fn initiate(args: ConnCommandArgs) -> Result<(), Error> {
    command(
        &args.control,
        &control::Request::Initiate { name: args.name },
        COMMAND_TIMEOUT,
    )
}

/// `tun-bridge terminate NAME`.
pub fn terminate(args: ConnCommandArgs) -> Result<(), Error> {
    command(
        &args.control,
        &control::Request::Terminate { name: args.name },
        COMMAND_TIMEOUT,
    )
}

/// `tun-bridge reload`: prints what was kept, changed, added and removed;
/// a configuration error prints its `file:line` messages and fails
/// (the running tunnels are left as they were).
pub fn reload(args: ReloadArgs) -> Result<(), Error> {
    command(&args.control, &control::Request::Reload, RELOAD_TIMEOUT)
}

/// How long `initiate`/`terminate` wait for the daemon's answer.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `reload` waits (DNS lookups of `right=` names may run).
const RELOAD_TIMEOUT: Duration = Duration::from_secs(30);

fn command(path: &std::path::Path, req: &control::Request, timeout: Duration) -> Result<(), Error> {
    match control::command_text(path, req, timeout) {
        Ok(s) => {
            print!("{s}");
            Ok(())
        }
        // The daemon's own words (an unknown name, `file:line` errors).
        Err(control::ControlError::Server(msg)) => Err(msg.into()),
        Err(e) => Err(e.into()),
    }
}

/// `tun-bridge demo`: the self-contained two-site tunnel of `crate::demo`.
#[cfg(feature = "demo")]
pub fn demo(args: DemoArgs) -> Result<(), Error> {
    if args.bgp {
        let exe = std::env::current_exe().map_err(crate::demo::DemoError::CurrentExe)?;
        return crate::demo_bgp::run_with(&exe).map_err(Into::into);
    }
    crate::demo::run().map_err(Into::into)
}

/// `tun-bridge demo` in a build without the `demo` cargo feature: an error
/// saying how to get it.
#[cfg(not(feature = "demo"))]
pub fn demo(_args: DemoArgs) -> Result<(), Error> {
    Err("this tun-bridge was built without the `demo` feature \
         (cargo build -p tun-bridge --features demo)"
        .into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_plans_reports_file_and_line() {
        let dir = std::env::temp_dir().join(format!("tb-load-plans-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (c, s) = (dir.join("ipsec.conf"), dir.join("ipsec.secrets"));
        std::fs::write(&s, "192.0.2.1 192.0.2.2 : PSK \"k\"\n").unwrap();
        let src = ConfigSource {
            config: c.clone(),
            secrets: s,
            conns: vec![],
        };
        let good = "conn a\n  auto=add\n  authby=secret\n  left=192.0.2.1\n  right=192.0.2.2\n";
        std::fs::write(&c, good).unwrap();
        let p = load_plans(&src).unwrap();
        assert_eq!(p.plans.len(), 1);
        assert_eq!(p.groups, vec![vec![0]]);
        std::fs::write(&c, format!("{good}  esp=nonsense\n")).unwrap();
        let e = load_plans(&src).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}:6:", c.display())), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
